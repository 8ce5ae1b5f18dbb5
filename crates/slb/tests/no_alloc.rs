//! The Mux's per-packet path allocates nothing: a flow-table hit with VXLAN
//! encapsulation, and, once the flow table is at its bound, a miss (Maglev lookup,
//! insert, eviction). Counted by the testkit's allocator, which counts this thread's
//! allocations.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_testkit::allocations;

mod support;

use support::{flows, mux, packet};

#[global_allocator]
static ALLOCATOR: strata_testkit::Counting = strata_testkit::Counting;

#[test]
fn the_mux_per_packet_path_allocates_nothing() {
    // The counter counts.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(allocations() > before);

    let now = Duration::from_secs(1);
    let mut out = vec![0u8; 2048];

    // Hits: one flow, over and over.
    let mut m = mux(1024, 1024, 4);
    let one = packet(Ipv4Addr::new(192, 168, 200, 10), 49152);
    m.encapsulate(now, &one, &mut out).unwrap();
    let before = allocations();
    for _ in 0..10_000 {
        m.encapsulate(now, &one, &mut out).unwrap();
    }
    assert_eq!(allocations() - before, 0, "flow-table hits allocated");

    // Misses at the table's bound: every packet a new flow, evicting an old one.
    let fresh = flows(20_000);
    let mut m = mux(64, 64, 4);
    for p in &fresh[..10_000] {
        m.encapsulate(now, p, &mut out).unwrap();
    }
    let before = allocations();
    for p in &fresh[10_000..] {
        m.encapsulate(now, p, &mut out).unwrap();
    }
    assert_eq!(allocations() - before, 0, "misses at the bound allocated");
}
