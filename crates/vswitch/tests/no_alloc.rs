//! VFP's per-packet path allocates nothing once a flow is cached: an inbound VXLAN
//! frame decapsulated and NATed, and the outbound reply NATed back and encapsulated
//! again (into a buffer with room in front, as a NIC's receive buffers have). Counted by
//! the testkit's allocator, which counts this thread's allocations.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::PacketBuilder;
use ipnet::{IpNet, Ipv4Net};
use strata_testkit::allocations;
use strata_vswitch::vfp::{
    Action, Conditions, DEFAULT_FLOW_LIMIT, Direction, EncapSpec, Family, Group, Layer, NatSpec,
    PUSH_LEN, Port, Rule, Verdict,
};
use strata_wire::EthernetAddress;
use strata_wire::vxlan::{self, Vni};

#[global_allocator]
static ALLOCATOR: strata_testkit::Counting = strata_testkit::Counting;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);
const DIP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 74);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 10);
const MUX_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 233, 20);
const HOST_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 233, 21);

fn group(direction: Direction, rules: Vec<Rule>) -> Group {
    Group {
        name: format!("{direction}"),
        direction,
        family: Family::Ipv4,
        priority: 1,
        rules,
    }
}

fn rule(conditions: Conditions, action: Action) -> Rule {
    Rule {
        name: "r".into(),
        priority: 1,
        conditions,
        action,
    }
}

/// Decap and VIP -> DIP inbound; outbound, the reply goes back into VXLAN (as a
/// tunnelled reply would).
fn port() -> Port {
    let vni = Vni::new(4096).unwrap();
    let mut port = Port::new("vm", DEFAULT_FLOW_LIMIT);
    port.set_layer(Layer {
        name: "VNET".into(),
        priority: 100,
        groups: vec![
            group(
                Direction::In,
                vec![rule(
                    Conditions {
                        encapsulated: Some(true),
                        vni: Some(vni),
                        ..Conditions::any()
                    },
                    Action::Decap,
                )],
            ),
            group(
                Direction::Out,
                vec![rule(
                    Conditions::any(),
                    Action::Encap(EncapSpec {
                        src_pa: HOST_PA,
                        dst_pa: MUX_PA,
                        vni,
                        outer_src_mac: EthernetAddress([2, 0, 0, 0, 0, 21]),
                        outer_dst_mac: EthernetAddress([2, 0, 0, 0, 0, 20]),
                    }),
                )],
            ),
        ],
    });
    port.set_layer(Layer {
        name: "SLB_NAT".into(),
        priority: 200,
        groups: vec![group(
            Direction::In,
            vec![rule(
                Conditions {
                    dst: vec![IpNet::V4(Ipv4Net::from(VIP))],
                    ..Conditions::any()
                },
                Action::Nat(NatSpec {
                    src: None,
                    dst: Some((DIP.into(), Some(8080))),
                }),
            )],
        )],
    });
    port
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1, 64000)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, b"0123456789").unwrap();
    out
}

fn encapsulated(inner: &[u8]) -> Vec<u8> {
    let mut payload = [0u8; 8].to_vec();
    vxlan::emit(Vni::new(4096).unwrap(), &mut payload[..8]).unwrap();
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 20], [2, 0, 0, 0, 0, 21])
        .ipv4(MUX_PA.octets(), HOST_PA.octets(), 64)
        .udp(49999, vxlan::UDP_PORT);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

#[test]
fn the_vfp_fast_path_allocates_nothing() {
    // The counter counts.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(allocations() > before);

    let now = Duration::from_secs(1);
    let mut port = port();
    let request = encapsulated(&tcp(CLIENT, 40000, VIP, 80));
    let reply = tcp(DIP, 8080, CLIENT, 40000);
    // Working buffers with room for a pushed encapsulation.
    let mut frame = Vec::with_capacity(request.len() + reply.len() + PUSH_LEN);
    for template in [&request, &reply] {
        frame.clear();
        frame.extend_from_slice(template);
        let direction = if template == &request {
            Direction::In
        } else {
            Direction::Out
        };
        assert_eq!(port.process(now, direction, &mut frame), Verdict::Forward);
    }
    let slow = port.counters().slow_path;
    let fast = port.counters().fast_path;

    let before = allocations();
    for _ in 0..10_000 {
        frame.clear();
        frame.extend_from_slice(&request);
        port.process(now, Direction::In, &mut frame);
        frame.clear();
        frame.extend_from_slice(&reply);
        port.process(now, Direction::Out, &mut frame);
    }
    assert_eq!(allocations() - before, 0, "the fast path allocated");
    assert_eq!(
        port.counters().slow_path,
        slow,
        "packets left the fast path"
    );
    assert_eq!(port.counters().fast_path - fast, 20_000);
}
