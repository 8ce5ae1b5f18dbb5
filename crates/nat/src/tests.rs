//! NAT behaviour; checksums verified with smoltcp's independent code.

use super::*;
use strata_wire::{IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 10);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const T0: Duration = Duration::ZERO;

/// IPv4 + TCP (20-byte header) with correct checksums.
fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50;
    p[33] = flags;
    p[34..36].copy_from_slice(&1024u16.to_be_bytes());
    fill_l4(&mut p);
    p
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(b"ping");
    fill_l4(&mut p);
    p
}

fn fill_l4(p: &mut [u8]) {
    let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let l4 = &mut p[20..];
    match proto {
        IpProtocol::Tcp => TcpPacket::new_unchecked(l4).fill_checksum(&src.into(), &dst.into()),
        IpProtocol::Udp => UdpPacket::new_unchecked(l4).fill_checksum(&src.into(), &dst.into()),
        _ => unreachable!(),
    }
}

fn assert_valid(p: &[u8]) {
    let ip = Ipv4Packet::new_checked(p).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    match ip.next_header() {
        IpProtocol::Tcp => assert!(
            TcpPacket::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&src, &dst)
        ),
        IpProtocol::Udp => assert!(
            UdpPacket::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&src, &dst)
        ),
        _ => {}
    }
}

fn key(p: &[u8]) -> FlowKey {
    Ipv4Layout::parse(p).unwrap().flow_key(p).unwrap()
}

#[test]
fn masquerade_and_reply() {
    let mut nat = Nat::new(Config::new(EXT));
    let mut syn = tcp(CLIENT, 49152, WEB, 80, 0x02);
    assert_eq!(nat.outbound(T0, &mut syn), Action::Translated);
    assert_valid(&syn);
    let k = key(&syn);
    assert_eq!(
        (k.src, k.src_port),
        (EXT, 49152),
        "the source port is preserved when free"
    );
    let mut synack = tcp(WEB, 80, EXT, 49152, 0x12);
    assert_eq!(nat.inbound(T0, &mut synack), Action::Translated);
    assert_valid(&synack);
    assert_eq!(key(&synack).dst, CLIENT);
    assert_eq!(nat.conns()[0].tcp, Some(TcpState::Established));
    // Unrelated traffic to the external address is not NAT's.
    let mut stray = tcp(WEB, 80, EXT, 5555, 0x02);
    assert_eq!(nat.inbound(T0, &mut stray), Action::Untouched);
}

#[test]
fn port_clash_gets_another_port_and_reuse_toward_other_remotes() {
    let mut nat = Nat::new(Config::new(EXT));
    let other = Ipv4Addr::new(192, 168, 200, 11);
    let mut a = udp(CLIENT, 5000, WEB, 53);
    let mut b = udp(other, 5000, WEB, 53);
    let mut c = udp(other, 5000, Ipv4Addr::new(203, 0, 113, 101), 53);
    nat.outbound(T0, &mut a);
    nat.outbound(T0, &mut b);
    nat.outbound(T0, &mut c);
    assert_valid(&b);
    assert_eq!(key(&a).src_port, 5000);
    assert_ne!(
        key(&b).src_port,
        5000,
        "same remote endpoint: a different port"
    );
    assert_eq!(
        key(&c).src_port,
        5000,
        "another remote endpoint: the port is reused"
    );
}

#[test]
fn port_forward_in_and_reply_out() {
    let mut config = Config::new(EXT);
    config.forwards.push(PortForward {
        proto: proto::TCP,
        external_port: 8080,
        internal: SocketAddrV4::new(CLIENT, 80),
    });
    let mut nat = Nat::new(config);
    let mut syn = tcp(WEB, 40000, EXT, 8080, 0x02);
    assert_eq!(nat.inbound(T0, &mut syn), Action::Translated);
    assert_valid(&syn);
    assert_eq!((key(&syn).dst, key(&syn).dst_port), (CLIENT, 80));
    let mut synack = tcp(CLIENT, 80, WEB, 40000, 0x12);
    assert_eq!(nat.outbound(T0, &mut synack), Action::Translated);
    assert_valid(&synack);
    assert_eq!((key(&synack).src, key(&synack).src_port), (EXT, 8080));
    assert_eq!(nat.conns()[0].origin, Origin::PortForward);
}

#[test]
fn full_table_refuses_new_but_keeps_existing() {
    let mut config = Config::new(EXT);
    config.max_conns = 1;
    let mut nat = Nat::new(config);
    let mut first = udp(CLIENT, 1, WEB, 53);
    assert_eq!(nat.outbound(T0, &mut first), Action::Translated);
    let mut second = udp(CLIENT, 2, WEB, 53);
    assert_eq!(
        nat.outbound(T0, &mut second),
        Action::Dropped(DropReason::TableFull)
    );
    assert_eq!(nat.counters().table_full, 1);
    let mut again = udp(CLIENT, 1, WEB, 53);
    assert_eq!(nat.outbound(T0, &mut again), Action::Translated);
    // Once the first expires, there is room again.
    let later = T0 + Timeouts::default().udp + Duration::from_secs(1);
    let mut second = udp(CLIENT, 2, WEB, 53);
    assert_eq!(nat.outbound(later, &mut second), Action::Translated);
    assert_eq!(nat.counters().conns_expired, 1);
}

#[test]
fn tcp_timeouts_follow_state() {
    let mut nat = Nat::new(Config::new(EXT));
    let mut syn = tcp(CLIENT, 49152, WEB, 80, 0x02);
    nat.outbound(T0, &mut syn);
    let t = Timeouts::default();
    assert_eq!(nat.conns()[0].expires, T0 + t.tcp_transitory);
    let mut synack = tcp(WEB, 80, EXT, 49152, 0x12);
    nat.inbound(T0, &mut synack);
    assert_eq!(nat.conns()[0].expires, T0 + t.tcp_established);
    let mut rst = tcp(CLIENT, 49152, WEB, 80, 0x04);
    nat.outbound(T0, &mut rst);
    assert_eq!(nat.conns()[0].tcp, Some(TcpState::Closed));
    nat.poll(T0 + Duration::from_secs(20));
    assert!(nat.is_empty());
}

#[test]
fn later_fragments_are_dropped_and_counted() {
    let mut nat = Nat::new(Config::new(EXT));
    let mut p = udp(CLIENT, 1, WEB, 53);
    p[6] = 0x00;
    p[7] = 0x08;
    p[10] = 0;
    p[11] = 0;
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        nat.outbound(T0, &mut p),
        Action::Dropped(DropReason::Fragment)
    );
    assert_eq!(nat.counters().fragments, 1);
}

fn forward(proto: u8, external_port: u16) -> Config {
    let mut config = Config::new(EXT);
    config.forwards.push(PortForward {
        proto,
        external_port,
        internal: SocketAddrV4::new(CLIENT, 80),
    });
    config
}

#[test]
fn a_port_forward_matches_protocol_and_port_both() {
    let mut nat = Nat::new(forward(proto::TCP, 8080));
    // The right port over UDP, and TCP to another port: neither is forwarded.
    let mut udp_8080 = udp(WEB, 40000, EXT, 8080);
    assert_eq!(nat.inbound(T0, &mut udp_8080), Action::Untouched);
    let mut tcp_8081 = tcp(WEB, 40000, EXT, 8081, 0x02);
    assert_eq!(nat.inbound(T0, &mut tcp_8081), Action::Untouched);
    assert!(nat.is_empty());
    let mut tcp_8080 = tcp(WEB, 40000, EXT, 8080, 0x02);
    assert_eq!(nat.inbound(T0, &mut tcp_8080), Action::Translated);
}

#[test]
fn only_traffic_to_the_external_address_is_forwarded() {
    let mut nat = Nat::new(forward(proto::TCP, 8080));
    let elsewhere = Ipv4Addr::new(203, 0, 113, 7);
    let mut p = tcp(WEB, 40000, elsewhere, 8080, 0x02);
    let before = p.clone();
    assert_eq!(nat.inbound(T0, &mut p), Action::Untouched);
    assert_eq!(p, before, "not rewritten");
    assert!(nat.is_empty());
}

#[test]
fn the_nats_own_traffic_and_other_protocols_are_left_alone() {
    let mut nat = Nat::new(Config::new(EXT));
    // From the external address itself (the NAT's own stack).
    let mut own = tcp(EXT, 179, WEB, 179, 0x02);
    assert_eq!(nat.outbound(T0, &mut own), Action::Untouched);
    // GRE (47) has no ports to translate by: passed unchanged, no connection made.
    let mut gre = udp(CLIENT, 1, WEB, 2);
    gre[9] = 47;
    gre[10] = 0;
    gre[11] = 0;
    let c = strata_wire::checksum::checksum(&gre[..20]);
    gre[10..12].copy_from_slice(&c.to_be_bytes());
    let before = gre.clone();
    assert_eq!(nat.outbound(T0, &mut gre), Action::Untouched);
    assert_eq!(gre, before);
    let mut gre_in = before.clone();
    gre_in[12..16].copy_from_slice(&WEB.octets());
    gre_in[16..20].copy_from_slice(&EXT.octets());
    gre_in[10] = 0;
    gre_in[11] = 0;
    let c = strata_wire::checksum::checksum(&gre_in[..20]);
    gre_in[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(nat.inbound(T0, &mut gre_in), Action::Untouched);
    assert!(nat.is_empty());
}

#[test]
fn snat_never_hands_out_a_port_a_forward_holds() {
    // The client's own source port is 8080, which the forward holds: another port.
    let mut nat = Nat::new(forward(proto::TCP, 8080));
    let mut syn = tcp(CLIENT, 8080, WEB, 80, 0x02);
    assert_eq!(nat.outbound(T0, &mut syn), Action::Translated);
    assert_ne!(key(&syn).src_port, 8080);
    // Over UDP the forward does not hold 8080: the port is kept.
    let mut dns = udp(CLIENT, 8080, WEB, 53);
    assert_eq!(nat.outbound(T0, &mut dns), Action::Translated);
    assert_eq!(key(&dns).src_port, 8080);
}

#[test]
fn the_port_search_walks_past_clashes_and_then_runs_out() {
    // Three ports; the clients all use port 7000, outside the range.
    let mut config = Config::new(EXT);
    config.ports = 5000..=5002;
    let mut nat = Nat::new(config);
    let mut ports = Vec::new();
    for i in 0..3u8 {
        let mut p = udp(Ipv4Addr::new(192, 168, 200, 20 + i), 7000, WEB, 53);
        assert_eq!(nat.outbound(T0, &mut p), Action::Translated);
        ports.push(key(&p).src_port);
    }
    ports.sort_unstable();
    assert_eq!(ports, [5000, 5001, 5002], "each free port once");
    // A fourth client toward the same remote endpoint: none left.
    let mut fourth = udp(Ipv4Addr::new(192, 168, 200, 30), 7000, WEB, 53);
    assert_eq!(
        nat.outbound(T0, &mut fourth),
        Action::Dropped(DropReason::PortsExhausted)
    );
    assert_eq!(nat.counters().ports_exhausted, 1);
    // Toward another remote endpoint the same ports serve again.
    let mut other = udp(Ipv4Addr::new(192, 168, 200, 30), 7000, WEB, 54);
    assert_eq!(nat.outbound(T0, &mut other), Action::Translated);
    // A port in the range that is taken: the search goes on from there, skipping it.
    let mut config = Config::new(EXT);
    config.ports = 5000..=5002;
    let mut nat = Nat::new(config);
    let mut a = udp(CLIENT, 5000, WEB, 53);
    nat.outbound(T0, &mut a);
    let mut b = udp(Ipv4Addr::new(192, 168, 200, 11), 5000, WEB, 53);
    nat.outbound(T0, &mut b);
    assert_eq!(key(&a).src_port, 5000);
    assert_eq!(key(&b).src_port, 5001);
}

#[test]
fn counters_count_what_they_say() {
    let mut nat = Nat::new(Config::new(EXT));
    let mut out = udp(CLIENT, 5353, WEB, 53);
    nat.outbound(T0, &mut out);
    let mut back = udp(WEB, 53, EXT, 5353);
    nat.inbound(T0, &mut back);
    let mut short = vec![0x45u8; 10];
    assert_eq!(
        nat.outbound(T0, &mut short),
        Action::Dropped(DropReason::Malformed)
    );
    let c = nat.counters();
    assert_eq!(
        (
            c.translated_out,
            c.translated_in,
            c.conns_created,
            c.malformed
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(nat.len(), 1);
    assert_eq!(nat.poll_at(), Some(SWEEP_INTERVAL));
    nat.poll(T0 + Timeouts::default().udp + SWEEP_INTERVAL);
    assert!(nat.is_empty());
    assert_eq!(nat.counters().conns_expired, 1);
    assert_eq!(nat.poll_at(), None, "nothing to sweep");
}

/// An ICMP echo request (id `ident`) with correct checksums.
fn echo(src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&ident.to_be_bytes());
    let c = strata_wire::checksum::checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn each_protocol_has_its_own_idle_timeout() {
    let mut nat = Nat::new(Config::new(EXT));
    let t = Timeouts::default();
    let mut dns = udp(CLIENT, 5353, WEB, 53);
    nat.outbound(T0, &mut dns);
    let mut ping = echo(CLIENT, WEB, 7);
    assert_eq!(nat.outbound(T0, &mut ping), Action::Translated);
    let expires: Vec<(u8, Duration)> = nat
        .conns()
        .iter()
        .map(|c| (c.inner.proto, c.expires))
        .collect();
    assert!(expires.contains(&(proto::UDP, T0 + t.udp)), "{expires:?}");
    assert!(expires.contains(&(proto::ICMP, T0 + t.icmp)), "{expires:?}");
}

#[test]
fn two_fins_close_a_connection_and_one_leaves_it_closing() {
    let mut nat = Nat::new(Config::new(EXT));
    let t = Timeouts::default();
    let mut syn = tcp(CLIENT, 49152, WEB, 80, 0x02);
    nat.outbound(T0, &mut syn);
    let mut synack = tcp(WEB, 80, EXT, 49152, 0x12);
    nat.inbound(T0, &mut synack);
    let mut fin = tcp(CLIENT, 49152, WEB, 80, 0x11);
    nat.outbound(T0, &mut fin);
    assert_eq!(nat.conns()[0].tcp, Some(TcpState::Closing));
    assert_eq!(nat.conns()[0].expires, T0 + t.tcp_transitory);
    let mut fin_back = tcp(WEB, 80, EXT, 49152, 0x11);
    nat.inbound(T0, &mut fin_back);
    assert_eq!(nat.conns()[0].tcp, Some(TcpState::Closed));
    assert_eq!(nat.conns()[0].expires, T0 + t.tcp_closed);
}

#[test]
fn an_expired_connection_found_by_its_next_packet_is_replaced() {
    // No sweep in between: the lookup finds it expired, counts it, and makes a new one.
    let mut nat = Nat::new(Config::new(EXT));
    let mut p = udp(CLIENT, 5353, WEB, 53);
    nat.outbound(T0, &mut p);
    let later = T0 + Timeouts::default().udp + Duration::from_secs(1);
    let mut p = udp(CLIENT, 5353, WEB, 53);
    assert_eq!(nat.outbound(later, &mut p), Action::Translated);
    assert_eq!(nat.counters().conns_expired, 1);
    assert_eq!(nat.counters().conns_created, 2);
}

#[test]
fn a_truncated_transport_header_is_malformed() {
    let mut nat = Nat::new(Config::new(EXT));
    // An IPv4 header that says TCP, with 2 bytes of TCP: not even the ports.
    let mut p = tcp(CLIENT, 1, WEB, 80, 0x02);
    p.truncate(22);
    p[2..4].copy_from_slice(&22u16.to_be_bytes());
    p[10] = 0;
    p[11] = 0;
    let c = strata_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        nat.outbound(T0, &mut p),
        Action::Dropped(DropReason::Malformed)
    );
    assert_eq!(nat.counters().malformed, 1);
}

#[test]
fn a_forward_to_a_server_already_talking_to_that_endpoint_is_refused() {
    // The server at CLIENT:80 opened a connection to WEB:40000 itself (SNAT, kept port
    // 80); WEB:40000 then connects to the forward: the inner keys would collide.
    let mut nat = Nat::new(forward(proto::TCP, 8080));
    let mut out = tcp(CLIENT, 80, WEB, 40000, 0x02);
    assert_eq!(nat.outbound(T0, &mut out), Action::Translated);
    let mut syn = tcp(WEB, 40000, EXT, 8080, 0x02);
    assert_eq!(
        nat.inbound(T0, &mut syn),
        Action::Dropped(DropReason::PortsExhausted)
    );
    assert_eq!(nat.counters().ports_exhausted, 1);
}

#[test]
fn the_port_search_goes_all_the_way_round() {
    // Range 5000-5002. B takes 5000 by the search (cursor now 5001); A and C keep 5001
    // and 5002. B idles out; D's search starts at 5001 and finds 5000 last.
    let t = Timeouts::default();
    let mut config = Config::new(EXT);
    config.ports = 5000..=5002;
    let mut nat = Nat::new(config);
    let host = |i: u8| Ipv4Addr::new(192, 168, 200, 20 + i);
    let out = |nat: &mut Nat, now, src, sport| {
        let mut p = udp(src, sport, WEB, 53);
        let action = nat.outbound(now, &mut p);
        (action, key(&p).src_port)
    };
    assert_eq!(out(&mut nat, T0, host(1), 7000), (Action::Translated, 5000));
    assert_eq!(out(&mut nat, T0, host(2), 5001), (Action::Translated, 5001));
    assert_eq!(out(&mut nat, T0, host(3), 5002), (Action::Translated, 5002));
    let refresh = T0 + t.udp - Duration::from_secs(1);
    out(&mut nat, refresh, host(2), 5001);
    out(&mut nat, refresh, host(3), 5002);
    let swept = T0 + t.udp + Duration::from_secs(1);
    nat.poll(swept);
    assert_eq!(nat.len(), 2);
    assert_eq!(nat.poll_at(), Some(swept + SWEEP_INTERVAL));
    assert_eq!(
        out(&mut nat, swept, host(4), 7000),
        (Action::Translated, 5000)
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
        let mut nat = Nat::new(Config::new(EXT));
        let mut a = bytes.clone();
        let mut b = bytes;
        let _ = nat.outbound(T0, &mut a);
        let _ = nat.inbound(T0, &mut b);
    }

    #[test]
    fn translation_keeps_checksums_valid(sport in 1u16.., dport in 1u16.., tcp_not_udp in proptest::prelude::any::<bool>()) {
        let mut nat = Nat::new(Config::new(EXT));
        let mut p = if tcp_not_udp { tcp(CLIENT, sport, WEB, dport, 0x02) } else { udp(CLIENT, sport, WEB, dport) };
        nat.outbound(T0, &mut p);
        assert_valid(&p);
        let k = key(&p);
        let mut back = if tcp_not_udp { tcp(WEB, dport, EXT, k.src_port, 0x12) } else { udp(WEB, dport, EXT, k.src_port) };
        proptest::prop_assert_eq!(nat.inbound(T0, &mut back), Action::Translated);
        assert_valid(&back);
        proptest::prop_assert_eq!(key(&back).dst_port, sport);
    }
}

#[test]
fn a_parsed_header_that_claims_more_than_the_packet_holds_is_malformed() {
    // The caller's parse (of a longer packet) against a packet cut short: refused, on
    // either side, and counted, with nothing read past the end.
    let mut nat = Nat::new(forward(proto::TCP, 8080));
    let whole = tcp(CLIENT, 1, WEB, 80, 0x02);
    let layout = Ipv4Layout::parse(&whole).unwrap();
    let mut cut = whole[..whole.len() - 1].to_vec();
    assert_eq!(
        nat.outbound_parsed(T0, &layout, &mut cut),
        Action::Dropped(DropReason::Malformed)
    );
    let inbound = tcp(WEB, 40000, EXT, 8080, 0x02);
    let layout = Ipv4Layout::parse(&inbound).unwrap();
    let mut cut = inbound[..inbound.len() - 1].to_vec();
    assert_eq!(
        nat.inbound_parsed(T0, &layout, &mut cut),
        Action::Dropped(DropReason::Malformed)
    );
    assert_eq!(nat.counters().malformed, 2);
    assert!(nat.is_empty());
    // The same parse with the whole packet goes through.
    let mut whole = whole;
    let layout = Ipv4Layout::parse(&whole).unwrap();
    assert_eq!(
        nat.outbound_parsed(T0, &layout, &mut whole),
        Action::Translated
    );
}
