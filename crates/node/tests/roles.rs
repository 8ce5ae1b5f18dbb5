//! The roles' hooks in a node's dataplane, frame by frame: NAT only translates what
//! crosses its external interface and never lets through what it refuses; a host takes
//! into its vSwitch only whole VXLAN datagrams for its provider address; the
//! dataplane's own timers (ARP) wake the node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_node::nat::{Config as NatConfig, PortForward};
use strata_node::{NatRole, NicConfig, Node, NodeConfig, VSwitchConfig};
use strata_wire::EthernetAddress;

const T: Duration = Duration::from_secs(1);
const INSIDE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const OUTSIDE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 9];
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn nic(name: &str, mac: EthernetAddress, addr: &str) -> NicConfig {
    NicConfig {
        name: name.into(),
        mac,
        addr: addr.parse().unwrap(),
        mtu: 1500,
        behind_switch: false,
    }
}

fn config(name: &str, nics: Vec<NicConfig>) -> NodeConfig {
    NodeConfig {
        forwarding: true,
        seed: 1,
        ..NodeConfig::new(name, nics)
    }
}

/// NATVM: inside 192.168.200.1/24 on link 0, outside 203.0.113.1/24 on link 1 (the
/// default route via 203.0.113.254); TCP 8080
/// of the outside address forwarded to 192.168.200.74:80; at most `max_conns`.
fn nat_node(max_conns: usize) -> Node {
    let mut c = config(
        "NATVM",
        vec![
            nic("eth0", INSIDE_MAC, "192.168.200.1/24"),
            nic("eth1", OUTSIDE_MAC, "203.0.113.1/24"),
        ],
    );
    c.routes = vec![(
        "0.0.0.0/0".parse().unwrap(),
        "203.0.113.254".parse().unwrap(),
    )];
    let mut nat = NatConfig::new(EXTERNAL);
    nat.max_conns = max_conns;
    nat.forwards = vec![PortForward {
        proto: 6,
        external_port: 8080,
        internal: "192.168.200.74:80".parse().unwrap(),
    }];
    c.nat = Some(NatRole {
        external_nic: 1,
        config: nat,
    });
    Node::new(c, T).unwrap()
}

/// An Ethernet frame to `dst_mac` with an IPv4 packet of `proto` (TCP SYN or UDP) from
/// src:sport to dst:dport; `flags_frag` is the IPv4 flags and fragment offset word.
fn packet(
    dst_mac: EthernetAddress,
    proto: u8,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    flags_frag: u16,
) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 + 16 };
    let total = 20 + l4_len;
    let mut f = dst_mac.0.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&flags_frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = strata_wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 5 << 4;
        l4[13] = 0x02;
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&l4);
    let c = strata_wire::checksum::checksum(&pseudo);
    let at = if proto == 6 { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

fn drain(node: &mut Node) -> Vec<(usize, Vec<u8>)> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

#[test]
fn the_port_forward_is_for_the_outside_only() {
    let mut nat = nat_node(16);
    // From inside, to the outside address's forwarded port: the NAT's own, not DNATed
    // back inside.
    let hairpin = packet(
        INSIDE_MAC,
        6,
        ("192.168.200.10".parse().unwrap(), 40000),
        (EXTERNAL, 8080),
        0x4000,
    );
    nat.receive(T, 0, hairpin);
    nat.poll(T);
    let c = *nat.router().counters();
    assert_eq!((c.local, c.forwarded), (1, 0), "{c:?}");
    assert!(nat.nat().unwrap().is_empty(), "no connection for it");
    // The same from outside is forwarded inside (an ARP for the server goes out).
    let inbound = packet(
        OUTSIDE_MAC,
        6,
        ("198.51.100.7".parse().unwrap(), 40000),
        (EXTERNAL, 8080),
        0x4000,
    );
    nat.receive(T, 1, inbound);
    assert_eq!(nat.router().counters().forwarded, 1);
    assert_eq!(nat.nat().unwrap().len(), 1);
}

#[test]
fn what_the_nat_refuses_does_not_leave_untranslated() {
    // Room for one connection: the second, to another server, is refused and dropped,
    // never sent out with its inside address.
    let mut nat = nat_node(1);
    let out = |port| {
        packet(
            INSIDE_MAC,
            6,
            ("192.168.200.10".parse().unwrap(), port),
            ("198.51.100.7".parse().unwrap(), 80),
            0x4000,
        )
    };
    nat.receive(T, 0, out(40000));
    nat.receive(T, 0, out(40001));
    nat.poll(T);
    let c = *nat.router().counters();
    assert_eq!((c.forwarded, c.hook), (1, 1), "{c:?}");
    // The next hop answers ARP: what waited goes out, from the outside address only.
    let mut reply = OUTSIDE_MAC.0.to_vec();
    reply.extend_from_slice(&PEER);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&PEER);
    reply.extend_from_slice(&[203, 0, 113, 254]);
    reply.extend_from_slice(&OUTSIDE_MAC.0);
    reply.extend_from_slice(&EXTERNAL.octets());
    nat.receive(T, 1, reply);
    let sent: Vec<Vec<u8>> = drain(&mut nat)
        .into_iter()
        .filter(|(link, f)| *link == 1 && f[12..14] == [0x08, 0x00])
        .map(|(_, f)| f)
        .collect();
    assert_eq!(sent.len(), 1, "one packet out");
    assert_eq!(
        &sent[0][26..30],
        &EXTERNAL.octets(),
        "from the outside address"
    );
    assert_eq!(nat.nat().unwrap().counters().table_full, 1);
}

/// A Hyper-V host: its provider address 192.168.233.21/24 on link 0, a vSwitch with
/// an uplink (link 1) and no VMs.
fn host() -> Node {
    let mut c = config(
        "HyperVHost",
        vec![nic("pa", INSIDE_MAC, "192.168.233.21/24")],
    );
    c.forwarding = false;
    c.vswitch = Some(VSwitchConfig {
        name: "CCI_External".into(),
        vms: vec![],
        provider_addrs: vec!["192.168.233.21".parse().unwrap()],
    });
    Node::new(c, T).unwrap()
}

#[test]
fn only_whole_vxlan_datagrams_for_the_pa_go_to_the_switch() {
    let pa: Ipv4Addr = "192.168.233.21".parse().unwrap();
    let mux: Ipv4Addr = "192.168.233.20".parse().unwrap();
    let mut h = host();
    let shown = format!("{:?}", h.dataplane());
    assert!(
        shown.starts_with("Dataplane") && shown.contains("Uplink"),
        "{shown}"
    );
    // UDP to another port of the PA, and the first fragment of a datagram to the VXLAN
    // port: both are the host's own (its stack answers or drops them), not VXLAN.
    h.receive(T, 0, packet(INSIDE_MAC, 17, (mux, 5000), (pa, 53), 0x4000));
    h.receive(
        T,
        0,
        packet(INSIDE_MAC, 17, (mux, 5000), (pa, 4789), 0x2000),
    );
    let c = *h.router().counters();
    assert_eq!((c.local, c.consumed), (2, 0), "{c:?}");
    let s = *h.vswitch().unwrap().counters();
    assert_eq!((s.malformed, s.decapsulated, s.no_such_vm), (0, 0, 0));
    // A whole datagram to the VXLAN port is taken into the switch (which finds it too
    // short to be VXLAN, and says so).
    h.receive(
        T,
        0,
        packet(INSIDE_MAC, 17, (mux, 5000), (pa, 4789), 0x4000),
    );
    assert_eq!(h.router().counters().consumed, 1);
    assert_eq!(h.vswitch().unwrap().counters().malformed, 1);
}

#[test]
fn an_unresolved_next_hop_wakes_the_node_to_ask_again() {
    // A router with nothing but its interfaces: a packet to resolve is its only timer.
    let mut r = Node::new(
        config(
            "router",
            vec![
                nic("eth0", INSIDE_MAC, "10.0.0.1/24"),
                nic("eth1", OUTSIDE_MAC, "10.0.1.1/24"),
            ],
        ),
        T,
    )
    .unwrap();
    assert_eq!(r.poll_at(T), None, "nothing to do");
    r.receive(
        T,
        0,
        packet(
            INSIDE_MAC,
            17,
            ("10.0.0.5".parse().unwrap(), 1),
            ("10.0.1.9".parse().unwrap(), 2),
            0x4000,
        ),
    );
    let first = drain(&mut r);
    assert_eq!(first.len(), 1, "an ARP request");
    let at = r.poll_at(T).expect("a deadline to ask again");
    assert!(at > T && at <= T + Duration::from_secs(2), "{at:?}");
    r.poll(at);
    let again = drain(&mut r);
    assert!(
        again
            .iter()
            .any(|(l, f)| *l == 1 && f[12..14] == [0x08, 0x06]),
        "asked again"
    );
}
