//! Two sessions talking through the codec, in virtual time.

use super::*;
use crate::codec::{AsPath, Attribute, Origin, decode, encode};

const T0: Duration = Duration::ZERO;

fn pair() -> (Session, Session) {
    let mut mux = Config::new(65001, Ipv4Addr::new(192, 168, 100, 20), 65000);
    mux.graceful_restart = Some(120);
    let mut router = Config::new(65000, Ipv4Addr::new(192, 168, 100, 1), 65001);
    router.passive = true;
    router.hold_time = 30;
    (Session::new(mux), Session::new(router))
}

/// Carries every Send from `from` to `to` through encode/decode; returns other actions.
fn carry(now: Duration, from: &mut Session, to: &mut Session) -> Vec<Action> {
    let mut rest = Vec::new();
    while let Some(a) = from.poll_action() {
        match a {
            Action::Send(m) => {
                let mut bytes = Vec::new();
                encode(&m, from.options(), &mut bytes).unwrap();
                let event = match decode(&bytes, to.options()) {
                    Ok(m) => Event::Message(m),
                    Err(e) => Event::Malformed(e),
                };
                to.handle(now, event);
            }
            other => rest.push(other),
        }
    }
    rest
}

/// Exchanges until quiet; returns the other actions of (a, b).
fn settle(now: Duration, a: &mut Session, b: &mut Session) -> (Vec<Action>, Vec<Action>) {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let x = carry(now, a, b);
        let y = carry(now, b, a);
        let quiet = x.is_empty() && y.is_empty() && a.actions.is_empty() && b.actions.is_empty();
        ra.extend(x);
        rb.extend(y);
        if quiet {
            break;
        }
    }
    (ra, rb)
}

fn establish() -> (Session, Session) {
    let (mut mux, mut router) = pair();
    mux.handle(T0, Event::Start);
    router.handle(T0, Event::Start);
    assert_eq!(mux.poll_action(), Some(Action::Connect));
    assert_eq!(router.state(), State::Active);
    mux.handle(T0, Event::TcpConnected);
    router.handle(T0, Event::TcpConnected);
    let (a, b) = settle(T0, &mut mux, &mut router);
    assert!(matches!(a.as_slice(), [Action::Established(_)]), "{a:?}");
    assert!(matches!(b.as_slice(), [Action::Established(_)]), "{b:?}");
    (mux, router)
}

#[test]
fn sessions_come_up_and_negotiate() {
    let (mux, router) = establish();
    assert_eq!(mux.state(), State::Established);
    let n = mux.negotiated().unwrap();
    assert_eq!(n.hold_time, 30, "the smaller hold time");
    assert_eq!(n.peer_as, 65000);
    assert!(n.options.four_octet_as && n.route_refresh);
    assert_eq!(n.families, vec![(1, 1)]);
    assert!(router.negotiated().unwrap().peer_graceful_restart.is_some());
    assert!(mux.negotiated().unwrap().peer_graceful_restart.is_none());
}

#[test]
fn updates_flow_and_keepalives_keep_it_up() {
    let (mut mux, mut router) = establish();
    let update = Update {
        attributes: vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65001])),
            Attribute::NextHop(Ipv4Addr::new(192, 168, 100, 20)),
        ],
        nlri: vec!["192.168.133.74/32".parse().unwrap()],
        ..Update::default()
    };
    assert!(mux.send_update(T0, update.clone()));
    let (_, b) = settle(T0, &mut mux, &mut router);
    assert_eq!(b, vec![Action::Update(update)]);
    // Ten minutes of timers: keepalives every 10 s keep both holds (30 s) from expiring.
    let mut now = T0;
    while now < Duration::from_secs(600) {
        now = [mux.poll_at(), router.poll_at()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        mux.poll(now);
        router.poll(now);
        let (a, b) = settle(now, &mut mux, &mut router);
        assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    }
    assert_eq!(
        (mux.state(), router.state()),
        (State::Established, State::Established)
    );
}

#[test]
fn a_silent_peer_expires_the_hold_timer() {
    let (_mux, mut router) = establish();
    let mut now = T0;
    let mut notified = false;
    while router.state() == State::Established {
        now = router.poll_at().unwrap();
        router.poll(now);
        // The peer is gone: whatever the router sends is lost.
        while let Some(a) = router.poll_action() {
            if let Action::Send(Message::Notification(n)) = &a {
                assert_eq!((n.code, n.subcode), (4, 0), "Hold Timer Expired");
                notified = true;
            }
        }
    }
    assert!(notified);
    assert_eq!(now, T0 + Duration::from_secs(30));
    assert_eq!(router.state(), State::Idle);
}

#[test]
fn stop_sends_cease_and_the_peer_goes_down() {
    let (mut mux, mut router) = establish();
    mux.handle(T0, Event::Stop(String::new()));
    let (a, b) = settle(T0, &mut mux, &mut router);
    assert!(a.contains(&Action::Down(DownReason::Stopped)), "{a:?}");
    let cease = Notification {
        code: 6,
        subcode: 2,
        data: vec![],
    };
    assert!(
        b.contains(&Action::Down(DownReason::Received(cease))),
        "{b:?}"
    );
    assert_eq!(mux.poll_at(), None, "a manual stop stays down");
    assert_eq!(router.state(), State::Idle);
}

#[test]
fn wrong_peer_as_is_refused() {
    let (mut mux, _) = pair();
    let mut stranger = Session::new(Config::new(64999, Ipv4Addr::new(10, 9, 9, 9), 65001));
    mux.handle(T0, Event::Start);
    stranger.handle(T0, Event::Start);
    mux.handle(T0, Event::TcpConnected);
    stranger.handle(T0, Event::TcpConnected);
    let (a, _) = settle(T0, &mut mux, &mut stranger);
    assert!(a.contains(&Action::Disconnect), "{a:?}");
    assert_eq!(mux.state(), State::Idle);
    assert!(mux.poll_at().is_some(), "ConnectRetry will try again");
}

#[test]
fn malformed_input_gets_its_notification_and_unexpected_messages_an_fsm_error() {
    let (mut mux, _) = establish();
    let error = decode(&[0u8; 19], Options::default()).unwrap_err();
    mux.handle(T0, Event::Malformed(error));
    let sent: Vec<_> = std::iter::from_fn(|| mux.poll_action()).collect();
    assert!(
        sent.iter().any(
            |a| matches!(a, Action::Send(Message::Notification(n)) if n.code == 1 && n.subcode == 1)
        ),
        "{sent:?}"
    );
    assert_eq!(mux.state(), State::Idle);

    let (mut mux2, _) = pair();
    mux2.handle(T0, Event::Start);
    mux2.handle(T0, Event::TcpConnected);
    while mux2.poll_action().is_some() {}
    mux2.handle(T0, Event::Message(Message::Update(Update::default())));
    let sent: Vec<_> = std::iter::from_fn(|| mux2.poll_action()).collect();
    assert!(
        sent.iter().any(
            |a| matches!(a, Action::Send(Message::Notification(n)) if n.code == 5 && n.subcode == 1)
        ),
        "{sent:?}"
    );
}

/// The sent NOTIFICATIONs among `actions`, as (code, subcode).
fn notifications(actions: &[Action]) -> Vec<(u8, u8)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
            _ => None,
        })
        .collect()
}

fn take(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// A session in OpenSent: started, connected, its OPEN out.
fn open_sent() -> Session {
    let (mut mux, _) = pair();
    mux.handle(T0, Event::Start);
    mux.handle(T0, Event::TcpConnected);
    take(&mut mux);
    assert_eq!(mux.state(), State::OpenSent);
    mux
}

fn their_open(hold_time: u16, capabilities: Vec<Capability>) -> Message {
    Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time,
        bgp_id: Ipv4Addr::new(192, 168, 100, 1),
        capabilities,
    })
}

#[test]
fn rfc_6608_the_fsm_error_names_the_state() {
    // OpenSent: a KEEPALIVE before the OPEN.
    let mut s = open_sent();
    s.handle(T0, Event::Message(Message::Keepalive));
    assert_eq!(notifications(&take(&mut s)), [(5, 1)]);
    // OpenConfirm: an UPDATE before the KEEPALIVE.
    let mut s = open_sent();
    s.handle(T0, Event::Message(their_open(90, vec![])));
    take(&mut s);
    assert_eq!(s.state(), State::OpenConfirm);
    s.handle(T0, Event::Message(Message::Update(Update::default())));
    assert_eq!(notifications(&take(&mut s)), [(5, 2)]);
    // Established: a second OPEN.
    let (mut mux, _) = establish();
    mux.handle(T0, Event::Message(their_open(90, vec![])));
    assert_eq!(notifications(&take(&mut mux)), [(5, 3)]);
}

#[test]
fn a_passive_session_never_dials_out() {
    let (_, mut router) = pair();
    router.handle(T0, Event::Start);
    assert_eq!(router.state(), State::Active);
    let mut now = T0;
    for _ in 0..5 {
        now += Duration::from_secs(600);
        router.poll(now);
        assert!(!take(&mut router).contains(&Action::Connect));
    }
    // Nor after a connection it took fails.
    router.handle(now, Event::TcpConnected);
    router.handle(now, Event::TcpClosed);
    for _ in 0..5 {
        now += Duration::from_secs(600);
        router.poll(now);
        assert!(!take(&mut router).contains(&Action::Connect));
    }
    // An active one retries on its ConnectRetry timer.
    let (mut mux, _) = pair();
    mux.handle(T0, Event::Start);
    assert_eq!(take(&mut mux), [Action::Connect]);
    mux.handle(T0, Event::TcpClosed);
    mux.poll(T0 + Duration::from_secs(120));
    assert_eq!(take(&mut mux), [Action::Connect]);
}

#[test]
fn route_refresh_is_passed_up_only_when_negotiated_and_a_request() {
    let (mut mux, _) = establish();
    let rr = |subtype| {
        Message::RouteRefresh(codec::RouteRefresh {
            afi: 1,
            subtype,
            safi: 1,
        })
    };
    mux.handle(T0, Event::Message(rr(0)));
    assert_eq!(take(&mut mux), [Action::RouteRefresh(1, 1)]);
    // RFC 7313 BoRR and EoRR markers are not requests.
    mux.handle(T0, Event::Message(rr(1)));
    mux.handle(T0, Event::Message(rr(2)));
    assert!(take(&mut mux).is_empty());
    // A peer that did not announce the capability gets nothing for it.
    let mut s = open_sent();
    s.handle(T0, Event::Message(their_open(90, vec![])));
    s.handle(T0, Event::Message(Message::Keepalive));
    take(&mut s);
    assert_eq!(s.state(), State::Established);
    s.handle(T0, Event::Message(rr(0)));
    assert!(take(&mut s).is_empty());
}

#[test]
fn hold_time_zero_means_no_keepalives_and_no_hold_timer() {
    let mut s = open_sent();
    s.handle(T0, Event::Message(their_open(0, vec![])));
    s.handle(T0, Event::Message(Message::Keepalive));
    take(&mut s);
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.negotiated().unwrap().hold_time, 0);
    assert_eq!(s.poll_at(), None, "no timer at all");
    s.poll(T0 + Duration::from_secs(100_000));
    assert!(take(&mut s).is_empty());
    assert_eq!(s.state(), State::Established);
}

#[test]
fn keepalives_go_every_third_of_the_hold_time() {
    let mut s = open_sent();
    s.handle(T0, Event::Message(their_open(9, vec![])));
    s.handle(T0, Event::Message(Message::Keepalive));
    take(&mut s);
    assert_eq!(s.negotiated().unwrap().hold_time, 9);
    let mut sent = Vec::new();
    let mut now = T0;
    while now < Duration::from_secs(8) {
        now = s.poll_at().unwrap();
        s.poll(now);
        if take(&mut s).contains(&Action::Send(Message::Keepalive)) {
            sent.push(now);
        }
        // The peer keeps talking, so the hold timer never fires.
        s.handle(now, Event::Message(Message::Keepalive));
    }
    assert_eq!(
        sent,
        [3, 6, 9].map(Duration::from_secs)[..sent.len()].to_vec()
    );
    assert!(sent.len() >= 2);
}

#[test]
fn a_peer_without_multiprotocol_speaks_ipv4_unicast_only() {
    // RFC 4760 section 8: no capability means IPv4 unicast; we offered IPv6 too.
    let (mut mux, _) = pair();
    mux.handle(T0, Event::Start);
    take(&mut mux);
    let mut config = mux.config().clone();
    config
        .families
        .push((codec::afi::IPV6, codec::SAFI_UNICAST));
    let mut s = Session::new(config);
    s.handle(T0, Event::Start);
    s.handle(T0, Event::TcpConnected);
    take(&mut s);
    s.handle(T0, Event::Message(their_open(90, vec![])));
    assert_eq!(s.negotiated().unwrap().families, [(1, 1)]);
    // A peer that announces only IPv6 gets only IPv6.
    let mut config = mux.config().clone();
    config
        .families
        .push((codec::afi::IPV6, codec::SAFI_UNICAST));
    let mut s = Session::new(config);
    s.handle(T0, Event::Start);
    s.handle(T0, Event::TcpConnected);
    take(&mut s);
    let v6 = Capability::Multiprotocol {
        afi: codec::afi::IPV6,
        safi: codec::SAFI_UNICAST,
    };
    s.handle(T0, Event::Message(their_open(90, vec![v6])));
    assert_eq!(s.negotiated().unwrap().families, [(2, 1)]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        let peer_open =
            Session::new(Config::new(65000, Ipv4Addr::new(1, 1, 1, 1), 65001)).open_message();
        prop_oneof![
            Just(Event::Start),
            Just(Event::Stop("going".into())),
            Just(Event::TcpConnected),
            Just(Event::TcpClosed),
            Just(Event::Message(Message::Keepalive)),
            Just(Event::Message(Message::Update(Update::default()))),
            Just(Event::Message(Message::Notification(Notification {
                code: 6,
                subcode: 4,
                data: vec![]
            }))),
            Just(Event::Message(Message::Open(peer_open))),
        ]
    }

    proptest! {
        #[test]
        fn random_events_keep_the_invariants(events in proptest::collection::vec((event(), 0u64..200), 0..60)) {
            let (mut mux, _) = pair();
            let mut now = T0;
            for (e, dt) in events {
                now += Duration::from_secs(dt);
                mux.poll(now);
                mux.handle(now, e);
                while mux.poll_action().is_some() {}
                let negotiated = mux.negotiated().is_some();
                prop_assert_eq!(negotiated, matches!(mux.state(), State::OpenConfirm | State::Established));
                prop_assert!(mux.poll_at().is_none_or(|t| t >= now));
            }
        }
    }
}

/// Both speakers connect at once: each side has the connection it opened and the one it
/// accepted, and both OPENs are in on each before either KEEPALIVE.
fn simultaneous_open(a_id: Ipv4Addr, b_id: Ipv4Addr) -> [(Session, Session); 2] {
    let a = Config::new(65001, a_id, 65000);
    let b = Config::new(65000, b_id, 65001);
    let opened = |config: &Config| {
        let mut s = Session::new(config.clone());
        s.handle(T0, Event::Start);
        assert_eq!(s.poll_action(), Some(Action::Connect));
        s.handle(T0, Event::TcpConnected);
        s
    };
    // Connection 1 opened by A, connection 2 by B; each pair is (A's end, B's end).
    let mut one = (opened(&a), Session::accepted(b.clone(), T0));
    let mut two = (Session::accepted(a.clone(), T0), opened(&b));
    for (x, y) in [&mut one, &mut two] {
        carry_open(x, y);
        carry_open(y, x);
        assert_eq!(
            (x.state(), y.state()),
            (State::OpenConfirm, State::OpenConfirm)
        );
    }
    [one, two]
}

/// Carries the OPEN `from` has queued, and nothing after it.
fn carry_open(from: &mut Session, to: &mut Session) {
    let Some(Action::Send(open @ Message::Open(_))) = from.actions.pop_front() else {
        panic!("no OPEN queued");
    };
    to.handle(T0, Event::Message(open));
}

fn cease_collision(actions: &[Action]) -> bool {
    actions.iter().any(
        |a| matches!(a, Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (6, 7)),
    )
}

#[test]
fn a_collision_keeps_the_connection_opened_by_the_higher_identifier() {
    let high = Ipv4Addr::new(192, 168, 100, 20);
    let low = Ipv4Addr::new(10, 0, 0, 1);
    // Connection 1 is A's: it survives exactly when A has the higher identifier.
    for (a_id, b_id, survivor) in [(high, low, 0), (low, high, 1)] {
        let [mut one, mut two] = simultaneous_open(a_id, b_id);
        let at_a = collision(
            Connection {
                session: &one.0,
                opened_locally: true,
            },
            Connection {
                session: &two.0,
                opened_locally: false,
            },
        );
        // B sees the pair the other way round: its own connection first.
        let at_b = collision(
            Connection {
                session: &two.1,
                opened_locally: true,
            },
            Connection {
                session: &one.1,
                opened_locally: false,
            },
        );
        let (expect_a, expect_b) = if survivor == 0 {
            (Collision::CloseSecond, Collision::CloseFirst)
        } else {
            (Collision::CloseFirst, Collision::CloseSecond)
        };
        assert_eq!((at_a, at_b), (expect_a, expect_b), "A {a_id} B {b_id}");
        let (kept, lost) = if survivor == 0 {
            (&mut one, &mut two)
        } else {
            (&mut two, &mut one)
        };
        lost.0.close_collision(T0);
        lost.1.close_collision(T0);
        let sent: Vec<Action> = std::iter::from_fn(|| lost.0.poll_action()).collect();
        assert!(cease_collision(&sent), "{sent:?}");
        assert_eq!(lost.0.state(), State::Idle);
        assert_eq!(lost.0.poll_at(), None, "the loser stays down");
        let (x, y) = settle(T0, &mut kept.0, &mut kept.1);
        assert!(matches!(x.as_slice(), [Action::Established(_)]), "{x:?}");
        assert!(matches!(y.as_slice(), [Action::Established(_)]), "{y:?}");
    }
}

#[test]
fn a_collision_waits_for_an_open_and_never_closes_an_established_session() {
    let (mux, router) = establish();
    let mut late = Session::new(mux.config().clone());
    late.handle(T0, Event::Start);
    late.handle(T0, Event::TcpConnected);
    let fresh = Session::accepted(router.config().clone(), T0);
    let conn = |session, opened_locally| Connection {
        session,
        opened_locally,
    };
    // Neither end of the new connection has seen an OPEN: nothing tells who wins.
    assert_eq!(
        collision(conn(&late, true), conn(&fresh, false)),
        Collision::Wait
    );
    assert_eq!(
        collision(conn(&mux, true), conn(&fresh, false)),
        Collision::CloseSecond
    );
    assert_eq!(
        collision(conn(&late, true), conn(&router, false)),
        Collision::CloseFirst
    );
}

fn downs(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Down(_)))
        .count()
}

#[test]
fn only_a_session_that_got_as_far_as_an_open_reports_going_down() {
    // OpenSent: nothing was up, nothing goes down.
    let mut s = open_sent();
    s.handle(T0, Event::Message(Message::Keepalive));
    let actions = take(&mut s);
    assert_eq!(notifications(&actions), [(5, 1)]);
    assert_eq!(downs(&actions), 0);
    // OpenConfirm: the OPEN was taken, the session goes down.
    let mut s = open_sent();
    s.handle(T0, Event::Message(their_open(90, vec![])));
    take(&mut s);
    s.handle(T0, Event::Message(Message::Update(Update::default())));
    assert_eq!(downs(&take(&mut s)), 1);
    // Established.
    let (mut mux, _) = establish();
    mux.handle(T0, Event::Message(their_open(90, vec![])));
    assert_eq!(downs(&take(&mut mux)), 1);
}

#[test]
fn a_stopped_session_refuses_a_connection_and_sends_nothing() {
    let (mut mux, _) = establish();
    mux.handle(T0, Event::Stop(String::new()));
    take(&mut mux);
    assert_eq!(mux.state(), State::Idle);
    mux.handle(T0 + Duration::from_secs(1), Event::TcpConnected);
    assert_eq!(take(&mut mux), [Action::Disconnect]);
    assert_eq!(mux.state(), State::Idle);
}

#[test]
fn after_an_error_the_session_restarts_when_connect_retry_expires() {
    // The mux dials; the router waits.
    for passive in [false, true] {
        let (mut mux, mut router) = establish();
        let s = if passive { &mut router } else { &mut mux };
        s.handle(T0, Event::Message(their_open(90, vec![])));
        take(s);
        assert_eq!(s.state(), State::Idle);
        let retry = s.poll_at().expect("ConnectRetry armed");
        s.poll(retry);
        let actions = take(s);
        if passive {
            assert_eq!(s.state(), State::Active, "waits for the peer");
            assert!(!actions.contains(&Action::Connect));
            assert_eq!(s.poll_at(), None, "and no retry of its own");
        } else {
            assert_eq!(s.state(), State::Connect);
            assert!(actions.contains(&Action::Connect));
            assert!(
                s.poll_at().is_some_and(|t| t > retry),
                "the next retry armed"
            );
        }
    }
}
