//! The BGP speaker on a node: sessions over the node's own TCP (smoltcp), routes learned
//! into the node's FIB, routes announced from configuration or from the node's Mux.
//!
//! ```text
//!  smoltcp TCP socket ⇄ bytes ⇄ codec (framing, decode/encode) ⇄ Session (FSM) ⇄ actions
//!                                                                     ├─ Update → FIB
//!                                                                     └─ Established → our routes
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use strata_bgp::codec::{self, AsPath, Attribute, Origin, Update};
use strata_bgp::session::{Action, Config, DownReason, Event, Session, State};
use strata_router::Origin as RouteOrigin;
use strata_router::Router;

/// The BGP port.
pub const PORT: u16 = 179;

/// A BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: Ipv4Addr,
    pub asn: u32,
    /// Wait for the neighbor to connect.
    pub passive: bool,
    pub hold_time: u16,
    pub connect_retry: Duration,
}

/// The node's BGP configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<NeighborConfig>,
    /// Prefixes always announced.
    pub networks: Vec<Ipv4Net>,
    /// Announce each VIP of the node's Mux that has a healthy DIP, as a /32.
    pub announce_vips: bool,
    /// Install what neighbors announce into the FIB.
    pub install_routes: bool,
}

/// One neighbor's state, for `show protocols`-style listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborStatus {
    pub address: Ipv4Addr,
    pub asn: u32,
    pub state: State,
    pub received: Vec<(Ipv4Net, Ipv4Addr)>,
    pub advertised: Vec<Ipv4Net>,
    pub last_down: Option<String>,
}

#[derive(Debug)]
struct Neighbor {
    config: NeighborConfig,
    session: Session,
    socket: SocketHandle,
    rx: Vec<u8>,
    tx: Vec<u8>,
    connected: bool,
    /// Adj-RIB-In.
    received: BTreeMap<Ipv4Net, Path>,
    advertised: BTreeSet<Ipv4Net>,
    last_down: Option<String>,
    /// The neighbor's graceful restart time, from its OPEN (RFC 4724).
    peer_restart_time: Option<u16>,
    /// Routes kept from a neighbor that is restarting, until it re-announces them and sends
    /// End-of-RIB, or until `stale_until`.
    stale: BTreeSet<Ipv4Net>,
    stale_until: Option<Duration>,
    /// Our End-of-RIB is due after the first announcements of a session.
    end_of_rib_due: bool,
    /// When a restarted session starts again.
    restart_at: Option<Duration>,
}

/// The BGP speaker of a node.
#[derive(Debug)]
pub struct Speaker {
    config: BgpConfig,
    neighbors: Vec<Neighbor>,
    next_hop: Ipv4Addr,
    started: bool,
    /// Prefixes whose best path must be chosen again at the next poll.
    pending: BTreeSet<Ipv4Net>,
}

impl Speaker {
    pub(crate) fn new(config: BgpConfig, sockets: &mut SocketSet<'static>) -> Speaker {
        let neighbors = config
            .neighbors
            .iter()
            .map(|n| {
                let mut c = Config::new(config.asn, config.router_id, n.asn);
                c.passive = n.passive;
                c.hold_time = n.hold_time;
                c.connect_retry = n.connect_retry;
                c.graceful_restart = Some(120);
                Neighbor {
                    config: n.clone(),
                    session: Session::new(c),
                    socket: super::tcp_socket(sockets, 64 * 1024),
                    rx: Vec::new(),
                    tx: Vec::new(),
                    connected: false,
                    received: BTreeMap::new(),
                    advertised: BTreeSet::new(),
                    last_down: None,
                    peer_restart_time: None,
                    stale: BTreeSet::new(),
                    stale_until: None,
                    end_of_rib_due: false,
                    restart_at: None,
                }
            })
            .collect();
        Speaker {
            next_hop: config.router_id,
            config,
            neighbors,
            started: false,
            pending: BTreeSet::new(),
        }
    }

    /// Neighbors and their routes.
    pub fn status(&self) -> Vec<NeighborStatus> {
        self.neighbors
            .iter()
            .map(|n| NeighborStatus {
                address: n.config.address,
                asn: n.config.asn,
                state: n.session.state(),
                received: n
                    .received
                    .iter()
                    .map(|(p, path)| (*p, path.next_hop))
                    .collect(),
                advertised: n.advertised.iter().copied().collect(),
                last_down: n.last_down.clone(),
            })
            .collect()
    }

    /// Runs the sessions: starts them, moves bytes, runs timers and actions. `wanted` is
    /// what the node announces now. Returns whether anything moved.
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        router: &mut Router,
        wanted: &BTreeSet<Ipv4Net>,
        port: &mut dyn FnMut() -> u16,
    ) -> bool {
        let mut progressed = false;
        let mut changed: BTreeSet<Ipv4Net> = std::mem::take(&mut self.pending);
        if !self.started {
            self.started = true;
            for n in &mut self.neighbors {
                n.session.handle(now, Event::Start);
            }
        }
        let local_for = |peer: Ipv4Addr, router: &Router| {
            router
                .interfaces()
                .iter()
                .find(|i| i.addr.contains(&peer))
                .map(|i| i.addr.addr())
        };
        for n in &mut self.neighbors {
            let socket = sockets.get_mut::<tcp::Socket>(n.socket);
            // A passive session listens whenever it has no connection.
            if n.config.passive && !socket.is_open() && n.session.state() != State::Idle {
                let _ = socket.listen(PORT);
            }
            // Connection state changes.
            let up = socket.may_send() && socket.may_recv();
            if up && !n.connected {
                let from_neighbor = socket
                    .remote_endpoint()
                    .is_some_and(|e| e.addr == IpAddress::Ipv4(n.config.address));
                if from_neighbor {
                    n.connected = true;
                    n.session.handle(now, Event::TcpConnected);
                } else {
                    socket.abort();
                }
                progressed = true;
            } else if n.connected && !socket.is_active() {
                n.connected = false;
                n.rx.clear();
                n.tx.clear();
                n.session.handle(now, Event::TcpClosed);
                progressed = true;
            } else if n.connected && !socket.may_recv() {
                // The peer closed its side.
                socket.close();
            }
            // Bytes in.
            let mut chunk = [0u8; 4096];
            while let Ok(k) = socket.recv_slice(&mut chunk) {
                if k == 0 {
                    break;
                }
                n.rx.extend_from_slice(&chunk[..k]);
                progressed = true;
            }
            loop {
                match codec::message_len(&n.rx) {
                    Ok(Some(len)) if n.rx.len() >= len => {
                        let event = match codec::decode(&n.rx[..len], n.session.options()) {
                            Ok(m) => Event::Message(m),
                            Err(e) => Event::Malformed(e),
                        };
                        n.rx.drain(..len);
                        n.session.handle(now, event);
                    }
                    Ok(_) => break,
                    Err(e) => {
                        n.rx.clear();
                        n.session.handle(now, Event::Malformed(e));
                        break;
                    }
                }
            }
            n.session.poll(now);
            if n.restart_at.is_some_and(|t| t <= now) {
                n.restart_at = None;
                n.session.handle(now, Event::Start);
            }
            if n.stale_until.is_some_and(|t| t <= now) {
                // The neighbor did not come back in time.
                for p in std::mem::take(&mut n.stale) {
                    n.received.remove(&p);
                    changed.insert(p);
                }
                n.stale_until = None;
            }
            // Actions.
            while let Some(action) = n.session.poll_action() {
                progressed = true;
                match action {
                    Action::Connect => {
                        let socket = sockets.get_mut::<tcp::Socket>(n.socket);
                        socket.abort();
                        if let Some(local) = local_for(n.config.address, router) {
                            let remote = IpEndpoint::new(IpAddress::Ipv4(n.config.address), PORT);
                            let _ = socket.connect(cx, remote, (IpAddress::Ipv4(local), port()));
                        }
                    }
                    Action::Disconnect => {
                        let socket = sockets.get_mut::<tcp::Socket>(n.socket);
                        flush(&mut n.tx, socket);
                        socket.close();
                        n.connected = false;
                    }
                    Action::Send(m) => {
                        // Encoding our own messages cannot exceed the limit with the routes
                        // a lab announces; a failure would drop just this message.
                        let _ = codec::encode(&m, n.session.options(), &mut n.tx);
                    }
                    Action::Established(negotiated) => {
                        n.advertised.clear();
                        n.last_down = None;
                        n.end_of_rib_due = true;
                        n.peer_restart_time = negotiated.peer_graceful_restart.map(|g| g.time);
                    }
                    Action::Update(u) => {
                        if self.config.install_routes {
                            for p in learn(&mut n.received, &u, self.config.asn) {
                                n.stale.remove(&p);
                                changed.insert(p);
                            }
                        }
                        if u.is_end_of_rib() == Some((codec::afi::IPV4, codec::SAFI_UNICAST)) {
                            // RFC 4724 4.2: what the restarted neighbor did not announce
                            // again is gone.
                            for p in std::mem::take(&mut n.stale) {
                                n.received.remove(&p);
                                changed.insert(p);
                            }
                            n.stale_until = None;
                        }
                    }
                    Action::Down(reason) => {
                        let reason_kind = if reason == DownReason::ConnectionLost {
                            Lost::Connection
                        } else {
                            Lost::Other
                        };
                        n.last_down = Some(match reason {
                            DownReason::Sent(x) => format!("sent {x}"),
                            DownReason::Received(x) => format!("received {x}"),
                            DownReason::ConnectionLost => "connection lost".into(),
                            DownReason::Stopped => "stopped".into(),
                        });
                        match (&reason_kind, n.peer_restart_time) {
                            // RFC 4724 4.2: the connection went away without a
                            // NOTIFICATION from a neighbor that can restart: keep its
                            // routes, stale, for its restart time.
                            (Lost::Connection, Some(time)) if time > 0 => {
                                n.stale = n.received.keys().copied().collect();
                                n.stale_until = Some(now + Duration::from_secs(u64::from(time)));
                            }
                            _ => {
                                changed.extend(std::mem::take(&mut n.received).into_keys());
                                n.stale.clear();
                                n.stale_until = None;
                            }
                        }
                        n.advertised.clear();
                    }
                    Action::RouteRefresh(..) => n.advertised.clear(),
                }
            }
            // Our routes: announce what is wanted and not yet sent, withdraw the rest.
            if n.session.state() == State::Established {
                let add: Vec<Ipv4Net> = wanted.difference(&n.advertised).copied().collect();
                let remove: Vec<Ipv4Net> = n.advertised.difference(wanted).copied().collect();
                if !add.is_empty() || !remove.is_empty() {
                    let mut update = Update {
                        withdrawn: remove.clone(),
                        ..Update::default()
                    };
                    if !add.is_empty() {
                        update.attributes = vec![
                            Attribute::Origin(Origin::Igp),
                            Attribute::AsPath(AsPath::sequence(vec![self.config.asn])),
                            Attribute::NextHop(
                                local_for(n.config.address, router).unwrap_or(self.next_hop),
                            ),
                        ];
                        update.nlri = add.clone();
                    }
                    n.session.send_update(now, update);
                    while let Some(Action::Send(m)) = n.session.poll_action() {
                        let _ = codec::encode(&m, n.session.options(), &mut n.tx);
                    }
                    n.advertised.extend(add);
                    for r in remove {
                        n.advertised.remove(&r);
                    }
                    progressed = true;
                }
                if n.end_of_rib_due {
                    n.end_of_rib_due = false;
                    n.session.send_update(
                        now,
                        Update::end_of_rib(codec::afi::IPV4, codec::SAFI_UNICAST),
                    );
                    while let Some(Action::Send(m)) = n.session.poll_action() {
                        let _ = codec::encode(&m, n.session.options(), &mut n.tx);
                    }
                    progressed = true;
                }
            }
            let socket = sockets.get_mut::<tcp::Socket>(n.socket);
            if !n.tx.is_empty() && socket.can_send() {
                flush(&mut n.tx, socket);
                progressed = true;
            }
        }
        for prefix in changed {
            self.select(router, prefix);
        }
        progressed
    }

    /// Best-path selection for one prefix over every neighbor's Adj-RIB-In (RFC 4271
    /// 9.1.2.2: higher LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower MED), with
    /// multipath: every path that ties with the best goes into the FIB as an equal-cost
    /// next hop.
    fn select(&self, router: &mut Router, prefix: Ipv4Net) {
        let paths: Vec<&Path> = self
            .neighbors
            .iter()
            .filter_map(|n| n.received.get(&prefix))
            .collect();
        let Some(best) = paths.iter().map(|p| p.rank()).min() else {
            router.uninstall(prefix, RouteOrigin::Bgp);
            return;
        };
        let mut next_hops: Vec<Ipv4Addr> = paths
            .iter()
            .filter(|p| p.rank() == best)
            .map(|p| p.next_hop)
            .collect();
        next_hops.sort();
        next_hops.dedup();
        // A connected or static route to the prefix wins over ours: install says false.
        router.install(prefix, &next_hops, RouteOrigin::Bgp);
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.neighbors
            .iter()
            .flat_map(|n| [n.session.poll_at(), n.stale_until, n.restart_at])
            .flatten()
            .min()
    }

    /// Restarts every session abruptly, as a crashed and restarted speaker would: the TCP
    /// connections are reset without a NOTIFICATION, what was learned is forgotten, and
    /// the sessions start again a second later.
    pub(crate) fn restart(&mut self, now: Duration, sockets: &mut SocketSet<'static>) {
        for n in &mut self.neighbors {
            sockets.get_mut::<tcp::Socket>(n.socket).abort();
            n.connected = false;
            n.rx.clear();
            n.tx.clear();
            self.pending
                .extend(std::mem::take(&mut n.received).into_keys());
            n.advertised.clear();
            n.stale.clear();
            n.stale_until = None;
            n.session = Session::new(n.session.config().clone());
            n.restart_at = Some(now + Duration::from_secs(1));
        }
    }

    /// Stops every session (Cease / Administrative Shutdown), as on a clean shutdown.
    pub(crate) fn stop(&mut self, now: Duration) {
        for n in &mut self.neighbors {
            n.session.handle(now, Event::Stop);
        }
    }

    pub(crate) fn wants_vips(&self) -> bool {
        self.config.announce_vips
    }

    pub(crate) fn networks(&self) -> &[Ipv4Net] {
        &self.config.networks
    }
}

/// How a session ended, for graceful restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// The connection went away without a NOTIFICATION.
    Connection,
    Other,
}

/// Writes as much of `tx` as the socket takes.
fn flush(tx: &mut Vec<u8>, socket: &mut tcp::Socket<'static>) {
    if let Ok(n) = socket.send_slice(tx) {
        tx.drain(..n);
    }
}

/// A path in an Adj-RIB-In: what best-path selection compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    next_hop: Ipv4Addr,
    local_pref: u32,
    as_path_len: usize,
    origin: u8,
    med: u32,
}

impl Path {
    /// Smaller is better.
    fn rank(&self) -> (std::cmp::Reverse<u32>, usize, u8, u32) {
        (
            std::cmp::Reverse(self.local_pref),
            self.as_path_len,
            self.origin,
            self.med,
        )
    }
}

/// Applies an UPDATE to an Adj-RIB-In; returns the prefixes that changed. A path through
/// `local_as` is a loop (RFC 4271 9.1.2): it is not kept, and replaces (so withdraws)
/// what the neighbor had sent for the prefix.
fn learn(rib: &mut BTreeMap<Ipv4Net, Path>, u: &Update, local_as: u32) -> Vec<Ipv4Net> {
    let mut changed = Vec::new();
    let withdraw: Vec<Ipv4Net> = if u.treat_as_withdraw.is_some() {
        // RFC 7606: everything the UPDATE announced is withdrawn.
        u.withdrawn.iter().chain(&u.nlri).copied().collect()
    } else {
        u.withdrawn.clone()
    };
    for p in withdraw {
        if rib.remove(&p).is_some() {
            changed.push(p);
        }
    }
    if u.treat_as_withdraw.is_some() {
        return changed;
    }
    let Some(Attribute::NextHop(next_hop)) = u.attribute(codec::attr::NEXT_HOP) else {
        return changed;
    };
    let path = Path {
        next_hop: *next_hop,
        // RFC 4271: LOCAL_PREF is absent from eBGP; 100 is the customary default.
        local_pref: match u.attribute(codec::attr::LOCAL_PREF) {
            Some(Attribute::LocalPref(v)) => *v,
            _ => 100,
        },
        as_path_len: match u.attribute(codec::attr::AS_PATH) {
            Some(Attribute::AsPath(p)) => p.len(),
            _ => 0,
        },
        origin: match u.attribute(codec::attr::ORIGIN) {
            Some(Attribute::Origin(o)) => *o as u8,
            _ => 2,
        },
        med: match u.attribute(codec::attr::MED) {
            Some(Attribute::Med(m)) => *m,
            _ => 0,
        },
    };
    let looped = matches!(u.attribute(codec::attr::AS_PATH), Some(Attribute::AsPath(a)) if a.segments.iter().any(|s| s.asns.contains(&local_as)));
    for p in &u.nlri {
        if looped {
            if rib.remove(p).is_some() {
                changed.push(*p);
            }
        } else {
            rib.insert(*p, path);
            changed.push(*p);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(path: Vec<u32>, prefix: &str) -> Update {
        Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(path)),
                Attribute::NextHop(Ipv4Addr::new(192, 168, 100, 20)),
            ],
            nlri: vec![prefix.parse().unwrap()],
            ..Update::default()
        }
    }

    #[test]
    fn paths_through_our_own_as_are_loops() {
        let mut rib = BTreeMap::new();
        assert_eq!(
            learn(&mut rib, &update(vec![64501], "192.168.133.74/32"), 64500).len(),
            1
        );
        assert_eq!(rib.len(), 1);
        // The same prefix back through us: dropped, and what the neighbor had is gone.
        learn(
            &mut rib,
            &update(vec![64501, 64500], "192.168.133.74/32"),
            64500,
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn treat_as_withdraw_removes_what_the_update_announced() {
        let mut rib = BTreeMap::new();
        learn(&mut rib, &update(vec![64501], "10.0.0.0/8"), 64500);
        let mut bad = update(vec![64501], "10.0.0.0/8");
        bad.treat_as_withdraw = Some(codec::AttributeError {
            code: 1,
            reason: "test",
        });
        assert_eq!(
            learn(&mut rib, &bad, 64500),
            vec!["10.0.0.0/8".parse::<Ipv4Net>().unwrap()]
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn best_path_prefers_local_pref_then_shorter_paths() {
        let a = Path {
            next_hop: Ipv4Addr::new(10, 0, 0, 1),
            local_pref: 100,
            as_path_len: 2,
            origin: 0,
            med: 0,
        };
        let b = Path {
            as_path_len: 1,
            ..a
        };
        let c = Path {
            local_pref: 200,
            as_path_len: 5,
            ..a
        };
        assert!(b.rank() < a.rank());
        assert!(c.rank() < b.rank());
    }
}
