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

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use strata_controller::api::Api;
use strata_controller::hub::Hub;
use strata_controller::{Controller, Error as ControllerError, MemStore};
use strata_node::slb::mux::MuxConfig;
use strata_node::{
    ControlConfig, LinkKind, MuxRole, NatRole, NicConfig, Node, NodeConfig, TaskReport,
    VSwitchConfig,
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
    #[error(
        "node {node}: a lab has at most {MAX_NODES} nodes of at most {MAX_NICS} NICs (the MAC plan)"
    )]
    TooLarge { node: String },
    #[error("the lab's resources: {0}")]
    Resources(String),
}

/// The lab's network controller: its resources, and its southbound state, served by the
/// listener on its node.
pub struct Nc {
    pub node: usize,
    /// The controller behind its API (which `strata lab up` serves on 127.0.0.1).
    pub api: Arc<Api<MemStore>>,
    pub hub: Hub,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Nc {
    /// The controller (locked: the API's requests wait meanwhile).
    pub fn controller(&self) -> MutexGuard<'_, Controller<MemStore>> {
        locked(&self.api.controller)
    }
}

/// Wakes a lab that runs on the wall clock before its next deadline (a write through
/// the API has something for it to do).
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<(Mutex<bool>, Condvar)>);

impl Waker {
    pub fn wake(&self) {
        *locked(&self.0.0) = true;
        self.0.1.notify_all();
    }

    /// Sleeps until `deadline` or a wake, whichever comes first.
    fn sleep_until(&self, deadline: std::time::Instant) {
        let mut woken = locked(&self.0.0);
        while !*woken {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            woken = match self.0.1.wait_timeout(woken, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        *woken = false;
    }
}

impl std::fmt::Debug for Nc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nc")
            .field("node", &self.node)
            .field("revision", &self.controller().revision())
            .finish_non_exhaustive()
    }
}

/// One hop of a packet: a frame on a network from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub time: Duration,
    pub network: String,
    pub from: String,
    /// The sender's interface: a NIC's name and address, a vSwitch uplink or port.
    pub from_iface: String,
    pub to: String,
    pub to_iface: String,
    /// The frame, decoded in one line.
    pub what: String,
    /// What the sender did to send it: routed, NATed, load-balanced, encapsulated,
    /// VFP rules (see `Lab::explain`).
    pub did: Vec<String>,
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

mod explain;
mod scenario;

pub use explain::distribution_name;

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
    /// What the SLB manager did with the VIPs' SNAT ports, and when.
    snat_log: Vec<(Duration, strata_controller::slb::SnatEvent)>,
    /// Nodes cut off from every network (their cables pulled): nothing reaches them,
    /// nothing they send leaves.
    cut: Vec<bool>,
    cut_frames: u64,
    /// Each node's next deadline as it last said (after its last poll), and the same
    /// as a queue (entries a later poll superseded are skipped): a step polls only the
    /// nodes due, those a frame reached, and the controller's, so a step costs what
    /// happens in it, not the lab's size.
    deadlines: Vec<Option<Duration>>,
    queue: std::collections::BinaryHeap<std::cmp::Reverse<(Duration, usize)>>,
    /// Poll every node at the next step (something outside changed them).
    poll_all: bool,
    nc: Option<Nc>,
    waker: Waker,
    /// The nodes with a BGP speaker, and the Muxes: what booting and convergence are
    /// judged by at every step, without a walk over every node.
    speakers: Vec<usize>,
    muxes: Vec<usize>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("name", &self.topology.name)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// How many nodes a lab may have: each gets a MAC of its own (see [`mac_of`]).
pub const MAX_NODES: usize = (0x100 - 0x64) * 0x100;

/// How many NICs a node may have.
pub const MAX_NICS: usize = 0x100;

/// The MAC of a NIC: Hyper-V's OUI 00:15:5D, then 0x64 plus the high byte of the lab's
/// node number, its low byte, and the NIC's number (node 5's first NIC is
/// 00:15:5d:64:05:00, node 300's is 00:15:5d:65:2c:00). A node below [`MAX_NODES`] and a
/// NIC below [`MAX_NICS`] have a MAC no other has.
pub fn mac_of(node: usize, nic: usize) -> EthernetAddress {
    let [high, low] = ((node % MAX_NODES) as u16).to_be_bytes();
    EthernetAddress([0x00, 0x15, 0x5d, 0x64 + high, low, nic as u8])
}

/// The splay of the agents' first connections: 208 agents in it keep well under a
/// port's queue (each sends a handful of frames as it connects).
const AGENT_SPLAY: Duration = Duration::from_millis(20);

impl Lab {
    pub fn new(topology: Topology, clock: Clock) -> Result<Lab, LabError> {
        let secret = lab_secret(&topology);
        Lab::with_secret(topology, clock, secret)
    }

    /// A lab whose controller's API token (and the secret its agents' tokens derive
    /// from) is `secret`.
    pub fn with_secret(topology: Topology, clock: Clock, secret: String) -> Result<Lab, LabError> {
        // A bridge learns every MAC of the lab if need be (a VM's comes through its
        // host's uplink): a full table floods unicast to every port, which at the scale
        // of a datacenter's management network costs as much as all else together.
        let nics: usize = topology.nodes.iter().map(|n| n.nics.len()).sum();
        let defaults = SegmentConfig::default();
        let segment_config = SegmentConfig {
            latency: topology.latency,
            mac_table_limit: defaults.mac_table_limit.max(nics),
            ..defaults
        };
        let mut segments: Vec<Segment> = topology
            .networks
            .iter()
            .map(|n| Segment::new(n.name.clone(), segment_config.clone()))
            .collect();
        let mut nodes = Vec::new();
        let node_count = topology.nodes.len();
        for (n, spec) in topology.nodes.iter().enumerate() {
            if n >= MAX_NODES || spec.nics.len() > MAX_NICS {
                return Err(LabError::TooLarge {
                    node: spec.name.clone(),
                });
            }
        }
        let nc = match topology.nodes.iter().position(|n| n.controller.is_some()) {
            Some(node) => Some(Nc::new(&topology, node, secret.clone())?),
            None => None,
        };
        for n in 0..topology.nodes.len() {
            nodes.push(Node::new(
                node_config(&topology, n, &secret),
                Duration::ZERO,
            )?);
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
        let speakers = (0..nodes.len())
            .filter(|&n| nodes[n].bgp_status().is_some())
            .collect();
        let muxes = (0..nodes.len())
            .filter(|&n| nodes[n].mux().is_some())
            .collect();
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
            snat_log: Vec::new(),
            cut: vec![false; node_count],
            cut_frames: 0,
            deadlines: Vec::new(),
            queue: std::collections::BinaryHeap::new(),
            poll_all: true,
            nc,
            waker: Waker::default(),
            speakers,
            muxes,
        })
    }

    /// What wakes the lab on the wall clock before its next deadline.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The lab's network controller, if a node runs one.
    pub fn nc(&self) -> Option<&Nc> {
        self.nc.as_ref()
    }

    /// Changes the lab's resources as a user of the API would; the controller's agents
    /// carry the change to the roles while the lab runs.
    pub fn nc_mut(&mut self) -> Option<&mut Nc> {
        self.nc.as_mut()
    }

    fn with_controller<T>(
        &self,
        collection: &str,
        f: impl FnOnce(
            &mut Controller<MemStore>,
            &'static strata_model::Kind,
        ) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        let kind = strata_model::kind(collection)
            .ok_or_else(|| ControllerError::NotFound(format!("/{collection}")))?;
        let nc = self.nc.as_ref().ok_or_else(|| {
            ControllerError::NotFound("this lab has no network controller".into())
        })?;
        f(&mut nc.controller(), kind)
    }

    /// PUTs a resource to the lab's controller (as `strata ctl apply` does); returns the
    /// stored document.
    pub fn put(
        &mut self,
        collection: &str,
        id: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ControllerError> {
        self.with_controller(collection, |c, kind| {
            c.put(kind, id, body, None)?;
            c.get(kind, id)
        })
    }

    /// GETs a resource from the lab's controller.
    pub fn get(&self, collection: &str, id: &str) -> Result<serde_json::Value, ControllerError> {
        self.with_controller(collection, |c, kind| c.get(kind, id))
    }

    /// DELETEs a resource on the lab's controller.
    pub fn delete(&mut self, collection: &str, id: &str) -> Result<(), ControllerError> {
        self.with_controller(collection, |c, kind| c.delete(kind, id, None))
    }

    /// Whether a resource's change is still on its way to the nodes.
    pub fn updating(&self) -> bool {
        self.nc
            .as_ref()
            .is_some_and(|nc| nc.controller().oldest_updating().is_some())
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
        self.poll_all = true;
        self.nodes.iter_mut().find(|n| n.name() == name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node attached to port `port` of segment `segment`.
    pub fn port_owner(&self, segment: usize, port: usize) -> Option<usize> {
        self.ports.get(segment)?.get(port).map(|(n, _)| *n)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Does everything due now: delivers the frames that arrive, polls every node, puts
    /// what they send on the networks.
    pub fn process(&mut self) {
        let now = self.now;
        // The nodes to poll this step, by index (sorted below: file order, as ever).
        let mut due: Vec<usize> = Vec::new();
        if std::mem::take(&mut self.poll_all) || self.deadlines.len() != self.nodes.len() {
            due.extend(0..self.nodes.len());
            if self.deadlines.len() != self.nodes.len() {
                self.deadlines = vec![None; self.nodes.len()];
            }
        }
        for (s, segment) in self.segments.iter_mut().enumerate() {
            while let Some((port, frame)) = segment.poll_deliver(now) {
                let (node, nic) = self.ports[s][port.0];
                if self.cut[node] {
                    self.cut_frames += 1;
                } else {
                    self.nodes[node].receive(now, nic, frame);
                    due.push(node);
                }
            }
        }
        while let Some(&std::cmp::Reverse((at, n))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            if self.deadlines[n] == Some(at) {
                due.push(n);
            }
        }
        // The controller: what its agents said, then what each node should now carry
        // (sent by the node's listener, polled below when there is something new).
        if let Some(nc) = self.nc.as_mut() {
            let node = &mut self.nodes[nc.node];
            for event in node.take_control_events() {
                for change in nc.hub.event(&event) {
                    if let std::net::IpAddr::V4(dip) = change.dip {
                        self.health_log
                            .push((now, change.host, dip, change.healthy));
                    }
                }
            }
            let mut controller = locked(&nc.api.controller);
            let (changed, gone) = nc.hub.refresh(&controller, now);
            self.snat_log
                .extend(nc.hub.slb_mut().take_events().into_iter().map(|e| (now, e)));
            if !changed.is_empty() || !gone.is_empty() {
                node.publish_configs(nc.hub.configs());
                due.push(nc.node);
            }
            nc.hub.settle(&mut controller);
        }
        due.sort_unstable();
        due.dedup();
        for n in due {
            let node = &mut self.nodes[n];
            node.poll(now);
            while let Some((nic, frame)) = node.poll_transmit() {
                if self.cut[n] {
                    self.cut_frames += 1;
                    continue;
                }
                let (segment, port) = self.link_ports[n][nic];
                self.segments[segment].send(now, port, frame);
            }
            let next = node.poll_at(now);
            if next != self.deadlines[n] {
                self.deadlines[n] = next;
                if let Some(at) = next {
                    self.queue.push(std::cmp::Reverse((at, n)));
                }
            }
        }
    }

    /// The earliest deadline of a node, dropping the superseded ones on the way.
    fn next_node_deadline(&mut self) -> Option<Duration> {
        while let Some(&std::cmp::Reverse((at, n))) = self.queue.peek() {
            if self.deadlines.get(n) == Some(&Some(at)) {
                return Some(at);
            }
            self.queue.pop();
        }
        None
    }

    /// Lets the lab come up: runs until every BGP session is established and every
    /// BFD session beside one is Up, at most `limit`. Returns the sessions up and the
    /// sessions in all.
    pub fn boot(&mut self, limit: Duration) -> (usize, usize) {
        self.boot_with(limit, |_, _, _, _| {})
    }

    /// [`Lab::boot`], telling `progress` after every step: the lab's time, the BGP
    /// sessions up (with their BFD) and all, and whether the agents have converged.
    pub fn boot_with(
        &mut self,
        limit: Duration,
        mut progress: impl FnMut(Duration, usize, usize, bool),
    ) -> (usize, usize) {
        let count = |lab: &Lab| {
            let mut up = 0;
            let mut all = 0;
            for node in lab.speakers.iter().map(|&n| &lab.nodes[n]) {
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
            let converged = lab.converged();
            progress(lab.now, up, all, converged);
            up == all && converged
        });
        count(self)
    }

    /// Whether every agent has applied its node's configuration and every Mux
    /// announces, to each established neighbour, each VIP it has a healthy DIP for.
    pub fn converged(&self) -> bool {
        if self.nc.as_ref().is_some_and(|nc| !nc.hub.converged()) {
            return false;
        }
        self.muxes.iter().map(|&n| &self.nodes[n]).all(|node| {
            let Some(mux) = node.mux() else {
                return true;
            };
            let wanted: Vec<ipnet::Ipv4Net> = mux
                .vips()
                .iter()
                .filter(|(_, healthy)| healthy.iter().any(|h| *h))
                .map(|(c, _)| ipnet::Ipv4Net::from(c.key.vip))
                .collect();
            node.bgp_status().unwrap_or_default().iter().all(|n| {
                n.state != strata_node::bgp::State::Established
                    || wanted.iter().all(|v| n.advertised.contains(v))
            })
        })
    }

    /// Cuts a node off from every network (or reconnects it): the node keeps running,
    /// but no frame reaches it or leaves it, as if its cables were pulled.
    pub fn set_cut(&mut self, node: usize, cut: bool) {
        if let Some(c) = self.cut.get_mut(node) {
            *c = cut;
        }
        self.poll_all = true;
    }

    /// Frames lost to cut nodes so far.
    pub fn cut_frames(&self) -> u64 {
        self.cut_frames
    }

    /// DIP health changes reported so far: time, host, DIP, healthy.
    pub fn health_log(&self) -> &[(Duration, String, std::net::Ipv4Addr, bool)] {
        &self.health_log
    }

    /// What the SLB manager did with the VIPs' SNAT ports, and when.
    pub fn snat_log(&self) -> &[(Duration, strata_controller::slb::SnatEvent)] {
        &self.snat_log
    }

    /// Moves the clock to the next deadline of a network or a node, but no further than
    /// `limit`; on the wall clock, sleeps until then.
    pub fn advance(&mut self, limit: Duration) {
        let now = self.now;
        let node_next = if self.poll_all {
            Some(now)
        } else {
            self.next_node_deadline()
        };
        // The controller's reports waiting for their batch.
        let controller_next = self.nc.as_ref().and_then(|nc| nc.hub.refresh_at());
        let next = self
            .segments
            .iter()
            .filter_map(|s| s.poll_at())
            .chain(node_next)
            .chain(controller_next)
            .min()
            .unwrap_or(limit)
            .min(limit)
            // A deadline that is already due is served on the next microsecond.
            .max(now + Duration::from_micros(1));
        if self.clock == Clock::Wall {
            self.waker.sleep_until(self.wall_start + next);
            // Woken early: the lab goes on from now.
            let real = self
                .wall_start
                .elapsed()
                .max(now + Duration::from_micros(1));
            self.now = next.min(real);
            return;
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

/// What node `n` of the topology is made of: its NICs (with the lab's MACs) and routes,
/// its roles, and its agent of the controller on NCVM with its node token from
/// `secret`. The roles' SLB configuration (VIPs, VFP layers, probes) is not here: the
/// node's agent gets it from the controller.
pub fn node_config(topology: &Topology, n: usize, secret: &str) -> NodeConfig {
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
            .map(|(m, vm, j, nic)| strata_node::VmPortConfig {
                name: vm.name.clone(),
                mac: mac_of(m, j),
                vlan: nic.vlan,
                addresses: vec![nic.addr.addr()],
                layers: Vec::new(),
            })
            .collect();
        VSwitchConfig {
            name: sw.name.clone(),
            vms,
            provider_addrs: provider_addr(n).into_iter().collect(),
        }
    });
    let mux = spec.mux.as_ref().map(|m| MuxRole {
        config: MuxConfig::new(
            spec.nics[m.provider_nic].addr.addr(),
            mac_of(n, m.provider_nic),
        ),
        vips: Vec::new(),
    });
    let control = topology
        .nodes
        .iter()
        .enumerate()
        .find_map(|(c, node)| Some((c, node.controller.as_ref()?)))
        .and_then(|(c, controller)| {
            let agents = topology
                .nodes
                .iter()
                .filter(|node| node.mux.is_some() || node.vswitch.is_some())
                .count();
            // The agents boot together: their first connections are spread over a
            // splay, as a fleet's are, not sent in one burst that overflows the
            // controller's port (the SYNs lost then wait a second to be sent again, and
            // the lab boots in stages).
            let timers = strata_southbound::Timers {
                splay: AGENT_SPLAY,
                ..strata_southbound::Timers::default()
            };
            if c == n {
                return Some(ControlConfig::Server {
                    port: controller.southbound_port,
                    secret: secret.to_string(),
                    timers,
                    backlog: agents + 2,
                });
            }
            if spec.mux.is_none() && spec.vswitch.is_none() {
                return None;
            }
            let address = topology.nodes[c].nics.first()?.addr.addr();
            Some(ControlConfig::Agent {
                controller: std::net::SocketAddrV4::new(address, controller.southbound_port),
                token: strata_southbound::node_token(secret, &spec.name),
                timers,
            })
        });
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
        routes: spec
            .routes
            .iter()
            .filter_map(|r| Some((r.prefix, r.via?)))
            .collect(),
        discards: spec
            .routes
            .iter()
            .filter(|r| r.via.is_none())
            .map(|r| (r.prefix, r.kind))
            .collect(),
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
        probes: Vec::new(),
        bgp: spec.bgp.clone(),
        control,
        seed: topology.seed.wrapping_mul(1_000_003).wrapping_add(n as u64),
    }
}

/// The secret the lab's controller derives its agents' tokens from.
fn lab_secret(topology: &Topology) -> String {
    format!("strata-lab-{}-{}", topology.name, topology.seed)
}

impl Nc {
    /// The controller on node `node`, with the lab's resources PUT as a user would.
    fn new(topology: &Topology, node: usize, secret: String) -> Result<Nc, LabError> {
        let mut controller = Controller::open(MemStore::default(), topology.seed)
            .map_err(|e| LabError::Resources(e.to_string()))?;
        for (collection, id, body) in
            crate::resources::resources(topology).map_err(LabError::Resources)?
        {
            let kind = strata_model::kind(collection)
                .ok_or_else(|| LabError::Resources(format!("no collection {collection}")))?;
            controller
                .put(kind, &id, body, None)
                .map_err(|e| LabError::Resources(format!("{collection}/{id}: {e}")))?;
        }
        let mut hub = Hub::new(secret.clone());
        if let Some(ports) = topology.slb.as_ref().and_then(|s| s.snat_ports.clone()) {
            hub.slb_mut().set_snat_ports(ports);
        }
        Ok(Nc {
            node,
            hub,
            api: Api::new(controller, secret),
        })
    }
}

#[cfg(test)]
mod mac_tests {
    use super::*;

    #[test]
    fn every_node_and_nic_has_a_mac_of_its_own_and_the_first_256_keep_theirs() {
        let mut seen = std::collections::HashSet::new();
        for node in 0..MAX_NODES {
            for nic in [0, 1, MAX_NICS - 1] {
                assert!(seen.insert(mac_of(node, nic)), "node {node} NIC {nic}");
            }
        }
        assert_eq!(mac_of(5, 1).0, [0x00, 0x15, 0x5d, 0x64, 5, 1]);
        assert_eq!(mac_of(300, 0).0, [0x00, 0x15, 0x5d, 0x65, 0x2c, 0]);
        assert_eq!(mac_of(MAX_NODES - 1, 0).0[3], 0xff);
    }
}
