//! `strata router`: Strata's router (RRAS: forwarding, static routes, optionally NAT) as
//! a process on the interfaces of one network namespace, from a configuration file.
//!
//! ```toml
//! netns = "strata-BGPVM"          # enter this namespace first (default: stay)
//! [[interface]]
//! name = "eth0"
//! address = "192.168.100.1/24"
//! [[route]]
//! prefix = "0.0.0.0/0"
//! via = "192.168.200.1"           # or: type = "reject" | "blackhole"
//! [nat]                           # masquerade behind an interface (NATVM)
//! external = "eth1"
//! [[nat.forward]]
//! protocol = "tcp"
//! port = 8080
//! to = "192.168.100.74:80"
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use serde::Deserialize;
use strata_fabric::linux::{PacketLink, netns};
use strata_node::router::RouteKind;
use strata_node::{NatRole, NicConfig, NodeConfig};

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterFile {
    #[serde(default)]
    pub netns: Option<String>,
    #[serde(default = "default_name")]
    pub name: String,
    pub interface: Vec<InterfaceDef>,
    #[serde(default)]
    pub route: Vec<RouteDef>,
    #[serde(default)]
    pub nat: Option<NatDef>,
}

fn default_name() -> String {
    "router".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDef {
    pub name: String,
    pub address: ipnet::Ipv4Net,
    #[serde(default = "default_mtu")]
    pub mtu: usize,
}

fn default_mtu() -> usize {
    1500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    pub prefix: ipnet::Ipv4Net,
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatDef {
    pub external: String,
    #[serde(default)]
    pub forward: Vec<ForwardDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardDef {
    pub protocol: String,
    pub port: u16,
    pub to: SocketAddrV4,
}

/// Reads and checks a configuration file; errors name the file (and the line, for the
/// file's syntax).
pub fn load(path: &Path) -> Result<RouterFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: RouterFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.interface.is_empty() {
        return Err(format!(
            "{}: a router needs at least one [[interface]]",
            path.display()
        ));
    }
    check_routes(path, &file.route)?;
    if let Some(nat) = &file.nat {
        if !file.interface.iter().any(|i| i.name == nat.external) {
            return Err(format!(
                "{}: nat.external {:?} is none of the interfaces",
                path.display(),
                nat.external
            ));
        }
        for f in &nat.forward {
            if !matches!(f.protocol.as_str(), "tcp" | "udp") {
                return Err(format!(
                    "{}: nat.forward port {}: protocol {:?}: expected \"tcp\" or \"udp\"",
                    path.display(),
                    f.port,
                    f.protocol
                ));
            }
        }
    }
    Ok(file)
}

/// Enters the file's namespace (on the calling thread), opens its interfaces, and
/// builds the driver.
pub fn driver(file: &RouterFile) -> Result<crate::Driver, String> {
    if let Some(ns) = &file.netns {
        netns::enter(ns).map_err(|e| e.to_string())?;
    }
    let (links, nics) = open_interfaces(&file.interface)?;
    let (routes, discards) = split_routes(&file.route);
    let nat = file.nat.as_ref().map(|n| {
        let external_nic = file
            .interface
            .iter()
            .position(|i| i.name == n.external)
            .unwrap_or(0);
        let mut config = strata_node::nat::Config::new(nics[external_nic].addr.addr());
        config.forwards = n
            .forward
            .iter()
            .map(|f| strata_node::nat::PortForward {
                proto: if f.protocol == "udp" { 17 } else { 6 },
                external_port: f.port,
                internal: f.to,
            })
            .collect();
        NatRole {
            external_nic,
            config,
        }
    });
    let config = NodeConfig {
        name: file.name.clone(),
        nics,
        routes,
        discards,
        forwarding: true,
        nat,
        dns_server: None,
        services: Vec::new(),
        vswitch: None,
        mux: None,
        probes: Vec::new(),
        bgp: None,
        control: None,
        seed: u64::from(std::process::id()),
    };
    crate::Driver::new(config, links).map_err(|e| e.to_string())
}

/// Opens each interface (in the calling thread's namespace) and describes it as a NIC
/// with its own MAC.
pub(crate) fn open_interfaces(
    interfaces: &[InterfaceDef],
) -> Result<(Vec<PacketLink>, Vec<NicConfig>), String> {
    let mut links = Vec::new();
    let mut nics = Vec::new();
    for i in interfaces {
        let link = PacketLink::open(&i.name).map_err(|e| format!("{}: {e}", i.name))?;
        let mac = link.mac().map_err(|e| format!("{}: {e}", i.name))?;
        nics.push(NicConfig {
            name: i.name.clone(),
            mac: strata_wire::EthernetAddress(mac),
            addr: i.address,
            mtu: i.mtu,
            behind_switch: false,
        });
        links.push(link);
    }
    Ok((links, nics))
}

/// Static routes: those with a next hop, and those that discard.
pub type Routes = (
    Vec<(ipnet::Ipv4Net, Ipv4Addr)>,
    Vec<(ipnet::Ipv4Net, RouteKind)>,
);

/// Splits routes into those with a next hop and those that discard.
pub fn split_routes(defs: &[RouteDef]) -> Routes {
    let via = defs
        .iter()
        .filter_map(|r| Some((r.prefix, r.via?)))
        .collect();
    let discards = defs
        .iter()
        .filter_map(|r| match r.kind.as_deref() {
            Some("reject") => Some((r.prefix, RouteKind::Reject)),
            Some("blackhole") => Some((r.prefix, RouteKind::Blackhole)),
            _ => None,
        })
        .collect();
    (via, discards)
}

/// Checks routes as [`load`] does.
pub(crate) fn check_routes(path: &Path, defs: &[RouteDef]) -> Result<(), String> {
    for r in defs {
        match (&r.via, r.kind.as_deref()) {
            (Some(_), None) | (None, Some("reject" | "blackhole")) => {}
            (None, Some(other)) => {
                return Err(format!(
                    "{}: route {}: type {other:?}: expected \"reject\" or \"blackhole\"",
                    path.display(),
                    r.prefix
                ));
            }
            _ => {
                return Err(format!(
                    "{}: route {}: give either via or type",
                    path.display(),
                    r.prefix
                ));
            }
        }
    }
    Ok(())
}
