//! ROUTE-REFRESH (RFC 2918, RFC 7313) and KEEPALIVE: decoded and round-tripped; any
//! other length is a Bad Message Length (1/2).
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::decode;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(&kind) = data.first() else { return };
    let kind = if kind & 1 == 0 { 4 } else { 5 };
    let Some((options, m)) = common::message(kind, &data[1..]) else { return };
    if common::round_trip(&m, options).is_none() {
        let e = decode(&m, options).unwrap_err();
        assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
    }
});
