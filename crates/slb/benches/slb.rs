//! SLB data path benchmarks.
//!
//! - `maglev_build/N`: building the 65,537-slot table for N backends.
//! - `mux/hit_one_flow`: one flow over and over: flow-table hit and VXLAN encapsulation of
//!   a 64-byte inner frame (a 50-byte IPv4 packet).
//! - `mux/hit_100k_flows`: 100,000 established flows in turn (the table no longer fits in
//!   cache).
//! - `mux/miss`: every packet a new flow, so every packet takes the Maglev lookup and a
//!   flow-table insert.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_slb::hash::Distribution;
use strata_slb::maglev::Maglev;
use strata_slb::mux::{Dip, Mux, MuxConfig, VipConfig, VipKey};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);

fn maglev(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for n in [10u32, 100, 1000] {
        let ids: Vec<[u8; 6]> = (0..n)
            .map(|i| {
                let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
                [a, b, c, d, 0, 80]
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &ids, |b, ids| {
            b.iter(|| Maglev::build(ids.iter().map(|id| (&id[..], 1))))
        });
    }
    group.finish();
}

fn mux(flows_new: usize, flows_established: usize) -> Mux {
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
        dips: (0..10)
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
fn packet(src: Ipv4Addr, sport: u16) -> Vec<u8> {
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
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x10;
    p
}

fn flows(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| packet(Ipv4Addr::from(0x0a00_0000 + i / 50), 1024 + (i % 50) as u16))
        .collect()
}

fn mux_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("mux");
    group.throughput(Throughput::Elements(1));
    let now = Duration::from_secs(1);
    let mut out = vec![0u8; 2048];

    let mut m = mux(64 * 1024, 256 * 1024);
    let one = packet(Ipv4Addr::new(192, 168, 200, 10), 49152);
    m.encapsulate(now, &one, &mut out).unwrap();
    group.bench_function("hit_one_flow", |b| {
        b.iter(|| black_box(m.encapsulate(now, black_box(&one), &mut out).unwrap()))
    });

    let many = flows(100_000);
    let mut m = mux(256 * 1024, 256 * 1024);
    for p in &many {
        m.encapsulate(now, p, &mut out).unwrap();
        m.encapsulate(now, p, &mut out).unwrap();
    }
    let mut i = 0;
    group.bench_function("hit_100k_flows", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            black_box(m.encapsulate(now, &many[i], &mut out).unwrap())
        })
    });

    let fresh = flows(65_536);
    let mut m = mux(4, 4);
    let mut i = 0;
    group.bench_function("miss", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            black_box(m.encapsulate(now, &fresh[i], &mut out).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, maglev, mux_path);
criterion_main!(benches);
