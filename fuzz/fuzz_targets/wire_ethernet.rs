//! Ethernet / 802.1Q header parsing: never panics; what parses re-emits to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_wire::ethernet::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, off)) = Header::parse(data) {
        let mut buf = [0u8; 18];
        header.emit(&mut buf).expect("18 bytes hold any header");
        assert_eq!(&buf[..off], &data[..off]);
    }
});
