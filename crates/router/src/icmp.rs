//! ICMP errors a router sends (RFC 792; RFC 1812 section 4.3.2).

use std::net::Ipv4Addr;

use strata_wire::checksum;
use strata_wire::flow::{Ipv4Layout, proto};

pub(crate) const UNREACHABLE: u8 = 3;
pub(crate) const TIME_EXCEEDED: u8 = 11;
pub(crate) const NET_UNREACHABLE: u8 = 0;
pub(crate) const HOST_UNREACHABLE: u8 = 1;
pub(crate) const FRAG_NEEDED: u8 = 4;

/// Builds the IPv4 packet of an ICMP error about `offending` (an IPv4 packet), or `None`
/// where RFC 1812 4.3.2.7 forbids one: about an ICMP error, a non-first fragment, or a
/// packet from an address that is not a unicast host.
pub(crate) fn error(
    from: Ipv4Addr,
    ttl: u8,
    ident: u16,
    offending: &[u8],
    kind: u8,
    code: u8,
    next_hop_mtu: u32,
) -> Option<Vec<u8>> {
    let l = Ipv4Layout::parse(offending).ok()?;
    if l.frag_offset != 0
        || l.src.is_unspecified()
        || l.src.is_broadcast()
        || l.src.is_multicast()
        || l.src.is_loopback()
        || l.dst.is_broadcast()
        || l.dst.is_multicast()
    {
        return None;
    }
    if l.proto == proto::ICMP {
        let t = offending.get(l.header_len).copied()?;
        // Only queries (echo, timestamp, ...) may provoke an error; not errors.
        if !matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return None;
        }
    }
    // The offending header and the first 8 bytes of its payload.
    let quoted = &offending[..(l.header_len + 8).min(l.total_len)];
    let total = 20 + 8 + quoted.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[8] = ttl;
    p[9] = proto::ICMP;
    p[12..16].copy_from_slice(&from.octets());
    p[16..20].copy_from_slice(&l.src.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = kind;
    p[21] = code;
    // RFC 1191: the next-hop MTU of a "fragmentation needed" in the low 16 bits of the
    // unused word (the callers pass 0 for every other error, whose word is all zero).
    p[26..28].copy_from_slice(&(next_hop_mtu.min(0xffff) as u16).to_be_bytes());
    p[28..].copy_from_slice(quoted);
    let c = checksum::checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    Some(p)
}
