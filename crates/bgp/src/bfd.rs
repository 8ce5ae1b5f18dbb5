//! Bidirectional Forwarding Detection (RFC 5880), asynchronous mode, single hop (RFC
//! 5881), sans-IO: what BGP uses to notice a dead neighbor in a fraction of a second
//! instead of a hold time (RFC 5882).
//!
//! ```text
//!            ┌────── remote Down ──────┐
//!            ▼                         │
//!   Down ─remote Down─► Init ─remote Init/Up─► Up
//!    │ ▲                  │                  │
//!    │ └─ detection time ─┴── remote Down, ──┘
//!    └─remote Init──────────► Up    detection time
//! ```
//!
//! [`Packet`] reads and writes the 24-octet Control packet (section 4.1). [`Session`] is
//! the state machine of section 6.8 with its timers: the driver feeds it packets with
//! [`Session::receive`], runs [`Session::poll`] at [`Session::poll_at`], and sends what
//! [`Session::poll_transmit`] gives (to UDP port 3784 with TTL 255; the driver drops
//! packets that arrive with another TTL, RFC 5881 section 5). While the session is not
//! Up it transmits no faster than once a second (section 6.8.3); when it comes up, a
//! Poll Sequence moves both sides to the configured intervals.
//!
//! Authentication (section 6.7) is not implemented: a packet with the A bit is
//! discarded, as the RFC says for a session without authentication.

use std::time::Duration;

/// The UDP port of single-hop BFD Control packets (RFC 5881 section 4).
pub const PORT: u16 = 3784;
/// The TTL (hop limit) single-hop packets are sent and must arrive with (RFC 5881 5).
pub const TTL: u8 = 255;
/// A Control packet without authentication.
pub const PACKET_LEN: usize = 24;
/// The slowest a session that is not Up may transmit at (RFC 5880 6.8.3).
const SLOW: Duration = Duration::from_secs(1);

/// Session states (RFC 5880 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// Diagnostic codes (RFC 5880 4.1): why the session last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diag {
    None = 0,
    DetectionTimeExpired = 1,
    EchoFailed = 2,
    NeighborSignaledDown = 3,
    ForwardingPlaneReset = 4,
    PathDown = 5,
    ConcatenatedPathDown = 6,
    AdministrativelyDown = 7,
    ReverseConcatenatedPathDown = 8,
}

impl Diag {
    fn from_bits(bits: u8) -> Diag {
        match bits & 0x1f {
            1 => Diag::DetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            _ => Diag::None,
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Diag::None => "no diagnostic",
            Diag::DetectionTimeExpired => "control detection time expired",
            Diag::EchoFailed => "echo function failed",
            Diag::NeighborSignaledDown => "neighbor signaled session down",
            Diag::ForwardingPlaneReset => "forwarding plane reset",
            Diag::PathDown => "path down",
            Diag::ConcatenatedPathDown => "concatenated path down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::ReverseConcatenatedPathDown => "reverse concatenated path down",
        })
    }
}

/// A BFD Control packet (RFC 5880 section 4.1), without authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub diag: Diag,
    pub state: State,
    /// P: the sender asks for a packet with F back.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub fin: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: demand mode (never set by us).
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
}

/// Why a received packet is discarded (RFC 5880 6.8.6; nothing is answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("shorter than a Control packet")]
    Short,
    #[error("version is not 1")]
    Version,
    #[error("length field is wrong")]
    Length,
    #[error("detect multiplier is 0")]
    DetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator is 0")]
    MyDiscriminator,
    #[error("your discriminator names no session of ours")]
    YourDiscriminator,
    #[error("your discriminator is 0 but the peer is neither Down nor AdminDown")]
    ZeroDiscriminator,
    #[error("authenticated, and this session has no authentication")]
    Authentication,
    #[error("arrived with a TTL other than 255")]
    Ttl,
}

impl Packet {
    /// Reads a Control packet; the checks of RFC 5880 6.8.6 that need no session.
    pub fn parse(b: &[u8]) -> Result<Packet, Discard> {
        let b: &[u8; PACKET_LEN] = b
            .get(..PACKET_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Discard::Short)?;
        if b[0] >> 5 != 1 {
            return Err(Discard::Version);
        }
        let flags = b[1];
        let length = usize::from(b[3]);
        if flags & 0x04 != 0 {
            return Err(Discard::Authentication);
        }
        if length < PACKET_LEN || length > b.len() {
            return Err(Discard::Length);
        }
        if b[2] == 0 {
            return Err(Discard::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(Discard::Multipoint);
        }
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let p = Packet {
            diag: Diag::from_bits(b[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: b[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        };
        if p.my_discriminator == 0 {
            return Err(Discard::MyDiscriminator);
        }
        if p.your_discriminator == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroDiscriminator);
        }
        Ok(p)
    }

    /// The packet's 24 octets.
    pub fn emit(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (1 << 5) | (self.diag as u8);
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.fin) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = PACKET_LEN as u8;
        for (at, v) in [
            (4, self.my_discriminator),
            (8, self.your_discriminator),
            (12, self.desired_min_tx),
            (16, self.required_min_rx),
            (20, self.required_min_echo_rx),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

/// How a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often we would like to send once Up (bfd.DesiredMinTxInterval).
    pub desired_min_tx: Duration,
    /// How often we can take packets (bfd.RequiredMinRxInterval).
    pub required_min_rx: Duration,
    /// Packets missed before the peer is declared down (bfd.DetectMult).
    pub detect_mult: u8,
}

impl Config {
    /// Both intervals `interval`, detect multiplier `mult`.
    pub fn new(interval: Duration, mult: u8) -> Config {
        Config {
            desired_min_tx: interval,
            required_min_rx: interval,
            detect_mult: mult.max(1),
        }
    }
}

/// A state change, for the driver and BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Up,
    /// Left Up, for this reason.
    Down(Diag),
    /// Left Up because the peer said AdminDown: the path is fine, and a client protocol
    /// does not go down for this (RFC 5882 section 3.2).
    PeerAdminDown,
}

/// One BFD session with one neighbor (RFC 5880 6.8.1's state variables).
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    /// A Poll Sequence is running: our packets carry P until one with F comes back.
    polling: bool,
    /// The peer polled: the next packet carries F, and goes out at once.
    send_final: bool,
    next_tx: Option<Duration>,
    detect_at: Option<Duration>,
    changes: Vec<Change>,
    /// xorshift state for the transmit jitter (6.8.7).
    rng: u32,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in Down, identified by `discriminator` (nonzero, unique among ours).
    pub fn new(config: Config, discriminator: u32, now: Duration) -> Session {
        Session {
            config,
            state: State::Down,
            remote_state: State::Down,
            local_discr: discriminator.max(1),
            remote_discr: 0,
            local_diag: Diag::None,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            polling: false,
            send_final: false,
            next_tx: Some(now),
            detect_at: None,
            changes: Vec::new(),
            rng: discriminator.max(1),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    /// The time without a packet after which the peer is declared down (6.8.4).
    pub fn detection_time(&self) -> Duration {
        let rx = self.config.required_min_rx.max(self.remote_desired_tx);
        rx * u32::from(self.remote_detect_mult)
    }

    /// The state changes since the last call.
    pub fn poll_change(&mut self) -> Option<Change> {
        if self.changes.is_empty() {
            None
        } else {
            Some(self.changes.remove(0))
        }
    }

    /// When [`Session::poll`] or [`Session::poll_transmit`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        [self.next_tx, self.detect_at].into_iter().flatten().min()
    }

    /// The interval we advertise as our Desired Min TX: at least a second while not Up.
    fn desired_tx(&self) -> Duration {
        if self.state == State::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW)
        }
    }

    /// The packet we would send now.
    fn packet(&self) -> Packet {
        Packet {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling && !self.send_final,
            fin: self.send_final,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: micros(self.desired_tx()),
            required_min_rx: micros(self.config.required_min_rx),
            required_min_echo_rx: 0,
        }
    }

    /// The periodic transmission interval, jittered 0 to 25% shorter (10 to 25% when
    /// the detect multiplier is 1), as 6.8.7 requires.
    fn next_interval(&mut self) -> Duration {
        let base = self.desired_tx().max(self.remote_min_rx);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let (low, span) = if self.config.detect_mult == 1 {
            (10, 15)
        } else {
            (0, 25)
        };
        let cut = low + self.rng % (span + 1);
        base * (100 - cut) / 100
    }

    /// The packet to send now, if one is due: periodic, or a Final answering a Poll.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Packet> {
        // 6.8.7: nothing periodic while the peer asks for none.
        if self.remote_min_rx.is_zero() && !self.send_final {
            return None;
        }
        if !self.send_final && self.next_tx.is_none_or(|t| t > now) {
            return None;
        }
        let p = self.packet();
        if self.send_final {
            self.send_final = false;
            // A Final goes out on its own; the periodic schedule is kept.
            if self.next_tx.is_some_and(|t| t > now) {
                return Some(p);
            }
        }
        let next = self.next_interval();
        self.next_tx = Some(now + next);
        Some(p)
    }

    /// Runs the detection timer.
    pub fn poll(&mut self, now: Duration) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            if matches!(self.state, State::Init | State::Up) {
                self.remote_discr = 0;
                self.go(State::Down, Diag::DetectionTimeExpired, now);
            }
        }
    }

    /// Takes a packet received from the peer (already through [`Packet::parse`]).
    pub fn receive(&mut self, p: &Packet, now: Duration) -> Result<(), Discard> {
        if p.your_discriminator != 0 && p.your_discriminator != self.local_discr {
            return Err(Discard::YourDiscriminator);
        }
        self.remote_discr = p.my_discriminator;
        self.remote_state = p.state;
        let old_rx = self.remote_min_rx;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx));
        self.remote_desired_tx = Duration::from_micros(u64::from(p.desired_min_tx));
        self.remote_detect_mult = p.detect_mult;
        if p.fin && self.polling {
            self.polling = false;
        }
        if self.remote_min_rx < old_rx
            && let Some(t) = self.next_tx
        {
            // The peer can take packets sooner: do not wait out the old interval.
            self.next_tx = Some(t.min(now + self.remote_min_rx.max(self.desired_tx())));
        }
        if self.state == State::AdminDown {
            return Ok(());
        }
        // A peer that is AdminDown leaves a Down session where it is (the last arm).
        match (self.state, p.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.go(State::Down, Diag::NeighborSignaledDown, now);
            }
            (State::Down, State::Down) => self.go(State::Init, Diag::None, now),
            (State::Down, State::Init) => self.go(State::Up, Diag::None, now),
            (State::Init, State::Init | State::Up) => self.go(State::Up, Diag::None, now),
            (State::Up, State::Down) => self.go(State::Down, Diag::NeighborSignaledDown, now),
            _ => {}
        }
        if p.poll {
            self.send_final = true;
        }
        // 6.8.4: the detection timer restarts with every packet (it runs in Init and Up).
        self.detect_at =
            matches!(self.state, State::Init | State::Up).then(|| now + self.detection_time());
        Ok(())
    }

    fn go(&mut self, to: State, diag: Diag, now: Duration) {
        let from = self.state;
        self.state = to;
        if diag != Diag::None {
            self.local_diag = diag;
        }
        match (from, to) {
            (_, State::Up) => {
                self.changes.push(Change::Up);
                // 6.8.3: the intervals change from the slow ones: a Poll Sequence says so,
                // and the faster transmission starts at once.
                self.polling = true;
                self.next_tx = Some(now);
            }
            (State::Up, _) => {
                self.changes.push(if self.remote_state == State::AdminDown {
                    Change::PeerAdminDown
                } else {
                    Change::Down(self.local_diag)
                });
                self.polling = false;
            }
            _ => {}
        }
    }

    /// Takes the session down administratively (it tells the peer, then stays down) or
    /// back up (Down, to start again).
    pub fn set_admin_down(&mut self, down: bool, now: Duration) {
        match (down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => {
                self.go(State::AdminDown, Diag::AdministrativelyDown, now);
                self.detect_at = None;
                self.next_tx = Some(now);
            }
            (false, State::AdminDown) => {
                self.state = State::Down;
                self.remote_discr = 0;
                self.next_tx = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
