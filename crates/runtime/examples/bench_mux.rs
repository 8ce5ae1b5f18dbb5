//! The Mux of `scripts/bench-mux.sh`: Strata's Mux node on two interfaces of the
//! calling namespace, run by the same driver as `strata mux`, with a fixed VIP table
//! instead of the controller's (the benchmark measures the data path, not the
//! southbound protocol). Until SIGINT or SIGTERM; then prints its counters.
//!
//! ```text
//! bench_mux IN_INTERFACE OUT_INTERFACE
//! ```
//!
//! IN has 10.1.0.1/24 (the senders'); OUT has 10.2.0.1/24, the Mux's provider address.
//! VIP 10.9.0.100 UDP port 9 goes to four DIPs (10.3.0.1 to .4) on the host whose
//! provider address is 10.2.0.2, in VXLAN (VNI 4096).

use std::net::Ipv4Addr;

use strata_fabric::linux::PacketLink;
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::{Dip, MuxConfig, VipConfig, VipKey};
use strata_node::{MuxRole, NicConfig, NodeConfig};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: bench_mux IN_INTERFACE OUT_INTERFACE".into());
    };
    let links = vec![PacketLink::open(input)?, PacketLink::open(output)?];
    let nic = |link: &PacketLink, addr: &str| -> Result<NicConfig, Box<dyn std::error::Error>> {
        Ok(NicConfig {
            name: link.name().to_string(),
            mac: EthernetAddress(link.mac()?),
            addr: addr.parse()?,
            mtu: 1500,
            behind_switch: false,
        })
    };
    let nics = vec![
        nic(&links[0], "10.1.0.1/24")?,
        nic(&links[1], "10.2.0.1/24")?,
    ];
    let pa: Ipv4Addr = "10.2.0.1".parse()?;
    let vip = VipConfig {
        key: VipKey {
            vip: "10.9.0.100".parse()?,
            proto: 17,
            port: 9,
        },
        dips: (1..=4)
            .map(|i| Dip {
                addr: Ipv4Addr::new(10, 3, 0, i),
                port: 9,
                host_pa: Ipv4Addr::new(10, 2, 0, 2),
                mac: EthernetAddress([0x00, 0x15, 0x5d, 0x03, 0x00, i]),
                weight: 1,
            })
            .collect(),
        distribution: Distribution::FiveTuple,
        vni: Vni::new(4096).ok_or("VNI")?,
    };
    let config = NodeConfig {
        name: "bench-mux".into(),
        mux: Some(MuxRole {
            config: MuxConfig::new(pa, nics[1].mac),
            vips: vec![vip],
        }),
        nics,
        routes: Vec::new(),
        discards: Vec::new(),
        forwarding: true,
        nat: None,
        dns_server: None,
        services: Vec::new(),
        vswitch: None,
        probes: Vec::new(),
        bgp: None,
        control: None,
        seed: 1,
    };
    let stop = strata_runtime::signals::stop_on_term();
    let mut driver = strata_runtime::Driver::new(config, links)?;
    driver.run(stop)?;
    let c = driver.counters();
    let m = driver
        .node()
        .mux()
        .map(|m| *m.counters())
        .unwrap_or_default();
    println!(
        "received {} sent {} send_dropped {} errors {}; encapsulated {} no_vip {}",
        c.received, c.sent, c.send_dropped, c.errors, m.encapsulated, m.no_vip
    );
    Ok(())
}
