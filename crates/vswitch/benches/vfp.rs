//! VFP: a packet on the unified flow table's fast path versus a first packet on the slow
//! path through four layers (VNET decap, SLB NAT, ACL, a metering layer). Each iteration
//! copies a 114-byte VXLAN frame (a 64-byte inner frame) into the working buffer first.
//!
//! - `vfp/uft_hit`: one cached flow.
//! - `vfp/slow_path_4_layers`: every packet a new inbound connection: the walk, the NAT
//!   layer's state of it (both sides), its flow and its replies' flow cached (a fresh
//!   port every 50,000 connections, outside the timing).
//! - `vfp/snat_new_connection`: every packet a new outbound connection (a 64-byte SYN
//!   from the DIP) through the SNAT layer with 1,000 ports in hand (125 ranges), to
//!   1,000 destinations in turn: a free port found, the state kept, the flows cached. A
//!   fresh port every 50,000 connections, outside the timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use strata_vswitch::vfp::{
    Action, Conditions, DEFAULT_FLOW_LIMIT, Direction, Family, Group, Layer, NatSpec, Port, Rule,
    SnatSpec,
};
use strata_wire::checksum;
use strata_wire::vxlan::{self, Vni};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);

fn layer(name: &str, priority: u16, rules: Vec<Rule>) -> Layer {
    Layer {
        name: name.into(),
        priority,
        groups: vec![Group {
            name: "in".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules,
        }],
    }
}

fn rule(name: &str, conditions: Conditions, action: Action) -> Rule {
    Rule {
        name: name.into(),
        priority: 10,
        conditions,
        action,
    }
}

fn port() -> Port {
    let vni = Vni::new(4096).unwrap();
    let mut p = Port::new("bench", DEFAULT_FLOW_LIMIT);
    p.set_layer(layer(
        "VNET",
        100,
        vec![rule(
            "decap",
            Conditions {
                encapsulated: Some(true),
                vni: Some(vni),
                ..Conditions::any()
            },
            Action::Decap,
        )],
    ));
    p.set_layer(layer(
        "SLB_NAT",
        200,
        vec![rule(
            "vip",
            Conditions {
                dst: vec![IpNet::V4(Ipv4Net::from(VIP))],
                proto: Some(6),
                dst_ports: Some(80..=80),
                ..Conditions::any()
            },
            Action::Nat(NatSpec {
                src: None,
                dst: Some((Ipv4Addr::new(192, 168, 100, 74).into(), Some(80))),
            }),
        )],
    ));
    p.set_layer(layer(
        "ACL",
        300,
        vec![rule("allow", Conditions::any(), Action::Allow)],
    ));
    p.set_layer(layer(
        "METER",
        400,
        vec![rule(
            "count",
            Conditions {
                proto: Some(6),
                ..Conditions::any()
            },
            Action::Allow,
        )],
    ));
    p
}

/// VXLAN-encapsulated 64-byte frame (Ethernet + IPv4 + TCP + 10 bytes) to the VIP.
fn frame(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut inner = vec![0u8; 64];
    inner[0..6].copy_from_slice(&[0x00, 0x15, 0x5d, 0, 0, 74]);
    inner[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut inner[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&VIP.octets());
    let c = checksum::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&80u16.to_be_bytes());
    ip[32] = 0x50;
    ip[33] = 0x10;
    let mut f = vec![
        0x00, 0x15, 0x5d, 0, 0, 21, 0x00, 0x15, 0x5d, 0, 0, 20, 0x08, 0x00,
    ];
    let total = (36 + inner.len()) as u16;
    let mut outer = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 233, 20, 192, 168, 233, 21,
    ];
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum::checksum(&outer);
    outer[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&outer);
    f.extend_from_slice(&[0xc0, 0x01, 0x12, 0xb5]);
    f.extend_from_slice(&(total - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let mut vx = [0u8; 8];
    vxlan::emit(Vni::new(4096).unwrap(), &mut vx).unwrap();
    f.extend_from_slice(&vx);
    f.extend_from_slice(&inner);
    f
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("vfp");
    group.throughput(Throughput::Elements(1));
    let now = Duration::from_secs(1);

    let mut p = port();
    let template = frame(Ipv4Addr::new(192, 168, 200, 10), 49152);
    let mut buf = template.clone();
    p.process(now, Direction::In, &mut buf);
    group.bench_function("uft_hit", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&template);
            black_box(p.process(now, Direction::In, &mut buf))
        })
    });

    // Every packet a new flow: the slow path through four layers, the NAT layer's state,
    // the flow and its replies cached. A fresh port every 50,000 flows, outside the
    // timing.
    let flows: Vec<Vec<u8>> = (0..50_000u32)
        .map(|i| {
            frame(
                Ipv4Addr::from(0x0a00_0000 + i / 50_000),
                1024 + (i % 50_000) as u16,
            )
        })
        .collect();
    group.bench_function("slow_path_4_layers", |b| {
        b.iter_custom(|iters| each_new(iters, &flows, port, Direction::In))
    });

    // New outbound connections through SNAT, ports in hand.
    let dip = Ipv4Addr::new(192, 168, 100, 74);
    let snat_port = || {
        let mut p = port();
        p.set_layer(Layer {
            name: "SLB_SNAT".into(),
            priority: 150,
            groups: vec![Group {
                name: "out".into(),
                direction: Direction::Out,
                family: Family::Ipv4,
                priority: 1,
                rules: vec![rule(
                    "outbound",
                    Conditions {
                        src: vec![IpNet::V4(Ipv4Net::from(dip))],
                        proto: Some(6),
                        ..Conditions::any()
                    },
                    Action::Snat(SnatSpec {
                        vip: VIP.into(),
                        ranges: (0..125).map(|r| 1024 + 8 * r).collect(),
                    }),
                )],
            }],
        });
        p
    };
    let syns: Vec<Vec<u8>> = (0..50_000u32)
        .map(|i| {
            syn(
                dip,
                1024 + (i % 60_000) as u16,
                Ipv4Addr::from(0xcb00_7100 + i % 1000),
            )
        })
        .collect();
    group.bench_function("snat_new_connection", |b| {
        b.iter_custom(|iters| each_new(iters, &syns, snat_port, Direction::Out))
    });
    group.finish();
}

/// The time `iters` frames of `frames`, each of a new flow, take through ports `fresh`
/// makes: a fresh port for every run through `frames`, made outside the timing.
fn each_new(
    iters: u64,
    frames: &[Vec<u8>],
    fresh: impl Fn() -> Port,
    direction: Direction,
) -> Duration {
    let now = Duration::from_secs(1);
    let mut buf = Vec::with_capacity(256);
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(frames.len() as u64) as usize;
        let mut p = fresh();
        let start = std::time::Instant::now();
        for f in &frames[..n] {
            buf.clear();
            buf.extend_from_slice(f);
            black_box(p.process(now, direction, &mut buf));
        }
        spent += start.elapsed();
        left -= n as u64;
    }
    spent
}

/// A 64-byte TCP SYN from `src:sport` to `dst:80`.
fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[0x00, 0x15, 0x5d, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x00, 0x15, 0x5d, 0, 0, 74]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&80u16.to_be_bytes());
    ip[32] = 0x50;
    ip[33] = 0x02;
    f
}

criterion_group!(benches, bench);
criterion_main!(benches);
