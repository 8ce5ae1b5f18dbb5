//! The router's receive path on arbitrary frames, addressed to it or broadcast.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_router::{Config, IfIndex, Interface, NoHooks, Router};
use strata_wire::EthernetAddress;

fuzz_target!(|data: &[u8]| {
    let mac = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 1]);
    let mut router = Router::new(Config { forwarding: true, ..Config::default() });
    router.add_interface(Interface { mac, addr: "192.168.200.1/24".parse().unwrap(), mtu: 1500 });
    router.add_interface(Interface {
        mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 2]),
        addr: "192.168.100.1/24".parse().unwrap(),
        mtu: 576,
    });
    let mut frame = data.to_vec();
    if frame.len() >= 6 && data[0] & 1 == 0 {
        frame[..6].copy_from_slice(mac.as_bytes());
    }
    let _ = router.receive(Duration::ZERO, IfIndex(0), frame, &mut NoHooks);
    router.poll(Duration::from_secs(10), &mut NoHooks);
    while router.poll_transmit().is_some() {}
});
