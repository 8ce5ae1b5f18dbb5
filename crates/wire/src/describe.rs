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
}
