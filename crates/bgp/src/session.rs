//! The BGP session state machine (RFC 4271 section 8), sans-IO.
//!
//! ```text
//!  Idle ─Start─► Connect ─TcpConnected─► OpenSent ─OPEN─► OpenConfirm ─KEEPALIVE─► Established
//!    ▲   (passive: Active)                   │                 │                       │
//!    └──────────── any error: NOTIFICATION, Disconnect, Idle (ConnectRetry timer) ───────┘
//! ```
//!
//! The driver owns the TCP connection and the clock: it feeds [`Event`]s in with `now`,
//! takes [`Action`]s out ([`Session::poll_action`]), and calls [`Session::poll`] at
//! [`Session::poll_at`]. Messages are decoded by the driver with the session's
//! [`Session::options`]; decode errors come in as [`Event::Malformed`], and the session
//! answers with the NOTIFICATION.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::codec::{
    self, AS_TRANS, Capability, GracefulRestart, Message, Notification, Open, Options, Update,
};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub local_as: u32,
    pub bgp_id: Ipv4Addr,
    /// The AS the peer must announce.
    pub peer_as: u32,
    /// Hold time we propose (RFC 4271: 0, or at least 3 seconds).
    pub hold_time: u16,
    /// ConnectRetry timer.
    pub connect_retry: Duration,
    /// Wait for the peer to connect instead of connecting.
    pub passive: bool,
    /// Address families to announce (AFI, SAFI).
    pub families: Vec<(u16, u8)>,
    /// Announce graceful restart with this restart time (RFC 4724).
    pub graceful_restart: Option<u16>,
}

impl Config {
    pub fn new(local_as: u32, bgp_id: Ipv4Addr, peer_as: u32) -> Config {
        Config {
            local_as,
            bgp_id,
            peer_as,
            hold_time: 90,
            connect_retry: Duration::from_secs(120),
            passive: false,
            families: vec![(codec::afi::IPV4, codec::SAFI_UNICAST)],
            graceful_restart: None,
        }
    }
}

/// RFC 4271 section 8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ManualStart (passive or not, as configured).
    Start,
    /// ManualStop: Cease / Administrative Shutdown, with this shutdown communication
    /// (RFC 8203; empty for none). The session stays down until the next Start.
    Stop(String),
    /// The TCP connection is up (either direction).
    TcpConnected,
    /// The TCP connection failed or closed.
    TcpClosed,
    /// A message arrived.
    Message(Message),
    /// Bytes arrived that do not make a message; the error is the NOTIFICATION to send.
    Malformed(codec::Error),
    /// BFD declared the neighbor unreachable (RFC 5882 section 3.2): the session ends
    /// now, without a NOTIFICATION the path could not carry.
    BfdDown,
}

/// What the session parameters came to when both OPENs were seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// The smaller of the two hold times; 0 means no keepalives and no hold timer.
    pub hold_time: u16,
    pub options: Options,
    /// Families both announced.
    pub families: Vec<(u16, u8)>,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, if any.
    pub peer_graceful_restart: Option<GracefulRestart>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the TCP connection.
    Disconnect,
    Send(Message),
    /// The session is up.
    Established(Negotiated),
    /// The session went down (routes learned from the peer are to be withdrawn, unless
    /// graceful restart keeps them).
    Down(DownReason),
    /// A NOTIFICATION ended the session before it was up (an OPEN refused, either way):
    /// nothing to withdraw, but the reason is worth telling.
    Refused(DownReason),
    /// An UPDATE for the RIB.
    Update(Update),
    /// The peer asks for our routes again (AFI, SAFI).
    RouteRefresh(u16, u8),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The connection went away without one.
    ConnectionLost,
    Stopped,
    /// BFD declared the neighbor down.
    BfdDown,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Sent(n) => write!(f, "sent {n}"),
            DownReason::Received(n) => write!(f, "received {n}"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::Stopped => f.write_str("stopped"),
            DownReason::BfdDown => f.write_str("BFD session down"),
        }
    }
}

/// A BGP session with one peer.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    negotiated: Option<Negotiated>,
    actions: VecDeque<Action>,
    connect_retry_at: Option<Duration>,
    hold_at: Option<Duration>,
    keepalive_at: Option<Duration>,
    /// Hold time while waiting for the peer's OPEN (RFC 4271: a large value, 4 minutes).
    open_hold: Duration,
    /// Not started, or stopped (ManualStop): a connection from the peer is refused.
    /// Otherwise an Idle session is only waiting to restart, and takes one at once.
    admin_down: bool,
}

const LARGE_HOLD: Duration = Duration::from_secs(240);

impl Session {
    pub fn new(config: Config) -> Session {
        Session {
            config,
            state: State::Idle,
            negotiated: None,
            actions: VecDeque::new(),
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            open_hold: LARGE_HOLD,
            admin_down: true,
        }
    }

    /// A session for a connection the peer opened while this side already had one
    /// (RFC 4271 section 6.8): in OpenSent, its OPEN queued. It keeps `config`, so if it
    /// survives the collision and later fails, it restarts as the configuration says.
    pub fn accepted(config: Config, now: Duration) -> Session {
        let mut session = Session::new(config);
        session.state = State::Active;
        session.admin_down = false;
        session.handle(now, Event::TcpConnected);
        session
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the session is administratively down (never started, or stopped): it
    /// neither connects nor accepts.
    pub fn admin_down(&self) -> bool {
        self.admin_down
    }

    /// The peer's BGP Identifier, once its OPEN has come in on this connection.
    pub fn peer_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.as_ref().map(|n| n.peer_id)
    }

    /// Closes this connection as the loser of a collision: Cease, Connection Collision
    /// Resolution (RFC 4486 subcode 7). The session goes Idle and stays there; the
    /// other connection carries on.
    pub fn close_collision(&mut self, now: Duration) {
        let n = Notification {
            code: 6,
            subcode: 7,
            data: Vec::new(),
        };
        self.actions
            .push_back(Action::Send(Message::Notification(n)));
        self.actions.push_back(Action::Disconnect);
        self.enter_idle(now);
        self.connect_retry_at = None;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// How to decode and encode messages on this session now.
    pub fn options(&self) -> Options {
        self.negotiated
            .as_ref()
            .map(|n| n.options)
            .unwrap_or_default()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::poll`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        [self.connect_retry_at, self.hold_at, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends an UPDATE; only in Established (else it is dropped and false returned).
    pub fn send_update(&mut self, now: Duration, update: Update) -> bool {
        if self.state != State::Established {
            return false;
        }
        self.send(now, Message::Update(update));
        true
    }

    fn send(&mut self, now: Duration, message: Message) {
        // Every message we send counts as a keepalive (RFC 4271 section 4.4).
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            self.keepalive_at = Some(now + keepalive_interval(n.hold_time));
        }
        self.actions.push_back(Action::Send(message));
    }

    fn open_message(&self) -> Open {
        let mut capabilities: Vec<Capability> = self
            .config
            .families
            .iter()
            .map(|(afi, safi)| Capability::Multiprotocol {
                afi: *afi,
                safi: *safi,
            })
            .collect();
        capabilities.push(Capability::RouteRefresh);
        if let Some(time) = self.config.graceful_restart {
            capabilities.push(Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                time,
                families: self
                    .config
                    .families
                    .iter()
                    .map(|(a, s)| (*a, *s, false))
                    .collect(),
            }));
        }
        capabilities.push(Capability::FourOctetAs(self.config.local_as));
        Open {
            version: 4,
            my_as: u16::try_from(self.config.local_as).unwrap_or(AS_TRANS),
            hold_time: self.config.hold_time,
            bgp_id: self.config.bgp_id,
            capabilities,
        }
    }

    /// Ends the session with a NOTIFICATION (if any): back to Idle, ConnectRetry armed.
    fn fail(&mut self, now: Duration, notification: Option<Notification>, reason: DownReason) {
        if let Some(n) = notification {
            self.actions
                .push_back(Action::Send(Message::Notification(n)));
        }
        self.actions.push_back(Action::Disconnect);
        if self.state == State::Established || self.negotiated.is_some() {
            self.actions.push_back(Action::Down(reason));
        } else if matches!(reason, DownReason::Sent(_) | DownReason::Received(_)) {
            self.actions.push_back(Action::Refused(reason));
        }
        self.enter_idle(now);
    }

    fn enter_idle(&mut self, now: Duration) {
        self.state = State::Idle;
        self.negotiated = None;
        self.hold_at = None;
        self.keepalive_at = None;
        self.connect_retry_at = Some(now + self.config.connect_retry);
    }

    fn fsm_error(&mut self, now: Duration) {
        let n = Notification {
            code: 5,
            subcode: fsm_subcode(self.state),
            data: Vec::new(),
        };
        self.fail(now, Some(n.clone()), DownReason::Sent(n));
    }

    /// Takes an event.
    pub fn handle(&mut self, now: Duration, event: Event) {
        match (self.state, event) {
            (State::Idle, Event::Start) => self.start(),
            (_, Event::Start) => {}
            (State::Idle, Event::Stop(_)) => {
                self.admin_down = true;
                self.connect_retry_at = None;
            }
            (_, Event::Stop(communication)) => {
                let n = Notification::cease(codec::cease::ADMINISTRATIVE_SHUTDOWN, &communication);
                self.fail(now, Some(n), DownReason::Stopped);
                // ManualStop: stay down.
                self.admin_down = true;
                self.connect_retry_at = None;
            }
            (State::Connect | State::Active, Event::TcpConnected) => self.open(now),
            (State::Idle, Event::TcpConnected) if self.admin_down => {
                // Not started, or stopped: refuse.
                self.actions.push_back(Action::Disconnect);
            }
            (State::Idle, Event::TcpConnected) => {
                // Idle only until the automatic restart: the peer is back first, which
                // is as good (RFC 4271 8.1.1, AutomaticStart with passive TCP
                // establishment). A neighbor that closed with a Cease and reconnects
                // gets its session at once.
                self.open(now);
            }
            (_, Event::TcpConnected) => {
                // A second connection while one is in progress belongs to a second
                // session ([`Session::accepted`]), settled by [`collision`]; a session
                // carries one connection.
                self.actions.push_back(Action::Disconnect);
            }
            (State::Idle | State::Connect | State::Active, Event::BfdDown) => {}
            (_, Event::BfdDown) => {
                self.actions.push_back(Action::Disconnect);
                if self.state == State::Established {
                    self.actions.push_back(Action::Down(DownReason::BfdDown));
                }
                self.enter_idle(now);
            }
            (State::Idle, Event::TcpClosed) => {}
            (State::Connect | State::Active, Event::TcpClosed) => {
                self.state = if self.config.passive {
                    State::Active
                } else {
                    State::Connect
                };
                self.connect_retry_at = Some(now + self.config.connect_retry);
            }
            (State::OpenSent, Event::TcpClosed) => {
                // RFC 4271 8.2.2, OpenSent: TcpConnectionFails closes the connection,
                // restarts the ConnectRetry timer, and goes to Active, where the peer's
                // own connection is still accepted. (Going Idle instead, two speakers
                // that each refuse the other while Idle could take turns forever.)
                self.actions.push_back(Action::Disconnect);
                self.state = State::Active;
                self.negotiated = None;
                self.hold_at = None;
                self.keepalive_at = None;
                self.connect_retry_at = Some(now + self.config.connect_retry);
            }
            (_, Event::TcpClosed) => {
                self.actions.push_back(Action::Disconnect);
                if self.state == State::Established {
                    self.actions
                        .push_back(Action::Down(DownReason::ConnectionLost));
                }
                self.enter_idle(now);
            }
            (
                State::Idle | State::Connect | State::Active,
                Event::Message(_) | Event::Malformed(_),
            ) => {}
            (_, Event::Malformed(e)) => {
                let n = e.notification;
                self.fail(now, Some(n.clone()), DownReason::Sent(n));
            }
            (_, Event::Message(Message::Notification(n))) => {
                self.actions.push_back(Action::Disconnect);
                if self.state == State::Established {
                    self.actions
                        .push_back(Action::Down(DownReason::Received(n)));
                } else {
                    // The peer refused the session (its OPEN checks, most often).
                    self.actions
                        .push_back(Action::Refused(DownReason::Received(n)));
                }
                self.enter_idle(now);
            }
            (State::OpenSent, Event::Message(Message::Open(open))) => self.receive_open(now, open),
            (State::OpenSent, Event::Message(_)) => self.fsm_error(now),
            (State::OpenConfirm, Event::Message(Message::Keepalive)) => {
                self.state = State::Established;
                self.restart_hold(now);
                if let Some(n) = self.negotiated.clone() {
                    self.actions.push_back(Action::Established(n));
                }
            }
            (State::OpenConfirm, Event::Message(_)) => self.fsm_error(now),
            (State::Established, Event::Message(message)) => {
                self.restart_hold(now);
                match message {
                    Message::Keepalive => {}
                    Message::Update(u) => self.actions.push_back(Action::Update(u)),
                    Message::RouteRefresh(r) => {
                        if self.negotiated.as_ref().is_some_and(|n| n.route_refresh)
                            && r.subtype == 0
                        {
                            self.actions.push_back(Action::RouteRefresh(r.afi, r.safi));
                        }
                    }
                    Message::Open(_) | Message::Notification(_) => self.fsm_error(now),
                }
            }
        }
    }

    /// The connection is up: our OPEN goes out (OpenSent).
    fn open(&mut self, now: Duration) {
        self.connect_retry_at = None;
        let open = self.open_message();
        self.actions.push_back(Action::Send(Message::Open(open)));
        self.state = State::OpenSent;
        self.hold_at = Some(now + self.open_hold);
    }

    fn start(&mut self) {
        self.admin_down = false;
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            self.actions.push_back(Action::Connect);
        }
    }

    fn receive_open(&mut self, now: Duration, open: Open) {
        let peer_as = open.asn();
        // RFC 7607: AS 0 is never a peer's AS (nor ours to expect).
        if peer_as != self.config.peer_as || peer_as == 0 {
            let n = Notification {
                code: 2,
                subcode: 2,
                data: open.my_as.to_be_bytes().to_vec(),
            };
            self.fail(now, Some(n.clone()), DownReason::Sent(n));
            return;
        }
        if open.bgp_id == self.config.bgp_id {
            let n = Notification {
                code: 2,
                subcode: 3,
                data: Vec::new(),
            };
            self.fail(now, Some(n.clone()), DownReason::Sent(n));
            return;
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        let peer_four = open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)));
        let peer_families: Vec<(u16, u8)> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
                _ => None,
            })
            .collect();
        // A peer that announces no multiprotocol capability speaks IPv4 unicast only.
        let families = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| {
                peer_families.contains(f)
                    || (peer_families.is_empty() && *f == (codec::afi::IPV4, codec::SAFI_UNICAST))
            })
            .collect();
        self.negotiated = Some(Negotiated {
            peer_as,
            peer_id: open.bgp_id,
            hold_time,
            options: Options {
                four_octet_as: peer_four,
                external: peer_as != self.config.local_as,
            },
            families,
            route_refresh: open.capabilities.iter().any(|c| {
                matches!(
                    c,
                    Capability::RouteRefresh | Capability::EnhancedRouteRefresh
                )
            }),
            peer_graceful_restart: open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(g) => Some(g.clone()),
                _ => None,
            }),
        });
        self.state = State::OpenConfirm;
        self.send(now, Message::Keepalive);
        self.restart_hold(now);
    }

    /// Restarts the negotiated hold timer (OpenConfirm and Established only; a hold time
    /// of 0 means none).
    fn restart_hold(&mut self, now: Duration) {
        self.hold_at = self
            .negotiated
            .as_ref()
            .filter(|n| n.hold_time != 0)
            .map(|n| now + Duration::from_secs(u64::from(n.hold_time)));
    }

    /// Runs timers due at `now`.
    pub fn poll(&mut self, now: Duration) {
        if self.hold_at.is_some_and(|t| t <= now) {
            let n = Notification {
                code: 4,
                subcode: 0,
                data: Vec::new(),
            };
            self.fail(now, Some(n.clone()), DownReason::Sent(n));
            return;
        }
        if self.keepalive_at.is_some_and(|t| t <= now)
            && matches!(self.state, State::OpenConfirm | State::Established)
        {
            self.send(now, Message::Keepalive);
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            match self.state {
                State::Idle => {
                    // Automatic restart after an error.
                    self.start();
                    if !self.config.passive {
                        self.connect_retry_at = Some(now + self.config.connect_retry);
                    }
                }
                // RFC 4271 8.2.2, Active: ConnectRetryTimer_Expires tries a connection
                // of our own again (a passive session only waits).
                State::Connect | State::Active if !self.config.passive => {
                    self.state = State::Connect;
                    self.actions.push_back(Action::Connect);
                    self.connect_retry_at = Some(now + self.config.connect_retry);
                }
                _ => {}
            }
        }
    }
}

/// Which of two connections to the same peer to close (RFC 4271 section 6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collision {
    /// Not decided yet: neither connection knows the peer's BGP Identifier.
    Wait,
    CloseFirst,
    CloseSecond,
}

/// One connection of a pair, as collision resolution sees it.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub session: &'a Session,
    /// Whether this side opened the TCP connection.
    pub opened_locally: bool,
}

/// Settles two connections to the same peer, `first` the older one.
///
/// An Established connection is kept and the other closed. Otherwise, once the peer's
/// BGP Identifier is known from an OPEN on either connection, the connection kept is
/// the one opened by the speaker with the higher Identifier, compared as unsigned
/// 32-bit integers; both speakers come to the same answer, so exactly one connection
/// survives. Two connections opened by the same side are settled in favour of the newer
/// one: a speaker opens a second connection only after giving up on the first.
pub fn collision(first: Connection<'_>, second: Connection<'_>) -> Collision {
    let established = |c: &Connection<'_>| c.session.state() == State::Established;
    if established(&first) {
        return Collision::CloseSecond;
    }
    if established(&second) {
        return Collision::CloseFirst;
    }
    if matches!(
        first.session.state(),
        State::Idle | State::Connect | State::Active
    ) {
        return Collision::CloseFirst;
    }
    if first.opened_locally == second.opened_locally {
        return Collision::CloseFirst;
    }
    let Some(remote_id) = first.session.peer_id().or(second.session.peer_id()) else {
        return Collision::Wait;
    };
    let local_wins = u32::from(first.session.config.bgp_id) > u32::from(remote_id);
    if first.opened_locally == local_wins {
        Collision::CloseSecond
    } else {
        Collision::CloseFirst
    }
}

fn keepalive_interval(hold: u16) -> Duration {
    Duration::from_secs(u64::from(hold / 3).max(1))
}

/// RFC 6608 subcodes of the FSM error: the state the unexpected message came in.
fn fsm_subcode(state: State) -> u8 {
    match state {
        State::OpenSent => 1,
        State::OpenConfirm => 2,
        State::Established => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
