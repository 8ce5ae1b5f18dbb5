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
