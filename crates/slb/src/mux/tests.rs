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

/// The DIP the Mux sends a SYN from client `i` to.
fn chosen(m: &mut Mux, i: u32) -> Result<Ipv4Addr, MuxDrop> {
    let (src, sport) = client(i);
    let mut out = [0u8; 2048];
    m.encapsulate(T, &syn(src, sport), &mut out).map(|e| e.dip)
}

#[test]
fn a_removed_vip_takes_no_more_flows_and_its_slot_serves_the_next() {
    let mut m = mux();
    assert!(m.has_vip(VIP));
    assert!(chosen(&mut m, 1).is_ok());
    m.remove_vip(&vip(vec![], Distribution::FiveTuple).key);
    assert!(!m.has_vip(VIP));
    assert!(m.vips().is_empty());
    // Also an established flow: its flow-table entry points at nothing now.
    assert_eq!(chosen(&mut m, 1), Err(MuxDrop::NoVip));
    assert_eq!(chosen(&mut m, 2), Err(MuxDrop::NoVip));
    m.set_vip(vip(vec![dip(80)], Distribution::FiveTuple));
    assert_eq!(chosen(&mut m, 1), Ok(Ipv4Addr::new(192, 168, 100, 80)));
}

#[test]
fn a_replaced_vip_keeps_each_dips_own_health() {
    let mut m = mux();
    assert!(m.set_dip_health(Ipv4Addr::new(192, 168, 100, 75), false));
    assert!(
        !m.set_dip_health(Ipv4Addr::new(192, 168, 100, 75), false),
        "no change"
    );
    // Reordered, one gone, one new: .75 stays down, the new .77 starts up.
    m.set_vip(vip(
        vec![dip(77), dip(75), dip(74)],
        Distribution::FiveTuple,
    ));
    let (config, health) = &m.vips()[0];
    let addrs: Vec<u8> = config.dips.iter().map(|d| d.addr.octets()[3]).collect();
    assert_eq!(addrs, [77, 75, 74]);
    assert_eq!(health, &[true, false, true]);
    for i in 0..200 {
        assert_ne!(chosen(&mut m, i), Ok(Ipv4Addr::new(192, 168, 100, 75)));
    }
}

#[test]
fn maglev_at_the_mux_is_keyed_by_dip_address_and_port() {
    // The Mux's choice is Maglev over (address, port) of the healthy DIPs, with the
    // flow's 5-tuple hash: built here from the same identities, independently.
    let dips = vec![dip(74), dip(75), dip(76)];
    let ids: Vec<[u8; 6]> = dips.iter().map(Dip::identity).collect();
    let table = Maglev::build(ids.iter().map(|id| (&id[..], 1)));
    let mut m = mux();
    for i in 0..300 {
        let (src, sport) = client(i);
        let hash = flow_hash(Distribution::FiveTuple, proto::TCP, src, VIP, sport, 80);
        let want = dips[table.lookup(hash).unwrap()].addr;
        assert_eq!(chosen(&mut m, i), Ok(want), "flow {i}");
    }
    // Another port on one DIP is another identity: some flows move.
    let mut moved = dips.clone();
    moved[1].port = 8080;
    let mut other = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    other.set_vip(vip(moved, Distribution::FiveTuple));
    let mut m = mux();
    let differ = (0..300)
        .filter(|&i| chosen(&mut m, i) != chosen(&mut other, i))
        .count();
    assert!(differ > 0, "the port is part of the key");
}

#[test]
fn flows_of_one_vip_keep_their_dips_when_another_vip_changes() {
    let mut m = mux();
    let second = VipConfig {
        key: VipKey {
            vip: VIP,
            proto: proto::TCP,
            port: 443,
        },
        ..vip(vec![dip(74), dip(75), dip(76)], Distribution::FiveTuple)
    };
    m.set_vip(second.clone());
    let before: Vec<_> = (0..100).map(|i| chosen(&mut m, i)).collect();
    // The :443 entry loses two DIPs and is then removed: :80's flows stay put.
    m.set_vip(VipConfig {
        dips: vec![dip(76)],
        ..second.clone()
    });
    let after: Vec<_> = (0..100).map(|i| chosen(&mut m, i)).collect();
    assert_eq!(before, after);
    m.remove_vip(&second.key);
    let after: Vec<_> = (0..100).map(|i| chosen(&mut m, i)).collect();
    assert_eq!(before, after);
    assert!(m.has_vip(VIP), ":80 is still there");
    assert!(!m.has_vip(Ipv4Addr::new(192, 168, 133, 75)));
}

#[test]
fn the_vip_listing_is_ordered_by_key() {
    let mut m = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    for (addr, port) in [(75u8, 80u16), (74, 443), (74, 80)] {
        m.set_vip(VipConfig {
            key: VipKey {
                vip: Ipv4Addr::new(192, 168, 133, addr),
                proto: proto::TCP,
                port,
            },
            ..vip(vec![dip(74)], Distribution::FiveTuple)
        });
    }
    let keys: Vec<(u8, u16)> = m
        .vips()
        .iter()
        .map(|(c, _)| (c.key.vip.octets()[3], c.key.port))
        .collect();
    assert_eq!(keys, [(74, 80), (74, 443), (75, 80)]);
}

#[test]
fn established_flows_keep_their_dip_when_the_pool_is_reordered_or_shrinks() {
    // A regression test: the flow table remembered DIPs by index into the entry's list,
    // so reordering the list moved established flows, and a shorter list after a
    // removal read past its end (a panic on the packet path).
    let mut m = mux();
    let before: Vec<_> = (0..200).map(|i| chosen(&mut m, i)).collect();
    m.set_vip(vip(
        vec![dip(76), dip(74), dip(75)],
        Distribution::FiveTuple,
    ));
    let after: Vec<_> = (0..200).map(|i| chosen(&mut m, i)).collect();
    assert_eq!(before, after, "reordered: every flow stays");
    // .74 leaves: only its flows move, to the others.
    m.set_vip(vip(vec![dip(76), dip(75)], Distribution::FiveTuple));
    for (i, was) in before.iter().enumerate() {
        let now = chosen(&mut m, i as u32);
        if *was == Ok(Ipv4Addr::new(192, 168, 100, 74)) {
            assert!(now.is_ok() && now != *was);
        } else {
            assert_eq!(now, *was, "flow {i}");
        }
    }
    // .74 comes back: a new flow may go to it, the established ones stay.
    let settled: Vec<_> = (0..200).map(|i| chosen(&mut m, i)).collect();
    m.set_vip(vip(
        vec![dip(74), dip(75), dip(76)],
        Distribution::FiveTuple,
    ));
    let again: Vec<_> = (0..200).map(|i| chosen(&mut m, i)).collect();
    assert_eq!(settled, again);
}

#[test]
fn a_header_too_short_for_its_ports_is_malformed_and_counted() {
    let mut m = mux();
    let mut out = [0u8; 2048];
    // A valid IPv4 header whose TCP part is two bytes: no room for the ports.
    let mut p = syn(Ipv4Addr::new(192, 168, 200, 10), 1);
    p.truncate(22);
    p[2..4].copy_from_slice(&22u16.to_be_bytes());
    p[10] = 0;
    p[11] = 0;
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(m.encapsulate(T, &p, &mut out), Err(MuxDrop::Malformed));
    assert_eq!(m.encapsulate(T, &p, &mut out), Err(MuxDrop::Malformed));
    assert_eq!(m.counters().malformed, 2);
    assert_eq!(m.counters().fragments, 0);
}

#[test]
fn each_packet_sent_and_each_flow_looked_up_is_counted() {
    let mut m = mux();
    for i in 0..3 {
        chosen(&mut m, i).unwrap();
        chosen(&mut m, i).unwrap();
    }
    assert_eq!(m.counters().encapsulated, 6);
    assert_eq!(
        *m.flow_counters(),
        flow_table::Counters {
            hits: 3,
            misses: 3,
            promoted: 3,
            evicted_new: 0,
            evicted_established: 0,
        }
    );
}

#[test]
fn a_flow_whose_dip_went_down_is_counted_as_rehashed_once() {
    let mut m = mux();
    let dips: Vec<_> = (0..20).map(|i| chosen(&mut m, i).unwrap()).collect();
    assert_eq!(m.counters().rehashed, 0);
    assert!(m.set_dip_health(Ipv4Addr::new(192, 168, 100, 75), false));
    let moved = dips.iter().filter(|d| d.octets()[3] == 75).count();
    assert!(moved > 0);
    for i in 0..20 {
        chosen(&mut m, i).unwrap();
    }
    assert_eq!(m.counters().rehashed, moved as u64);
    for i in 0..20 {
        chosen(&mut m, i).unwrap();
    }
    assert_eq!(
        m.counters().rehashed,
        moved as u64,
        "remembered on the new DIP"
    );
}

#[test]
fn flows_of_a_later_vip_are_remembered_under_it() {
    let mut m = mux();
    let second = VipConfig {
        key: VipKey {
            vip: VIP,
            proto: proto::TCP,
            port: 443,
        },
        ..vip(vec![dip(74), dip(75), dip(76)], Distribution::FiveTuple)
    };
    m.set_vip(second.clone());
    let to_443 = |m: &mut Mux, i: u32| {
        let (src, sport) = client(i);
        let mut p = syn(src, sport);
        p[22..24].copy_from_slice(&443u16.to_be_bytes());
        let mut out = [0u8; 2048];
        m.encapsulate(T, &p, &mut out).map(|e| e.dip)
    };
    let before: Vec<_> = (0..50).map(|i| to_443(&mut m, i)).collect();
    m.set_vip(VipConfig {
        dips: vec![dip(74), dip(75), dip(76), dip(77), dip(78)],
        ..second
    });
    let after: Vec<_> = (0..50).map(|i| to_443(&mut m, i)).collect();
    assert_eq!(before, after, "the flows of :443 kept their DIPs");
    assert_eq!(m.counters().rehashed, 0);
}

#[test]
fn the_output_buffer_needs_exactly_the_encapsulation_more() {
    let mut m = mux();
    let p = syn(Ipv4Addr::new(192, 168, 200, 10), 1);
    let mut exact = vec![0u8; ENCAP_LEN + p.len()];
    assert_eq!(m.encapsulate(T, &p, &mut exact).unwrap().len, exact.len());
    let mut short = vec![0u8; ENCAP_LEN + p.len() - 1];
    assert_eq!(
        m.encapsulate(T, &p, &mut short),
        Err(MuxDrop::BufferTooSmall)
    );
}

/// A UDP datagram to VIP:53 of `len` bytes in all.
fn big_udp(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 63;
    p[9] = proto::UDP;
    p[12..16].copy_from_slice(&Ipv4Addr::new(192, 168, 200, 10).octets());
    p[16..20].copy_from_slice(&VIP.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5353u16.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p
}

#[test]
fn an_encapsulation_that_would_pass_65535_bytes_is_refused() {
    let mut m = mux();
    m.set_vip(VipConfig {
        key: VipKey {
            vip: VIP,
            proto: proto::UDP,
            port: 53,
        },
        ..vip(vec![dip(74)], Distribution::FiveTuple)
    });
    let mut out = vec![0u8; 70_000];
    let largest = big_udp(usize::from(u16::MAX) - ENCAP_LEN);
    let e = m.encapsulate(T, &largest, &mut out).unwrap();
    assert_eq!(e.len, usize::from(u16::MAX));
    let over = big_udp(usize::from(u16::MAX) - ENCAP_LEN + 1);
    assert_eq!(
        m.encapsulate(T, &over, &mut out),
        Err(MuxDrop::BufferTooSmall)
    );
    let largest_ip = big_udp(usize::from(u16::MAX));
    assert_eq!(
        m.encapsulate(T, &largest_ip, &mut out),
        Err(MuxDrop::BufferTooSmall)
    );
}

#[test]
fn the_generation_moves_with_every_change_and_live_vips_are_those_with_a_healthy_dip() {
    let mut m = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([2, 0, 0, 0, 0, 1]),
    ));
    let g0 = m.generation();
    let config = vip(vec![dip(74), dip(75)], Distribution::FiveTuple);
    let key = config.key;
    m.set_vip(config.clone());
    let g1 = m.generation();
    assert!(g1 > g0);
    assert_eq!(m.vip(&key), Some(&config));
    assert_eq!(m.live_vips().collect::<Vec<_>>(), [key.vip]);
    // Health that does not change moves nothing.
    assert!(!m.set_dip_health(dip(74).addr, true));
    assert_eq!(m.generation(), g1);
    m.set_dip_health(dip(74).addr, false);
    let g2 = m.generation();
    assert!(g2 > g1);
    assert_eq!(m.live_vips().count(), 1, "one DIP is still healthy");
    m.set_dip_health(dip(75).addr, false);
    assert!(m.generation() > g2);
    assert_eq!(
        m.live_vips().count(),
        0,
        "no healthy DIP: nothing to announce"
    );
    let g3 = m.generation();
    m.remove_vip(&key);
    assert!(m.generation() > g3);
    assert_eq!(m.vip(&key), None);
    // Removing what is not there moves nothing.
    let g4 = m.generation();
    m.remove_vip(&key);
    assert_eq!(m.generation(), g4);
}

#[test]
fn a_vip_address_is_the_muxs_while_any_entry_has_it() {
    let mut m = mux();
    let other = Ipv4Addr::new(192, 168, 133, 75);
    assert!(m.has_vip(VIP));
    assert!(!m.has_vip(other));
    // A second entry (another port) on the same address, then the same entry again.
    let mut https = vip(vec![dip(74)], Distribution::FiveTuple);
    https.key.port = 443;
    m.set_vip(https.clone());
    m.set_vip(https.clone());
    m.set_vip(vip(vec![dip(75)], Distribution::FiveTuple));
    m.remove_vip(&vip(vec![], Distribution::FiveTuple).key);
    assert!(m.has_vip(VIP), "port 443 still has it");
    m.remove_vip(&https.key);
    assert!(!m.has_vip(VIP), "no entry has it");
    // Removing what is not there changes nothing.
    m.remove_vip(&https.key);
    let mut elsewhere = vip(vec![dip(74)], Distribution::FiveTuple);
    elsewhere.key.vip = other;
    m.set_vip(elsewhere);
    assert!(m.has_vip(other) && !m.has_vip(VIP));
}

#[test]
fn in_place_encapsulation_writes_what_the_copying_one_writes() {
    let (mut copying, mut in_place) = (mux(), mux());
    for i in 0..20 {
        let p = syn(Ipv4Addr::new(192, 168, 200, 10), i);
        let mut out = vec![0u8; ENCAP_LEN + p.len()];
        let copied = copying.encapsulate(T, &p, &mut out).unwrap();
        // Room, the packet, and bytes past it that are not the packet's.
        let mut buf = vec![0u8; ENCAP_LEN];
        buf.extend_from_slice(&p);
        buf.extend_from_slice(&[0xee; 7]);
        let layout = Ipv4Layout::parse(&p).unwrap();
        let done = in_place.encapsulate_in_place(T, &layout, &mut buf).unwrap();
        assert_eq!(done, copied);
        assert_eq!(&buf[..done.len], &out[..]);
    }
    let p = syn(Ipv4Addr::new(192, 168, 200, 10), 1);
    let layout = Ipv4Layout::parse(&p).unwrap();
    let mut short = vec![0u8; ENCAP_LEN - 1];
    short.extend_from_slice(&p);
    assert_eq!(
        in_place.encapsulate_in_place(T, &layout, &mut short),
        Err(MuxDrop::BufferTooSmall)
    );
    assert_eq!(in_place.counters().encapsulated, 20);
}

/// A packet from `src:sport` to VIP:`dport` of protocol `proto` (TCP or UDP).
fn to_vip(src: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> Vec<u8> {
    let mut p = syn(src, sport);
    p[9] = proto;
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    if proto == proto::UDP {
        p[24..26].copy_from_slice(&20u16.to_be_bytes());
    }
    p[10..12].fill(0);
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

fn snat_target(last: u8, host: u8) -> SnatTarget {
    SnatTarget {
        dip: Ipv4Addr::new(192, 168, 100, last),
        host_pa: Ipv4Addr::new(192, 168, 233, host),
        mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, last]),
        vni: Vni::new(4097).unwrap(),
    }
}

#[test]
fn replies_to_a_snat_range_go_to_the_dip_that_holds_it_without_state() {
    let mut m = mux();
    let world = Ipv4Addr::new(203, 0, 113, 100);
    m.set_snat(SnatKey::of(VIP, 1024), snat_target(74, 21));
    m.set_snat(SnatKey::of(VIP, 1032), snat_target(75, 22));
    let mut out = [0u8; 2048];
    for (port, proto, dip, host) in [
        (1024, proto::TCP, 74, 21),
        (1031, proto::UDP, 74, 21),
        (1032, proto::TCP, 75, 22),
        (1039, proto::TCP, 75, 22),
    ] {
        let packet = to_vip(world, 80, port, proto);
        let e = m.encapsulate(T, &packet, &mut out).unwrap();
        assert_eq!(
            (e.dip, e.host_pa),
            (
                Ipv4Addr::new(192, 168, 100, dip),
                Ipv4Addr::new(192, 168, 233, host)
            ),
            "port {port}"
        );
        let outer = Ipv4Packet::new_checked(&out[..e.len]).unwrap();
        assert_eq!(outer.dst_addr(), e.host_pa);
        let udp = UdpPacket::new_checked(outer.payload()).unwrap();
        assert_eq!(vxlan::parse(udp.payload()).unwrap().0.get(), 4097);
        let inner = EthernetFrame::new_checked(&udp.payload()[8..]).unwrap();
        assert_eq!(inner.dst_addr().0, [0x00, 0x15, 0x5d, 0, 0, dip]);
        assert_eq!(inner.payload(), &packet[..], "the packet itself, unchanged");
    }
    assert_eq!(m.counters().snat_returned, 4);
    let looked_up = m.flow_counters().hits + m.flow_counters().misses;
    assert_eq!(looked_up, 0, "no flow is looked up or remembered");
    // Outside the ranges, and ICMP: no VIP entry.
    assert_eq!(
        m.encapsulate(T, &to_vip(world, 80, 1040, proto::TCP), &mut out),
        Err(MuxDrop::NoVip)
    );
    assert_eq!(
        m.encapsulate(T, &to_vip(world, 80, 1023, proto::TCP), &mut out),
        Err(MuxDrop::NoVip)
    );
    // The load-balanced port is as it was.
    let e = m.encapsulate(T, &syn(world, 5000), &mut out).unwrap();
    assert_eq!(e.host_pa, Ipv4Addr::new(192, 168, 233, 21));
    assert_eq!(m.counters().snat_returned, 4);
    m.remove_snat(&SnatKey::of(VIP, 1024));
    assert_eq!(
        m.encapsulate(T, &to_vip(world, 80, 1024, proto::TCP), &mut out),
        Err(MuxDrop::NoVip)
    );
}

#[test]
fn a_vip_with_snat_ranges_alone_is_announced_and_taken() {
    let mut m = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    let g = m.generation();
    m.set_snat(SnatKey::of(VIP, 2048), snat_target(74, 21));
    assert!(m.generation() > g, "what to announce is worked out again");
    assert!(m.has_vip(VIP));
    assert_eq!(m.live_vips().collect::<Vec<_>>(), [VIP]);
    let g = m.generation();
    m.set_snat(SnatKey::of(VIP, 2048), snat_target(74, 21));
    assert_eq!(m.generation(), g, "the same again changes nothing");
    m.set_snat(SnatKey::of(VIP, 2048), snat_target(75, 21));
    assert!(m.generation() > g, "another DIP");
    assert_eq!(
        m.snat(),
        [(
            SnatKey {
                vip: VIP,
                start: 2048
            },
            snat_target(75, 21)
        )]
    );
    let g = m.generation();
    m.remove_snat(&SnatKey::of(VIP, 2056));
    assert!(m.has_vip(VIP), "the next range was none of the VIP's");
    assert_eq!(m.generation(), g, "nothing was removed");
    // A port of the range names it.
    m.remove_snat(&SnatKey::of(VIP, 2053));
    assert!(m.generation() > g, "what to announce is worked out again");
    assert!(!m.has_vip(VIP));
    assert_eq!(m.live_vips().count(), 0);
}

#[test]
fn only_tcp_and_udp_have_snat_ranges() {
    // Even a range at port 0 (the SLB manager hands out none below 1024) takes no ICMP:
    // an echo's flow has no port.
    let mut m = Mux::new(MuxConfig::new(
        Ipv4Addr::new(192, 168, 233, 20),
        EthernetAddress([0x00, 0x15, 0x5d, 0x64, 5, 1]),
    ));
    m.set_snat(SnatKey::of(VIP, 0), snat_target(74, 21));
    let mut echo = to_vip(Ipv4Addr::new(203, 0, 113, 100), 0, 0, proto::ICMP);
    echo.truncate(28);
    echo[2..4].copy_from_slice(&28u16.to_be_bytes());
    echo[20] = 8;
    echo[10..12].fill(0);
    let c = checksum::checksum(&echo[..20]);
    echo[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = [0u8; 2048];
    assert_eq!(m.encapsulate(T, &echo, &mut out), Err(MuxDrop::NoVip));
    assert_eq!(m.counters().snat_returned, 0);
    let udp = to_vip(Ipv4Addr::new(203, 0, 113, 100), 53, 3, proto::UDP);
    assert!(m.encapsulate(T, &udp, &mut out).is_ok());
    assert_eq!(m.counters().snat_returned, 1);
}

#[test]
fn a_dips_health_reaches_every_entry_it_serves_and_no_other() {
    let mut m = mux();
    let other = VipKey {
        port: 443,
        ..vip(vec![], Distribution::FiveTuple).key
    };
    m.set_vip(VipConfig {
        key: other,
        ..vip(vec![dip(75), dip(80)], Distribution::FiveTuple)
    });
    let health = |m: &Mux| -> Vec<Vec<bool>> { m.vips().into_iter().map(|(_, h)| h).collect() };
    // .75 serves both entries.
    assert!(m.set_dip_health(dip(75).addr, false));
    assert_eq!(health(&m), [vec![true, false, true], vec![false, true]]);
    // The first entry loses .76 and gains .81; .76 serves nothing now, .81 one entry.
    m.set_vip(vip(
        vec![dip(74), dip(75), dip(81)],
        Distribution::FiveTuple,
    ));
    assert!(!m.set_dip_health(dip(76).addr, false));
    assert!(m.set_dip_health(dip(81).addr, false));
    assert_eq!(health(&m), [vec![true, false, false], vec![false, true]]);
    // .75 still serves both.
    assert!(m.set_dip_health(dip(75).addr, true));
    assert_eq!(health(&m), [vec![true, true, false], vec![true, true]]);
    // Removed: its DIPs serve only what is left.
    m.remove_vip(&other);
    assert!(!m.set_dip_health(dip(80).addr, false));
    assert!(m.set_dip_health(dip(74).addr, false));
    assert_eq!(health(&m), [vec![false, true, false]]);
}
