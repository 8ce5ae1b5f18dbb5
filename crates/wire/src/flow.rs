//! The transport flow key of an IPv4 or IPv6 packet: what NAT, connection tracking and
//! hashing key on.
//!
//! For TCP and UDP the key is the 5-tuple. For ICMP (and ICMPv6) echo request and reply it
//! uses the echo identifier in both port positions, as connection trackers do, so an echo
//! and its reply map to the same flow. Other protocols key on addresses and protocol
//! alone.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Error, need};

/// IP protocol numbers the data path cares about.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// A flow's key in the direction the packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    /// The key of the reply direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// Where the pieces of a validated IPv4 packet sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Layout {
    /// Header length including options (IHL × 4).
    pub header_len: usize,
    /// Total length from the header; bytes past it in the buffer are link padding.
    pub total_len: usize,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Fragment offset in bytes; 0 for unfragmented packets and first fragments.
    pub frag_offset: usize,
    pub more_frags: bool,
    pub dont_frag: bool,
}

impl Ipv4Layout {
    /// Validates an IPv4 header: version, IHL, total length against the buffer, header
    /// checksum. Options are skipped (their length comes from IHL), never interpreted.
    #[inline(always)]
    pub fn parse(packet: &[u8]) -> Result<Ipv4Layout, Error> {
        need("ipv4", packet, 20)?;
        if packet[0] >> 4 != 4 {
            return Err(Error::Malformed {
                what: "ipv4",
                why: "version is not 4",
            });
        }
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        if header_len < 20 {
            return Err(Error::Malformed {
                what: "ipv4",
                why: "IHL below 5",
            });
        }
        let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        if total_len < header_len {
            return Err(Error::Malformed {
                what: "ipv4",
                why: "total length shorter than header",
            });
        }
        need("ipv4", packet, total_len)?;
        // Most headers have no options: a sum of known length, unrolled.
        let sum = if header_len == 20 {
            crate::checksum::sum(&packet[..20])
        } else {
            crate::checksum::sum(&packet[..header_len])
        };
        if sum != 0xffff {
            return Err(Error::Malformed {
                what: "ipv4",
                why: "bad header checksum",
            });
        }
        let flags_frag = u16::from_be_bytes([packet[6], packet[7]]);
        Ok(Ipv4Layout {
            header_len,
            total_len,
            proto: packet[9],
            src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
            dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
            ttl: packet[8],
            frag_offset: usize::from(flags_frag & 0x1fff) * 8,
            more_frags: flags_frag & 0x2000 != 0,
            dont_frag: flags_frag & 0x4000 != 0,
        })
    }

    /// Whether the packet is a fragment (first or later).
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// The transport flow key. Later fragments carry no ports and give [`Error::Fragment`].
    #[inline(always)]
    pub fn flow_key(&self, packet: &[u8]) -> Result<FlowKey, Error> {
        let (src_port, dst_port) = match self.proto {
            proto::TCP | proto::UDP | proto::ICMP if self.frag_offset != 0 => {
                return Err(Error::Fragment);
            }
            proto::TCP | proto::UDP => {
                let l4 = &packet[self.header_len..self.total_len];
                need("l4 ports", l4, 4)?;
                (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                )
            }
            proto::ICMP => {
                let l4 = &packet[self.header_len..self.total_len];
                need("icmp", l4, 8)?;
                match l4[0] {
                    // Echo reply (0) and echo request (8): the identifier names the flow.
                    0 | 8 => {
                        let id = u16::from_be_bytes([l4[4], l4[5]]);
                        (id, id)
                    }
                    _ => (0, 0),
                }
            }
            _ => (0, 0),
        };
        Ok(FlowKey {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            src_port,
            dst_port,
        })
    }
}

/// An IPv6 flow's key in the direction the packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey6 {
    /// The upper-layer protocol, past any extension headers.
    pub proto: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey6 {
    /// The key of the reply direction.
    pub fn reversed(&self) -> FlowKey6 {
        FlowKey6 {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// IPv6 header length (RFC 8200 section 3).
pub const IPV6_HEADER_LEN: usize = 40;

/// Where the pieces of a validated IPv6 packet sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Layout {
    /// Where the upper-layer header starts: after the fixed header and the extension
    /// headers.
    pub l4_offset: usize,
    /// The fixed header plus the payload length; bytes past it are link padding.
    pub total_len: usize,
    /// The upper-layer protocol (the last Next Header).
    pub proto: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// A fragment other than the first: it carries no upper-layer header.
    pub later_fragment: bool,
}

/// Extension headers followed before giving up on a packet (RFC 8200 allows any number;
/// real packets carry one or two).
const MAX_EXTENSION_HEADERS: usize = 8;

impl Ipv6Layout {
    /// Validates an IPv6 header (version, payload length against the buffer) and walks
    /// the extension headers (hop-by-hop, routing, fragment, destination options,
    /// authentication) to the upper-layer header.
    pub fn parse(packet: &[u8]) -> Result<Ipv6Layout, Error> {
        need("ipv6", packet, IPV6_HEADER_LEN)?;
        if packet[0] >> 4 != 6 {
            return Err(Error::Malformed {
                what: "ipv6",
                why: "version is not 6",
            });
        }
        let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
        if payload_len == 0 {
            // A jumbogram (RFC 2675) or an empty payload; neither is forwarded here.
            return Err(Error::Malformed {
                what: "ipv6",
                why: "payload length 0",
            });
        }
        let total_len = IPV6_HEADER_LEN + payload_len;
        need("ipv6", packet, total_len)?;
        let mut next = packet[6];
        let mut at = IPV6_HEADER_LEN;
        let mut later_fragment = false;
        for _ in 0..MAX_EXTENSION_HEADERS {
            let len = match next {
                0 | 43 | 60 => {
                    need("ipv6 extension header", &packet[..total_len], at + 2)?;
                    (usize::from(packet[at + 1]) + 1) * 8
                }
                44 => {
                    need("ipv6 fragment header", &packet[..total_len], at + 8)?;
                    let offset = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) >> 3;
                    later_fragment = offset != 0;
                    8
                }
                51 => {
                    need("ipv6 authentication header", &packet[..total_len], at + 2)?;
                    (usize::from(packet[at + 1]) + 2) * 4
                }
                _ => {
                    let mut src = [0u8; 16];
                    src.copy_from_slice(&packet[8..24]);
                    let mut dst = [0u8; 16];
                    dst.copy_from_slice(&packet[24..40]);
                    return Ok(Ipv6Layout {
                        l4_offset: at,
                        total_len,
                        proto: next,
                        src: Ipv6Addr::from(src),
                        dst: Ipv6Addr::from(dst),
                        hop_limit: packet[7],
                        later_fragment,
                    });
                }
            };
            need("ipv6 extension header", &packet[..total_len], at + len)?;
            next = packet[at];
            at += len;
        }
        Err(Error::Malformed {
            what: "ipv6",
            why: "too many extension headers",
        })
    }

    /// The transport flow key. Later fragments carry no ports and give [`Error::Fragment`].
    pub fn flow_key(&self, packet: &[u8]) -> Result<FlowKey6, Error> {
        if self.later_fragment {
            return Err(Error::Fragment);
        }
        let l4 = &packet[self.l4_offset..self.total_len];
        let (src_port, dst_port) = match self.proto {
            proto::TCP | proto::UDP => {
                need("l4 ports", l4, 4)?;
                (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                )
            }
            proto::ICMPV6 => {
                need("icmpv6", l4, 8)?;
                match l4[0] {
                    // Echo request (128) and reply (129): the identifier names the flow.
                    128 | 129 => {
                        let id = u16::from_be_bytes([l4[4], l4[5]]);
                        (id, id)
                    }
                    _ => (0, 0),
                }
            }
            _ => (0, 0),
        };
        Ok(FlowKey6 {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            src_port,
            dst_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A UDP DNS query captured on a Linux host (tshark -x), IPv4 header and UDP header.
    const DNS_QUERY: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0xc8,
        0x0a, 0xc0, 0xa8, 0x64, 0x03, 0xc3, 0x50, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,
    ];

    fn with_checksum(mut p: Vec<u8>) -> Vec<u8> {
        let hl = usize::from(p[0] & 0xf) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = crate::checksum::checksum(&p[..hl]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn udp_key() {
        let p = with_checksum(DNS_QUERY.to_vec());
        let l = Ipv4Layout::parse(&p).unwrap();
        assert!(l.dont_frag);
        let k = l.flow_key(&p).unwrap();
        assert_eq!(k.src, Ipv4Addr::new(192, 168, 200, 10));
        assert_eq!(k.dst_port, 53);
        assert_eq!(k.src_port, 50000);
        assert_eq!(k.reversed().reversed(), k);
    }

    #[test]
    fn options_are_skipped() {
        // Same packet with one 4-byte option (NOP NOP NOP EOL): IHL 6.
        let mut p = DNS_QUERY[..20].to_vec();
        p[0] = 0x46;
        p[3] = 0x20;
        p.extend_from_slice(&[1, 1, 1, 0]);
        p.extend_from_slice(&DNS_QUERY[20..]);
        let p = with_checksum(p);
        let l = Ipv4Layout::parse(&p).unwrap();
        assert_eq!(l.header_len, 24);
        assert_eq!(l.flow_key(&p).unwrap().dst_port, 53);
    }

    #[test]
    fn later_fragment_has_no_key_and_bad_checksum_is_rejected() {
        let mut p = DNS_QUERY.to_vec();
        p[6] = 0x00;
        p[7] = 0x10; // offset 128 bytes
        let p = with_checksum(p);
        let l = Ipv4Layout::parse(&p).unwrap();
        assert!(l.is_fragment());
        assert_eq!(l.flow_key(&p), Err(Error::Fragment));
        let mut bad = p.clone();
        bad[10] ^= 0xff;
        assert!(Ipv4Layout::parse(&bad).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(l) = Ipv4Layout::parse(&bytes) {
                let _ = l.flow_key(&bytes);
            }
        }

        #[test]
        fn never_panics_with_valid_checksum(bytes in proptest::collection::vec(any::<u8>(), 20..80), ihl in 5u8..16) {
            let mut p = bytes;
            p[0] = 0x40 | ihl;
            let len = p.len() as u16;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            let hl = usize::from(ihl) * 4;
            if hl <= p.len() {
                let p = with_checksum(p);
                let l = Ipv4Layout::parse(&p).unwrap();
                let _ = l.flow_key(&p);
            }
        }
    }

    fn written(b: etherparse::PacketBuilderStep<etherparse::Icmpv4Header>) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, b"ping").unwrap();
        out
    }

    #[test]
    fn fragment_fields_are_read_from_the_flags_and_offset() {
        let frag = |flags_offset: u16| {
            let mut p = DNS_QUERY.to_vec();
            p[6..8].copy_from_slice(&flags_offset.to_be_bytes());
            Ipv4Layout::parse(&with_checksum(p)).unwrap()
        };
        let whole = frag(0x4000);
        assert!((whole.dont_frag, whole.more_frags, whole.is_fragment()) == (true, false, false));
        let first = frag(0x2000);
        assert!((first.dont_frag, first.more_frags, first.is_fragment()) == (false, true, true));
        assert_eq!(first.frag_offset, 0);
        // Offset 5 (in 8-byte units), no more fragments: the last one.
        let last = frag(0x0005);
        assert_eq!(
            (last.frag_offset, last.more_frags, last.is_fragment()),
            (40, false, true)
        );
        // Every offset bit counts, and the reserved bit is not one.
        assert_eq!(frag(0x9fff).frag_offset, 0x1fff * 8);
        assert!(!frag(0x8000).is_fragment());
    }

    #[test]
    fn icmp_echoes_key_on_their_identifier_and_other_icmp_on_addresses() {
        let b = || etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let request = written(b().icmpv4_echo_request(0x1234, 1));
        let reply = written(b().icmpv4_echo_reply(0x1234, 1));
        let unreachable = written(b().icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        )));
        for p in [&request, &reply] {
            let k = Ipv4Layout::parse(p).unwrap().flow_key(p).unwrap();
            assert_eq!(
                (k.proto, k.src_port, k.dst_port),
                (proto::ICMP, 0x1234, 0x1234)
            );
        }
        let k = Ipv4Layout::parse(&unreachable)
            .unwrap()
            .flow_key(&unreachable)
            .unwrap();
        assert_eq!((k.proto, k.src_port, k.dst_port), (proto::ICMP, 0, 0));
        // Too short for an ICMP header.
        let mut short = DNS_QUERY.to_vec();
        short[9] = proto::ICMP;
        short.truncate(26);
        short[2..4].copy_from_slice(&26u16.to_be_bytes());
        let short = with_checksum(short);
        let l = Ipv4Layout::parse(&short).unwrap();
        assert!(l.flow_key(&short).is_err());
    }

    const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A UDP 40000 > 53 datagram behind the given extension headers, each given as its
    /// protocol number and bytes (the first byte of each, Next Header, is filled in).
    fn udp6_behind(headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ipv6(A6, B6, 64)
            .udp(40000, 53)
            .write(&mut udp, b"q")
            .unwrap();
        let mut p = udp[..40].to_vec();
        let mut chain: Vec<u8> = Vec::new();
        for (i, (_, bytes)) in headers.iter().enumerate() {
            let mut h = bytes.clone();
            h[0] = headers.get(i + 1).map_or(proto::UDP, |n| n.0);
            chain.extend_from_slice(&h);
        }
        p[6] = headers.first().map_or(proto::UDP, |h| h.0);
        let payload = (chain.len() + udp.len() - 40) as u16;
        p[4..6].copy_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&chain);
        p.extend_from_slice(&udp[40..]);
        p
    }

    #[test]
    fn ipv6_extension_headers_are_walked_by_their_own_lengths() {
        let hop = (0, vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // 16 bytes
        let routing = (43, vec![0, 0, 0, 0, 0, 0, 0, 0]);
        let dest = (
            60,
            vec![
                0, 2, 1, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        // AH: Payload Len 4 means (4 + 2) * 4 = 24 bytes.
        let ah = (
            51,
            vec![
                0, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        let first_fragment = (44, vec![0, 0, 0, 1, 0, 0, 0, 7]);
        for (headers, l4_offset) in [
            (vec![hop.clone()], 56),
            (vec![routing.clone()], 48),
            (vec![dest.clone()], 64),
            (vec![ah.clone()], 64),
            (vec![first_fragment.clone()], 48),
            (
                vec![hop, routing, dest, ah, first_fragment],
                40 + 16 + 8 + 24 + 24 + 8,
            ),
        ] {
            let p = udp6_behind(&headers);
            let what: Vec<u8> = headers.iter().map(|h| h.0).collect();
            let l = Ipv6Layout::parse(&p).unwrap();
            assert_eq!(
                (l.l4_offset, l.proto, l.later_fragment),
                (l4_offset, proto::UDP, false),
                "{what:?}"
            );
            let k = l.flow_key(&p).unwrap();
            assert_eq!((k.src_port, k.dst_port), (40000, 53), "{what:?}");
        }
        // A header that claims more than the packet holds.
        let mut p = udp6_behind(&[(51, vec![0, 40, 0, 0, 0, 0, 0, 0])]);
        assert!(Ipv6Layout::parse(&p).is_err());
        p.truncate(41);
        assert!(Ipv6Layout::parse(&p).is_err());
    }

    #[test]
    fn icmpv6_echoes_key_on_their_identifier() {
        let b = || etherparse::PacketBuilder::ipv6(A6, B6, 64);
        let mut request = Vec::new();
        b().icmpv6_echo_request(0x4321, 1)
            .write(&mut request, b"x")
            .unwrap();
        let mut reply = Vec::new();
        b().icmpv6_echo_reply(0x4321, 1)
            .write(&mut reply, b"x")
            .unwrap();
        let mut other = Vec::new();
        b().icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
            etherparse::icmpv6::DestUnreachableCode::Port,
        ))
        .write(&mut other, b"x")
        .unwrap();
        for (p, port) in [(&request, 0x4321), (&reply, 0x4321), (&other, 0)] {
            let k = Ipv6Layout::parse(p).unwrap().flow_key(p).unwrap();
            assert_eq!(
                (k.proto, k.src_port, k.dst_port),
                (proto::ICMPV6, port, port)
            );
        }
    }

    #[test]
    fn an_extension_header_cut_short_by_the_payload_length_is_refused() {
        for next in [0u8, 43, 60, 44, 51] {
            // One byte of payload: no room for any extension header. The buffer ends
            // where the packet does.
            let mut p = vec![0u8; 41];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&1u16.to_be_bytes());
            p[6] = next;
            p[7] = 64;
            p[8..24].copy_from_slice(&A6);
            p[24..40].copy_from_slice(&B6);
            assert!(Ipv6Layout::parse(&p).is_err(), "next header {next}");
            // Three bytes: the length byte is there, the header is not.
            p.extend_from_slice(&[0, 0]);
            p[4..6].copy_from_slice(&3u16.to_be_bytes());
            p[41] = 1;
            assert!(
                Ipv6Layout::parse(&p).is_err(),
                "next header {next}, 3 bytes"
            );
        }
    }
}
