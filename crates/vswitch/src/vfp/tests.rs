//! VFP behaviour. Frames are built by hand; results are read back with smoltcp's decoders.

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_wire::vxlan::{self, Vni};
use strata_wire::{EthernetAddress, EthernetFrame, Ipv4Packet, TcpPacket, checksum};

use super::*;
use ipnet::IpNet;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);
const DIP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 74);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 10);
const MUX_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 233, 20);
const HOST_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 233, 21);
const DIP_MAC: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0x64, 7, 0]);
const GW_MAC: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0x64, 2, 0]);
const T: Duration = Duration::from_secs(1);

fn vni() -> Vni {
    Vni::new(4096).unwrap()
}

/// Ethernet + IPv4 + TCP with correct checksums.
fn tcp_frame(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    dst_mac: EthernetAddress,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(dst_mac.as_bytes());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut p = vec![0u8; 44];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50;
    p[33] = flags;
    p[40..44].copy_from_slice(b"data");
    let mut tcp = TcpPacket::new_unchecked(&mut p[20..]);
    tcp.fill_checksum(&src.into(), &dst.into());
    f.extend_from_slice(&p);
    f
}

/// TCP, TCP in VXLAN, UDP, UDP in VXLAN, and TCP in VXLAN in VXLAN (which only the
/// general reading reads).
fn common_shapes() -> Vec<Vec<u8>> {
    let tcp = tcp_frame(CLIENT, 40000, VIP, 80, 0x02, DIP_MAC);
    let mut udp = tcp.clone();
    udp[23] = 17;
    udp[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&udp[14..34]);
    udp[24..26].copy_from_slice(&c.to_be_bytes());
    vec![
        tcp.clone(),
        encapsulate(&tcp),
        udp.clone(),
        encapsulate(&udp),
        encapsulate(&encapsulate(&tcp)),
    ]
}

#[test]
fn the_common_shapes_are_read_at_fixed_offsets_and_vxlan_in_vxlan_is_not() {
    let shapes = common_shapes();
    for (i, f) in shapes.iter().enumerate() {
        let m = Metadata::parse_common(f);
        assert_eq!(m.is_some(), i < 4, "shape {i}");
        assert_eq!(Metadata::parse(f), Metadata::parse_general(f), "shape {i}");
    }
    // The general reading takes VXLAN in VXLAN as the outer packet alone.
    let m = Metadata::parse(&shapes[4]).unwrap();
    assert_eq!((m.encap, m.flow.dst_port()), (None, vxlan::UDP_PORT));
}

/// `inner` inside VXLAN from the Mux's PA to the host's PA, as the Mux sends it.
fn encapsulate(inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[
        0x00, 0x15, 0x5d, 0x64, 6, 1, 0x00, 0x15, 0x5d, 0x64, 5, 1, 0x08, 0x00,
    ]);
    let total = (20 + 8 + 8 + inner.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&MUX_PA.octets());
    ip.extend_from_slice(&HOST_PA.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0xc1, 0x23, 0x12, 0xb5]);
    f.extend_from_slice(&(total - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let mut vx = [0u8; 8];
    vxlan::emit(vni(), &mut vx).unwrap();
    f.extend_from_slice(&vx);
    f.extend_from_slice(inner);
    f
}

/// The SLB host agent's policy on a DIP's port: VNET decap, SLB NAT, an ACL.
fn slb_port() -> Port {
    let mut port = Port::new("PortalVM", DEFAULT_FLOW_LIMIT);
    port.set_layer(Layer {
        name: "VNET".into(),
        priority: 100,
        groups: vec![Group {
            name: "decap".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "vxlan-4096".into(),
                priority: 1,
                conditions: Conditions {
                    encapsulated: Some(true),
                    vni: Some(vni()),
                    ..Conditions::any()
                },
                action: Action::Decap,
            }],
        }],
    });
    port.set_layer(Layer {
        name: "SLB_NAT".into(),
        priority: 200,
        groups: vec![Group {
            name: "vip".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "portal-http".into(),
                priority: 10,
                conditions: Conditions {
                    dst: vec![ipnet::IpNet::V4(ipnet::Ipv4Net::from(VIP))],
                    proto: Some(6),
                    dst_ports: Some(80..=80),
                    encapsulated: Some(false),
                    ..Conditions::any()
                },
                action: Action::Nat(NatSpec {
                    src: None,
                    dst: Some((DIP.into(), Some(8080))),
                }),
            }],
        }],
    });
    port.set_layer(acl(Action::Allow));
    port
}

fn acl(action: Action) -> Layer {
    Layer {
        name: "ACL".into(),
        priority: 300,
        groups: vec![
            Group {
                name: "in".into(),
                direction: Direction::In,
                family: Family::Ipv4,
                priority: 1,
                rules: vec![Rule {
                    name: "default".into(),
                    priority: 65535,
                    conditions: Conditions::any(),
                    action,
                }],
            },
            Group {
                name: "out".into(),
                direction: Direction::Out,
                family: Family::Ipv4,
                priority: 1,
                rules: vec![Rule {
                    name: "default".into(),
                    priority: 65535,
                    conditions: Conditions::any(),
                    action: Action::Allow,
                }],
            },
        ],
    }
}

fn ipv4(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_checked(EthernetFrame::new_checked(frame).unwrap().payload()).unwrap()
}

fn assert_checksums(frame: &[u8]) {
    let ip = ipv4(frame);
    assert!(ip.verify_checksum());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
}

#[test]
fn inbound_decap_and_nat_then_reply_rewritten_back() {
    let mut port = slb_port();
    let inner = tcp_frame(CLIENT, 49152, VIP, 80, 0x02, DIP_MAC);
    let mut frame = encapsulate(&inner);
    assert_eq!(port.process(T, Direction::In, &mut frame), Verdict::Forward);
    assert_checksums(&frame);
    let ip = ipv4(&frame);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (CLIENT, DIP),
        "decapsulated, VIP rewritten to the DIP"
    );
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(tcp.dst_port(), 8080);
    assert_eq!(tcp.payload(), b"data");
    assert_eq!(port.counters().slow_path, 1);

    // The DIP answers its client directly: direct server return, VIP as the source.
    let mut reply = tcp_frame(DIP, 8080, CLIENT, 49152, 0x12, GW_MAC);
    assert_eq!(
        port.process(T, Direction::Out, &mut reply),
        Verdict::Forward
    );
    assert_checksums(&reply);
    let ip = ipv4(&reply);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    assert_eq!(TcpPacket::new_checked(ip.payload()).unwrap().src_port(), 80);
    assert_eq!(
        port.counters().fast_path,
        1,
        "the reply used the paired flow"
    );

    // The next packet of the flow takes the fast path and gets the same result.
    let mut again = encapsulate(&tcp_frame(CLIENT, 49152, VIP, 80, 0x10, DIP_MAC));
    assert_eq!(port.process(T, Direction::In, &mut again), Verdict::Forward);
    assert_eq!(ipv4(&again).dst_addr(), DIP);
    assert_eq!(port.counters().fast_path, 2);
    assert_eq!(port.counters().slow_path, 1);
}

#[test]
fn policy_change_makes_cached_flows_stale() {
    let mut port = slb_port();
    let mut frame = encapsulate(&tcp_frame(CLIENT, 1000, VIP, 80, 0x02, DIP_MAC));
    port.process(T, Direction::In, &mut frame);
    port.set_layer(acl(Action::Block));
    let mut frame = encapsulate(&tcp_frame(CLIENT, 1000, VIP, 80, 0x10, DIP_MAC));
    assert_eq!(
        port.process(T, Direction::In, &mut frame),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(port.counters().slow_path, 2);
    // The drop is cached too.
    let mut frame = encapsulate(&tcp_frame(CLIENT, 1000, VIP, 80, 0x10, DIP_MAC));
    assert_eq!(
        port.process(T, Direction::In, &mut frame),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(port.counters().fast_path, 1);
}

#[test]
fn one_rule_per_group_the_best_priority() {
    let mut port = Port::new("p", 16);
    let nat_to = |last: u8, priority: u16| Rule {
        name: format!("to-{last}"),
        priority,
        conditions: Conditions::any(),
        action: Action::Nat(NatSpec {
            src: None,
            dst: Some((Ipv4Addr::new(10, 0, 0, last).into(), None)),
        }),
    };
    port.set_layer(Layer {
        name: "L".into(),
        priority: 1,
        groups: vec![Group {
            name: "g".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![nat_to(1, 20), nat_to(2, 10)],
        }],
    });
    let mut frame = tcp_frame(CLIENT, 1, VIP, 80, 0x02, DIP_MAC);
    port.process(T, Direction::In, &mut frame);
    assert_eq!(ipv4(&frame).dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
    assert_checksums(&frame);
}

#[test]
fn wrong_vni_is_not_decapsulated_and_unparsable_frames_drop() {
    let mut port = slb_port();
    let mut other = encapsulate(&tcp_frame(CLIENT, 1, VIP, 80, 0x02, DIP_MAC));
    // VNI 4097 instead of 4096.
    let at = 14 + 20 + 8 + 6;
    other[at] = 0x01;
    port.process(T, Direction::In, &mut other);
    let outer = ipv4(&other);
    assert_eq!(outer.dst_addr(), HOST_PA, "left encapsulated");
    let mut junk = vec![0xff; 20];
    assert_eq!(
        port.process(T, Direction::In, &mut junk),
        Verdict::Drop(DropReason::Unparsed)
    );
}

#[test]
fn full_table_keeps_flows_on_the_slow_path() {
    let mut port = Port::new("p", 2);
    port.set_layer(acl(Action::Allow));
    for p in 0..5u16 {
        let mut f = tcp_frame(CLIENT, 1000 + p, VIP, 80, 0x02, DIP_MAC);
        assert_eq!(port.process(T, Direction::In, &mut f), Verdict::Forward);
    }
    assert_eq!(port.flows().len(), 2);
    assert_eq!(port.counters().uft_full, 3);
    // Once they idle out, there is room again.
    let later = T + FlowTimeouts::default().tcp_transitory + Duration::from_secs(1);
    let mut f = tcp_frame(CLIENT, 2000, VIP, 80, 0x02, DIP_MAC);
    port.process(later, Direction::In, &mut f);
    assert_eq!(port.flows().len(), 1);
}

#[test]
fn tcp_state_sets_the_idle_timeout() {
    let mut port = Port::new("p", 16);
    port.set_layer(acl(Action::Allow));
    let t = FlowTimeouts::default();
    let timeout = |port: &Port| port.flows()[0].1.timeout;
    let mut f = tcp_frame(CLIENT, 1, VIP, 80, 0x02, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    assert_eq!(timeout(&port), t.tcp_transitory);
    let mut f = tcp_frame(CLIENT, 1, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    assert_eq!(timeout(&port), t.tcp_established);
    let mut f = tcp_frame(CLIENT, 1, VIP, 80, 0x14, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    assert_eq!(timeout(&port), t.tcp_closed);
    port.expire(T + Duration::from_secs(2));
    assert!(port.flows().is_empty());
}

#[test]
fn encap_push_is_read_back_as_vxlan() {
    let mut port = Port::new("p", 16);
    let spec = EncapSpec {
        src_pa: HOST_PA,
        dst_pa: MUX_PA,
        vni: vni(),
        outer_src_mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 1]),
        outer_dst_mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 2]),
    };
    port.set_layer(Layer {
        name: "VNET".into(),
        priority: 1,
        groups: vec![Group {
            name: "encap".into(),
            direction: Direction::Out,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "to-mux".into(),
                priority: 1,
                conditions: Conditions::any(),
                action: Action::Encap(spec),
            }],
        }],
    });
    let inner = tcp_frame(DIP, 80, CLIENT, 1, 0x12, GW_MAC);
    let mut f = inner.clone();
    assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
    let outer = ipv4(&f);
    assert!(outer.verify_checksum());
    assert_eq!((outer.src_addr(), outer.dst_addr()), (HOST_PA, MUX_PA));
    let m = Metadata::parse(&f).unwrap();
    assert_eq!(m.encap.map(|e| e.vni), Some(vni()));
    assert_eq!(&f[PUSH_LEN..], &inner[..]);
}

#[test]
fn listings_name_layers_rules_and_flows() {
    let mut port = slb_port();
    let rules = port.describe_rules();
    assert!(rules.contains("layer SLB_NAT"), "{rules}");
    assert!(
        rules.contains("rule portal-http (priority 10): nat src * dst 192.168.100.74:8080"),
        "{rules}"
    );
    let mut frame = encapsulate(&tcp_frame(CLIENT, 49152, VIP, 80, 0x02, DIP_MAC));
    port.process(T, Direction::In, &mut frame);
    let flows = port.describe_flows(T);
    assert!(flows.contains("in tcp 192.168.200.10:49152 > 192.168.133.74:80 vni 4096  pop vxlan, dst 192.168.100.74:8080"), "{flows}");
    assert!(
        flows.contains("out tcp 192.168.100.74:8080 > 192.168.200.10:49152  src 192.168.133.74:80"),
        "{flows}"
    );
}

#[test]
fn explain_names_each_rule_that_applies_and_the_cached_flow() {
    let mut port = slb_port();
    let frame = encapsulate(&tcp_frame(CLIENT, 49152, VIP, 80, 0x02, DIP_MAC));
    let before = port.explain(Direction::In, &frame).unwrap();
    assert_eq!(
        before.flow,
        "in tcp 192.168.200.10:49152 > 192.168.133.74:80"
    );
    assert!(
        before
            .matched
            .iter()
            .any(|m| m.starts_with("layer SLB_NAT group")
                && m.contains("rule portal-http: nat src * dst 192.168.100.74:8080")),
        "{before:?}"
    );
    assert_eq!(before.result, "pop vxlan, dst 192.168.100.74:8080");
    assert_eq!(
        before.cached, None,
        "nothing is cached before the first packet"
    );
    // Explaining changes nothing: the packet still takes the slow path once.
    let mut f = frame.clone();
    port.process(T, Direction::In, &mut f);
    assert_eq!(port.counters().slow_path, 1);
    let after = port.explain(Direction::In, &frame).unwrap();
    assert_eq!(
        after.cached.as_deref(),
        Some("pop vxlan, dst 192.168.100.74:8080")
    );
    // The reply walks the layers back: the ACL's default, then the NAT layer's state of
    // the connection, which undoes the NAT.
    let reply = tcp_frame(DIP, 8080, CLIENT, 49152, 0x12, GW_MAC);
    let back = port.explain(Direction::Out, &reply).unwrap();
    assert_eq!(
        back.matched,
        [
            "layer ACL group out rule default: allow",
            "layer SLB_NAT flow state (reply): src 192.168.133.74:80"
        ]
    );
    assert_eq!(back.result, "src 192.168.133.74:80");
    assert_eq!(back.cached.as_deref(), Some("src 192.168.133.74:80"));
    assert_eq!(port.explain(Direction::In, &[0u8; 10]), None);
}

#[test]
fn flows_name_their_protocol_and_an_echo_its_identifier() {
    use crate::vfp::Flow;
    use strata_wire::flow::FlowKey;
    let flow = |proto, sp, dp| {
        Flow::V4(FlowKey {
            proto,
            src: CLIENT,
            dst: VIP,
            src_port: sp,
            dst_port: dp,
        })
        .to_string()
    };
    assert_eq!(flow(6, 1, 2), "tcp 192.168.200.10:1 > 192.168.133.74:2");
    assert_eq!(flow(17, 1, 2), "udp 192.168.200.10:1 > 192.168.133.74:2");
    assert_eq!(flow(1, 7, 7), "icmp 192.168.200.10 > 192.168.133.74 id 7");
    assert_eq!(
        flow(47, 0, 0),
        "proto 47 192.168.200.10:0 > 192.168.133.74:0"
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160), inbound in proptest::prelude::any::<bool>()) {
        let mut port = slb_port();
        let mut f = bytes;
        let d = if inbound { Direction::In } else { Direction::Out };
        let _ = port.process(T, d, &mut f);
        let _ = port.process(T, d, &mut f);
    }

    /// Frames of the common shape, with a few bytes changed and maybe cut short: where
    /// the reading at fixed offsets takes a frame, it reads what the general one reads.
    #[test]
    fn the_common_reading_agrees_with_the_general_one(
        base in 0usize..5,
        changes in proptest::collection::vec((0usize..160, proptest::prelude::any::<u8>()), 0..4),
        cut in proptest::option::of(0usize..160),
    ) {
        let mut f = common_shapes().swap_remove(base);
        for (at, byte) in changes {
            if let Some(b) = f.get_mut(at) {
                *b = byte;
            }
        }
        if let Some(len) = cut {
            f.truncate(len);
        }
        if let Some(m) = Metadata::parse_common(&f) {
            proptest::prop_assert_eq!(Ok(m), Metadata::parse_general(&f));
        }
    }

    #[test]
    fn encapsulated_arbitrary_inner_never_panics(inner in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
        let mut port = slb_port();
        let mut f = encapsulate(&inner);
        let _ = port.process(T, Direction::In, &mut f);
    }
}

#[test]
fn mss_is_clamped_on_syns_both_ways() {
    // The clamp is a group of the stateful NAT layer (as the SLB host agent has it): the
    // layer's state of the connection clamps the replies too.
    let mut port = slb_port();
    let mut nat = port.layer("SLB_NAT").unwrap().clone();
    nat.groups.push(Group {
        name: "clamp".into(),
        direction: Direction::In,
        family: Family::Ipv4,
        priority: 0,
        rules: vec![Rule {
            name: "clamp".into(),
            priority: 1,
            conditions: Conditions {
                proto: Some(6),
                ..Conditions::any()
            },
            action: Action::ClampMss(1410),
        }],
    });
    port.set_layer(nat);
    let with_mss = |src, sport, dst, dport, flags, mss: u16| {
        let mut f = tcp_frame(src, sport, dst, dport, flags, DIP_MAC);
        // Replace the 4 payload bytes with an MSS option: data offset 6 words.
        let tcp = 14 + 20;
        f[tcp + 12] = 0x60;
        f[tcp + 20..tcp + 24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        let (s, d) = (src, dst);
        let mut p = TcpPacket::new_unchecked(&mut f[tcp..]);
        p.fill_checksum(&s.into(), &d.into());
        f
    };
    let mss_of = |f: &[u8]| u16::from_be_bytes([f[14 + 20 + 22], f[14 + 20 + 23]]);
    let mut syn = encapsulate(&with_mss(CLIENT, 5000, VIP, 80, 0x02, 1460));
    port.process(T, Direction::In, &mut syn);
    assert_eq!(mss_of(&syn), 1410);
    assert_checksums(&syn);
    let mut synack = with_mss(DIP, 8080, CLIENT, 5000, 0x12, 1460);
    port.process(T, Direction::Out, &mut synack);
    assert_eq!(
        mss_of(&synack),
        1410,
        "the reply's SYN-ACK is clamped by the layer's state"
    );
    assert_checksums(&synack);
    // A smaller MSS is left alone.
    let mut small = encapsulate(&with_mss(CLIENT, 5001, VIP, 80, 0x02, 536));
    port.process(T, Direction::In, &mut small);
    assert_eq!(mss_of(&small), 536);
}

#[test]
fn a_rewrite_of_a_flow_left_encapsulated_changes_the_inner_packet() {
    // A NAT on encapsulated frames with no decap: the inner packet is rewritten (its
    // checksums still right), the outer headers are not touched.
    let mut port = Port::new("transit", DEFAULT_FLOW_LIMIT);
    port.set_layer(Layer {
        name: "NAT".into(),
        priority: 100,
        groups: vec![Group {
            name: "in".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "vip".into(),
                priority: 1,
                conditions: Conditions {
                    encapsulated: Some(true),
                    ..Conditions::any()
                },
                action: Action::Nat(NatSpec {
                    src: None,
                    dst: Some((DIP.into(), Some(8080))),
                }),
            }],
        }],
    });
    let original = encapsulate(&tcp_frame(CLIENT, 49152, VIP, 80, 0x02, DIP_MAC));
    let mut frame = original.clone();
    assert_eq!(port.process(T, Direction::In, &mut frame), Verdict::Forward);
    let encap_len = 14 + 20 + 8 + 8;
    assert_eq!(
        frame[..encap_len],
        original[..encap_len],
        "outer headers changed"
    );
    let inner = &frame[encap_len..];
    assert_eq!(ipv4(inner).dst_addr(), DIP);
    assert_checksums(inner);
}

mod ipv6 {
    //! IPv6 through VFP: groups of one family do not see the other's packets, and an
    //! IPv6 NAT rewrites as a packet written with the new addresses would be, checked
    //! byte for byte against frames from etherparse.

    use std::net::{IpAddr, Ipv6Addr};

    use etherparse::PacketBuilder;

    use super::*;

    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0x10);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x133, 0, 0, 0, 0, 0x74);
    const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x74);

    /// Ethernet + IPv6 + TCP, every checksum written by etherparse.
    fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, syn: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GW_MAC.0, DIP_MAC.0)
            .ipv6(src.octets(), dst.octets(), 64)
            .tcp(sport, dport, 1000, 64000);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    fn group(name: &str, direction: Direction, family: Family, rules: Vec<Rule>) -> Group {
        Group {
            name: name.into(),
            direction,
            family,
            priority: 1,
            rules,
        }
    }

    fn rule(name: &str, conditions: Conditions, action: Action) -> Rule {
        Rule {
            name: name.into(),
            priority: 1,
            conditions,
            action,
        }
    }

    #[test]
    fn groups_see_only_packets_of_their_family() {
        let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
        port.set_layer(Layer {
            name: "ACL".into(),
            priority: 100,
            groups: vec![
                group(
                    "block-v4",
                    Direction::In,
                    Family::Ipv4,
                    vec![rule("all", Conditions::any(), Action::Block)],
                ),
                group(
                    "v6",
                    Direction::In,
                    Family::Ipv6,
                    vec![rule(
                        "block-client",
                        Conditions {
                            src: vec!["2001:db8:200::/48".parse().unwrap()],
                            ..Conditions::any()
                        },
                        Action::Block,
                    )],
                ),
            ],
        });
        let mut v4 = tcp_frame(CLIENT, 40000, DIP, 80, 0x02, DIP_MAC);
        assert_eq!(
            port.process(T, Direction::In, &mut v4),
            Verdict::Drop(DropReason::Blocked)
        );
        let mut blocked = tcp6(CLIENT6, 40000, DIP6, 80, true);
        assert_eq!(
            port.process(T, Direction::In, &mut blocked),
            Verdict::Drop(DropReason::Blocked)
        );
        let other = Ipv6Addr::new(0x2001, 0xdb8, 0x300, 0, 0, 0, 0, 1);
        let mut allowed = tcp6(other, 40000, DIP6, 80, true);
        let before = allowed.clone();
        assert_eq!(
            port.process(T, Direction::In, &mut allowed),
            Verdict::Forward
        );
        assert_eq!(allowed, before);
        assert!(
            port.describe_rules()
                .contains("group v6 (in ipv6, priority 1)")
        );
    }

    #[test]
    fn ipv6_nat_rewrites_and_replies_get_the_inverse() {
        let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
        port.set_layer(Layer {
            name: "SLB_NAT".into(),
            priority: 200,
            groups: vec![group(
                "vip-to-dip",
                Direction::In,
                Family::Ipv6,
                vec![rule(
                    "vip6",
                    Conditions {
                        dst: vec![IpNet::from(IpAddr::V6(VIP6))],
                        proto: Some(6),
                        dst_ports: Some(80..=80),
                        ..Conditions::any()
                    },
                    Action::Nat(NatSpec {
                        src: None,
                        dst: Some((DIP6.into(), Some(8080))),
                    }),
                )],
            )],
        });
        let mut syn = tcp6(CLIENT6, 40000, VIP6, 80, true);
        assert_eq!(port.process(T, Direction::In, &mut syn), Verdict::Forward);
        assert_eq!(syn, tcp6(CLIENT6, 40000, DIP6, 8080, true));
        // The DIP's answer leaves as the VIP's.
        let mut reply = tcp6(DIP6, 8080, CLIENT6, 40000, false);
        assert_eq!(
            port.process(T, Direction::Out, &mut reply),
            Verdict::Forward
        );
        assert_eq!(reply, tcp6(VIP6, 80, CLIENT6, 40000, false));
        // The next packet of the flow takes the cached transposition.
        let mut ack = tcp6(CLIENT6, 40000, VIP6, 80, false);
        let fast = port.counters().fast_path;
        port.process(T, Direction::In, &mut ack);
        assert_eq!(port.counters().fast_path, fast + 1);
        assert_eq!(ack, tcp6(CLIENT6, 40000, DIP6, 8080, false));
        let flows = port.describe_flows(T);
        assert!(
            flows.contains("in tcp [2001:db8:200::10]:40000 > [2001:db8:133::74]:80"),
            "{flows}"
        );
        assert!(flows.contains("dst [2001:db8:100::74]:8080"), "{flows}");
    }

    #[test]
    fn a_nat_to_the_other_family_blocks() {
        let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
        port.set_layer(Layer {
            name: "NAT".into(),
            priority: 200,
            groups: vec![group(
                "v6",
                Direction::In,
                Family::Ipv6,
                vec![rule(
                    "to-v4",
                    Conditions::any(),
                    Action::Nat(NatSpec {
                        src: None,
                        dst: Some((DIP.into(), None)),
                    }),
                )],
            )],
        });
        let mut f = tcp6(CLIENT6, 40000, VIP6, 80, true);
        assert_eq!(
            port.process(T, Direction::In, &mut f),
            Verdict::Drop(DropReason::Blocked)
        );
    }

    #[test]
    fn ipv6_syns_get_their_mss_clamped() {
        let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
        port.set_layer(Layer {
            name: "MSS".into(),
            priority: 100,
            groups: vec![group(
                "clamp",
                Direction::In,
                Family::Ipv6,
                vec![rule("mss", Conditions::any(), Action::ClampMss(1390))],
            )],
        });
        let with_mss = |mss: u16| {
            let b = PacketBuilder::ethernet2(GW_MAC.0, DIP_MAC.0)
                .ipv6(CLIENT6.octets(), VIP6.octets(), 64)
                .tcp(40000, 80, 1000, 64000)
                .syn()
                .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(mss)])
                .unwrap();
            let mut out = Vec::new();
            b.write(&mut out, b"").unwrap();
            out
        };
        let mut syn = with_mss(1440);
        port.process(T, Direction::In, &mut syn);
        assert_eq!(syn, with_mss(1390));
    }
}

mod entropy {
    use super::*;
    use strata_wire::flow::{FlowKey, FlowKey6};

    /// The VXLAN outer source port's entropy is source port ^ destination port ^ source
    /// ^ destination, an IPv6 address folded by XOR of its four 32-bit words: vectors
    /// worked out by hand from that definition.
    #[test]
    fn entropy_vectors() {
        let v4 = Flow::V4(FlowKey {
            proto: 6,
            src: Ipv4Addr::new(192, 168, 200, 10),
            dst: Ipv4Addr::new(192, 168, 133, 74),
            src_port: 0xc350,
            dst_port: 0x0050,
        });
        // c0a8c80a ^ c0a8854a = 00004d40; ^ c350 ^ 0050 = 00008e40.
        assert_eq!(v4.entropy(), 0x0000_8e40);
        let v6 = Flow::V6(FlowKey6 {
            proto: 17,
            src: "2001:db8:1:2:3:4:5:6".parse().unwrap(),
            dst: "fe80::1234:5678:9abc:def0".parse().unwrap(),
            src_port: 0x1111,
            dst_port: 0x2222,
        });
        // Source words 20010db8 00010002 00030004 00050006 fold to 20060db8,
        // destination words fe800000 00000000 12345678 9abcdef0 to 76088888.
        let fold = |w: [u32; 4]| w[0] ^ w[1] ^ w[2] ^ w[3];
        assert_eq!(
            fold([0x2001_0db8, 0x0001_0002, 0x0003_0004, 0x0005_0006]),
            0x2006_0db8
        );
        assert_eq!(
            fold([0xfe80_0000, 0x0000_0000, 0x1234_5678, 0x9abc_def0]),
            0x7608_8888
        );
        assert_eq!(v6.entropy(), 0x2006_0db8 ^ 0x7608_8888 ^ 0x1111 ^ 0x2222);
        assert_eq!(v6.entropy(), 0x560e_b603);
    }

    #[test]
    fn every_field_moves_the_entropy() {
        let base = FlowKey {
            proto: 6,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 40000,
            dst_port: 80,
        };
        let e = |k: FlowKey| Flow::V4(k).entropy();
        let all = [
            e(base),
            e(FlowKey {
                src: Ipv4Addr::new(10, 0, 1, 1),
                ..base
            }),
            e(FlowKey {
                dst: Ipv4Addr::new(10, 0, 0, 6),
                ..base
            }),
            e(FlowKey {
                src_port: 40001,
                ..base
            }),
            e(FlowKey {
                dst_port: 112,
                ..base
            }),
        ];
        let distinct: std::collections::BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "{all:x?}");
    }
}

mod mss {
    use super::*;

    /// A TCP SYN whose options are `options` (padded to a multiple of 4 with EOL).
    fn syn_with(options: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let mut f = tcp_frame(CLIENT, 5000, DIP, 80, 0x02, DIP_MAC);
        f.truncate(14 + 20 + 20);
        f.extend_from_slice(&opts);
        let total = (20 + 20 + opts.len()) as u16;
        f[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
        f[14 + 10] = 0;
        f[14 + 11] = 0;
        let c = checksum::checksum(&f[14..14 + 20]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        f[14 + 20 + 12] = (((20 + opts.len()) / 4) << 4) as u8;
        let mut tcp = TcpPacket::new_unchecked(&mut f[14 + 20..]);
        tcp.fill_checksum(&CLIENT.into(), &DIP.into());
        f
    }

    fn clamping_port() -> Port {
        let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
        port.set_layer(Layer {
            name: "MSS".into(),
            priority: 1,
            groups: vec![Group {
                name: "clamp".into(),
                direction: Direction::Out,
                family: Family::Ipv4,
                priority: 1,
                rules: vec![Rule {
                    name: "clamp".into(),
                    priority: 1,
                    conditions: Conditions {
                        proto: Some(6),
                        ..Conditions::any()
                    },
                    action: Action::ClampMss(1410),
                }],
            }],
        });
        port
    }

    /// The options after the port clamped them; the checksums checked.
    fn clamped(options: &[u8]) -> Vec<u8> {
        let mut f = syn_with(options);
        let mut port = clamping_port();
        port.process(T, Direction::Out, &mut f);
        assert_checksums(&f);
        f[14 + 40..14 + 40 + options.len()].to_vec()
    }

    #[test]
    fn the_mss_is_found_among_other_options() {
        const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];
        const MSS_1410: [u8; 4] = [2, 4, 0x05, 0x82];
        // After NOPs, window scale and SACK permitted, as Linux sends them in other
        // orders; and last.
        let cases: [(&[u8], usize); 4] = [
            (&[1, 1, 4, 2, 2, 4, 0x05, 0xb4], 4),
            (&[3, 3, 7, 1, 2, 4, 0x05, 0xb4], 4),
            (&[4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 2, 4, 0x05, 0xb4], 12),
            (&MSS_1460, 0),
        ];
        for (options, at) in cases {
            let out = clamped(options);
            assert_eq!(&out[at..at + 4], &MSS_1410, "{options:?}");
            assert_eq!(&out[..at], &options[..at], "the others unchanged");
        }
    }

    #[test]
    fn an_mss_at_or_below_the_clamp_is_left_alone() {
        for mss in [1410u16, 536] {
            let [hi, lo] = mss.to_be_bytes();
            assert_eq!(clamped(&[2, 4, hi, lo]), [2, 4, hi, lo]);
        }
    }

    #[test]
    fn malformed_or_absent_options_are_left_alone() {
        let cases: [&[u8]; 7] = [
            // End of options before the MSS.
            &[0, 0, 0, 0, 2, 4, 0x05, 0xb4],
            // A length below 2.
            &[3, 1, 0, 0, 2, 4, 0x05, 0xb4],
            // A length below 2, then what would read as an MSS a byte on.
            &[3, 1, 2, 4, 0x05, 0xb4],
            // An MSS option that runs past the header.
            &[1, 1, 1, 1, 1, 1, 2, 4],
            // A length past the header.
            &[3, 20, 0, 0],
            // An MSS option of the wrong length.
            &[2, 6, 0x05, 0xb4, 0, 0],
            // None at all.
            &[1, 1, 1, 1],
        ];
        for options in cases {
            let mut padded = options.to_vec();
            while !padded.len().is_multiple_of(4) {
                padded.push(0);
            }
            assert_eq!(clamped(options), padded[..options.len()], "{options:?}");
        }
    }

    #[test]
    fn only_syns_are_clamped() {
        let mut f = syn_with(&[2, 4, 0x05, 0xb4]);
        f[14 + 20 + 13] = 0x10;
        let mut tcp = TcpPacket::new_unchecked(&mut f[14 + 20..]);
        tcp.fill_checksum(&CLIENT.into(), &DIP.into());
        let mut port = clamping_port();
        port.process(T, Direction::Out, &mut f);
        assert_eq!(&f[14 + 40..14 + 44], &[2, 4, 0x05, 0xb4]);
    }
}

#[test]
fn layers_are_removed_by_name_and_the_cache_follows() {
    let mut port = slb_port();
    assert_eq!(port.name(), "PortalVM");
    let names = |p: &Port| -> Vec<String> { p.layers().map(|l| l.name.clone()).collect() };
    assert_eq!(names(&port), ["VNET", "SLB_NAT", "ACL"]);
    let generation = port.generation();
    assert!(!port.remove_layer("nothing"));
    assert_eq!(
        port.generation(),
        generation,
        "no change, no new generation"
    );
    // A flow decapsulated and NATed, cached.
    let mut syn = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    port.process(T, Direction::In, &mut syn);
    assert_eq!(ipv4(&syn).dst_addr(), DIP);
    assert!(port.remove_layer("SLB_NAT"));
    assert_eq!(port.generation(), generation + 1);
    assert_eq!(names(&port), ["VNET", "ACL"]);
    // The cached transposition is stale: the flow is only decapsulated now.
    let mut again = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x10, DIP_MAC));
    port.process(T, Direction::In, &mut again);
    assert_eq!(ipv4(&again).dst_addr(), VIP);
}

/// A port with one layer whose one rule (outbound, IPv4) does `action`.
fn one_rule(action: Action) -> Port {
    one_rule_in_a_table_of(action, DEFAULT_FLOW_LIMIT)
}

/// [`one_rule`] with a flow table of `limit` flows.
fn one_rule_in_a_table_of(action: Action, limit: usize) -> Port {
    let mut port = Port::new("vm", limit);
    port.set_layer(Layer {
        name: "L".into(),
        priority: 1,
        groups: vec![Group {
            name: "g".into(),
            direction: Direction::Out,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "r".into(),
                priority: 1,
                conditions: Conditions::any(),
                action,
            }],
        }],
    });
    port
}

#[test]
fn set_mac_rewrites_the_macs_on_the_slow_and_the_fast_path() {
    let src = EthernetAddress([0x02, 0, 0, 0, 0, 0xaa]);
    let dst = EthernetAddress([0x02, 0, 0, 0, 0, 0xbb]);
    let mut port = one_rule(Action::SetMac {
        src: Some(src),
        dst: Some(dst),
    });
    for flags in [0x02, 0x10] {
        let mut f = tcp_frame(DIP, 80, CLIENT, 5000, flags, GW_MAC);
        assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (src, dst));
        assert_checksums(&f);
    }
    assert_eq!(port.counters().fast_path, 1);
    // Only the destination: the source stays.
    let mut port = one_rule(Action::SetMac {
        src: None,
        dst: Some(dst),
    });
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x02, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(
        (eth.src_addr(), eth.dst_addr()),
        (EthernetAddress([0x02, 0, 0, 0, 0, 1]), dst)
    );
}

#[test]
fn a_source_rewrite_that_keeps_the_port_still_rewrites_the_address() {
    let mut port = one_rule(Action::Nat(NatSpec {
        src: Some((VIP.into(), None)),
        dst: None,
    }));
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x02, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    let ip = ipv4(&f);
    assert_eq!(ip.src_addr(), VIP);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 5000));
    assert_checksums(&f);
    // And on the fast path.
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x10, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    assert_eq!(ipv4(&f).src_addr(), VIP);
    assert_checksums(&f);
}

#[test]
fn a_fin_shortens_a_cached_flows_life_and_it_stays_short() {
    let mut port = one_rule(Action::Allow);
    let t = FlowTimeouts::default();
    let timeout = |port: &Port| port.flows()[0].1.timeout;
    let send = |port: &mut Port, flags| {
        let mut f = tcp_frame(DIP, 80, CLIENT, 5000, flags, GW_MAC);
        port.process(T, Direction::Out, &mut f);
    };
    send(&mut port, 0x10);
    assert_eq!(timeout(&port), t.tcp_established);
    send(&mut port, 0x11);
    assert_eq!(timeout(&port), t.tcp_transitory);
    // A plain ACK after the FIN does not lengthen it again.
    send(&mut port, 0x10);
    assert_eq!(timeout(&port), t.tcp_transitory);
    // A SYN-ACK is not an opening SYN: established.
    let mut port = one_rule(Action::Allow);
    send(&mut port, 0x12);
    assert_eq!(timeout(&port), t.tcp_established);
    // Past its timeout a cached flow takes the slow path again, and expire drops it.
    let later = T + t.tcp_established;
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x10, GW_MAC);
    port.process(later, Direction::Out, &mut f);
    assert_eq!(port.counters().slow_path, 2);
    port.expire(later + t.tcp_established);
    assert!(port.flows().is_empty());
    assert_eq!(port.counters().expired, 1);
}

#[test]
fn the_port_counts_each_path_and_each_drop() {
    let mut port = one_rule(Action::Block);
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x02, GW_MAC);
    assert_eq!(
        port.process(T, Direction::Out, &mut f),
        Verdict::Drop(DropReason::Blocked)
    );
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x10, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    let mut junk = vec![0u8; 10];
    assert_eq!(
        port.process(T, Direction::Out, &mut junk),
        Verdict::Drop(DropReason::Unparsed)
    );
    let c = port.counters();
    assert_eq!(
        (
            c.slow_path,
            c.fast_path,
            c.dropped_blocked,
            c.dropped_unparsed
        ),
        (1, 1, 2, 1)
    );
}

#[test]
fn a_cached_flow_counts_its_packets_and_expiry_counts_only_what_went() {
    let mut port = one_rule(Action::Allow);
    for _ in 0..3 {
        let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x10, GW_MAC);
        port.process(T, Direction::Out, &mut f);
    }
    assert_eq!(port.flows()[0].1.packets, 3);
    // A second flow, later: expiring the first leaves it.
    let t = FlowTimeouts::default();
    let later = T + t.tcp_established;
    let mut f = tcp_frame(DIP, 80, CLIENT, 5001, 0x10, GW_MAC);
    port.process(later, Direction::Out, &mut f);
    port.expire(later + Duration::from_secs(1));
    assert_eq!(port.flows().len(), 1);
    assert_eq!(port.counters().expired, 1);
}

#[test]
fn a_segment_without_syn_or_ack_is_not_an_opening() {
    let mut port = one_rule(Action::Allow);
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x08, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    assert_eq!(
        port.flows()[0].1.timeout,
        FlowTimeouts::default().tcp_established
    );
}

#[test]
fn a_full_table_still_refreshes_a_flow_it_holds() {
    // Limit 1: the flow is cached; a policy change makes it stale; its next packet
    // takes the slow path and is cached again, not refused as if new.
    let mut port = Port::new("vm", 1);
    port.set_layer(acl(Action::Allow));
    let mut f = tcp_frame(CLIENT, 5000, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    // Another flow finds the table full and sweeps it (nothing to sweep): no further
    // sweep for a second, so what follows is the refresh alone.
    let mut other = tcp_frame(CLIENT, 5002, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut other);
    assert_eq!(port.counters().uft_full, 1);
    port.set_layer(acl(Action::Allow));
    let mut f = tcp_frame(CLIENT, 5000, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    assert_eq!(port.counters().uft_full, 1);
    let mut f = tcp_frame(CLIENT, 5000, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut f);
    assert_eq!(port.counters().fast_path, 1);
    // Another flow does not fit.
    let mut other = tcp_frame(CLIENT, 5001, VIP, 80, 0x10, DIP_MAC);
    port.process(T, Direction::In, &mut other);
    assert_eq!(port.counters().uft_full, 2);
}

#[test]
fn a_full_table_is_swept_at_most_once_a_second() {
    let mut port = one_rule_in_a_table_of(Action::Allow, 1);
    let send = |port: &mut Port, at: Duration, sport: u16| {
        // FINs: the transitory timeout, so the cached flow goes sooner.
        let mut f = tcp_frame(DIP, 80, CLIENT, sport, 0x11, GW_MAC);
        port.process(at, Direction::Out, &mut f);
    };
    let life = FlowTimeouts::default().tcp_transitory;
    send(&mut port, T, 1);
    // The first flow is still live: the sweep finds nothing and the second is refused.
    send(&mut port, T + life - Duration::from_millis(500), 2);
    assert_eq!(port.counters().uft_full, 1);
    // The first has expired, but the last sweep was under a second ago: refused again.
    send(&mut port, T + life + Duration::from_millis(100), 3);
    assert_eq!(port.counters().uft_full, 2);
    assert_eq!(port.counters().expired, 0);
    // A second after the last sweep: swept, and cached.
    send(&mut port, T + life + Duration::from_millis(600), 4);
    assert_eq!(port.counters().uft_full, 2);
    assert_eq!(port.counters().expired, 1);
    assert_eq!(port.flows().len(), 1);
}

#[test]
fn a_destination_rewrite_that_keeps_the_port_is_undone_on_the_replies() {
    let mut port = one_rule(Action::Nat(NatSpec {
        src: None,
        dst: Some((VIP.into(), None)),
    }));
    let mut f = tcp_frame(DIP, 80, CLIENT, 5000, 0x02, GW_MAC);
    port.process(T, Direction::Out, &mut f);
    assert_eq!(ipv4(&f).dst_addr(), VIP);
    let mut reply = tcp_frame(VIP, 5000, DIP, 80, 0x12, DIP_MAC);
    assert_eq!(port.process(T, Direction::In, &mut reply), Verdict::Forward);
    let ip = ipv4(&reply);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (CLIENT, DIP),
        "the reply comes from the original destination"
    );
    assert_checksums(&reply);
}

#[test]
fn an_encapsulation_a_later_layer_removes_leaves_the_frame_as_it_was() {
    let spec = EncapSpec {
        src_pa: HOST_PA,
        dst_pa: MUX_PA,
        vni: vni(),
        outer_src_mac: DIP_MAC,
        outer_dst_mac: GW_MAC,
    };
    let layer = |name: &str, priority, action| Layer {
        name: String::from(name),
        priority,
        groups: vec![Group {
            name: "out".into(),
            direction: Direction::Out,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "r".into(),
                priority: 1,
                conditions: Conditions::any(),
                action,
            }],
        }],
    };
    let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
    // Outbound walks the layers from the last: push first, then pop.
    port.set_layer(layer("pop", 1, Action::Decap));
    port.set_layer(layer("push", 2, Action::Encap(spec)));
    let sent = tcp_frame(DIP, 80, CLIENT, 5000, 0x02, GW_MAC);
    let mut f = sent.clone();
    assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
    assert_eq!(f, sent);
}

#[test]
fn only_udp_to_the_vxlan_port_is_read_as_vxlan() {
    let vxlan = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    assert!(Metadata::parse(&vxlan).unwrap().encap.is_some());
    // The same datagram to port 4790: plain UDP.
    let mut other = vxlan.clone();
    other[14 + 22..14 + 24].copy_from_slice(&4790u16.to_be_bytes());
    let m = Metadata::parse(&other).unwrap();
    assert!(m.encap.is_none());
    assert_eq!(
        (m.flow.proto(), m.flow.dst()),
        (17, std::net::IpAddr::from(HOST_PA))
    );
}

#[test]
fn an_encapsulation_pushed_and_removed_leaves_the_frames_own_encapsulation() {
    // Inbound, an encapsulated frame: a layer pushes a second encapsulation, the next
    // removes it again. The frame's own VXLAN stays.
    let spec = EncapSpec {
        src_pa: HOST_PA,
        dst_pa: MUX_PA,
        vni: vni(),
        outer_src_mac: DIP_MAC,
        outer_dst_mac: GW_MAC,
    };
    let layer = |name: &str, priority, action| Layer {
        name: String::from(name),
        priority,
        groups: vec![Group {
            name: "in".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: "r".into(),
                priority: 1,
                conditions: Conditions::any(),
                action,
            }],
        }],
    };
    let mut port = Port::new("transit", DEFAULT_FLOW_LIMIT);
    port.set_layer(layer("push", 1, Action::Encap(spec)));
    port.set_layer(layer("pop", 2, Action::Decap));
    let sent = encapsulate(&tcp_frame(CLIENT, 5000, VIP, 80, 0x02, DIP_MAC));
    let mut f = sent.clone();
    assert_eq!(port.process(T, Direction::In, &mut f), Verdict::Forward);
    assert_eq!(f, sent);
}

mod state;

#[test]
fn metadata_reads_vxlan_once_and_vxlan_inside_vxlan_as_the_outer_packet() {
    let inner = tcp_frame(CLIENT, 49152, VIP, 80, 0x02, DIP_MAC);
    let once = encapsulate(&inner);
    let m = Metadata::parse(&once).unwrap();
    let e = m.encap.expect("encapsulated");
    assert_eq!(
        (e.src_pa, e.dst_pa, e.vni, e.len),
        (MUX_PA, HOST_PA, vni(), 50)
    );
    assert_eq!(m.flow.dst(), std::net::IpAddr::V4(VIP));
    assert_eq!(m.tcp_flags, 0x02);
    // VXLAN in VXLAN: the outer packet alone, a UDP flow to port 4789.
    let twice = encapsulate(&once);
    let m = Metadata::parse(&twice).unwrap();
    assert_eq!(m.encap, None);
    assert_eq!(m.flow.proto(), 17);
    assert_eq!(m.flow.dst_port(), vxlan::UDP_PORT);
    assert_eq!(m.flow.dst(), std::net::IpAddr::V4(HOST_PA));
    // A malformed inner packet makes the frame malformed.
    let mut bad = once.clone();
    bad[50 + 14] = 0x35;
    assert!(matches!(
        Metadata::parse(&bad),
        Err(ParseError::Malformed(_))
    ));
    // Not VXLAN after all (reserved flag clear): the outer packet.
    let mut plain = once.clone();
    plain[42] = 0;
    assert_eq!(Metadata::parse(&plain).unwrap().encap, None);
}

#[test]
fn a_udp_header_cut_short_to_the_vxlan_port_is_read_as_it_is() {
    // Six bytes of UDP: the ports are there, the length and checksum are not.
    let mut f = vec![
        0x00, 0x15, 0x5d, 0, 0, 1, 0x00, 0x15, 0x5d, 0, 0, 2, 0x08, 0x00,
    ];
    let mut ip = vec![0x45, 0, 0, 26, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&MUX_PA.octets());
    ip.extend_from_slice(&HOST_PA.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x12, 0xb5, 0x12, 0xb5, 0, 6]);
    let m = Metadata::parse(&f).unwrap();
    assert_eq!(m.encap, None);
    assert_eq!(m.flow.dst_port(), vxlan::UDP_PORT);
}
