//! VXLAN header parsing: never panics; the VNI round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_wire::vxlan;

fuzz_target!(|data: &[u8]| {
    if let Ok((vni, inner)) = vxlan::parse(data) {
        assert_eq!(inner.len() + vxlan::HEADER_LEN, data.len());
        let mut buf = [0u8; vxlan::HEADER_LEN];
        vxlan::emit(vni, &mut buf).expect("8 bytes");
        assert_eq!(vxlan::parse(&buf).map(|(v, _)| v), Ok(vni));
    }
});
