//! A VFP port with the SLB host agent's policy, on arbitrary frames in both directions,
//! raw and inside VXLAN: never panics.
#![no_main]
use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_slb::host::{DipMapping, dip_layers};
use strata_slb::mux::VipKey;
use strata_vswitch::vfp::{Direction, Port};
use strata_wire::vxlan::{self, Vni};

fuzz_target!(|data: &[u8]| {
    let vni = Vni::new(4096).unwrap();
    let mut port = Port::new("fuzz", 64);
    let vip = VipKey { vip: Ipv4Addr::new(192, 168, 133, 74), proto: 6, port: 80 };
    let mapping = DipMapping { name: "r".into(), vip, backend_port: 8080 };
    for layer in dip_layers(Ipv4Addr::new(192, 168, 100, 74), vni, &[mapping]) {
        port.set_layer(layer);
    }
    let t = Duration::from_secs(1);
    let mut raw = data.to_vec();
    let _ = port.process(t, Direction::In, &mut raw);
    let mut out = data.to_vec();
    let _ = port.process(t, Direction::Out, &mut out);
    // The same bytes as the inner frame of a VXLAN packet to the host.
    let mut wrapped = vec![0u8; 50];
    wrapped[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (36 + data.len()).min(65535) as u16;
    wrapped[14] = 0x45;
    wrapped[16..18].copy_from_slice(&total.to_be_bytes());
    wrapped[22] = 64;
    wrapped[23] = 17;
    let c = strata_wire::checksum::checksum(&wrapped[14..34]);
    wrapped[24..26].copy_from_slice(&c.to_be_bytes());
    wrapped[36..38].copy_from_slice(&vxlan::UDP_PORT.to_be_bytes());
    wrapped[38..40].copy_from_slice(&(total.saturating_sub(20)).to_be_bytes());
    vxlan::emit(vni, &mut wrapped[42..50]).unwrap();
    wrapped.extend_from_slice(data);
    let _ = port.process(t, Direction::In, &mut wrapped);
});
