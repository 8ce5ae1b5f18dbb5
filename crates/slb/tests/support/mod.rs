//! The Mux the SLB benchmarks and tests run: one VIP (192.168.133.74 TCP 80) over
//! DIPs, and 50-byte IPv4/TCP packets to it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::Ipv4Addr;

use strata_slb::hash::Distribution;
use strata_slb::mux::{Dip, Mux, MuxConfig, SnatKey, SnatTarget, VipConfig, VipKey};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);

/// A Mux with the given flow-table quotas and `dips` DIPs behind the VIP.
pub fn mux(flows_new: usize, flows_established: usize, dips: u8) -> Mux {
    let mut config = MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([2, 0, 0, 0, 0, 1]),
    );
    config.flows_new = flows_new;
    config.flows_established = flows_established;
    let mut m = Mux::new(config);
    m.set_vip(VipConfig {
        key: VipKey {
            vip: VIP,
            proto: 6,
            port: 80,
        },
        dips: (0..dips)
            .map(|i| Dip {
                addr: Ipv4Addr::new(192, 168, 100, 70 + i),
                port: 80,
                host_pa: Ipv4Addr::new(192, 168, 233, 21 + i),
                mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, i]),
                weight: 1,
            })
            .collect(),
        distribution: Distribution::FiveTuple,
        vni: Vni::new(4096).unwrap(),
    });
    m
}

/// A 50-byte IPv4/TCP packet (64 bytes as an Ethernet frame) to the VIP.
pub fn packet(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    packet_to(src, sport, 80)
}

/// A 50-byte IPv4/TCP packet to VIP:`dport`.
pub fn packet_to(src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 50];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&50u16.to_be_bytes());
    p[8] = 63;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&VIP.octets());
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x10;
    p
}

/// Gives the VIP `ranges` SNAT ranges from port 1024, each held by one of 100 DIPs.
pub fn snat_ranges(m: &mut Mux, ranges: u16) {
    for r in 0..ranges {
        let dip = (r % 100) as u8;
        m.set_snat(
            SnatKey::of(VIP, 1024 + 8 * r),
            SnatTarget {
                dip: Ipv4Addr::new(10, 1, 0, dip),
                host_pa: Ipv4Addr::new(192, 168, 234, dip),
                mac: EthernetAddress([0x00, 0x15, 0x5d, 1, 0, dip]),
                vni: Vni::new(4097).unwrap(),
            },
        );
    }
}

/// `n` replies from servers' port 80 to the VIP's SNAT ports `1024..1024 + ports`.
pub fn snat_replies(n: u32, ports: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let server = Ipv4Addr::from(0xcb00_7100 + i % 200);
            packet_to(server, 80, 1024 + (i % u32::from(ports)) as u16)
        })
        .collect()
}

/// `n` packets of `n` different flows (50 source ports per source address).
pub fn flows(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| packet(Ipv4Addr::from(0x0a00_0000 + i / 50), 1024 + (i % 50) as u16))
        .collect()
}
