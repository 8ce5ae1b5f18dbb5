//! Lab files: any text gives a topology or an error with a position, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = strata_lab::file::parse("fuzz.toml", text) {
            assert!(e.line >= 1 && e.column >= 1);
        }
    }
});
