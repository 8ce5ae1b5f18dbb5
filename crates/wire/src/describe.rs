//! One-line descriptions of frames, in the spirit of tcpdump, for traces and logs.
//! Off the per-packet path: this allocates.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, Header};
use crate::flow::{Ipv4Layout, proto};

/// Describes an Ethernet frame. Never fails: what cannot be read is said so.
pub fn frame(frame: &[u8]) -> String {
    let mut out = String::new();
    describe_frame(frame, &mut out);
    out
}

fn describe_frame(frame: &[u8], out: &mut String) {
    let (header, off) = match Header::parse(frame) {
        Ok(h) => h,
        Err(e) => {
            let _ = write!(out, "malformed frame: {e}");
            return;
        }
    };
    if let Some(tag) = header.vlan {
        let _ = write!(out, "vlan {} ", tag.vid);
    }
    let payload = &frame[off..];
    match header.ethertype {
        ETHERTYPE_ARP => describe_arp(payload, out),
        ETHERTYPE_IPV4 => describe_ipv4(payload, out),
        other => {
            let _ = write!(out, "ethertype {other:#06x}, {} bytes", payload.len());
        }
    }
}

fn describe_arp(p: &[u8], out: &mut String) {
    if p.len() < 28 || p[0..2] != [0, 1] || p[2..4] != [8, 0] || p[4] != 6 || p[5] != 4 {
        let _ = write!(out, "ARP malformed or not Ethernet/IPv4");
        return;
    }
    let sha = crate::EthernetAddress::from_bytes(&p[8..14]);
    let spa = Ipv4Addr::new(p[14], p[15], p[16], p[17]);
    let tpa = Ipv4Addr::new(p[24], p[25], p[26], p[27]);
    let _ = match u16::from_be_bytes([p[6], p[7]]) {
        1 => write!(out, "ARP who-has {tpa} tell {spa}"),
        2 => write!(out, "ARP {spa} is-at {sha}"),
        op => write!(out, "ARP op {op}"),
    };
}

fn describe_ipv4(p: &[u8], out: &mut String) {
    let l = match Ipv4Layout::parse(p) {
        Ok(l) => l,
        Err(e) => {
            let _ = write!(out, "IPv4 malformed: {e}");
            return;
        }
    };
    let l4 = &p[l.header_len..l.total_len];
    if l.frag_offset != 0 {
        let _ = write!(
            out,
            "IPv4 {} > {} fragment offset {} proto {}",
            l.src, l.dst, l.frag_offset, l.proto
        );
        return;
    }
    match l.proto {
        proto::ICMP if l4.len() >= 8 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            let seq = u16::from_be_bytes([l4[6], l4[7]]);
            let _ = match (l4[0], l4[1]) {
                (8, _) => write!(
                    out,
                    "ICMP echo request {} > {} id {id} seq {seq}",
                    l.src, l.dst
                ),
                (0, _) => write!(
                    out,
                    "ICMP echo reply {} > {} id {id} seq {seq}",
                    l.src, l.dst
                ),
                (3, code) => write!(out, "ICMP unreachable code {code} {} > {}", l.src, l.dst),
                (11, code) => write!(out, "ICMP time exceeded code {code} {} > {}", l.src, l.dst),
                (t, c) => write!(out, "ICMP type {t} code {c} {} > {}", l.src, l.dst),
            };
        }
        proto::TCP if l4.len() >= 20 => {
            let sport = u16::from_be_bytes([l4[0], l4[1]]);
            let dport = u16::from_be_bytes([l4[2], l4[3]]);
            let data_off = usize::from(l4[12] >> 4) * 4;
            let flags = l4[13];
            let mut names = String::new();
            for (bit, name) in [
                (0x02, "SYN"),
                (0x10, "ACK"),
                (0x08, "PSH"),
                (0x01, "FIN"),
                (0x04, "RST"),
            ] {
                if flags & bit != 0 {
                    if !names.is_empty() {
                        names.push(',');
                    }
                    names.push_str(name);
                }
            }
            let len = l4.len().saturating_sub(data_off);
            let _ = write!(
                out,
                "TCP {}:{sport} > {}:{dport} [{names}] len {len}",
                l.src, l.dst
            );
        }
        proto::UDP if l4.len() >= 8 => {
            let sport = u16::from_be_bytes([l4[0], l4[1]]);
            let dport = u16::from_be_bytes([l4[2], l4[3]]);
            let body = &l4[8..];
            if dport == crate::vxlan::UDP_PORT
                && let Ok((vni, inner)) = crate::vxlan::parse(body)
            {
                let _ = write!(
                    out,
                    "VXLAN vni {vni} {}:{sport} > {}:{dport} | ",
                    l.src, l.dst
                );
                describe_frame(inner, out);
                return;
            }
            let app = match (sport, dport) {
                (53, _) | (_, 53) => " DNS",
                _ => "",
            };
            let _ = write!(
                out,
                "UDP{app} {}:{sport} > {}:{dport} len {}",
                l.src,
                l.dst,
                body.len()
            );
        }
        other => {
            let _ = write!(out, "IPv4 {} > {} proto {other}", l.src, l.dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arp_request() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[192, 168, 200, 10, 0, 0, 0, 0, 0, 0, 192, 168, 200, 1]);
        assert_eq!(frame(&f), "ARP who-has 192.168.200.1 tell 192.168.200.10");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = frame(&bytes);
        }
    }

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const A: [u8; 4] = [192, 168, 200, 10];
    const B: [u8; 4] = [192, 168, 133, 74];

    fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
    }

    #[test]
    fn arp_replies_and_what_is_not_ethernet_ipv4_arp() {
        let mut f = MAC_A.to_vec();
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&[0x08, 0x06]);
        let arp = [
            0, 1, 8, 0, 6, 4, 0, 2, 0x00, 0x15, 0x5d, 0, 0, 7, 192, 168, 200, 1, 2, 0, 0, 0, 0, 1,
            192, 168, 200, 10,
        ];
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut p = arp.to_vec();
            edit(&mut p);
            let mut g = f.clone();
            g.extend_from_slice(&p);
            frame(&g)
        };
        assert_eq!(with(&|_| ()), "ARP 192.168.200.1 is-at 00-15-5d-00-00-07");
        assert_eq!(with(&|p| p[7] = 9), "ARP op 9");
        let malformed = "ARP malformed or not Ethernet/IPv4";
        assert_eq!(with(&|p| p.truncate(27)), malformed);
        assert_eq!(with(&|p| p[1] = 6), malformed, "hardware type");
        assert_eq!(with(&|p| p[2] = 0x86), malformed, "protocol type");
        assert_eq!(with(&|p| p[4] = 8), malformed, "hardware size");
        assert_eq!(with(&|p| p[5] = 16), malformed, "protocol size");
    }

    fn written(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn tcp_shows_ports_flags_and_payload_length() {
        let f = written(
            eth().ipv4(A, B, 64).tcp(40000, 80, 1, 64000).syn().ack(1),
            b"",
        );
        assert_eq!(
            frame(&f),
            "TCP 192.168.200.10:40000 > 192.168.133.74:80 [SYN,ACK] len 0"
        );
        let f = written(
            eth()
                .ipv4(A, B, 64)
                .tcp(40000, 80, 1, 64000)
                .psh()
                .ack(1)
                .fin()
                .rst(),
            b"GET /",
        );
        assert_eq!(
            frame(&f),
            "TCP 192.168.200.10:40000 > 192.168.133.74:80 [ACK,PSH,FIN,RST] len 5"
        );
        // With options (data offset 6): they are not payload.
        let f = written(
            eth()
                .ipv4(A, B, 64)
                .tcp(40000, 80, 1, 64000)
                .syn()
                .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                .unwrap(),
            b"",
        );
        assert_eq!(
            frame(&f),
            "TCP 192.168.200.10:40000 > 192.168.133.74:80 [SYN] len 0"
        );
    }

    #[test]
    fn udp_icmp_vxlan_fragments_and_others() {
        let mut dns = Vec::new();
        eth()
            .ipv4(A, B, 64)
            .udp(5353, 53)
            .write(&mut dns, b"query")
            .unwrap();
        assert_eq!(
            frame(&dns),
            "UDP DNS 192.168.200.10:5353 > 192.168.133.74:53 len 5"
        );
        let mut answer = Vec::new();
        eth()
            .ipv4(B, A, 64)
            .udp(53, 5353)
            .write(&mut answer, b"ans")
            .unwrap();
        assert_eq!(
            frame(&answer),
            "UDP DNS 192.168.133.74:53 > 192.168.200.10:5353 len 3"
        );
        let mut plain = Vec::new();
        eth()
            .ipv4(A, B, 64)
            .udp(5000, 6000)
            .write(&mut plain, b"")
            .unwrap();
        assert_eq!(
            frame(&plain),
            "UDP 192.168.200.10:5000 > 192.168.133.74:6000 len 0"
        );

        let mut vx = [0u8; 8];
        crate::vxlan::emit(crate::vxlan::Vni::new(4096).unwrap(), &mut vx).unwrap();
        let mut inner_and_header = vx.to_vec();
        inner_and_header.extend_from_slice(&plain);
        let mut outer = Vec::new();
        eth()
            .ipv4([192, 168, 233, 20], [192, 168, 233, 21], 64)
            .udp(49200, crate::vxlan::UDP_PORT)
            .write(&mut outer, &inner_and_header)
            .unwrap();
        assert_eq!(
            frame(&outer),
            "VXLAN vni 4096 192.168.233.20:49200 > 192.168.233.21:4789 | UDP 192.168.200.10:5000 > 192.168.133.74:6000 len 0"
        );
        // On port 4789 but not VXLAN (I flag clear): plain UDP.
        let mut not_vx = Vec::new();
        eth()
            .ipv4(A, B, 64)
            .udp(49200, crate::vxlan::UDP_PORT)
            .write(&mut not_vx, &[0; 8])
            .unwrap();
        assert_eq!(
            frame(&not_vx),
            "UDP 192.168.200.10:49200 > 192.168.133.74:4789 len 8"
        );

        let icmp = |t: etherparse::Icmpv4Type| {
            let mut out = Vec::new();
            eth().ipv4(A, B, 64).icmpv4(t).write(&mut out, b"").unwrap();
            frame(&out)
        };
        use etherparse::{IcmpEchoHeader as E, Icmpv4Type as T};
        assert_eq!(
            icmp(T::EchoRequest(E { id: 7, seq: 2 })),
            "ICMP echo request 192.168.200.10 > 192.168.133.74 id 7 seq 2"
        );
        assert_eq!(
            icmp(T::EchoReply(E { id: 7, seq: 2 })),
            "ICMP echo reply 192.168.200.10 > 192.168.133.74 id 7 seq 2"
        );
        assert_eq!(
            icmp(T::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port
            )),
            "ICMP unreachable code 3 192.168.200.10 > 192.168.133.74"
        );
        assert_eq!(
            icmp(T::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit
            )),
            "ICMP time exceeded code 0 192.168.200.10 > 192.168.133.74"
        );
        assert_eq!(
            icmp(T::Unknown {
                type_u8: 13,
                code_u8: 1,
                bytes5to8: [0; 4]
            }),
            "ICMP type 13 code 1 192.168.200.10 > 192.168.133.74"
        );
    }

    /// An Ethernet frame of an IPv4 packet of protocol `proto` over `l4`, at `frag` (flags
    /// and offset).
    fn ipv4_frame(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut f = MAC_A.to_vec();
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&A);
        p.extend_from_slice(&B);
        let c = crate::checksum::checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&p);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn short_transport_headers_fragments_and_other_protocols() {
        let ours = "IPv4 192.168.200.10 > 192.168.133.74 proto";
        assert_eq!(
            frame(&ipv4_frame(proto::TCP, 0, &[0; 19])),
            format!("{ours} 6")
        );
        assert_eq!(
            frame(&ipv4_frame(proto::UDP, 0, &[0; 7])),
            format!("{ours} 17")
        );
        assert_eq!(
            frame(&ipv4_frame(proto::ICMP, 0, &[8; 7])),
            format!("{ours} 1")
        );
        assert_eq!(frame(&ipv4_frame(47, 0, &[0; 8])), format!("{ours} 47"));
        assert_eq!(
            frame(&ipv4_frame(proto::ICMP, 0, &[8, 0, 0, 0, 0, 1, 0, 2])),
            "ICMP echo request 192.168.200.10 > 192.168.133.74 id 1 seq 2"
        );
        assert_eq!(
            frame(&ipv4_frame(proto::UDP, 0x2000 | 3, &[0; 8])),
            "IPv4 192.168.200.10 > 192.168.133.74 fragment offset 24 proto 17"
        );
        assert_eq!(
            frame(&ipv4_frame(
                proto::TCP,
                0x2000,
                &[
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0
                ]
            )),
            "TCP 192.168.200.10:0 > 192.168.133.74:0 [] len 0",
            "a first fragment has its ports"
        );
        let mut bad = ipv4_frame(proto::TCP, 0, &[0; 20]);
        bad[24] ^= 1;
        assert_eq!(
            frame(&bad),
            "IPv4 malformed: ipv4: malformed (bad header checksum)"
        );
    }

    #[test]
    fn vlans_unknown_ethertypes_and_runts() {
        let mut f = MAC_A.to_vec();
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x88, 0xcc, 1, 2, 3]);
        assert_eq!(frame(&f), "vlan 100 ethertype 0x88cc, 3 bytes");
        assert!(
            frame(&f[..10]).starts_with("malformed frame: "),
            "{}",
            frame(&f[..10])
        );
    }
}
