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
    /// The host (index into [`Topology::nodes`]) whose vSwitch this NIC is a port of.
    pub vswitch_host: Option<usize>,
    /// The VLAN of that port (an access port; the uplink carries it tagged).
    pub vlan: Option<u16>,
}

/// A Hyper-V host's vSwitch.
#[derive(Debug, Clone)]
pub struct VSwitchSpec {
    pub name: String,
    /// The network the switch's uplink is on; the host's NIC there is a vNIC of the switch.
    pub uplink_network: usize,
    /// The host's NIC with the provider address (PA) VXLAN arrives at.
    pub provider_nic: Option<usize>,
}

/// The Mux role.
#[derive(Debug, Clone)]
pub struct MuxSpec {
    /// The NIC on the provider network: its address is the outer source of VXLAN.
    pub provider_nic: usize,
}

/// A health probe (the loadBalancer's `probes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub name: String,
    /// `None` for a TCP probe; the request path for an HTTP probe.
    pub http_path: Option<String>,
    pub port: u16,
    pub interval: Duration,
    /// Consecutive failures that take a DIP out (and successes that bring it back).
    pub count: u32,
}

/// One VIP entry the Muxes carry: a loadBalancingRule or an inboundNatRule, compiled.
#[derive(Debug, Clone)]
pub struct VipSpec {
    /// `<loadBalancer>/<rule>`.
    pub name: String,
    pub key: strata_node::slb::mux::VipKey,
    pub distribution: strata_node::slb::hash::Distribution,
    /// The DIPs: (node, NIC) of each backend.
    pub members: Vec<(usize, usize)>,
    pub backend_port: u16,
    pub probe: Option<ProbeSpec>,
}

/// A VM NIC that is a backend: its node and NIC, the backendAddressPools and the
/// inboundNatRules it is in (references).
#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub node: usize,
    pub nic: usize,
    pub pools: Vec<String>,
    pub nat_rules: Vec<String>,
}

/// The Software Load Balancer's configuration, in the lab.
#[derive(Debug, Clone)]
pub struct SlbSpec {
    /// The VXLAN network identifier of Mux-to-host traffic.
    pub vni: strata_wire::vxlan::Vni,
    /// Where VIPs come from (the controller's vipIpPool).
    pub vip_prefix: Ipv4Net,
    pub vips: Vec<VipSpec>,
    pub outbound: Vec<OutboundSpec>,
    /// The ports SNAT ranges are cut from, if not all of 1024-65535.
    pub snat_ports: Option<std::ops::RangeInclusive<u16>>,
    /// The loadBalancers as Network Controller resources: (resourceId, body).
    pub load_balancers: Vec<(String, serde_json::Value)>,
    /// Each backend NIC and what it belongs to.
    pub backends: Vec<BackendSpec>,
}

/// An outboundNatRule: its pool's members' connections leave as the VIP.
#[derive(Debug, Clone)]
pub struct OutboundSpec {
    /// `load balancer/rule`.
    pub name: String,
    pub vip: Ipv4Addr,
    /// The pool's members, as (node, NIC).
    pub members: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub prefix: Ipv4Net,
    /// The next hop; `None` for a blackhole or reject route.
    pub via: Option<Ipv4Addr>,
    pub kind: strata_node::router::RouteKind,
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
    pub vswitch: Option<VSwitchSpec>,
    pub mux: Option<MuxSpec>,
    pub bgp: Option<strata_node::apps::bgp::BgpConfig>,
    /// The network controller runs here.
    pub controller: Option<ControllerSpec>,
}

/// The network controller on a node.
#[derive(Debug, Clone)]
pub struct ControllerSpec {
    /// The TCP port its agents connect to.
    pub southbound_port: u16,
}

/// What a scenario does.
#[derive(Debug, Clone)]
pub enum ScenarioAction {
    Ping {
        target: Ipv4Addr,
        count: u16,
    },
    /// `repeat` GETs, one after another, each on a new connection; or, in the
    /// background, all at once, checked later by an `Await`.
    Http {
        url: String,
        repeat: u16,
        background: bool,
    },
    /// Wait for a background scenario (index) and check its fetches.
    Await {
        scenario: usize,
    },
    /// Stop or start a node's HTTP servers.
    SetHttp {
        node: usize,
        enabled: bool,
    },
    /// Stop a node's BGP sessions (Cease / Administrative Shutdown).
    StopBgp {
        node: usize,
    },
    /// Reset a node's BGP sessions without a NOTIFICATION and start them again.
    RestartBgp {
        node: usize,
    },
    /// Cut a node off from every network, or reconnect it.
    Cut {
        node: usize,
        cut: bool,
    },
    Resolve {
        name: String,
    },
    /// One UDP datagram to `target`, and an answer awaited.
    Udp {
        target: std::net::SocketAddrV4,
    },
}

/// What a scenario must find to pass. The default: the exchange succeeds.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Whether the exchange must fail (a ping unanswered, no HTTP response) rather than
    /// succeed.
    pub failure: bool,
    pub status: Option<u16>,
    pub body_contains: Option<String>,
    /// With `repeat`: every response must contain one of these, and each must be seen.
    pub bodies: Vec<String>,
    /// DIPs every Mux must hold out of its pools, or in them.
    pub dips_down: Vec<Ipv4Addr>,
    pub dips_up: Vec<Ipv4Addr>,
    /// For `Await`: connections that reached these nodes must all have completed.
    pub survivors_on: Vec<String>,
    /// The node (index) whose routing table must have `routes` and lack `no_routes`.
    pub routes_on: Option<usize>,
    pub routes: Vec<Ipv4Net>,
    pub no_routes: Vec<Ipv4Net>,
    /// Routes of `routes_on` and their exact next hops (sorted).
    pub next_hops: Vec<(Ipv4Net, Vec<Ipv4Addr>)>,
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
    /// How long to let the lab run after the action, before checking.
    pub wait: Duration,
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
    pub slb: Option<SlbSpec>,
    pub scenarios: Vec<Scenario>,
}

impl Topology {
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// The protocol of a traced flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowProto {
    Tcp,
    Udp,
    Icmp,
}

impl Scenario {
    /// One flow from node `from` to `to`, to trace: a URL (`http://name/path`), an
    /// `IP:PORT` (TCP: an HTTP GET; UDP: a datagram), or an `IP` (ICMP: one ping; TCP:
    /// port 80). Without `proto`: ICMP for a bare address, else TCP.
    pub fn flow(
        t: &Topology,
        from: &str,
        to: &str,
        proto: Option<FlowProto>,
    ) -> Result<Scenario, String> {
        let origin = t.node(from).ok_or_else(|| {
            let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
            format!("no node {from:?} in this lab (nodes: {})", names.join(", "))
        })?;
        let (addr, port): (Option<Ipv4Addr>, Option<u16>) =
            match to.parse::<std::net::SocketAddrV4>() {
                Ok(sa) => (Some(*sa.ip()), Some(sa.port())),
                Err(_) => (to.parse().ok(), None),
            };
        let action = if to.starts_with("http://") {
            if proto.is_some_and(|p| p != FlowProto::Tcp) {
                return Err(format!("{to} is fetched over TCP"));
            }
            ScenarioAction::Http {
                url: to.to_string(),
                repeat: 1,
                background: false,
            }
        } else {
            let Some(addr) = addr else {
                return Err(format!(
                    "--to {to:?}: expected a URL (http://…), IP:PORT or an IPv4 address"
                ));
            };
            match (proto, port) {
                (Some(FlowProto::Icmp), Some(_)) => {
                    return Err(format!("--to {to}: ICMP has no ports"));
                }
                (Some(FlowProto::Icmp), None) | (None, None) => ScenarioAction::Ping {
                    target: addr,
                    count: 1,
                },
                (Some(FlowProto::Udp), port) => ScenarioAction::Udp {
                    target: std::net::SocketAddrV4::new(
                        addr,
                        port.ok_or_else(|| format!("--to {to}: a UDP flow needs IP:PORT"))?,
                    ),
                },
                (Some(FlowProto::Tcp) | None, port) => ScenarioAction::Http {
                    url: format!("http://{addr}:{}/", port.unwrap_or(80)),
                    repeat: 1,
                    background: false,
                },
            }
        };
        Ok(Scenario {
            name: "trace".into(),
            description: String::new(),
            from: origin,
            action,
            timeout: Duration::from_secs(5),
            wait: Duration::ZERO,
            expect: Expect::default(),
        })
    }
}
