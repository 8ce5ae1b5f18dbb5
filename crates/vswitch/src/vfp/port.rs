//! A VFP port: its layers, and the unified flow table that caches what they decided.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use strata_wire::flow::{FlowKey, FlowKey6};

use super::packet::{Direction, Flow, Metadata, ParseError};
use super::rule::{Group, Layer, Rule};
use super::transposition::HeaderTransposition;

/// The facts' figure: a port holds up to 500,000 flows.
pub const DEFAULT_FLOW_LIMIT: usize = 500_000;

/// Idle timeouts of cached flows.
#[derive(Debug, Clone, Copy)]
pub struct FlowTimeouts {
    pub tcp_established: Duration,
    /// Before the handshake completes, and after a FIN.
    pub tcp_transitory: Duration,
    /// After a RST.
    pub tcp_closed: Duration,
    pub other: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            tcp_established: Duration::from_secs(240),
            tcp_transitory: Duration::from_secs(30),
            tcp_closed: Duration::from_secs(1),
            other: Duration::from_secs(60),
        }
    }
}

/// A unified flow table key: direction, the flow as the port first saw it, and its VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub direction: Direction,
    pub flow: Flow,
    /// The VNI of an encapsulated flow; 0 when not encapsulated.
    pub vni: u32,
}

impl FlowId {
    fn of(direction: Direction, m: &Metadata) -> FlowId {
        FlowId {
            direction,
            flow: m.flow,
            vni: m.encap.map_or(0, |e| e.vni.get()),
        }
    }
}

/// A cached flow: its transposition (or `None`: drop), and when it expires.
#[derive(Debug, Clone, Copy)]
pub struct UftEntry {
    pub action: Option<HeaderTransposition>,
    pub generation: u64,
    pub last_used: Duration,
    pub timeout: Duration,
    pub packets: u64,
    fin_seen: bool,
}

/// Why a port does what it does with a packet ([`Port::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The flow as the table keys it: direction, addresses, ports.
    pub flow: String,
    /// Each rule that applied, in the order walked.
    pub matched: Vec<String>,
    /// The composed transposition, or `blocked`.
    pub result: String,
    /// The unified flow table's entry for the flow, if cached.
    pub cached: Option<String>,
}

/// What the port decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) frame on.
    Forward,
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Neither IPv4 nor IPv6, or malformed.
    Unparsed,
    /// A rule blocked the flow.
    Blocked,
}

/// Port counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub fast_path: u64,
    pub slow_path: u64,
    pub dropped_blocked: u64,
    pub dropped_unparsed: u64,
    /// Flows not cached because the table was full (they stay on the slow path).
    pub uft_full: u64,
    pub expired: u64,
}

/// A switch port's VFP state.
#[derive(Debug)]
pub struct Port {
    name: String,
    layers: Vec<Layer>,
    uft: Uft,
    limit: usize,
    timeouts: FlowTimeouts,
    /// Bumped by every policy change; cached flows of an older generation are recomputed.
    generation: u64,
    counters: PortCounters,
    next_sweep: Duration,
}

/// The unified flow table: one map per IP family, so that an IPv4 flow's key stays as
/// small as an IPv4 5-tuple (20 bytes, not the 48 of an IPv6 one). Keyed with foldhash:
/// fast on small keys, and seeded per process, so that flows chosen from outside cannot
/// be made to collide.
#[derive(Debug, Default)]
struct Uft {
    v4: HashMap<Key<FlowKey>, UftEntry, foldhash::fast::RandomState>,
    v6: HashMap<Key<FlowKey6>, UftEntry, foldhash::fast::RandomState>,
}

/// A [`FlowId`] of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key<K> {
    direction: Direction,
    flow: K,
    vni: u32,
}

impl Uft {
    fn get(&self, id: &FlowId) -> Option<&UftEntry> {
        match id.flow {
            Flow::V4(flow) => self.v4.get(&key(id, flow)),
            Flow::V6(flow) => self.v6.get(&key(id, flow)),
        }
    }

    fn get_mut(&mut self, id: &FlowId) -> Option<&mut UftEntry> {
        match id.flow {
            Flow::V4(flow) => self.v4.get_mut(&key(id, flow)),
            Flow::V6(flow) => self.v6.get_mut(&key(id, flow)),
        }
    }

    fn contains_key(&self, id: &FlowId) -> bool {
        match id.flow {
            Flow::V4(flow) => self.v4.contains_key(&key(id, flow)),
            Flow::V6(flow) => self.v6.contains_key(&key(id, flow)),
        }
    }

    fn insert(&mut self, id: FlowId, entry: UftEntry) {
        match id.flow {
            Flow::V4(flow) => self.v4.insert(key(&id, flow), entry),
            Flow::V6(flow) => self.v6.insert(key(&id, flow), entry),
        };
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn retain(&mut self, mut keep: impl FnMut(&UftEntry) -> bool) {
        self.v4.retain(|_, e| keep(e));
        self.v6.retain(|_, e| keep(e));
    }

    fn iter(&self) -> impl Iterator<Item = (FlowId, UftEntry)> + '_ {
        let id = |direction, flow, vni| FlowId {
            direction,
            flow,
            vni,
        };
        let v4 = self
            .v4
            .iter()
            .map(move |(k, e)| (id(k.direction, Flow::V4(k.flow), k.vni), *e));
        let v6 = self
            .v6
            .iter()
            .map(move |(k, e)| (id(k.direction, Flow::V6(k.flow), k.vni), *e));
        v4.chain(v6)
    }
}

fn key<K>(id: &FlowId, flow: K) -> Key<K> {
    Key {
        direction: id.direction,
        flow,
        vni: id.vni,
    }
}

/// Least time between two sweeps of a full flow table.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl Port {
    pub fn new(name: impl Into<String>, limit: usize) -> Port {
        Port {
            name: name.into(),
            layers: Vec::new(),
            uft: Uft::default(),
            limit,
            timeouts: FlowTimeouts::default(),
            generation: 0,
            counters: PortCounters::default(),
            next_sweep: Duration::ZERO,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> &PortCounters {
        &self.counters
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Adds a layer or replaces the one with the same name. Cached flows become stale.
    pub fn set_layer(&mut self, mut layer: Layer) {
        layer.groups.sort_by_key(|g| g.priority);
        match self.layers.iter_mut().find(|l| l.name == layer.name) {
            Some(existing) => *existing = layer,
            None => self.layers.push(layer),
        }
        self.layers.sort_by_key(|l| l.priority);
        self.generation += 1;
    }

    pub fn remove_layer(&mut self, name: &str) -> bool {
        let before = self.layers.len();
        self.layers.retain(|l| l.name != name);
        let removed = self.layers.len() != before;
        if removed {
            self.generation += 1;
        }
        removed
    }

    /// Runs a frame through the port: the unified flow table's transposition if the flow
    /// is cached and current, else the layers (and the result is cached).
    pub fn process(&mut self, now: Duration, direction: Direction, frame: &mut Vec<u8>) -> Verdict {
        let m = match Metadata::parse(frame) {
            Ok(m) => m,
            Err(ParseError::NotIp | ParseError::Malformed(_)) => {
                self.counters.dropped_unparsed += 1;
                return Verdict::Drop(DropReason::Unparsed);
            }
        };
        let id = FlowId::of(direction, &m);
        let generation = self.generation;
        let timeouts = self.timeouts;
        if let Some(entry) = self.uft.get_mut(&id)
            && entry.generation == generation
            && now.saturating_sub(entry.last_used) < entry.timeout
        {
            self.counters.fast_path += 1;
            entry.last_used = now;
            entry.packets += 1;
            track_tcp(entry, &m, &timeouts);
            let action = entry.action;
            return self.carry_out(action, frame, &m);
        }
        self.slow_path(now, direction, id, m, frame)
    }

    fn slow_path(
        &mut self,
        now: Duration,
        direction: Direction,
        id: FlowId,
        m: Metadata,
        frame: &mut Vec<u8>,
    ) -> Verdict {
        self.counters.slow_path += 1;
        let action = self.walk(direction, &m);
        self.cache(now, id, action, &m);
        if let Some(ht) = action.filter(|ht| ht.rewrites_flow()) {
            // Stateful rewrite: the replies (as the reverse direction will first see
            // them) get the inverse, whatever the reverse direction's rules say.
            let reply = FlowId {
                direction: direction.reverse(),
                flow: ht.flow_after(&m).reversed(),
                vni: 0,
            };
            self.cache(now, reply, Some(ht.inverse(&m)), &m);
        }
        self.carry_out(action, frame, &m)
    }

    /// Applies a flow's transposition to the frame, or drops it (`None`: blocked).
    fn carry_out(
        &mut self,
        action: Option<HeaderTransposition>,
        frame: &mut Vec<u8>,
        m: &Metadata,
    ) -> Verdict {
        match action {
            Some(ht) => {
                ht.apply(frame, m);
                Verdict::Forward
            }
            None => {
                self.counters.dropped_blocked += 1;
                Verdict::Drop(DropReason::Blocked)
            }
        }
    }

    /// The slow path: every layer in order (inbound) or reverse order (outbound); in each,
    /// every group of the direction and the packet's IP family in priority order; in each
    /// group, the best matching rule. `None` means blocked.
    pub fn walk(&self, direction: Direction, m: &Metadata) -> Option<HeaderTransposition> {
        self.walk_with(direction, m, |_, _, _| {})
    }

    /// What the slow path would do with a frame, and why: each rule that matched (layer,
    /// group, rule, action) in the order walked, the result, and the unified flow
    /// table's entry for the flow if it holds one. `None` if the frame is not IP.
    pub fn explain(&self, direction: Direction, frame: &[u8]) -> Option<Explanation> {
        let m = Metadata::parse(frame).ok()?;
        let mut matched = Vec::new();
        let result = self.walk_with(direction, &m, |layer, group, rule| {
            matched.push(format!(
                "layer {} group {} rule {}: {}",
                layer.name, group.name, rule.name, rule.action
            ));
        });
        let id = FlowId::of(direction, &m);
        let cached = self.uft.get(&id).map(|e| match e.action {
            None => "drop".to_string(),
            Some(ht) => describe_ht(&ht),
        });
        Some(Explanation {
            flow: format!("{} {}", id.direction, id.flow),
            matched,
            result: match result {
                None => "blocked".to_string(),
                Some(ht) => describe_ht(&ht),
            },
            cached,
        })
    }

    /// [`Port::walk`], telling `seen` of every rule that applied.
    fn walk_with(
        &self,
        direction: Direction,
        m: &Metadata,
        mut seen: impl FnMut(&Layer, &Group, &Rule),
    ) -> Option<HeaderTransposition> {
        let mut ht = HeaderTransposition::default();
        let mut meta = *m;
        let mut visit = |layer: &Layer| {
            // Groups are kept sorted by priority (see `set_layer`).
            let family = meta.flow.family();
            for group in layer
                .groups
                .iter()
                .filter(|g| g.direction == direction && g.family == family)
            {
                if let Some(rule) = group.matching(&meta) {
                    seen(layer, group, rule);
                    if !ht.compose(&rule.action, &mut meta) {
                        return false;
                    }
                }
            }
            true
        };
        let passed = match direction {
            Direction::In => self.layers.iter().all(&mut visit),
            Direction::Out => self.layers.iter().rev().all(&mut visit),
        };
        passed.then_some(ht)
    }

    fn cache(
        &mut self,
        now: Duration,
        id: FlowId,
        action: Option<HeaderTransposition>,
        m: &Metadata,
    ) {
        if self.uft.len() >= self.limit && !self.uft.contains_key(&id) {
            // A full sweep costs the whole table; do it at most once a second, not for
            // every flow that finds the table full.
            if now >= self.next_sweep {
                self.expire(now);
                self.next_sweep = now + SWEEP_INTERVAL;
            }
            if self.uft.len() >= self.limit {
                self.counters.uft_full += 1;
                return;
            }
        }
        let mut entry = UftEntry {
            action,
            generation: self.generation,
            last_used: now,
            timeout: self.timeouts.other,
            packets: 1,
            fin_seen: false,
        };
        track_tcp(&mut entry, m, &self.timeouts);
        self.uft.insert(id, entry);
    }

    /// Drops expired and stale flows.
    pub fn expire(&mut self, now: Duration) {
        let generation = self.generation;
        let before = self.uft.len();
        self.uft
            .retain(|e| e.generation == generation && now.saturating_sub(e.last_used) < e.timeout);
        self.counters.expired += (before - self.uft.len()) as u64;
    }

    /// Cached flows, ordered, as `vfpctrl /list-unified-flow` shows them.
    pub fn flows(&self) -> Vec<(FlowId, UftEntry)> {
        let mut v: Vec<_> = self.uft.iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The layers, groups and rules, as `vfpctrl /list-rule` shows them.
    pub fn describe_rules(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "port {} (generation {})", self.name, self.generation);
        for layer in &self.layers {
            let _ = writeln!(out, "  layer {} (priority {})", layer.name, layer.priority);
            for group in &layer.groups {
                let _ = writeln!(
                    out,
                    "    group {} ({} {}, priority {})",
                    group.name, group.direction, group.family, group.priority
                );
                for rule in &group.rules {
                    let _ = writeln!(
                        out,
                        "      rule {} (priority {}): {}  if {}",
                        rule.name, rule.priority, rule.action, rule.conditions
                    );
                }
            }
        }
        out
    }

    /// The cached flows as text.
    pub fn describe_flows(&self, now: Duration) -> String {
        let mut out = String::new();
        for (id, e) in self.flows() {
            let _ = writeln!(out, "  {}", self.describe_flow(&id, &e, now));
        }
        out
    }

    /// One cached flow: `in tcp A:p > B:q vni 4096  pop vxlan, dst D:r  packets 3 idle
    /// 0.5s`, marked `(stale)` if the rules changed since it was cached.
    pub fn describe_flow(&self, id: &FlowId, e: &UftEntry, now: Duration) -> String {
        format!(
            "{} {}{}  {}  packets {} idle {:.1}s{}",
            id.direction,
            id.flow,
            if id.vni != 0 {
                format!(" vni {}", id.vni)
            } else {
                String::new()
            },
            describe_action(e.action.as_ref()),
            e.packets,
            now.saturating_sub(e.last_used).as_secs_f64(),
            if e.generation != self.generation {
                " (stale)"
            } else {
                ""
            },
        )
    }
}

/// A cached action: `drop`, or the transposition.
pub fn describe_action(action: Option<&HeaderTransposition>) -> String {
    match action {
        None => "drop".to_string(),
        Some(ht) => describe_ht(ht),
    }
}

fn describe_ht(ht: &HeaderTransposition) -> String {
    use super::transposition::EncapOp;
    let mut parts = Vec::new();
    match ht.encap {
        EncapOp::Ignore => {}
        EncapOp::Pop => parts.push("pop vxlan".to_string()),
        EncapOp::Push(s) => parts.push(format!("push vxlan vni {} > {}", s.vni, s.dst_pa)),
    }
    let endpoint = |a: std::net::IpAddr, port: Option<u16>| match (a, port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    if let Some(a) = ht.ip_src {
        parts.push(format!("src {}", endpoint(a, ht.src_port)));
    }
    if let Some(a) = ht.ip_dst {
        parts.push(format!("dst {}", endpoint(a, ht.dst_port)));
    }
    if let Some(mss) = ht.mss {
        parts.push(format!("mss {mss}"));
    }
    if parts.is_empty() {
        "allow".into()
    } else {
        parts.join(", ")
    }
}

/// Shortens a TCP flow's life as it closes.
fn track_tcp(entry: &mut UftEntry, m: &Metadata, t: &FlowTimeouts) {
    if m.flow.proto() != strata_wire::flow::proto::TCP {
        return;
    }
    let flags = m.tcp_flags;
    entry.timeout = if flags & TCP_RST != 0 {
        t.tcp_closed
    } else if flags & TCP_FIN != 0 || entry.fin_seen {
        entry.fin_seen = true;
        t.tcp_transitory
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
        t.tcp_transitory
    } else {
        t.tcp_established
    };
}
