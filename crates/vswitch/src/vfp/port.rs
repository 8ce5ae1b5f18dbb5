//! A VFP port: its layers, and the unified flow table that caches what they decided.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use strata_wire::flow::{FlowKey, FlowKey6};
use strata_wire::vxlan::Vni;

use super::packet::{Direction, Flow, Metadata, ParseError};
use super::rule::{Action, Group, Layer, NatSpec, Rule};
use super::state::{LayerFlow, LayerKey, LayerState, Liveness};
use super::transposition::{HeaderTransposition, Ipv4Rewrite};

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
    /// The action's address rewrite compiled for the flow, if it is IPv4 TCP or UDP.
    compiled: Option<Ipv4Rewrite>,
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
    /// A SNAT layer had no free port for the new connection's destination.
    SnatExhausted,
    /// A NAT would have given the new connection the translated flow of one it holds.
    NatCollision,
    /// A stateful layer holds as many connections as the port's limit.
    StateFull,
}

/// A SNAT layer ran out of ports: the host agent asks the SLB manager for another range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatShortfall {
    pub vip: IpAddr,
    /// The source the connection had (the DIP).
    pub src: IpAddr,
}

/// What a packet met in a layer on the slow path.
#[derive(Debug, Clone, Copy)]
pub enum Applied<'a> {
    /// A rule of one of the layer's groups.
    Rule(&'a Layer, &'a Group, &'a Rule),
    /// The layer's state for the packet's connection.
    State(&'a Layer, &'a LayerFlow),
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
    /// New connections dropped because a SNAT layer had no free port.
    pub snat_exhausted: u64,
    /// New connections dropped because their NAT collided with a held connection.
    pub nat_collision: u64,
    /// New connections dropped because a stateful layer was full.
    pub state_full: u64,
    /// Connections a stateful layer forgot once idle.
    pub state_expired: u64,
}

/// A layer and the state it keeps of connections.
#[derive(Debug)]
struct Installed {
    layer: Layer,
    state: LayerState,
}

impl Installed {
    /// What the layer's rules do to a packet of `m` going `direction`: in every group of
    /// the direction and the packet's family, by priority, the best matching rule (a
    /// SNAT takes a free port). The layer's transposition, and whether a stateful rule
    /// applied.
    fn rules<'a>(
        &'a self,
        direction: Direction,
        m: &Metadata,
        mut seen: impl FnMut(Applied<'a>),
    ) -> Result<(HeaderTransposition, bool), DropReason> {
        let mut own = HeaderTransposition::default();
        let mut meta = *m;
        let mut stateful = false;
        let family = meta.flow.family();
        // Groups are kept sorted by priority (see `set_layer`).
        for group in self
            .layer
            .groups
            .iter()
            .filter(|g| g.direction == direction && g.family == family)
        {
            let Some(rule) = group.matching(&meta) else {
                continue;
            };
            seen(Applied::Rule(&self.layer, group, rule));
            let snat;
            let action = match &rule.action {
                Action::Snat(spec) => {
                    let port = self
                        .state
                        .free_snat_port(direction, &meta.flow, spec.vip, &spec.ranges)
                        .ok_or(DropReason::SnatExhausted)?;
                    snat = Action::Nat(NatSpec {
                        src: Some((spec.vip, Some(port))),
                        dst: None,
                    });
                    &snat
                }
                other => other,
            };
            stateful |= matches!(action, Action::Nat(_));
            if !own.compose(action, &mut meta) {
                return Err(DropReason::Blocked);
            }
        }
        Ok((own, stateful))
    }
}

/// What the slow path found: the composed transposition, and the connections the
/// stateful layers met or would start.
#[derive(Debug, Default)]
struct Walked {
    ht: HeaderTransposition,
    steps: Vec<Step>,
}

// Steps live for one walk on the slow path; boxing the large one would cost an
// allocation per new connection for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Step {
    /// The layer held state for the packet's connection, and applied it.
    Known { layer: usize, key: LayerKey },
    /// A stateful rule applied to a new connection: its two sides, to record.
    New {
        layer: usize,
        opening: LayerKey,
        action: HeaderTransposition,
        reply: LayerKey,
        inverse: HeaderTransposition,
    },
}

/// A switch port's VFP state.
#[derive(Debug)]
pub struct Port {
    name: String,
    /// Ordered by priority, from the network to the VM.
    layers: Vec<Installed>,
    uft: Uft,
    limit: usize,
    timeouts: FlowTimeouts,
    /// Bumped by every policy change; cached flows of an older generation are recomputed.
    generation: u64,
    counters: PortCounters,
    next_sweep: Duration,
    /// The last SNAT shortfall, until the host agent takes it.
    shortfall: Option<SnatShortfall>,
    /// The VNIs of the flows cached (0: not encapsulated), a handful at most.
    vnis: Vec<u32>,
}

/// The unified flow table: one map per IP family, so that an IPv4 flow's key stays as
/// small as an IPv4 5-tuple and its VNI (16 bytes, not the 48 of an IPv6 one), and for
/// IPv4 one per direction, so that the key is two words to hash and compare. Keyed with
/// foldhash: fast on small keys, and seeded per process, so that flows chosen from
/// outside cannot be made to collide.
#[derive(Debug, Default)]
struct Uft {
    /// Indexed by [`direction_index`].
    v4: [HashMap<V4Key, UftEntry, foldhash::fast::RandomState>; 2],
    v6: HashMap<V6Key, UftEntry, foldhash::fast::RandomState>,
}

/// An IPv4 flow and its VNI, packed: the addresses; the ports, the protocol and the
/// 24-bit VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V4Key {
    addrs: u64,
    rest: u64,
}

impl V4Key {
    fn new(flow: &FlowKey, vni: u32) -> V4Key {
        V4Key {
            addrs: u64::from(u32::from(flow.src)) << 32 | u64::from(u32::from(flow.dst)),
            rest: u64::from(flow.src_port) << 48
                | u64::from(flow.dst_port) << 32
                | u64::from(flow.proto) << 24
                | u64::from(vni & Vni::MAX),
        }
    }

    fn flow(&self) -> FlowKey {
        FlowKey {
            proto: (self.rest >> 24) as u8,
            src: Ipv4Addr::from((self.addrs >> 32) as u32),
            dst: Ipv4Addr::from(self.addrs as u32),
            src_port: (self.rest >> 48) as u16,
            dst_port: (self.rest >> 32) as u16,
        }
    }

    fn vni(&self) -> u32 {
        self.rest as u32 & Vni::MAX
    }
}

/// A [`FlowId`] of IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V6Key {
    direction: Direction,
    flow: FlowKey6,
    vni: u32,
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

impl Uft {
    fn get(&self, id: &FlowId) -> Option<&UftEntry> {
        match id.flow {
            Flow::V4(flow) => {
                self.v4[direction_index(id.direction)].get(&V4Key::new(&flow, id.vni))
            }
            Flow::V6(flow) => self.v6.get(&v6_key(id, flow)),
        }
    }

    #[inline(always)]
    fn get_mut(&mut self, id: &FlowId) -> Option<&mut UftEntry> {
        match id.flow {
            Flow::V4(flow) => {
                self.v4[direction_index(id.direction)].get_mut(&V4Key::new(&flow, id.vni))
            }
            Flow::V6(flow) => self.v6.get_mut(&v6_key(id, flow)),
        }
    }

    fn contains_key(&self, id: &FlowId) -> bool {
        self.get(id).is_some()
    }

    fn insert(&mut self, id: FlowId, entry: UftEntry) {
        match id.flow {
            Flow::V4(flow) => {
                self.v4[direction_index(id.direction)].insert(V4Key::new(&flow, id.vni), entry)
            }
            Flow::V6(flow) => self.v6.insert(v6_key(&id, flow), entry),
        };
    }

    fn len(&self) -> usize {
        self.v4.iter().map(HashMap::len).sum::<usize>() + self.v6.len()
    }

    fn remove(&mut self, id: &FlowId) {
        match id.flow {
            Flow::V4(flow) => {
                self.v4[direction_index(id.direction)].remove(&V4Key::new(&flow, id.vni))
            }
            Flow::V6(flow) => self.v6.remove(&v6_key(id, flow)),
        };
    }

    fn retain(&mut self, mut keep: impl FnMut(&UftEntry) -> bool) {
        for map in &mut self.v4 {
            map.retain(|_, e| keep(e));
        }
        self.v6.retain(|_, e| keep(e));
    }

    fn iter(&self) -> impl Iterator<Item = (FlowId, UftEntry)> + '_ {
        let v4 = [Direction::In, Direction::Out]
            .into_iter()
            .flat_map(move |direction| {
                self.v4[direction_index(direction)]
                    .iter()
                    .map(move |(k, e)| {
                        let id = FlowId {
                            direction,
                            flow: Flow::V4(k.flow()),
                            vni: k.vni(),
                        };
                        (id, *e)
                    })
            });
        let v6 = self.v6.iter().map(|(k, e)| {
            let id = FlowId {
                direction: k.direction,
                flow: Flow::V6(k.flow),
                vni: k.vni,
            };
            (id, *e)
        });
        v4.chain(v6)
    }
}

fn v6_key(id: &FlowId, flow: FlowKey6) -> V6Key {
    V6Key {
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
            shortfall: None,
            vnis: vec![0],
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

    /// The layers, from the network to the VM.
    pub fn layers(&self) -> impl DoubleEndedIterator<Item = &Layer> + ExactSizeIterator {
        self.layers.iter().map(|i| &i.layer)
    }

    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers().find(|l| l.name == name)
    }

    /// Adds a layer or replaces the one with the same name. Cached flows become stale; a
    /// replaced layer keeps its connections' state (they keep their translation).
    pub fn set_layer(&mut self, mut layer: Layer) {
        layer.groups.sort_by_key(|g| g.priority);
        match self.layers.iter_mut().find(|i| i.layer.name == layer.name) {
            Some(existing) => existing.layer = layer,
            None => self.layers.push(Installed {
                layer,
                state: LayerState::default(),
            }),
        }
        self.layers.sort_by_key(|i| i.layer.priority);
        self.generation += 1;
    }

    /// Removes a layer, and with it the state it kept.
    pub fn remove_layer(&mut self, name: &str) -> bool {
        let before = self.layers.len();
        self.layers.retain(|i| i.layer.name != name);
        let removed = self.layers.len() != before;
        if removed {
            self.generation += 1;
        }
        removed
    }

    /// Runs a frame through the port: the unified flow table's transposition if the flow
    /// is cached and current, else the layers (and the result is cached).
    pub fn process(&mut self, now: Duration, direction: Direction, frame: &mut Vec<u8>) -> Verdict {
        // Borrowed where parsing left it: a moved copy costs more than the lookup.
        let parsed = Metadata::parse(frame);
        let m = match &parsed {
            Ok(m) => m,
            Err(ParseError::NotIp | ParseError::Malformed(_)) => {
                return self.refuse(DropReason::Unparsed);
            }
        };
        let id = FlowId::of(direction, m);
        let generation = self.generation;
        let timeouts = self.timeouts;
        if let Some(entry) = self.uft.get_mut(&id)
            && entry.generation == generation
            && now.saturating_sub(entry.last_used) < entry.timeout
        {
            self.counters.fast_path += 1;
            entry.last_used = now;
            entry.packets += 1;
            track_tcp(entry, m, &timeouts);
            return match entry.action {
                Some(ht) => {
                    let compiled = entry.compiled;
                    ht.apply_with(frame, m, compiled.as_ref());
                    Verdict::Forward
                }
                None => self.refuse(DropReason::Blocked),
            };
        }
        self.slow_path(now, direction, id, m, frame)
    }

    #[inline(never)]
    fn slow_path(
        &mut self,
        now: Duration,
        direction: Direction,
        id: FlowId,
        m: &Metadata,
        frame: &mut Vec<u8>,
    ) -> Verdict {
        self.counters.slow_path += 1;
        let action = match self.walk_with(direction, m, false, |_| {}) {
            Ok(walked) => {
                let opened = walked.steps.iter().any(|s| matches!(s, Step::New { .. }));
                if let Err(reason) = self.commit(now, id, walked.steps) {
                    return self.refuse(reason);
                }
                self.cache(now, id, Some(walked.ht), m);
                if opened {
                    self.forget_replies(direction, &walked.ht, m);
                    self.prepare_replies(now, direction, &walked.ht, m);
                }
                Some(walked.ht)
            }
            Err(DropReason::Blocked) => {
                self.cache(now, id, None, m);
                None
            }
            // Not cached: the next packet tries again (a port may have come).
            Err(reason) => {
                if reason == DropReason::SnatExhausted {
                    self.shortfall = Some(SnatShortfall {
                        vip: self.snat_vip(direction, m).unwrap_or(m.flow.src()),
                        src: m.flow.src(),
                    });
                }
                return self.refuse(reason);
            }
        };
        self.carry_out(action, frame, m)
    }

    /// Walks the replies of a connection just opened back through the layers and caches
    /// what they get, so that the first reply takes the fast path. The replies are taken
    /// to come unencapsulated (as direct server return's do); one that comes otherwise is
    /// another flow and takes the slow path.
    fn prepare_replies(
        &mut self,
        now: Duration,
        direction: Direction,
        ht: &HeaderTransposition,
        m: &Metadata,
    ) {
        let reply = Metadata {
            flow: ht.flow_after(m).reversed(),
            encap: None,
            ..*m
        };
        let id = FlowId::of(direction.reverse(), &reply);
        if let Ok(walked) = self.walk_with(id.direction, &reply, false, |_| {})
            && self.commit(now, id, walked.steps).is_ok()
        {
            self.cache(now, id, Some(walked.ht), &reply);
        }
    }

    /// Forgets what the table holds for the replies of a connection just opened, in
    /// whatever VNI they come: cached before the connection existed, it would skip the
    /// connection's state.
    fn forget_replies(&mut self, direction: Direction, ht: &HeaderTransposition, m: &Metadata) {
        let flow = ht.flow_after(m).reversed();
        for &vni in &self.vnis {
            self.uft.remove(&FlowId {
                direction: direction.reverse(),
                flow,
                vni,
            });
        }
    }

    /// The VIP of the SNAT rule that would apply to a packet, for the shortfall's report.
    fn snat_vip(&self, direction: Direction, m: &Metadata) -> Option<IpAddr> {
        let mut found = None;
        let _ = self.walk_with(direction, m, false, |applied| {
            if let Applied::Rule(_, _, rule) = applied
                && let Action::Snat(spec) = &rule.action
            {
                found = Some(spec.vip);
            }
        });
        found
    }

    fn refuse(&mut self, reason: DropReason) -> Verdict {
        let c = &mut self.counters;
        match reason {
            DropReason::Unparsed => c.dropped_unparsed += 1,
            DropReason::Blocked => c.dropped_blocked += 1,
            DropReason::SnatExhausted => c.snat_exhausted += 1,
            DropReason::NatCollision => c.nat_collision += 1,
            DropReason::StateFull => c.state_full += 1,
        }
        Verdict::Drop(reason)
    }

    /// Records what the stateful layers met: the connections they already held were
    /// used now, by the flow `id`; the new ones are kept, both sides. Nothing is
    /// recorded if any new connection cannot be.
    fn commit(&mut self, now: Duration, id: FlowId, steps: Vec<Step>) -> Result<(), DropReason> {
        for step in &steps {
            if let Step::New { layer, .. } = step
                && self.layers[*layer].state.connections() >= self.limit
            {
                if now >= self.next_sweep {
                    self.expire(now);
                    self.next_sweep = now + SWEEP_INTERVAL;
                }
                if self.layers[*layer].state.connections() >= self.limit {
                    return Err(DropReason::StateFull);
                }
            }
        }
        for step in steps {
            match step {
                Step::Known { layer, key } => {
                    if let Some(e) = self.layers[layer].state.get_mut(&key) {
                        e.last_used = now;
                        e.uft = Some(id);
                    }
                }
                Step::New {
                    layer,
                    opening,
                    action,
                    reply,
                    inverse,
                } => {
                    let timeout = self.timeouts.tcp_established;
                    let side = LayerFlow {
                        action,
                        peer: reply,
                        initiator: true,
                        last_used: now,
                        timeout,
                        uft: Some(id),
                    };
                    let back = LayerFlow {
                        action: inverse,
                        peer: opening,
                        initiator: false,
                        last_used: now,
                        timeout,
                        uft: None,
                    };
                    self.layers[layer].state.insert(opening, side, back);
                }
            }
        }
        Ok(())
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
            None => self.refuse(DropReason::Blocked),
        }
    }

    /// The slow path, without recording anything: every layer in order (inbound) or
    /// reverse order (outbound). A layer holding state for the packet's connection
    /// applies it; otherwise every group of the direction and the packet's IP family, in
    /// priority order, applies its best matching rule. The transposition, or why the
    /// packet would be dropped.
    pub fn walk(
        &self,
        direction: Direction,
        m: &Metadata,
    ) -> Result<HeaderTransposition, DropReason> {
        self.walk_with(direction, m, false, |_| {}).map(|w| w.ht)
    }

    /// What the slow path would do with a frame, and why: each rule that matched (layer,
    /// group, rule, action) in the order walked, the result, and the unified flow
    /// table's entry for the flow if it holds one. `None` if the frame is not IP.
    pub fn explain(&self, direction: Direction, frame: &[u8]) -> Option<Explanation> {
        let m = Metadata::parse(frame).ok()?;
        let mut matched = Vec::new();
        let result = self.walk_with(direction, &m, true, |applied| {
            matched.push(match applied {
                Applied::Rule(layer, group, rule) => format!(
                    "layer {} group {} rule {}: {}",
                    layer.name, group.name, rule.name, rule.action
                ),
                Applied::State(layer, flow) => format!(
                    "layer {} flow state ({}): {}",
                    layer.name,
                    if flow.initiator { "opening" } else { "reply" },
                    describe_ht(&flow.action)
                ),
            });
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
                Ok(walked) => describe_ht(&walked.ht),
                Err(DropReason::Blocked) => "blocked".to_string(),
                Err(reason) => format!("dropped: {reason:?}"),
            },
            cached,
        })
    }

    /// [`Port::walk`], telling `seen` of every rule and every connection's state that
    /// applied, and keeping what the stateful layers met. When `explaining`, a
    /// connection's opening side is told as the rules that make it, if they still do.
    fn walk_with(
        &self,
        direction: Direction,
        m: &Metadata,
        explaining: bool,
        mut seen: impl FnMut(Applied<'_>),
    ) -> Result<Walked, DropReason> {
        let mut walked = Walked::default();
        let mut meta = *m;
        let count = self.layers.len();
        for step in 0..count {
            let index = match direction {
                Direction::In => step,
                Direction::Out => count - 1 - step,
            };
            let installed = &self.layers[index];
            let key = LayerKey {
                direction,
                flow: meta.flow,
            };
            if let Some(flow) = installed.state.get(&key) {
                let mut rules = Vec::new();
                let made = explaining
                    && flow.initiator
                    && installed
                        .rules(direction, &meta, |a| rules.push(a))
                        .is_ok_and(|(own, _)| own == flow.action);
                if made {
                    rules.into_iter().for_each(&mut seen);
                } else {
                    seen(Applied::State(&installed.layer, flow));
                }
                if !walked.ht.fold(&flow.action, &mut meta) {
                    return Err(DropReason::Blocked);
                }
                walked.steps.push(Step::Known { layer: index, key });
                continue;
            }
            let (own, stateful) = installed.rules(direction, &meta, &mut seen)?;
            if !walked.ht.fold(&own, &mut meta) {
                return Err(DropReason::Blocked);
            }
            if stateful {
                let before = Metadata {
                    flow: key.flow,
                    ..meta
                };
                let reply = LayerKey::reply_to(direction, meta.flow);
                if installed.state.contains(&reply) {
                    return Err(DropReason::NatCollision);
                }
                walked.steps.push(Step::New {
                    layer: index,
                    opening: key,
                    action: own,
                    reply,
                    inverse: own.inverse(&before),
                });
            }
        }
        Ok(walked)
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
            compiled: action.and_then(|ht| Ipv4Rewrite::compile(&ht, m)),
        };
        track_tcp(&mut entry, m, &self.timeouts);
        if !self.vnis.contains(&id.vni) {
            self.vnis.push(id.vni);
        }
        self.uft.insert(id, entry);
    }

    /// Drops expired and stale flows, and the connections of the stateful layers that are
    /// over: no flow of theirs is cached and live, and one has timed out (or, when the
    /// table holds neither current, both have been idle for their flows' timeouts as last
    /// known; a side never cached lives for the established TCP timeout).
    pub fn expire(&mut self, now: Duration) {
        let uft = &self.uft;
        let generation = self.generation;
        let live = |e: &LayerFlow| match e.uft.and_then(|id| uft.get(&id)) {
            Some(u) if u.generation == generation => {
                if now.saturating_sub(u.last_used) < u.timeout {
                    Liveness::Live
                } else {
                    Liveness::Expired
                }
            }
            // Stale or gone: the side's own record, refreshed below, says.
            _ => Liveness::Unknown,
        };
        let idle = |e: &LayerFlow| now.saturating_sub(e.last_used) >= e.timeout;
        for installed in &mut self.layers {
            installed
                .state
                .refresh(|id| uft.get(id).map(|u| (u.last_used, u.timeout)));
            self.counters.state_expired += installed.state.retain(live, idle) as u64;
        }
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
        for layer in self.layers() {
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

impl Port {
    /// The connections each stateful layer holds: layer name, and per side its key and
    /// entry, ordered.
    pub fn layer_flows(&self) -> Vec<(&str, Vec<(LayerKey, LayerFlow)>)> {
        self.layers
            .iter()
            .filter(|i| i.state.connections() > 0)
            .map(|i| {
                let mut v: Vec<_> = i.state.iter().map(|(k, e)| (*k, *e)).collect();
                v.sort_by_key(|(k, _)| *k);
                (i.layer.name.as_str(), v)
            })
            .collect()
    }

    /// The connections of the stateful layers as text: per layer, one line per side,
    /// `out tcp 10.0.0.5:80 > 192.168.200.10:49152  src 192.168.133.74:80  reply idle 0.5s`.
    pub fn describe_layer_flows(&self, now: Duration) -> String {
        let mut out = String::new();
        for (layer, flows) in self.layer_flows() {
            let _ = writeln!(out, "  layer {layer}: {} connections", flows.len() / 2);
            for (key, e) in flows {
                let _ = writeln!(
                    out,
                    "    {key}  {}  {} idle {:.1}s",
                    describe_ht(&e.action),
                    if e.initiator { "opening" } else { "reply" },
                    now.saturating_sub(e.last_used).as_secs_f64()
                );
            }
        }
        out
    }

    /// The source ports of `vip` that the connections of layer `layer` hold.
    pub fn snat_ports_in_use(&self, layer: &str, vip: IpAddr) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .layers
            .iter()
            .filter(|i| i.layer.name == layer)
            .flat_map(|i| i.state.ports_in_use(vip))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The last time a SNAT layer had no port for a new connection, taken once.
    pub fn take_snat_shortfall(&mut self) -> Option<SnatShortfall> {
        self.shortfall.take()
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
