//! BFD Control packets (RFC 5880 4.1): any bytes parse or are discarded without panic;
//! what parses is fed to a session, and re-emits to the same packet.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_bgp::bfd::{Config, Packet, Session};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::parse(data) else { return };
    assert_eq!(Packet::parse(&p.emit()), Ok(p));
    let mut s = Session::new(Config::new(Duration::from_millis(100), 3), 1, Duration::ZERO);
    let _ = s.receive(&p, Duration::from_millis(5));
    s.poll(Duration::from_secs(10));
    while s.poll_transmit(Duration::from_secs(10)).is_some() {}
    while s.poll_change().is_some() {}
});
