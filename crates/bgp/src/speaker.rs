//! A BGP speaker, sans-IO: sessions with many neighbors and the routes between them.
//!
//! ```text
//!  bytes in ──► Session (FSM) ──UPDATE──► Adj-RIB-In ─┐
//!                                                     ├─► best path ──► Adj-RIB-Out ──► UPDATEs out
//!  announce() ──────────────────────► originated ─────┘    (per prefix)   (per neighbor)
//! ```
//!
//! The driver owns the sockets and the clock. It tells the speaker about connections
//! ([`Speaker::connected`], [`Speaker::received`], [`Speaker::closed`]) and takes
//! [`Output`]s back: connections to open, bytes to write, connections to close. The
//! speaker frames and decodes messages, settles connection collisions (RFC 4271 section
//! 6.8), keeps each neighbor's Adj-RIB-In, selects the best path per prefix, and keeps an
//! Adj-RIB-Out per neighbor from which it sends only what changed, packed into as few
//! UPDATEs as the 4,096-byte limit allows.
//!
//! Export follows what an eBGP speaker does by default: our AS prepended, the next hop
//! set to our own address (routes we originate keep the next hop they were given),
//! MED and LOCAL_PREF not passed to another AS, communities and unknown optional
//! transitive attributes passed on. A route is not sent back to the neighbor it came
//! from, nor to a neighbor whose AS is on its path (it would drop it as a loop). Routes
//! learned over iBGP are not sent to iBGP neighbors (RFC 4271 section 9.2).
//!
//! Graceful restart, receiving side (RFC 4724): the routes of a neighbor that announced
//! the capability and went away without a NOTIFICATION stay, marked stale, until it
//! comes back and sends End-of-RIB, or until its restart time runs out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::codec::{
    self, AsSegment, Attribute, FLAG_PARTIAL, Message, MpReach, MpUnreach, Notification, Update,
    afi, community,
};
use crate::decision::{self, Candidate, Rules};
use crate::rib::{AdjRibIn, Import, Path};
use crate::session::{
    self, Action, Collision, Connection, DownReason, Event, Session, State, collision,
};

/// A neighbor, by its index in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// A TCP connection, numbered by the speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// One neighbor.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The neighbor's address: incoming connections from it are its.
    pub address: IpAddr,
    /// The next hop of the IPv4 routes we pass on to it: our address toward it,
    /// usually ([`Speaker::set_local_address`] when it is known only later).
    pub local_address: Ipv4Addr,
    pub session: session::Config,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the neighbor, then call [`Speaker::connected`] (or
    /// [`Speaker::connect_failed`]).
    Connect(PeerId),
    /// Write these bytes on the connection, in order.
    Send(ConnId, Vec<u8>),
    /// Close the connection (after writing what was sent on it).
    Close(ConnId),
    /// A session came up.
    Established(PeerId),
    /// A session went down.
    Down(PeerId, DownReason),
}

/// Where the best path to a prefix comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Announced by this speaker ([`Speaker::announce`]).
    Local,
    Peer(PeerId),
}

/// The state of a neighbor, for display.
#[derive(Debug, Clone)]
pub struct PeerStatus<'a> {
    pub id: PeerId,
    pub config: &'a PeerConfig,
    pub state: State,
    /// Administratively down (not started, or stopped): it neither connects nor takes
    /// a connection. An Idle session that is not is waiting to restart, and takes one.
    pub admin_down: bool,
    /// Why the session last went down, until it is up again.
    pub last_down: Option<&'a DownReason>,
    /// The last NOTIFICATION sent or received, kept when the session comes back (with
    /// a peer's shutdown communication, RFC 8203).
    pub last_error: Option<&'a DownReason>,
    pub received: &'a AdjRibIn,
    pub sent: &'a AdjRibIn,
    /// When the session last became Established, while it is.
    pub established_at: Option<Duration>,
    /// What the session's OPENs came to, while it has them.
    pub negotiated: Option<&'a crate::session::Negotiated>,
    /// Messages read from and written to the neighbor, over every connection.
    pub messages_in: u64,
    pub messages_out: u64,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    rx: Vec<u8>,
    opened_locally: bool,
}

#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    session: Session,
    /// The connection `session` runs on.
    conn: Option<Conn>,
    /// The other connection of a collision, with its own session, until one is closed.
    second: Option<(Session, Conn)>,
    adj_in: AdjRibIn,
    /// What we announced to the neighbor: the paths as selected, before export changes
    /// them (so a path shared by many prefixes stays shared here too).
    adj_out: AdjRibIn,
    established: bool,
    last_down: Option<DownReason>,
    last_error: Option<DownReason>,
    /// The neighbor's BGP Identifier, from its last OPEN (its routes keep it for the
    /// decision process while stale).
    peer_id: Option<Ipv4Addr>,
    /// Removed from the configuration: kept as a tombstone so that [`PeerId`]s stay put.
    removed: bool,
    /// The neighbor's graceful restart time, from its OPEN (RFC 4724).
    restart_time: Option<u16>,
    /// Routes kept from a neighbor that is restarting, until it announces them again and
    /// sends End-of-RIB, or until `stale_until` (RFC 4724 section 4.2).
    stale: BTreeSet<IpNet>,
    stale_until: Option<Duration>,
    established_at: Option<Duration>,
    messages_in: u64,
    messages_out: u64,
}

impl Peer {
    fn new(config: PeerConfig) -> Peer {
        Peer {
            session: Session::new(config.session.clone()),
            config,
            conn: None,
            second: None,
            adj_in: AdjRibIn::new(),
            adj_out: AdjRibIn::new(),
            established: false,
            last_down: None,
            last_error: None,
            peer_id: None,
            removed: false,
            restart_time: None,
            stale: BTreeSet::new(),
            stale_until: None,
            established_at: None,
            messages_in: 0,
            messages_out: 0,
        }
    }

    fn ibgp(&self) -> bool {
        self.config.session.peer_as == self.config.session.local_as
    }

    /// A path from this neighbor, for the decision process.
    fn candidate<'a>(&self, path: &'a Path) -> Candidate<'a> {
        Candidate {
            path,
            external: !self.ibgp(),
            peer_id: self.peer_id.unwrap_or(Ipv4Addr::BROADCAST),
            peer_address: self.config.address,
        }
    }
}

/// The speaker.
#[derive(Debug)]
pub struct Speaker {
    asn: u32,
    /// The next hop of the IPv6 routes we pass on; an IPv4-mapped address of the
    /// session's local address when unset (as BIRD and FRR do over IPv4 sessions).
    next_hop6: Option<Ipv6Addr>,
    peers: Vec<Peer>,
    originated: AdjRibIn,
    outputs: VecDeque<Output>,
    next_conn: u64,
    rules: Rules,
    /// Our own addresses besides each neighbor's `local_address` (`next_hop6` among
    /// them): a route with one of them as next hop is ignored (RFC 4271 6.3).
    own_addresses: Vec<IpAddr>,
    /// Whether [`Speaker::start`] was called (a neighbor added later starts at once).
    started: bool,
    /// Prefixes whose best path changed, kept for [`Speaker::take_changed`] when asked.
    changed: Option<BTreeSet<IpNet>>,
}

impl Speaker {
    pub fn new(asn: u32, next_hop6: Option<Ipv6Addr>, peers: Vec<PeerConfig>) -> Speaker {
        Speaker {
            asn,
            next_hop6,
            peers: peers.into_iter().map(Peer::new).collect(),
            originated: AdjRibIn::new(),
            outputs: VecDeque::new(),
            next_conn: 0,
            rules: Rules::new(asn),
            own_addresses: next_hop6.map(IpAddr::V6).into_iter().collect(),
            started: false,
            changed: None,
        }
    }

    /// Sets our address toward a neighbor (the next hop of the IPv4 routes it is sent).
    pub fn set_local_address(&mut self, peer: PeerId, address: Ipv4Addr) {
        if let Some(p) = self.peers.get_mut(peer.0) {
            p.config.local_address = address;
        }
    }

    /// Sets how paths are compared (MED between ASes, the preference of external
    /// routes); the local AS stays the speaker's.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = Rules {
            local_as: self.asn,
            ..rules
        };
    }

    /// Our own addresses, besides each neighbor's `local_address` and `next_hop6`.
    pub fn set_own_addresses(&mut self, addresses: Vec<IpAddr>) {
        self.own_addresses = self.next_hop6.map(IpAddr::V6).into_iter().collect();
        self.own_addresses.extend(addresses);
    }

    /// Adds a neighbor; its session starts at once if the speaker has started.
    pub fn add_peer(&mut self, config: PeerConfig, now: Duration) -> PeerId {
        let id = PeerId(self.peers.len());
        self.peers.push(Peer::new(config));
        if self.started {
            self.peers[id.0].session.handle(now, Event::Start);
            self.drain(id, now);
        }
        id
    }

    /// Removes a neighbor: its session closes with a Cease / Administrative Shutdown
    /// carrying `communication` (RFC 8203), and its routes go. Its [`PeerId`] is not
    /// given to another.
    pub fn remove_peer(&mut self, peer: PeerId, communication: &str, now: Duration) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        if p.removed {
            return;
        }
        self.stop_peer(peer, communication, now);
        let p = &mut self.peers[peer.0];
        p.removed = true;
        p.stale.clear();
        p.stale_until = None;
        let lost = p.adj_in.clear();
        self.propagate(&lost, now);
    }

    /// BFD declared a neighbor down (RFC 5882): its session ends at once and its routes
    /// go, graceful restart or not (the forwarding path is what failed).
    pub fn bfd_down(&mut self, peer: PeerId, now: Duration) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        if let Some((_, conn)) = p.second.take() {
            self.outputs.push_back(Output::Close(conn.id));
        }
        self.peers[peer.0].session.handle(now, Event::BfdDown);
        self.drain(peer, now);
    }

    /// Keeps the prefixes whose best path changes, for a FIB ([`Speaker::take_changed`]).
    pub fn record_changes(&mut self) {
        self.changed.get_or_insert_with(BTreeSet::new);
    }

    /// The prefixes whose best path changed since the last call (with
    /// [`Speaker::record_changes`]); look them up with [`Speaker::next_hops`].
    pub fn take_changed(&mut self) -> BTreeSet<IpNet> {
        self.changed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Drops every connection without a NOTIFICATION and forgets what was learned, as
    /// a crashed speaker would; the sessions stay down until [`Speaker::start`].
    pub fn reset(&mut self, now: Duration) {
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            let conns = p
                .conn
                .take()
                .into_iter()
                .chain(p.second.take().map(|(_, c)| c));
            for c in conns {
                self.outputs.push_back(Output::Close(c.id));
            }
            let p = &mut self.peers[i];
            p.session = Session::new(p.config.session.clone());
            p.established = false;
            p.adj_out.clear();
            p.stale.clear();
            p.stale_until = None;
            let lost = p.adj_in.clear();
            self.propagate(&lost, now);
        }
    }

    /// Starts every session.
    pub fn start(&mut self, now: Duration) {
        self.started = true;
        for i in 0..self.peers.len() {
            if self.peers[i].removed {
                continue;
            }
            self.peers[i].session.handle(now, Event::Start);
            self.drain(PeerId(i), now);
        }
    }

    /// Stops every session: Cease / Administrative Shutdown, with `communication` as
    /// the shutdown communication (RFC 8203; empty for none).
    pub fn stop(&mut self, now: Duration, communication: &str) {
        self.started = false;
        for i in 0..self.peers.len() {
            self.stop_peer(PeerId(i), communication, now);
        }
    }

    /// Stops a neighbor's sessions (both, during a collision) with a Cease carrying
    /// `communication`.
    fn stop_peer(&mut self, peer: PeerId, communication: &str, now: Duration) {
        if let Some((mut session, conn)) = self.peers[peer.0].second.take() {
            session.handle(now, Event::Stop(communication.to_string()));
            self.flush_second(session, conn);
        }
        self.peers[peer.0]
            .session
            .handle(now, Event::Stop(communication.to_string()));
        self.drain(peer, now);
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Speaker::poll`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        self.peers
            .iter()
            .flat_map(|p| {
                [
                    p.session.poll_at(),
                    p.second.as_ref().and_then(|s| s.0.poll_at()),
                    p.stale_until,
                ]
            })
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Duration) {
        for i in 0..self.peers.len() {
            if self.peers[i].stale_until.is_some_and(|t| t <= now) {
                // The restarting neighbor did not come back in time.
                self.purge_stale(PeerId(i), None, now);
            }
            self.peers[i].session.poll(now);
            if let Some((session, _)) = self.peers[i].second.as_mut() {
                session.poll(now);
            }
            self.serve(PeerId(i), now);
        }
    }

    /// The neighbor a connection from `address` belongs to.
    pub fn peer_by_address(&self, address: IpAddr) -> Option<PeerId> {
        self.peers
            .iter()
            .position(|p| !p.removed && p.config.address == address)
            .map(PeerId)
    }

    /// A TCP connection to `peer` is up: one we opened after [`Output::Connect`]
    /// (`opened_locally`) or one the neighbor opened. Returns its number (`None` for a
    /// neighbor that does not exist, or was removed: the driver closes it).
    ///
    /// A connection the session cannot take, because it is administratively down or two
    /// connections are already being settled, is refused in words: Cease / Connection
    /// Rejected (RFC 4486), then closed.
    pub fn connected(
        &mut self,
        peer: PeerId,
        opened_locally: bool,
        now: Duration,
    ) -> Option<ConnId> {
        let id = ConnId(self.next_conn);
        let conn = Conn {
            id,
            rx: Vec::new(),
            opened_locally,
        };
        let p = self.peers.get_mut(peer.0).filter(|p| !p.removed)?;
        self.next_conn += 1;
        let idle_and_down = p.session.state() == State::Idle && p.session.admin_down();
        if p.conn.is_none() && !idle_and_down {
            p.conn = Some(conn);
            p.session.handle(now, Event::TcpConnected);
        } else if p.conn.is_some() && p.second.is_none() {
            // A collision: both connections live until the OPENs tell which to close.
            let session = Session::accepted(p.session.config().clone(), now);
            p.second = Some((session, conn));
        } else {
            let rejected = Notification::cease(codec::cease::CONNECTION_REJECTED, "");
            emit(
                &mut self.outputs,
                id,
                &Message::Notification(rejected),
                codec::Options::default(),
            );
            self.outputs.push_back(Output::Close(id));
            return Some(id);
        }
        self.serve(peer, now);
        Some(id)
    }

    /// The connection [`Output::Connect`] asked for could not be opened.
    pub fn connect_failed(&mut self, peer: PeerId, now: Duration) {
        if let Some(p) = self.peers.get_mut(peer.0)
            && p.conn.is_none()
        {
            p.session.handle(now, Event::TcpClosed);
            self.serve(peer, now);
        }
    }

    /// Bytes arrived on a connection.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8], now: Duration) {
        let Some((peer, second)) = self.find(conn) else {
            return;
        };
        let p = &mut self.peers[peer.0];
        let c = if second {
            p.second.as_mut().map(|(_, c)| c)
        } else {
            p.conn.as_mut()
        };
        if let Some(c) = c {
            c.rx.extend_from_slice(bytes);
        }
        self.serve(peer, now);
    }

    /// A connection was closed by the neighbor or failed.
    pub fn closed(&mut self, conn: ConnId, now: Duration) {
        let Some((peer, second)) = self.find(conn) else {
            return;
        };
        let p = &mut self.peers[peer.0];
        if second {
            p.second = None;
        } else {
            // What it had sent before closing still counts (a NOTIFICATION, say).
            self.serve(peer, now);
            let p = &mut self.peers[peer.0];
            if p.conn.as_ref().is_some_and(|c| c.id == conn) {
                p.conn = None;
                p.session.handle(now, Event::TcpClosed);
            }
        }
        self.serve(peer, now);
    }

    /// Announces `prefix` from this speaker, with `next_hop` (an unspecified address:
    /// our own address toward each neighbor); replaces an earlier announcement of it.
    pub fn announce(&mut self, prefix: IpNet, next_hop: IpAddr, now: Duration) {
        self.announce_all(&[prefix], next_hop, now);
    }

    /// Announces prefixes with one next hop (they share one path, and go out in as few
    /// UPDATEs as fit).
    pub fn announce_all(&mut self, prefixes: &[IpNet], next_hop: IpAddr, now: Duration) {
        let path = Arc::new(Path::local(next_hop));
        let prefixes: Vec<IpNet> = prefixes.iter().map(IpNet::trunc).collect();
        for p in &prefixes {
            self.originated.insert(*p, Arc::clone(&path));
        }
        self.propagate(&prefixes, now);
    }

    /// Withdraws a prefix this speaker announced.
    pub fn withdraw(&mut self, prefix: IpNet, now: Duration) {
        let prefix = prefix.trunc();
        if self.originated.remove(&prefix) {
            self.propagate(&[prefix], now);
        }
    }

    /// Every neighbor's state and tables (those removed are not listed).
    pub fn peers(&self) -> impl Iterator<Item = PeerStatus<'_>> {
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.removed)
            .map(|(i, p)| PeerStatus {
                id: PeerId(i),
                config: &p.config,
                state: p.session.state(),
                admin_down: p.session.admin_down(),
                last_down: p.last_down.as_ref(),
                last_error: p.last_error.as_ref(),
                received: &p.adj_in,
                sent: &p.adj_out,
                established_at: p.established_at,
                negotiated: p.session.negotiated(),
                messages_in: p.messages_in,
                messages_out: p.messages_out,
            })
    }

    /// The routes this speaker announces itself.
    pub fn originated(&self) -> &AdjRibIn {
        &self.originated
    }

    /// The best path to a prefix and where it comes from ([`decision`]: RFC 4271
    /// 9.1.2.2); our own announcements win over learned ones.
    pub fn best(&self, prefix: &IpNet) -> Option<(Source, &Arc<Path>)> {
        if let Some(path) = self.originated.get(prefix) {
            return Some((Source::Local, path));
        }
        let mut from = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p, p.adj_in.get(prefix)?)));
        let first = from.next()?;
        let Some(second) = from.next() else {
            // One path: nothing to decide (and nothing to allocate).
            return Some((Source::Peer(PeerId(first.0)), first.2));
        };
        let paths: Vec<_> = [first, second].into_iter().chain(from).collect();
        let candidates: Vec<Candidate<'_>> =
            paths.iter().map(|(_, p, path)| p.candidate(path)).collect();
        let selection = decision::select(&candidates, &self.rules)?;
        let (i, _, path) = paths[selection.best];
        Some((Source::Peer(PeerId(i)), path))
    }

    /// The Loc-RIB: every prefix with its best path and where it comes from, each once
    /// (our own announcements first, then each neighbor's table in turn).
    pub fn loc_rib(&self) -> impl Iterator<Item = (IpNet, Source, &Arc<Path>)> {
        let own = self
            .originated
            .iter()
            .map(|(prefix, path)| (prefix, Source::Local, path));
        let learned = self.peers.iter().enumerate().flat_map(move |(i, p)| {
            // Each prefix from the table its best path is in.
            p.adj_in
                .iter()
                .filter(move |(prefix, _)| {
                    matches!(self.best(prefix), Some((Source::Peer(PeerId(j)), _)) if j == i)
                })
                .map(move |(prefix, path)| (prefix, Source::Peer(PeerId(i)), path))
        });
        own.chain(learned)
    }

    /// Next hops of every path that ties with the best one (multipath), for a FIB:
    /// sorted, without repeats. Empty when there is no path.
    pub fn next_hops(&self, prefix: &IpNet) -> Vec<IpAddr> {
        if let Some(path) = self.originated.get(prefix) {
            return vec![path.next_hop];
        }
        let candidates: Vec<Candidate<'_>> = self
            .peers
            .iter()
            .filter_map(|p| Some(p.candidate(p.adj_in.get(prefix)?)))
            .collect();
        let Some(selection) = decision::select(&candidates, &self.rules) else {
            return Vec::new();
        };
        let mut hops: Vec<IpAddr> = std::iter::once(selection.best)
            .chain(selection.equal)
            .map(|i| candidates[i].path.next_hop)
            .collect();
        hops.sort();
        hops.dedup();
        hops
    }

    fn find(&self, conn: ConnId) -> Option<(PeerId, bool)> {
        self.peers.iter().enumerate().find_map(|(i, p)| {
            if p.conn.as_ref().is_some_and(|c| c.id == conn) {
                Some((PeerId(i), false))
            } else if p.second.as_ref().is_some_and(|(_, c)| c.id == conn) {
                Some((PeerId(i), true))
            } else {
                None
            }
        })
    }

    /// Feeds what arrived to a neighbor's sessions, settles a collision, and carries out
    /// what the sessions ask.
    fn serve(&mut self, peer: PeerId, now: Duration) {
        // Twice: the first connection's OPEN may settle a collision, after which the
        // surviving connection's later messages can be read.
        for _ in 0..2 {
            self.settle(peer, now);
            let p = &mut self.peers[peer.0];
            let colliding = p.second.is_some();
            if let Some(conn) = p.conn.as_mut() {
                // While a collision is open, the first connection goes no further than
                // its OPEN.
                let read = feed(&mut p.session, &mut conn.rx, now, |s| {
                    !colliding || s.peer_id().is_none()
                });
                p.messages_in += read;
            }
            self.drain(peer, now);
        }
    }

    /// The second connection of a collision: read up to its OPEN, then close one of
    /// the two as RFC 4271 section 6.8 says.
    fn settle(&mut self, peer: PeerId, now: Duration) {
        let p = &mut self.peers[peer.0];
        let Some((session, conn)) = p.second.as_mut() else {
            return;
        };
        let read = feed(session, &mut conn.rx, now, |s| {
            s.peer_id().is_none() && s.state() != State::Idle
        });
        p.messages_in += read;
        if session.state() == State::Idle {
            if let Some((session, conn)) = p.second.take() {
                self.flush_second(session, conn);
            }
            return;
        }
        let verdict = collision(
            Connection {
                session: &p.session,
                opened_locally: p.conn.as_ref().is_some_and(|c| c.opened_locally),
            },
            Connection {
                session,
                opened_locally: conn.opened_locally,
            },
        );
        match verdict {
            // Nothing decided: the OPEN (all a connection short of its peer's OPEN
            // queues) goes out.
            Collision::Wait => {
                let id = conn.id;
                while let Some(action) = session.poll_action() {
                    if let Action::Send(m) = action {
                        emit(&mut self.outputs, id, &m, session.options());
                    }
                }
            }
            Collision::CloseSecond => {
                if let Some((mut session, conn)) = p.second.take() {
                    session.close_collision(now);
                    self.flush_second(session, conn);
                }
            }
            Collision::CloseFirst => {
                let Some((session, conn)) = p.second.take() else {
                    return;
                };
                p.session.close_collision(now);
                let old = std::mem::replace(&mut p.session, session);
                let old_conn = p.conn.replace(conn);
                if let Some(c) = old_conn {
                    self.flush_second(old, c);
                }
            }
        }
    }

    /// Writes what a closing connection's session queued, then closes it.
    fn flush_second(&mut self, mut session: Session, conn: Conn) {
        while let Some(action) = session.poll_action() {
            if let Action::Send(m) = action {
                emit(&mut self.outputs, conn.id, &m, session.options());
            }
        }
        self.outputs.push_back(Output::Close(conn.id));
    }

    /// Carries out what a neighbor's session asks.
    ///
    /// The actions queued are taken out before any is carried out: carrying one out can
    /// send to any neighbor, this one included, and what this one queues then comes
    /// after what it had queued before.
    fn drain(&mut self, peer: PeerId, now: Duration) {
        loop {
            let session = &mut self.peers[peer.0].session;
            let actions: Vec<Action> = std::iter::from_fn(|| session.poll_action()).collect();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.carry_out(peer, action, now);
            }
        }
    }

    fn carry_out(&mut self, peer: PeerId, action: Action, now: Duration) {
        {
            let p = &mut self.peers[peer.0];
            match action {
                Action::Connect => self.outputs.push_back(Output::Connect(peer)),
                Action::Disconnect => {
                    if let Some(c) = p.conn.take() {
                        self.outputs.push_back(Output::Close(c.id));
                    }
                }
                Action::Send(m) => {
                    if let Some(c) = &p.conn {
                        emit(&mut self.outputs, c.id, &m, p.session.options());
                        p.messages_out += 1;
                    }
                }
                Action::Established(negotiated) => {
                    p.established = true;
                    p.established_at = Some(now);
                    p.last_down = None;
                    p.peer_id = Some(negotiated.peer_id);
                    p.restart_time = negotiated.peer_graceful_restart.map(|g| g.time);
                    self.outputs.push_back(Output::Established(peer));
                    self.send_table(peer, now);
                }
                Action::Update(mut u) => {
                    let end_of_rib = u.is_end_of_rib();
                    // RFC 4760 section 7: routes of a family the session did not
                    // negotiate are ignored.
                    let families = p.session.negotiated().map(|n| n.families.clone());
                    u.attributes.retain(|a| match a {
                        Attribute::MpReach(MpReach { afi, safi, .. })
                        | Attribute::MpUnreach(MpUnreach { afi, safi, .. }) => families
                            .as_ref()
                            .is_some_and(|f| f.contains(&(*afi, *safi))),
                        _ => true,
                    });
                    if u.treat_as_withdraw.is_none()
                        && let Some(reason) = semantic_error(&u, p)
                    {
                        u.treat_as_withdraw = Some(reason);
                    }
                    if let Some(e) = &u.treat_as_withdraw {
                        tracing::warn!(
                            neighbor = %p.config.address,
                            attribute = e.code,
                            "UPDATE treated as withdraw: {}",
                            e.reason
                        );
                    }
                    let import = Import {
                        local_as: self.asn,
                        own_addresses: &self.own_addresses,
                        session_address: Some(IpAddr::V4(p.config.local_address)),
                    };
                    let changed = p.adj_in.apply(&u, &import);
                    for prefix in &changed {
                        p.stale.remove(prefix);
                    }
                    self.propagate(&changed, now);
                    if let Some((afi, _)) = end_of_rib {
                        // RFC 4724 4.2: what the restarted neighbor did not announce
                        // again is gone.
                        self.purge_stale(peer, Some(afi), now);
                    }
                }
                Action::Down(reason) => {
                    p.established = false;
                    p.established_at = None;
                    p.adj_out.clear();
                    p.last_down = Some(reason.clone());
                    if matches!(reason, DownReason::Sent(_) | DownReason::Received(_)) {
                        p.last_error = Some(reason.clone());
                    }
                    match (&reason, p.restart_time) {
                        // RFC 4724 4.2: the connection went away without a NOTIFICATION
                        // from a neighbor that can restart: its routes stay, stale, for
                        // its restart time.
                        (DownReason::ConnectionLost, Some(time)) if time > 0 => {
                            p.stale = p.adj_in.iter().map(|(prefix, _)| prefix).collect();
                            p.stale_until = Some(now + Duration::from_secs(u64::from(time)));
                        }
                        _ => {
                            p.stale.clear();
                            p.stale_until = None;
                            let lost = p.adj_in.clear();
                            self.propagate(&lost, now);
                        }
                    }
                    self.outputs.push_back(Output::Down(peer, reason));
                }
                Action::Refused(reason) => {
                    p.last_down = Some(reason.clone());
                    p.last_error = Some(reason);
                }
                Action::RouteRefresh(..) => {
                    // RFC 2918: the whole table again (the families are sent together).
                    p.adj_out.clear();
                    self.send_table(peer, now);
                }
            }
        }
    }

    /// Drops a neighbor's stale routes (of one address family, or all).
    fn purge_stale(&mut self, peer: PeerId, family: Option<u16>, now: Duration) {
        let p = &mut self.peers[peer.0];
        let (gone, kept): (Vec<IpNet>, Vec<IpNet>) = std::mem::take(&mut p.stale)
            .into_iter()
            .partition(|prefix| {
                family.is_none_or(|f| (f == afi::IPV4) == matches!(prefix, IpNet::V4(_)))
            });
        p.stale = kept.into_iter().collect();
        if p.stale.is_empty() {
            p.stale_until = None;
        }
        for prefix in &gone {
            p.adj_in.remove(prefix);
        }
        self.propagate(&gone, now);
    }

    /// Sends a neighbor that just came up (or asked for a refresh) every best route,
    /// then End-of-RIB for each family (RFC 4724).
    fn send_table(&mut self, peer: PeerId, now: Duration) {
        let best: Vec<(IpNet, Source, Arc<Path>)> = self
            .loc_rib()
            .map(|(prefix, source, path)| (prefix, source, Arc::clone(path)))
            .collect();
        let mut batch = Batch::default();
        for (prefix, source, path) in best {
            self.export(peer, prefix, Some(&(source, path)), &mut batch);
        }
        self.send_batch(peer, batch, now);
        let p = &mut self.peers[peer.0];
        let families = p
            .session
            .negotiated()
            .map(|n| n.families.clone())
            .unwrap_or_default();
        for (afi, safi) in families {
            p.session.send_update(now, Update::end_of_rib(afi, safi));
        }
        self.drain(peer, now);
    }

    /// Sends every established neighbor what changed for `prefixes`.
    fn propagate(&mut self, prefixes: &[IpNet], now: Duration) {
        if prefixes.is_empty() {
            return;
        }
        if let Some(changed) = self.changed.as_mut() {
            changed.extend(prefixes.iter().copied());
        }
        let targets: Vec<PeerId> = (0..self.peers.len())
            .filter(|&i| self.peers[i].established)
            .map(PeerId)
            .collect();
        let mut batches: Vec<Batch> = targets.iter().map(|_| Batch::default()).collect();
        for &prefix in prefixes {
            let best = self.best(&prefix).map(|(s, p)| (s, Arc::clone(p)));
            for (batch, &target) in batches.iter_mut().zip(&targets) {
                self.export(target, prefix, best.as_ref(), batch);
            }
        }
        for (batch, target) in batches.into_iter().zip(targets) {
            self.send_batch(target, batch, now);
        }
    }

    /// What `target` should hear about `prefix`, whose best path is `best`, given its
    /// Adj-RIB-Out: added to `batch` (and the Adj-RIB-Out updated) when it changed.
    fn export(
        &mut self,
        target: PeerId,
        prefix: IpNet,
        best: Option<&(Source, Arc<Path>)>,
        batch: &mut Batch,
    ) {
        let to = &self.peers[target.0];
        let external = !to.ibgp();
        let path = match best {
            Some((Source::Peer(from), _)) if *from == target => None,
            // RFC 1997: NO_ADVERTISE goes to no one; NO_EXPORT and NO_EXPORT_SUBCONFED
            // stay inside the AS (there are no confederations here).
            Some((_, path)) if path.has_community(community::NO_ADVERTISE) => None,
            Some((_, path))
                if external
                    && (path.has_community(community::NO_EXPORT)
                        || path.has_community(community::NO_EXPORT_SUBCONFED)) =>
            {
                None
            }
            Some((Source::Peer(from), _)) if to.ibgp() && self.peers[from.0].ibgp() => None,
            Some((_, path)) if path.traverses(to.config.session.peer_as) => None,
            Some((source, path)) => Some((*source == Source::Local, Arc::clone(path))),
            None => None,
        };
        let to = &mut self.peers[target.0];
        match path {
            // One search of the Adj-RIB-Out either way: the table is as big as the
            // routing table.
            Some((local, new)) => {
                let old = to.adj_out.replace(prefix, Arc::clone(&new));
                if !old.is_some_and(|old| Arc::ptr_eq(&old, &new)) {
                    batch.announce(prefix, new, local);
                }
            }
            None => {
                if to.adj_out.remove(&prefix) {
                    batch.withdraw.push(prefix);
                }
            }
        }
    }

    /// Encodes a batch of changes as UPDATEs to `target`.
    fn send_batch(&mut self, target: PeerId, batch: Batch, now: Duration) {
        if batch.is_empty() {
            return;
        }
        let asn = self.asn;
        let p = &mut self.peers[target.0];
        let ibgp = p.ibgp();
        let hop4 = p.config.local_address;
        let hop6 = self.next_hop6.unwrap_or(hop4.to_ipv6_mapped());
        let (w4, w6): (Vec<IpNet>, Vec<IpNet>) = batch
            .withdraw
            .iter()
            .partition(|p| matches!(p, IpNet::V4(_)));
        for chunk in chunks(&w4, HEADER_ROOM) {
            p.session.send_update(
                now,
                Update {
                    withdrawn: chunk.iter().filter_map(v4).collect(),
                    ..Update::default()
                },
            );
        }
        for chunk in chunks(&w6, HEADER_ROOM - MP_ROOM) {
            p.session.send_update(
                now,
                Update {
                    attributes: vec![Attribute::MpUnreach(MpUnreach {
                        afi: afi::IPV6,
                        safi: codec::SAFI_UNICAST,
                        withdrawn: chunk.to_vec(),
                    })],
                    ..Update::default()
                },
            );
        }
        for (path, local, prefixes) in &batch.announce {
            let local = *local;
            let mut attributes = export_attributes(path, asn, ibgp, local);
            // Too long to send: the encoder says so when the UPDATE is written.
            let room = codec::attributes_len(&attributes, p.session.options())
                .map_or(0, |len| HEADER_ROOM.saturating_sub(len));
            let (n4, n6): (Vec<IpNet>, Vec<IpNet>) =
                prefixes.iter().partition(|p| matches!(p, IpNet::V4(_)));
            if !n4.is_empty() {
                let hop = match path.next_hop {
                    IpAddr::V4(h) if (local || ibgp) && !h.is_unspecified() => h,
                    _ => hop4,
                };
                attributes.push(Attribute::NextHop(hop));
                // NEXT_HOP: flags, type, length and the address.
                for chunk in chunks(&n4, room.saturating_sub(7)) {
                    p.session.send_update(
                        now,
                        Update {
                            attributes: attributes.clone(),
                            nlri: chunk.iter().filter_map(v4).collect(),
                            ..Update::default()
                        },
                    );
                }
                attributes.pop();
            }
            if !n6.is_empty() {
                let hop = match path.next_hop {
                    IpAddr::V6(h) if (local || ibgp) && !h.is_unspecified() => h,
                    _ => hop6,
                };
                for chunk in chunks(&n6, room.saturating_sub(MP_ROOM + 16)) {
                    let mut attributes = attributes.clone();
                    attributes.push(Attribute::MpReach(MpReach {
                        afi: afi::IPV6,
                        safi: codec::SAFI_UNICAST,
                        next_hops: vec![IpAddr::V6(hop)],
                        nlri: chunk.to_vec(),
                    }));
                    p.session.send_update(
                        now,
                        Update {
                            attributes,
                            ..Update::default()
                        },
                    );
                }
            }
        }
        self.drain(target, now);
    }
}

/// Room for prefixes in an UPDATE: the 4,096-byte limit less the header (19), the two
/// length fields (4).
const HEADER_ROOM: usize = codec::MAX_LEN - codec::HEADER_LEN - 4;
/// What MP_REACH/MP_UNREACH take besides their prefixes and next hop: flags, type,
/// extended length (4), AFI, SAFI, next-hop length, reserved (5).
const MP_ROOM: usize = 9;

/// Changes for one neighbor, announcements grouped by path.
#[derive(Debug, Default)]
struct Batch {
    /// Paths, whether we originated them, and their prefixes.
    announce: Vec<(Arc<Path>, bool, Vec<IpNet>)>,
    /// Index into `announce` by the path's address.
    by_path: HashMap<*const Path, usize>,
    withdraw: Vec<IpNet>,
}

impl Batch {
    fn announce(&mut self, prefix: IpNet, path: Arc<Path>, local: bool) {
        let key = Arc::as_ptr(&path);
        if let Some(&i) = self.by_path.get(&key) {
            self.announce[i].2.push(prefix);
            return;
        }
        // A table arrives as UPDATEs of one path each, so consecutive paths are often
        // equal: their prefixes go out together.
        if let Some((last, last_local, prefixes)) = self.announce.last_mut()
            && *last_local == local
            && **last == *path
        {
            prefixes.push(prefix);
            self.by_path.insert(key, self.announce.len() - 1);
            return;
        }
        self.by_path.insert(key, self.announce.len());
        self.announce.push((path, local, vec![prefix]));
    }

    fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// The attributes a path is announced with (all but the next hop).
fn export_attributes(path: &Path, asn: u32, ibgp: bool, local: bool) -> Vec<Attribute> {
    let mut out = vec![Attribute::Origin(path.origin)];
    let mut as_path = path.as_path.clone();
    if !ibgp {
        match as_path.segments.first_mut() {
            Some(s) if !s.set && s.asns.len() < 255 => s.asns.insert(0, asn),
            _ => as_path.segments.insert(
                0,
                AsSegment {
                    set: false,
                    asns: vec![asn],
                },
            ),
        }
    }
    out.push(Attribute::AsPath(as_path));
    // MED is for the neighboring AS only (RFC 4271 5.1.4): ours goes out, a learned
    // one goes no further than our own AS.
    if let Some(med) = path.med
        && (local || ibgp)
    {
        out.push(Attribute::Med(med));
    }
    if ibgp {
        out.push(Attribute::LocalPref(path.local_pref));
    }
    if !path.communities.is_empty() {
        out.push(Attribute::Communities(path.communities.clone()));
    }
    for a in &path.transitive {
        out.push(match a {
            Attribute::Unknown { flags, code, value } => Attribute::Unknown {
                flags: flags | FLAG_PARTIAL,
                code: *code,
                value: value.clone(),
            },
            // RFC 4360 section 2 and RFC 5701: an extended community whose type has
            // the non-transitive bit does not leave the AS.
            Attribute::ExtendedCommunities(cs) if !ibgp => {
                let kept: Vec<[u8; 8]> = cs.iter().copied().filter(|c| c[0] & 0x40 == 0).collect();
                if kept.is_empty() {
                    continue;
                }
                Attribute::ExtendedCommunities(kept)
            }
            Attribute::Ipv6ExtendedCommunities(cs) if !ibgp => {
                let kept: Vec<[u8; 20]> = cs.iter().copied().filter(|c| c[0] & 0x40 == 0).collect();
                if kept.is_empty() {
                    continue;
                }
                Attribute::Ipv6ExtendedCommunities(kept)
            }
            known => known.clone(),
        });
    }
    out
}

/// What makes an UPDATE from `peer` unusable although it decoded: its routes are
/// treated as withdrawn (RFC 7606).
fn semantic_error(u: &Update, peer: &Peer) -> Option<codec::AttributeError> {
    // RFC 4271 6.3 (a check it allows, as FRR's enforce-first-as does): a neighbor in
    // another AS puts its own AS first. Else the path is malformed, which RFC 7606
    // section 7.2 makes treat-as-withdraw.
    if !peer.ibgp()
        && let Some(Attribute::AsPath(path)) = u.attribute(codec::attr::AS_PATH)
        && path.neighbor_as() != Some(peer.config.session.peer_as)
    {
        return Some(codec::AttributeError {
            code: codec::attr::AS_PATH,
            reason: "the first AS of AS_PATH is not the neighbor's",
        });
    }
    // RFC 4456 section 8: our own route, reflected back to us.
    if let Some(Attribute::OriginatorId(id)) = u.attribute(codec::attr::ORIGINATOR_ID)
        && *id == peer.config.session.bgp_id
    {
        return Some(codec::AttributeError {
            code: codec::attr::ORIGINATOR_ID,
            reason: "ORIGINATOR_ID is our own BGP Identifier",
        });
    }
    None
}

/// Splits prefixes into runs whose encoding fits in `room` bytes.
fn chunks(prefixes: &[IpNet], room: usize) -> impl Iterator<Item = &[IpNet]> {
    let mut rest = prefixes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let mut n = 0;
        for p in rest {
            let len = 1 + usize::from(p.prefix_len()).div_ceil(8);
            if used + len > room && n > 0 {
                break;
            }
            used += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn v4(p: &IpNet) -> Option<ipnet::Ipv4Net> {
    match p {
        IpNet::V4(p) => Some(*p),
        IpNet::V6(_) => None,
    }
}

/// Feeds the whole messages in `rx` to `session`, one by one while `more` says so; a
/// message not all there yet stays in `rx`. (Not [`codec::take_message`], which would
/// move the rest of the buffer down after every message: a table arrives as megabytes.)
/// Returns how many messages it fed.
fn feed(
    session: &mut Session,
    rx: &mut Vec<u8>,
    now: Duration,
    more: impl Fn(&Session) -> bool,
) -> u64 {
    let mut at = 0;
    let mut fed = 0;
    while more(session) {
        let rest = &rx[at..];
        let len = match codec::message_len(rest) {
            Ok(Some(len)) if rest.len() >= len => len,
            Ok(_) => break,
            Err(e) => {
                session.handle(now, Event::Malformed(e));
                at = rx.len();
                break;
            }
        };
        let event = match codec::decode(&rest[..len], session.options()) {
            Ok(m) => Event::Message(m),
            Err(e) => Event::Malformed(e),
        };
        at += len;
        fed += 1;
        session.handle(now, event);
    }
    rx.drain(..at);
    fed
}

/// Appends a message to what goes out on `conn`: to the last [`Output::Send`] when it is
/// for the same connection, so the driver writes a run of messages at once.
fn emit(outputs: &mut VecDeque<Output>, conn: ConnId, message: &Message, options: codec::Options) {
    if let Some(Output::Send(c, bytes)) = outputs.back_mut()
        && *c == conn
    {
        // Our own messages are packed to fit; one that cannot be encoded is dropped.
        let _ = codec::encode(message, options, bytes);
        return;
    }
    let mut bytes = Vec::new();
    if codec::encode(message, options, &mut bytes).is_ok() {
        outputs.push_back(Output::Send(conn, bytes));
    }
}

#[cfg(test)]
mod tests;
