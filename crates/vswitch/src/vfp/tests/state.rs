//! Per-layer flow state: replies walk the layers back and find each stateful layer's
//! record of the connection; SNAT hands out ports of its ranges, reusing one for other
//! destinations; rule changes keep established connections' translation.

use proptest::prelude::*;

use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const SERVER2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 101);

fn net(a: Ipv4Addr) -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::from(a))
}

/// Outbound TCP from the DIP leaves as the VIP, with a port of `ranges`.
fn snat_layer(ranges: Vec<u16>) -> Layer {
    Layer {
        name: "SLB_SNAT".into(),
        priority: 150,
        groups: vec![Group {
            name: "outbound".into(),
            direction: Direction::Out,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "outbound-tcp".into(),
                priority: 1,
                conditions: Conditions {
                    src: vec![net(DIP)],
                    proto: Some(6),
                    ..Conditions::any()
                },
                action: Action::Snat(SnatSpec {
                    vip: VIP.into(),
                    ranges,
                }),
            }],
        }],
    }
}

fn snat_port(ranges: Vec<u16>) -> Port {
    let mut port = slb_port();
    port.set_layer(snat_layer(ranges));
    port
}

/// Source and destination, address and port, of a plain Ethernet/IPv4/TCP frame.
fn ends(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = ipv4(frame);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    (ip.src_addr(), tcp.src_port(), ip.dst_addr(), tcp.dst_port())
}

/// The DIP opens a connection: what leaves the port, or why not.
fn open(port: &mut Port, sport: u16, server: Ipv4Addr) -> Result<(Ipv4Addr, u16), DropReason> {
    let mut f = tcp_frame(DIP, sport, server, 80, 0x02, GW_MAC);
    match port.process(T, Direction::Out, &mut f) {
        Verdict::Forward => {
            assert_checksums(&f);
            let (src, sport, dst, dport) = ends(&f);
            assert_eq!((dst, dport), (server, 80), "the destination is kept");
            Ok((src, sport))
        }
        Verdict::Drop(reason) => Err(reason),
    }
}

/// A server's reply to VIP:`port`, in VXLAN from a Mux: what reaches the VM.
fn reply(port: &mut Port, server: Ipv4Addr, vip_port: u16) -> Option<(Ipv4Addr, u16)> {
    let mut f = encapsulate(&tcp_frame(server, 80, VIP, vip_port, 0x12, DIP_MAC));
    match port.process(T, Direction::In, &mut f) {
        Verdict::Forward => {
            assert_checksums(&f);
            let (src, sport, dst, dport) = ends(&f);
            assert_eq!((src, sport), (server, 80));
            Some((dst, dport))
        }
        Verdict::Drop(_) => None,
    }
}

#[test]
fn snat_takes_ports_of_its_ranges_and_reuses_them_for_other_destinations() {
    let mut port = snat_port(vec![1024]);
    assert_eq!(open(&mut port, 40000, SERVER), Ok((VIP, 1024)));
    assert_eq!(open(&mut port, 40001, SERVER), Ok((VIP, 1025)));
    // Another destination: the first port again.
    assert_eq!(open(&mut port, 40002, SERVER2), Ok((VIP, 1024)));
    // The replies walk back: decapsulated, then the SNAT layer's state.
    assert_eq!(reply(&mut port, SERVER, 1025), Some((DIP, 40001)));
    assert_eq!(reply(&mut port, SERVER, 1024), Some((DIP, 40000)));
    assert_eq!(reply(&mut port, SERVER2, 1024), Some((DIP, 40002)));
    assert_eq!(port.snat_ports_in_use("SLB_SNAT", VIP.into()), [1024, 1025]);
    // A later packet of a connection keeps its port (from the table).
    assert_eq!(open(&mut port, 40001, SERVER), Ok((VIP, 1025)));
}

#[test]
fn snat_out_of_ports_drops_new_connections_only_and_says_which_vip_and_dip() {
    let mut port = snat_port(vec![1024]);
    for i in 0..8 {
        assert_eq!(open(&mut port, 40000 + i, SERVER), Ok((VIP, 1024 + i)));
    }
    assert_eq!(port.take_snat_shortfall(), None);
    assert_eq!(
        open(&mut port, 40100, SERVER),
        Err(DropReason::SnatExhausted)
    );
    assert_eq!(port.counters().snat_exhausted, 1);
    assert_eq!(
        port.take_snat_shortfall(),
        Some(SnatShortfall {
            vip: VIP.into(),
            src: DIP.into()
        })
    );
    assert_eq!(port.take_snat_shortfall(), None, "taken once");
    // What was established goes on, both ways; another destination still has ports.
    assert_eq!(open(&mut port, 40003, SERVER), Ok((VIP, 1027)));
    assert_eq!(reply(&mut port, SERVER, 1027), Some((DIP, 40003)));
    assert_eq!(open(&mut port, 40100, SERVER2), Ok((VIP, 1024)));
    // A new range: the connection that waited gets a port of it; the others keep theirs.
    port.set_layer(snat_layer(vec![1024, 2048]));
    assert_eq!(open(&mut port, 40101, SERVER), Ok((VIP, 2048)));
    assert_eq!(reply(&mut port, SERVER, 1025), Some((DIP, 40001)));
    assert_eq!(open(&mut port, 40001, SERVER), Ok((VIP, 1025)));
}

#[test]
fn a_reply_to_a_port_no_connection_holds_is_not_translated() {
    let mut port = snat_port(vec![1024]);
    assert_eq!(open(&mut port, 40000, SERVER), Ok((VIP, 1024)));
    // Another server, or another port: no state; the VIP reaches the VM untranslated.
    assert_eq!(reply(&mut port, SERVER2, 1024), Some((VIP, 1024)));
    assert_eq!(reply(&mut port, SERVER, 1030), Some((VIP, 1030)));
}

#[test]
fn a_reply_cached_before_its_connection_opened_is_walked_again() {
    let mut port = snat_port(vec![1024]);
    // A stray segment to VIP:1024 is cached as it was then: untranslated.
    assert_eq!(reply(&mut port, SERVER, 1024), Some((VIP, 1024)));
    assert_eq!(open(&mut port, 40000, SERVER), Ok((VIP, 1024)));
    assert_eq!(reply(&mut port, SERVER, 1024), Some((DIP, 40000)));
}

#[test]
fn rule_changes_keep_a_connections_translation_and_removing_the_layer_forgets_it() {
    let mut port = slb_port();
    let mut syn = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    assert_eq!(port.process(T, Direction::In, &mut syn), Verdict::Forward);
    assert_eq!(ends(&syn), (CLIENT, 5000, DIP, 8080));
    // The NAT now sends the VIP to another port of the DIP: new connections go there,
    // the established one keeps its translation both ways.
    let mut nat = port.layer("SLB_NAT").unwrap().clone();
    nat.groups[0].rules[0].action = Action::Nat(NatSpec {
        src: None,
        dst: Some((DIP.into(), Some(9090))),
    });
    port.set_layer(nat);
    let mut old = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x10, DIP_MAC));
    port.process(T, Direction::In, &mut old);
    assert_eq!(ends(&old), (CLIENT, 5000, DIP, 8080));
    let mut new = encapsulate(&tcp_frame(CLIENT, 5001, VIP, 80, 0x02, DIP_MAC));
    port.process(T, Direction::In, &mut new);
    assert_eq!(ends(&new), (CLIENT, 5001, DIP, 9090));
    let mut back = tcp_frame(DIP, 8080, CLIENT, 5000, 0x10, GW_MAC);
    port.process(T, Direction::Out, &mut back);
    assert_eq!(ends(&back), (VIP, 80, CLIENT, 5000));
    assert_eq!(
        port.layer_flows()[0].1.len(),
        4,
        "two connections, two sides each"
    );
    // Without the layer, nothing of it is left.
    port.remove_layer("SLB_NAT");
    assert!(port.layer_flows().is_empty());
    let mut back = tcp_frame(DIP, 8080, CLIENT, 5000, 0x10, GW_MAC);
    port.process(T, Direction::Out, &mut back);
    assert_eq!(ends(&back), (DIP, 8080, CLIENT, 5000));
}

#[test]
fn idle_connections_are_forgotten_with_their_flows_and_free_their_ports() {
    let mut port = snat_port(vec![1024]);
    assert_eq!(open(&mut port, 40000, SERVER), Ok((VIP, 1024)));
    let mut ack = tcp_frame(DIP, 40000, SERVER, 80, 0x10, GW_MAC);
    port.process(T, Direction::Out, &mut ack);
    // Still used within the established timeout: kept.
    let established = FlowTimeouts::default().tcp_established;
    port.expire(T + established - Duration::from_secs(1));
    assert_eq!(port.counters().state_expired, 0);
    assert_eq!(port.snat_ports_in_use("SLB_SNAT", VIP.into()), [1024]);
    port.expire(T + established);
    assert_eq!(port.counters().state_expired, 1);
    assert!(port.snat_ports_in_use("SLB_SNAT", VIP.into()).is_empty());
    assert!(port.layer_flows().is_empty());
}

#[test]
fn a_nat_onto_a_held_connection_is_refused() {
    // Two VIP rules to the same DIP port: the same client port to both would make
    // one translated flow of two connections.
    let mut port = slb_port();
    let mut nat = port.layer("SLB_NAT").unwrap().clone();
    let mut second = nat.groups[0].rules[0].clone();
    second.name = "second".into();
    second.conditions.dst_ports = Some(81..=81);
    nat.groups[0].rules.push(second);
    port.set_layer(nat);
    let mut a = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    assert_eq!(port.process(T, Direction::In, &mut a), Verdict::Forward);
    let mut b = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 81, 0x02, DIP_MAC));
    assert_eq!(
        port.process(T, Direction::In, &mut b),
        Verdict::Drop(DropReason::NatCollision)
    );
    assert_eq!(port.counters().nat_collision, 1);
}

#[test]
fn the_table_shows_each_layers_connections() {
    let mut port = snat_port(vec![1024]);
    open(&mut port, 40000, SERVER).unwrap();
    let text = port.describe_layer_flows(T);
    assert!(text.contains("layer SLB_SNAT: 1 connections"), "{text}");
    assert!(
        text.contains(
            "out tcp 192.168.100.74:40000 > 203.0.113.100:80  src 192.168.133.74:1024  opening"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "in tcp 203.0.113.100:80 > 192.168.133.74:1024  dst 192.168.100.74:40000  reply"
        ),
        "{text}"
    );
}

/// A random policy: decap, a SNAT (with 1 or 2 ranges), a NAT of the VIP's port 80 to
/// one of a few DIP ports, and an ACL that blocks one port or nothing.
fn policy(ranges: usize, backend: u16, blocked: Option<u16>) -> Port {
    let mut port = snat_port((0..ranges as u16).map(|i| 1024 + 8 * i).collect());
    let mut nat = port.layer("SLB_NAT").unwrap().clone();
    nat.groups[0].rules[0].action = Action::Nat(NatSpec {
        src: None,
        dst: Some((DIP.into(), Some(backend))),
    });
    port.set_layer(nat);
    let mut acl = acl(Action::Allow);
    if let Some(p) = blocked {
        acl.groups[0].rules.push(Rule {
            name: "block".into(),
            priority: 1,
            conditions: Conditions {
                dst_ports: Some(p..=p),
                ..Conditions::any()
            },
            action: Action::Block,
        });
    }
    port.set_layer(acl);
    port
}

/// A packet of the random sequences: inbound from a client or server (to the VIP), or
/// outbound from the DIP.
#[derive(Debug, Clone)]
enum Packet {
    In {
        server: bool,
        sport: u16,
        dport: u16,
    },
    Out {
        sport: u16,
        to_server: bool,
        dport: u16,
    },
    Rules {
        ranges: usize,
        backend: u16,
        blocked: Option<u16>,
    },
}

fn packet() -> impl Strategy<Value = Packet> {
    let ports = prop_oneof![Just(80u16), Just(8080), 1024u16..1040, 40000u16..40004];
    prop_oneof![
        (any::<bool>(), 40000u16..40004, ports.clone()).prop_map(|(server, sport, dport)| {
            Packet::In {
                server,
                sport,
                dport,
            }
        }),
        (
            40000u16..40004,
            any::<bool>(),
            prop_oneof![Just(80u16), 40000u16..40004]
        )
            .prop_map(|(sport, to_server, dport)| Packet::Out {
                sport,
                to_server,
                dport
            }),
        (
            1usize..3,
            prop_oneof![Just(8080u16), Just(9090)],
            proptest::option::of(prop_oneof![Just(80u16), Just(8080), Just(1024)])
        )
            .prop_map(|(ranges, backend, blocked)| Packet::Rules {
                ranges,
                backend,
                blocked
            }),
    ]
}

fn frame_of(p: &Packet) -> Option<(Direction, Vec<u8>)> {
    match *p {
        Packet::In {
            server,
            sport,
            dport,
        } => {
            let src = if server { SERVER } else { CLIENT };
            Some((
                Direction::In,
                encapsulate(&tcp_frame(src, sport, VIP, dport, 0x10, DIP_MAC)),
            ))
        }
        Packet::Out {
            sport,
            to_server,
            dport,
        } => {
            let dst = if to_server { SERVER } else { CLIENT };
            Some((
                Direction::Out,
                tcp_frame(DIP, sport, dst, dport, 0x10, GW_MAC),
            ))
        }
        Packet::Rules { .. } => None,
    }
}

proptest! {
    /// Whatever the policy and the packets, the unified flow table gives each packet
    /// what the walk through the layers, as they and their state are then, gives.
    #[test]
    fn the_fast_path_gives_the_frame_the_slow_path_gives(
        packets in proptest::collection::vec(packet(), 1..60),
    ) {
        let mut port = policy(1, 8080, None);
        for p in &packets {
            let Some((direction, frame)) = frame_of(p) else {
                if let Packet::Rules { ranges, backend, blocked } = *p {
                    let fresh = policy(ranges, backend, blocked);
                    for layer in fresh.layers() {
                        port.set_layer(layer.clone());
                    }
                }
                continue;
            };
            let m = Metadata::parse(&frame).unwrap();
            let mut expected = frame.clone();
            let walked = port.walk(direction, &m);
            if let Ok(ht) = walked {
                ht.apply(&mut expected, &m);
            }
            let mut got = frame.clone();
            let verdict = port.process(T, direction, &mut got);
            match walked {
                Ok(_) => {
                    prop_assert_eq!(verdict, Verdict::Forward);
                    prop_assert_eq!(&got, &expected);
                }
                Err(reason) => prop_assert_eq!(verdict, Verdict::Drop(reason)),
            }
        }
    }

    /// A connection opened through a NAT or SNAT, then any rule changes and traffic:
    /// its reply reaches the other end translated back to what the opening packet
    /// carried, or is dropped; never translated some other way.
    #[test]
    fn a_reply_after_any_rule_changes_is_translated_consistently_or_dropped(
        inbound in any::<bool>(),
        sport in 40000u16..40004,
        between in proptest::collection::vec(packet(), 0..30),
    ) {
        let mut port = policy(1, 8080, None);
        let (direction, opening) = if inbound {
            (Direction::In, encapsulate(&tcp_frame(CLIENT, sport, VIP, 80, 0x02, DIP_MAC)))
        } else {
            (Direction::Out, tcp_frame(DIP, sport, SERVER, 80, 0x02, GW_MAC))
        };
        let mut sent = opening.clone();
        prop_assert_eq!(port.process(T, direction, &mut sent), Verdict::Forward);
        let (src, sport, dst, dport) = ends(&sent);
        for p in &between {
            match (p, frame_of(p)) {
                (Packet::Rules { ranges, backend, blocked }, _) => {
                    for layer in policy(*ranges, *backend, *blocked).layers() {
                        port.set_layer(layer.clone());
                    }
                }
                (_, Some((d, mut f))) => {
                    let _ = port.process(T, d, &mut f);
                }
                _ => {}
            }
        }
        // The reply, as the other end sends it.
        let mut back = if inbound {
            tcp_frame(dst, dport, src, sport, 0x10, GW_MAC)
        } else {
            encapsulate(&tcp_frame(dst, dport, src, sport, 0x10, DIP_MAC))
        };
        let (o_src, o_sport, o_dst, o_dport) = if inbound {
            ends(&opening[vxlan::OVERHEAD_IPV4..])
        } else {
            ends(&opening)
        };
        if port.process(T, direction.reverse(), &mut back) == Verdict::Forward {
            prop_assert_eq!(ends(&back), (o_dst, o_dport, o_src, o_sport));
        }
    }
}

#[test]
fn a_full_layer_refuses_new_connections_until_one_goes() {
    let mut port = Port::new("small", 1);
    port.set_layer(snat_layer(vec![1024]));
    assert_eq!(open(&mut port, 40000, SERVER), Ok((VIP, 1024)));
    assert_eq!(open(&mut port, 40001, SERVER), Err(DropReason::StateFull));
    assert_eq!(port.counters().state_full, 1);
    // Once the first has idled out, there is room.
    let later = T + FlowTimeouts::default().tcp_established + Duration::from_secs(2);
    let mut f = tcp_frame(DIP, 40001, SERVER, 80, 0x02, GW_MAC);
    assert_eq!(
        port.process(later, Direction::Out, &mut f),
        Verdict::Forward
    );
    assert_eq!(port.counters().state_expired, 1);
    let (src, sport, ..) = ends(&f);
    assert!(src == VIP && (1024..1032).contains(&sport), "{src}:{sport}");
}

#[test]
fn explain_tells_a_connection_by_its_rules_until_they_say_otherwise() {
    let mut port = slb_port();
    let frame = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    port.process(T, Direction::In, &mut frame.clone());
    let rule = "layer SLB_NAT group vip rule portal-http: nat src * dst 192.168.100.74:8080";
    assert!(
        port.explain(Direction::In, &frame)
            .unwrap()
            .matched
            .iter()
            .any(|m| m == rule)
    );
    let mut nat = port.layer("SLB_NAT").unwrap().clone();
    nat.groups[0].rules[0].action = Action::Nat(NatSpec {
        src: None,
        dst: Some((DIP.into(), Some(9090))),
    });
    port.set_layer(nat);
    let e = port.explain(Direction::In, &frame).unwrap();
    assert!(
        e.matched
            .iter()
            .any(|m| m == "layer SLB_NAT flow state (opening): dst 192.168.100.74:8080"),
        "{e:?}"
    );
    assert_eq!(e.result, "pop vxlan, dst 192.168.100.74:8080");
}

#[test]
fn a_full_layer_sweeps_at_most_once_a_second() {
    let mut port = Port::new("small", 1);
    port.set_layer(snat_layer(vec![1024]));
    let at = |s: f64| T + Duration::from_secs_f64(s);
    let open_at = |port: &mut Port, s: f64, sport: u16| {
        let mut f = tcp_frame(DIP, sport, SERVER, 80, 0x02, GW_MAC);
        port.process(at(s), Direction::Out, &mut f)
    };
    // The first connection's SYN keeps it 30 s (the transitory timeout).
    assert_eq!(open_at(&mut port, 0.0, 40000), Verdict::Forward);
    assert_eq!(
        open_at(&mut port, 29.8, 40001),
        Verdict::Drop(DropReason::StateFull)
    );
    // It has expired by now, but the last sweep was less than a second ago.
    assert_eq!(
        open_at(&mut port, 30.3, 40002),
        Verdict::Drop(DropReason::StateFull)
    );
    assert_eq!(open_at(&mut port, 30.9, 40003), Verdict::Forward);
}
