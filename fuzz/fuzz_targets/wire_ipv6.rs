//! IPv6 header validation, extension-header walk, flow keys and NAT rewrites: never
//! panics, and what validates stays in bounds.
#![no_main]
use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use strata_wire::flow::Ipv6Layout;
use strata_wire::rewrite::{Endpoint, rewrite6};

fuzz_target!(|data: &[u8]| {
    let mut packet = data.to_vec();
    if let Ok(layout) = Ipv6Layout::parse(&packet) {
        assert!(layout.l4_offset <= layout.total_len && layout.total_len <= packet.len());
        let _ = layout.flow_key(&packet);
        rewrite6(&mut packet, &layout, Endpoint::Source, Ipv6Addr::LOCALHOST, 1);
        rewrite6(&mut packet, &layout, Endpoint::Destination, Ipv6Addr::LOCALHOST, 2);
    }
});
