//! SLB data path benchmarks.
//!
//! - `maglev_build/N`: building the 65,537-slot table for N backends.
//! - `mux/hit_one_flow`: one flow over and over: flow-table hit and VXLAN encapsulation of
//!   a 64-byte inner frame (a 50-byte IPv4 packet).
//! - `mux/hit_100k_flows`: 100,000 established flows in turn (the table no longer fits in
//!   cache).
//! - `mux/miss`: every packet a new flow into a table with room: the Maglev lookup and a
//!   flow-table insert, no eviction (a fresh Mux every 50,000 flows, outside the timing).
//! - `mux/miss_at_bound`: every packet a new flow into a table at its bound (4 slots):
//!   the Maglev lookup, an eviction and an insert.
//! - `mux/hit_one_flow_with_snat_ranges`: `hit_one_flow` on a Mux that also holds 1,000
//!   SNAT ranges (looked up first, missed).
//! - `mux/snat_return_one_flow` and `mux/snat_return_100k_flows`: replies to the VIP's
//!   SNAT ports (1,000 ranges of 8, held by 100 DIPs), as `hit_*` but for outbound
//!   connections: the stateless range lookup and the encapsulation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_slb::maglev::Maglev;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{flows, mux, packet, snat_ranges, snat_replies};

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

fn mux_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("mux");
    group.throughput(Throughput::Elements(1));
    let now = Duration::from_secs(1);
    let mut out = vec![0u8; 2048];

    let mut m = mux(64 * 1024, 256 * 1024, 10);
    let one = packet(Ipv4Addr::new(192, 168, 200, 10), 49152);
    m.encapsulate(now, &one, &mut out).unwrap();
    group.bench_function("hit_one_flow", |b| {
        b.iter(|| black_box(m.encapsulate(now, black_box(&one), &mut out).unwrap()))
    });

    let many = flows(100_000);
    let mut m = mux(256 * 1024, 256 * 1024, 10);
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

    let fresh = flows(50_000);
    group.bench_function("miss", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(fresh.len() as u64) as usize;
                let mut m = mux(64 * 1024, 64 * 1024, 10);
                let start = std::time::Instant::now();
                for p in &fresh[..n] {
                    black_box(m.encapsulate(now, p, &mut out).unwrap());
                }
                spent += start.elapsed();
                left -= n as u64;
            }
            spent
        })
    });

    let mut m = mux(4, 4, 10);
    let mut i = 0;
    group.bench_function("miss_at_bound", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            black_box(m.encapsulate(now, &fresh[i], &mut out).unwrap())
        })
    });

    // The same VIP hit on a Mux that also holds SNAT ranges (the range is looked up
    // first, and misses).
    let mut m = mux(64 * 1024, 256 * 1024, 10);
    snat_ranges(&mut m, 1000);
    m.encapsulate(now, &one, &mut out).unwrap();
    group.bench_function("hit_one_flow_with_snat_ranges", |b| {
        b.iter(|| black_box(m.encapsulate(now, black_box(&one), &mut out).unwrap()))
    });

    let mut m = mux(64 * 1024, 256 * 1024, 10);
    snat_ranges(&mut m, 1000);
    let replies = snat_replies(100_000, 8000);
    group.bench_function("snat_return_one_flow", |b| {
        b.iter(|| {
            black_box(
                m.encapsulate(now, black_box(&replies[0]), &mut out)
                    .unwrap(),
            )
        })
    });
    let mut i = 0;
    group.bench_function("snat_return_100k_flows", |b| {
        b.iter(|| {
            i = (i + 1) % replies.len();
            black_box(m.encapsulate(now, &replies[i], &mut out).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, maglev, mux_path);
criterion_main!(benches);
