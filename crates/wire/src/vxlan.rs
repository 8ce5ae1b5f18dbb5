//! The VXLAN header, RFC 7348 section 5.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//! Eight bytes behind a UDP header whose destination port is 4789. The I flag must be set
//! for the VNI to be valid; the reserved fields are sent as zero and ignored on receipt.

use crate::{Error, need};

/// IANA-assigned UDP destination port for VXLAN (RFC 7348 section 5).
pub const UDP_PORT: u16 = 4789;
/// Bytes of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes VXLAN-over-IPv4 adds in front of an inner Ethernet frame:
/// outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const OVERHEAD_IPV4: usize = 14 + 20 + 8 + HEADER_LEN;

const FLAG_I: u8 = 0x08;

/// A 24-bit VXLAN Network Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI the field can carry.
    pub const MAX: u32 = (1 << 24) - 1;

    /// A VNI, if `value` fits in 24 bits.
    pub fn new(value: u32) -> Option<Vni> {
        (value <= Self::MAX).then_some(Vni(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for Vni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads a VXLAN header: the VNI and the inner Ethernet frame behind it.
pub fn parse(udp_payload: &[u8]) -> Result<(Vni, &[u8]), Error> {
    need("vxlan", udp_payload, HEADER_LEN)?;
    if udp_payload[0] & FLAG_I == 0 {
        return Err(Error::Malformed {
            what: "vxlan",
            why: "I flag clear, VNI not valid",
        });
    }
    let vni = u32::from_be_bytes([0, udp_payload[4], udp_payload[5], udp_payload[6]]);
    Ok((Vni(vni), &udp_payload[HEADER_LEN..]))
}

/// Writes a VXLAN header with the I flag set at the start of `buf`.
pub fn emit(vni: Vni, buf: &mut [u8]) -> Result<(), Error> {
    need("vxlan", buf, HEADER_LEN)?;
    let v = vni.0.to_be_bytes();
    buf[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_as_the_kernel_sends_it() {
        // The VXLAN header of a frame sent by Linux's vxlan device with `id 5001`
        // (Wireshark: Flags 0x0800, VNI 5001).
        let bytes = [0x08, 0x00, 0x00, 0x00, 0x00, 0x13, 0x89, 0x00, 0xaa];
        let (vni, inner) = parse(&bytes).unwrap();
        assert_eq!(vni.get(), 5001);
        assert_eq!(inner, &[0xaa]);
        let mut out = [0u8; 8];
        emit(vni, &mut out).unwrap();
        assert_eq!(out, bytes[..8]);
    }

    #[test]
    fn rejects_clear_i_flag_and_short_headers() {
        assert!(parse(&[0, 0, 0, 0, 0, 0, 1, 0]).is_err());
        assert!(parse(&[0x08, 0, 0]).is_err());
        assert!(Vni::new(1 << 24).is_none());
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let (vni, _) = parse(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x2a, 0xff]).unwrap();
        assert_eq!(vni.get(), 42);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn round_trip(v in 0u32..=Vni::MAX, payload in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = vec![0u8; HEADER_LEN];
            emit(Vni::new(v).unwrap(), &mut buf).unwrap();
            buf.extend_from_slice(&payload);
            let (vni, inner) = parse(&buf).unwrap();
            prop_assert_eq!(vni.get(), v);
            prop_assert_eq!(inner, &payload[..]);
        }
    }
}
