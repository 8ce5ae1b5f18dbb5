//! The lab at run time: nodes and segments driven by one clock.
//!
//! ```text
//!   scheduler (Lab::process, then Lab::advance)
//!     ├─ segments: deliver frames due now ─► Node::receive
//!     ├─ nodes: Node::poll(now) ─► Node::poll_transmit ─► Segment::send
//!     └─ now = min(segment deadlines, node deadlines)   (virtual: jump; wall: sleep)
//! ```
//!
//! In virtual time the lab jumps from deadline to deadline, so it is deterministic (the
//! same file and seed give the same trace) and a minute of protocol timers costs nothing.
//! In wall-clock time it sleeps until each deadline, for people and real tools.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::HashMap;
use strata_fabric::{PortId, Segment, SegmentConfig};

use strata_node::slb::host::{DipMapping, dip_layers};
use strata_node::slb::mux::{Dip, MuxConfig, VipConfig};
use strata_node::{
    LinkKind, MuxRole, NatRole, NicConfig, Node, NodeConfig, TaskReport, VSwitchConfig,
};
use strata_wire::EthernetAddress;

use crate::topology::{Kind, Topology};
use crate::trace::Seen;

/// Which clock drives the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Jump to the next deadline.
    Virtual,
    /// Sleep until the next deadline.
    Wall,
}

/// Why a lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Node(#[from] strata_node::NodeError),
    #[error("node {node}: more than 255 NICs or nodes; the MAC plan has one byte for each")]
    TooLarge { node: String },
}

/// One hop of a packet: a frame on a network from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub time: Duration,
    pub network: String,
    pub from: String,
    pub to: String,
    pub what: String,
}

/// What a scenario found.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    pub passed: bool,
    /// One line: what happened.
    pub summary: String,
    /// Why it failed, if it did.
    pub failures: Vec<String>,
    pub request: Vec<Hop>,
    pub reply: Vec<Hop>,
    pub report: Option<TaskReport>,
    /// With `repeat`: how many responses contained each of `expect_bodies`.
    pub split: Vec<(String, usize)>,
    pub started: Duration,
    pub ended: Duration,
}

impl ScenarioResult {
    /// The nodes a hop list crosses: the first sender, then every receiver.
    pub fn nodes(hops: &[Hop]) -> Vec<String> {
        let mut v: Vec<String> = hops.first().map(|h| h.from.clone()).into_iter().collect();
        v.extend(hops.iter().map(|h| h.to.clone()));
        v
    }
}

mod scenario;

pub use scenario::BOOT_LIMIT;

/// Fetches a background scenario started, waiting for an `await`.
#[derive(Debug)]
struct Background {
    tasks: Vec<strata_node::TaskId>,
    marks: Vec<usize>,
}

/// A running lab.
pub struct Lab {
    topology: Topology,
    clock: Clock,
    wall_start: std::time::Instant,
    now: Duration,
    nodes: Vec<Node>,
    segments: Vec<Segment>,
    /// Per segment, per port: the node and link attached.
    ports: Vec<Vec<(usize, usize)>>,
    /// Per node, per link (see `Node::links`): the segment and port.
    link_ports: Vec<Vec<(usize, PortId)>>,
    /// Background scenarios' fetches, by scenario index.
    background: HashMap<usize, Background>,
    /// DIP health changes the host agents reported: time, host, DIP, healthy.
    health_log: Vec<(Duration, String, std::net::Ipv4Addr, bool)>,
    /// Nodes cut off from every network (their cables pulled): nothing reaches them,
    /// nothing they send leaves.
    cut: Vec<bool>,
    cut_frames: u64,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("name", &self.topology.name)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The MAC of a NIC: Hyper-V's OUI 00:15:5D, then the lab's node and NIC numbers.
pub fn mac_of(node: usize, nic: usize) -> EthernetAddress {
    EthernetAddress([0x00, 0x15, 0x5d, 0x64, node as u8, nic as u8])
}

impl Lab {
    pub fn new(topology: Topology, clock: Clock) -> Result<Lab, LabError> {
        let segment_config = SegmentConfig {
            latency: topology.latency,
            ..SegmentConfig::default()
        };
        let mut segments: Vec<Segment> = topology
            .networks
            .iter()
            .map(|n| Segment::new(n.name.clone(), segment_config.clone()))
            .collect();
        let mut nodes = Vec::new();
        let node_count = topology.nodes.len();
        for (n, spec) in topology.nodes.iter().enumerate() {
            if n > 255 || spec.nics.len() > 255 {
                return Err(LabError::TooLarge {
                    node: spec.name.clone(),
                });
            }
            nodes.push(Node::new(node_config(&topology, n), Duration::ZERO)?);
        }
        // Wire every link: NICs to their networks, a host's uplink to its uplink network,
        // and each VM port to its VM over a link of their own.
        let mut vm_links: HashMap<(usize, String), usize> = HashMap::new();
        let mut vm_link = |segments: &mut Vec<Segment>, host: usize, vm: &str| {
            *vm_links.entry((host, vm.to_string())).or_insert_with(|| {
                let switch = topology.nodes[host]
                    .vswitch
                    .as_ref()
                    .map_or("vswitch", |s| s.name.as_str());
                segments.push(Segment::new(
                    format!("{switch}.{vm}"),
                    segment_config.clone(),
                ));
                segments.len() - 1
            })
        };
        let mut ports = vec![Vec::new(); segments.len()];
        let mut link_ports = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let spec = &topology.nodes[n];
            let mut attached = Vec::new();
            for (l, link) in node.links().iter().enumerate() {
                let segment = match link {
                    LinkKind::Nic(i) => match spec.nics[*i].vswitch_host {
                        Some(host) => vm_link(&mut segments, host, &spec.name),
                        None => spec.nics[*i].network,
                    },
                    LinkKind::Uplink => spec.vswitch.as_ref().map_or(0, |s| s.uplink_network),
                    LinkKind::VmPort(vm) => vm_link(&mut segments, n, vm),
                };
                ports.resize(segments.len(), Vec::new());
                let port = segments[segment].attach();
                ports[segment].push((n, l));
                attached.push((segment, port));
            }
            link_ports.push(attached);
        }
        Ok(Lab {
            topology,
            clock,
            wall_start: std::time::Instant::now(),
            now: Duration::ZERO,
            nodes,
            segments,
            ports,
            link_ports,
            background: HashMap::new(),
            health_log: Vec::new(),
            cut: vec![false; node_count],
            cut_frames: 0,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name() == name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Does everything due now: delivers the frames that arrive, polls every node, puts
    /// what they send on the networks.
    pub fn process(&mut self) {
        let now = self.now;
        for (s, segment) in self.segments.iter_mut().enumerate() {
            while let Some((port, frame)) = segment.poll_deliver(now) {
                let (node, nic) = self.ports[s][port.0];
                if self.cut[node] {
                    self.cut_frames += 1;
                } else {
                    self.nodes[node].receive(now, nic, frame);
                }
            }
        }
        for (n, node) in self.nodes.iter_mut().enumerate() {
            node.poll(now);
            while let Some((nic, frame)) = node.poll_transmit() {
                if self.cut[n] {
                    self.cut_frames += 1;
                    continue;
                }
                let (segment, port) = self.link_ports[n][nic];
                self.segments[segment].send(now, port, frame);
            }
        }
        // The SLB manager's part: what a host agent's probes found, every Mux applies.
        for n in 0..self.nodes.len() {
            for (dip, up) in self.nodes[n].take_health_events() {
                self.health_log
                    .push((now, self.nodes[n].name().to_string(), dip, up));
                for node in &mut self.nodes {
                    if let Some(mux) = node.mux_mut() {
                        mux.set_dip_health(dip, up);
                    }
                }
            }
        }
    }

    /// Lets the lab come up: runs until every BGP session is established and every
    /// BFD session beside one is Up, at most `limit`. Returns the sessions up and the
    /// sessions in all.
    pub fn boot(&mut self, limit: Duration) -> (usize, usize) {
        let count = |lab: &Lab| {
            let mut up = 0;
            let mut all = 0;
            for node in &lab.nodes {
                for n in node.bgp_status().unwrap_or_default() {
                    all += 1;
                    let bfd_up = n
                        .bfd
                        .is_none_or(|b| b == strata_node::bgp_codec::bfd::State::Up);
                    up += usize::from(n.state == strata_node::bgp::State::Established && bfd_up);
                }
            }
            (up, all)
        };
        self.run_until(limit, |lab| {
            let (up, all) = count(lab);
            up == all
        });
        count(self)
    }

    /// Cuts a node off from every network (or reconnects it): the node keeps running,
    /// but no frame reaches it or leaves it, as if its cables were pulled.
    pub fn set_cut(&mut self, node: usize, cut: bool) {
        if let Some(c) = self.cut.get_mut(node) {
            *c = cut;
        }
    }

    /// Frames lost to cut nodes so far.
    pub fn cut_frames(&self) -> u64 {
        self.cut_frames
    }

    /// DIP health changes reported so far: time, host, DIP, healthy.
    pub fn health_log(&self) -> &[(Duration, String, std::net::Ipv4Addr, bool)] {
        &self.health_log
    }

    /// Moves the clock to the next deadline of a network or a node, but no further than
    /// `limit`; on the wall clock, sleeps until then.
    pub fn advance(&mut self, limit: Duration) {
        let now = self.now;
        let next = self
            .segments
            .iter()
            .filter_map(|s| s.poll_at())
            .chain(self.nodes.iter_mut().filter_map(|n| n.poll_at(now)))
            .min()
            .unwrap_or(limit)
            .min(limit)
            // A deadline that is already due is served on the next microsecond.
            .max(now + Duration::from_micros(1));
        if self.clock == Clock::Wall {
            let target = self.wall_start + next;
            let real = std::time::Instant::now();
            if target > real {
                std::thread::sleep(target - real);
            }
        }
        self.now = next;
    }

    /// Runs until `done` holds or `duration` has passed; whether `done` held. `done` is
    /// asked after every instant's work, before the clock moves on.
    pub fn run_until(&mut self, duration: Duration, mut done: impl FnMut(&Lab) -> bool) -> bool {
        let limit = self.now + duration;
        loop {
            self.process();
            if done(self) {
                return true;
            }
            if self.now >= limit {
                return false;
            }
            self.advance(limit);
        }
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }

    /// Puts a frame on network `network` as if node `from` sent it on its NIC there (for
    /// fault injection: malformed frames, floods). Returns false if `from` has no NIC on it.
    pub fn inject(&mut self, network: &str, from: &str, frame: Vec<u8>) -> bool {
        let Some(s) = self
            .topology
            .networks
            .iter()
            .position(|n| n.name == network)
        else {
            return false;
        };
        let Some(n) = self.topology.node(from) else {
            return false;
        };
        let Some(&(_, port)) = self.link_ports[n].iter().find(|(seg, _)| *seg == s) else {
            return false;
        };
        self.segments[s].send(self.now, port, frame);
        true
    }

    /// Every frame captured so far on every segment, by time (then segment order).
    pub fn frames_since(&self, marks: &[usize]) -> Vec<Seen> {
        let mut frames = Vec::new();
        for (s, segment) in self.segments.iter().enumerate() {
            let start = marks.get(s).copied().unwrap_or(0);
            for c in &segment.captured()[start..] {
                let from = self.ports[s][c.from.0].0;
                let to = c.to.iter().map(|p| self.ports[s][p.0].0).collect();
                frames.push(Seen::new(c.time, s, from, to, c.bytes.clone()));
            }
        }
        frames.sort_by_key(|f| f.time);
        frames
    }

    fn capture_marks(&self) -> Vec<usize> {
        self.segments.iter().map(|s| s.captured().len()).collect()
    }

    /// Writes one pcap file per network into `dir`; returns their paths.
    pub fn write_captures(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for segment in &self.segments {
            let path = dir.join(format!("{}.pcap", segment.name()));
            let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            // Virtual time 0 is shown as the start of 2026-01-01 UTC.
            let base = Duration::from_secs(1_767_225_600);
            strata_fabric::pcap::write(
                file,
                base,
                segment
                    .captured()
                    .iter()
                    .map(|c| (c.time, c.bytes.as_slice())),
            )?;
            written.push(path);
        }
        Ok(written)
    }
}

/// What node `n` of the topology is made of: its NICs and routes, and its roles, with the
/// SLB's VIP entries and VFP policies compiled from the topology's `[slb]` (the lab plays
/// the SLB manager's part of the network controller here).
fn node_config(topology: &Topology, n: usize) -> NodeConfig {
    let spec = &topology.nodes[n];
    let uplink = spec.vswitch.as_ref().map(|s| s.uplink_network);
    let provider_addr = |host: usize| {
        let h = &topology.nodes[host];
        h.vswitch
            .as_ref()
            .and_then(|s| s.provider_nic)
            .map(|i| h.nics[i].addr.addr())
    };
    let vswitch = spec.vswitch.as_ref().map(|sw| {
        let vms = topology
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(m, vm)| {
                vm.nics
                    .iter()
                    .enumerate()
                    .map(move |(j, nic)| (m, vm, j, nic))
            })
            .filter(|(_, _, _, nic)| nic.vswitch_host == Some(n))
            .map(|(m, vm, j, nic)| {
                let mappings = dip_mappings(topology, m, j);
                let layers = match &topology.slb {
                    Some(slb) if !mappings.is_empty() => {
                        dip_layers(nic.addr.addr(), slb.vni, &mappings)
                    }
                    _ => Vec::new(),
                };
                (vm.name.clone(), mac_of(m, j), layers)
            })
            .collect();
        VSwitchConfig {
            name: sw.name.clone(),
            vms,
            provider_addrs: provider_addr(n).into_iter().collect(),
        }
    });
    let mux = match (&spec.mux, &topology.slb) {
        (Some(m), Some(slb)) => Some(MuxRole {
            config: MuxConfig::new(
                spec.nics[m.provider_nic].addr.addr(),
                mac_of(n, m.provider_nic),
            ),
            vips: slb
                .vips
                .iter()
                .map(|v| VipConfig {
                    key: v.key,
                    dips: v
                        .members
                        .iter()
                        .filter_map(|&(m, j)| {
                            let nic = &topology.nodes[m].nics[j];
                            Some(Dip {
                                addr: nic.addr.addr(),
                                port: v.backend_port,
                                host_pa: provider_addr(nic.vswitch_host?)?,
                                mac: mac_of(m, j),
                                weight: 1,
                            })
                        })
                        .collect(),
                    distribution: v.distribution,
                    vni: slb.vni,
                })
                .collect(),
        }),
        _ => None,
    };
    NodeConfig {
        name: spec.name.clone(),
        nics: spec
            .nics
            .iter()
            .enumerate()
            .map(|(i, nic)| NicConfig {
                name: nic.name.clone(),
                mac: mac_of(n, i),
                addr: nic.addr,
                mtu: topology.networks[nic.network].mtu,
                behind_switch: uplink == Some(nic.network),
            })
            .collect(),
        routes: spec.routes.iter().map(|r| (r.prefix, r.via)).collect(),
        forwarding: spec.kind == Kind::Router,
        nat: spec.nat.as_ref().map(|nat| {
            let external = spec.nics[nat.external_nic].addr.addr();
            let mut config = strata_node::nat::Config::new(external);
            config.forwards = nat.forwards.clone();
            config.max_conns = nat.max_conns;
            config.timeouts = nat.timeouts;
            NatRole {
                external_nic: nat.external_nic,
                config,
            }
        }),
        dns_server: spec.dns,
        services: spec.services.clone(),
        vswitch,
        mux,
        probes: probes_of(topology, n),
        bgp: spec.bgp.clone(),
        seed: topology.seed.wrapping_mul(1_000_003).wrapping_add(n as u64),
    }
}

/// The VIP mappings that land on NIC `j` of node `m`.
fn dip_mappings(topology: &Topology, m: usize, j: usize) -> Vec<DipMapping> {
    topology
        .slb
        .iter()
        .flat_map(|slb| &slb.vips)
        .filter(|v| v.members.contains(&(m, j)))
        .map(|v| DipMapping {
            name: v.name.clone(),
            vip: v.key,
            backend_port: v.backend_port,
        })
        .collect()
}

/// The health probes host `n`'s agent sends: one per DIP on its vSwitch and probe.
fn probes_of(topology: &Topology, n: usize) -> Vec<strata_node::apps::probe::ProbeConfig> {
    let mut probes: Vec<strata_node::apps::probe::ProbeConfig> = Vec::new();
    for vip in topology.slb.iter().flat_map(|s| &s.vips) {
        let Some(probe) = &vip.probe else { continue };
        for &(m, j) in &vip.members {
            let nic = &topology.nodes[m].nics[j];
            if nic.vswitch_host != Some(n) {
                continue;
            }
            let config = strata_node::apps::probe::ProbeConfig {
                dip: nic.addr.addr(),
                port: probe.port,
                http_path: probe.http_path.clone(),
                interval: probe.interval,
                count: probe.count,
            };
            if !probes.contains(&config) {
                probes.push(config);
            }
        }
    }
    probes
}
