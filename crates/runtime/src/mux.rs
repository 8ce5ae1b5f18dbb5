//! `strata mux`: an SLB Mux as a process on the interfaces of one network namespace. The
//! file says where it is (namespace, interfaces, which one holds the provider address,
//! routes) and who configures it; everything else (its BGP peers, the VIPs and their
//! DIPs) comes from the network controller over the southbound protocol, as in the
//! system being reproduced.
//!
//! ```toml
//! netns = "strata-MuxVM"
//! name = "MuxVM"                     # its loadBalancerMuxes resourceId
//! controller = "192.168.100.10:8081" # the controller's southbound address
//! token = "…"                        # its node token (`strata ctl node-token MuxVM`)
//! provider = "eth1"                  # the interface with the provider address (PA)
//! asn = 64501                        # the speaker's AS (the controller names the peers)
//! hold_time = 30                     # offered to each peer (default 90)
//! bfd_interval_ms = 100              # BFD with each peer (default off), and
//! bfd_multiplier = 3                 # its multiplier (default 3)
//! [[interface]]
//! name = "eth0"
//! address = "192.168.100.20/24"
//! [[interface]]
//! name = "eth1"
//! address = "192.168.233.20/24"
//! [[route]]
//! prefix = "0.0.0.0/0"
//! via = "192.168.100.1"
//! ```

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_fabric::linux::netns;
use strata_node::apps::bgp::{AddedNeighbors, BgpConfig};
use strata_node::slb::mux::MuxConfig;
use strata_node::{ControlConfig, MuxRole, NodeConfig};

use crate::router::{InterfaceDef, RouteDef, check_routes, open_interfaces, split_routes};

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuxFile {
    #[serde(default)]
    pub netns: Option<String>,
    pub name: String,
    pub controller: SocketAddrV4,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub provider: String,
    pub asn: u32,
    /// The hold time offered to each peer the controller names (default 90 s).
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    /// Run BFD with each peer the controller names, at this interval (default off).
    #[serde(default)]
    pub bfd_interval_ms: Option<u64>,
    #[serde(default = "default_bfd_multiplier")]
    pub bfd_multiplier: u8,
    pub interface: Vec<InterfaceDef>,
    #[serde(default)]
    pub route: Vec<RouteDef>,
    /// A file rewritten every 200 ms with its BGP neighbors' state (see `strata
    /// router`'s file).
    #[serde(default)]
    pub status: Option<PathBuf>,
}

fn default_hold() -> u16 {
    90
}

fn default_bfd_multiplier() -> u8 {
    3
}

impl MuxFile {
    /// The node token, from the file or the file it names.
    fn token(&self) -> Result<String, String> {
        crate::node_token(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<MuxFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: MuxFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.interface.iter().any(|i| i.name == file.provider) {
        return Err(format!(
            "{}: provider {:?} is none of the interfaces",
            path.display(),
            file.provider
        ));
    }
    if file.asn == 0 {
        return Err(format!("{}: AS 0 is reserved", path.display()));
    }
    if file.hold_time != 0 && file.hold_time < 3 {
        return Err(format!(
            "{}: hold_time is 0 or at least 3 seconds (RFC 4271)",
            path.display()
        ));
    }
    if file.bfd_interval_ms == Some(0) || file.bfd_multiplier == 0 {
        return Err(format!(
            "{}: bfd_interval_ms and bfd_multiplier must be above 0",
            path.display()
        ));
    }
    file.token()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    check_routes(path, &file.route)?;
    Ok(file)
}

/// Enters the file's namespace (on the calling thread), opens its interfaces, and
/// builds the driver: a Mux with no VIP yet and a speaker with no peer yet, and the
/// agent that will get both from the controller.
pub fn driver(file: &MuxFile) -> Result<crate::Driver, String> {
    if let Some(ns) = &file.netns {
        netns::enter(ns).map_err(|e| e.to_string())?;
    }
    let (links, nics) = open_interfaces(&file.interface)?;
    let provider = file
        .interface
        .iter()
        .position(|i| i.name == file.provider)
        .ok_or("no provider interface")?;
    let (routes, discards) = split_routes(&file.route);
    let pa = nics[provider].addr.addr();
    let config = NodeConfig {
        mux: Some(MuxRole {
            config: MuxConfig::new(pa, nics[provider].mac),
            vips: Vec::new(),
        }),
        bgp: Some(BgpConfig {
            asn: file.asn,
            router_id: nics[0].addr.addr(),
            neighbors: Vec::new(),
            networks: Vec::new(),
            announce_vips: true,
            install_routes: false,
            added: AddedNeighbors {
                hold_time: file.hold_time,
                connect_retry: std::time::Duration::from_secs(5),
                bfd: file.bfd_interval_ms.map(|ms| {
                    strata_node::bgp_codec::bfd::Config::new(
                        std::time::Duration::from_millis(ms),
                        file.bfd_multiplier,
                    )
                }),
            },
        }),
        control: Some(ControlConfig::Agent {
            controller: file.controller,
            token: file.token()?,
            timers: strata_southbound::Timers::default(),
        }),
        routes,
        discards,
        forwarding: true,
        seed: u64::from(std::process::id()),
        ..NodeConfig::new(file.name.clone(), nics)
    };
    crate::Driver::new(config, links).map_err(|e| e.to_string())
}
