//! An agent and the controller's peer talking through real frames, in virtual time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Timers;
use crate::agent::{Agent, Output};
use crate::frame::{Decoder, FrameError, encode};
use crate::message::Message;
use crate::peer::{Event, Peer};

const MS: Duration = Duration::from_millis(1);

/// The controller's view: which node has which token, and its configuration.
struct Controller {
    revision: u64,
    config: Arc<Value>,
}

impl Controller {
    fn admit(&self) -> impl Fn(&str, &str) -> Option<u64> + '_ {
        |node, token| (node == "MuxVM" && token == "mux-token").then_some(self.revision)
    }
}

/// One connection's two ends and what crossed it.
struct Link {
    agent: Agent,
    peer: Option<Peer>,
    controller: Controller,
    up: bool,
    now: Duration,
    /// Configurations the role was given.
    applied: Vec<(u64, Value)>,
    /// Events of the controller's side, other than sends.
    events: Vec<Event>,
    /// Bytes from the agent, framed.
    to_controller: Decoder,
    to_agent: Decoder,
}

impl Link {
    fn new(token: &str) -> Link {
        let mut agent = Agent::new("MuxVM", token, Timers::default());
        agent.start(Duration::ZERO);
        Link {
            agent,
            peer: None,
            controller: Controller {
                revision: 1,
                config: Arc::new(json!({"vips": ["192.168.133.74"], "asn": 64501})),
            },
            up: true,
            now: Duration::ZERO,
            applied: Vec::new(),
            events: Vec::new(),
            to_controller: Decoder::new(),
            to_agent: Decoder::new(),
        }
    }

    /// Moves messages until nothing moves.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(out) = self.agent.poll_output() {
                moved = true;
                match out {
                    Output::Connect => {
                        if self.up {
                            self.peer = Some(Peer::new(self.now, Timers::default()));
                            self.agent.connected(self.now);
                        } else {
                            self.agent.disconnected(self.now);
                        }
                    }
                    Output::Send(m) => {
                        let mut bytes = Vec::new();
                        encode(&m, &mut bytes);
                        self.to_controller.push(&bytes);
                    }
                    Output::Close => self.peer = None,
                    Output::Apply {
                        revision, config, ..
                    } => {
                        self.applied.push((revision, Value::clone(&config)));
                        self.agent.applied(revision, Ok(()));
                    }
                }
            }
            let mut closing = false;
            if let Some(peer) = self.peer.as_mut() {
                while let Some(m) = self.to_controller.next_message().unwrap() {
                    moved = true;
                    peer.received(self.now, m, &self.controller.admit());
                }
                while let Some(e) = peer.poll_event() {
                    moved = true;
                    match e {
                        Event::Send(m) => {
                            let mut bytes = Vec::new();
                            encode(&m, &mut bytes);
                            self.to_agent.push(&bytes);
                        }
                        Event::Accepted { applied, .. } => {
                            peer.publish(
                                self.controller.revision,
                                &self.controller.config,
                                applied,
                            );
                            self.events.push(Event::Accepted {
                                node: "MuxVM".into(),
                                applied,
                            });
                        }
                        Event::Close(reason) => {
                            self.events.push(Event::Close(reason));
                            closing = true;
                            break;
                        }
                        other => self.events.push(other),
                    }
                }
            }
            // What was sent arrives before the connection's end does.
            while let Some(m) = self.to_agent.next_message().unwrap() {
                moved = true;
                self.agent.received(self.now, m);
            }
            if closing {
                self.peer = None;
                self.agent.disconnected(self.now);
            }
            if !moved {
                return;
            }
        }
        panic!("the link does not settle");
    }

    /// The controller changes the node's configuration.
    fn change(&mut self, config: Value) {
        self.controller.revision += 1;
        self.controller.config = Arc::new(config);
        if let Some(p) = self.peer.as_mut() {
            p.publish(self.controller.revision, &self.controller.config, None);
        }
        self.settle();
    }

    /// Time passes, timers run, in steps of 50 ms.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += 50 * MS;
            self.agent.poll(self.now);
            if let Some(p) = self.peer.as_mut() {
                p.poll(self.now);
            }
            self.settle();
        }
    }
}

#[test]
fn an_agent_gets_its_configuration_and_says_it_applied_it() {
    let mut l = Link::new("mux-token");
    l.settle();
    assert!(l.agent.is_ready());
    assert_eq!(
        l.applied,
        [(1, json!({"vips": ["192.168.133.74"], "asn": 64501}))]
    );
    assert!(l.events.contains(&Event::Applied {
        node: "MuxVM".into(),
        revision: 1
    }));
    // A change travels as a delta, and the agent ends with the new configuration.
    let next = json!({"vips": ["192.168.133.74", "192.168.133.75"], "asn": 64501});
    l.change(next.clone());
    assert_eq!(l.applied.last(), Some(&(2, next.clone())));
    assert_eq!(l.agent.config(), Some(&(2, Arc::new(next))));
    assert_eq!(l.agent.applied_revision(), Some(2));
}

#[test]
fn changes_after_the_first_go_as_deltas() {
    let mut l = Link::new("mux-token");
    l.settle();
    let mut sent = Vec::new();
    let peer = l.peer.as_mut().unwrap();
    peer.publish(2, &Arc::new(json!({"vips": [], "asn": 64501})), None);
    while let Some(e) = peer.poll_event() {
        sent.push(e);
    }
    assert_eq!(
        sent,
        [Event::Send(Message::Delta {
            base: 1,
            revision: 2,
            patch: json!({"vips": []})
        })]
    );
}

#[test]
fn an_unknown_node_or_wrong_token_is_refused_and_nothing_else_happens() {
    let mut l = Link::new("wrong");
    l.settle();
    assert!(!l.agent.is_ready());
    assert!(l.applied.is_empty());
    assert!(l.agent.refused().is_some_and(|r| r.contains("MuxVM")));
    assert!(matches!(l.events.as_slice(), [Event::Close(r)] if r.contains("refused")));
    // It tries again after its backoff.
    assert_eq!(
        l.agent.poll_at(),
        Some(l.now + Timers::default().backoff_min)
    );
}

#[test]
fn a_controller_that_goes_away_leaves_the_configuration_in_force_and_the_agent_comes_back() {
    let mut l = Link::new("mux-token");
    l.settle();
    // The controller's process dies: no more answers, and no connections.
    l.peer = None;
    l.up = false;
    l.wait(Duration::from_secs(10));
    assert!(!l.agent.is_ready());
    assert_eq!(l.agent.config().map(|c| c.0), Some(1), "kept");
    // Meanwhile the configuration changed; the controller comes back.
    l.controller.revision = 5;
    l.controller.config = Arc::new(json!({"vips": [], "asn": 64501}));
    l.up = true;
    l.wait(Duration::from_secs(10));
    assert!(l.agent.is_ready());
    assert_eq!(
        l.applied.last(),
        Some(&(5, json!({"vips": [], "asn": 64501})))
    );
}

#[test]
fn a_reconnecting_agent_that_is_up_to_date_is_sent_nothing() {
    let mut l = Link::new("mux-token");
    l.settle();
    let applied = l.applied.len();
    // The connection drops; the agent comes back having applied revision 1.
    l.peer = None;
    l.agent.disconnected(l.now);
    l.wait(Duration::from_secs(2));
    assert!(l.agent.is_ready());
    assert_eq!(
        l.applied.len(),
        applied,
        "no second snapshot of what it has"
    );
    assert!(l.events.iter().any(|e| matches!(
        e,
        Event::Accepted {
            applied: Some(1),
            ..
        }
    )));
}

#[test]
fn keepalives_keep_both_ends_up_and_silence_ends_them() {
    let mut l = Link::new("mux-token");
    l.settle();
    l.wait(Duration::from_secs(20));
    assert!(l.agent.is_ready(), "keepalives carried it");
    assert!(l.peer.is_some());
    // The agent falls silent (its node froze): the controller drops it.
    let mut peer = l.peer.take().unwrap();
    let mut closed = None;
    for step in 1..100u32 {
        peer.poll(l.now + 50 * MS * step);
        while let Some(e) = peer.poll_event() {
            if let Event::Close(reason) = e {
                closed = Some((step, reason));
            }
        }
        if closed.is_some() {
            break;
        }
    }
    let (step, reason) = closed.unwrap();
    assert!(reason.contains("MuxVM silent"), "{reason}");
    assert_eq!(50 * MS * step, Timers::default().hold);
}

#[test]
fn backoff_doubles_up_to_its_limit_and_resets_once_welcome() {
    let mut a = Agent::new("MuxVM", "t", Timers::default());
    a.start(Duration::ZERO);
    let mut now = Duration::ZERO;
    let mut waits = Vec::new();
    for _ in 0..7 {
        assert_eq!(a.poll_output(), Some(Output::Connect));
        a.disconnected(now);
        let at = a.poll_at().unwrap();
        waits.push(at - now);
        now = at;
        a.poll(now);
    }
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        waits,
        [
            ms(250),
            ms(500),
            ms(1000),
            ms(2000),
            ms(4000),
            ms(8000),
            ms(8000)
        ]
    );
    assert_eq!(a.poll_output(), Some(Output::Connect));
    a.connected(now);
    a.received(now, Message::Welcome { revision: 1 });
    a.disconnected(now);
    assert_eq!(a.poll_at(), Some(now + ms(250)));
}

#[test]
fn out_of_order_messages_end_the_connection() {
    // The controller hears something other than Hello first.
    let mut p = Peer::new(Duration::ZERO, Timers::default());
    p.received(Duration::ZERO, Message::Applied { revision: 1 }, &|_, _| {
        Some(1)
    });
    assert!(matches!(p.poll_event(), Some(Event::Close(r)) if r.contains("before Hello")));
    // The agent is sent a delta on a base it does not hold: it reconnects for a snapshot.
    let mut a = Agent::new("MuxVM", "t", Timers::default());
    a.start(Duration::ZERO);
    a.poll_output();
    a.connected(Duration::ZERO);
    a.poll_output();
    a.received(Duration::ZERO, Message::Welcome { revision: 3 });
    a.received(
        Duration::ZERO,
        Message::Delta {
            base: 2,
            revision: 3,
            patch: json!({}),
        },
    );
    assert_eq!(a.poll_output(), Some(Output::Close));
    assert!(!a.is_ready());
}

#[test]
fn frames_split_anywhere_and_bad_ones_are_named() {
    let mut bytes = Vec::new();
    encode(
        &Message::Hello {
            node: "MuxVM".into(),
            token: "t".into(),
            applied: Some(3),
        },
        &mut bytes,
    );
    encode(&Message::Keepalive, &mut bytes);
    let text = String::from_utf8_lossy(&bytes[4..]).to_string();
    assert!(
        text.starts_with(r#"{"type":"hello","node":"MuxVM","token":"t","applied":3}"#),
        "{text}"
    );
    let mut d = Decoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        while let Some(m) = d.next_message().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], Message::Keepalive);
    let mut d = Decoder::new();
    d.push(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(d.next_message(), Err(FrameError::TooLong(0xffff_ffff)));
    let mut d = Decoder::new();
    d.push(&[0, 0, 0, 2, b'{', b'}']);
    assert!(
        matches!(d.next_message(), Err(FrameError::Malformed(_))),
        "no type"
    );
}

proptest::proptest! {
    /// Any bytes: the decoder answers, never panics.
    #[test]
    fn any_bytes_are_answered(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut d = Decoder::new();
        d.push(&bytes);
        while let Ok(Some(_)) = d.next_message() {}
    }
}

/// Each side's timers and guards on their own, message by message.
mod units {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timers() -> Timers {
        Timers {
            keepalive: S,
            hold: 3 * S,
            backoff_min: 250 * MS,
            backoff_max: 8 * S,
            splay: Duration::ZERO,
        }
    }

    #[test]
    fn a_splay_delays_the_first_connection_by_the_nodes_share_of_it() {
        let splay = 100 * MS;
        let start = S;
        let share = |node: &str| {
            let mut a = Agent::new(node, "t", Timers { splay, ..timers() });
            a.start(start);
            assert_eq!(outputs(&mut a), [], "{node} waits");
            let at = a.poll_at().expect("a time to connect");
            assert!(at >= start && at < start + splay, "{node}: {at:?}");
            a.poll(at - Duration::from_nanos(1));
            assert_eq!(outputs(&mut a), []);
            a.poll(at);
            assert_eq!(outputs(&mut a), [Output::Connect]);
            at - start
        };
        // The same for a node every time; spread over a fleet.
        assert_eq!(share("Host1"), share("Host1"));
        let shares: std::collections::BTreeSet<Duration> =
            (1..=50).map(|i| share(&format!("Host{i}"))).collect();
        assert_eq!(shares.len(), 50);
        assert!(
            shares.first().unwrap() < &(splay / 4) && shares.last().unwrap() > &(splay * 3 / 4)
        );
        // Without a splay: at once.
        let mut a = Agent::new("Host1", "t", timers());
        a.start(start);
        assert_eq!(outputs(&mut a), [Output::Connect]);
        // Started twice: nothing more.
        a.start(start);
        assert_eq!(outputs(&mut a), []);
    }

    fn outputs(a: &mut Agent) -> Vec<Output> {
        std::iter::from_fn(|| a.poll_output()).collect()
    }

    fn events(p: &mut Peer) -> Vec<Event> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    fn hello(applied: Option<u64>) -> Message {
        Message::Hello {
            node: "MuxVM".into(),
            token: "t".into(),
            applied,
        }
    }

    fn admit(_: &str, token: &str) -> Option<u64> {
        (token == "t").then_some(5)
    }

    #[test]
    fn node_tokens_are_fixed_per_secret_and_node() {
        let t = crate::node_token("secret", "MuxVM");
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        // A token issued once keeps working after an upgrade: pinned.
        assert_eq!(t, crate::node_token("secret", "MuxVM"));
        assert_eq!(t, "66bfe04eb2570607f5de579d2a674fd3");
        assert_ne!(t, crate::node_token("secret", "MuxVM2"));
        assert_ne!(t, crate::node_token("other", "MuxVM"));
    }

    #[test]
    fn the_agent_keeps_alive_holds_reconnects_and_reports_only_when_accepted() {
        let mut a = Agent::new("MuxVM", "t", timers());
        a.start(Duration::ZERO);
        assert_eq!(outputs(&mut a), [Output::Connect]);
        a.report(json!({"x": 1}));
        assert!(
            outputs(&mut a).is_empty(),
            "no report before it is accepted"
        );
        a.connected(Duration::ZERO);
        assert!(matches!(
            &outputs(&mut a)[..],
            [Output::Send(Message::Hello { .. })]
        ));
        assert_eq!(a.poll_at(), Some(S));
        a.received(500 * MS, Message::Welcome { revision: 1 });
        assert!(a.is_ready());
        a.report(json!({"x": 1}));
        assert!(matches!(
            &outputs(&mut a)[..],
            [Output::Send(Message::Report { .. })]
        ));
        a.poll(999 * MS);
        assert!(outputs(&mut a).is_empty());
        a.poll(S);
        assert_eq!(outputs(&mut a), [Output::Send(Message::Keepalive)]);
        assert_eq!(a.poll_at(), Some(2 * S));
        // The controller's keepalive keeps it up.
        a.received(1200 * MS, Message::Keepalive);
        assert!(a.is_ready());
        assert!(outputs(&mut a).is_empty());
        a.poll(2 * S);
        assert_eq!(outputs(&mut a), [Output::Send(Message::Keepalive)]);
        // Silent for the hold time: the connection goes; back after the backoff.
        assert_eq!(a.poll_at(), Some(3 * S), "the next keepalive");
        a.poll(3 * S);
        outputs(&mut a);
        a.poll(4199 * MS);
        assert!(a.is_ready(), "3 s after 1.2 s is 4.2 s");
        outputs(&mut a);
        a.poll(4200 * MS);
        assert!(!a.is_ready());
        assert_eq!(outputs(&mut a), [Output::Close]);
        assert_eq!(a.poll_at(), Some(4450 * MS));
        a.poll(4449 * MS);
        assert!(outputs(&mut a).is_empty());
        a.poll(4450 * MS);
        assert_eq!(outputs(&mut a), [Output::Connect]);
        assert_eq!(a.config(), None);
    }

    #[test]
    fn a_delta_on_another_base_is_not_applied() {
        let mut a = Agent::new("MuxVM", "t", timers());
        a.start(Duration::ZERO);
        a.connected(Duration::ZERO);
        a.received(MS, Message::Welcome { revision: 1 });
        a.received(
            MS,
            Message::Snapshot {
                revision: 1,
                config: json!({"a": 1}),
            },
        );
        outputs(&mut a);
        a.received(
            2 * MS,
            Message::Delta {
                base: 7,
                revision: 8,
                patch: json!({"a": 2}),
            },
        );
        assert_eq!(
            outputs(&mut a),
            [Output::Close],
            "starts again for a snapshot"
        );
        assert_eq!(
            a.config().map(|(r, c)| (*r, Value::clone(c))),
            Some((1, json!({"a": 1})))
        );
    }

    #[test]
    fn the_peer_accepts_keeps_alive_and_drops_a_silent_agent() {
        let mut p = Peer::new(Duration::ZERO, timers());
        assert_eq!(p.node(), None);
        // Nothing is published before Hello.
        p.publish(5, &Arc::new(json!({})), None);
        assert!(events(&mut p).is_empty());
        p.received(Duration::ZERO, hello(None), &admit);
        assert_eq!(p.node(), Some("MuxVM"));
        assert_eq!(
            events(&mut p),
            [
                Event::Send(Message::Welcome { revision: 5 }),
                Event::Accepted {
                    node: "MuxVM".into(),
                    applied: None
                }
            ]
        );
        assert_eq!(p.poll_at(), Some(S));
        p.poll(999 * MS);
        assert!(events(&mut p).is_empty());
        p.poll(S);
        assert_eq!(events(&mut p), [Event::Send(Message::Keepalive)]);
        assert_eq!(p.poll_at(), Some(2 * S));
        p.received(2500 * MS, Message::Keepalive, &admit);
        p.poll(5499 * MS);
        assert!(
            !events(&mut p).iter().any(|e| matches!(e, Event::Close(_))),
            "heard at 2.5 s: up until 5.5 s"
        );
        p.poll(5500 * MS);
        assert!(
            events(&mut p)
                .iter()
                .any(|e| matches!(e, Event::Close(r) if r.contains("MuxVM silent for 3s")))
        );
        assert_eq!(p.poll_at(), None, "closed: no more timers");
    }

    #[test]
    fn the_peer_sends_a_snapshot_a_delta_or_nothing_as_the_agent_needs() {
        let mut p = Peer::new(Duration::ZERO, timers());
        p.received(Duration::ZERO, hello(Some(5)), &admit);
        events(&mut p);
        // The agent has revision 5 already.
        p.publish(5, &Arc::new(json!({"a": 1})), Some(5));
        assert!(events(&mut p).is_empty());
        // The same revision, another configuration: the whole of it.
        p.publish(5, &Arc::new(json!({"a": 2})), Some(5));
        assert_eq!(
            events(&mut p),
            [Event::Send(Message::Snapshot {
                revision: 5,
                config: json!({"a": 2})
            })]
        );
        // And the same again: nothing.
        p.publish(5, &Arc::new(json!({"a": 2})), Some(5));
        assert!(events(&mut p).is_empty());
        p.publish(6, &Arc::new(json!({"a": 2, "b": 3})), Some(5));
        assert_eq!(
            events(&mut p),
            [Event::Send(Message::Delta {
                base: 5,
                revision: 6,
                patch: json!({"b": 3})
            })]
        );
    }

    #[test]
    fn the_peer_names_what_ends_a_connection() {
        let close = |p: &mut Peer| {
            events(p).into_iter().find_map(|e| match e {
                Event::Close(r) => Some(r),
                _ => None,
            })
        };
        let mut p = Peer::new(Duration::ZERO, timers());
        p.received(
            Duration::ZERO,
            Message::Snapshot {
                revision: 1,
                config: json!({}),
            },
            &admit,
        );
        assert_eq!(close(&mut p).as_deref(), Some("Snapshot before Hello"));
        let mut p = Peer::new(Duration::ZERO, timers());
        p.received(Duration::ZERO, hello(None), &admit);
        p.received(Duration::ZERO, Message::Welcome { revision: 1 }, &admit);
        assert_eq!(close(&mut p).as_deref(), Some("unexpected Welcome"));
        // Closed: nothing more is taken.
        p.received(Duration::ZERO, Message::Applied { revision: 1 }, &admit);
        assert!(events(&mut p).is_empty());
        let mut p = Peer::new(Duration::ZERO, timers());
        p.malformed("not JSON");
        assert_eq!(
            close(&mut p).as_deref(),
            Some("malformed message: not JSON")
        );
        let mut p = Peer::new(Duration::ZERO, timers());
        p.end("the node's resource was deleted".into());
        assert_eq!(
            close(&mut p).as_deref(),
            Some("the node's resource was deleted")
        );
    }

    #[test]
    fn a_frame_may_be_as_long_as_the_limit_and_no_longer() {
        let mut d = Decoder::new();
        d.push(&(crate::frame::MAX_FRAME as u32).to_be_bytes());
        assert_eq!(d.next_message(), Ok(None), "waits for the body");
        let mut d = Decoder::new();
        d.push(&(crate::frame::MAX_FRAME as u32 + 1).to_be_bytes());
        assert_eq!(
            d.next_message(),
            Err(FrameError::TooLong(crate::frame::MAX_FRAME + 1))
        );
    }
}
