//! NATVM's role: the RRAS NAT between the inside networks and the external network.
//!
//! Packets from inside that leave by the external interface are masqueraded to the
//! external address ([`Nat::outbound`]); packets arriving at the external address are
//! translated back for connections the table knows, or sent to an inside server by a port
//! forward ([`Nat::inbound`]). Every connection has two keys: its `inner` key (as the inside
//! host sends, before SNAT) and its `outer` key (as the outside sends back, before DNAT).
//! An outbound packet matching `inner` gets the source of `outer`'s destination; an inbound
//! packet matching `outer` gets the destination of `inner`'s source. SNAT connections and
//! port-forwarded ones differ only in which side created them.
//!
//! Mapping behaviour (RFC 4787 terms): address-and-port-dependent. An external port is
//! reused toward different remote endpoints, so port exhaustion is per remote endpoint.
//! The source port is kept when it is free (port preservation).
//!
//! The table is bounded: when it is full a new connection is refused and counted, and the
//! established ones keep working. Later IPv4 fragments carry no ports and are dropped and
//! counted. Sans-IO: `now` is passed in.

mod conn;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

use strata_wire::flow::{FlowKey, Ipv4Layout, proto};
use strata_wire::rewrite::{Endpoint, rewrite};

pub use conn::{Conn, Origin, TcpState, Timeouts};

/// A port forward: a port of the external address sent to an inside server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// [`proto::TCP`] or [`proto::UDP`].
    pub proto: u8,
    pub external_port: u16,
    pub internal: SocketAddrV4,
}

/// NAT configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address inside hosts are masqueraded to.
    pub external_addr: Ipv4Addr,
    /// Ports (and ICMP identifiers) SNAT may use.
    pub ports: RangeInclusive<u16>,
    pub forwards: Vec<PortForward>,
    /// Most connections tracked at once.
    pub max_conns: usize,
    pub timeouts: Timeouts,
}

impl Config {
    pub fn new(external_addr: Ipv4Addr) -> Config {
        Config {
            external_addr,
            ports: 1024..=65535,
            forwards: Vec::new(),
            max_conns: 65536,
            timeouts: Timeouts::default(),
        }
    }
}

/// What [`Nat::inbound`] or [`Nat::outbound`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rewritten for a tracked connection.
    Translated,
    /// Not NAT's business (no connection, no forward); pass it on unchanged.
    Untouched,
    /// Refused; a counter says why.
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The connection table is full.
    TableFull,
    /// No external port is free toward this remote endpoint.
    PortsExhausted,
    /// A later fragment: no ports to translate by.
    Fragment,
    /// Not a valid IPv4 packet, or too short for its protocol.
    Malformed,
}

/// NAT counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub translated_out: u64,
    pub translated_in: u64,
    pub conns_created: u64,
    pub conns_expired: u64,
    pub table_full: u64,
    pub ports_exhausted: u64,
    pub fragments: u64,
    pub malformed: u64,
}

/// The NAT and its connection table.
#[derive(Debug)]
pub struct Nat {
    config: Config,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_inner: HashMap<FlowKey, usize>,
    by_outer: HashMap<FlowKey, usize>,
    /// Where the search for a free port resumes.
    cursor: u16,
    counters: Counters,
    next_sweep: Duration,
}

const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

impl Nat {
    pub fn new(config: Config) -> Nat {
        Nat {
            cursor: *config.ports.start(),
            config,
            conns: Vec::new(),
            free: Vec::new(),
            by_inner: HashMap::new(),
            by_outer: HashMap::new(),
            counters: Counters::default(),
            next_sweep: SWEEP_INTERVAL,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live connections, ordered by inner key.
    pub fn conns(&self) -> Vec<&Conn> {
        let mut v: Vec<&Conn> = self.conns.iter().flatten().collect();
        v.sort_by_key(|c| c.inner);
        v
    }

    pub fn len(&self) -> usize {
        self.by_inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inner.is_empty()
    }

    fn parse(&mut self, packet: &[u8]) -> Result<Ipv4Layout, DropReason> {
        Ipv4Layout::parse(packet).map_err(|_| {
            self.counters.malformed += 1;
            DropReason::Malformed
        })
    }

    fn key(&mut self, layout: &Ipv4Layout, packet: &[u8]) -> Result<FlowKey, DropReason> {
        if packet.len() < layout.total_len {
            self.counters.malformed += 1;
            return Err(DropReason::Malformed);
        }
        layout.flow_key(packet).map_err(|e| match e {
            strata_wire::Error::Fragment => {
                self.counters.fragments += 1;
                DropReason::Fragment
            }
            _ => {
                self.counters.malformed += 1;
                DropReason::Malformed
            }
        })
    }

    /// A packet from inside leaving by the external interface: masquerade it.
    pub fn outbound(&mut self, now: Duration, packet: &mut [u8]) -> Action {
        match self.parse(packet) {
            Ok(layout) => self.outbound_parsed(now, &layout, packet),
            Err(r) => Action::Dropped(r),
        }
    }

    /// A packet arriving on the external interface: translate it back if it belongs to a
    /// connection or a port forward.
    pub fn inbound(&mut self, now: Duration, packet: &mut [u8]) -> Action {
        match self.parse(packet) {
            Ok(layout) => self.inbound_parsed(now, &layout, packet),
            Err(r) => Action::Dropped(r),
        }
    }

    /// [`Nat::outbound`] of a packet whose header the caller parsed (`layout`).
    pub fn outbound_parsed(
        &mut self,
        now: Duration,
        layout: &Ipv4Layout,
        packet: &mut [u8],
    ) -> Action {
        let key = match self.key(layout, packet) {
            Ok(k) => k,
            Err(r) => return Action::Dropped(r),
        };
        if key.src == self.config.external_addr || !translatable(key.proto) {
            return Action::Untouched;
        }
        let index = match self.lookup(now, Side::Inner, &key) {
            Some(i) => i,
            None => match self.create_snat(now, key) {
                Ok(i) => i,
                Err(r) => return Action::Dropped(r),
            },
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return Action::Untouched;
        };
        conn.seen(now, true, tcp_flags(layout, packet), &self.config.timeouts);
        let to = (conn.outer.dst, conn.outer.dst_port);
        rewrite(packet, layout, Endpoint::Source, to.0, to.1);
        self.counters.translated_out += 1;
        Action::Translated
    }

    /// [`Nat::inbound`] of a packet whose header the caller parsed (`layout`).
    pub fn inbound_parsed(
        &mut self,
        now: Duration,
        layout: &Ipv4Layout,
        packet: &mut [u8],
    ) -> Action {
        let key = match self.key(layout, packet) {
            Ok(k) => k,
            Err(DropReason::Fragment) => return Action::Untouched,
            Err(r) => return Action::Dropped(r),
        };
        if key.dst != self.config.external_addr || !translatable(key.proto) {
            return Action::Untouched;
        }
        let index = match self.lookup(now, Side::Outer, &key) {
            Some(i) => i,
            None => match self.create_forward(now, key) {
                Some(Ok(i)) => i,
                Some(Err(r)) => return Action::Dropped(r),
                None => return Action::Untouched,
            },
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return Action::Untouched;
        };
        conn.seen(now, false, tcp_flags(layout, packet), &self.config.timeouts);
        let to = (conn.inner.src, conn.inner.src_port);
        rewrite(packet, layout, Endpoint::Destination, to.0, to.1);
        self.counters.translated_in += 1;
        Action::Translated
    }

    fn lookup(&mut self, now: Duration, side: Side, key: &FlowKey) -> Option<usize> {
        let map = match side {
            Side::Inner => &self.by_inner,
            Side::Outer => &self.by_outer,
        };
        let index = *map.get(key)?;
        if self.conns[index].as_ref().is_some_and(|c| c.expires <= now) {
            self.remove(index);
            self.counters.conns_expired += 1;
            return None;
        }
        Some(index)
    }

    fn create_snat(&mut self, now: Duration, inner: FlowKey) -> Result<usize, DropReason> {
        self.room(now)?;
        let port = self.free_port(&inner).ok_or_else(|| {
            self.counters.ports_exhausted += 1;
            DropReason::PortsExhausted
        })?;
        let outer = self.outer_key(&inner, port);
        Ok(self.insert(now, inner, outer, Origin::Snat))
    }

    fn create_forward(
        &mut self,
        now: Duration,
        outer: FlowKey,
    ) -> Option<Result<usize, DropReason>> {
        let fwd = *self
            .config
            .forwards
            .iter()
            .find(|f| f.proto == outer.proto && f.external_port == outer.dst_port)?;
        if let Err(r) = self.room(now) {
            return Some(Err(r));
        }
        let inner = FlowKey {
            proto: outer.proto,
            src: *fwd.internal.ip(),
            src_port: fwd.internal.port(),
            dst: outer.src,
            dst_port: outer.src_port,
        };
        if self.by_inner.contains_key(&inner) {
            // The server already talks to that endpoint through an SNAT mapping.
            self.counters.ports_exhausted += 1;
            return Some(Err(DropReason::PortsExhausted));
        }
        Some(Ok(self.insert(now, inner, outer, Origin::PortForward)))
    }

    /// Makes sure one more connection fits, sweeping expired ones if the table is full.
    fn room(&mut self, now: Duration) -> Result<(), DropReason> {
        if self.len() >= self.config.max_conns {
            self.sweep(now);
        }
        if self.len() >= self.config.max_conns {
            self.counters.table_full += 1;
            return Err(DropReason::TableFull);
        }
        Ok(())
    }

    /// The key of the replies to `inner` once masqueraded to external port `port`.
    fn outer_key(&self, inner: &FlowKey, port: u16) -> FlowKey {
        FlowKey {
            proto: inner.proto,
            src: inner.dst,
            // ICMP echo: the identifier stands in both port positions of the key.
            src_port: if inner.proto == proto::ICMP {
                port
            } else {
                inner.dst_port
            },
            dst: self.config.external_addr,
            dst_port: port,
        }
    }

    /// A free external port toward `inner`'s remote endpoint: the inside port if free,
    /// else the next free one from the cursor.
    fn free_port(&mut self, inner: &FlowKey) -> Option<u16> {
        let (lo, hi) = (*self.config.ports.start(), *self.config.ports.end());
        let taken = |nat: &Nat, port: u16| {
            nat.by_outer.contains_key(&nat.outer_key(inner, port))
                || nat
                    .config
                    .forwards
                    .iter()
                    .any(|f| f.proto == inner.proto && f.external_port == port)
        };
        let want = inner.src_port;
        if (lo..=hi).contains(&want) && !taken(self, want) {
            return Some(want);
        }
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = self.cursor;
            self.cursor = if self.cursor >= hi {
                lo
            } else {
                self.cursor + 1
            };
            if !taken(self, port) {
                return Some(port);
            }
        }
        None
    }

    fn insert(&mut self, now: Duration, inner: FlowKey, outer: FlowKey, origin: Origin) -> usize {
        let conn = Conn::new(now, inner, outer, origin, &self.config.timeouts);
        let index = match self.free.pop() {
            Some(i) => {
                self.conns[i] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.by_inner.insert(inner, index);
        self.by_outer.insert(outer, index);
        self.counters.conns_created += 1;
        index
    }

    fn remove(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].take() {
            self.by_inner.remove(&conn.inner);
            self.by_outer.remove(&conn.outer);
            self.free.push(index);
        }
    }

    fn sweep(&mut self, now: Duration) {
        for index in 0..self.conns.len() {
            if self.conns[index].as_ref().is_some_and(|c| c.expires <= now) {
                self.remove(index);
                self.counters.conns_expired += 1;
            }
        }
    }

    /// Expires idle connections.
    pub fn poll(&mut self, now: Duration) {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
    }

    /// When [`Nat::poll`] next has work: only while connections exist.
    pub fn poll_at(&self) -> Option<Duration> {
        (!self.is_empty()).then_some(self.next_sweep)
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Inner,
    Outer,
}

fn translatable(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::ICMP)
}

fn tcp_flags(layout: &Ipv4Layout, packet: &[u8]) -> Option<u8> {
    (layout.proto == proto::TCP)
        .then(|| packet.get(layout.header_len + 13).copied())
        .flatten()
}

#[cfg(test)]
mod tests;
