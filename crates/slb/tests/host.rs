//! The host agent's VFP layers on a DIP's port, fed what the Mux sends: the VIP's traffic
//! reaches the DIP translated and clamped, its replies leave as the VIP, and nothing else
//! is touched. Results are read back with smoltcp's decoders.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_slb::hash::Distribution;
use strata_slb::host::{
    CLAMPED_MSS, DECAP_LAYER, DipMapping, NAT_LAYER, OutboundNat, SNAT_LAYER, dip_layers,
};
use strata_slb::mux::{Dip, ENCAP_LEN, Mux, MuxConfig, SnatKey, SnatTarget, VipConfig, VipKey};
use strata_vswitch::vfp::{DEFAULT_FLOW_LIMIT, Direction, Port, Verdict};
use strata_wire::flow::proto;
use strata_wire::vxlan::Vni;
use strata_wire::{EthernetAddress, EthernetFrame, Ipv4Packet, TcpPacket, checksum};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);
const DIP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 74);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 10);
const HOST_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 233, 21);
const DIP_MAC: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0x64, 7, 0]);
const T: Duration = Duration::from_secs(1);
/// The DIP serves the VIP's port 80 on 8080, so a lost port rewrite shows.
const BACKEND_PORT: u16 = 8080;

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn key(proto: u8, port: u16) -> VipKey {
    VipKey {
        vip: VIP,
        proto,
        port,
    }
}

fn mapping(name: &str, proto: u8, port: u16, backend_port: u16) -> DipMapping {
    DipMapping {
        name: name.into(),
        vip: key(proto, port),
        backend_port,
    }
}

/// The DIP's port with the layers for TCP 80 → 8080 and ICMP, VNI 4096.
fn port() -> Port {
    let mut port = Port::new("PortalVM", DEFAULT_FLOW_LIMIT);
    for layer in dip_layers(
        DIP,
        vni(4096),
        &[
            mapping("portal-http", proto::TCP, 80, BACKEND_PORT),
            mapping("portal-ping", proto::ICMP, 0, 0),
        ],
        &[],
    ) {
        port.set_layer(layer);
    }
    port
}

/// An IPv4 TCP segment with an MSS option of 1460 and correct checksums.
fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 44];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto::TCP;
    p[12..16].copy_from_slice(&src.0.octets());
    p[16..20].copy_from_slice(&dst.0.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[32] = 0x60;
    p[33] = flags;
    p[40..44].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    TcpPacket::new_unchecked(&mut p[20..]).fill_checksum(&src.0.into(), &dst.0.into());
    p
}

/// An IPv4 UDP datagram of 4 payload bytes (checksum 0: none).
fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto::UDP;
    p[12..16].copy_from_slice(&src.0.octets());
    p[16..20].copy_from_slice(&dst.0.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p
}

/// An IPv4 ICMP echo request.
fn ping(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto::ICMP;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&0x1234u16.to_be_bytes());
    let c = checksum::checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// `packet` in an Ethernet frame to the DIP's MAC, as a VM or the vSwitch sees it.
fn frame(packet: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(DIP_MAC.as_bytes());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.extend_from_slice(packet);
    f
}

/// `packet` as the Mux sends it to the host for a VIP of VNI `v`, in the Ethernet frame
/// that reaches the host's provider NIC.
fn from_mux(packet: &[u8], v: u32) -> Vec<u8> {
    let mut mux = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    let k = strata_wire::flow::Ipv4Layout::parse(packet)
        .unwrap()
        .flow_key(packet)
        .unwrap();
    mux.set_vip(VipConfig {
        key: key(
            k.proto,
            if k.proto == proto::ICMP {
                0
            } else {
                k.dst_port
            },
        ),
        dips: vec![Dip {
            addr: DIP,
            port: BACKEND_PORT,
            host_pa: HOST_PA,
            mac: DIP_MAC,
            weight: 1,
        }],
        distribution: Distribution::FiveTuple,
        vni: vni(v),
    });
    sent_by(&mut mux, packet)
}

/// What `mux` makes of `packet`, in the Ethernet frame that reaches the host's provider
/// NIC.
fn sent_by(mux: &mut Mux, packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; ENCAP_LEN + packet.len()];
    let e = mux.encapsulate(T, packet, &mut out).unwrap();
    let mut f = Vec::new();
    f.extend_from_slice(&[0x00, 0x15, 0x5d, 0x64, 6, 1, 0x00, 0x15, 0x5d, 0x64, 5, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&out[..e.len]);
    f
}

/// The IPv4 packet of an Ethernet frame, its checksums verified.
fn ip(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    ip
}

/// (source, destination, MSS option) of a TCP frame, its checksums verified.
fn tcp_of(frame: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16), u16) {
    let ip = ip(frame);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(
        tcp.verify_checksum(&src.into(), &dst.into()),
        "TCP checksum"
    );
    let opts = tcp.options();
    assert_eq!(opts[..2], [2, 4], "the MSS option stays first");
    let mss = u16::from_be_bytes([opts[2], opts[3]]);
    ((src, tcp.src_port()), (dst, tcp.dst_port()), mss)
}

#[test]
fn the_muxs_packet_reaches_the_dip_translated_and_its_reply_leaves_as_the_vip() {
    let mut port = port();
    let mut f = from_mux(&tcp((CLIENT, 40000), (VIP, 80), 0x02), 4096);
    assert_eq!(port.process(T, Direction::In, &mut f), Verdict::Forward);
    assert_eq!(
        EthernetFrame::new_checked(&f[..]).unwrap().dst_addr(),
        DIP_MAC,
        "decapsulated: the inner frame is what the VM gets"
    );
    assert_eq!(
        tcp_of(&f),
        ((CLIENT, 40000), (DIP, BACKEND_PORT), CLAMPED_MSS)
    );

    let mut reply = frame(&tcp((DIP, BACKEND_PORT), (CLIENT, 40000), 0x12));
    assert_eq!(
        port.process(T, Direction::Out, &mut reply),
        Verdict::Forward
    );
    assert_eq!(
        tcp_of(&reply),
        ((VIP, 80), (CLIENT, 40000), CLAMPED_MSS),
        "direct server return: the reply leaves as the VIP, its SYN-ACK clamped too"
    );
}

#[test]
fn an_echo_to_the_vip_reaches_the_dip_whatever_its_identifier() {
    let mut port = port();
    let mut f = from_mux(&ping(CLIENT, VIP), 4096);
    assert_eq!(port.process(T, Direction::In, &mut f), Verdict::Forward);
    let ip = ip(&f);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, DIP));
    assert_eq!(checksum::checksum(ip.payload()), 0, "ICMP checksum");
}

#[test]
fn another_vnis_traffic_is_neither_decapsulated_nor_translated() {
    let mut port = port();
    let sent = from_mux(&tcp((CLIENT, 40000), (VIP, 80), 0x02), 4097);
    let mut f = sent.clone();
    port.process(T, Direction::In, &mut f);
    assert_eq!(f, sent);
}

#[test]
fn only_the_mapped_protocol_port_and_address_are_translated() {
    let mut port = port();
    for packet in [
        tcp((CLIENT, 40000), (VIP, 81), 0x10),
        udp((CLIENT, 40000), (VIP, 80)),
        tcp(
            (CLIENT, 40000),
            (Ipv4Addr::new(192, 168, 133, 75), 80),
            0x10,
        ),
    ] {
        let sent = frame(&packet);
        let mut f = sent.clone();
        assert_eq!(port.process(T, Direction::In, &mut f), Verdict::Forward);
        assert_eq!(f, sent, "not a mapping's: passed untouched");
    }
}

#[test]
fn the_layers_list_the_mappings_in_order_after_decapsulation() {
    let layers = dip_layers(
        DIP,
        vni(4096),
        &[
            mapping("a", proto::TCP, 80, 80),
            mapping("b", proto::TCP, 443, 443),
            mapping("c", proto::UDP, 53, 53),
        ],
        &[],
    );
    let names: Vec<(&str, u16)> = layers.iter().map(|l| (&l.name[..], l.priority)).collect();
    assert_eq!(names, [(DECAP_LAYER, 100), (NAT_LAYER, 200)]);
    let rules: Vec<(&str, u16)> = layers[1].groups[0]
        .rules
        .iter()
        .map(|r| (&r.name[..], r.priority))
        .collect();
    assert_eq!(rules, [("a", 10), ("b", 11), ("c", 12)]);
    assert_eq!(
        CLAMPED_MSS, 1410,
        "1500 less VXLAN over IPv4 (50) less IPv4 and TCP (40)"
    );
}

/// `packet` (a reply to a SNAT port) as a Mux holding the range sends it to the host.
fn from_mux_snat(packet: &[u8], start: u16) -> Vec<u8> {
    let mut mux = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    mux.set_snat(
        SnatKey::of(VIP, start),
        SnatTarget {
            dip: DIP,
            host_pa: HOST_PA,
            mac: DIP_MAC,
            vni: vni(4096),
        },
    );
    sent_by(&mut mux, packet)
}

#[test]
fn outbound_connections_leave_as_the_vip_and_their_replies_come_back_through_a_mux() {
    const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
    const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 3);
    let outbound = OutboundNat {
        name: "out".into(),
        vip: VIP,
        protocols: vec![proto::TCP, proto::UDP],
        ranges: vec![1024],
        exempt: vec!["192.168.100.0/24".parse().unwrap()],
    };
    let layers = dip_layers(
        DIP,
        vni(4096),
        &[mapping("portal-http", proto::TCP, 80, BACKEND_PORT)],
        std::slice::from_ref(&outbound),
    );
    let names: Vec<(&str, u16)> = layers.iter().map(|l| (&l.name[..], l.priority)).collect();
    assert_eq!(
        names,
        [(DECAP_LAYER, 100), (NAT_LAYER, 200), (SNAT_LAYER, 150)]
    );
    let mut port = Port::new("PortalVM", DEFAULT_FLOW_LIMIT);
    for layer in layers {
        port.set_layer(layer);
    }
    // Out to the world: the VIP and a port of the range.
    let mut f = frame(&tcp((DIP, 40000), (WORLD, 80), 0x02));
    assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
    assert_eq!(tcp_of(&f).0, (VIP, 1024));
    let mut f = frame(&udp((DIP, 5353), (WORLD, 53)));
    assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
    assert_eq!(ip(&f).src_addr(), VIP);
    // The reply, through a Mux holding the range: decapsulated, back to DIP:40000.
    let mut back = from_mux_snat(&tcp((WORLD, 80), (VIP, 1024), 0x12), 1024);
    assert_eq!(port.process(T, Direction::In, &mut back), Verdict::Forward);
    assert_eq!(tcp_of(&back).1, (DIP, 40000));
    // To a neighbour on the DIP's own network: untranslated.
    let mut f = frame(&tcp((DIP, 40001), (NEIGHBOUR, 53), 0x02));
    assert_eq!(port.process(T, Direction::Out, &mut f), Verdict::Forward);
    assert_eq!(tcp_of(&f).0, (DIP, 40001));
    // A load-balanced connection's replies keep the VIP's port 80: no SNAT for them.
    let mut syn = from_mux(&tcp((CLIENT, 50000), (VIP, 80), 0x02), 4096);
    assert_eq!(port.process(T, Direction::In, &mut syn), Verdict::Forward);
    let mut synack = frame(&tcp((DIP, BACKEND_PORT), (CLIENT, 50000), 0x12));
    assert_eq!(
        port.process(T, Direction::Out, &mut synack),
        Verdict::Forward
    );
    assert_eq!(tcp_of(&synack).0, (VIP, 80));
    // An outbound-only DIP has no NAT layer.
    let only = dip_layers(DIP, vni(4096), &[], &[outbound]);
    let names: Vec<&str> = only.iter().map(|l| &l.name[..]).collect();
    assert_eq!(names, [DECAP_LAYER, SNAT_LAYER]);
}
