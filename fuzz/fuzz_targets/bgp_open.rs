//! OPEN (RFC 4271 4.2, capabilities RFC 5492): decoded, round-tripped, and taken by a
//! session waiting for it, which answers (KEEPALIVE or NOTIFICATION) without panicking.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::Message;
use strata_bgp::session::{Config, Event, Session};

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((options, m)) = common::message(1, data) else { return };
    let Some(msg @ Message::Open(_)) = common::round_trip(&m, options) else { return };
    let config = Config::new(65000, "2.2.2.2".parse().unwrap(), 65001);
    let mut s = Session::accepted(config, Duration::ZERO);
    s.handle(Duration::ZERO, Event::Message(msg));
    s.handle(Duration::from_secs(1), Event::Message(Message::Keepalive));
    s.poll(Duration::from_secs(600));
    while s.poll_action().is_some() {}
});
