//! The Mux's per-packet path allocates nothing: a flow-table hit with VXLAN
//! encapsulation, and, once the flow table is at its bound, a miss (Maglev lookup,
//! insert, eviction). Counted by an allocator that counts this thread's allocations.

#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_slb::hash::Distribution;
use strata_slb::mux::{Dip, Mux, MuxConfig, VipConfig, VipKey};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting the allocations each thread makes.
struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the count is the only
// addition, kept in a const-initialised thread local (no allocation to reach it).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);

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
        dips: (0..4)
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

/// A 50-byte IPv4/TCP packet to the VIP.
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

#[test]
fn the_mux_per_packet_path_allocates_nothing() {
    // The counter counts.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(allocations() > before);

    let now = Duration::from_secs(1);
    let mut out = vec![0u8; 2048];

    // Hits: one flow, over and over.
    let mut m = mux(1024, 1024);
    let one = packet(Ipv4Addr::new(192, 168, 200, 10), 49152);
    m.encapsulate(now, &one, &mut out).unwrap();
    let before = allocations();
    for _ in 0..10_000 {
        m.encapsulate(now, &one, &mut out).unwrap();
    }
    assert_eq!(allocations() - before, 0, "flow-table hits allocated");

    // Misses at the table's bound: every packet a new flow, evicting an old one.
    let fresh: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| packet(Ipv4Addr::from(0x0a00_0000 + i / 50), 1024 + (i % 50) as u16))
        .collect();
    let mut m = mux(64, 64);
    for p in &fresh[..10_000] {
        m.encapsulate(now, p, &mut out).unwrap();
    }
    let before = allocations();
    for p in &fresh[10_000..] {
        m.encapsulate(now, p, &mut out).unwrap();
    }
    assert_eq!(allocations() - before, 0, "misses at the bound allocated");
}
