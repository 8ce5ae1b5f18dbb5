//! Messages captured from BIRD 2.0.12 (two instances on 127.0.0.2 and 127.0.0.3, AS 65001
//! and 65002, IPv4 and IPv6 unicast, graceful restart), with the values tshark decoded
//! from the same capture. Each is decoded, checked, encoded again and decoded again.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use strata_bgp::codec::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const AS4: Options = Options {
    four_octet_as: true,
    external: false,
};

/// Decodes, re-encodes and decodes again; with `exact`, the bytes must match too.
fn round_trip(bytes: &[u8], exact: bool) -> Message {
    assert_eq!(message_len(bytes).unwrap(), Some(bytes.len()));
    let m = decode(bytes, AS4).unwrap();
    let mut out = Vec::new();
    encode(&m, AS4, &mut out).unwrap();
    if exact {
        assert_eq!(out, bytes, "re-encoding gives BIRD's bytes");
    }
    assert_eq!(decode(&out, AS4).unwrap(), m);
    m
}

#[test]
fn open_from_bird() {
    // tshark: My AS 65001, Hold Time 90, BGP Identifier 10.0.0.1; capabilities MP IPv4
    // unicast, MP IPv6 unicast, route refresh, graceful restart (time 120, IPv4 and IPv6
    // unicast, no flags), 4-octet AS 65001, enhanced route refresh (70), LLGR (71).
    let bytes = hex(
        "ffffffffffffffffffffffffffffffff00430104fde9005a0a0000012602240104000100010104000200010200400a0078000101000002010041040000fde946004700",
    );
    let Message::Open(o) = round_trip(&bytes, true) else {
        panic!("not an OPEN")
    };
    assert_eq!((o.version, o.my_as, o.hold_time), (4, 65001, 90));
    assert_eq!(o.bgp_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(o.asn(), 65001);
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol {
                afi: afi::IPV4,
                safi: SAFI_UNICAST
            },
            Capability::Multiprotocol {
                afi: afi::IPV6,
                safi: SAFI_UNICAST
            },
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                time: 120,
                families: vec![
                    (afi::IPV4, SAFI_UNICAST, false),
                    (afi::IPV6, SAFI_UNICAST, false)
                ],
            }),
            Capability::FourOctetAs(65001),
            Capability::EnhancedRouteRefresh,
            Capability::Unknown {
                code: 71,
                value: vec![]
            },
        ]
    );
}

#[test]
fn keepalive_notification_and_route_refresh_from_bird() {
    assert_eq!(
        round_trip(&hex("ffffffffffffffffffffffffffffffff001304"), true),
        Message::Keepalive
    );
    // tshark: Cease (6), Administratively Shutdown (2) — `birdc disable peer`.
    assert_eq!(
        round_trip(&hex("ffffffffffffffffffffffffffffffff0015030602"), true),
        Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data: vec![]
        })
    );
    // tshark: AFI IPv4, subtype 1 (BoRR, RFC 7313), SAFI unicast.
    assert_eq!(
        round_trip(&hex("ffffffffffffffffffffffffffffffff00170500010101"), true),
        Message::RouteRefresh(RouteRefresh {
            afi: afi::IPV4,
            subtype: 1,
            safi: SAFI_UNICAST
        })
    );
}

#[test]
fn ipv4_update_from_bird() {
    // tshark: ORIGIN IGP, AS_PATH 65001 (AS4), NEXT_HOP 192.168.100.20,
    // COMMUNITIES 65001:100; NLRI 192.168.133.74/32.
    let bytes = hex(
        "ffffffffffffffffffffffffffffffff0037020000001b4001010040020602010000fde9400304c0a86414c00804fde9006420c0a8854a",
    );
    let Message::Update(u) = round_trip(&bytes, true) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.nlri, vec!["192.168.133.74/32".parse().unwrap()]);
    assert_eq!(
        u.attributes,
        vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65001])),
            Attribute::NextHop(Ipv4Addr::new(192, 168, 100, 20)),
            Attribute::Communities(vec![(65001 << 16) | 100]),
        ]
    );
    // The same UPDATE without the community: 10.1.0.0/16.
    let Message::Update(u) = round_trip(
        &hex(
            "ffffffffffffffffffffffffffffffff002e02000000144001010040020602010000fde9400304c0a86414100a01",
        ),
        true,
    ) else {
        panic!()
    };
    assert_eq!(u.nlri, vec!["10.1.0.0/16".parse().unwrap()]);
}

#[test]
fn ipv6_update_and_end_of_rib_from_bird() {
    // tshark: MP_REACH_NLRI (flags 0x90, extended length), AFI IPv6, SAFI unicast, next hop
    // 2001:db8::20, NLRI 2001:db8:133::74/128; ORIGIN IGP; AS_PATH 65001.
    let bytes = hex(
        "ffffffffffffffffffffffffffffffff004e0200000037900e00260002011020010db8000000000000000000000020008020010db80133000000000000000000744001010040020602010000fde9",
    );
    // BIRD sets the extended-length bit on a short attribute; the encoder does not, so
    // only the decoded messages are compared.
    let Message::Update(u) = round_trip(&bytes, false) else {
        panic!()
    };
    let Some(Attribute::MpReach(m)) = u.attribute(attr::MP_REACH_NLRI) else {
        panic!("{u:?}")
    };
    assert_eq!((m.afi, m.safi), (afi::IPV6, SAFI_UNICAST));
    assert_eq!(m.next_hops, vec!["2001:db8::20".parse::<IpAddr>().unwrap()]);
    assert_eq!(m.nlri, vec!["2001:db8:133::74/128".parse().unwrap()]);
    assert_eq!(
        u.treat_as_withdraw, None,
        "NEXT_HOP is not required with MP_REACH only"
    );

    let eor4 = round_trip(&hex("ffffffffffffffffffffffffffffffff00170200000000"), true);
    let eor6 = round_trip(
        &hex("ffffffffffffffffffffffffffffffff001d0200000006800f03000201"),
        true,
    );
    match (eor4, eor6) {
        (Message::Update(a), Message::Update(b)) => {
            assert_eq!(a.is_end_of_rib(), Some((afi::IPV4, SAFI_UNICAST)));
            assert_eq!(b.is_end_of_rib(), Some((afi::IPV6, SAFI_UNICAST)));
            assert_eq!(b, Update::end_of_rib(afi::IPV6, SAFI_UNICAST));
        }
        other => panic!("{other:?}"),
    }
}
