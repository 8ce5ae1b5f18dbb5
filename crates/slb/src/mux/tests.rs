//! Mux behaviour; the encapsulation is read back with smoltcp's decoders.

use super::*;
use strata_wire::{EthernetFrame, Ipv4Packet, UdpPacket, checksum};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 74);
const T: Duration = Duration::from_secs(1);

fn dip(last: u8) -> Dip {
    Dip {
        addr: Ipv4Addr::new(192, 168, 100, last),
        port: 80,
        host_pa: Ipv4Addr::new(192, 168, 233, 21),
        mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, last]),
        weight: 1,
    }
}

fn vip(dips: Vec<Dip>, distribution: Distribution) -> VipConfig {
    VipConfig {
        key: VipKey {
            vip: VIP,
            proto: proto::TCP,
            port: 80,
        },
        dips,
        distribution,
        vni: Vni::new(4096).unwrap(),
    }
}

fn mux() -> Mux {
    let mut m = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    m.set_vip(vip(
        vec![dip(74), dip(75), dip(76)],
        Distribution::FiveTuple,
    ));
    m
}

/// A TCP SYN from `src:sport` to the VIP, with correct checksums.
fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 63;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&VIP.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x02;
    p
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc0a8_c800 + (i % 200) + 10),
        40000 + (i % 20000) as u16,
    )
}

#[test]
fn encapsulation_reads_back_with_an_independent_decoder() {
    let mut m = mux();
    let packet = syn(Ipv4Addr::new(192, 168, 200, 10), 49152);
    let mut out = [0u8; 2048];
    let e = m.encapsulate(T, &packet, &mut out).unwrap();
    assert_eq!(e.len, ENCAP_LEN + packet.len());
    let outer = Ipv4Packet::new_checked(&out[..e.len]).unwrap();
    assert!(outer.verify_checksum());
    assert_eq!(outer.src_addr(), Ipv4Addr::new(192, 168, 233, 20));
    assert_eq!(outer.dst_addr(), Ipv4Addr::new(192, 168, 233, 21));
    let udp = UdpPacket::new_checked(outer.payload()).unwrap();
    assert_eq!(udp.dst_port(), 4789);
    assert!(udp.src_port() >= 49152);
    assert_eq!(usize::from(udp.len()), e.len - 20);
    let (vni, inner) = vxlan::parse(udp.payload()).unwrap();
    assert_eq!(vni.get(), 4096);
    let eth = EthernetFrame::new_checked(inner).unwrap();
    assert_eq!(
        eth.src_addr(),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1])
    );
    assert_eq!(
        eth.payload(),
        &packet[..],
        "the packet itself is not rewritten"
    );
    assert_eq!(&eth.dst_addr().as_bytes()[3..], &[0, 0, e.dip.octets()[3]]);
}

#[test]
fn source_port_varies_with_the_flow() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    let ports: std::collections::BTreeSet<u16> = (0..64)
        .map(|i| {
            let (c, p) = client(i);
            m.encapsulate(T, &syn(c, p), &mut out).unwrap();
            u16::from_be_bytes([out[20], out[21]])
        })
        .collect();
    assert!(
        ports.len() > 50,
        "{} distinct source ports for 64 flows",
        ports.len()
    );
}

#[test]
fn two_muxes_choose_the_same_dip() {
    let mut a = mux();
    let mut b = mux();
    let mut out = [0u8; 2048];
    for i in 0..2000 {
        let (c, p) = client(i);
        let packet = syn(c, p);
        let da = a.encapsulate(T, &packet, &mut out).unwrap().dip;
        let db = b.encapsulate(T, &packet, &mut out).unwrap().dip;
        assert_eq!(da, db);
    }
}

#[test]
fn spread_over_dips_is_even() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..6000 {
        let (c, p) = client(i * 7);
        *counts
            .entry(m.encapsulate(T, &syn(c, p), &mut out).unwrap().dip)
            .or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3);
    for n in counts.values() {
        assert!((1700..2300).contains(n), "{counts:?}");
    }
}

#[test]
fn established_flows_keep_their_dip_when_the_pool_grows() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    let flows: Vec<_> = (0..500).map(client).collect();
    let before: Vec<_> = flows
        .iter()
        .map(|(c, p)| m.encapsulate(T, &syn(*c, *p), &mut out).unwrap().dip)
        .collect();
    m.set_vip(vip(
        vec![dip(74), dip(75), dip(76), dip(77)],
        Distribution::FiveTuple,
    ));
    let after: Vec<_> = flows
        .iter()
        .map(|(c, p)| m.encapsulate(T, &syn(*c, *p), &mut out).unwrap().dip)
        .collect();
    assert_eq!(before, after);
    // A fresh Mux without the flow table would move about a quarter of them.
    let mut fresh = Mux::new(m.config().clone());
    fresh.set_vip(vip(
        vec![dip(74), dip(75), dip(76), dip(77)],
        Distribution::FiveTuple,
    ));
    let moved = flows
        .iter()
        .zip(&before)
        .filter(|((c, p), d)| fresh.encapsulate(T, &syn(*c, *p), &mut out).unwrap().dip != **d)
        .count();
    assert!(moved > 50, "{moved}");
}

#[test]
fn unhealthy_dip_gets_no_new_flows_and_others_keep_theirs() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    let flows: Vec<_> = (0..300).map(client).collect();
    let before: Vec<_> = flows
        .iter()
        .map(|(c, p)| m.encapsulate(T, &syn(*c, *p), &mut out).unwrap().dip)
        .collect();
    let sick = Ipv4Addr::new(192, 168, 100, 75);
    assert!(m.set_dip_health(sick, false));
    for ((c, p), was) in flows.iter().zip(&before) {
        let now = m.encapsulate(T, &syn(*c, *p), &mut out).unwrap().dip;
        assert_ne!(now, sick);
        if *was != sick {
            assert_eq!(now, *was, "flows to healthy DIPs are not disturbed");
        }
    }
    assert!(m.counters().rehashed > 0);
    for i in 1000..1300 {
        let (c, p) = client(i);
        assert_ne!(m.encapsulate(T, &syn(c, p), &mut out).unwrap().dip, sick);
    }
    assert!(m.set_dip_health(sick, true));
    assert!(!m.set_dip_health(sick, true), "no change the second time");
}

#[test]
fn two_tuple_sends_a_client_to_one_dip() {
    let mut m = mux();
    m.set_vip(vip(vec![dip(74), dip(75), dip(76)], Distribution::TwoTuple));
    let mut out = [0u8; 2048];
    let c = Ipv4Addr::new(192, 168, 200, 10);
    let dips: std::collections::BTreeSet<_> = (0..100)
        .map(|p| m.encapsulate(T, &syn(c, 30000 + p), &mut out).unwrap().dip)
        .collect();
    assert_eq!(dips.len(), 1);
}

#[test]
fn drops_are_counted() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    let mut other = syn(Ipv4Addr::new(192, 168, 200, 10), 1);
    other[23] = 81; // port 81: no entry
    assert_eq!(m.encapsulate(T, &other, &mut out), Err(MuxDrop::NoVip));
    assert_eq!(
        m.encapsulate(T, &[0x45, 0, 0], &mut out),
        Err(MuxDrop::Malformed)
    );
    let mut frag = syn(Ipv4Addr::new(192, 168, 200, 10), 1);
    frag[6] = 0x00;
    frag[7] = 0x10;
    frag[10] = 0;
    frag[11] = 0;
    let c = checksum::checksum(&frag[..20]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(m.encapsulate(T, &frag, &mut out), Err(MuxDrop::Fragment));
    let mut small = [0u8; 60];
    assert_eq!(
        m.encapsulate(T, &syn(Ipv4Addr::new(192, 168, 200, 10), 1), &mut small),
        Err(MuxDrop::BufferTooSmall)
    );
    m.set_vip(vip(vec![], Distribution::FiveTuple));
    assert_eq!(
        m.encapsulate(T, &syn(Ipv4Addr::new(192, 168, 200, 99), 1), &mut out),
        Err(MuxDrop::NoHealthyDip)
    );
    let c = m.counters();
    assert_eq!(
        (c.no_vip, c.malformed, c.fragments, c.no_healthy_dip),
        (1, 1, 1, 1)
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
        let mut m = mux();
        let mut out = [0u8; 256];
        let _ = m.encapsulate(T, &bytes, &mut out);
    }
}
