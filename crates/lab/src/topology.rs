//! A validated topology: networks, nodes and scenarios, with every reference resolved to
//! an index. Built by [`crate::file::parse`]; turned into running nodes by [`crate::Lab`].

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;
use strata_node::ServiceConfig;
use strata_node::nat::{PortForward, Timeouts};

/// What a node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A virtual machine: a host that does not forward.
    #[default]
    Vm,
    /// A router VM (RRAS): forwards between its NICs.
    Router,
    /// A Hyper-V host: its own vNICs (the management vNIC, the PA vNIC).
    Host,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Router => "router",
            Kind::Host => "host",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub prefix: Ipv4Net,
    pub mtu: usize,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct NicSpec {
    pub name: String,
    /// Index into [`Topology::networks`].
    pub network: usize,
    pub addr: Ipv4Net,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct NatSpec {
    /// Index into the node's NICs.
    pub external_nic: usize,
    pub forwards: Vec<PortForward>,
    pub max_conns: usize,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub kind: Kind,
    pub description: String,
    pub nics: Vec<NicSpec>,
    pub routes: Vec<RouteSpec>,
    pub dns: Option<Ipv4Addr>,
    pub nat: Option<NatSpec>,
    pub services: Vec<ServiceConfig>,
}

/// What a scenario does.
#[derive(Debug, Clone)]
pub enum ScenarioAction {
    Ping { target: Ipv4Addr, count: u16 },
    Http { url: String },
    Resolve { name: String },
}

/// What a scenario must find to pass.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Whether the exchange must succeed (every ping answered, an HTTP response) or fail.
    pub success: bool,
    pub status: Option<u16>,
    pub body_contains: Option<String>,
    /// For a DNS lookup: an address the answer must hold.
    pub address: Option<Ipv4Addr>,
    /// The nodes the first request must cross, in order, from the sender to the answerer.
    pub path: Option<Vec<String>>,
    /// The nodes the first reply must cross back.
    pub return_path: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Index into [`Topology::nodes`].
    pub from: usize,
    pub action: ScenarioAction,
    pub timeout: Duration,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub latency: Duration,
    pub networks: Vec<Network>,
    pub nodes: Vec<NodeSpec>,
    pub scenarios: Vec<Scenario>,
}

impl Topology {
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}
