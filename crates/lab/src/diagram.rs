//! The lab's topology chart: what is connected to what, and what runs over it.
//!
//! [`Graph::of`] reads a running lab into one graph: the networks, the nodes with their
//! NICs and roles, each Hyper-V host with its vSwitch and the VMs on its ports, and the
//! sessions that run over the networks (BGP with its ASNs and state, VXLAN tunnels from
//! PA to PA, the controller's agents), and the VIPs with the Muxes that announce them.
//! Three renderings read the same graph: [`Graph::dot`] (graphviz), [`Graph::mermaid`],
//! and [`svg::render`], a drawing of its own in which every network is a bus and no two
//! boxes or labels overlap, whatever the size of the lab.

pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

use strata_node::bgp::State as BgpState;

use crate::Lab;
use crate::topology::{Kind, Topology};

/// A network, drawn as a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// The prefix, and what the network is (e.g. the vSwitch a management network is on).
    pub label: String,
}

/// A NIC's attachment: to a network's bus, or to a port of its host's vSwitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Index into [`Graph::networks`].
    pub network: usize,
    /// `name address`, e.g. `PAhostVNIC 192.168.233.21/24`.
    pub label: String,
    /// A VM NIC that is a port of this host's vSwitch (index into [`Graph::nodes`]).
    pub port_of: Option<usize>,
}

/// A node: a VM, a router or a Hyper-V host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// `vm`, `router` or `host`.
    pub kind: &'static str,
    pub nics: Vec<Nic>,
    /// What runs on it, one line each: roles, BGP, VIPs announced, the agent.
    pub lines: Vec<String>,
    /// A host's vSwitch: its name and what it does.
    pub vswitch: Option<String>,
}

/// What an edge between two nodes carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    /// A BGP session (and its BFD).
    Bgp,
    /// VXLAN from a Mux's PA to a host's PA.
    Vxlan,
    /// An agent's southbound connection to the controller.
    Control,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Bgp => "bgp",
            EdgeKind::Vxlan => "vxlan",
            EdgeKind::Control => "control",
        }
    }
}

/// A session between two nodes, over a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub kind: EdgeKind,
    pub a: usize,
    pub b: usize,
    pub network: usize,
    pub label: String,
    /// Whether it is up (established, connected; a tunnel is up while it has DIPs).
    pub up: bool,
}

/// A VIP: where its /32 comes from and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub address: Ipv4Addr,
    /// One line per entry: `tcp/80 → PortalVM:80, PortalVM2:80 (portal/https-portal)`.
    pub entries: Vec<String>,
    /// The Muxes that announce its /32 (indices into [`Graph::nodes`]).
    pub announced_by: Vec<usize>,
    /// The nodes behind it.
    pub dips: Vec<usize>,
}

/// The whole chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub title: String,
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub vips: Vec<Vip>,
    /// The networks a NAT faces outward (drawn at the top).
    pub outward: Vec<usize>,
}

impl Graph {
    /// The chart of a running lab: its topology, and the state of its sessions now.
    pub fn of(lab: &Lab) -> Graph {
        let t = lab.topology();
        let mut g = Graph::of_topology(t);
        let owner = owners(t);
        let lookup = |a: Ipv4Addr| owner.get(&a).copied();
        let is_vip = |p: &ipnet::Ipv4Net| {
            p.prefix_len() == 32
                && t.slb
                    .as_ref()
                    .is_some_and(|s| s.vip_prefix.contains(&p.addr()))
        };

        // BGP: each session once, from the speaker that has the lower index.
        for (n, node) in lab.nodes().iter().enumerate() {
            let Some(neighbors) = node.bgp_status() else {
                continue;
            };
            let asn = t.nodes[n].bgp.as_ref().map_or(0, |b| b.asn);
            g.nodes[n].lines.push(format!("BGP AS {asn}"));
            let mut announced: Vec<String> = Vec::new();
            for nb in &neighbors {
                let peer = lookup(nb.address);
                let name = peer.map_or(nb.address.to_string(), |p| t.nodes[p].name.clone());
                let bfd = match nb.bfd {
                    Some(s) => format!(", BFD {}", format!("{s:?}").to_lowercase()),
                    None => String::new(),
                };
                g.nodes[n]
                    .lines
                    .push(format!("  ⇄ {name} AS {}: {:?}{bfd}", nb.asn, nb.state));
                for p in nb.advertised.iter().filter(|p| is_vip(p)) {
                    let p = p.to_string();
                    if !announced.contains(&p) {
                        announced.push(p);
                    }
                }
                if let Some(p) = peer
                    && n < p
                {
                    let network = shared_network(t, n, p).unwrap_or(0);
                    let peer_asn = nb.asn;
                    g.edges.push(Edge {
                        kind: EdgeKind::Bgp,
                        a: n,
                        b: p,
                        network,
                        label: format!("BGP AS {asn} ⇄ AS {peer_asn}: {:?}", nb.state),
                        up: nb.state == BgpState::Established,
                    });
                }
            }
            announced.sort();
            for p in announced {
                g.nodes[n].lines.push(format!("announces {p}"));
            }
        }

        // The Muxes' VIP maps: VXLAN tunnels to the hosts, and each VIP's entries.
        let mut vips: BTreeMap<Ipv4Addr, Vip> = BTreeMap::new();
        let mut tunnels: BTreeMap<(usize, usize), (Ipv4Addr, Ipv4Addr, u32)> = BTreeMap::new();
        for (n, node) in lab.nodes().iter().enumerate() {
            let Some(mux) = node.mux() else { continue };
            let pa = mux.config().pa;
            g.nodes[n].lines.push(format!("SLB Mux, PA {pa}"));
            for (config, healthy) in mux.vips() {
                let k = config.key;
                let vip = vips.entry(k.vip).or_insert_with(|| Vip {
                    address: k.vip,
                    entries: Vec::new(),
                    announced_by: Vec::new(),
                    dips: Vec::new(),
                });
                let mut dips = Vec::new();
                for (dip, up) in config.dips.iter().zip(&healthy) {
                    let dip_node = lookup(dip.addr);
                    let name = dip_node.map_or(dip.addr.to_string(), |d| t.nodes[d].name.clone());
                    dips.push(format!(
                        "{name}:{}{}",
                        dip.port,
                        if *up { "" } else { " (down)" }
                    ));
                    if let Some(d) = dip_node
                        && !vip.dips.contains(&d)
                    {
                        vip.dips.push(d);
                    }
                    if let Some(h) = lookup(dip.host_pa) {
                        tunnels.insert((n, h), (pa, dip.host_pa, config.vni.get()));
                    }
                }
                let entry = format!(
                    "{}/{} → {}",
                    protocol_name(k.proto),
                    k.port,
                    if dips.is_empty() {
                        "no DIP".to_string()
                    } else {
                        dips.join(", ")
                    }
                );
                if !vip.entries.contains(&entry) {
                    vip.entries.push(entry);
                }
            }
        }
        for vip in vips.values_mut() {
            let slash32 = format!("announces {}/32", vip.address);
            vip.announced_by = (0..g.nodes.len())
                .filter(|&n| g.nodes[n].lines.contains(&slash32))
                .collect();
            vip.entries.sort();
            vip.dips.sort_unstable();
        }
        g.vips = vips.into_values().collect();
        let mut arriving: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for ((mux, host), (from, to, vni)) in tunnels {
            let network = owner_network(t, from).unwrap_or(0);
            arriving
                .entry(host)
                .or_default()
                .push(format!("{} (VNI {vni})", t.nodes[mux].name));
            g.edges.push(Edge {
                kind: EdgeKind::Vxlan,
                a: mux,
                b: host,
                network,
                label: format!("VXLAN VNI {vni}: {from} → {to}"),
                up: true,
            });
        }
        for (host, from) in arriving {
            g.nodes[host]
                .lines
                .push(format!("VXLAN from {}", from.join(", ")));
        }

        // The controller and its agents.
        if let Some(nc) = lab.nc() {
            let c = nc.node;
            let port = t.nodes[c]
                .controller
                .as_ref()
                .map_or(0, |s| s.southbound_port);
            g.nodes[c]
                .lines
                .push(format!("network controller, southbound :{port}"));
            for (n, node) in lab.nodes().iter().enumerate() {
                let Some(client) = node.agent() else { continue };
                let agent = client.agent();
                let state = match (agent.is_ready(), agent.applied_revision()) {
                    (true, Some(r)) => format!("configuration {r} applied"),
                    (true, None) => "connected".to_string(),
                    (false, _) => "not connected".to_string(),
                };
                g.nodes[n]
                    .lines
                    .push(format!("agent of {}: {state}", t.nodes[c].name));
                g.edges.push(Edge {
                    kind: EdgeKind::Control,
                    a: c,
                    b: n,
                    network: shared_network(t, c, n).unwrap_or(0),
                    label: format!("southbound :{port}"),
                    up: agent.is_ready(),
                });
            }
        }
        g.edges.sort_by_key(|e| (e.kind, e.a, e.b));
        g
    }

    /// The chart of a topology alone: networks, nodes, NICs and configured roles.
    pub fn of_topology(t: &Topology) -> Graph {
        let networks = t
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let switches: Vec<String> = t
                    .nodes
                    .iter()
                    .filter_map(|h| h.vswitch.as_ref())
                    .filter(|s| s.uplink_network == i)
                    .map(|s| s.name.clone())
                    .collect();
                let mut label = format!("{} {}", n.name, n.prefix);
                match switches.len() {
                    0 => {}
                    1..=3 => {
                        let _ = write!(label, " (vSwitch {})", switches.join(", "));
                    }
                    more => {
                        let _ = write!(
                            label,
                            " (vSwitches {} and {} more)",
                            switches[..2].join(", "),
                            more - 2
                        );
                    }
                }
                Network {
                    name: n.name.clone(),
                    label,
                }
            })
            .collect();
        let nodes = t
            .nodes
            .iter()
            .map(|spec| {
                let nics = spec
                    .nics
                    .iter()
                    .map(|nic| {
                        let mut label = if nic.name.starts_with("eth") {
                            nic.addr.to_string()
                        } else {
                            format!("{} {}", nic.name, nic.addr)
                        };
                        if let Some(v) = nic.vlan {
                            let _ = write!(label, " VLAN {v}");
                        }
                        Nic {
                            network: nic.network,
                            label,
                            port_of: nic.vswitch_host,
                        }
                    })
                    .collect();
                let mut lines = Vec::new();
                if let Some(nat) = &spec.nat {
                    let external = spec.nics[nat.external_nic].addr.addr();
                    lines.push(format!("NAT: masquerade as {external}"));
                    for f in &nat.forwards {
                        lines.push(format!(
                            "NAT: {}/{} → {}",
                            protocol_name(f.proto),
                            f.external_port,
                            f.internal
                        ));
                    }
                }
                for s in &spec.services {
                    lines.push(match s {
                        strata_node::ServiceConfig::Http { port, .. } => {
                            format!("HTTP server :{port}")
                        }
                        strata_node::ServiceConfig::Dns { .. } => "DNS server".to_string(),
                    });
                }
                Node {
                    name: spec.name.clone(),
                    kind: spec.kind.as_str(),
                    nics,
                    lines,
                    vswitch: spec
                        .vswitch
                        .as_ref()
                        .map(|s| format!("vSwitch {} (VFP)", s.name)),
                }
            })
            .collect();
        Graph {
            title: format!("{}: {}", t.name, t.description),
            networks,
            nodes,
            edges: Vec::new(),
            vips: Vec::new(),
            outward: t
                .nodes
                .iter()
                .filter_map(|n| n.nat.as_ref().map(|nat| n.nics[nat.external_nic].network))
                .collect(),
        }
    }

    /// The VMs on a host's vSwitch ports, in order.
    pub fn vms_of(&self, host: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].nics.iter().any(|c| c.port_of == Some(host)))
            .collect()
    }

    /// Whether a node is drawn inside a host (a VM on its vSwitch).
    pub fn inside(&self, node: usize) -> Option<usize> {
        self.nodes[node].nics.iter().find_map(|c| c.port_of)
    }

    /// The graph in graphviz's language: networks and nodes are boxes, NICs are edges
    /// to networks, each host is a cluster with its vSwitch and VMs, and sessions are
    /// dashed edges.
    pub fn dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "graph \"{}\" {{", dot_escape(&self.title));
        let _ = writeln!(
            out,
            "  graph [label=\"{}\", labelloc=t, rankdir=TB, fontname=\"DejaVu Sans\"];",
            dot_escape(&self.title)
        );
        let _ = writeln!(
            out,
            "  node [shape=box, style=rounded, fontname=\"DejaVu Sans\", fontsize=10];"
        );
        let _ = writeln!(out, "  edge [fontname=\"DejaVu Sans\", fontsize=9];");
        for (i, n) in self.networks.iter().enumerate() {
            let _ = writeln!(
                out,
                "  net{i} [label=\"{}\", shape=box, style=\"filled\", fillcolor=\"#dde8f5\", width=4];",
                dot_escape(&n.label)
            );
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.inside(i).is_some() {
                continue;
            }
            let vms = self.vms_of(i);
            if n.vswitch.is_some() {
                let _ = writeln!(out, "  subgraph cluster_node{i} {{");
                let _ = writeln!(out, "    label=\"{} (host)\";", dot_escape(&n.name));
                self.dot_node(&mut out, i, "    ");
                let _ = writeln!(
                    out,
                    "    node{i}_vswitch [label=\"{}\", shape=box, style=filled, fillcolor=\"#eeeeee\"];",
                    dot_escape(n.vswitch.as_deref().unwrap_or("vSwitch"))
                );
                let _ = writeln!(out, "    node{i} -- node{i}_vswitch;");
                for v in vms {
                    self.dot_node(&mut out, v, "    ");
                    for nic in &self.nodes[v].nics {
                        if nic.port_of == Some(i) {
                            let _ = writeln!(
                                out,
                                "    node{i}_vswitch -- node{v} [label=\"port {}\\n{}\"];",
                                dot_escape(&self.nodes[v].name),
                                dot_escape(&nic.label)
                            );
                        }
                    }
                }
                let _ = writeln!(out, "  }}");
            } else {
                self.dot_node(&mut out, i, "  ");
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for nic in n.nics.iter().filter(|c| c.port_of.is_none()) {
                let _ = writeln!(
                    out,
                    "  node{i} -- net{} [label=\"{}\"];",
                    nic.network,
                    dot_escape(&nic.label)
                );
            }
        }
        for e in &self.edges {
            let (color, style) = edge_style(e);
            let _ = writeln!(
                out,
                "  node{} -- node{} [label=\"{}\", style={style}, color=\"{color}\", fontcolor=\"{color}\", constraint=false];",
                e.a,
                e.b,
                dot_escape(&e.label)
            );
        }
        for (i, v) in self.vips.iter().enumerate() {
            let mut label = format!("VIP {}", v.address);
            for e in &v.entries {
                let _ = write!(label, "\n{e}");
            }
            let _ = writeln!(
                out,
                "  vip{i} [label=\"{}\", shape=note, style=filled, fillcolor=\"#fff4d6\"];",
                dot_escape(&label)
            );
            for m in &v.announced_by {
                let _ = writeln!(
                    out,
                    "  node{m} -- vip{i} [label=\"announces /32\", style=dotted, color=\"#a66f00\"];"
                );
            }
        }
        out.push_str("}\n");
        out
    }

    fn dot_node(&self, out: &mut String, i: usize, indent: &str) {
        let n = &self.nodes[i];
        let mut label = format!("{} ({})", n.name, n.kind);
        for line in &n.lines {
            let _ = write!(label, "\n{}", line.trim_start());
        }
        let _ = writeln!(out, "{indent}node{i} [label=\"{}\"];", dot_escape(&label));
    }

    /// The graph as a Mermaid flowchart: the same boxes and edges as [`Graph::dot`].
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TB\n");
        for (i, n) in self.networks.iter().enumerate() {
            let _ = writeln!(out, "  net{i}[(\"{}\")]", mermaid_escape(&n.label));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.inside(i).is_some() {
                continue;
            }
            if n.vswitch.is_some() {
                let _ = writeln!(
                    out,
                    "  subgraph host{i}[\"{} (host)\"]",
                    mermaid_escape(&n.name)
                );
                self.mermaid_node(&mut out, i, "    ");
                let _ = writeln!(
                    out,
                    "    node{i}_vswitch[\"{}\"]",
                    mermaid_escape(n.vswitch.as_deref().unwrap_or("vSwitch"))
                );
                let _ = writeln!(out, "    node{i} --- node{i}_vswitch");
                for v in self.vms_of(i) {
                    self.mermaid_node(&mut out, v, "    ");
                    for nic in self.nodes[v].nics.iter().filter(|c| c.port_of == Some(i)) {
                        let _ = writeln!(
                            out,
                            "    node{i}_vswitch ---|\"port {}\"| node{v}",
                            mermaid_escape(&nic.label)
                        );
                    }
                }
                let _ = writeln!(out, "  end");
            } else {
                self.mermaid_node(&mut out, i, "  ");
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for nic in n.nics.iter().filter(|c| c.port_of.is_none()) {
                let _ = writeln!(
                    out,
                    "  node{i} ---|\"{}\"| net{}",
                    mermaid_escape(&nic.label),
                    nic.network
                );
            }
        }
        for e in &self.edges {
            let _ = writeln!(
                out,
                "  node{} -.-|\"{}\"| node{}",
                e.a,
                mermaid_escape(&e.label),
                e.b
            );
        }
        for (i, v) in self.vips.iter().enumerate() {
            let mut label = format!("VIP {}", v.address);
            for e in &v.entries {
                let _ = write!(label, "<br/>{}", mermaid_escape(e));
            }
            let _ = writeln!(out, "  vip{i}>\"{label}\"]");
            for m in &v.announced_by {
                let _ = writeln!(out, "  node{m} -.-|\"announces /32\"| vip{i}");
            }
        }
        out
    }

    fn mermaid_node(&self, out: &mut String, i: usize, indent: &str) {
        let n = &self.nodes[i];
        let mut label = format!("{} ({})", mermaid_escape(&n.name), n.kind);
        for line in &n.lines {
            let _ = write!(label, "<br/>{}", mermaid_escape(line.trim_start()));
        }
        let _ = writeln!(out, "{indent}node{i}[\"{label}\"]");
    }
}

/// Each address of the topology and the node that has it.
fn owners(t: &Topology) -> BTreeMap<Ipv4Addr, usize> {
    let mut m = BTreeMap::new();
    for (n, node) in t.nodes.iter().enumerate() {
        for nic in &node.nics {
            m.insert(nic.addr.addr(), n);
        }
    }
    m
}

/// The network an address is on (as a NIC's address).
fn owner_network(t: &Topology, a: Ipv4Addr) -> Option<usize> {
    t.nodes
        .iter()
        .flat_map(|n| &n.nics)
        .find(|c| c.addr.addr() == a)
        .map(|c| c.network)
}

/// A network both nodes have a NIC on (not through a vSwitch port).
fn shared_network(t: &Topology, a: usize, b: usize) -> Option<usize> {
    let on = |n: usize| -> Vec<usize> {
        let spec = &t.nodes[n];
        let mut v: Vec<usize> = spec.nics.iter().map(|c| c.network).collect();
        if spec.kind == Kind::Host
            && let Some(s) = &spec.vswitch
        {
            v.push(s.uplink_network);
        }
        v
    };
    let b_on = on(b);
    on(a).into_iter().find(|x| b_on.contains(x))
}

/// The protocol's name, as users write it.
pub fn protocol_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        other => format!("proto {other}"),
    }
}

fn edge_style(e: &Edge) -> (&'static str, &'static str) {
    let color = match (e.kind, e.up) {
        (_, false) => "#c62828",
        (EdgeKind::Bgp, true) => "#1565c0",
        (EdgeKind::Vxlan, true) => "#e65100",
        (EdgeKind::Control, true) => "#6a1b9a",
    };
    let style = match e.kind {
        EdgeKind::Bgp => "dashed",
        EdgeKind::Vxlan => "bold",
        EdgeKind::Control => "dotted",
    };
    (color, style)
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}
