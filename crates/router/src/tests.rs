//! Router behaviour, checked with smoltcp's independent decoders.

use super::*;
use smoltcp_check::*;

mod smoltcp_check {
    pub(super) use strata_wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, Icmpv4Packet, Ipv4Packet,
    };
}

const R_IN: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);
const R_OUT: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 2]);
const HOST: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);
const NEXT: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 7]);
const T: Duration = Duration::ZERO;

fn router() -> Router {
    let mut r = Router::new(Config {
        forwarding: true,
        ..Config::default()
    });
    r.add_interface(Interface {
        mac: R_IN,
        addr: "192.168.200.1/24".parse().unwrap(),
        mtu: 1500,
    });
    r.add_interface(Interface {
        mac: R_OUT,
        addr: "192.168.100.1/24".parse().unwrap(),
        mtu: 1500,
    });
    r.add_route(
        "10.0.0.0/8".parse().unwrap(),
        "192.168.100.7".parse().unwrap(),
    )
    .unwrap();
    r
}

/// An Ethernet frame with a UDP packet, built by hand and checksummed with the RFC 1071 sum.
fn udp_frame(src: [u8; 4], dst: [u8; 4], ttl: u8, len: usize) -> Vec<u8> {
    let total = 20 + 8 + len;
    let mut f = Vec::new();
    f.extend_from_slice(R_IN.as_bytes());
    f.extend_from_slice(HOST.as_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = strata_wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0xc3, 0x50, 0x00, 0x35]);
    f.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(14 + total, 0xab);
    f
}

fn drain(r: &mut Router) -> Vec<(IfIndex, Vec<u8>)> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn arp_reply_from_next_hop() -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: NEXT,
        source_protocol_addr: "192.168.100.7".parse().unwrap(),
        target_hardware_addr: R_OUT,
        target_protocol_addr: "192.168.100.1".parse().unwrap(),
    };
    arp_frame(NEXT, R_OUT, &repr)
}

#[test]
fn answers_arp_for_its_address_only() {
    let mut r = router();
    let ask = |target: &str| {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: HOST,
            source_protocol_addr: "192.168.200.10".parse().unwrap(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target.parse().unwrap(),
        };
        arp_frame(HOST, EthernetAddress::BROADCAST, &repr)
    };
    r.receive(T, IfIndex(0), ask("192.168.200.1"), &mut NoHooks);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    assert_eq!(eth.dst_addr(), HOST);
    let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    match repr {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } => {
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr, R_IN);
            assert_eq!(source_protocol_addr.to_string(), "192.168.200.1");
        }
        _ => panic!("not an Ethernet/IPv4 ARP reply"),
    }
    // The other interface's address is not answered on this link.
    r.receive(T, IfIndex(0), ask("192.168.100.1"), &mut NoHooks);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn forwards_after_arp_with_ttl_and_checksum_updated() {
    let mut r = router();
    let frame = udp_frame([192, 168, 200, 10], [10, 1, 2, 3], 64, 30);
    assert!(r.receive(T, IfIndex(0), frame, &mut NoHooks).is_none());
    // First an ARP request for the gateway 192.168.100.7 on the outgoing interface.
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, IfIndex(1));
    assert!(strata_wire::describe::frame(&out[0].1).contains("who-has 192.168.100.7"));
    // The reply releases the queued packet.
    r.receive(T, IfIndex(1), arp_reply_from_next_hop(), &mut NoHooks);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    assert_eq!(eth.dst_addr(), NEXT);
    assert_eq!(eth.src_addr(), R_OUT);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.hop_limit(), 63);
    assert!(
        ip.verify_checksum(),
        "incremental update keeps the header checksum valid"
    );
    assert_eq!(r.counters().forwarded, 1);
}

#[test]
fn ttl_expiry_sends_time_exceeded_from_ingress_address() {
    let mut r = router();
    // Make the sender resolvable so the error goes out at once.
    r.neighbors
        .learn(T, IfIndex(0), "192.168.200.10".parse().unwrap(), HOST, true);
    let frame = udp_frame([192, 168, 200, 10], [10, 1, 2, 3], 1, 4);
    r.receive(T, IfIndex(0), frame, &mut NoHooks);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr().to_string(), "192.168.200.1");
    assert_eq!(ip.dst_addr().to_string(), "192.168.200.10");
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(u8::from(icmp.msg_type()), 11);
    assert_eq!(r.counters().ttl_exceeded, 1);
    assert_eq!(r.counters().icmp_errors_sent, 1);
}

#[test]
fn no_route_is_net_unreachable_and_df_too_big_is_frag_needed() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(0), "192.168.200.10".parse().unwrap(), HOST, true);
    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [8, 8, 8, 8], 64, 4),
        &mut NoHooks,
    );
    let out = drain(&mut r);
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 0));

    r.ifaces[1].mtu = 100;
    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 200),
        &mut NoHooks,
    );
    let out = drain(&mut r);
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 4));
    assert_eq!(&ip.payload()[6..8], &100u16.to_be_bytes());
    assert_eq!(r.counters().too_big, 1);
}

#[test]
fn local_delivery_trims_padding_and_hosts_do_not_forward() {
    let mut host = Router::new(Config::default());
    host.add_interface(Interface {
        mac: R_IN,
        addr: "192.168.200.1/24".parse().unwrap(),
        mtu: 1500,
    });
    let mut frame = udp_frame([192, 168, 200, 10], [192, 168, 200, 1], 64, 2);
    frame.resize(60, 0);
    let d = host.receive(T, IfIndex(0), frame, &mut NoHooks).unwrap();
    assert_eq!(d.packet.len(), 30);
    host.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 2),
        &mut NoHooks,
    );
    assert_eq!(host.counters().not_forwarding, 1);
    let mut other = udp_frame([192, 168, 200, 10], [192, 168, 200, 1], 64, 2);
    other[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    host.receive(T, IfIndex(0), other, &mut NoHooks);
    assert_eq!(host.counters().other_host, 1);
}

#[test]
fn unresolved_next_hop_gives_host_unreachable() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(0), "192.168.200.10".parse().unwrap(), HOST, true);
    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 2),
        &mut NoHooks,
    );
    drain(&mut r);
    let mut now = T;
    let mut seen_unreachable = false;
    while let Some(at) = r.poll_at() {
        now = at;
        r.poll(now, &mut NoHooks);
        for (_, f) in drain(&mut r) {
            seen_unreachable |= strata_wire::describe::frame(&f).contains("unreachable code 1");
        }
    }
    assert!(seen_unreachable);
    assert_eq!(r.counters().neighbor_unreachable, 1);
    assert!(now >= neighbor::RETRANS_TIME * 3);
}

proptest::proptest! {
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
        let mut r = router();
        let mut f = bytes;
        if f.len() >= 6 { f[0..6].copy_from_slice(R_IN.as_bytes()); }
        let _ = r.receive(T, IfIndex(0), f.clone(), &mut NoHooks);
        let _ = r.receive(T, IfIndex(1), f, &mut NoHooks);
        drain(&mut r);
    }
}

#[test]
fn ecmp_spreads_flows_and_keeps_each_on_one_next_hop() {
    let mut r = router();
    let gateways: Vec<Ipv4Addr> = (7..9).map(|i| Ipv4Addr::new(192, 168, 100, i)).collect();
    assert!(r.install("192.168.133.74/32".parse().unwrap(), &gateways, Origin::Bgp));
    for (i, g) in gateways.iter().enumerate() {
        r.neighbors.learn(
            T,
            IfIndex(1),
            *g,
            EthernetAddress([2, 0, 0, 0, 0, 7 + i as u8]),
            true,
        );
    }
    let mut seen = std::collections::BTreeMap::new();
    for flow in 0..64u16 {
        let mut dsts = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let mut f = udp_frame([192, 168, 200, 10], [192, 168, 133, 74], 64, 4);
            // A different source port per flow.
            f[14 + 20..14 + 22].copy_from_slice(&(1000 + flow).to_be_bytes());
            r.receive(T, IfIndex(0), f, &mut NoHooks);
            for (_, out) in drain(&mut r) {
                dsts.insert(EthernetFrame::new_checked(&out[..]).unwrap().dst_addr());
            }
        }
        assert_eq!(dsts.len(), 1, "a flow keeps its next hop");
        *seen.entry(dsts.into_iter().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both next hops carry flows: {seen:?}");
    assert!(seen.values().all(|n| *n >= 16), "{seen:?}");
    // A static route to the same prefix beats BGP; withdrawing leaves it.
    r.add_route(
        "192.168.133.74/32".parse().unwrap(),
        "192.168.100.7".parse().unwrap(),
    )
    .unwrap();
    assert!(!r.install("192.168.133.74/32".parse().unwrap(), &gateways, Origin::Bgp));
    assert!(!r.uninstall("192.168.133.74/32".parse().unwrap(), Origin::Bgp));
}

/// Hooks that answer every packet with one verdict.
struct Always(Verdict);

impl Hooks for Always {
    fn pre_routing(&mut self, _: Duration, _: IfIndex, _: &Ipv4Layout, _: &mut Vec<u8>) -> Verdict {
        self.0
    }
}

#[test]
fn a_hook_that_drops_or_takes_a_packet_stops_it_and_is_counted() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(1), "192.168.100.7".parse().unwrap(), NEXT, true);
    let frame = || udp_frame([192, 168, 200, 10], [10, 1, 2, 3], 64, 4);
    assert!(
        r.receive(T, IfIndex(0), frame(), &mut Always(Verdict::Drop))
            .is_none()
    );
    assert!(
        r.receive(T, IfIndex(0), frame(), &mut Always(Verdict::Consumed))
            .is_none()
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!((r.counters().hook, r.counters().consumed), (1, 1));
    r.receive(T, IfIndex(0), frame(), &mut Always(Verdict::Accept));
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!(r.counters().rx_frames, 3);
    assert_eq!(r.counters().forwarded, 1);
}

#[test]
fn frames_of_exactly_a_header_are_read_and_shorter_ones_are_malformed() {
    let mut r = router();
    let mut f = R_IN.as_bytes().to_vec();
    f.extend_from_slice(HOST.as_bytes());
    f.extend_from_slice(&[0x86, 0xdd]);
    r.receive(T, IfIndex(0), f.clone(), &mut NoHooks);
    assert_eq!((r.counters().unsupported, r.counters().malformed), (1, 0));
    f.pop();
    r.receive(T, IfIndex(0), f, &mut NoHooks);
    assert_eq!(r.counters().malformed, 1);
}

#[test]
fn local_delivery_counts_and_takes_the_subnet_broadcast_but_not_a_point_to_point_peer() {
    let mut r = router();
    let d = r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [192, 168, 200, 255], 64, 2),
        &mut NoHooks,
    );
    assert!(d.is_some(), "the subnet's broadcast address is ours");
    assert_eq!(r.counters().local, 1);
    // On a /31 (RFC 3021) there is no broadcast address: the other end is a neighbour.
    let p2p = r.add_interface(Interface {
        mac: EthernetAddress([2, 0, 0, 0, 1, 3]),
        addr: "10.255.0.0/31".parse().unwrap(),
        mtu: 1500,
    });
    let d = r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 255, 0, 1], 64, 2),
        &mut NoHooks,
    );
    assert!(d.is_none());
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, p2p);
    assert!(
        strata_wire::describe::frame(&out[0].1).contains("who-has 10.255.0.1"),
        "resolved, not broadcast"
    );
    assert_eq!(r.counters().arp_requests_sent, 1);
}

#[test]
fn a_packet_of_exactly_the_mtu_goes_and_a_larger_one_without_df_is_dropped_quietly() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(0), "192.168.200.10".parse().unwrap(), HOST, true);
    r.neighbors
        .learn(T, IfIndex(1), "192.168.100.7".parse().unwrap(), NEXT, true);
    r.ifaces[1].mtu = 100;
    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 72),
        &mut NoHooks,
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "100 bytes on a 100-byte link");
    assert_eq!(out[0].0, IfIndex(1));
    let mut no_df = udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 73);
    no_df[14 + 6] = 0;
    let c = strata_wire::checksum::checksum(&{
        let mut h = no_df[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    no_df[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    r.receive(T, IfIndex(0), no_df, &mut NoHooks);
    assert!(
        drain(&mut r).is_empty(),
        "no fragmentation here, and no error without DF"
    );
    assert_eq!(
        (r.counters().too_big, r.counters().icmp_errors_sent),
        (1, 0)
    );
}

#[test]
fn the_nodes_own_packets_and_broadcasts() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(1), "192.168.100.7".parse().unwrap(), NEXT, true);
    let packet = udp_frame([192, 168, 200, 1], [10, 0, 0, 1], 64, 4)[14..].to_vec();
    r.send(T, &packet, &mut NoHooks);
    let broadcast = udp_frame([192, 168, 100, 1], [192, 168, 100, 255], 64, 4)[14..].to_vec();
    r.send(T, &broadcast, &mut NoHooks);
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    assert_eq!(
        EthernetFrame::new_checked(&out[0].1[..])
            .unwrap()
            .dst_addr(),
        NEXT
    );
    assert_eq!(
        EthernetFrame::new_checked(&out[1].1[..])
            .unwrap()
            .dst_addr(),
        EthernetAddress::BROADCAST,
        "the subnet broadcast is sent to everyone, without ARP"
    );
    assert_eq!(r.counters().originated, 2);
    assert_eq!(r.counters().arp_requests_sent, 0);
}

#[test]
fn arp_from_off_the_subnet_is_neither_answered_nor_learned() {
    let mut r = router();
    let ask = |source: &str| {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: HOST,
            source_protocol_addr: source.parse().unwrap(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: "192.168.200.1".parse().unwrap(),
        };
        arp_frame(HOST, EthernetAddress::BROADCAST, &repr)
    };
    r.receive(T, IfIndex(0), ask("10.9.9.9"), &mut NoHooks);
    assert!(drain(&mut r).is_empty());
    assert!(r.neighbors(T).is_empty());
    r.receive(T, IfIndex(0), ask("192.168.200.10"), &mut NoHooks);
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!(r.counters().arp_replies_sent, 1);
    assert_eq!(
        r.neighbors(T),
        [(IfIndex(0), "192.168.200.10".parse().unwrap(), HOST)]
    );
}

#[test]
fn echoes_take_one_next_hop_whatever_their_identifier() {
    let mut r = router();
    let gateways: Vec<Ipv4Addr> = (7..9).map(|i| Ipv4Addr::new(192, 168, 100, i)).collect();
    assert!(r.install("192.168.133.74/32".parse().unwrap(), &gateways, Origin::Bgp));
    for (i, g) in gateways.iter().enumerate() {
        r.neighbors.learn(
            T,
            IfIndex(1),
            *g,
            EthernetAddress([2, 0, 0, 0, 0, 7 + i as u8]),
            true,
        );
    }
    let mut dsts = std::collections::BTreeSet::new();
    for id in 0..32u16 {
        let mut f = udp_frame([192, 168, 200, 10], [192, 168, 133, 74], 64, 4);
        // ICMP echo request with identifier `id` in place of the UDP header.
        f[14 + 9] = 1;
        f[14 + 10] = 0;
        f[14 + 11] = 0;
        let c = strata_wire::checksum::checksum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        f[34..42].copy_from_slice(&[8, 0, 0, 0, 0, 0, 0, 1]);
        f[38..40].copy_from_slice(&id.to_be_bytes());
        r.receive(T, IfIndex(0), f, &mut NoHooks);
        for (_, out) in drain(&mut r) {
            dsts.insert(EthernetFrame::new_checked(&out[..]).unwrap().dst_addr());
        }
    }
    assert_eq!(dsts.len(), 1, "ICMP is hashed on its addresses only");
}

#[test]
fn routes_install_by_preference_and_uninstall_by_their_origin() {
    let mut r = router();
    let p: Ipv4Net = "192.0.2.0/24".parse().unwrap();
    let g7: Ipv4Addr = "192.168.100.7".parse().unwrap();
    let g8: Ipv4Addr = "192.168.100.8".parse().unwrap();
    assert!(r.install(p, &[g7], Origin::Bgp));
    assert!(r.install(p, &[g8], Origin::Bgp), "the same origin replaces");
    assert_eq!(r.fib().get(p).unwrap().gateway, Some(g8));
    assert!(
        r.install(p, &[g7], Origin::Static),
        "a preferred origin replaces"
    );
    assert!(!r.install(p, &[g8], Origin::Bgp));
    assert!(!r.uninstall(p, Origin::Bgp), "not BGP's route");
    assert!(r.uninstall(p, Origin::Static));
    assert!(r.fib().get(p).is_none());
    assert!(
        !r.install(p, &["172.16.0.1".parse().unwrap()], Origin::Bgp),
        "no gateway on a connected subnet"
    );
    assert_eq!(r.interfaces().len(), 2);
    assert_eq!(r.interfaces()[1].addr, "192.168.100.1/24".parse().unwrap());
    r.fib_mut()
        .insert(p, Route::new(IfIndex(1), Some(g7), Origin::Static));
    assert!(r.fib().get(p).is_some());
}

#[test]
fn the_fib_counts_lists_removes_and_caps_ecmp() {
    let mut fib = Fib::new();
    assert!(fib.is_empty());
    let hops: Vec<(IfIndex, Ipv4Addr)> = (0..MAX_ECMP as u8 + 2)
        .map(|i| (IfIndex(1), Ipv4Addr::new(10, 0, 0, i + 1)))
        .collect();
    let wide = Route::multipath(&hops, Origin::Bgp).unwrap();
    assert!(wide.is_multipath());
    let listed: Vec<_> = wide.next_hops().collect();
    assert_eq!(listed.len(), MAX_ECMP, "at most MAX_ECMP next hops");
    assert_eq!(listed[1], (IfIndex(1), Some(Ipv4Addr::new(10, 0, 0, 2))));
    let single = Route::multipath(&hops[..1], Origin::Bgp).unwrap();
    assert!(!single.is_multipath());
    assert_eq!(single.next_hops().count(), 1);
    assert!(Route::multipath(&[], Origin::Bgp).is_none());
    fib.insert("10.0.0.0/8".parse().unwrap(), wide);
    fib.insert("10.1.0.0/16".parse().unwrap(), single);
    assert_eq!(fib.len(), 2);
    assert!(!fib.is_empty());
    let prefixes: Vec<Ipv4Net> = fib.iter().map(|(p, _)| p).collect();
    assert_eq!(
        prefixes,
        [
            "10.0.0.0/8".parse::<Ipv4Net>().unwrap(),
            "10.1.0.0/16".parse().unwrap()
        ]
    );
    let removed = fib.remove("10.1.0.0/16".parse().unwrap()).unwrap();
    assert_eq!(removed.next_hops().count(), 1);
    assert_eq!(fib.len(), 1);
}

#[test]
fn icmp_errors_are_not_sent_about_what_rfc_1812_forbids() {
    let about = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 16)[14..].to_vec();
        edit(&mut p);
        p[10] = 0;
        p[11] = 0;
        let c = strata_wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        icmp::error(
            "192.168.200.1".parse().unwrap(),
            64,
            1,
            &p,
            icmp::TIME_EXCEEDED,
            0,
            0,
        )
    };
    let e = about(&|_| ()).expect("an ordinary packet gets one");
    // The header and the first 8 bytes of the payload are quoted.
    assert_eq!(e.len(), 20 + 8 + 20 + 8);
    assert_eq!(&e[24..28], &[0, 0, 0, 0], "unused word");
    for (what, src) in [
        ("unspecified source", [0, 0, 0, 0]),
        ("broadcast source", [255, 255, 255, 255]),
        ("multicast source", [224, 0, 0, 5]),
        ("loopback source", [127, 0, 0, 1]),
    ] {
        assert!(
            about(&|p| p[12..16].copy_from_slice(&src)).is_none(),
            "{what}"
        );
    }
    for (what, dst) in [
        ("broadcast destination", [255, 255, 255, 255]),
        ("multicast destination", [239, 1, 1, 1]),
    ] {
        assert!(
            about(&|p| p[16..20].copy_from_slice(&dst)).is_none(),
            "{what}"
        );
    }
    assert!(
        about(&|p| p[6..8].copy_from_slice(&[0, 3])).is_none(),
        "a later fragment"
    );
    // ICMP: a query may provoke an error, an error may not.
    let icmp_of = |t: u8| {
        about(&move |p| {
            p[9] = 1;
            p[20] = t;
        })
    };
    assert!(icmp_of(8).is_some(), "echo request");
    assert!(icmp_of(3).is_none(), "an error about an error");
    // A short packet is quoted whole.
    let short = udp_frame([192, 168, 200, 10], [10, 0, 0, 1], 64, 0)[14..].to_vec();
    let e = icmp::error(
        "192.168.200.1".parse().unwrap(),
        64,
        1,
        &short,
        icmp::UNREACHABLE,
        1,
        0,
    )
    .unwrap();
    assert_eq!(e.len(), 20 + 8 + 28);
}

#[test]
fn a_full_neighbour_cache_makes_room_from_expired_entries() {
    let mut r = Router::new(Config {
        forwarding: true,
        neighbor_limit: 1,
        ..Config::default()
    });
    r.add_interface(Interface {
        mac: R_OUT,
        addr: "192.168.100.1/24".parse().unwrap(),
        mtu: 1500,
    });
    r.neighbors
        .learn(T, IfIndex(0), "192.168.100.7".parse().unwrap(), NEXT, true);
    let later = T + neighbor::REACHABLE_TIME + Duration::from_secs(1);
    let packet = udp_frame([192, 168, 100, 1], [192, 168, 100, 8], 64, 4)[14..].to_vec();
    r.send(later, &packet, &mut NoHooks);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert!(
        strata_wire::describe::frame(&out[0].1).contains("who-has 192.168.100.8"),
        "the expired entry made way"
    );
    assert_eq!(r.counters().neighbor_unreachable, 0);
}

#[test]
fn blackhole_routes_drop_quietly_and_reject_routes_answer_host_unreachable() {
    let mut r = router();
    r.neighbors
        .learn(T, IfIndex(0), "192.168.200.10".parse().unwrap(), HOST, true);
    r.neighbors
        .learn(T, IfIndex(1), "192.168.100.7".parse().unwrap(), NEXT, true);
    // More specific than 10.0.0.0/8 via 192.168.100.7: they win the lookup.
    r.add_discard("10.1.0.0/16".parse().unwrap(), RouteKind::Blackhole);
    r.add_discard("10.2.0.0/16".parse().unwrap(), RouteKind::Reject);

    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 1, 2, 3], 64, 4),
        &mut NoHooks,
    );
    assert!(drain(&mut r).is_empty(), "a blackhole says nothing");
    assert_eq!(r.counters().blackholed, 1);

    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 2, 2, 3], 64, 4),
        &mut NoHooks,
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        IfIndex(0),
        "the error goes back where the packet came from"
    );
    let eth = EthernetFrame::new_checked(&out[0].1[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.src_addr().to_string(), "192.168.200.1");
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 1));
    assert_eq!(r.counters().rejected, 1);

    // The rest of 10.0.0.0/8 is still forwarded; the node's own packets are discarded
    // too, without an error to itself.
    r.receive(
        T,
        IfIndex(0),
        udp_frame([192, 168, 200, 10], [10, 3, 2, 3], 64, 4),
        &mut NoHooks,
    );
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!(r.counters().forwarded, 1);
    let originated = r.counters().originated;
    for dst in [[10, 1, 0, 1], [10, 2, 0, 1]] {
        let packet = udp_frame([192, 168, 200, 1], dst, 64, 4)[14..].to_vec();
        r.send(T, &packet, &mut NoHooks);
    }
    assert!(drain(&mut r).is_empty());
    assert_eq!((r.counters().blackholed, r.counters().rejected), (2, 2));
    assert_eq!(r.counters().originated, originated);
    let route = r.fib().get("10.2.0.0/16".parse().unwrap()).unwrap();
    assert_eq!(
        (route.kind, route.origin),
        (RouteKind::Reject, Origin::Static)
    );
}
