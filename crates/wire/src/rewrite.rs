//! Address and port rewriting for NAT, with incremental checksum updates (RFC 1624).
//!
//! Used by the NAT gateway and by the VFP engine's NAT actions. The packet must have been
//! validated by [`Ipv4Layout::parse`] (so every offset below is in bounds); a transport
//! header too short to hold its ports is left alone.

use std::net::Ipv4Addr;

use crate::checksum::{update16, update32};
use crate::flow::{Ipv4Layout, proto};

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
