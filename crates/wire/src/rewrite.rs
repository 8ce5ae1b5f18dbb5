//! Address and port rewriting for NAT, with incremental checksum updates (RFC 1624).
//!
//! Used by the NAT gateway and by the VFP engine's NAT actions. The packet must have been
//! validated by [`Ipv4Layout::parse`] or [`Ipv6Layout::parse`] (so every offset below is
//! in bounds); a transport header too short to hold its ports is left alone.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{update16, update32, update128};
use crate::flow::{Ipv4Layout, Ipv6Layout, proto};

/// Which end of a packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Source,
    Destination,
}

/// Rewrites the source or destination address and port (or ICMP echo identifier) of a
/// validated packet, updating the IP and transport checksums incrementally (RFC 1624).
pub fn rewrite(packet: &mut [u8], layout: &Ipv4Layout, which: Endpoint, addr: Ipv4Addr, port: u16) {
    let (addr_at, port_at) = match which {
        Endpoint::Source => (12, 0),
        Endpoint::Destination => (16, 2),
    };
    let old_addr = [
        packet[addr_at],
        packet[addr_at + 1],
        packet[addr_at + 2],
        packet[addr_at + 3],
    ];
    let new_addr = addr.octets();
    packet[addr_at..addr_at + 4].copy_from_slice(&new_addr);
    let ip_check = u16::from_be_bytes([packet[10], packet[11]]);
    packet[10..12].copy_from_slice(&update32(ip_check, old_addr, new_addr).to_be_bytes());

    let l4 = &mut packet[layout.header_len..layout.total_len];
    let (port_at, check_at, pseudo) = match layout.proto {
        proto::TCP => (port_at, 16, true),
        proto::UDP => (port_at, 6, true),
        // Echo identifier at offset 4; the ICMP checksum has no pseudo-header.
        proto::ICMP => (4, 2, false),
        _ => return,
    };
    if l4.len() < check_at + 2 || l4.len() < port_at + 2 {
        return;
    }
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    l4[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let mut check = u16::from_be_bytes([l4[check_at], l4[check_at + 1]]);
    if layout.proto == proto::UDP && check == 0 {
        // RFC 768: zero means the sender computed no checksum; leave it so.
        return;
    }
    if pseudo {
        check = update32(check, old_addr, new_addr);
    }
    check = update16(check, old_port, port);
    if layout.proto == proto::UDP && check == 0 {
        check = 0xffff;
    }
    l4[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
}

/// [`rewrite`] for IPv6: no header checksum, and every transport checksum (ICMPv6's too,
/// RFC 4443 section 2.3) covers the addresses through the pseudo-header. A UDP checksum
/// of zero, which IPv6 forbids (RFC 8200 section 8.1), is left zero (as over IPv4).
pub fn rewrite6(
    packet: &mut [u8],
    layout: &Ipv6Layout,
    which: Endpoint,
    addr: Ipv6Addr,
    port: u16,
) {
    let (addr_at, port_at) = match which {
        Endpoint::Source => (8, 0),
        Endpoint::Destination => (24, 2),
    };
    let mut old_addr = [0u8; 16];
    old_addr.copy_from_slice(&packet[addr_at..addr_at + 16]);
    let new_addr = addr.octets();
    packet[addr_at..addr_at + 16].copy_from_slice(&new_addr);
    if layout.later_fragment {
        return;
    }
    let l4 = &mut packet[layout.l4_offset..layout.total_len];
    let (port_at, check_at) = match layout.proto {
        proto::TCP => (Some(port_at), 16),
        proto::UDP => (Some(port_at), 6),
        // The echo identifier at offset 4 is the "port" of an echo.
        proto::ICMPV6 if matches!(l4.first(), Some(128 | 129)) => (Some(4), 2),
        proto::ICMPV6 => (None, 2),
        _ => return,
    };
    if l4.len() < check_at + 2 || port_at.is_some_and(|p| l4.len() < p + 2) {
        return;
    }
    let mut check = u16::from_be_bytes([l4[check_at], l4[check_at + 1]]);
    let old_port = port_at.map(|at| {
        let old = u16::from_be_bytes([l4[at], l4[at + 1]]);
        l4[at..at + 2].copy_from_slice(&port.to_be_bytes());
        old
    });
    if layout.proto == proto::UDP && check == 0 {
        // Forbidden, but not ours to fix: the ports move, the checksum stays absent.
        return;
    }
    check = update128(check, old_addr, new_addr);
    if let Some(old_port) = old_port {
        check = update16(check, old_port, port);
    }
    if layout.proto == proto::UDP && check == 0 {
        check = 0xffff;
    }
    l4[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const A: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const B: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x74,
    ];
    const C: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0xab, 0, 0, 0x07,
    ];
    const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

    /// IPv6 packets from etherparse's builder: an independent writer of every checksum.
    fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv6(src, dst, 64).tcp(sport, dport, 1000, 64000);
        let mut out = Vec::new();
        b.write(&mut out, PAYLOAD).unwrap();
        out
    }

    fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv6(src, dst, 64).udp(sport, dport);
        let mut out = Vec::new();
        b.write(&mut out, PAYLOAD).unwrap();
        out
    }

    fn echo6(src: [u8; 16], dst: [u8; 16], id: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv6(src, dst, 64).icmpv6_echo_request(id, 7);
        let mut out = Vec::new();
        b.write(&mut out, PAYLOAD).unwrap();
        out
    }

    fn nat6(mut p: Vec<u8>, which: Endpoint, addr: [u8; 16], port: u16) -> Vec<u8> {
        let layout = Ipv6Layout::parse(&p).unwrap();
        rewrite6(&mut p, &layout, which, Ipv6Addr::from(addr), port);
        p
    }

    #[test]
    fn ipv6_rewrites_match_packets_written_with_the_new_addresses() {
        // Destination NAT (VIP:80 -> DIP:8080) and its reverse, TCP and UDP.
        assert_eq!(
            nat6(tcp6(A, B, 40000, 80), Endpoint::Destination, C, 8080),
            tcp6(A, C, 40000, 8080)
        );
        assert_eq!(
            nat6(tcp6(C, A, 8080, 40000), Endpoint::Source, B, 80),
            tcp6(B, A, 80, 40000)
        );
        assert_eq!(
            nat6(udp6(A, B, 5353, 53), Endpoint::Destination, C, 53),
            udp6(A, C, 5353, 53)
        );
        // ICMPv6's checksum covers the addresses too; an echo's identifier is its port.
        assert_eq!(
            nat6(echo6(A, B, 9), Endpoint::Source, C, 31),
            echo6(C, B, 31)
        );
    }

    #[test]
    fn ipv6_flow_keys_walk_extension_headers() {
        let p = tcp6(A, B, 40000, 80);
        let layout = Ipv6Layout::parse(&p).unwrap();
        assert_eq!(layout.l4_offset, 40);
        let key = layout.flow_key(&p).unwrap();
        assert_eq!(
            (key.proto, key.src_port, key.dst_port),
            (proto::TCP, 40000, 80)
        );
        assert_eq!(key.reversed().reversed(), key);

        // The same packet behind an 8-byte hop-by-hop header (two PadN options' worth).
        let mut hbh = p[..40].to_vec();
        hbh[6] = 0; // Next Header: hop-by-hop
        let payload_len = u16::from_be_bytes([p[4], p[5]]) + 8;
        hbh[4..6].copy_from_slice(&payload_len.to_be_bytes());
        hbh.extend_from_slice(&[proto::TCP, 0, 1, 4, 0, 0, 0, 0]);
        hbh.extend_from_slice(&p[40..]);
        let layout = Ipv6Layout::parse(&hbh).unwrap();
        assert_eq!((layout.l4_offset, layout.proto), (48, proto::TCP));
        assert_eq!(layout.flow_key(&hbh).unwrap(), key);

        // Behind a 24-byte authentication header: its length field counts 4-byte words,
        // less 2 (RFC 4302 section 2.2).
        let mut ah = p[..40].to_vec();
        ah[6] = 51;
        let payload_len = u16::from_be_bytes([p[4], p[5]]) + 24;
        ah[4..6].copy_from_slice(&payload_len.to_be_bytes());
        ah.extend_from_slice(&[proto::TCP, 4, 0, 0, 0, 0, 0, 1]);
        ah.extend_from_slice(&[0; 16]);
        ah.extend_from_slice(&p[40..]);
        let layout = Ipv6Layout::parse(&ah).unwrap();
        assert_eq!((layout.l4_offset, layout.proto), (64, proto::TCP));
        assert_eq!(layout.flow_key(&ah).unwrap(), key);

        // A later fragment has no ports.
        let mut frag = p[..40].to_vec();
        frag[6] = 44;
        let payload_len = u16::from_be_bytes([p[4], p[5]]) + 8;
        frag[4..6].copy_from_slice(&payload_len.to_be_bytes());
        frag.extend_from_slice(&[proto::TCP, 0, 0x05, 0x00, 0, 0, 0, 1]);
        frag.extend_from_slice(&p[40..]);
        let layout = Ipv6Layout::parse(&frag).unwrap();
        assert!(layout.later_fragment);
        assert_eq!(layout.flow_key(&frag), Err(crate::Error::Fragment));
    }

    #[test]
    fn truncated_and_wrong_version_ipv6_are_refused() {
        let p = tcp6(A, B, 40000, 80);
        // An authentication header cut after its first byte.
        let mut ah = p[..40].to_vec();
        ah[4..6].copy_from_slice(&1u16.to_be_bytes());
        ah[6] = 51;
        ah.push(proto::TCP);
        assert!(Ipv6Layout::parse(&ah).is_err());
        assert!(Ipv6Layout::parse(&p[..39]).is_err());
        assert!(Ipv6Layout::parse(&p[..p.len() - 1]).is_err());
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert!(Ipv6Layout::parse(&v4).is_err());
    }

    proptest::proptest! {
        /// Any bytes: parsing, keying and rewriting never panic.
        #[test]
        fn any_ipv6_bytes_are_handled(mut p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Some(first) = p.first_mut() {
                *first = 0x60 | (*first & 0x0f);
            }
            if let Ok(layout) = Ipv6Layout::parse(&p) {
                let _ = layout.flow_key(&p);
                rewrite6(&mut p, &layout, Endpoint::Source, Ipv6Addr::from(C), 1);
                rewrite6(&mut p, &layout, Endpoint::Destination, Ipv6Addr::from(C), 2);
            }
        }
    }

    const V4_A: [u8; 4] = [192, 168, 200, 10];
    const V4_B: [u8; 4] = [192, 168, 133, 74];
    const V4_C: [u8; 4] = [192, 168, 100, 74];

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 64000)
            .write(&mut out, PAYLOAD)
            .unwrap();
        out
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn echo4(src: [u8; 4], dst: [u8; 4], id: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .icmpv4_echo_request(id, 7)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn nat4(mut p: Vec<u8>, which: Endpoint, addr: [u8; 4], port: u16) -> Vec<u8> {
        let layout = Ipv4Layout::parse(&p).unwrap();
        rewrite(&mut p, &layout, which, Ipv4Addr::from(addr), port);
        p
    }

    #[test]
    fn ipv4_rewrites_match_packets_written_with_the_new_addresses() {
        assert_eq!(
            nat4(
                tcp4(V4_A, V4_B, 40000, 80),
                Endpoint::Destination,
                V4_C,
                8080
            ),
            tcp4(V4_A, V4_C, 40000, 8080)
        );
        assert_eq!(
            nat4(tcp4(V4_C, V4_A, 8080, 40000), Endpoint::Source, V4_B, 80),
            tcp4(V4_B, V4_A, 80, 40000)
        );
        assert_eq!(
            nat4(
                udp4(V4_A, V4_B, 5353, 53, PAYLOAD),
                Endpoint::Destination,
                V4_C,
                5300
            ),
            udp4(V4_A, V4_C, 5353, 5300, PAYLOAD)
        );
        assert_eq!(
            nat4(
                udp4(V4_A, V4_B, 5353, 53, b""),
                Endpoint::Source,
                V4_C,
                1024
            ),
            udp4(V4_C, V4_B, 1024, 53, b""),
            "a bare UDP header is long enough"
        );
        // The echo identifier is the port; ICMP's checksum has no pseudo-header.
        assert_eq!(
            nat4(echo4(V4_A, V4_B, 9, PAYLOAD), Endpoint::Source, V4_C, 31),
            echo4(V4_C, V4_B, 31, PAYLOAD)
        );
        assert_eq!(
            nat4(echo4(V4_A, V4_B, 9, b""), Endpoint::Destination, V4_C, 31),
            echo4(V4_A, V4_C, 31, b"")
        );
    }

    /// The port whose UDP checksum comes out as zero (sent as 0xffff), found with
    /// etherparse.
    fn port_summing_to_zero(udp: impl Fn(u16) -> Vec<u8>, at: usize) -> u16 {
        (0..=u16::MAX)
            .find(|p| udp(*p)[at..at + 2] == [0xff, 0xff])
            .unwrap()
    }

    #[test]
    fn a_udp_checksum_that_comes_out_zero_is_sent_as_all_ones() {
        let port = port_summing_to_zero(|p| udp4(V4_C, V4_A, p, 53, PAYLOAD), 26);
        assert_eq!(
            nat4(
                udp4(V4_A, V4_A, 7, 53, PAYLOAD),
                Endpoint::Source,
                V4_C,
                port
            ),
            udp4(V4_C, V4_A, port, 53, PAYLOAD)
        );
        let port = port_summing_to_zero(|p| udp6(C, A, p, 53), 46);
        assert_eq!(
            nat6(udp6(A, A, 7, 53), Endpoint::Source, C, port),
            udp6(C, A, port, 53)
        );
    }

    #[test]
    fn a_udp_checksum_of_zero_stays_zero() {
        let mut p = udp4(V4_A, V4_B, 5353, 53, PAYLOAD);
        p[26..28].copy_from_slice(&[0, 0]);
        let mut want = udp4(V4_A, V4_C, 5353, 5300, PAYLOAD);
        want[26..28].copy_from_slice(&[0, 0]);
        assert_eq!(nat4(p, Endpoint::Destination, V4_C, 5300), want);
        let mut p = udp6(A, B, 5353, 53);
        p[46..48].copy_from_slice(&[0, 0]);
        let out = nat6(p, Endpoint::Destination, C, 5300);
        assert_eq!(&out[24..40], &C, "the address is rewritten");
        assert_eq!(
            &out[40..48],
            &[0x14, 0xe9, 0x14, 0xb4, 0, 26, 0, 0],
            "the port too; the checksum stays absent"
        );
    }

    /// An IPv4 header (checksummed) over `l4` of protocol `proto`.
    fn raw4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&V4_A);
        p.extend_from_slice(&V4_B);
        let c = crate::checksum::checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn a_transport_header_too_short_for_its_fields_keeps_them() {
        for (proto, len) in [
            (proto::TCP, 17),
            (proto::UDP, 7),
            (proto::ICMP, 3),
            (proto::ICMP, 5),
        ] {
            let l4: Vec<u8> = (1..=len).collect();
            let out = nat4(raw4(proto, &l4), Endpoint::Destination, V4_C, 9);
            assert_eq!(&out[20..], &l4[..], "proto {proto}, {len} bytes");
            assert_eq!(&out[16..20], &V4_C, "the address is rewritten all the same");
            assert_eq!(
                crate::checksum::sum(&out[..20]),
                0xffff,
                "with its header checksum"
            );
        }
        // Another protocol: only the addresses.
        let out = nat4(
            raw4(47, &[1, 2, 3, 4, 5, 6, 7, 8]),
            Endpoint::Source,
            V4_C,
            9,
        );
        assert_eq!(&out[20..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[12..16], &V4_C);
    }

    #[test]
    fn an_icmpv6_error_has_its_checksum_updated_and_no_port() {
        let mut p = Vec::new();
        PacketBuilder::ipv6(A, B, 64)
            .icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut p, PAYLOAD)
            .unwrap();
        let mut want = Vec::new();
        PacketBuilder::ipv6(C, B, 64)
            .icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut want, PAYLOAD)
            .unwrap();
        assert_eq!(nat6(p, Endpoint::Source, C, 99), want);
    }

    #[test]
    fn ipv6_transport_headers_too_short_keep_their_fields() {
        for (proto, len) in [
            (proto::TCP, 17u8),
            (proto::UDP, 7),
            (proto::ICMPV6, 3),
            (proto::ICMPV6, 5),
        ] {
            let mut p = tcp6(A, B, 1, 2)[..40].to_vec();
            p[6] = proto;
            p[4..6].copy_from_slice(&u16::from(len).to_be_bytes());
            let mut l4: Vec<u8> = (1..=len).collect();
            l4[0] = 128;
            p.extend_from_slice(&l4);
            let out = nat6(p, Endpoint::Destination, C, 9);
            assert_eq!(&out[40..], &l4[..], "proto {proto}, {len} bytes");
            assert_eq!(&out[24..40], &C);
        }
    }

    #[test]
    fn the_shortest_headers_that_hold_their_fields_are_rewritten() {
        // ICMP: 6 bytes hold the checksum and the identifier.
        let mut p = raw4(proto::ICMP, &[8, 0, 0, 0, 0x12, 0x34]);
        let c = crate::checksum::checksum(&p[20..]);
        p[22..24].copy_from_slice(&c.to_be_bytes());
        let out = nat4(p, Endpoint::Source, V4_C, 0x4321);
        assert_eq!(&out[24..26], &[0x43, 0x21]);
        assert_eq!(
            crate::checksum::sum(&out[20..]),
            0xffff,
            "ICMP checksum still right"
        );
        // IPv6: a TCP header with no payload, and a 6-byte ICMPv6 echo.
        let mut t = Vec::new();
        PacketBuilder::ipv6(A, B, 64)
            .tcp(40000, 80, 1, 64000)
            .write(&mut t, b"")
            .unwrap();
        let mut want = Vec::new();
        PacketBuilder::ipv6(A, C, 64)
            .tcp(40000, 8080, 1, 64000)
            .write(&mut want, b"")
            .unwrap();
        assert_eq!(nat6(t, Endpoint::Destination, C, 8080), want);
        let mut e = echo6(A, B, 9)[..40].to_vec();
        e[4..6].copy_from_slice(&6u16.to_be_bytes());
        e.extend_from_slice(&[128, 0, 0, 0, 0, 9]);
        let out = nat6(e, Endpoint::Source, C, 31);
        assert_eq!(&out[44..46], &[0, 31], "the identifier");
        assert_eq!(&out[8..24], &C);
        assert_ne!(&out[42..44], &[0, 0], "the checksum was updated");
    }
}
