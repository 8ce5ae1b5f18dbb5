//! Ethernet II with an optional IEEE 802.1Q tag.
//!
//! smoltcp's `EthernetFrame` reads untagged frames; the tag (TPID 0x8100, then PCP, DEI and
//! a 12-bit VLAN ID) is read here so that switches can forward tagged frames and hosts can
//! find the payload behind the tag.

use crate::{Error, EthernetAddress, need};

/// The TPID that marks an 802.1Q tag.
pub const TPID_8021Q: u16 = 0x8100;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// An 802.1Q tag's control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 1..=4094 (0 means priority-tagged only; 4095 is reserved).
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tci: u16) -> VlanTag {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn tci(self) -> u16 {
        (u16::from(self.pcp & 0x7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

/// The parsed header of an Ethernet frame, tagged or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dst: EthernetAddress,
    pub src: EthernetAddress,
    pub vlan: Option<VlanTag>,
    /// The EtherType of the payload (behind the tag, if any).
    pub ethertype: u16,
}

impl Header {
    /// Reads the header; returns it and the offset at which the payload starts.
    #[inline]
    pub fn parse(frame: &[u8]) -> Result<(Header, usize), Error> {
        need("ethernet", frame, 14)?;
        let dst = EthernetAddress::from_bytes(&frame[0..6]);
        let src = EthernetAddress::from_bytes(&frame[6..12]);
        let first = u16::from_be_bytes([frame[12], frame[13]]);
        if first == TPID_8021Q {
            need("802.1q", frame, 18)?;
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            let ethertype = u16::from_be_bytes([frame[16], frame[17]]);
            if ethertype == TPID_8021Q {
                // Stacked tags (QinQ with 0x8100 inner) are not carried by this fabric.
                return Err(Error::Malformed {
                    what: "802.1q",
                    why: "stacked tag",
                });
            }
            let tag = VlanTag::from_tci(tci);
            if tag.vid == 0xfff {
                return Err(Error::Malformed {
                    what: "802.1q",
                    why: "VID 4095 is reserved",
                });
            }
            Ok((
                Header {
                    dst,
                    src,
                    vlan: Some(tag),
                    ethertype,
                },
                18,
            ))
        } else if first < 0x0600 {
            Err(Error::Malformed {
                what: "ethernet",
                why: "802.3 length field, not an EtherType",
            })
        } else {
            Ok((
                Header {
                    dst,
                    src,
                    vlan: None,
                    ethertype: first,
                },
                14,
            ))
        }
    }

    /// Bytes [`Header::emit`] writes.
    pub fn len(&self) -> usize {
        if self.vlan.is_some() { 18 } else { 14 }
    }

    /// Always false: a header is never empty (clippy's pairing for `len`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header at the start of `buf`, which must hold [`Header::len`] bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        need("ethernet", buf, self.len())?;
        buf[0..6].copy_from_slice(self.dst.as_bytes());
        buf[6..12].copy_from_slice(self.src.as_bytes());
        match self.vlan {
            Some(tag) => {
                buf[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
                buf[14..16].copy_from_slice(&tag.tci().to_be_bytes());
                buf[16..18].copy_from_slice(&self.ethertype.to_be_bytes());
            }
            None => buf[12..14].copy_from_slice(&self.ethertype.to_be_bytes()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tagged_frame_from_capture() {
        // Head of an 802.1Q-tagged ARP request as Wireshark shows it: VLAN 100, PCP 5.
        let frame = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x15, 0x5d, 0x01, 0x02, 0x03, 0x81, 0x00,
            0xa0, 0x64, 0x08, 0x06, 0x00, 0x01,
        ];
        let (h, off) = Header::parse(&frame).unwrap();
        assert_eq!(off, 18);
        assert_eq!(h.ethertype, ETHERTYPE_ARP);
        assert_eq!(
            h.vlan,
            Some(VlanTag {
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert!(h.dst.is_broadcast());
    }

    #[test]
    fn short_and_8023_frames_are_errors() {
        assert!(Header::parse(&[0; 13]).is_err());
        let mut f = [0u8; 20];
        f[12] = 0x05;
        f[13] = 0xdc; // 1500: an 802.3 length
        assert!(Header::parse(&f).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Header::parse(&bytes);
        }

        #[test]
        fn round_trip(dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), tag in any::<Option<(u8, bool, u16)>>(),
                      ethertype in 0x0600u16..) {
            let vlan = tag.map(|(pcp, dei, vid)| VlanTag { pcp: pcp & 7, dei, vid: vid % 4095 });
            prop_assume!(ethertype != TPID_8021Q);
            let h = Header { dst: EthernetAddress(dst), src: EthernetAddress(src), vlan, ethertype };
            let mut buf = [0u8; 18];
            h.emit(&mut buf).unwrap();
            let (back, off) = Header::parse(&buf).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(off, h.len());
        }
    }

    #[test]
    fn ethertypes_start_at_0x0600() {
        let mut f = [0u8; 20];
        f[12..14].copy_from_slice(&0x0600u16.to_be_bytes());
        let (h, off) = Header::parse(&f).unwrap();
        assert_eq!((h.ethertype, off, h.len()), (0x0600, 14, 14));
        assert!(!h.is_empty());
        f[12..14].copy_from_slice(&0x05ffu16.to_be_bytes());
        assert!(Header::parse(&f).is_err());
    }
}
