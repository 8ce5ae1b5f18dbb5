//! BGP messages of any type from arbitrary bytes (given a valid header): never panics;
//! what decodes encodes and decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(&kind) = data.first() else { return };
    let Some((options, m)) = common::message(kind & 0x07, &data[1..]) else { return };
    common::round_trip(&m, options);
});
