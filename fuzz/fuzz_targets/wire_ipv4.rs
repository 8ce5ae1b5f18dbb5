//! IPv4 header validation and flow keys: never panics, and what validates stays in bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_wire::flow::Ipv4Layout;

fuzz_target!(|data: &[u8]| {
    if let Ok(layout) = Ipv4Layout::parse(data) {
        assert!(layout.header_len <= layout.total_len && layout.total_len <= data.len());
        let _ = layout.flow_key(data);
    }
});
