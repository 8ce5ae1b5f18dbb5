//! Frame descriptions (used by traces) never panic, whatever the frame.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_wire::describe::frame(data);
});
