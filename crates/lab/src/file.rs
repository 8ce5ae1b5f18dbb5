//! The lab file: a TOML description of a topology and its scenarios, read into a
//! validated [`Topology`]. The format is documented in `docs/lab-file.md`.
//!
//! Every error names the file, the line and column of the offending value, and what was
//! expected.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;
use strata_node::router::RouteKind;
use toml::Spanned;

use crate::topology::{
    ControllerSpec, Expect, Kind, MuxSpec, NatSpec, Network, NicSpec, NodeSpec, RouteSpec,
    Scenario, ScenarioAction, Topology, VSwitchSpec,
};
use strata_node::ServiceConfig;
use strata_node::apps::http::Page;
use strata_node::nat::{PortForward, Timeouts};

/// An error in a lab file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct LabFileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    lab: LabMeta,
    #[serde(default, rename = "network")]
    networks: Vec<NetworkDef>,
    #[serde(default, rename = "node")]
    nodes: Vec<NodeDef>,
    slb: Option<slb::SlbDef>,
    #[serde(default, rename = "scenario")]
    scenarios: Vec<ScenarioDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabMeta {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_seed")]
    seed: u64,
    /// One-way latency of every segment, in microseconds.
    #[serde(default = "default_latency")]
    latency_us: u64,
}

fn default_seed() -> u64 {
    1
}

fn default_latency() -> u64 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkDef {
    name: Spanned<String>,
    prefix: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default = "default_mtu")]
    mtu: usize,
}

fn default_mtu() -> usize {
    1500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDef {
    name: Spanned<String>,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    description: String,
    #[serde(default)]
    nic: Vec<NicDef>,
    #[serde(default)]
    route: Vec<RouteDef>,
    dns: Option<Spanned<String>>,
    nat: Option<NatDef>,
    #[serde(default)]
    http: Vec<HttpDef>,
    dns_server: Option<DnsServerDef>,
    vswitch: Option<VSwitchDef>,
    mux: Option<MuxDef>,
    bgp: Option<BgpDef>,
    controller: Option<Spanned<ControllerDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControllerDef {
    /// The TCP port agents connect to.
    #[serde(default = "default_southbound_port")]
    southbound_port: u16,
}

fn default_southbound_port() -> u16 {
    strata_node::apps::control::DEFAULT_PORT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BgpDef {
    asn: Spanned<u32>,
    router_id: Option<Spanned<String>>,
    #[serde(default)]
    neighbor: Vec<NeighborDef>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    announce_vips: Option<bool>,
    #[serde(default = "default_true")]
    install_routes: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighborDef {
    address: Spanned<String>,
    asn: Spanned<u32>,
    #[serde(default)]
    passive: bool,
    #[serde(default = "default_hold")]
    hold_time: u16,
    #[serde(default = "default_connect_retry")]
    connect_retry_s: u64,
    /// Run BFD with the neighbor at this interval (RFC 5880; single hop).
    bfd_interval_ms: Option<Spanned<u64>>,
    #[serde(default = "default_bfd_multiplier")]
    bfd_multiplier: u8,
}

fn default_bfd_multiplier() -> u8 {
    3
}

fn default_hold() -> u16 {
    90
}

fn default_connect_retry() -> u64 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NicDef {
    name: Option<String>,
    network: Spanned<String>,
    address: Spanned<String>,
    /// A port of this host's vSwitch instead of the network directly.
    vswitch: Option<Spanned<String>>,
    /// The VLAN of that port.
    vlan: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VSwitchDef {
    name: String,
    uplink: Spanned<String>,
    provider: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuxDef {
    provider: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    prefix: Spanned<String>,
    via: Option<Spanned<String>>,
    /// `blackhole` or `reject`, instead of `via`.
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatDef {
    external: Spanned<String>,
    #[serde(default)]
    forward: Vec<ForwardDef>,
    #[serde(default = "default_max_conns")]
    max_conns: usize,
}

fn default_max_conns() -> usize {
    65536
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardDef {
    protocol: Spanned<String>,
    port: u16,
    to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpDef {
    #[serde(default = "default_http_port")]
    port: u16,
    #[serde(default = "default_backlog")]
    backlog: usize,
    #[serde(default)]
    page: Vec<PageDef>,
}

fn default_http_port() -> u16 {
    80
}

fn default_backlog() -> usize {
    8
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageDef {
    path: String,
    body: String,
    /// Milliseconds the server waits before answering.
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsServerDef {
    records: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDef {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    from: Option<Spanned<String>>,
    ping: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    resolve: Option<Spanned<String>>,
    #[serde(default = "default_count")]
    count: u16,
    #[serde(default = "default_expect")]
    expect: Spanned<String>,
    expect_status: Option<u16>,
    expect_body: Option<String>,
    /// HTTP: fetch the URL this many times, each on a new connection.
    #[serde(default = "default_repeat")]
    repeat: u16,
    /// HTTP with `repeat`: texts each of which some response body must contain; the
    /// result counts the responses that contain each.
    #[serde(default)]
    expect_bodies: Vec<String>,
    expect_address: Option<Spanned<String>>,
    path: Option<Spanned<Vec<String>>>,
    return_path: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    /// HTTP: start the fetches (all at once) and go on; a later `await` checks them.
    #[serde(default)]
    background: bool,
    /// Wait for a background scenario's fetches and check them.
    #[serde(rename = "await")]
    await_: Option<Spanned<String>>,
    /// Stop (reset and stop listening) or start a node's HTTP servers.
    stop_http: Option<Spanned<String>>,
    start_http: Option<Spanned<String>>,
    /// Stop a node's BGP sessions (Cease / Administrative Shutdown), as a Mux going down.
    stop_bgp: Option<Spanned<String>>,
    /// Reset a node's BGP sessions without a NOTIFICATION and start them again, as a
    /// crashed and restarted Mux.
    restart_bgp: Option<Spanned<String>>,
    /// Cut a node off from every network (pull its cables), or reconnect it.
    cut: Option<Spanned<String>>,
    reconnect: Option<Spanned<String>>,
    /// Let the lab run this long after the action, before checking.
    #[serde(default)]
    wait_ms: u64,
    /// DIPs every Mux must hold out of (or in) its pools when the scenario is checked.
    #[serde(default)]
    expect_dips_down: Vec<Spanned<String>>,
    #[serde(default)]
    expect_dips_up: Vec<Spanned<String>>,
    /// For `await`: connections that reached these nodes must all have completed.
    #[serde(default)]
    expect_survivors_on: Vec<Spanned<String>>,
    /// The node whose routing table `expect_routes` and `expect_no_routes` are about.
    expect_routes_on: Option<Spanned<String>>,
    #[serde(default)]
    expect_routes: Vec<Spanned<String>>,
    #[serde(default)]
    expect_no_routes: Vec<Spanned<String>>,
    /// Routes with exactly these next hops: `"192.168.133.74/32 via 192.168.100.20"`
    /// (several next hops separated by commas).
    #[serde(default)]
    expect_next_hops: Vec<Spanned<String>>,
}

fn default_count() -> u16 {
    3
}

fn default_expect() -> Spanned<String> {
    Spanned::new(0..0, "success".to_string())
}

fn default_repeat() -> u16 {
    1
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Reads and validates a lab file's text. `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Topology, LabFileError> {
    let err = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        LabFileError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let toml_err = |e: toml::de::Error| {
        err(
            e.span().unwrap_or(0..0),
            e.message().trim_end().replace('\n', "; "),
        )
    };
    let mut document = toml::de::DeTable::parse(text).map_err(toml_err)?;
    let span = document.span();
    stamp::stamp(document.get_mut()).map_err(|(span, message)| err(span, message))?;
    let raw = LabFile::deserialize(toml::de::Deserializer::from(Spanned::new(
        span,
        document.into_inner(),
    )))
    .map_err(toml_err)?;
    Checker { err: &err }.check(raw)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

pub(crate) struct Checker<'a, E: Fn(std::ops::Range<usize>, String) -> LabFileError> {
    err: &'a E,
}

impl<E: Fn(std::ops::Range<usize>, String) -> LabFileError> Checker<'_, E> {
    pub(crate) fn at<T>(&self, s: &Spanned<T>, message: String) -> LabFileError {
        (self.err)(s.span(), message)
    }

    fn addr(&self, s: &Spanned<String>, what: &str) -> Result<Ipv4Addr, LabFileError> {
        s.get_ref().parse().map_err(|_| {
            self.at(
                s,
                format!(
                    "expected {what} as an IPv4 address like 192.168.100.1, found {:?}",
                    s.get_ref()
                ),
            )
        })
    }

    fn prefix(&self, s: &Spanned<String>, what: &str) -> Result<Ipv4Net, LabFileError> {
        s.get_ref().parse().map_err(|_| {
            self.at(
                s,
                format!(
                    "expected {what} as an IPv4 prefix like 192.168.100.0/24, found {:?}",
                    s.get_ref()
                ),
            )
        })
    }

    /// `"PREFIX via A, B"`: a route and its exact next hops, sorted.
    fn next_hops(&self, s: &Spanned<String>) -> Result<(Ipv4Net, Vec<Ipv4Addr>), LabFileError> {
        let bad = || {
            self.at(
                s,
                format!(
                    "expected a route and its next hops like \"192.168.133.74/32 via \
                     192.168.100.20, 192.168.100.21\", found {:?}",
                    s.get_ref()
                ),
            )
        };
        let (prefix, hops) = s.get_ref().split_once(" via ").ok_or_else(bad)?;
        let prefix: Ipv4Net = prefix.trim().parse().map_err(|_| bad())?;
        let mut hops = hops
            .split(',')
            .map(|h| h.trim().parse::<Ipv4Addr>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        hops.sort();
        Ok((prefix.trunc(), hops))
    }

    fn check(&self, raw: LabFile) -> Result<Topology, LabFileError> {
        let mut networks: Vec<Network> = Vec::new();
        let mut network_index = HashMap::new();
        for def in &raw.networks {
            let prefix = self.prefix(&def.prefix, "the network's prefix")?;
            if prefix != prefix.trunc() {
                return Err(self.at(
                    &def.prefix,
                    format!(
                        "network prefix {prefix} has host bits set; did you mean {}?",
                        prefix.trunc()
                    ),
                ));
            }
            if network_index.contains_key(def.name.get_ref()) {
                return Err(self.at(
                    &def.name,
                    format!("duplicate network {:?}", def.name.get_ref()),
                ));
            }
            if let Some(other) = networks
                .iter()
                .find(|n| n.prefix.contains(&prefix) || prefix.contains(&n.prefix))
            {
                return Err(self.at(
                    &def.prefix,
                    format!(
                        "network {prefix} overlaps network {:?} ({})",
                        other.name, other.prefix
                    ),
                ));
            }
            if !(68..=9000).contains(&def.mtu) {
                return Err(self.at(&def.name, format!("MTU {} out of range 68..=9000", def.mtu)));
            }
            network_index.insert(def.name.get_ref().clone(), networks.len());
            networks.push(Network {
                name: def.name.get_ref().clone(),
                prefix,
                mtu: def.mtu,
                description: def.description.clone(),
            });
        }
        let network_names = || {
            networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };

        let mut nodes: Vec<NodeSpec> = Vec::new();
        let mut node_index: HashMap<String, usize> = HashMap::new();
        let mut controller_at: Option<(String, std::ops::Range<usize>)> = None;
        let mut owners: HashMap<Ipv4Addr, String> = HashMap::new();
        for def in &raw.nodes {
            let name = def.name.get_ref().clone();
            if node_index.contains_key(&name) {
                return Err(self.at(&def.name, format!("duplicate node {name:?}")));
            }
            if def.nic.is_empty() {
                return Err(self.at(
                    &def.name,
                    format!(
                        "node {name:?} has no NIC: add a [[node.nic]] with a network and an address"
                    ),
                ));
            }
            if node_index.len() == crate::lab::MAX_NODES || def.nic.len() > crate::lab::MAX_NICS {
                return Err(self.at(
                    &def.name,
                    format!(
                        "node {name:?}: a lab has at most {} nodes of at most {} NICs (each NIC's MAC is made of the two numbers)",
                        crate::lab::MAX_NODES,
                        crate::lab::MAX_NICS
                    ),
                ));
            }
            let mut nics = Vec::new();
            for (i, nic) in def.nic.iter().enumerate() {
                let Some(&network) = network_index.get(nic.network.get_ref()) else {
                    return Err(self.at(
                        &nic.network,
                        format!("NIC of {name:?} is on network {:?}, which does not exist (networks: {})", nic.network.get_ref(), network_names()),
                    ));
                };
                let addr = self.prefix(&nic.address, "the NIC's address with its prefix length")?;
                let net = &networks[network];
                if addr.trunc() != net.prefix {
                    return Err(self.at(
                        &nic.address,
                        format!(
                            "address {addr} is not on network {:?} ({})",
                            net.name, net.prefix
                        ),
                    ));
                }
                if addr.addr() == net.prefix.network()
                    || (net.prefix.prefix_len() < 31 && addr.addr() == net.prefix.broadcast())
                {
                    return Err(self.at(
                        &nic.address,
                        format!("{} is the network's own or broadcast address", addr.addr()),
                    ));
                }
                if let Some(owner) = owners.get(&addr.addr()) {
                    return Err(self.at(
                        &nic.address,
                        format!(
                            "duplicate address {}: {owner:?} has it already",
                            addr.addr()
                        ),
                    ));
                }
                if nics.iter().any(|n: &NicSpec| n.network == network) {
                    return Err(self.at(
                        &nic.network,
                        format!("node {name:?} has two NICs on network {:?}", net.name),
                    ));
                }
                owners.insert(addr.addr(), name.clone());
                let vlan = match &nic.vlan {
                    Some(v) if nic.vswitch.is_none() => {
                        return Err(self.at(
                            v,
                            "a VLAN is a vSwitch port's: this NIC has no vswitch".to_string(),
                        ));
                    }
                    Some(v) if !(1..=4094).contains(v.get_ref()) => {
                        return Err(self.at(v, format!("VLAN {} is not 1 to 4094", v.get_ref())));
                    }
                    Some(v) => Some(*v.get_ref()),
                    None => None,
                };
                nics.push(NicSpec {
                    vswitch_host: None,
                    vlan,
                    name: nic.name.clone().unwrap_or_else(|| {
                        format!(
                            "Ethernet{}",
                            if i == 0 {
                                String::new()
                            } else {
                                format!(" {}", i + 1)
                            }
                        )
                    }),
                    network,
                    addr,
                });
            }
            let mut routes = Vec::new();
            for r in &def.route {
                let prefix = self.prefix(&r.prefix, "the route's prefix")?;
                let (via, kind) = match (&r.via, &r.kind) {
                    (Some(v), None) => {
                        let via = self.addr(v, "the route's next hop")?;
                        let connected = nics
                            .iter()
                            .any(|n| n.addr.contains(&via) && n.addr.addr() != via);
                        if !connected {
                            return Err(self.at(
                                v,
                                format!("next hop {via} of route {prefix} is unreachable: it is on none of {name:?}'s networks"),
                            ));
                        }
                        (Some(via), RouteKind::Forward)
                    }
                    (None, Some(k)) => match k.get_ref().as_str() {
                        "blackhole" => (None, RouteKind::Blackhole),
                        "reject" => (None, RouteKind::Reject),
                        other => {
                            return Err(self.at(
                                k,
                                format!("expected the route's type to be \"blackhole\" or \"reject\", found {other:?}"),
                            ));
                        }
                    },
                    (Some(_), Some(k)) => {
                        return Err(self.at(
                            k,
                            format!("route {prefix} has both a next hop (via) and a type: a {} route has no next hop", k.get_ref()),
                        ));
                    }
                    (None, None) => {
                        return Err(self.at(
                            &r.prefix,
                            format!("route {prefix} needs a next hop (via = \"ADDRESS\") or a type (\"blackhole\" or \"reject\")"),
                        ));
                    }
                };
                routes.push(RouteSpec {
                    prefix: prefix.trunc(),
                    via,
                    kind,
                    note: r.note.clone(),
                });
            }
            let dns = match &def.dns {
                Some(s) => Some(self.addr(s, "the DNS server")?),
                None => None,
            };
            let nat = match &def.nat {
                None => None,
                Some(n) => {
                    let Some(external_nic) = nics
                        .iter()
                        .position(|nic| networks[nic.network].name == *n.external.get_ref())
                    else {
                        return Err(self.at(
                            &n.external,
                            format!("NAT's external network {:?} is not one of {name:?}'s NICs' networks", n.external.get_ref()),
                        ));
                    };
                    if def.kind != Kind::Router {
                        return Err(self.at(
                            &def.name,
                            format!("node {name:?} has a NAT but is not kind = \"router\""),
                        ));
                    }
                    let mut forwards = Vec::new();
                    for f in &n.forward {
                        let proto = match f.protocol.get_ref().as_str() {
                            "tcp" => strata_wire::flow::proto::TCP,
                            "udp" => strata_wire::flow::proto::UDP,
                            other => {
                                return Err(self.at(
                                    &f.protocol,
                                    format!(
                                        "expected protocol \"tcp\" or \"udp\", found {other:?}"
                                    ),
                                ));
                            }
                        };
                        let internal: SocketAddrV4 = f.to.get_ref().parse().map_err(|_| {
                            self.at(&f.to, format!("expected an address and port like 192.168.200.10:80, found {:?}", f.to.get_ref()))
                        })?;
                        forwards.push(PortForward {
                            proto,
                            external_port: f.port,
                            internal,
                        });
                    }
                    Some(NatSpec {
                        external_nic,
                        forwards,
                        max_conns: n.max_conns,
                        timeouts: Timeouts::default(),
                    })
                }
            };
            let mut services = Vec::new();
            for h in &def.http {
                services.push(ServiceConfig::Http {
                    port: h.port,
                    backlog: h.backlog,
                    pages: h
                        .page
                        .iter()
                        .map(|p| Page {
                            path: p.path.clone(),
                            body: p.body.clone(),
                            delay: Duration::from_millis(p.delay_ms),
                        })
                        .collect(),
                });
            }
            if let Some(d) = &def.dns_server {
                let mut records = Vec::new();
                for (record, addr) in &d.records {
                    if !strata_node::apps::dns::valid_name(record) {
                        return Err(self.at(addr, format!("{record:?} is not a valid DNS name")));
                    }
                    records.push((record.clone(), self.addr(addr, "the record's address")?));
                }
                services.push(ServiceConfig::Dns { port: 53, records });
            }
            let nic_on = |net: &Spanned<String>, what: &str| {
                nics.iter()
                    .position(|nic| networks[nic.network].name == *net.get_ref())
                    .ok_or_else(|| {
                        self.at(
                            net,
                            format!(
                                "{what} network {:?} is not one of {name:?}'s NICs' networks",
                                net.get_ref()
                            ),
                        )
                    })
            };
            let vswitch = match &def.vswitch {
                None => None,
                Some(v) => {
                    if def.kind != Kind::Host {
                        return Err(self.at(
                            &def.name,
                            format!("node {name:?} has a vswitch but is not kind = \"host\""),
                        ));
                    }
                    let Some(&uplink_network) = network_index.get(v.uplink.get_ref()) else {
                        return Err(self.at(
                            &v.uplink,
                            format!(
                                "uplink network {:?} does not exist (networks: {})",
                                v.uplink.get_ref(),
                                network_names()
                            ),
                        ));
                    };
                    let provider_nic = match &v.provider {
                        Some(p) => Some(nic_on(p, "provider")?),
                        None => None,
                    };
                    Some(VSwitchSpec {
                        name: v.name.clone(),
                        uplink_network,
                        provider_nic,
                    })
                }
            };
            let mux = match &def.mux {
                None => None,
                Some(m) => Some(MuxSpec {
                    provider_nic: nic_on(&m.provider, "the Mux's provider")?,
                }),
            };
            let bgp = match &def.bgp {
                None => None,
                Some(b) => {
                    let router_id = match &b.router_id {
                        Some(r) => self.addr(r, "the BGP router ID")?,
                        None => nics[0].addr.addr(),
                    };
                    let mut neighbors = Vec::new();
                    for n in &b.neighbor {
                        let address = self.addr(&n.address, "the neighbor's address")?;
                        if !nics
                            .iter()
                            .any(|nic| nic.addr.contains(&address) && nic.addr.addr() != address)
                        {
                            return Err(self.at(
                                &n.address,
                                format!("BGP neighbor {address} is on none of {name:?}'s networks"),
                            ));
                        }
                        if n.hold_time != 0 && n.hold_time < 3 {
                            return Err(self.at(
                                &n.address,
                                format!(
                                    "hold time {} is neither 0 nor at least 3 seconds",
                                    n.hold_time
                                ),
                            ));
                        }
                        let bfd = match &n.bfd_interval_ms {
                            Some(ms) if !(10..=60_000).contains(ms.get_ref()) => {
                                return Err(self.at(
                                    ms,
                                    format!("bfd_interval_ms {} is not 10 to 60000", ms.get_ref()),
                                ));
                            }
                            Some(_) if n.bfd_multiplier == 0 => {
                                return Err(
                                    self.at(&n.address, "bfd_multiplier is 1 to 255".to_string())
                                );
                            }
                            Some(ms) => Some(strata_node::bgp_codec::bfd::Config::new(
                                Duration::from_millis(*ms.get_ref()),
                                n.bfd_multiplier,
                            )),
                            None => None,
                        };
                        neighbors.push(strata_node::apps::bgp::NeighborConfig {
                            address,
                            asn: *n.asn.get_ref(),
                            passive: n.passive,
                            hold_time: n.hold_time,
                            connect_retry: Duration::from_secs(n.connect_retry_s.max(1)),
                            bfd,
                        });
                    }
                    let networks = b
                        .networks
                        .iter()
                        .map(|p| self.prefix(p, "an announced network").map(|n| n.trunc()))
                        .collect::<Result<Vec<_>, _>>()?;
                    if *b.asn.get_ref() == 0 {
                        return Err(self.at(&b.asn, "AS 0 is reserved".to_string()));
                    }
                    Some(strata_node::apps::bgp::BgpConfig {
                        asn: *b.asn.get_ref(),
                        router_id,
                        neighbors,
                        networks,
                        announce_vips: b.announce_vips.unwrap_or(mux.is_some()),
                        install_routes: b.install_routes,
                        added: Default::default(),
                    })
                }
            };
            let controller = match &def.controller {
                None => None,
                Some(c) if c.get_ref().southbound_port == 0 => {
                    return Err(self.at(c, "southbound_port 0 is not a port".to_string()));
                }
                Some(c) => {
                    if let Some((other, _)) = &controller_at {
                        return Err(self.at(
                            c,
                            format!("{other} already runs the network controller; a lab has one"),
                        ));
                    }
                    controller_at = Some((name.clone(), c.span()));
                    Some(ControllerSpec {
                        southbound_port: c.get_ref().southbound_port,
                    })
                }
            };
            node_index.insert(name.clone(), nodes.len());
            nodes.push(NodeSpec {
                vswitch,
                mux,
                bgp,
                controller,
                name,
                kind: def.kind,
                description: def.description.clone(),
                nics,
                routes,
                dns,
                nat,
                services,
            });
        }

        // VM NICs that are ports of a host's vSwitch: the host may come later in the file.
        for (n, def) in raw.nodes.iter().enumerate() {
            for (i, nic) in def.nic.iter().enumerate() {
                let Some(host) = &nic.vswitch else { continue };
                let Some(&h) = node_index.get(host.get_ref()) else {
                    return Err(self.at(
                        host,
                        format!("unknown host {:?} for the NIC's vswitch", host.get_ref()),
                    ));
                };
                let Some(sw) = &nodes[h].vswitch else {
                    return Err(self.at(
                        host,
                        format!("node {:?} has no [node.vswitch]", host.get_ref()),
                    ));
                };
                if sw.uplink_network != nodes[n].nics[i].network {
                    return Err(self.at(
                        host,
                        format!(
                            "the NIC is on {:?} but {:?}'s vSwitch uplink is on {:?}",
                            networks[nodes[n].nics[i].network].name,
                            host.get_ref(),
                            networks[sw.uplink_network].name
                        ),
                    ));
                }
                if h == n {
                    return Err(self.at(
                        host,
                        "a host's own NICs are not VM ports of its vSwitch".to_string(),
                    ));
                }
                nodes[n].nics[i].vswitch_host = Some(h);
            }
        }
        // BGP neighbors are nodes of the lab that speak BGP, in the AS said of them.
        for def in &raw.nodes {
            let Some(b) = &def.bgp else { continue };
            for n in &b.neighbor {
                let address = self.addr(&n.address, "the neighbor's address")?;
                let Some(peer) = nodes
                    .iter()
                    .find(|p| p.nics.iter().any(|c| c.addr.addr() == address))
                else {
                    return Err(self.at(
                        &n.address,
                        format!("BGP neighbor {address} is the address of no node in this lab"),
                    ));
                };
                let Some(peer_bgp) = &peer.bgp else {
                    return Err(self.at(
                        &n.address,
                        format!(
                            "BGP neighbor {address} is {:?}, which has no [node.bgp]",
                            peer.name
                        ),
                    ));
                };
                if peer_bgp.asn != *n.asn.get_ref() {
                    return Err(self.at(
                        &n.asn,
                        format!(
                            "BGP neighbor {address} is {:?}, whose [node.bgp] asn is {}, not {}",
                            peer.name,
                            peer_bgp.asn,
                            n.asn.get_ref()
                        ),
                    ));
                }
            }
        }
        let slb = match &raw.slb {
            Some(def) => Some(slb::check(self, def, &networks, &nodes, &node_index)?),
            None => None,
        };
        // The Muxes and hosts are configured by the controller: a lab with any needs one.
        if controller_at.is_none()
            && let Some(m) = raw.nodes.iter().find_map(|d| d.mux.as_ref())
        {
            return Err(self.at(
                &m.provider,
                "a Mux is configured by the network controller, and no node has [node.controller]"
                    .to_string(),
            ));
        }

        let node_names = || {
            nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut scenarios = Vec::new();
        let mut scenario_names = HashMap::new();
        for def in &raw.scenarios {
            if scenario_names
                .insert(def.name.get_ref().clone(), ())
                .is_some()
            {
                return Err(self.at(
                    &def.name,
                    format!("duplicate scenario {:?}", def.name.get_ref()),
                ));
            }
            let node_named = |n: &Spanned<String>| {
                node_index.get(n.get_ref()).copied().ok_or_else(|| {
                    self.at(
                        n,
                        format!("unknown node {:?} (nodes: {})", n.get_ref(), node_names()),
                    )
                })
            };
            let actions = [
                def.ping.is_some(),
                def.http.is_some(),
                def.resolve.is_some(),
                def.await_.is_some(),
                def.stop_http.is_some(),
                def.start_http.is_some(),
                def.stop_bgp.is_some(),
                def.restart_bgp.is_some(),
                def.cut.is_some(),
                def.reconnect.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(self.at(
                    &def.name,
                    "a scenario has exactly one of `ping`, `http`, `resolve`, `await`, `stop_http`, `start_http`, `stop_bgp`, `restart_bgp`, `cut` or `reconnect`".to_string(),
                ));
            }
            let needs_from = def.ping.is_some() || def.http.is_some() || def.resolve.is_some();
            let from = match (&def.from, needs_from) {
                (Some(f), _) => Some(node_named(f)?),
                (None, true) => {
                    return Err(self.at(
                        &def.name,
                        "this scenario needs `from`: the node that runs it".to_string(),
                    ));
                }
                (None, false) => None,
            };
            let action = if let Some(target) = &def.ping {
                ScenarioAction::Ping {
                    target: self.addr(target, "the ping target")?,
                    count: def.count,
                }
            } else if let Some(url) = &def.http {
                strata_node::apps::http::parse_url(url.get_ref())
                    .map_err(|e| self.at(url, format!("expected an http:// URL: {e}")))?;
                ScenarioAction::Http {
                    url: url.get_ref().clone(),
                    repeat: def.repeat.max(1),
                    background: def.background,
                }
            } else if let Some(name) = &def.resolve {
                if !strata_node::apps::dns::valid_name(name.get_ref()) {
                    return Err(self.at(
                        name,
                        format!("{:?} is not a valid DNS name", name.get_ref()),
                    ));
                }
                ScenarioAction::Resolve {
                    name: name.get_ref().clone(),
                }
            } else if let Some(other) = &def.await_ {
                let Some(index) = scenarios
                    .iter()
                    .position(|s: &Scenario| s.name == *other.get_ref())
                else {
                    return Err(self.at(
                        other,
                        format!("no earlier scenario {:?} to await", other.get_ref()),
                    ));
                };
                if !matches!(
                    scenarios[index].action,
                    ScenarioAction::Http {
                        background: true,
                        ..
                    }
                ) {
                    return Err(self.at(
                        other,
                        format!(
                            "scenario {:?} is not a background `http` scenario",
                            other.get_ref()
                        ),
                    ));
                }
                ScenarioAction::Await { scenario: index }
            } else if let Some(n) = def.stop_http.as_ref().or(def.start_http.as_ref()) {
                let node = node_named(n)?;
                if !nodes[node]
                    .services
                    .iter()
                    .any(|s| matches!(s, ServiceConfig::Http { .. }))
                {
                    return Err(self.at(n, format!("node {:?} runs no HTTP server", n.get_ref())));
                }
                ScenarioAction::SetHttp {
                    node,
                    enabled: def.start_http.is_some(),
                }
            } else if let Some(n) = def.stop_bgp.as_ref().or(def.restart_bgp.as_ref()) {
                let node = node_named(n)?;
                if nodes[node].bgp.is_none() {
                    return Err(self.at(n, format!("node {:?} does not speak BGP", n.get_ref())));
                }
                if def.restart_bgp.is_some() {
                    ScenarioAction::RestartBgp { node }
                } else {
                    ScenarioAction::StopBgp { node }
                }
            } else if let Some(n) = def.cut.as_ref().or(def.reconnect.as_ref()) {
                ScenarioAction::Cut {
                    node: node_named(n)?,
                    cut: def.cut.is_some(),
                }
            } else {
                unreachable!("exactly one action is set")
            };
            let from = from.unwrap_or(match action {
                ScenarioAction::SetHttp { node, .. }
                | ScenarioAction::StopBgp { node }
                | ScenarioAction::RestartBgp { node }
                | ScenarioAction::Cut { node, .. } => node,
                ScenarioAction::Await { scenario } => scenarios[scenario].from,
                _ => 0,
            });
            let dips = |list: &[Spanned<String>]| {
                list.iter()
                    .map(|a| self.addr(a, "a DIP"))
                    .collect::<Result<Vec<_>, _>>()
            };
            let routes = |list: &[Spanned<String>]| {
                list.iter()
                    .map(|p| self.prefix(p, "a route's prefix").map(|n| n.trunc()))
                    .collect::<Result<Vec<_>, _>>()
            };
            let routes_on = match &def.expect_routes_on {
                Some(n) => Some(node_named(n)?),
                None if !def.expect_routes.is_empty()
                    || !def.expect_no_routes.is_empty()
                    || !def.expect_next_hops.is_empty() =>
                {
                    return Err(self.at(
                        &def.name,
                        "`expect_routes` needs `expect_routes_on`: the node whose routes they are"
                            .to_string(),
                    ));
                }
                None => None,
            };
            let next_hops = def
                .expect_next_hops
                .iter()
                .map(|e| self.next_hops(e))
                .collect::<Result<Vec<_>, _>>()?;
            let survivors = def
                .expect_survivors_on
                .iter()
                .map(|n| node_named(n).map(|i| nodes[i].name.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            if nodes[from].dns.is_none()
                && (matches!(action, ScenarioAction::Resolve { .. })
                    || matches!(&action, ScenarioAction::Http { url, .. } if strata_node::apps::http::parse_url(url).is_ok_and(|(h, _, _)| h.parse::<Ipv4Addr>().is_err())))
            {
                return Err(self.at(
                    def.from.as_ref().unwrap_or(&def.name),
                    format!(
                        "scenario needs DNS but node {:?} has no `dns` server set",
                        nodes[from].name
                    ),
                ));
            }
            let address = match &def.expect_address {
                Some(a) => Some(self.addr(a, "the expected address")?),
                None => None,
            };
            let failure = match def.expect.get_ref().as_str() {
                "success" => false,
                "failure" => true,
                other => {
                    return Err(self.at(
                        &def.expect,
                        format!("expected \"success\" or \"failure\", found {other:?}"),
                    ));
                }
            };
            let check_path =
                |p: &Option<Spanned<Vec<String>>>| -> Result<Option<Vec<String>>, LabFileError> {
                    match p {
                        None => Ok(None),
                        Some(p) => {
                            if let Some(bad) = p
                                .get_ref()
                                .iter()
                                .find(|n| *n != "*" && !node_index.contains_key(*n))
                            {
                                return Err(self.at(
                                    p,
                                    format!(
                                        "unknown node {bad:?} in path (nodes: {})",
                                        node_names()
                                    ),
                                ));
                            }
                            Ok(Some(p.get_ref().clone()))
                        }
                    }
                };
            scenarios.push(Scenario {
                name: def.name.get_ref().clone(),
                description: def.description.clone(),
                from,
                action,
                timeout: Duration::from_millis(def.timeout_ms),
                wait: Duration::from_millis(def.wait_ms),
                expect: Expect {
                    failure,
                    status: def.expect_status,
                    body_contains: def.expect_body.clone(),
                    bodies: def.expect_bodies.clone(),
                    dips_down: dips(&def.expect_dips_down)?,
                    dips_up: dips(&def.expect_dips_up)?,
                    survivors_on: survivors,
                    routes_on,
                    routes: routes(&def.expect_routes)?,
                    no_routes: routes(&def.expect_no_routes)?,
                    next_hops,
                    address,
                    path: check_path(&def.path)?,
                    return_path: check_path(&def.return_path)?,
                },
            });
        }

        Ok(Topology {
            name: raw.lab.name,
            description: raw.lab.description,
            seed: raw.lab.seed,
            latency: Duration::from_micros(raw.lab.latency_us),
            networks,
            nodes,
            slb,
            scenarios,
        })
    }
}

mod slb;
mod stamp;
#[cfg(test)]
mod tests;
