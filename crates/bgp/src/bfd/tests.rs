//! RFC 5880 section by section: the packet layout (4.1), the reception checks (6.8.6),
//! the three-way handshake and the state machine (6.2, 6.8.6), timers and jitter (6.8.2,
//! 6.8.3, 6.8.7), detection (6.8.4), the Poll Sequence (6.5).

use super::*;

const MS: Duration = Duration::from_millis(1);

/// A packet as RFC 5880 4.1 lays it out: version 1, diag 0, state Down, detect mult 3,
/// my discriminator 1, yours 0, 1 s, 100 ms, no echo.
const DOWN: [u8; 24] = [
    0x20, 0x40, 3, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 0x01, 0x86, 0xa0, 0, 0, 0, 0,
];

#[test]
fn a_control_packet_reads_and_writes_as_section_4_1_lays_it_out() {
    let p = Packet::parse(&DOWN).unwrap();
    assert_eq!(p.state, State::Down);
    assert_eq!(p.detect_mult, 3);
    assert_eq!((p.my_discriminator, p.your_discriminator), (1, 0));
    assert_eq!((p.desired_min_tx, p.required_min_rx), (1_000_000, 100_000));
    assert_eq!(p.emit(), DOWN);
    let up = Packet {
        state: State::Up,
        poll: true,
        diag: Diag::NeighborSignaledDown,
        your_discriminator: 7,
        ..p
    };
    let b = up.emit();
    assert_eq!(b[0], 0x23, "version 1, diag 3");
    assert_eq!(b[1], 0xe0, "state Up (3) and P");
    assert_eq!(Packet::parse(&b), Ok(up));
}

#[test]
fn section_6_8_6_discards() {
    let with = |at: usize, v: u8| {
        let mut b = DOWN;
        b[at] = v;
        b
    };
    assert_eq!(Packet::parse(&DOWN[..23]), Err(Discard::Short));
    assert_eq!(Packet::parse(&with(0, 0x40)), Err(Discard::Version));
    assert_eq!(Packet::parse(&with(3, 23)), Err(Discard::Length));
    assert_eq!(Packet::parse(&with(3, 40)), Err(Discard::Length));
    assert_eq!(Packet::parse(&with(2, 0)), Err(Discard::DetectMult));
    assert_eq!(Packet::parse(&with(1, 0x41)), Err(Discard::Multipoint));
    assert_eq!(Packet::parse(&with(1, 0x44)), Err(Discard::Authentication));
    assert_eq!(Packet::parse(&with(7, 0)), Err(Discard::MyDiscriminator));
    // Your Discriminator 0 is only for a peer that is Down or AdminDown.
    assert_eq!(
        Packet::parse(&with(1, 0xc0)),
        Err(Discard::ZeroDiscriminator)
    );
    assert!(Packet::parse(&with(1, 0x00)).is_ok());
    // A discriminator that is not ours.
    let mut s = Session::new(Config::new(100 * MS, 3), 5, Duration::ZERO);
    let mut p = Packet::parse(&DOWN).unwrap();
    p.your_discriminator = 6;
    assert_eq!(
        s.receive(&p, Duration::ZERO),
        Err(Discard::YourDiscriminator)
    );
}

/// Two sessions that exchange every packet they send, `lost` dropping what one sends.
struct Pair {
    a: Session,
    b: Session,
    now: Duration,
    /// b's packets stop arriving at a.
    cut: bool,
    sent_by_a: Vec<(Duration, Packet)>,
}

impl Pair {
    fn new(config: Config) -> Pair {
        Pair {
            a: Session::new(config, 1, Duration::ZERO),
            b: Session::new(config, 2, Duration::ZERO),
            now: Duration::ZERO,
            cut: false,
            sent_by_a: Vec::new(),
        }
    }

    /// Runs until `until`, a millisecond at a time.
    fn run(&mut self, until: Duration) {
        while self.now < until {
            self.a.poll(self.now);
            self.b.poll(self.now);
            while let Some(p) = self.a.poll_transmit(self.now) {
                self.sent_by_a.push((self.now, p));
                let p = Packet::parse(&p.emit()).unwrap();
                self.b.receive(&p, self.now).unwrap();
            }
            while let Some(p) = self.b.poll_transmit(self.now) {
                if !self.cut {
                    let p = Packet::parse(&p.emit()).unwrap();
                    self.a.receive(&p, self.now).unwrap();
                }
            }
            self.now += MS;
        }
    }
}

#[test]
fn two_sessions_come_up_by_the_three_way_handshake() {
    let mut pair = Pair::new(Config::new(100 * MS, 3));
    pair.run(3 * SLOW);
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
    assert_eq!(pair.a.poll_change(), Some(Change::Up));
    assert_eq!(pair.a.poll_change(), None);
    assert_eq!(pair.a.remote_discriminator(), 2);
    // The states a sent: Down, then Init or straight Up.
    let states: Vec<State> = pair.sent_by_a.iter().map(|(_, p)| p.state).collect();
    assert_eq!(states[0], State::Down);
    assert!(states.contains(&State::Up));
}

#[test]
fn not_up_it_sends_no_faster_than_once_a_second_and_up_at_the_configured_rate() {
    let mut s = Session::new(Config::new(100 * MS, 3), 9, Duration::ZERO);
    let mut times = Vec::new();
    let mut now = Duration::ZERO;
    while now < 10 * SLOW {
        if let Some(p) = s.poll_transmit(now) {
            assert_eq!(p.desired_min_tx, 1_000_000, "a second while Down");
            times.push(now);
        }
        now += MS;
    }
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= 750 * MS && gap <= SLOW, "{gap:?}");
    }
    let mut pair = Pair::new(Config::new(100 * MS, 3));
    pair.run(5 * SLOW);
    let up: Vec<Duration> = pair
        .sent_by_a
        .iter()
        .filter(|(t, p)| p.state == State::Up && *t > 3 * SLOW)
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<Duration> = up.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 10);
    assert!(
        gaps.iter().all(|g| *g >= 75 * MS && *g <= 100 * MS),
        "{gaps:?}"
    );
    assert!(gaps.iter().any(|g| *g < 95 * MS), "jittered: {gaps:?}");
}

#[test]
fn with_a_multiplier_of_one_the_jitter_is_10_to_25_percent() {
    let mut s = Session::new(Config::new(SLOW, 1), 3, Duration::ZERO);
    for _ in 0..200 {
        let i = s.next_interval();
        assert!(i >= 750 * MS && i <= 900 * MS, "{i:?}");
    }
}

#[test]
fn coming_up_polls_and_the_peer_answers_with_final() {
    let mut pair = Pair::new(Config::new(100 * MS, 3));
    pair.run(3 * SLOW);
    let polls: Vec<&Packet> = pair
        .sent_by_a
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.poll)
        .collect();
    assert!(!polls.is_empty());
    assert!(
        polls
            .iter()
            .all(|p| p.state == State::Up && p.desired_min_tx == 100_000)
    );
    assert!(!pair.a.polling, "b's Final ended the Poll Sequence");
    // A Poll is answered at once with F, outside the periodic schedule.
    let mut s = Session::new(Config::new(100 * MS, 3), 4, Duration::ZERO);
    assert!(s.poll_transmit(Duration::ZERO).is_some());
    let periodic = s.poll_at();
    let poll = Packet {
        poll: true,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(&poll, 10 * MS).unwrap();
    let answer = s.poll_transmit(10 * MS).unwrap();
    assert!(answer.fin && !answer.poll);
    assert!(s.poll_transmit(10 * MS).is_none());
    assert_eq!(s.poll_at(), periodic, "the periodic schedule is kept");
}

#[test]
fn a_silent_peer_is_down_after_the_detection_time() {
    let mut pair = Pair::new(Config::new(100 * MS, 3));
    pair.run(3 * SLOW);
    pair.a.poll_change();
    assert_eq!(pair.a.detection_time(), 300 * MS);
    let cut_at = pair.now;
    pair.cut = true;
    while pair.a.state() == State::Up {
        pair.run(pair.now + MS);
    }
    let detected = pair.now - cut_at;
    // The last packet came up to one interval before the cut.
    assert!(detected >= 200 * MS && detected <= 301 * MS, "{detected:?}");
    assert_eq!(
        pair.a.poll_change(),
        Some(Change::Down(Diag::DetectionTimeExpired))
    );
    assert_eq!(pair.a.remote_discriminator(), 0);
    // b hears a say Down, and goes down with "neighbor signaled session down".
    pair.run(pair.now + 200 * MS);
    assert_eq!(pair.b.diag(), Diag::NeighborSignaledDown);
    // With the path back, both come up again.
    pair.cut = false;
    pair.run(pair.now + 4 * SLOW);
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
}

#[test]
fn admin_down_takes_the_peer_down_and_back() {
    let mut pair = Pair::new(Config::new(100 * MS, 3));
    pair.run(3 * SLOW);
    pair.b.poll_change();
    pair.a.set_admin_down(true, pair.now);
    pair.run(pair.now + 200 * MS);
    assert_eq!(pair.a.state(), State::AdminDown);
    assert_eq!(pair.b.state(), State::Down);
    assert_eq!(pair.b.poll_change(), Some(Change::PeerAdminDown));
    pair.a.set_admin_down(false, pair.now);
    pair.run(pair.now + 4 * SLOW);
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
}

#[test]
fn no_periodic_packets_when_the_peer_asks_for_none() {
    let mut s = Session::new(Config::new(100 * MS, 3), 4, Duration::ZERO);
    let none = Packet {
        required_min_rx: 0,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(&none, Duration::ZERO).unwrap();
    assert!(s.poll_transmit(5 * SLOW).is_none());
}

#[test]
fn every_diagnostic_and_flag_survives_the_wire() {
    let diags = [
        Diag::None,
        Diag::DetectionTimeExpired,
        Diag::EchoFailed,
        Diag::NeighborSignaledDown,
        Diag::ForwardingPlaneReset,
        Diag::PathDown,
        Diag::ConcatenatedPathDown,
        Diag::AdministrativelyDown,
        Diag::ReverseConcatenatedPathDown,
    ];
    let base = Packet::parse(&DOWN).unwrap();
    for (code, diag) in diags.into_iter().enumerate() {
        let p = Packet { diag, ..base };
        let b = p.emit();
        assert_eq!(usize::from(b[0] & 0x1f), code);
        assert_eq!(Packet::parse(&b).unwrap().diag, diag);
    }
    // Codes 9 to 31 are reserved: read as no diagnostic.
    let mut reserved = DOWN;
    reserved[0] = 0x20 | 17;
    assert_eq!(Packet::parse(&reserved).unwrap().diag, Diag::None);
    // P, F, C and D each in their own bit (4.1: Sta(2) P F C A D M).
    for (bit, p) in [
        (0x20, Packet { poll: true, ..base }),
        (0x10, Packet { fin: true, ..base }),
        (
            0x08,
            Packet {
                control_plane_independent: true,
                ..base
            },
        ),
        (
            0x02,
            Packet {
                demand: true,
                ..base
            },
        ),
    ] {
        assert_eq!(p.emit()[1], 0x40 | bit, "{p:?}");
        assert_eq!(Packet::parse(&p.emit()), Ok(p));
    }
}

#[test]
fn states_and_diagnostics_read_as_the_rfc_names_them() {
    let states: Vec<String> = [State::AdminDown, State::Down, State::Init, State::Up]
        .iter()
        .map(State::to_string)
        .collect();
    assert_eq!(states, ["AdminDown", "Down", "Init", "Up"]);
    assert_eq!(
        Diag::DetectionTimeExpired.to_string(),
        "control detection time expired"
    );
    assert_eq!(
        Diag::NeighborSignaledDown.to_string(),
        "neighbor signaled session down"
    );
    assert_eq!(Diag::PathDown.to_string(), "path down");
}

#[test]
fn the_session_answers_to_its_own_discriminator_and_says_when_it_has_work() {
    let mut s = Session::new(Config::new(100 * MS, 3), 77, Duration::ZERO);
    assert_eq!(s.local_discriminator(), 77);
    assert_eq!(s.poll_at(), Some(Duration::ZERO), "a first packet at once");
    let sent = s.poll_transmit(Duration::ZERO).unwrap();
    assert_eq!(sent.my_discriminator, 77);
    let next = s.poll_at().unwrap();
    assert!(next >= 750 * MS && next <= SLOW, "{next:?}");
    // The peer's Init, addressed to us: we are Up, and the detection timer runs.
    let init = Packet {
        state: State::Init,
        your_discriminator: 77,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(&init, 10 * MS).unwrap();
    assert_eq!(s.state(), State::Up);
    // Up: the next packet (a Poll) goes at once; detection is 3 x the peer's 1 s.
    assert_eq!(s.poll_at(), Some(10 * MS));
    s.poll_transmit(10 * MS).unwrap();
    assert!(s.poll_at().unwrap() <= 110 * MS);
    assert_eq!(s.detection_time(), 3 * SLOW);
}

#[test]
fn the_jitter_varies_from_packet_to_packet() {
    let mut s = Session::new(Config::new(SLOW, 3), 12345, Duration::ZERO);
    let intervals: std::collections::BTreeSet<Duration> =
        (0..100).map(|_| s.next_interval()).collect();
    // 26 possible cuts (0 to 25 %): a working generator reaches most of them.
    assert!(intervals.len() > 15, "{intervals:?}");
}

#[test]
fn a_poll_sequence_lasts_until_a_final_comes_back() {
    let mut s = Session::new(Config::new(100 * MS, 3), 5, Duration::ZERO);
    let peer = |state, fin| Packet {
        state,
        fin,
        your_discriminator: 5,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(&peer(State::Init, false), Duration::ZERO)
        .unwrap();
    assert_eq!(s.state(), State::Up);
    assert!(s.poll_transmit(Duration::ZERO).unwrap().poll);
    // Packets without F do not end it.
    s.receive(&peer(State::Up, false), 50 * MS).unwrap();
    assert!(s.poll_transmit(SLOW).unwrap().poll);
    s.receive(&peer(State::Up, true), SLOW + 10 * MS).unwrap();
    assert!(!s.poll_transmit(2 * SLOW).unwrap().poll);
}

#[test]
fn a_peer_that_can_take_packets_sooner_gets_them_sooner() {
    // Up, with a peer that asks for packets no faster than a second.
    let mut s = Session::new(Config::new(100 * MS, 3), 6, Duration::ZERO);
    let peer = |rx_us: u32| Packet {
        state: State::Up,
        your_discriminator: 6,
        required_min_rx: rx_us,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(
        &Packet {
            state: State::Init,
            ..peer(1_000_000)
        },
        Duration::ZERO,
    )
    .unwrap();
    s.poll_transmit(Duration::ZERO).unwrap();
    let slow = s.poll_at().unwrap();
    assert!(slow >= 750 * MS, "{slow:?}");
    // It lowers its Required Min RX to 100 ms: the next packet does not wait a second.
    s.receive(&peer(100_000), 10 * MS).unwrap();
    assert!(s.poll_at().unwrap() <= 110 * MS, "{:?}", s.poll_at());
    // Raised again, the schedule already set stands.
    let before = s.poll_at();
    s.receive(&peer(1_000_000), 20 * MS).unwrap();
    assert_eq!(s.poll_at(), before);
}

#[test]
fn a_final_due_with_the_periodic_packet_counts_as_it() {
    let mut s = Session::new(Config::new(100 * MS, 3), 4, Duration::ZERO);
    assert!(s.poll_transmit(Duration::ZERO).is_some());
    let due = s.poll_at().unwrap();
    let poll = Packet {
        poll: true,
        ..Packet::parse(&DOWN).unwrap()
    };
    s.receive(&poll, due).unwrap();
    // The Final goes out when the periodic packet is due: one packet, and the next
    // periodic one is scheduled from it.
    assert!(s.poll_transmit(due).unwrap().fin);
    assert!(
        s.poll_transmit(due).is_none(),
        "not a second packet at once"
    );
    assert!(s.poll_at().unwrap() > due);
}
