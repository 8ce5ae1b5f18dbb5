//! NAT on arbitrary packets in both directions: never panics; a translated packet still
//! validates as IPv4.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_nat::{Action, Config, Nat};
use strata_wire::flow::Ipv4Layout;

fuzz_target!(|data: &[u8]| {
    let mut nat = Nat::new(Config::new("203.0.113.1".parse().unwrap()));
    let mut out = data.to_vec();
    if nat.outbound(Duration::ZERO, &mut out) == Action::Translated {
        assert!(Ipv4Layout::parse(&out).is_ok());
    }
    let mut back = data.to_vec();
    if nat.inbound(Duration::ZERO, &mut back) == Action::Translated {
        assert!(Ipv4Layout::parse(&back).is_ok());
    }
});
