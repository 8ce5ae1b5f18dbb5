//! Speakers wired to each other in memory: every byte between them goes through the
//! codec, the sessions and the RIBs, as it would over TCP.

use std::collections::HashMap;

use super::*;
use crate::codec::AsPath;
use crate::session::Config;

/// A speaker and the addresses it owns.
struct Node {
    speaker: Speaker,
    addresses: Vec<Ipv4Addr>,
}

/// Speakers and the connections between them.
struct Net {
    nodes: Vec<Node>,
    /// (node, connection) to the other end.
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    now: Duration,
    /// UPDATE messages written by each node.
    updates_sent: Vec<usize>,
    /// Refuse connections (a speaker cut off).
    cut: Vec<bool>,
}

/// A speaker of AS `asn` owning `addresses`.
fn node(asn: u32, peers: Vec<PeerConfig>, addresses: &[&str]) -> Node {
    Node {
        speaker: Speaker::new(asn, None, peers),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A neighbor of a node: its address, our address toward it, its AS.
fn peer(local_as: u32, id: &str, address: &str, local: &str, peer_as: u32) -> PeerConfig {
    let mut session = Config::new(local_as, ip(id), peer_as);
    session.connect_retry = Duration::from_secs(5);
    PeerConfig {
        address: IpAddr::V4(ip(address)),
        local_address: ip(local),
        session,
    }
}

impl Net {
    fn new(nodes: Vec<Node>) -> Net {
        let n = nodes.len();
        let mut net = Net {
            nodes,
            links: HashMap::new(),
            now: Duration::ZERO,
            updates_sent: vec![0; n],
            cut: vec![false; n],
        };
        for node in &mut net.nodes {
            node.speaker.start(net.now);
        }
        net
    }

    /// A---S---B: S (AS 65000) between A (AS 65001) and B (AS 65002).
    fn line() -> Net {
        Net::line_with(|_| {})
    }

    /// [`Net::line`], each neighbor's configuration changed by `f`.
    fn line_with(f: impl Fn(&mut PeerConfig)) -> Net {
        let peer = |local_as, id, address, local, peer_as| {
            let mut p = peer(local_as, id, address, local, peer_as);
            f(&mut p);
            p
        };
        Net::new(vec![
            node(
                65001,
                vec![peer(65001, "1.1.1.1", "10.0.0.2", "10.0.0.1", 65000)],
                &["10.0.0.1"],
            ),
            node(
                65000,
                vec![
                    peer(65000, "2.2.2.2", "10.0.0.1", "10.0.0.2", 65001),
                    peer(65000, "2.2.2.2", "10.0.1.1", "10.0.1.2", 65002),
                ],
                &["10.0.0.2", "10.0.1.2"],
            ),
            node(
                65002,
                vec![peer(65002, "3.3.3.3", "10.0.1.2", "10.0.1.1", 65000)],
                &["10.0.1.1"],
            ),
        ])
    }

    /// Carries outputs until nothing moves; then a second of time passes.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].speaker.poll_output() {
                    moved = true;
                    self.carry(i, out);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the speakers do not settle");
    }

    fn carry(&mut self, from: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Connect(p) => {
                let config = self.nodes[from].speaker.peers[p.0].config.clone();
                let to = self.nodes.iter().position(|n| {
                    IpAddr::V4(n.addresses[0]) == config.address
                        || n.addresses.iter().any(|a| IpAddr::V4(*a) == config.address)
                });
                let theirs = to.and_then(|t| {
                    self.nodes[t]
                        .speaker
                        .peer_by_address(IpAddr::V4(config.local_address))
                        .map(|q| (t, q))
                });
                match theirs {
                    Some((t, q)) if !self.cut[t] && !self.cut[from] => {
                        let a = self.nodes[from].speaker.connected(p, true, now);
                        let b = self.nodes[t].speaker.connected(q, false, now);
                        match (a, b) {
                            (Some(a), Some(b)) => {
                                self.links.insert((from, a), (t, b));
                                self.links.insert((t, b), (from, a));
                            }
                            (Some(a), None) => self.nodes[from].speaker.closed(a, now),
                            (None, Some(b)) => self.nodes[t].speaker.closed(b, now),
                            (None, None) => {}
                        }
                    }
                    _ => self.nodes[from].speaker.connect_failed(p, now),
                }
            }
            Output::Send(c, bytes) => {
                let mut rest = &bytes[..];
                while let Ok(Some(len)) = codec::message_len(rest) {
                    if rest[18] == 2 {
                        self.updates_sent[from] += 1;
                    }
                    rest = &rest[len..];
                }
                if let Some(&(t, theirs)) = self.links.get(&(from, c)) {
                    self.nodes[t].speaker.received(theirs, &bytes, now);
                }
            }
            Output::Close(c) => {
                if let Some((t, theirs)) = self.links.remove(&(from, c)) {
                    self.links.remove(&(t, theirs));
                    self.nodes[t].speaker.closed(theirs, now);
                }
            }
            Output::Established(_) | Output::Down(..) => {}
        }
    }

    /// Lets `seconds` pass, a second at a time.
    fn wait(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.run();
            self.now += Duration::from_secs(1);
            for n in &mut self.nodes {
                n.speaker.poll(self.now);
            }
        }
        self.run();
    }

    fn state(&self, node: usize, peer: usize) -> State {
        self.nodes[node].speaker.peers().nth(peer).unwrap().state
    }

    fn received(&self, node: usize, peer: usize) -> &AdjRibIn {
        self.nodes[node].speaker.peers().nth(peer).unwrap().received
    }

    /// `node` announces `prefix` with `next_hop`, and the news spreads.
    fn announce(&mut self, node: usize, prefix: &str, next_hop: &str) -> IpNet {
        let prefix = net(prefix);
        let now = self.now;
        let hop: IpAddr = next_hop.parse().unwrap();
        self.nodes[node].speaker.announce(prefix, hop, now);
        self.run();
        prefix
    }
}

fn as_path(path: &Path) -> Vec<u32> {
    path.as_path
        .segments
        .iter()
        .flat_map(|s| s.asns.iter().copied())
        .collect()
}

#[test]
fn routes_pass_through_with_our_as_prepended_and_our_next_hop() {
    let mut n = Net::line();
    n.wait(2);
    assert_eq!(n.state(0, 0), State::Established);
    assert_eq!(n.state(2, 0), State::Established);

    let vip = n.announce(0, "192.168.133.74/32", "10.0.0.1");
    let at_b = n.received(2, 0).get(&vip).expect("B has the VIP");
    assert_eq!(as_path(at_b), vec![65000, 65001]);
    assert_eq!(at_b.next_hop, IpAddr::V4(ip("10.0.1.2")));
    // S learned it from A and does not send it back.
    assert!(n.nodes[1].speaker.peers().next().unwrap().sent.is_empty());
    assert_eq!(
        n.nodes[1].speaker.next_hops(&vip),
        vec![IpAddr::V4(ip("10.0.0.1"))]
    );

    n.nodes[0].speaker.withdraw(vip, n.now);
    n.run();
    assert!(n.received(2, 0).is_empty());
    assert!(n.received(1, 0).is_empty());
}

#[test]
fn a_neighbor_that_goes_down_takes_its_routes_with_it() {
    let mut n = Net::line();
    n.wait(2);
    let prefixes: Vec<IpNet> = (0..100u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()))
        .collect();
    n.nodes[0]
        .speaker
        .announce_all(&prefixes, IpAddr::V4(ip("10.0.0.1")), n.now);
    n.run();
    assert_eq!(n.received(2, 0).len(), 100);
    n.nodes[0].speaker.stop(n.now, "");
    n.run();
    assert_eq!(n.state(1, 0), State::Idle);
    assert!(n.received(2, 0).is_empty(), "B still has A's routes");
    assert!(matches!(
        n.nodes[1].speaker.peers().next().unwrap().last_down,
        Some(DownReason::Received(codec::Notification {
            code: 6,
            subcode: 2,
            ..
        }))
    ));
}

#[test]
fn a_full_table_goes_out_packed_into_few_updates() {
    let mut n = Net::line();
    // A announces before B is up: B gets it all when its session comes up.
    n.cut[2] = true;
    n.wait(2);
    let prefixes: Vec<IpNet> = (0..20_000u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()))
        .collect();
    n.nodes[0]
        .speaker
        .announce_all(&prefixes, IpAddr::V4(ip("10.0.0.1")), n.now);
    n.run();
    assert_eq!(n.received(1, 0).len(), 20_000);
    let before = n.updates_sent[1];
    n.cut[2] = false;
    n.wait(6);
    assert_eq!(n.state(2, 0), State::Established);
    assert_eq!(n.received(2, 0).len(), 20_000);
    // 20,000 /24s at 4 bytes each, about 1,000 to a 4,096-byte UPDATE: 20 of them,
    // and the End-of-RIB.
    let updates = n.updates_sent[1] - before;
    assert!((21..=23).contains(&updates), "{updates} UPDATEs");
}

#[test]
fn a_mass_withdrawal_of_ipv6_routes_goes_in_few_full_updates() {
    let mut n = Net::line_with(|p| {
        p.session.families.push((afi::IPV6, codec::SAFI_UNICAST));
    });
    n.wait(2);
    // 1,000 /64s: 9 bytes each in MP_UNREACH_NLRI, 9,000 bytes to withdraw.
    let prefixes: Vec<IpNet> = (0..1_000u128)
        .map(|i| {
            IpNet::V6(
                ipnet::Ipv6Net::new(((0x2001_0db8u128 << 96) | (i << 64)).into(), 64).unwrap(),
            )
        })
        .collect();
    let before = n.updates_sent[1];
    n.nodes[0]
        .speaker
        .announce_all(&prefixes, "2001:db8::1".parse().unwrap(), n.now);
    n.run();
    assert_eq!(n.received(2, 0).len(), 1_000);
    let updates = n.updates_sent[1] - before;
    assert!((3..=6).contains(&updates), "{updates} UPDATEs to announce");
    let before = n.updates_sent[1];
    let now = n.now;
    n.nodes[1].speaker.remove_peer(PeerId(0), "", now);
    n.run();
    assert!(n.received(2, 0).is_empty(), "every route withdrawn");
    let updates = n.updates_sent[1] - before;
    assert!((3..=4).contains(&updates), "{updates} UPDATEs");
}

#[test]
fn ipv6_routes_go_out_in_mp_reach_with_an_ipv6_next_hop() {
    let mut n = Net::line_with(|p| {
        p.session.families.push((afi::IPV6, codec::SAFI_UNICAST));
    });
    n.nodes[1].speaker.next_hop6 = Some("2001:db8:1::2".parse().unwrap());
    n.wait(2);
    let prefix = net("2001:db8:133::74/128");
    n.nodes[0]
        .speaker
        .announce(prefix, "2001:db8::1".parse().unwrap(), n.now);
    n.run();
    let at_b = n.received(2, 0).get(&prefix).expect("B has the IPv6 route");
    assert_eq!(at_b.next_hop, "2001:db8:1::2".parse::<IpAddr>().unwrap());
    assert_eq!(as_path(at_b), vec![65000, 65001]);
    n.nodes[0].speaker.withdraw(prefix, n.now);
    n.run();
    assert!(n.received(2, 0).is_empty());
}

#[test]
fn a_route_is_not_sent_to_a_neighbor_whose_as_is_on_its_path() {
    let mut n = Net::line();
    n.wait(2);
    // B announces a route A already went through: S does not offer it to A.
    let prefix = n.announce(2, "198.51.100.0/24", "10.0.1.1");
    assert!(n.received(0, 0).get(&prefix).is_some());
    assert_eq!(
        as_path(n.received(0, 0).get(&prefix).unwrap()),
        vec![65000, 65002]
    );
    // A route whose path holds 65001 (A's AS) goes no further than S.
    let u = Update {
        attributes: vec![
            Attribute::Origin(codec::Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65002, 65001])),
            Attribute::NextHop(ip("10.0.1.1")),
        ],
        nlri: vec!["203.0.113.0/24".parse().unwrap()],
        ..Update::default()
    };
    let changed = n.nodes[1].speaker.peers[1].adj_in.apply(
        &u,
        &Import {
            local_as: 65000,
            own_addresses: &[],
            session_address: None,
        },
    );
    let now = n.now;
    n.nodes[1].speaker.propagate(&changed, now);
    n.run();
    assert!(n.received(1, 1).get(&net("203.0.113.0/24")).is_some());
    assert!(n.received(0, 0).get(&net("203.0.113.0/24")).is_none());
    // Not sent at all (A would have dropped it as a loop anyway).
    let to_a = n.nodes[1].speaker.peers().next().unwrap();
    assert!(to_a.sent.get(&net("203.0.113.0/24")).is_none());
}

#[test]
fn routes_from_one_internal_neighbor_do_not_go_to_another() {
    // I1 --iBGP-- S --iBGP-- I2, all AS 65000, and A (65001) outside.
    let mut n = Net::new(vec![
        node(
            65000,
            vec![peer(65000, "4.4.4.4", "10.0.2.2", "10.0.2.1", 65000)],
            &["10.0.2.1"],
        ),
        node(
            65000,
            vec![
                peer(65000, "2.2.2.2", "10.0.2.1", "10.0.2.2", 65000),
                peer(65000, "2.2.2.2", "10.0.3.1", "10.0.3.2", 65000),
                peer(65000, "2.2.2.2", "10.0.0.1", "10.0.0.2", 65001),
            ],
            &["10.0.2.2", "10.0.3.2", "10.0.0.2"],
        ),
        node(
            65000,
            vec![peer(65000, "5.5.5.5", "10.0.3.2", "10.0.3.1", 65000)],
            &["10.0.3.1"],
        ),
        node(
            65001,
            vec![peer(65001, "1.1.1.1", "10.0.0.2", "10.0.0.1", 65000)],
            &["10.0.0.1"],
        ),
    ]);
    n.wait(2);
    let p = n.announce(0, "198.51.100.0/24", "10.0.2.1");
    assert!(n.nodes[1].speaker.best(&p).is_some());
    assert!(n.received(2, 0).get(&p).is_none(), "no reflection");
    assert!(n.received(3, 0).get(&p).is_some(), "but out of the AS");
}

#[test]
fn simultaneous_opens_leave_one_session() {
    // Two speakers that both connect at once: each sees its own connection and the
    // other's, and both keep the one the higher BGP Identifier opened.
    let mut n = Net::new(vec![
        node(
            65001,
            vec![peer(65001, "1.1.1.1", "10.0.0.2", "10.0.0.1", 65000)],
            &["10.0.0.1"],
        ),
        node(
            65000,
            vec![peer(65000, "2.2.2.2", "10.0.0.1", "10.0.0.2", 65001)],
            &["10.0.0.2"],
        ),
    ]);
    // Both Connect outputs are pending: take them both before carrying either out.
    let a = n.nodes[0].speaker.poll_output();
    let b = n.nodes[1].speaker.poll_output();
    assert_eq!(a, Some(Output::Connect(PeerId(0))));
    assert_eq!(b, Some(Output::Connect(PeerId(0))));
    n.carry(0, Output::Connect(PeerId(0)));
    n.carry(1, Output::Connect(PeerId(0)));
    n.wait(2);
    assert_eq!(n.state(0, 0), State::Established);
    assert_eq!(n.state(1, 0), State::Established);
    // One connection each way was opened; one survived.
    assert_eq!(n.links.len(), 2);
    let prefix = n.announce(0, "192.0.2.0/24", "10.0.0.1");
    assert!(n.received(1, 0).get(&prefix).is_some());
}

#[test]
fn chunks_fit_the_room_given() {
    let prefixes: Vec<IpNet> = (0..3000u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(i << 8), 24).unwrap()))
        .collect();
    let parts: Vec<&[IpNet]> = chunks(&prefixes, 4000).collect();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|c| c.len() * 4 <= 4000));
    assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 3000);
}

mod stream {
    use super::*;
    use proptest::prelude::*;

    /// A speaker with one passive neighbor at 10.0.0.1, and a connection from it.
    fn accepted() -> (Speaker, ConnId) {
        let mut config = peer(65000, "2.2.2.2", "10.0.0.1", "10.0.0.2", 65001);
        config.session.passive = true;
        let mut s = Speaker::new(65000, None, vec![config]);
        s.start(Duration::ZERO);
        let conn = s.connected(PeerId(0), false, Duration::ZERO).unwrap();
        (s, conn)
    }

    /// OPEN, KEEPALIVE and three UPDATEs from the neighbor, as bytes.
    fn stream() -> Vec<u8> {
        let options = codec::Options {
            four_octet_as: true,
            external: false,
        };
        let mut out = Vec::new();
        let open = codec::Open {
            version: 4,
            my_as: 65001,
            hold_time: 90,
            bgp_id: ip("1.1.1.1"),
            capabilities: vec![codec::Capability::FourOctetAs(65001)],
        };
        codec::encode(&Message::Open(open), options, &mut out).unwrap();
        codec::encode(&Message::Keepalive, options, &mut out).unwrap();
        for u in 0..3u32 {
            let update = Update {
                attributes: vec![
                    Attribute::Origin(codec::Origin::Igp),
                    Attribute::AsPath(AsPath::sequence(vec![65001])),
                    Attribute::NextHop(ip("10.0.0.1")),
                ],
                nlri: (0..200u32)
                    .map(|i| {
                        ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (u << 16) | (i << 8)), 24)
                            .unwrap()
                    })
                    .collect(),
                ..Update::default()
            };
            codec::encode(&Message::Update(update), options, &mut out).unwrap();
        }
        out
    }

    proptest! {
        /// TCP cuts a stream anywhere: the routes come out the same.
        #[test]
        fn a_stream_cut_anywhere_gives_the_same_routes(
            cuts in proptest::collection::vec(0usize..3000, 0..12)
        ) {
            let bytes = stream();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let (mut s, conn) = accepted();
            let mut at = 0;
            for cut in cuts {
                s.received(conn, &bytes[at..cut], Duration::ZERO);
                at = cut;
            }
            let status = s.peers().next().unwrap();
            prop_assert_eq!(status.state, State::Established);
            prop_assert_eq!(status.received.len(), 600);
        }

        /// Whatever arrives, the speaker answers without panicking.
        #[test]
        fn any_bytes_are_answered_without_panic(
            junk in proptest::collection::vec(any::<u8>(), 0..600),
            keep in 0usize..200,
        ) {
            let mut bytes = stream();
            bytes.truncate(keep);
            bytes.extend_from_slice(&junk);
            let (mut s, conn) = accepted();
            s.received(conn, &bytes, Duration::ZERO);
            while s.poll_output().is_some() {}
        }
    }
}

mod graceful_restart {
    use super::*;

    /// The line with graceful restart announced by every speaker.
    fn line() -> Net {
        Net::line_with(|p| p.session.graceful_restart = Some(30))
    }

    /// A's connection to S is lost without a NOTIFICATION (A crashed).
    fn crash_a(n: &mut Net) {
        let links: Vec<(usize, ConnId)> = n
            .links
            .keys()
            .filter(|(node, _)| *node == 0)
            .copied()
            .collect();
        let now = n.now;
        for (node, conn) in links {
            if let Some((t, theirs)) = n.links.remove(&(node, conn)) {
                n.links.remove(&(t, theirs));
                n.nodes[t].speaker.closed(theirs, now);
            }
        }
        n.nodes[0].speaker.reset(now);
        while n.nodes[0].speaker.poll_output().is_some() {}
        n.run();
    }

    #[test]
    fn a_restarting_neighbors_routes_stay_until_its_end_of_rib() {
        let mut n = line();
        n.wait(2);
        let keep = net("198.51.100.0/24");
        let gone = net("203.0.113.0/24");
        let hop = IpAddr::V4(ip("10.0.0.1"));
        n.nodes[0].speaker.announce_all(&[keep, gone], hop, n.now);
        n.run();
        assert_eq!(n.received(2, 0).len(), 2);

        crash_a(&mut n);
        n.wait(1);
        // S keeps A's routes, stale, and B never hears of the crash.
        assert_eq!(n.received(1, 0).len(), 2);
        assert_eq!(n.received(2, 0).len(), 2);

        // A comes back announcing only one of them: after its End-of-RIB the other goes.
        n.nodes[0].speaker.withdraw(gone, n.now);
        n.nodes[0].speaker.start(n.now);
        n.wait(6);
        assert_eq!(n.state(1, 0), State::Established);
        assert!(n.received(1, 0).get(&keep).is_some());
        assert!(n.received(1, 0).get(&gone).is_none());
        assert!(n.received(2, 0).get(&gone).is_none());
        assert!(n.received(2, 0).get(&keep).is_some());
    }

    #[test]
    fn stale_routes_go_when_the_restart_time_runs_out() {
        let mut n = line();
        n.wait(2);
        let prefix = n.announce(0, "198.51.100.0/24", "10.0.0.1");
        crash_a(&mut n);
        n.cut[0] = true;
        n.wait(25);
        assert!(n.received(2, 0).get(&prefix).is_some(), "gone before 30 s");
        n.wait(10);
        assert!(n.received(1, 0).is_empty());
        assert!(n.received(2, 0).is_empty());
    }

    #[test]
    fn a_restart_time_of_zero_keeps_nothing() {
        let mut n = Net::line_with(|p| p.session.graceful_restart = Some(0));
        n.wait(2);
        let prefix = n.announce(0, "198.51.100.0/24", "10.0.0.1");
        assert!(n.received(2, 0).get(&prefix).is_some());
        crash_a(&mut n);
        assert!(n.received(1, 0).is_empty(), "no stale routes for 0 s");
        assert!(n.received(2, 0).is_empty());
    }

    #[test]
    fn without_graceful_restart_a_lost_connection_takes_the_routes() {
        let mut n = Net::line();
        n.wait(2);
        let prefix = n.announce(0, "198.51.100.0/24", "10.0.0.1");
        assert!(n.received(2, 0).get(&prefix).is_some());
        crash_a(&mut n);
        assert!(n.received(2, 0).is_empty());
    }
}

mod model {
    //! Random announcements and withdrawals from two neighbors; what a third neighbor
    //! ends up with must be what the rules say: for each prefix, the best of what is
    //! announced, with our AS prepended and our next hop.

    use super::*;
    use proptest::prelude::*;

    /// S (AS 65000) with A (65001), B (65002) and C (65003) around it.
    fn star() -> Net {
        let mut n = Net::new(vec![
            node(
                65001,
                vec![peer(65001, "1.1.1.1", "10.0.1.2", "10.0.1.1", 65000)],
                &["10.0.1.1"],
            ),
            node(
                65002,
                vec![peer(65002, "3.3.3.3", "10.0.2.2", "10.0.2.1", 65000)],
                &["10.0.2.1"],
            ),
            node(
                65003,
                vec![peer(65003, "4.4.4.4", "10.0.3.2", "10.0.3.1", 65000)],
                &["10.0.3.1"],
            ),
            node(
                65000,
                vec![
                    peer(65000, "2.2.2.2", "10.0.1.1", "10.0.1.2", 65001),
                    peer(65000, "2.2.2.2", "10.0.2.1", "10.0.2.2", 65002),
                    peer(65000, "2.2.2.2", "10.0.3.1", "10.0.3.2", 65003),
                ],
                &["10.0.1.2", "10.0.2.2", "10.0.3.2"],
            ),
        ]);
        n.wait(2);
        n
    }

    fn prefix(i: u8) -> IpNet {
        net(&format!("198.51.{i}.0/24"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_third_neighbor_sees_the_best_of_what_is_announced(
            ops in proptest::collection::vec((0usize..2, 0u8..6, any::<bool>()), 1..40)
        ) {
            let mut n = star();
            for node in 0..3 {
                prop_assert_eq!(n.state(node, 0), State::Established);
            }
            let mut announced = [[false; 6]; 2];
            for (from, i, announce) in ops {
                let now = n.now;
                if announce {
                    let hop = IpAddr::V4(n.nodes[from].addresses[0]);
                    n.nodes[from].speaker.announce(prefix(i), hop, now);
                } else {
                    n.nodes[from].speaker.withdraw(prefix(i), now);
                }
                announced[from][usize::from(i)] = announce;
                n.run();
            }
            let at_c = n.received(2, 0);
            for i in 0..6u8 {
                // A and B tie on every step of selection; the lower BGP Identifier
                // (A's 1.1.1.1) wins.
                let expected = if announced[0][usize::from(i)] {
                    Some(vec![65000, 65001])
                } else if announced[1][usize::from(i)] {
                    Some(vec![65000, 65002])
                } else {
                    None
                };
                let got = at_c.get(&prefix(i));
                prop_assert_eq!(got.map(|p| as_path(p)), expected, "prefix {}", i);
                if let Some(p) = got {
                    prop_assert_eq!(p.next_hop, IpAddr::V4(ip("10.0.3.2")));
                }
            }
            // And S sent C exactly what C holds.
            prop_assert_eq!(at_c.len(), n.nodes[3].speaker.peers().nth(2).unwrap().sent.len());
        }
    }
}

#[test]
fn routes_of_a_family_not_negotiated_are_ignored() {
    // S offers IPv6 to nobody; A sends an IPv6 route anyway (a raw UPDATE, as a
    // misbehaving peer would).
    let mut n = Net::line();
    n.wait(2);
    let v6 = net("2001:db8:100::/48");
    let update = Update {
        attributes: vec![
            Attribute::Origin(codec::Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65001])),
            Attribute::MpReach(MpReach {
                afi: afi::IPV6,
                safi: codec::SAFI_UNICAST,
                next_hops: vec!["2001:db8::1".parse().unwrap()],
                nlri: vec![v6],
            }),
        ],
        ..Update::default()
    };
    let conn = n.nodes[1].speaker.peers[0].conn.as_ref().unwrap().id;
    let mut bytes = Vec::new();
    codec::encode(
        &Message::Update(update),
        n.nodes[1].speaker.peers[0].session.options(),
        &mut bytes,
    )
    .unwrap();
    let now = n.now;
    n.nodes[1].speaker.received(conn, &bytes, now);
    n.run();
    assert_eq!(n.state(1, 0), State::Established);
    assert!(n.received(1, 0).get(&v6).is_none());
}

/// A (AS 65001) --eBGP-- S (AS 65000) --iBGP-- I (AS 65000).
fn with_internal_neighbor(rules: Option<Rules>) -> Net {
    let mut s = node(
        65000,
        vec![
            peer(65000, "2.2.2.2", "10.0.0.1", "10.0.0.2", 65001),
            peer(65000, "2.2.2.2", "10.0.2.1", "10.0.2.2", 65000),
        ],
        &["10.0.0.2", "10.0.2.2"],
    );
    if let Some(r) = rules {
        s.speaker.set_rules(r);
    }
    Net::new(vec![
        node(
            65001,
            vec![peer(65001, "1.1.1.1", "10.0.0.2", "10.0.0.1", 65000)],
            &["10.0.0.1"],
        ),
        s,
        node(
            65000,
            vec![peer(65000, "4.4.4.4", "10.0.2.2", "10.0.2.1", 65000)],
            &["10.0.2.1"],
        ),
    ])
}

#[test]
fn the_preference_of_external_routes_is_the_speakers_rule() {
    let best_from = |rules: Option<Rules>| {
        let mut n = with_internal_neighbor(rules);
        n.wait(2);
        let p = n.announce(0, "198.51.100.0/24", "10.0.0.1");
        n.announce(2, "198.51.100.0/24", "10.0.2.1");
        let (source, path) = n.nodes[1]
            .speaker
            .best(&p)
            .map(|(s, p)| (s, p.clone()))
            .unwrap();
        (source, path.next_hop)
    };
    // Equal preference (100): the internal route's shorter AS_PATH wins.
    let (_, hop) = best_from(None);
    assert_eq!(hop, IpAddr::V4(ip("10.0.2.1")));
    // External routes preferred at 150: the external one wins on step (a).
    let rules = Rules {
        external_preference: 150,
        ..Rules::new(0)
    };
    let (source, hop) = best_from(Some(rules));
    assert_eq!(hop, IpAddr::V4(ip("10.0.0.1")));
    assert_eq!(source, Source::Peer(PeerId(0)));
}

#[test]
fn a_local_address_change_is_the_next_hop_of_later_routes() {
    let mut n = Net::line();
    n.wait(2);
    n.nodes[1]
        .speaker
        .set_local_address(PeerId(1), ip("10.0.1.9"));
    let p = n.announce(0, "198.51.100.0/24", "10.0.0.1");
    assert_eq!(
        n.received(2, 0).get(&p).unwrap().next_hop,
        IpAddr::V4(ip("10.0.1.9"))
    );
}

#[test]
fn routes_whose_next_hop_is_one_of_our_addresses_are_ignored() {
    let mut n = Net::line();
    n.wait(2);
    // S takes A's address for one of its own (a misconfiguration A's routes expose).
    n.nodes[1]
        .speaker
        .set_own_addresses(vec![IpAddr::V4(ip("10.0.0.1"))]);
    let p = n.announce(0, "198.51.100.0/24", "10.0.0.1");
    assert!(n.nodes[1].speaker.best(&p).is_none());
    assert!(n.received(2, 0).get(&p).is_none());
}

#[test]
fn changes_are_recorded_only_when_asked_and_taken_once() {
    let mut n = Net::line();
    n.wait(2);
    let p = n.announce(0, "198.51.100.0/24", "10.0.0.1");
    assert!(n.nodes[1].speaker.take_changed().is_empty(), "not asked");
    n.nodes[1].speaker.record_changes();
    let q = n.announce(0, "203.0.113.0/24", "10.0.0.1");
    assert_eq!(
        n.nodes[1].speaker.take_changed(),
        BTreeSet::from([q]),
        "only what changed since asking"
    );
    assert!(n.nodes[1].speaker.take_changed().is_empty(), "taken");
    n.nodes[0].speaker.withdraw(p, n.now);
    n.run();
    assert_eq!(n.nodes[1].speaker.take_changed(), BTreeSet::from([p]));
}

#[test]
fn the_speaker_says_when_it_next_has_work_and_what_it_originates() {
    let mut n = Net::line();
    n.wait(2);
    let now = n.now;
    let at = n.nodes[1].speaker.poll_at().expect("timers run");
    assert!(at > now && at <= now + Duration::from_secs(30), "{at:?}");
    assert!(n.nodes[0].speaker.originated().is_empty());
    let p = n.announce(0, "198.51.100.0/24", "10.0.0.1");
    assert!(n.nodes[0].speaker.originated().get(&p).is_some());
    assert_eq!(n.nodes[0].speaker.originated().len(), 1);
}

#[test]
fn next_hops_are_kept_for_own_routes_and_inside_the_as_and_replaced_outside() {
    // S's own route with a next hop of its choosing keeps it, to anyone; with none
    // (unspecified), S's address toward each neighbor.
    let mut n = Net::line_with(|p| {
        p.session.families.push((afi::IPV6, codec::SAFI_UNICAST));
    });
    n.wait(2);
    let own = n.announce(1, "198.51.100.0/24", "10.0.1.7");
    assert_eq!(
        n.received(2, 0).get(&own).unwrap().next_hop,
        IpAddr::V4(ip("10.0.1.7"))
    );
    let unspecified = n.announce(1, "203.0.113.0/24", "0.0.0.0");
    assert_eq!(
        n.received(2, 0).get(&unspecified).unwrap().next_hop,
        IpAddr::V4(ip("10.0.1.2"))
    );
    assert_eq!(
        n.received(0, 0).get(&unspecified).unwrap().next_hop,
        IpAddr::V4(ip("10.0.0.2"))
    );
    let own6 = n.announce(1, "2001:db8:7::/48", "2001:db8::7");
    assert_eq!(
        n.received(2, 0).get(&own6).unwrap().next_hop,
        "2001:db8::7".parse::<IpAddr>().unwrap()
    );
    // A route learned from outside goes inside with its next hop unchanged.
    let mut n = with_internal_neighbor(None);
    n.wait(2);
    let learned = n.announce(0, "192.0.2.0/24", "10.0.0.1");
    assert_eq!(
        n.received(2, 0).get(&learned).unwrap().next_hop,
        IpAddr::V4(ip("10.0.0.1"))
    );
}

#[test]
fn updates_with_long_attributes_still_fill_but_fit_4096_bytes() {
    let mut n = Net::line();
    n.wait(2);
    assert_eq!(n.state(2, 0), State::Established);
    let mut path = Path::local(IpAddr::V4(ip("10.0.0.1")));
    path.as_path = AsPath::sequence((0..100).map(|i| 4_200_000_000 + i).collect());
    path.communities = (0..100).collect();
    let prefixes: Vec<IpNet> = (0..3_000u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()))
        .collect();
    let now = n.now;
    let s = &mut n.nodes[1].speaker;
    let a = PeerId(0);
    let update = Update {
        attributes: {
            let mut attrs = export_attributes(&Arc::new(path), 65001, false, true);
            attrs.push(Attribute::NextHop(ip("10.0.0.1")));
            attrs
        },
        nlri: prefixes.iter().filter_map(v4).collect(),
        ..Update::default()
    };
    let changed = s.peers[a.0].adj_in.apply(
        &update,
        &Import {
            local_as: 65000,
            own_addresses: &[],
            session_address: None,
        },
    );
    s.propagate(&changed, now);
    n.run();
    assert_eq!(
        n.received(2, 0).len(),
        3_000,
        "every route arrived: no UPDATE was too long"
    );
    // About 800 bytes of attributes leave room for ~800 /24s in each: 4 UPDATEs.
    assert!(n.updates_sent[1] <= 4 + 4, "{} UPDATEs", n.updates_sent[1]);
}

mod export {
    //! What a path becomes on its way out to a neighbor.

    use super::*;

    fn path() -> Path {
        let mut p = Path::local(IpAddr::V4(ip("10.0.0.1")));
        p.as_path = AsPath::sequence(vec![65001]);
        p
    }

    fn as_path_out(p: &Path, ibgp: bool) -> Vec<codec::AsSegment> {
        match export_attributes(p, 65000, ibgp, false)
            .into_iter()
            .find_map(|a| match a {
                Attribute::AsPath(p) => Some(p),
                _ => None,
            }) {
            Some(p) => p.segments,
            None => panic!("no AS_PATH"),
        }
    }

    #[test]
    fn our_as_goes_first_in_the_leading_sequence_or_in_a_new_one() {
        let p = path();
        assert_eq!(
            as_path_out(&p, false),
            AsPath::sequence(vec![65000, 65001]).segments
        );
        assert_eq!(
            as_path_out(&p, true),
            p.as_path.segments,
            "inside the AS: unchanged"
        );
        // A leading set: a sequence goes in front of it.
        let mut set = path();
        set.as_path.segments[0].set = true;
        let out = as_path_out(&set, false);
        assert_eq!(
            (out.len(), out[0].set, out[0].asns.clone()),
            (2, false, vec![65000])
        );
        // A full sequence (255): a new one.
        let mut full = path();
        full.as_path = AsPath::sequence((1..=255).collect());
        let out = as_path_out(&full, false);
        assert_eq!(
            (out.len(), out[0].asns.clone(), out[1].asns.len()),
            (2, vec![65000], 255)
        );
        let mut almost = path();
        almost.as_path = AsPath::sequence((1..=254).collect());
        assert_eq!(
            as_path_out(&almost, false)[0].asns.len(),
            255,
            "254 + ours fit"
        );
    }

    #[test]
    fn a_learned_med_stays_in_the_as_and_ours_goes_out() {
        let mut p = path();
        p.med = Some(7);
        let has_med = |ibgp, local| {
            export_attributes(&p, 65000, ibgp, local)
                .iter()
                .any(|a| matches!(a, Attribute::Med(7)))
        };
        assert!(!has_med(false, false), "learned, to another AS");
        assert!(has_med(false, true), "ours, to another AS");
        assert!(has_med(true, false), "learned, inside the AS");
    }

    #[test]
    fn transitive_attributes_go_on_and_non_transitive_communities_stay_in_the_as() {
        let transitive = [0x00, 2, 0xfd, 0xe9, 0, 0, 0, 1];
        let non_transitive = [0x40, 2, 0xfd, 0xe9, 0, 0, 0, 2];
        let mut v6_non = [0u8; 20];
        v6_non[0] = 0x40;
        let mut v6_transitive = [0u8; 20];
        v6_transitive[1] = 2;
        let mut p = path();
        p.transitive = vec![
            Attribute::Unknown {
                flags: 0xe0,
                code: 240,
                value: vec![1],
            },
            Attribute::Unknown {
                flags: 0xc0,
                code: 241,
                value: vec![2],
            },
            Attribute::ExtendedCommunities(vec![transitive, non_transitive]),
            Attribute::Ipv6ExtendedCommunities(vec![v6_non]),
            Attribute::Ipv6ExtendedCommunities(vec![v6_transitive, v6_non]),
        ];
        let out = export_attributes(&p, 65000, false, false);
        let unknown: Vec<(u8, u8)> = out
            .iter()
            .filter_map(|a| match a {
                Attribute::Unknown { flags, code, .. } => Some((*code, *flags)),
                _ => None,
            })
            .collect();
        assert_eq!(
            unknown,
            [(240, 0xe0), (241, 0xe0)],
            "passed on, Partial set"
        );
        assert!(out.contains(&Attribute::ExtendedCommunities(vec![transitive])));
        let v6: Vec<&Attribute> = out
            .iter()
            .filter(|a| matches!(a, Attribute::Ipv6ExtendedCommunities(_)))
            .collect();
        assert_eq!(
            v6,
            [&Attribute::Ipv6ExtendedCommunities(vec![v6_transitive])],
            "the first had nothing left and is not sent; the second keeps its transitive one"
        );
        let inside = export_attributes(&p, 65000, true, false);
        assert!(inside.contains(&Attribute::ExtendedCommunities(vec![
            transitive,
            non_transitive
        ])));
        assert!(inside.contains(&Attribute::Ipv6ExtendedCommunities(vec![v6_non])));
        assert!(inside.contains(&Attribute::Ipv6ExtendedCommunities(vec![
            v6_transitive,
            v6_non
        ])));
    }

    #[test]
    fn chunks_fill_the_room_exactly_and_no_further() {
        // /24s take 4 bytes each.
        let p: Vec<IpNet> = (0..3u32)
            .map(|i| {
                IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap())
            })
            .collect();
        let sizes = |room| chunks(&p, room).map(<[IpNet]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(12), [3]);
        assert_eq!(sizes(11), [2, 1]);
        assert_eq!(sizes(4), [1, 1, 1]);
        assert_eq!(sizes(0), [1, 1, 1], "at least one a chunk");
    }
}

#[test]
fn a_neighbor_status_counts_messages_and_says_since_when_and_what_was_negotiated() {
    let mut n = Net::line();
    n.wait(2);
    let established = n.now;
    let count = |n: &Net| {
        let a = n.nodes[0].speaker.peers().next().unwrap();
        let s = n.nodes[1].speaker.peers().next().unwrap();
        (a.messages_out, s.messages_in, s.messages_out, a.messages_in)
    };
    let before = count(&n);
    // OPEN, KEEPALIVE, End-of-RIB at least, each way (the losing connection of the
    // collision carried some of them: they count where they were written or read).
    assert!(
        before.0 >= 3 && before.1 >= 3 && before.2 >= 3 && before.3 >= 3,
        "{before:?}"
    );
    n.announce(0, "192.0.2.0/24", "10.0.0.1");
    n.wait(3);
    let after = count(&n);
    // On the one connection left, what one side writes the other reads (the UPDATE,
    // and any KEEPALIVE).
    assert!(after.0 > before.0, "{after:?}");
    assert_eq!(
        after.0 - before.0,
        after.1 - before.1,
        "{before:?} {after:?}"
    );
    assert_eq!(
        after.2 - before.2,
        after.3 - before.3,
        "{before:?} {after:?}"
    );
    let s = n.nodes[1].speaker.peers().next().unwrap();
    let since = s.established_at.expect("established");
    assert!(
        since < established,
        "up since the first two seconds: {since:?}"
    );
    let negotiated = s.negotiated.expect("negotiated");
    assert_eq!(negotiated.peer_as, 65001);
    assert_eq!(negotiated.peer_id, ip("1.1.1.1"));
    // Down: no uptime, nothing negotiated; the counts stay.
    let before = s.messages_in;
    n.nodes[0].speaker.stop(n.now, "");
    n.run();
    let s = n.nodes[1].speaker.peers().next().unwrap();
    assert_eq!(s.established_at, None);
    assert!(s.negotiated.is_none());
    assert!(s.messages_in > before, "the Cease was read");
}
