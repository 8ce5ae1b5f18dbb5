//! The Mux of `scripts/bench-mux.sh`: Strata's Mux node on two interfaces of the
//! calling namespace, run by the same driver as `strata mux`, with a fixed VIP table
//! instead of the controller's (the benchmark measures the data path, not the
//! southbound protocol). Until SIGINT or SIGTERM; then prints its counters. Its links
//! are opened as `STRATA_LINK` says (see `strata_runtime::open_link`).
//!
//! ```text
//! bench_mux IN_INTERFACE OUT_INTERFACE [udp|tcp PORT [DIP_MAC]]
//! ```
//!
//! IN has 10.1.0.1/24 (the senders'); OUT has 10.2.0.1/24, the Mux's provider address.
//! VIP 10.9.0.100 UDP port 9 (or the protocol and port given) goes to four DIPs
//! (10.3.0.1 to .4) on the host whose provider address is 10.2.0.2, in VXLAN (VNI
//! 4096). The DIPs' MACs are 00:15:5d:03:00:01 to :04, or all DIP_MAC (a host with one
//! kernel VXLAN device, whose MAC that is).

use std::net::Ipv4Addr;

use strata_fabric::linux::LinuxLink;
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::{Dip, MuxConfig, VipConfig, VipKey};
use strata_node::{MuxRole, NicConfig, NodeConfig};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: bench_mux IN_INTERFACE OUT_INTERFACE [udp|tcp PORT [DIP_MAC]]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output, service) = match args.as_slice() {
        [input, output] => (input, output, None),
        [input, output, proto, port, rest @ ..] if rest.len() <= 1 => {
            (input, output, Some((proto, port, rest.first())))
        }
        _ => return Err(USAGE.into()),
    };
    let (proto, port) = match service {
        None => (17, 9),
        Some((proto, port, _)) => (
            match proto.as_str() {
                "udp" => 17,
                "tcp" => 6,
                _ => return Err(USAGE.into()),
            },
            port.parse()?,
        ),
    };
    let dip_mac = |i: u8| -> Result<EthernetAddress, Box<dyn std::error::Error>> {
        match service.and_then(|(_, _, mac)| mac) {
            None => Ok(EthernetAddress([0x00, 0x15, 0x5d, 0x03, 0x00, i])),
            Some(mac) => mac.parse().map_err(|()| format!("{mac}: not a MAC").into()),
        }
    };
    // STRATA_LINK=ring reads by the receive ring, as the role processes do.
    let links = vec![
        strata_runtime::open_link(input)?,
        strata_runtime::open_link(output)?,
    ];
    let nic = |link: &LinuxLink, addr: &str| -> Result<NicConfig, Box<dyn std::error::Error>> {
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
            proto,
            port,
        },
        dips: (1..=4)
            .map(|i| {
                Ok(Dip {
                    addr: Ipv4Addr::new(10, 3, 0, i),
                    port,
                    host_pa: Ipv4Addr::new(10, 2, 0, 2),
                    mac: dip_mac(i)?,
                    weight: 1,
                })
            })
            .collect::<Result<_, Box<dyn std::error::Error>>>()?,
        distribution: Distribution::FiveTuple,
        vni: Vni::new(4096).ok_or("VNI")?,
    };
    let config = NodeConfig {
        mux: Some(MuxRole {
            config: MuxConfig::new(pa, nics[1].mac),
            vips: vec![vip],
        }),
        forwarding: true,
        seed: 1,
        ..NodeConfig::new("bench-mux", nics)
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
    print!(
        "received {} sent {} send_dropped {} errors {}; encapsulated {} no_vip {}",
        c.received, c.sent, c.send_dropped, c.errors, m.encapsulated, m.no_vip
    );
    for link in driver.links() {
        if let LinuxLink::Xdp(x) = link {
            let s = x.statistics()?;
            print!(
                "; {}: XDP {}, rx ring full {}, fill ring empty {}, rx dropped {}",
                x.name(),
                if x.native() { "native" } else { "generic" },
                s.rx_ring_full,
                s.rx_fill_ring_empty,
                s.rx_dropped
            );
        }
    }
    println!();
    Ok(())
}
