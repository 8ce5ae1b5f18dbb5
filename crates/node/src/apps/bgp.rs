//! The BGP speaker on a node: sessions over the node's own TCP (smoltcp), routes learned
//! into the node's FIB, routes announced from configuration or from the node's Mux.
//!
//! ```text
//!  smoltcp TCP socket ⇄ bytes ⇄ codec (framing, decode/encode) ⇄ Session (FSM) ⇄ actions
//!                                                                     ├─ Update → FIB
//!                                                                     └─ Established → our routes
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use strata_bgp::codec::{self, AsPath, Attribute, Origin, Update};
use strata_bgp::rib::{self, AdjRibIn};
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
    received: AdjRibIn,
    advertised: BTreeSet<Ipv4Net>,
    last_down: Option<String>,
    /// The neighbor's graceful restart time, from its OPEN (RFC 4724).
    peer_restart_time: Option<u16>,
    /// Routes kept from a neighbor that is restarting, until it re-announces them and sends
    /// End-of-RIB, or until `stale_until`.
    stale: BTreeSet<IpNet>,
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
    pending: BTreeSet<IpNet>,
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
                    received: AdjRibIn::new(),
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
                    .filter_map(|(p, path)| match (p, path.next_hop) {
                        (IpNet::V4(p), IpAddr::V4(hop)) => Some((p, hop)),
                        _ => None,
                    })
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
        let mut changed: BTreeSet<IpNet> = std::mem::take(&mut self.pending);
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
            while let Some(message) = codec::take_message(&mut n.rx, n.session.options()) {
                let event = match message {
                    Ok(m) => Event::Message(m),
                    Err(e) => Event::Malformed(e),
                };
                n.session.handle(now, event);
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
                            for p in n.received.apply(&u, self.config.asn) {
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
                                n.stale = n.received.iter().map(|(p, _)| p).collect();
                                n.stale_until = Some(now + Duration::from_secs(u64::from(time)));
                            }
                            _ => {
                                changed.extend(n.received.clear());
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
    /// next hop. The lab's routers forward IPv4 only; IPv6 routes stay in the RIB.
    fn select(&self, router: &mut Router, prefix: IpNet) {
        let IpNet::V4(prefix) = prefix else {
            return;
        };
        let next_hops: Vec<Ipv4Addr> =
            rib::best_next_hops(self.neighbors.iter().map(|n| &n.received), &prefix.into())
                .into_iter()
                .filter_map(|hop| match hop {
                    IpAddr::V4(hop) => Some(hop),
                    IpAddr::V6(_) => None,
                })
                .collect();
        if next_hops.is_empty() {
            router.uninstall(prefix, RouteOrigin::Bgp);
        } else {
            // A connected or static route to the prefix wins over ours: install says false.
            router.install(prefix, &next_hops, RouteOrigin::Bgp);
        }
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
            self.pending.extend(n.received.clear());
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
