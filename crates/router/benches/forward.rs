//! Router forwarding path: frames per second per core with a 1,000-route and a
//! 100,000-route FIB. Each iteration receives one 64-byte frame, forwards it (LPM, TTL,
//! checksum update, MAC rewrite with a resolved neighbour) and takes it back from the
//! outbox, reusing the same buffer, so the figure is the forwarding work alone. One run
//! sends every frame to the same destination (a hot path through the trie); the
//! `spread_dst` run cycles through 4,096 destinations across the 100,000 routes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_router::{Config, IfIndex, Interface, NoHooks, Router};
use strata_wire::EthernetAddress;

const IN_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);

fn router(routes: u32) -> Router {
    let mut r = Router::new(Config {
        forwarding: true,
        ..Config::default()
    });
    r.add_interface(Interface {
        mac: IN_MAC,
        addr: "192.168.200.1/24".parse().unwrap(),
        mtu: 1500,
    });
    r.add_interface(Interface {
        mac: EthernetAddress([2, 0, 0, 0, 1, 2]),
        addr: "192.168.100.1/24".parse().unwrap(),
        mtu: 1500,
    });
    // Routes spread over 10.0.0.0/8 and beyond as /24s, all via one next hop.
    for i in 0..routes {
        let net = 0x0a00_0000u32 + (i << 8);
        let prefix = ipnet::Ipv4Net::new(Ipv4Addr::from(net), 24).unwrap();
        r.add_route(prefix, "192.168.100.7".parse().unwrap())
            .unwrap();
    }
    // Resolve the next hop with an ARP reply.
    let mut arp = vec![
        2, 0, 0, 0, 1, 2, 2, 0, 0, 0, 0, 7, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2,
    ];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 7, 192, 168, 100, 7]);
    arp.extend_from_slice(&[2, 0, 0, 0, 1, 2, 192, 168, 100, 1]);
    r.receive(Duration::ZERO, IfIndex(1), arp, &mut NoHooks);
    while r.poll_transmit().is_some() {}
    r
}

fn frame(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(IN_MAC.as_bytes());
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 168, 200, 10,
    ];
    ip.extend_from_slice(&dst.octets());
    let c = strata_wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.resize(64, 0);
    f
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_forward");
    group.throughput(Throughput::Elements(1));
    for routes in [1_000u32, 100_000] {
        let mut r = router(routes);
        // A destination in the middle of the table.
        let dst = Ipv4Addr::from(0x0a00_0000u32 + ((routes / 2) << 8) + 5);
        let template = frame(dst);
        let mut buf = template.clone();
        group.bench_function(format!("{routes}_routes"), |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(&template);
                r.receive(
                    Duration::ZERO,
                    IfIndex(0),
                    std::mem::take(&mut buf),
                    &mut NoHooks,
                );
                let (_, out) = r.poll_transmit().expect("forwarded");
                buf = out;
            })
        });
    }
    // Destinations spread over the whole table, so lookups walk cold parts of the trie.
    let routes = 100_000u32;
    let mut r = router(routes);
    let templates: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            frame(Ipv4Addr::from(
                0x0a00_0000u32 + ((i * 7919 % routes) << 8) + 5,
            ))
        })
        .collect();
    let mut buf = templates[0].clone();
    let mut i = 0usize;
    group.bench_function(format!("{routes}_routes_spread_dst"), |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&templates[i & 4095]);
            i = i.wrapping_add(1);
            r.receive(
                Duration::ZERO,
                IfIndex(0),
                std::mem::take(&mut buf),
                &mut NoHooks,
            );
            let (_, out) = r.poll_transmit().expect("forwarded");
            buf = out;
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
