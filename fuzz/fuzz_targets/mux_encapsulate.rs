//! The Mux on arbitrary packets: never panics, and what it sends is a valid IPv4 packet.
#![no_main]
use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_slb::hash::Distribution;
use strata_slb::mux::{Dip, Mux, MuxConfig, VipConfig, VipKey};
use strata_wire::EthernetAddress;
use strata_wire::flow::Ipv4Layout;
use strata_wire::vxlan::Vni;

fn mux() -> Mux {
    let mut config = MuxConfig::new(Ipv4Addr::new(192, 168, 233, 20), EthernetAddress([2, 0, 0, 0, 0, 1]));
    // Small tables: building the full-size ones would be most of each run.
    config.flows_new = 16;
    config.flows_established = 16;
    let mut mux = Mux::new(config);
    for proto in [6, 17, 1] {
        mux.set_vip(VipConfig {
            key: VipKey { vip: Ipv4Addr::new(192, 168, 133, 74), proto, port: if proto == 1 { 0 } else { 80 } },
            dips: vec![Dip {
                addr: Ipv4Addr::new(192, 168, 100, 74),
                port: 80,
                host_pa: Ipv4Addr::new(192, 168, 233, 21),
                mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                weight: 1,
            }],
            distribution: Distribution::FiveTuple,
            vni: Vni::new(4096).unwrap(),
        });
    }
    mux
}

thread_local! {
    // Building Maglev tables takes a millisecond; one Mux serves every run (its flow
    // table carries over, which fuzzes that too).
    static MUX: std::cell::RefCell<Mux> = std::cell::RefCell::new(mux());
}

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 2048];
    MUX.with_borrow_mut(|mux| if let Ok(e) = mux.encapsulate(Duration::from_secs(1), data, &mut out) {
        assert!(Ipv4Layout::parse(&out[..e.len]).is_ok());
    });
});
