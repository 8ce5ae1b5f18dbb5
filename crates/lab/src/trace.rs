//! Hop-by-hop paths, read from the frames that crossed the lab's segments.
//!
//! A packet keeps some bytes unchanged from end to end even where routers rewrite MACs
//! and TTL and NAT rewrites addresses, ports and checksums: the TCP sequence numbers,
//! flags and payload, the UDP length and payload, the ICMP type, code, sequence and
//! payload. Their hash, the packet's *fingerprint*, follows one packet from segment to
//! segment; VXLAN is looked through, so an encapsulated packet keeps its fingerprint.
//! A hop is a frame sent by the node that received the previous one with the same
//! fingerprint.

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_wire::ethernet::{ETHERTYPE_IPV4, Header};
use strata_wire::flow::{Ipv4Layout, proto};

/// A frame seen on a segment, with its senders and receivers resolved to nodes.
#[derive(Debug, Clone)]
pub struct Seen {
    pub time: Duration,
    pub network: usize,
    pub from: usize,
    pub to: Vec<usize>,
    pub bytes: Vec<u8>,
    pub fingerprint: Option<u64>,
    pub ip: Option<IpInfo>,
}

/// The innermost IPv4 packet of a frame, as far as paths need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub icmp_type: Option<u8>,
    pub ttl: u8,
}

impl Seen {
    pub fn new(
        time: Duration,
        network: usize,
        from: usize,
        to: Vec<usize>,
        bytes: Vec<u8>,
    ) -> Seen {
        let (fingerprint, ip) = match inner_ipv4(&bytes, 0) {
            Some((packet, layout)) => (
                Some(fingerprint(packet, &layout)),
                Some(info(packet, &layout)),
            ),
            None => (None, None),
        };
        Seen {
            time,
            network,
            from,
            to,
            bytes,
            fingerprint,
            ip,
        }
    }
}

/// The innermost IPv4 packet of an Ethernet frame, looking through VXLAN.
fn inner_ipv4(frame: &[u8], depth: u8) -> Option<(&[u8], Ipv4Layout)> {
    let (header, off) = Header::parse(frame).ok()?;
    if header.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let packet = &frame[off..];
    let layout = Ipv4Layout::parse(packet).ok()?;
    let packet = &packet[..layout.total_len];
    if depth < 2 && layout.proto == proto::UDP && layout.frag_offset == 0 {
        let udp = &packet[layout.header_len..];
        if udp.len() >= 8
            && u16::from_be_bytes([udp[2], udp[3]]) == strata_wire::vxlan::UDP_PORT
            && let Ok((_, inner)) = strata_wire::vxlan::parse(&udp[8..])
            && let Some(found) = inner_ipv4(inner, depth + 1)
        {
            return Some(found);
        }
    }
    Some((packet, layout))
}

fn info(packet: &[u8], l: &Ipv4Layout) -> IpInfo {
    let l4 = &packet[l.header_len..];
    let ports = l
        .flow_key(packet)
        .map(|k| (k.src_port, k.dst_port))
        .unwrap_or((0, 0));
    IpInfo {
        src: l.src,
        dst: l.dst,
        proto: l.proto,
        src_port: ports.0,
        dst_port: ports.1,
        tcp_flags: if l.proto == proto::TCP {
            l4.get(13).copied().unwrap_or(0)
        } else {
            0
        },
        icmp_type: (l.proto == proto::ICMP)
            .then(|| l4.first().copied())
            .flatten(),
        ttl: l.ttl,
    }
}

/// FNV-1a, 64 bits: a stable hash for a trace, not a security boundary.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fingerprint(packet: &[u8], l: &Ipv4Layout) -> u64 {
    let l4 = &packet[l.header_len..];
    let mut h = fnv(0xcbf2_9ce4_8422_2325, &[l.proto]);
    h = fnv(h, &(l4.len() as u32).to_be_bytes());
    if l.frag_offset != 0 {
        return fnv(h, l4);
    }
    match l.proto {
        proto::TCP if l4.len() >= 20 => {
            let data = (usize::from(l4[12] >> 4) * 4).clamp(20, l4.len());
            fnv(fnv(h, &l4[4..16]), &l4[data..])
        }
        proto::UDP if l4.len() >= 8 => fnv(fnv(h, &l4[4..6]), &l4[8..]),
        proto::ICMP if l4.len() >= 8 => fnv(fnv(fnv(h, &l4[0..2]), &l4[6..8]), &l4[8..]),
        _ => fnv(h, l4),
    }
}

/// Follows one packet from frame `start`: the indices of the frames that carried it.
pub fn follow(frames: &[Seen], start: usize) -> Vec<usize> {
    let mut chain = vec![start];
    let Some(fp) = frames[start].fingerprint else {
        return chain;
    };
    let mut current = start;
    while chain.len() < 32 {
        let receivers = &frames[current].to;
        let next = frames[current + 1..]
            .iter()
            .position(|g| g.fingerprint == Some(fp) && receivers.contains(&g.from))
            .map(|i| current + 1 + i);
        match next {
            Some(n) => {
                chain.push(n);
                current = n;
            }
            None => break,
        }
    }
    chain
}

/// Packets that went round in a loop: the same packet (fingerprint) sent by the same node
/// on the same network more than once with different TTLs. (A retransmission is the
/// same packet again, but with the same TTL at the same place.) One line per packet.
pub fn loops(
    frames: &[Seen],
    names: impl Fn(usize) -> String,
    networks: impl Fn(usize) -> String,
) -> Vec<String> {
    use std::collections::BTreeMap;
    /// Per (network, sender): the TTLs a packet was seen with.
    type Places = BTreeMap<(usize, usize), Vec<u8>>;
    // Per packet: its first frame, and where it was seen.
    let mut packets: BTreeMap<u64, (usize, Places)> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        let (Some(fp), Some(ip)) = (f.fingerprint, f.ip) else {
            continue;
        };
        let (_, places) = packets.entry(fp).or_insert((i, BTreeMap::new()));
        let ttls = places.entry((f.network, f.from)).or_default();
        if !ttls.contains(&ip.ttl) {
            ttls.push(ip.ttl);
        }
    }
    let mut found: Vec<(usize, String)> = packets
        .into_values()
        .filter(|(_, places)| places.values().any(|t| t.len() > 1))
        .map(|(i, places)| {
            let ttls = places.values().flatten();
            let (hi, lo) = (ttls.clone().max(), ttls.min());
            let rounds: Vec<String> = places
                .iter()
                .filter(|(_, t)| t.len() > 1)
                .map(|((network, from), t)| {
                    format!(
                        "{} on {} {} times",
                        names(*from),
                        networks(*network),
                        t.len()
                    )
                })
                .collect();
            (
                i,
                format!(
                    "{}: {}, TTL {} down to {}",
                    strata_wire::describe::frame(&frames[i].bytes),
                    rounds.join(", "),
                    hi.copied().unwrap_or(0),
                    lo.copied().unwrap_or(0)
                ),
            )
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, s)| s).collect()
}

/// The first frame at or after `from` that `pred` accepts.
pub fn find(frames: &[Seen], from: usize, pred: impl Fn(&Seen) -> bool) -> Option<usize> {
    frames[from..].iter().position(pred).map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, ttl: u8, payload: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, ttl, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = strata_wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0, 53, 0, 12, 0xaa, 0xbb, 1, 2, 3, payload]);
        f
    }

    #[test]
    fn follows_a_packet_through_a_router_and_nat() {
        let frames = vec![
            Seen::new(
                Duration::ZERO,
                0,
                0,
                vec![1],
                udp_frame([10, 0, 0, 1], [8, 8, 8, 8], 5000, 64, 4),
            ),
            // Unrelated traffic in between.
            Seen::new(
                Duration::from_micros(50),
                0,
                2,
                vec![1],
                udp_frame([10, 0, 0, 3], [8, 8, 8, 8], 7, 64, 5),
            ),
            // The router (node 1) forwards with TTL 63 and a NAT'd source and port.
            Seen::new(
                Duration::from_micros(100),
                1,
                1,
                vec![3],
                udp_frame([203, 0, 113, 1], [8, 8, 8, 8], 1024, 63, 4),
            ),
        ];
        assert_eq!(follow(&frames, 0), vec![0, 2]);
        assert_ne!(frames[0].fingerprint, frames[1].fingerprint);
    }
}
