//! The BGP speaker on a node: the lab's driver of [`strata_bgp::speaker::Speaker`] (the
//! same speaker `strata bgp run` drives on real sockets). It moves bytes between the
//! node's own TCP sockets (smoltcp, one per neighbor) and the speaker, tells it what the
//! node announces (configured networks, the Mux's healthy VIPs), and installs the best
//! paths it selects into the node's FIB.
//!
//! ```text
//!  smoltcp TCP socket ⇄ bytes ⇄ strata_bgp Speaker (sessions, RIBs, graceful restart)
//!                                   ├─ best paths changed → FIB (multipath)
//!                                   └─ wanted prefixes (networks, healthy VIPs) → announced
//!  smoltcp UDP 3784  ⇄ packets ⇄ strata_bgp::bfd Session per neighbor ─ down → bfd_down
//! ```
//!
//! A neighbor with BFD has a BFD session beside its BGP session (RFC 5881, single hop:
//! Control packets to UDP port 3784, sent with TTL 255 from a source port of
//! 49152–65535). When BFD declares the neighbor down, the BGP session ends at once and
//! its routes leave the FIB (RFC 5882). BFD runs on its own: a BGP session stopped or
//! restarted leaves it up, as a forwarding plane that outlives its control plane.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};
use strata_bgp::bfd;
use strata_bgp::session::{Config, DownReason, State};
use strata_bgp::speaker::{self, ConnId, Output, PeerConfig, PeerId};
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
    /// Run BFD with the neighbor, with these timers.
    pub bfd: Option<bfd::Config>,
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
    /// The timers of neighbors added while running (the network controller's API names
    /// only a peer's address and AS).
    pub added: AddedNeighbors,
}

/// The timers of neighbors added while running: local policy, as a router's peer
/// template would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddedNeighbors {
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Run BFD with each, with these timers.
    pub bfd: Option<bfd::Config>,
}

impl Default for AddedNeighbors {
    /// RFC 4271's suggested hold time, a 5 s connect retry, no BFD.
    fn default() -> AddedNeighbors {
        AddedNeighbors {
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            bfd: None,
        }
    }
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
    /// The BFD session's state, for a neighbor with BFD.
    pub bfd: Option<bfd::State>,
}

/// A neighbor's socket and the connection the speaker knows it by.
#[derive(Debug)]
struct Link {
    /// The neighbor's index.
    peer: usize,
    /// This socket waits for the neighbor's connection (a passive neighbor has only
    /// such a link; an active one has one of each, so that two speakers that both
    /// connect meet, and the speaker settles the collision, RFC 4271 section 6.8).
    listen: bool,
    socket: SocketHandle,
    conn: Option<ConnId>,
    /// A connect the speaker asked for is in progress.
    connecting: bool,
    /// Bytes the socket has not taken yet.
    tx: Vec<u8>,
}

impl Link {
    fn new(peer: usize, listen: bool, sockets: &mut SocketSet<'static>) -> Link {
        Link {
            peer,
            listen,
            socket: super::message_socket(sockets, 64 * 1024),
            conn: None,
            connecting: false,
            tx: Vec::new(),
        }
    }

    /// A neighbor's links: one that listens, and one that connects unless it is passive.
    fn for_neighbor(peer: usize, passive: bool, sockets: &mut SocketSet<'static>) -> Vec<Link> {
        let mut v = vec![Link::new(peer, true, sockets)];
        if !passive {
            v.push(Link::new(peer, false, sockets));
        }
        v
    }
}

/// The BGP speaker of a node.
#[derive(Debug)]
pub struct Speaker {
    config: BgpConfig,
    core: speaker::Speaker,
    links: Vec<Link>,
    /// What the node announces now (so changes to `wanted` become announcements and
    /// withdrawals).
    announced: BTreeSet<Ipv4Net>,
    started: bool,
    /// When a crashed speaker's sessions start again.
    restart_at: Option<Duration>,
    /// BFD, when a neighbor has it.
    bfd: Option<Bfd>,
    /// By neighbor index: removed while running (their indexes are not reused).
    removed: Vec<bool>,
}

/// The node's BFD sessions: one socket receives on port 3784, each session sends from
/// its own.
#[derive(Debug)]
struct Bfd {
    rx: SocketHandle,
    /// By neighbor index: the session and the socket it sends from.
    sessions: Vec<Option<(bfd::Session, SocketHandle)>>,
    /// Packets that did not parse or matched no session.
    dropped: u64,
}

fn udp_socket(sockets: &mut SocketSet<'static>, port: u16) -> SocketHandle {
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 1024]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 1024]);
    let mut socket = udp::Socket::new(rx, tx);
    socket.set_hop_limit(Some(bfd::TTL));
    // Binding a fresh socket to a non-zero port cannot fail.
    let _ = socket.bind(port);
    sockets.add(socket)
}

impl Bfd {
    fn new(neighbors: &[NeighborConfig], sockets: &mut SocketSet<'static>) -> Option<Bfd> {
        if neighbors.iter().all(|n| n.bfd.is_none()) {
            return None;
        }
        let sessions = neighbors
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let config = n.bfd?;
                // Discriminators only need to be unique on this node.
                let session = bfd::Session::new(config, i as u32 + 1, Duration::ZERO);
                Some((session, udp_socket(sockets, 49152 + i as u16)))
            })
            .collect();
        Some(Bfd {
            rx: udp_socket(sockets, bfd::PORT),
            sessions,
            dropped: 0,
        })
    }

    /// No session yet for any of the `neighbors` there are.
    fn empty(neighbors: usize, sockets: &mut SocketSet<'static>) -> Bfd {
        Bfd {
            rx: udp_socket(sockets, bfd::PORT),
            sessions: (0..neighbors).map(|_| None).collect(),
            dropped: 0,
        }
    }

    /// A session for neighbor `i`, the last added.
    fn add(
        &mut self,
        i: usize,
        config: Option<bfd::Config>,
        now: Duration,
        sockets: &mut SocketSet<'static>,
    ) {
        debug_assert_eq!(self.sessions.len(), i);
        self.sessions.push(config.map(|config| {
            (
                bfd::Session::new(config, i as u32 + 1, now),
                udp_socket(sockets, 49152 + i as u16),
            )
        }));
    }

    /// Takes what arrived, runs the timers, sends what is due; returns the neighbors
    /// BFD declared down.
    fn poll(
        &mut self,
        now: Duration,
        neighbors: &[NeighborConfig],
        sockets: &mut SocketSet<'static>,
    ) -> (bool, Vec<PeerId>) {
        let mut progressed = false;
        let rx = sockets.get_mut::<udp::Socket>(self.rx);
        let mut buf = [0u8; 64];
        while let Ok((n, meta)) = rx.recv_slice(&mut buf) {
            progressed = true;
            let from = meta.endpoint.addr;
            let Ok(packet) = bfd::Packet::parse(&buf[..n]) else {
                self.dropped += 1;
                continue;
            };
            let session = self.sessions.iter_mut().enumerate().find_map(|(i, s)| {
                let (s, _) = s.as_mut()?;
                let ours = if packet.your_discriminator != 0 {
                    s.local_discriminator() == packet.your_discriminator
                } else {
                    from == IpAddress::Ipv4(neighbors[i].address)
                };
                ours.then_some(s)
            });
            if session.is_none_or(|s| s.receive(&packet, now).is_err()) {
                self.dropped += 1;
            }
        }
        let mut down = Vec::new();
        for (i, entry) in self.sessions.iter_mut().enumerate() {
            let Some((session, tx)) = entry else { continue };
            session.poll(now);
            let socket = sockets.get_mut::<udp::Socket>(*tx);
            let to = IpEndpoint::new(IpAddress::Ipv4(neighbors[i].address), bfd::PORT);
            while let Some(packet) = session.poll_transmit(now) {
                // A full queue loses the packet, as a busy link would.
                let _ = socket.send_slice(&packet.emit(), to);
                progressed = true;
            }
            while let Some(change) = session.poll_change() {
                if let bfd::Change::Down(_) = change {
                    down.push(PeerId(i));
                }
            }
        }
        (progressed, down)
    }

    fn poll_at(&self) -> Option<Duration> {
        self.sessions
            .iter()
            .flatten()
            .filter_map(|(s, _)| s.poll_at())
            .min()
    }

    fn state(&self, i: usize) -> Option<bfd::State> {
        self.sessions.get(i)?.as_ref().map(|(s, _)| s.state())
    }
}

impl Speaker {
    pub(crate) fn new(config: BgpConfig, sockets: &mut SocketSet<'static>) -> Speaker {
        let peers = config
            .neighbors
            .iter()
            .map(|n| {
                let mut c = Config::new(config.asn, config.router_id, n.asn);
                c.passive = n.passive;
                c.hold_time = n.hold_time;
                c.connect_retry = n.connect_retry;
                c.graceful_restart = Some(120);
                PeerConfig {
                    address: IpAddr::V4(n.address),
                    // Our address toward the neighbor, known once the router is: see
                    // `poll`.
                    local_address: config.router_id,
                    session: c,
                }
            })
            .collect();
        let mut core = speaker::Speaker::new(config.asn, None, peers);
        core.record_changes();
        let mut links = Vec::new();
        for (i, n) in config.neighbors.iter().enumerate() {
            links.extend(Link::for_neighbor(i, n.passive, sockets));
        }
        Speaker {
            bfd: Bfd::new(&config.neighbors, sockets),
            removed: vec![false; config.neighbors.len()],
            config,
            core,
            links,
            announced: BTreeSet::new(),
            started: false,
            restart_at: None,
        }
    }

    /// Neighbors and their routes.
    pub fn status(&self) -> Vec<NeighborStatus> {
        // The speaker lists the neighbors not removed, each with its index.
        self.core
            .peers()
            .filter_map(|p| {
                let i = p.id.0;
                Some((i, p, self.config.neighbors.get(i)?))
            })
            .map(|(i, p, n)| NeighborStatus {
                address: n.address,
                asn: n.asn,
                state: p.state,
                received: p
                    .received
                    .iter()
                    .filter_map(|(prefix, path)| match (prefix, path.next_hop) {
                        (IpNet::V4(prefix), IpAddr::V4(hop)) => Some((prefix, hop)),
                        _ => None,
                    })
                    .collect(),
                advertised: p
                    .sent
                    .iter()
                    .filter_map(|(prefix, _)| match prefix {
                        IpNet::V4(prefix) => Some(prefix),
                        IpNet::V6(_) => None,
                    })
                    .collect(),
                last_down: p.last_down.map(DownReason::to_string),
                bfd: self.bfd.as_ref().and_then(|b| b.state(i)),
            })
            .collect()
    }

    /// Runs the sessions: starts them, moves bytes, runs timers, announces what is
    /// `wanted` now (`None`: what was wanted before), installs what changed. Returns
    /// whether anything moved.
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        router: &mut Router,
        wanted: Option<&BTreeSet<Ipv4Net>>,
        port: &mut dyn FnMut() -> u16,
    ) -> bool {
        let mut progressed = false;
        if !self.started {
            self.started = true;
            for (i, n) in self.config.neighbors.iter().enumerate() {
                if let Some(local) = local_for(n.address, router) {
                    self.core.set_local_address(PeerId(i), local);
                }
            }
            self.core.start(now);
        }
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            self.core.start(now);
        }
        // By neighbor index (the speaker lists only the neighbors not removed).
        let mut listening = vec![false; self.config.neighbors.len()];
        for p in self.core.peers() {
            if let Some(l) = listening.get_mut(p.id.0) {
                *l = !p.admin_down;
            }
        }
        for li in 0..self.links.len() {
            let i = self.links[li].peer;
            if self.removed[i] {
                // A removed neighbor's listening socket must not take anyone's SYNs.
                let link = &self.links[li];
                let socket = sockets.get_mut::<tcp::Socket>(link.socket);
                if link.conn.is_none() && socket.state() == tcp::State::Listen {
                    socket.abort();
                }
                continue;
            }
            let peer = PeerId(i);
            let address = IpAddress::Ipv4(self.config.neighbors[i].address);
            let link = &mut self.links[li];
            let socket = sockets.get_mut::<tcp::Socket>(link.socket);
            // A listening link listens whenever it has no connection and its session is
            // not administratively down (an Idle one waiting to restart takes a
            // reconnecting neighbor at once).
            if link.listen && !socket.is_open() && link.conn.is_none() && listening[i] {
                let _ = socket.listen(PORT);
            }
            let up = socket.may_send() && socket.may_recv();
            if up && link.conn.is_none() {
                let remote = socket.remote_endpoint().map(|e| e.addr);
                if remote != Some(address) {
                    // Every listening socket waits on port 179: another neighbor's
                    // connection may reach this one. It goes to that neighbor's
                    // listening link, whose idle socket this link takes over.
                    let removed = &self.removed;
                    let neighbors = &self.config.neighbors;
                    let other = self.links.iter().position(|l| {
                        l.listen
                            && l.conn.is_none()
                            && !removed[l.peer]
                            && remote == Some(IpAddress::Ipv4(neighbors[l.peer].address))
                    });
                    match other {
                        Some(o) if o != li => {
                            tracing::debug!(
                                from = ?remote,
                                "a BGP connection reached another neighbor's listening socket: handed over"
                            );
                            let mine = self.links[li].socket;
                            self.links[li].socket = self.links[o].socket;
                            self.links[o].socket = mine;
                        }
                        _ => sockets
                            .get_mut::<tcp::Socket>(self.links[li].socket)
                            .abort(),
                    }
                    progressed = true;
                    continue;
                }
                let opened_locally = std::mem::take(&mut link.connecting);
                match self.core.connected(peer, opened_locally, now) {
                    Some(conn) => link.conn = Some(conn),
                    None => socket.abort(),
                }
                progressed = true;
            } else if link.connecting && !socket.is_open() {
                link.connecting = false;
                self.core.connect_failed(peer, now);
                progressed = true;
            } else if let Some(conn) = link.conn
                && !socket.is_active()
            {
                link.conn = None;
                link.tx.clear();
                self.core.closed(conn, now);
                progressed = true;
            } else if link.conn.is_some() && !socket.may_recv() {
                // The peer closed its side.
                socket.close();
            }
            if let Some(conn) = link.conn {
                let mut chunk = [0u8; 4096];
                while let Ok(k) = socket.recv_slice(&mut chunk) {
                    if k == 0 {
                        break;
                    }
                    self.core.received(conn, &chunk[..k], now);
                    progressed = true;
                }
            }
        }
        if let Some(bfd) = self.bfd.as_mut() {
            let (moved, down) = bfd.poll(now, &self.config.neighbors, sockets);
            progressed |= moved;
            for peer in down {
                self.core.bfd_down(peer, now);
            }
        }
        self.core.poll(now);
        // Our routes: announce what is wanted and not yet announced, withdraw the rest.
        if let Some(wanted) = wanted {
            let add: Vec<IpNet> = wanted
                .difference(&self.announced)
                .map(|p| IpNet::V4(*p))
                .collect();
            let remove: Vec<Ipv4Net> = self.announced.difference(wanted).copied().collect();
            if !add.is_empty() {
                // Unspecified: our own address toward each neighbor.
                self.core
                    .announce_all(&add, IpAddr::V4(Ipv4Addr::UNSPECIFIED), now);
            }
            for p in remove {
                self.core.withdraw(IpNet::V4(p), now);
            }
            self.announced.clone_from(wanted);
        }
        while let Some(output) = self.core.poll_output() {
            progressed = true;
            self.carry_out(output, cx, sockets, router, port);
        }
        for link in &mut self.links {
            let socket = sockets.get_mut::<tcp::Socket>(link.socket);
            if !link.tx.is_empty() && socket.can_send() {
                flush(&mut link.tx, socket);
                progressed = true;
            }
        }
        for prefix in self.core.take_changed() {
            self.select(router, prefix);
        }
        progressed
    }

    /// Does what the speaker asks.
    fn carry_out(
        &mut self,
        output: Output,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        router: &Router,
        port: &mut dyn FnMut() -> u16,
    ) {
        let by_conn =
            |links: &mut [Link], conn: ConnId| links.iter_mut().position(|l| l.conn == Some(conn));
        match output {
            Output::Connect(peer) => {
                let address = self.config.neighbors[peer.0].address;
                // The neighbor's connecting link (a passive one has none; it never
                // connects, but its listening link would do).
                let Some(li) = self
                    .links
                    .iter()
                    .position(|l| l.peer == peer.0 && !l.listen)
                    .or_else(|| self.links.iter().position(|l| l.peer == peer.0))
                else {
                    return;
                };
                let link = &mut self.links[li];
                let socket = sockets.get_mut::<tcp::Socket>(link.socket);
                socket.abort();
                if let Some(local) = local_for(address, router) {
                    let remote = IpEndpoint::new(IpAddress::Ipv4(address), PORT);
                    link.connecting = socket
                        .connect(cx, remote, (IpAddress::Ipv4(local), port()))
                        .is_ok();
                }
            }
            Output::Send(conn, bytes) => {
                if let Some(i) = by_conn(&mut self.links, conn) {
                    self.links[i].tx.extend_from_slice(&bytes);
                }
            }
            Output::Close(conn) => {
                if let Some(i) = by_conn(&mut self.links, conn) {
                    let link = &mut self.links[i];
                    let socket = sockets.get_mut::<tcp::Socket>(link.socket);
                    flush(&mut link.tx, socket);
                    socket.close();
                    link.conn = None;
                }
            }
            Output::Established(_) | Output::Down(..) => {}
        }
    }

    /// Installs the best paths to a prefix into the FIB: every path that ties with the
    /// best one (multipath) as an equal-cost next hop. A node installs nothing it
    /// announces itself, and nothing at all unless configured to; the lab's routers
    /// forward IPv4 only.
    fn select(&self, router: &mut Router, prefix: IpNet) {
        let IpNet::V4(v4) = prefix else {
            return;
        };
        if !self.config.install_routes {
            return;
        }
        let next_hops: Vec<Ipv4Addr> = if self.core.originated().get(&prefix).is_some() {
            Vec::new()
        } else {
            self.core
                .next_hops(&prefix)
                .into_iter()
                .filter_map(|hop| match hop {
                    IpAddr::V4(hop) => Some(hop),
                    IpAddr::V6(_) => None,
                })
                .collect()
        };
        if next_hops.is_empty() {
            router.uninstall(v4, RouteOrigin::Bgp);
        } else {
            // A connected or static route to the prefix wins over ours: install says false.
            router.install(v4, &next_hops, RouteOrigin::Bgp);
        }
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        [
            self.core.poll_at(),
            self.restart_at,
            self.bfd.as_ref().and_then(Bfd::poll_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Restarts every session abruptly, as a crashed and restarted speaker would: the TCP
    /// connections are reset without a NOTIFICATION, what was learned is forgotten, and
    /// the sessions start again a second later.
    pub(crate) fn restart(&mut self, now: Duration, sockets: &mut SocketSet<'static>) {
        for link in &mut self.links {
            sockets.get_mut::<tcp::Socket>(link.socket).abort();
            link.conn = None;
            link.connecting = false;
            link.tx.clear();
        }
        self.core.reset(now);
        // The connections are gone already: what the reset asks the driver to close is.
        while self.core.poll_output().is_some() {}
        self.restart_at = Some(now + Duration::from_secs(1));
    }

    /// Stops every session (Cease / Administrative Shutdown), as on a clean shutdown.
    pub(crate) fn stop(&mut self, now: Duration) {
        self.core.stop(now, "the node is shutting down");
    }

    /// Makes the neighbors those of `wanted` (address, AS), as the controller's
    /// routerConfiguration says: the others are removed (Cease / Administrative
    /// Shutdown, RFC 8203), the missing ones added (active, default timers); those that
    /// stay keep their sessions. Returns whether anything changed; a different local AS
    /// is refused (the speaker would have to restart).
    pub(crate) fn set_neighbors(
        &mut self,
        asn: u32,
        wanted: &[(Ipv4Addr, u32)],
        now: Duration,
        sockets: &mut SocketSet<'static>,
        router: &Router,
    ) -> Result<bool, String> {
        if asn != self.config.asn {
            return Err(format!(
                "local AS {asn}: the speaker runs as AS {}; changing it needs a restart",
                self.config.asn
            ));
        }
        let mut changed = false;
        for i in 0..self.config.neighbors.len() {
            let n = &self.config.neighbors[i];
            if self.removed[i] || wanted.contains(&(n.address, n.asn)) {
                continue;
            }
            self.core
                .remove_peer(PeerId(i), "neighbor removed by the network controller", now);
            self.removed[i] = true;
            if let Some(session) = self.bfd.as_mut().and_then(|b| b.sessions.get_mut(i)) {
                *session = None;
            }
            changed = true;
        }
        for &(address, peer_asn) in wanted {
            let present = self
                .config
                .neighbors
                .iter()
                .zip(&self.removed)
                .any(|(n, removed)| !removed && n.address == address && n.asn == peer_asn);
            if present {
                continue;
            }
            let added = self.config.added;
            let n = NeighborConfig {
                address,
                asn: peer_asn,
                passive: false,
                hold_time: added.hold_time,
                connect_retry: added.connect_retry,
                bfd: added.bfd,
            };
            if n.bfd.is_some() && self.bfd.is_none() {
                self.bfd = Some(Bfd::empty(self.config.neighbors.len(), sockets));
            }
            let mut c = Config::new(self.config.asn, self.config.router_id, n.asn);
            c.hold_time = n.hold_time;
            c.connect_retry = n.connect_retry;
            c.graceful_restart = Some(120);
            let local_address = local_for(address, router).unwrap_or(self.config.router_id);
            let id = self.core.add_peer(
                PeerConfig {
                    address: IpAddr::V4(address),
                    local_address,
                    session: c,
                },
                now,
            );
            debug_assert_eq!(id.0, self.config.neighbors.len());
            self.config.neighbors.push(n);
            self.removed.push(false);
            self.links.extend(Link::for_neighbor(id.0, false, sockets));
            if let Some(bfd) = self.bfd.as_mut() {
                bfd.add(id.0, added.bfd, now, sockets);
            }
            changed = true;
        }
        Ok(changed)
    }

    pub(crate) fn wants_vips(&self) -> bool {
        self.config.announce_vips
    }

    pub(crate) fn networks(&self) -> &[Ipv4Net] {
        &self.config.networks
    }
}

/// The node's address on the network `peer` is on.
fn local_for(peer: Ipv4Addr, router: &Router) -> Option<Ipv4Addr> {
    router
        .interfaces()
        .iter()
        .find(|i| i.addr.contains(&peer))
        .map(|i| i.addr.addr())
}

/// Writes as much of `tx` as the socket takes.
fn flush(tx: &mut Vec<u8>, socket: &mut tcp::Socket<'static>) {
    if let Ok(n) = socket.send_slice(tx) {
        tx.drain(..n);
    }
}
