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
//! max_conns = 65536               # connections tracked at once (default 65536)
//! [nat.timeouts]                  # idle seconds before a connection is forgotten
//! tcp_established = 7440          # (defaults: RFC 5382 and RFC 4787's minimums)
//! tcp_transitory = 240
//! tcp_closed = 10
//! udp = 120
//! icmp = 30
//! [[nat.forward]]
//! protocol = "tcp"
//! port = 8080
//! to = "192.168.100.74:80"
//! [bgp]                           # a BGP speaker; what it learns goes into the FIB
//! asn = 64500
//! router_id = "192.168.100.1"     # default: the first interface's address
//! networks = ["10.0.0.0/8"]       # prefixes always announced (default none)
//! [[bgp.neighbor]]
//! address = "192.168.100.20"
//! asn = 64501
//! passive = true                  # wait for it to connect (default false)
//! hold_time = 90                  # seconds (default 90)
//! connect_retry_s = 5             # (default 5)
//! bfd_interval_ms = 100           # run BFD with it (RFC 5880/5881; default off)
//! bfd_multiplier = 3              # (default 3)
//! ```
//!
//! `status = "FILE"` (in this file, the Mux's and the host's) names a file the process
//! rewrites every 200 ms with its BGP neighbors' state, one line each: `ADDRESS
//! [bfd=STATE] STATE`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use serde::Deserialize;
use strata_fabric::linux::{LinuxLink, netns};
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
    #[serde(default)]
    pub bgp: Option<BgpDef>,
    #[serde(default)]
    pub status: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpDef {
    pub asn: u32,
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    #[serde(default)]
    pub networks: Vec<ipnet::Ipv4Net>,
    #[serde(default)]
    pub neighbor: Vec<NeighborDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborDef {
    pub address: Ipv4Addr,
    pub asn: u32,
    #[serde(default)]
    pub passive: bool,
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    #[serde(default = "default_connect_retry")]
    pub connect_retry_s: u64,
    #[serde(default)]
    pub bfd_interval_ms: Option<u64>,
    #[serde(default = "default_bfd_multiplier")]
    pub bfd_multiplier: u8,
}

fn default_hold() -> u16 {
    90
}

fn default_connect_retry() -> u64 {
    5
}

fn default_bfd_multiplier() -> u8 {
    3
}

impl BgpDef {
    /// The speaker's configuration; `first` is the first interface's address.
    pub fn config(&self, first: Ipv4Addr) -> strata_node::apps::bgp::BgpConfig {
        use strata_node::apps::bgp::{BgpConfig, NeighborConfig};
        BgpConfig {
            asn: self.asn,
            router_id: self.router_id.unwrap_or(first),
            neighbors: self
                .neighbor
                .iter()
                .map(|n| NeighborConfig {
                    address: n.address,
                    asn: n.asn,
                    passive: n.passive,
                    hold_time: n.hold_time,
                    connect_retry: std::time::Duration::from_secs(n.connect_retry_s.max(1)),
                    bfd: n.bfd_interval_ms.map(|ms| {
                        strata_node::bgp_codec::bfd::Config::new(
                            std::time::Duration::from_millis(ms),
                            n.bfd_multiplier,
                        )
                    }),
                })
                .collect(),
            networks: self.networks.clone(),
            announce_vips: false,
            install_routes: true,
            added: Default::default(),
        }
    }
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
    pub max_conns: Option<usize>,
    #[serde(default)]
    pub timeouts: NatTimeoutsDef,
}

impl NatDef {
    /// The NAT's configuration, masquerading to `external` (the external interface's
    /// address).
    pub fn config(&self, external: Ipv4Addr) -> strata_node::nat::Config {
        let mut config = strata_node::nat::Config::new(external);
        config.forwards = self
            .forward
            .iter()
            .map(|f| strata_node::nat::PortForward {
                proto: if f.protocol == "udp" { 17 } else { 6 },
                external_port: f.port,
                internal: f.to,
            })
            .collect();
        if let Some(max) = self.max_conns {
            config.max_conns = max;
        }
        config.timeouts = self.timeouts.timeouts();
        config
    }
}

/// Idle timeouts in seconds; each left out keeps its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatTimeoutsDef {
    pub tcp_established: Option<u64>,
    pub tcp_transitory: Option<u64>,
    pub tcp_closed: Option<u64>,
    pub udp: Option<u64>,
    pub icmp: Option<u64>,
}

impl NatTimeoutsDef {
    fn timeouts(&self) -> strata_node::nat::Timeouts {
        let d = strata_node::nat::Timeouts::default();
        let or = |s: Option<u64>, default| s.map_or(default, std::time::Duration::from_secs);
        strata_node::nat::Timeouts {
            tcp_established: or(self.tcp_established, d.tcp_established),
            tcp_transitory: or(self.tcp_transitory, d.tcp_transitory),
            tcp_closed: or(self.tcp_closed, d.tcp_closed),
            udp: or(self.udp, d.udp),
            icmp: or(self.icmp, d.icmp),
        }
    }
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
    if let Some(bgp) = &file.bgp {
        check_bgp(path, bgp)?;
    }
    if let Some(nat) = &file.nat {
        if !file.interface.iter().any(|i| i.name == nat.external) {
            return Err(format!(
                "{}: nat.external {:?} is none of the interfaces",
                path.display(),
                nat.external
            ));
        }
        if nat.max_conns == Some(0) {
            return Err(format!(
                "{}: nat.max_conns: expected at least 1",
                path.display()
            ));
        }
        let t = &nat.timeouts;
        for (key, value) in [
            ("tcp_established", t.tcp_established),
            ("tcp_transitory", t.tcp_transitory),
            ("tcp_closed", t.tcp_closed),
            ("udp", t.udp),
            ("icmp", t.icmp),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "{}: nat.timeouts.{key}: expected at least 1 second",
                    path.display()
                ));
            }
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
    let first = nics[0].addr.addr();
    let nat = file.nat.as_ref().map(|n| {
        let external_nic = file
            .interface
            .iter()
            .position(|i| i.name == n.external)
            .unwrap_or(0);
        let config = n.config(nics[external_nic].addr.addr());
        NatRole {
            external_nic,
            config,
        }
    });
    let config = NodeConfig {
        routes,
        discards,
        forwarding: true,
        nat,
        bgp: file.bgp.as_ref().map(|b| b.config(first)),
        seed: u64::from(std::process::id()),
        ..NodeConfig::new(file.name.clone(), nics)
    };
    crate::Driver::new(config, links).map_err(|e| e.to_string())
}

/// Checks a `[bgp]` section as [`load`] does.
fn check_bgp(path: &Path, bgp: &BgpDef) -> Result<(), String> {
    let at = |e: String| format!("{}: bgp: {e}", path.display());
    if bgp.asn == 0 {
        return Err(at("AS 0 is reserved".into()));
    }
    for (i, n) in bgp.neighbor.iter().enumerate() {
        if n.asn == 0 {
            return Err(at(format!("neighbor {}: AS 0 is reserved", n.address)));
        }
        if bgp.neighbor[..i].iter().any(|m| m.address == n.address) {
            return Err(at(format!("neighbor {} is given twice", n.address)));
        }
        if n.hold_time != 0 && n.hold_time < 3 {
            return Err(at(format!(
                "neighbor {}: hold_time is 0 or at least 3 seconds (RFC 4271)",
                n.address
            )));
        }
        if n.bfd_interval_ms == Some(0) || n.bfd_multiplier == 0 {
            return Err(at(format!(
                "neighbor {}: bfd_interval_ms and bfd_multiplier must be above 0",
                n.address
            )));
        }
    }
    Ok(())
}

/// Opens each interface (in the calling thread's namespace) and describes it as a NIC
/// with its own MAC.
pub(crate) fn open_interfaces(
    interfaces: &[InterfaceDef],
) -> Result<(Vec<LinuxLink>, Vec<NicConfig>), String> {
    let mut links = Vec::new();
    let mut nics = Vec::new();
    for i in interfaces {
        let link = crate::open_link(&i.name).map_err(|e| format!("{}: {e}", i.name))?;
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
