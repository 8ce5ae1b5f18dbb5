//! UPDATE (RFC 4271 4.3, RFC 4760, RFC 7606): decoded on either kind of session,
//! round-tripped when well-formed, and applied to an Adj-RIB-In, whose contents then
//! are exactly what the message left there.
#![no_main]
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::Message;
use strata_bgp::rib::{AdjRibIn, Import};

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((options, m)) = common::message(2, data) else { return };
    let Some(Message::Update(u)) = common::round_trip(&m, options) else { return };
    let ours = [IpAddr::from([10, 0, 0, 2])];
    let import = Import { local_as: 65000, own_addresses: &ours, session_address: None };
    let mut rib = AdjRibIn::new();
    let changed = rib.apply(&u, &import);
    assert!(changed.len() >= rib.len());
    if u.treat_as_withdraw.is_some() {
        assert!(rib.is_empty(), "a treat-as-withdraw UPDATE installs nothing");
    }
    for (_, path) in rib.iter() {
        assert!(!path.traverses(65000), "no loop is kept");
        assert!(!ours.contains(&path.next_hop), "no route via ourselves is kept");
    }
});
