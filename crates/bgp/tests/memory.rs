//! What an Adj-RIB-In costs per IPv4 route, counted by the allocator (bytes requested;
//! the allocator's own per-block overhead is not in it, and is small here because the
//! map's nodes are large blocks): routes arrive as a full table does, many prefixes to an
//! UPDATE with one set of attributes. The design goal is under 150 bytes per route held
//! (about what BIRD takes); sharing one path among the prefixes of an UPDATE brings it to
//! about 30, where a copy per route cost about 115.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use strata_bgp::codec::{AsPath, Attribute, Origin, Update};
use strata_bgp::rib::AdjRibIn;
use strata_testkit::live_bytes;

#[global_allocator]
static ALLOCATOR: strata_testkit::Counting = strata_testkit::Counting;

const ROUTES: u32 = 100_000;
/// Prefixes per UPDATE: 4,096 bytes hold about 1,000 /24s; route servers send hundreds.
const PER_UPDATE: u32 = 250;

#[test]
fn a_route_held_costs_a_map_entry_not_a_copy_of_its_path() {
    let updates: Vec<Update> = (0..ROUTES / PER_UPDATE)
        .map(|u| Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64500, 64496, 64511 + u % 7])),
                Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
            ],
            nlri: (0..PER_UPDATE)
                .map(|i| {
                    let n = u * PER_UPDATE + i;
                    Ipv4Net::new(Ipv4Addr::from((10 << 24) | (n << 8)), 24).unwrap()
                })
                .collect(),
            ..Update::default()
        })
        .collect();
    let before = live_bytes();
    let mut rib = AdjRibIn::new();
    for u in &updates {
        rib.apply(
            u,
            &strata_bgp::rib::Import {
                local_as: 64501,
                own_addresses: &[],
                session_address: None,
            },
        );
    }
    let bytes = live_bytes() - before;
    assert_eq!(rib.len(), ROUTES as usize);
    let per_route = bytes as f64 / f64::from(ROUTES);
    eprintln!("Adj-RIB-In: {per_route:.1} bytes per IPv4 route ({ROUTES} routes)");
    assert!(per_route < 64.0, "{per_route:.1} bytes per route");
}
