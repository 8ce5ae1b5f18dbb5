//! The speaker against raw neighbors: what a neighbor sends goes in as bytes, what the
//! others receive comes out as bytes, decoded here. Each test is a rule of RFC 4271
//! (selection, 6.3), RFC 1997, RFC 4456, RFC 7606, RFC 8092, RFC 8203 or RFC 4486.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use strata_bgp::codec::{self, *};
use strata_bgp::session::{Config, DownReason, State};
use strata_bgp::speaker::{ConnId, Output, PeerConfig, PeerId, Speaker};

const US: u32 = 65000;
const T0: Duration = Duration::ZERO;

/// A raw neighbor: its AS, and what the speaker wrote to it.
struct Neighbor {
    asn: u32,
    conn: Option<ConnId>,
    inbox: Vec<u8>,
    closed: bool,
}

/// The speaker (AS 65000, BGP Identifier 2.2.2.2, our address toward neighbor `i`
/// 10.0.i.2) and its raw neighbors at 10.0.i.1, all passive on our side.
struct Rig {
    speaker: Speaker,
    neighbors: Vec<Neighbor>,
    now: Duration,
    /// Capabilities the neighbors' OPENs carry besides the families and 4-octet AS.
    capabilities: Vec<Capability>,
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn peer_config(i: usize, asn: u32) -> PeerConfig {
    let mut session = Config::new(US, ip("2.2.2.2"), asn);
    session.passive = true;
    session.connect_retry = Duration::from_secs(5);
    session.families.push((afi::IPV6, SAFI_UNICAST));
    PeerConfig {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, i as u8, 1)),
        local_address: Ipv4Addr::new(10, 0, i as u8, 2),
        session,
    }
}

impl Rig {
    /// Neighbors of these ASes, every session established.
    fn new(ases: &[u32]) -> Rig {
        Rig::with(ases, Vec::new())
    }

    /// [`Rig::new`], the neighbors' OPENs carrying `capabilities` too.
    fn with(ases: &[u32], capabilities: Vec<Capability>) -> Rig {
        let peers = ases
            .iter()
            .enumerate()
            .map(|(i, &asn)| peer_config(i, asn))
            .collect();
        let mut speaker = Speaker::new(US, None, peers);
        speaker.start(T0);
        let mut rig = Rig {
            speaker,
            neighbors: ases
                .iter()
                .map(|&asn| Neighbor {
                    asn,
                    conn: None,
                    inbox: Vec::new(),
                    closed: false,
                })
                .collect(),
            now: T0,
            capabilities,
        };
        for i in 0..ases.len() {
            rig.connect(i);
            assert_eq!(rig.state(i), State::Established);
        }
        rig
    }

    fn options(&self, i: usize) -> Options {
        Options {
            four_octet_as: true,
            external: self.neighbors[i].asn != US,
        }
    }

    /// Neighbor `i` connects and sends its OPEN and KEEPALIVE.
    fn connect(&mut self, i: usize) {
        let conn = self.speaker.connected(PeerId(i), false, self.now).unwrap();
        let n = &mut self.neighbors[i];
        n.conn = Some(conn);
        n.closed = false;
        let open = Open {
            version: 4,
            my_as: u16::try_from(n.asn).unwrap_or(AS_TRANS),
            hold_time: 90,
            bgp_id: Ipv4Addr::new(1, 1, 1, i as u8 + 1),
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: afi::IPV4,
                    safi: SAFI_UNICAST,
                },
                Capability::Multiprotocol {
                    afi: afi::IPV6,
                    safi: SAFI_UNICAST,
                },
                Capability::FourOctetAs(n.asn),
            ]
            .into_iter()
            .chain(self.capabilities.iter().cloned())
            .collect(),
        };
        self.send(i, &Message::Open(open));
        self.send(i, &Message::Keepalive);
    }

    fn send(&mut self, i: usize, m: &Message) {
        let mut bytes = Vec::new();
        codec::encode(m, self.options(i), &mut bytes).unwrap();
        self.send_bytes(i, &bytes);
    }

    fn send_bytes(&mut self, i: usize, bytes: &[u8]) {
        let conn = self.neighbors[i].conn.unwrap();
        self.speaker.received(conn, bytes, self.now);
        self.carry();
    }

    fn carry(&mut self) {
        while let Some(out) = self.speaker.poll_output() {
            match out {
                Output::Send(c, bytes) => {
                    if let Some(n) = self.neighbors.iter_mut().find(|n| n.conn == Some(c)) {
                        n.inbox.extend_from_slice(&bytes);
                    }
                }
                Output::Close(c) => {
                    if let Some(n) = self.neighbors.iter_mut().find(|n| n.conn == Some(c)) {
                        n.closed = true;
                    }
                }
                _ => {}
            }
        }
    }

    fn state(&self, i: usize) -> State {
        self.speaker
            .peers()
            .find(|p| p.id == PeerId(i))
            .unwrap()
            .state
    }

    /// The messages neighbor `i` was sent since last asked.
    fn messages(&mut self, i: usize) -> Vec<Message> {
        let options = self.options(i);
        let n = &mut self.neighbors[i];
        let mut out = Vec::new();
        let mut rest = &n.inbox[..];
        while let Ok(Some(len)) = message_len(rest) {
            out.push(decode(&rest[..len], options).unwrap());
            rest = &rest[len..];
        }
        n.inbox.clear();
        out
    }

    /// The routes neighbor `i` was announced since last asked, with their attributes.
    fn announced(&mut self, i: usize) -> Vec<(IpNet, Update)> {
        let mut routes = Vec::new();
        for m in self.messages(i) {
            let Message::Update(u) = m else { continue };
            for p in &u.nlri {
                routes.push((IpNet::V4(*p), u.clone()));
            }
            for a in &u.attributes {
                if let Attribute::MpReach(m) = a {
                    for p in &m.nlri {
                        routes.push((*p, u.clone()));
                    }
                }
            }
        }
        routes
    }

    fn best_from(&self, p: &str) -> Option<usize> {
        match self.speaker.best(&prefix(p))? {
            (strata_bgp::speaker::Source::Peer(PeerId(i)), _) => Some(i),
            _ => None,
        }
    }
}

/// An UPDATE announcing `p` with the AS path `path`, next hop 10.0.`from`.1, and `extra`.
fn route(from: usize, p: &str, path: &[u32], extra: Vec<Attribute>) -> Message {
    let mut attributes = vec![
        Attribute::Origin(Origin::Igp),
        Attribute::AsPath(AsPath::sequence(path.to_vec())),
        Attribute::NextHop(Ipv4Addr::new(10, 0, from as u8, 1)),
    ];
    attributes.extend(extra);
    let IpNet::V4(p) = prefix(p) else { panic!() };
    Message::Update(Update {
        attributes,
        nlri: vec![p],
        ..Update::default()
    })
}

// RFC 4271 9.1.2.2 and 5.1.5, end to end.

#[test]
fn an_external_neighbors_local_pref_does_not_win_the_route() {
    // Neighbor 0 (AS 65001) attaches LOCAL_PREF 1000 to a longer path; neighbor 1 (AS
    // 65002) has the shorter one. Neighbor 2 must get neighbor 1's.
    let mut rig = Rig::new(&[65001, 65002, 65003]);
    let greedy = route(
        0,
        "198.51.100.0/24",
        &[65001, 65010],
        vec![Attribute::LocalPref(1000)],
    );
    rig.send(0, &greedy);
    rig.send(1, &route(1, "198.51.100.0/24", &[65002], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(1));
    let got = rig.announced(2);
    let (_, last) = got.last().unwrap();
    assert_eq!(
        last.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(AsPath::sequence(vec![US, 65002])))
    );
}

#[test]
fn an_internal_neighbors_local_pref_decides_first() {
    let mut rig = Rig::new(&[US, 65002, 65003]);
    let preferred = route(
        0,
        "198.51.100.0/24",
        &[65001, 65010],
        vec![Attribute::LocalPref(200)],
    );
    rig.send(0, &preferred);
    rig.send(1, &route(1, "198.51.100.0/24", &[65002], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(0));
}

#[test]
fn med_compares_only_within_one_neighboring_as() {
    // Neighbors 0 and 1 in AS 65001 with MED 20 and 10, neighbor 2 in AS 65002 with MED
    // 15: 0 loses to 1 on MED; 1 and 2 are not compared on it and the lower
    // Identifier (1.1.1.2, neighbor 1) wins. Both are next hops for multipath.
    let mut rig = Rig::new(&[65001, 65001, 65002, 65003]);
    rig.send(
        0,
        &route(0, "198.51.100.0/24", &[65001], vec![Attribute::Med(20)]),
    );
    rig.send(
        1,
        &route(1, "198.51.100.0/24", &[65001], vec![Attribute::Med(10)]),
    );
    rig.send(
        2,
        &route(2, "198.51.100.0/24", &[65002], vec![Attribute::Med(5)]),
    );
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(1));
    assert_eq!(
        rig.speaker.next_hops(&prefix("198.51.100.0/24")),
        vec![IpAddr::V4(ip("10.0.1.1")), IpAddr::V4(ip("10.0.2.1"))]
    );
}

// RFC 1997.

#[test]
fn well_known_communities_limit_where_a_route_goes() {
    // Neighbor 0 external (the source), 1 internal, 2 external.
    for (c, to_internal, to_external) in [
        (community::NO_EXPORT, true, false),
        (community::NO_EXPORT_SUBCONFED, true, false),
        (community::NO_ADVERTISE, false, false),
        (0xfde9_0001, true, true),
    ] {
        let mut rig = Rig::new(&[65001, US, 65002]);
        rig.announced(1);
        rig.announced(2);
        let tagged = route(
            0,
            "198.51.100.0/24",
            &[65001],
            vec![Attribute::Communities(vec![c])],
        );
        rig.send(0, &tagged);
        let internal = rig.announced(1);
        let external = rig.announced(2);
        assert_eq!(!internal.is_empty(), to_internal, "{c:#x} to iBGP");
        assert_eq!(!external.is_empty(), to_external, "{c:#x} to eBGP");
        if let Some((_, u)) = internal.first() {
            assert_eq!(
                u.attribute(attr::COMMUNITIES),
                Some(&Attribute::Communities(vec![c])),
                "kept inside the AS"
            );
        }
        // The route is still ours to use.
        assert_eq!(rig.best_from("198.51.100.0/24"), Some(0));
    }
}

#[test]
fn a_route_that_gains_no_export_is_withdrawn_from_external_neighbors() {
    let mut rig = Rig::new(&[65001, 65002]);
    rig.send(0, &route(0, "198.51.100.0/24", &[65001], vec![]));
    assert_eq!(rig.announced(1).len(), 1);
    let tagged = route(
        0,
        "198.51.100.0/24",
        &[65001],
        vec![Attribute::Communities(vec![community::NO_EXPORT])],
    );
    rig.send(0, &tagged);
    let withdrawn: Vec<_> = rig
        .messages(1)
        .into_iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u.withdrawn),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(withdrawn, vec!["198.51.100.0/24".parse().unwrap()]);
}

// RFC 8092 and RFC 4360: known attributes pass as they are.

#[test]
fn large_and_extended_communities_are_passed_on_as_known_attributes() {
    let large = Attribute::LargeCommunities(vec![[65001, 1, 2]]);
    let transitive = [0x00, 0x02, 0xfd, 0xe9, 0, 0, 0, 1];
    let non_transitive = [0x40, 0x04, 0, 0, 0, 0, 0, 1];
    let ext = Attribute::ExtendedCommunities(vec![transitive, non_transitive]);
    let unknown = Attribute::Unknown {
        flags: 0xc0,
        code: 99,
        value: vec![7],
    };
    // Optional non-transitive and unknown: not passed on (RFC 4271 section 5).
    let local_only = Attribute::Unknown {
        flags: 0x80,
        code: 98,
        value: vec![8],
    };
    let mut rig = Rig::new(&[65001, US, 65002]);
    let r = route(
        0,
        "198.51.100.0/24",
        &[65001],
        vec![large.clone(), ext.clone(), unknown, local_only],
    );
    rig.send(0, &r);
    let (_, to_external) = rig.announced(2).pop().unwrap();
    assert_eq!(to_external.attribute(attr::LARGE_COMMUNITIES), Some(&large));
    assert_eq!(
        to_external.attribute(attr::EXTENDED_COMMUNITIES),
        Some(&Attribute::ExtendedCommunities(vec![transitive])),
        "the non-transitive one stays in the AS"
    );
    assert_eq!(
        to_external.attribute(99),
        Some(&Attribute::Unknown {
            flags: 0xe0,
            code: 99,
            value: vec![7]
        }),
        "an unknown one goes with the Partial bit"
    );
    assert_eq!(to_external.attribute(98), None);
    let (_, to_internal) = rig.announced(1).pop().unwrap();
    assert_eq!(
        to_internal.attribute(attr::EXTENDED_COMMUNITIES),
        Some(&ext)
    );
}

// RFC 7606 through the speaker.

fn mp_route(p: &str, attributes: Vec<Attribute>) -> Message {
    let mut attributes = attributes;
    attributes.push(Attribute::MpReach(MpReach {
        afi: afi::IPV6,
        safi: SAFI_UNICAST,
        next_hops: vec!["2001:db8::1".parse().unwrap()],
        nlri: vec![prefix(p)],
    }));
    Message::Update(Update {
        attributes,
        ..Update::default()
    })
}

#[test]
fn mp_reach_routes_without_as_path_or_origin_are_withdrawn_not_passed_on() {
    let mut rig = Rig::new(&[65001, 65002]);
    let good = mp_route(
        "2001:db8:1::/48",
        vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65001])),
        ],
    );
    rig.send(0, &good);
    assert_eq!(rig.announced(1).len(), 1);
    for attrs in [
        vec![Attribute::Origin(Origin::Igp)],
        vec![Attribute::AsPath(AsPath::sequence(vec![65001]))],
    ] {
        rig.send(0, &mp_route("2001:db8:1::/48", attrs));
        assert_eq!(rig.best_from("2001:db8:1::/48"), None);
        assert_eq!(rig.state(0), State::Established, "the session survives");
    }
    rig.send(
        0,
        &mp_route("2001:db8:2::/48", vec![Attribute::Origin(Origin::Igp)]),
    );
    assert!(rig.announced(1).is_empty(), "nothing goes out as if ours");
}

#[test]
fn the_first_as_of_an_external_path_must_be_the_neighbors() {
    let mut rig = Rig::new(&[65001, 65002]);
    rig.send(0, &route(0, "198.51.100.0/24", &[65009, 65001], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), None);
    rig.send(0, &route(0, "198.51.100.0/24", &[], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), None, "an empty path too");
    rig.send(0, &route(0, "198.51.100.0/24", &[65001, 65009], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(0));
    // Internal neighbors do not prepend.
    let mut rig = Rig::new(&[US]);
    rig.send(0, &route(0, "198.51.100.0/24", &[65009], vec![]));
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(0));
}

#[test]
fn a_next_hop_that_is_our_own_address_makes_the_route_ignored() {
    // RFC 4271 6.3: semantically incorrect; no NOTIFICATION, the session stays.
    let mut rig = Rig::new(&[65001, 65002]);
    let mut ours = route(0, "198.51.100.0/24", &[65001], vec![]);
    if let Message::Update(u) = &mut ours {
        u.attributes[2] = Attribute::NextHop(ip("10.0.0.2"));
    }
    rig.send(0, &ours);
    assert_eq!(rig.best_from("198.51.100.0/24"), None);
    assert_eq!(rig.state(0), State::Established);
    assert!(rig.announced(1).is_empty());
}

#[test]
fn our_own_originator_id_reflected_back_is_ignored() {
    // RFC 4456 section 8.
    let mut rig = Rig::new(&[US]);
    rig.send(
        0,
        &route(
            0,
            "198.51.100.0/24",
            &[],
            vec![Attribute::OriginatorId(ip("2.2.2.2"))],
        ),
    );
    assert_eq!(rig.best_from("198.51.100.0/24"), None);
    rig.send(
        0,
        &route(
            0,
            "198.51.100.0/24",
            &[],
            vec![Attribute::OriginatorId(ip("9.9.9.9"))],
        ),
    );
    assert_eq!(rig.best_from("198.51.100.0/24"), Some(0));
}

// RFC 8203 and RFC 4486.

fn notification_to(rig: &mut Rig, i: usize) -> Notification {
    rig.messages(i)
        .into_iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_received_shutdown_communication_is_the_neighbors_last_error() {
    let mut rig = Rig::new(&[65001]);
    let n = Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN, "maintenance, back at 14:00");
    assert_eq!(n.data[0] as usize, "maintenance, back at 14:00".len());
    rig.send(0, &Message::Notification(n));
    let text = |rig: &Rig| {
        rig.speaker
            .peers()
            .next()
            .unwrap()
            .last_error
            .map(DownReason::to_string)
    };
    assert_eq!(
        text(&rig).as_deref(),
        Some("received Cease / Administrative Shutdown (6/2): \"maintenance, back at 14:00\"")
    );
    // It stays through the next session.
    rig.connect(0);
    assert_eq!(rig.state(0), State::Established);
    assert!(text(&rig).unwrap().contains("maintenance"));
    // A malformed one: its length overruns the data.
    let bad = Notification {
        code: 6,
        subcode: 2,
        data: vec![40, b'h', b'i'],
    };
    rig.send(0, &Message::Notification(bad));
    assert_eq!(
        text(&rig).as_deref(),
        Some(
            "received Cease / Administrative Shutdown (6/2): malformed shutdown communication \
             (length 40 overruns the 2 octets that follow)"
        )
    );
}

#[test]
fn stopping_sends_our_shutdown_communication() {
    let mut rig = Rig::new(&[65001]);
    rig.messages(0);
    rig.speaker.stop(rig.now, "going down for an upgrade");
    rig.carry();
    let n = notification_to(&mut rig, 0);
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(
        n.shutdown_communication(),
        Some(Ok("going down for an upgrade"))
    );
    // At most 128 octets go out, cut at a character boundary.
    let long = "é".repeat(100);
    let n = Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN, &long);
    assert_eq!(n.data[0], 128);
    assert_eq!(n.shutdown_communication(), Some(Ok(&long[..128])));
}

#[test]
fn a_removed_neighbor_is_told_why_and_its_routes_go() {
    let mut rig = Rig::new(&[65001, 65002]);
    rig.send(0, &route(0, "198.51.100.0/24", &[65001], vec![]));
    rig.messages(0);
    assert_eq!(rig.announced(1).len(), 1);
    rig.speaker.remove_peer(
        PeerId(0),
        "neighbor removed from the configuration",
        rig.now,
    );
    rig.carry();
    let n = notification_to(&mut rig, 0);
    assert_eq!(
        n.shutdown_communication(),
        Some(Ok("neighbor removed from the configuration"))
    );
    assert!(rig.neighbors[0].closed);
    assert_eq!(rig.best_from("198.51.100.0/24"), None);
    assert_eq!(rig.speaker.peers().count(), 1);
    assert_eq!(
        rig.speaker.peer_by_address(IpAddr::V4(ip("10.0.0.1"))),
        None
    );
    // Added again, it is a new neighbor that comes up.
    let id = rig.speaker.add_peer(peer_config(0, 65001), rig.now);
    assert_eq!(id, PeerId(2));
    assert_eq!(
        rig.speaker.peer_by_address(IpAddr::V4(ip("10.0.0.1"))),
        Some(id)
    );
}

#[test]
fn a_passive_neighbor_that_closed_with_a_cease_is_back_at_once() {
    let mut rig = Rig::new(&[65001]);
    rig.messages(0);
    rig.send(
        0,
        &Message::Notification(Notification::cease(cease::ADMINISTRATIVE_RESET, "")),
    );
    assert_eq!(rig.state(0), State::Idle);
    // No time passes: the neighbor reconnects and the session comes up.
    rig.connect(0);
    assert_eq!(rig.state(0), State::Established);
    let opens = rig
        .messages(0)
        .into_iter()
        .filter(|m| matches!(m, Message::Open(_)))
        .count();
    assert_eq!(opens, 1);
}

#[test]
fn a_connection_to_a_stopped_session_is_rejected_in_words() {
    let mut rig = Rig::new(&[65001]);
    rig.speaker.stop(rig.now, "");
    rig.carry();
    rig.messages(0);
    let conn = rig.speaker.connected(PeerId(0), false, rig.now).unwrap();
    rig.neighbors[0].conn = Some(conn);
    rig.neighbors[0].closed = false;
    rig.carry();
    let n = notification_to(&mut rig, 0);
    assert_eq!((n.code, n.subcode), (6, cease::CONNECTION_REJECTED));
    assert!(rig.neighbors[0].closed);
}

// RFC 5882: BFD down ends the session and takes its routes, graceful restart or not.

#[test]
fn bfd_down_ends_the_session_and_its_routes_go_at_once() {
    let graceful = Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: false,
        time: 120,
        families: vec![(afi::IPV4, SAFI_UNICAST, true)],
    });
    let mut rig = Rig::with(&[65001, 65002], vec![graceful]);
    rig.send(0, &route(0, "198.51.100.0/24", &[65001], vec![]));
    assert_eq!(rig.announced(1).len(), 1);
    rig.speaker.bfd_down(PeerId(0), rig.now);
    rig.carry();
    assert!(rig.neighbors[0].closed);
    assert_eq!(rig.state(0), State::Idle);
    assert_eq!(rig.best_from("198.51.100.0/24"), None, "not kept as stale");
    let withdrawn: usize = rig
        .messages(1)
        .into_iter()
        .map(|m| match m {
            Message::Update(u) => u.withdrawn.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(withdrawn, 1);
    let status = rig.speaker.peers().next().unwrap();
    assert_eq!(status.last_down, Some(&DownReason::BfdDown));
}
