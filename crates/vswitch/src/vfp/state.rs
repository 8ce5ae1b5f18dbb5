//! Per-layer flow state: what a stateful layer (a NAT, a SNAT) did to a connection, as
//! that layer saw it. The connection's later packets get the same from the layer, and its
//! replies, walking the layers back, find the inverse there, whatever the layer's rules
//! say by then.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Direction, Flow};
use super::port::FlowId;
use super::rule::SNAT_RANGE;
use super::transposition::HeaderTransposition;

/// A packet as one layer sees it: its direction and its flow at that layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerKey {
    pub direction: Direction,
    pub flow: Flow,
}

impl LayerKey {
    /// The key of the replies to a packet that leaves the layer as `after`.
    pub fn reply_to(direction: Direction, after: Flow) -> LayerKey {
        LayerKey {
            direction: direction.reverse(),
            flow: after.reversed(),
        }
    }
}

impl std::fmt::Display for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.direction, self.flow)
    }
}

/// One side of a connection in a layer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerFlow {
    /// What the layer does to this side's packets.
    pub action: HeaderTransposition,
    /// The other side's key: a connection's two entries come and go together.
    pub peer: LayerKey,
    /// Whether this side's first packet opened the connection.
    pub initiator: bool,
    /// When a packet of this side was last seen: on the slow path, or by its cached flow
    /// (copied at each sweep).
    pub last_used: Duration,
    /// How long this side lives idle: its cached flow's timeout, as of the last sweep
    /// (the longest a flow lives until then).
    pub timeout: Duration,
    /// This side's entry in the port's unified flow table, once a packet of it crossed
    /// the port: while that entry lives, so does this state.
    pub(crate) uft: Option<FlowId>,
}

/// What the unified flow table says of a side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Its flow is cached and has not timed out.
    Live,
    /// Its flow is cached and has timed out.
    Expired,
    /// Its flow is not cached (never was, or went stale and was swept).
    Unknown,
}

/// A layer's flow state.
#[derive(Debug, Default)]
pub(crate) struct LayerState {
    /// Boxed: an entry is some 200 bytes, which growing the table would otherwise move
    /// (and the first packet of every connection pays for growth).
    flows: HashMap<LayerKey, Box<LayerFlow>, foldhash::fast::RandomState>,
}

impl LayerState {
    pub(crate) fn get(&self, key: &LayerKey) -> Option<&LayerFlow> {
        self.flows.get(key).map(|b| &**b)
    }

    pub(crate) fn get_mut(&mut self, key: &LayerKey) -> Option<&mut LayerFlow> {
        self.flows.get_mut(key).map(|b| &mut **b)
    }

    pub(crate) fn contains(&self, key: &LayerKey) -> bool {
        self.flows.contains_key(key)
    }

    /// Connections held (each has two entries).
    pub(crate) fn connections(&self) -> usize {
        self.flows.len() / 2
    }

    /// Records a connection: its opening side and its replies.
    pub(crate) fn insert(&mut self, opening: LayerKey, side: LayerFlow, reply: LayerFlow) {
        self.flows.insert(side.peer, Box::new(reply));
        self.flows.insert(opening, Box::new(side));
    }

    /// Drops the connections that are over: those with no side `live` says is `Live`,
    /// and a side it says is `Expired`, or (when it knows of neither side) both idle.
    pub(crate) fn retain(
        &mut self,
        live: impl Fn(&LayerFlow) -> Liveness,
        idle: impl Fn(&LayerFlow) -> bool,
    ) -> usize {
        let over = |a: &LayerFlow, b: &LayerFlow| match (live(a), live(b)) {
            (Liveness::Live, _) | (_, Liveness::Live) => false,
            (Liveness::Expired, _) | (_, Liveness::Expired) => true,
            (Liveness::Unknown, Liveness::Unknown) => idle(a) && idle(b),
        };
        let gone: Vec<LayerKey> = self
            .flows
            .iter()
            .filter(|(_, e)| e.initiator)
            .filter(|(_, e)| self.flows.get(&e.peer).is_none_or(|peer| over(e, peer)))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            if let Some(e) = self.flows.remove(k) {
                self.flows.remove(&e.peer);
            }
        }
        gone.len()
    }

    /// Takes in what the unified flow table knows of each side's flow (`cached`: when
    /// it was last used, and its timeout), so that the state outlives the cached flow
    /// (a rule change makes it stale and a sweep drops it) by the flow's own timeout.
    pub(crate) fn refresh(&mut self, cached: impl Fn(&FlowId) -> Option<(Duration, Duration)>) {
        for e in self.flows.values_mut() {
            if let Some((last_used, timeout)) = e.uft.as_ref().and_then(&cached) {
                e.last_used = e.last_used.max(last_used);
                e.timeout = timeout;
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LayerKey, &LayerFlow)> {
        self.flows.iter().map(|(k, e)| (k, &**e))
    }

    /// A source port of `ranges` (each [`SNAT_RANGE`] ports from its start) for a
    /// connection of `flow` whose source becomes `vip`: the first that no connection of
    /// this layer uses towards the same destination, address, port and protocol. So one
    /// port serves many connections as long as their destinations differ.
    pub(crate) fn free_snat_port(
        &self,
        direction: Direction,
        flow: &Flow,
        vip: IpAddr,
        ranges: &[u16],
    ) -> Option<u16> {
        ranges
            .iter()
            .flat_map(|&start| (0..SNAT_RANGE).filter_map(move |i| start.checked_add(i)))
            .find(|&port| {
                flow.rewritten(false, vip, Some(port))
                    .is_some_and(|after| !self.contains(&LayerKey::reply_to(direction, after)))
            })
    }

    /// The source ports of `vip` that connections of this layer hold.
    pub(crate) fn ports_in_use(&self, vip: IpAddr) -> impl Iterator<Item = u16> + '_ {
        self.flows
            .iter()
            .filter(move |(k, e)| !e.initiator && k.flow.dst() == vip)
            .map(|(k, _)| k.flow.dst_port())
    }
}
