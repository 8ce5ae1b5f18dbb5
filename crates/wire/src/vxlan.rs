//! The VXLAN header, RFC 7348 section 5.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//! Eight bytes behind a UDP header whose destination port is 4789. The I flag must be set
//! for the VNI to be valid; the reserved fields are sent as zero and ignored on receipt.

use std::net::Ipv4Addr;

use crate::{Error, checksum, need};

/// IANA-assigned UDP destination port for VXLAN (RFC 7348 section 5).
pub const UDP_PORT: u16 = 4789;
/// Bytes of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes VXLAN-over-IPv4 adds in front of an inner Ethernet frame:
/// outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const OVERHEAD_IPV4: usize = 14 + IPV4_UDP_LEN;
/// Bytes of the outer IPv4, UDP and VXLAN headers.
pub const IPV4_UDP_LEN: usize = 20 + 8 + HEADER_LEN;

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
#[inline]
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

/// The outer headers of a VXLAN-over-IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Provider addresses: the encapsulating and the decapsulating endpoint.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The IPv4 Identification field.
    pub ident: u16,
    /// A hash of the inner flow; the UDP source port is taken from it.
    pub entropy: u32,
    pub vni: Vni,
}

impl Outer {
    /// Writes the IPv4 (checksummed, TTL 64, no fragmentation flags), UDP and VXLAN
    /// headers for an inner Ethernet frame of `frame_len` bytes into the first
    /// [`IPV4_UDP_LEN`] bytes of `buf`. The UDP source port is in 49152..=65535, from
    /// the entropy, so that the underlay spreads flows (RFC 7348 section 5); the UDP
    /// checksum is zero, as RFC 7348 recommends over IPv4.
    pub fn emit(&self, frame_len: usize, buf: &mut [u8]) -> Result<(), Error> {
        need("vxlan outer headers", buf, IPV4_UDP_LEN)?;
        let total = u16::try_from(IPV4_UDP_LEN + frame_len).map_err(|_| Error::Malformed {
            what: "vxlan",
            why: "inner frame too long for an IPv4 packet",
        })?;
        let (ip, rest) = buf.split_at_mut(20);
        ip.copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&self.ident.to_be_bytes());
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let sport = 0xc000 | (self.entropy as u16 & 0x3fff);
        rest[0..2].copy_from_slice(&sport.to_be_bytes());
        rest[2..4].copy_from_slice(&UDP_PORT.to_be_bytes());
        rest[4..6].copy_from_slice(&(total - 20).to_be_bytes());
        rest[6..8].copy_from_slice(&[0, 0]);
        emit(self.vni, &mut rest[8..])
    }
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
    fn outer_headers_carry_lengths_checksum_and_a_hashed_source_port() {
        let outer = Outer {
            src: Ipv4Addr::new(192, 168, 233, 20),
            dst: Ipv4Addr::new(192, 168, 233, 21),
            ident: 7,
            entropy: 0x1234_5678,
            vni: Vni::new(4096).unwrap(),
        };
        let mut h = [0xffu8; IPV4_UDP_LEN];
        outer.emit(64, &mut h).unwrap();
        assert_eq!(checksum::checksum(&h[..20]), 0, "a valid header checksum");
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 100);
        assert_eq!(u16::from_be_bytes([h[20], h[21]]), 0xc000 | 0x1678);
        assert_eq!(u16::from_be_bytes([h[22], h[23]]), UDP_PORT);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 80);
        assert_eq!(&h[26..28], &[0, 0]);
        assert_eq!(parse(&h[28..]).unwrap().0, outer.vni);
        assert!(outer.emit(usize::from(u16::MAX), &mut h).is_err());
        assert!(outer.emit(64, &mut h[..20]).is_err());
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

    #[test]
    fn overhead_and_display() {
        assert_eq!(OVERHEAD_IPV4, 50, "RFC 7348 over IPv4: 14 + 20 + 8 + 8");
        assert_eq!(IPV4_UDP_LEN, 36);
        assert_eq!(Vni::new(5001).unwrap().to_string(), "5001");
        assert_eq!(format!("{:>6}", Vni::new(42).unwrap()), "    42");
    }
}
