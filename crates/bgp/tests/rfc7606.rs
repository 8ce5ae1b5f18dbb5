//! RFC 7606 (revised error handling for UPDATE messages), RFC 7607 (AS 0) and RFC 8092
//! (large communities), attribute by attribute, each case for routes in the NLRI field
//! (IPv4, with NEXT_HOP) and for routes in MP_REACH_NLRI (IPv6). Every message is
//! written out byte by byte here from the RFCs' layouts, not by our encoder.

#![allow(clippy::unwrap_used)]

use strata_bgp::codec::*;

/// Where the UPDATE's routes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// 10.1.2.0/24 in the NLRI field, NEXT_HOP 192.0.2.1.
    Nlri,
    /// 2001:db8::/32 in MP_REACH_NLRI, next hop 2001:db8::1.
    MpReach,
}

const BOTH: [Carrier; 2] = [Carrier::Nlri, Carrier::MpReach];

/// What became of an UPDATE.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Read whole; the attribute of this code is among those kept.
    Kept(u8),
    /// Read as if the attribute of this code were absent ("attribute discard").
    Discarded(u8),
    /// "Treat-as-withdraw", blamed on this attribute; the routes are still found.
    Withdrawn(u8),
    /// The session ends with this NOTIFICATION (code, subcode).
    Reset(u8, u8),
}

fn a(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, code, value.len() as u8];
    v.extend_from_slice(value);
    v
}

const WELL_KNOWN: u8 = 0x40;
const OPTIONAL: u8 = 0x80;
const OPTIONAL_TRANSITIVE: u8 = 0xc0;

fn origin() -> Vec<u8> {
    a(WELL_KNOWN, 1, &[0])
}

/// AS_PATH: one AS_SEQUENCE of 65001 (4-octet session).
fn as_path() -> Vec<u8> {
    a(WELL_KNOWN, 2, &[2, 1, 0, 0, 0xfd, 0xe9])
}

fn next_hop() -> Vec<u8> {
    a(WELL_KNOWN, 3, &[192, 0, 2, 1])
}

fn mp_reach() -> Vec<u8> {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v.push(0);
    v.extend_from_slice(&[32, 0x20, 0x01, 0x0d, 0xb8]);
    a(OPTIONAL, 14, &v)
}

/// An UPDATE: the mandatory attributes for `carrier` (but `without`), then `extra`,
/// then the routes.
fn update(carrier: Carrier, without: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut attrs = Vec::new();
    if carrier == Carrier::MpReach {
        attrs.extend(mp_reach());
    }
    for (code, bytes) in [(1, origin()), (2, as_path())] {
        if !without.contains(&code) {
            attrs.extend(bytes);
        }
    }
    if carrier == Carrier::Nlri && !without.contains(&3) {
        attrs.extend(next_hop());
    }
    attrs.extend_from_slice(extra);
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    if carrier == Carrier::Nlri {
        body.extend_from_slice(&[24, 10, 1, 2]);
    }
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    m
}

fn internal() -> Options {
    Options {
        four_octet_as: true,
        external: false,
    }
}

fn external() -> Options {
    Options {
        four_octet_as: true,
        external: true,
    }
}

/// What decoding `extra` in an UPDATE of `carrier` comes to, for attribute `code`.
fn outcome(carrier: Carrier, without: &[u8], extra: &[u8], code: u8, o: Options) -> Outcome {
    let u = match decode(&update(carrier, without, extra), o) {
        Ok(Message::Update(u)) => u,
        Ok(other) => panic!("not an UPDATE: {other:?}"),
        Err(e) => return Outcome::Reset(e.notification.code, e.notification.subcode),
    };
    let routes = u.nlri.len()
        + u.attributes
            .iter()
            .map(|a| match a {
                Attribute::MpReach(m) => m.nlri.len(),
                _ => 0,
            })
            .sum::<usize>();
    assert_eq!(routes, 1, "the routes are found either way");
    match u.treat_as_withdraw {
        Some(e) => Outcome::Withdrawn(e.code),
        None if u.attribute(code).is_some() => Outcome::Kept(code),
        None => Outcome::Discarded(code),
    }
}

/// Checks `extra` against `expected` for both carriers.
#[track_caller]
fn check(extra: &[u8], code: u8, o: Options, expected: Outcome) {
    for carrier in BOTH {
        assert_eq!(
            outcome(carrier, &[], extra, code, o),
            expected,
            "{carrier:?} {extra:02x?}"
        );
    }
}

use Outcome::*;

#[test]
fn well_formed_updates_keep_their_attributes() {
    check(&[], 1, internal(), Kept(1));
    check(&[], 2, external(), Kept(2));
}

#[test]
fn s3_d_a_missing_mandatory_attribute_is_treat_as_withdraw() {
    for carrier in BOTH {
        for code in [1, 2] {
            assert_eq!(
                outcome(carrier, &[code], &[], code, internal()),
                Withdrawn(code),
                "{carrier:?} without {code}"
            );
        }
    }
    assert_eq!(
        outcome(Carrier::Nlri, &[3], &[], 3, internal()),
        Withdrawn(3)
    );
    // RFC 4760: routes in MP_REACH_NLRI carry their own next hop.
    assert_eq!(outcome(Carrier::MpReach, &[3], &[], 1, internal()), Kept(1));
}

#[test]
fn s3_c_flags_in_conflict_with_the_attribute_type_are_treat_as_withdraw() {
    // MED is optional non-transitive: sent as well-known, or as transitive.
    check(&a(0x00, 4, &[0, 0, 0, 1]), 4, external(), Withdrawn(4));
    check(
        &a(WELL_KNOWN, 4, &[0, 0, 0, 1]),
        4,
        external(),
        Withdrawn(4),
    );
    // COMMUNITIES is optional transitive.
    check(&a(OPTIONAL, 8, &[0, 1, 0, 1]), 8, external(), Withdrawn(8));
    // LOCAL_PREF and ATOMIC_AGGREGATE are well-known.
    check(
        &a(OPTIONAL_TRANSITIVE, 5, &[0, 0, 0, 9]),
        5,
        internal(),
        Withdrawn(5),
    );
    check(&a(OPTIONAL_TRANSITIVE, 6, &[]), 6, internal(), Withdrawn(6));
    // The Partial bit and the extended length do not matter.
    check(
        &a(OPTIONAL | 0x20, 4, &[0, 0, 0, 1]),
        4,
        external(),
        Kept(4),
    );
    check(
        &[OPTIONAL | 0x10, 4, 0, 4, 0, 0, 0, 1],
        4,
        external(),
        Kept(4),
    );
}

#[test]
fn s3_g_a_repeated_attribute_keeps_the_first() {
    let twice = [a(OPTIONAL, 4, &[0, 0, 0, 1]), a(OPTIONAL, 4, &[0, 0, 0, 2])].concat();
    for carrier in BOTH {
        let Ok(Message::Update(u)) = decode(&update(carrier, &[], &twice), internal()) else {
            panic!()
        };
        assert_eq!(u.attribute(attr::MED), Some(&Attribute::Med(1)));
        assert_eq!(u.treat_as_withdraw, None);
    }
    // Except MP_REACH_NLRI and MP_UNREACH_NLRI: Malformed Attribute List.
    assert_eq!(
        outcome(Carrier::MpReach, &[], &mp_reach(), 14, internal()),
        Reset(3, 1)
    );
}

#[test]
fn s7_1_origin() {
    for bad in [&[3u8][..], &[0, 0], &[]] {
        for carrier in BOTH {
            let o = [a(WELL_KNOWN, 1, bad)].concat();
            assert_eq!(outcome(carrier, &[1], &o, 1, internal()), Withdrawn(1));
        }
    }
}

#[test]
fn s7_2_as_path_and_rfc_7607_as_0() {
    let cases: [&[u8]; 6] = [
        &[2, 0],                               // a segment of length zero
        &[5, 1, 0, 0, 0xfd, 0xe9],             // an unknown segment type
        &[2, 2, 0, 0, 0xfd, 0xe9],             // overrun: two ASNs announced, one there
        &[2, 1, 0, 0, 0xfd, 0xe9, 2],          // underrun: one octet left after the last
        &[2, 2, 0, 0, 0xfd, 0xe9, 0, 0],       // overrun by half an AS
        &[2, 2, 0, 0, 0xfd, 0xe9, 0, 0, 0, 0], // RFC 7607: AS 0
    ];
    for bad in cases {
        for carrier in BOTH {
            let p = a(WELL_KNOWN, 2, bad);
            assert_eq!(
                outcome(carrier, &[2], &p, 2, internal()),
                Withdrawn(2),
                "{carrier:?} {bad:02x?}"
            );
        }
    }
    // AS 0 in an AS_SET too.
    let set = a(WELL_KNOWN, 2, &[2, 1, 0, 0, 0xfd, 0xe9, 1, 1, 0, 0, 0, 0]);
    assert_eq!(
        outcome(Carrier::MpReach, &[2], &set, 2, external()),
        Withdrawn(2)
    );
}

#[test]
fn s7_3_next_hop() {
    for bad in [
        &[192u8, 0, 2][..],
        &[192, 0, 2, 1, 0],
        &[0, 0, 0, 0],
        &[224, 0, 0, 1],
        &[255; 4],
    ] {
        let nh = a(WELL_KNOWN, 3, bad);
        assert_eq!(
            outcome(Carrier::Nlri, &[3], &nh, 3, internal()),
            Withdrawn(3),
            "{bad:?}"
        );
    }
    // A malformed NEXT_HOP beside MP_REACH_NLRI is malformed all the same.
    let nh = a(WELL_KNOWN, 3, &[192, 0, 2]);
    assert_eq!(
        outcome(Carrier::MpReach, &[], &nh, 3, internal()),
        Withdrawn(3)
    );
}

#[test]
fn s7_4_med() {
    check(&a(OPTIONAL, 4, &[0, 0, 1]), 4, internal(), Withdrawn(4));
    check(
        &a(OPTIONAL, 4, &[0, 0, 0, 0, 1]),
        4,
        internal(),
        Withdrawn(4),
    );
    check(&a(OPTIONAL, 4, &[0, 0, 0, 1]), 4, external(), Kept(4));
}

#[test]
fn s7_5_local_pref_from_external_is_discarded_from_internal_checked() {
    check(
        &a(WELL_KNOWN, 5, &[0, 0, 3, 0xe8]),
        5,
        external(),
        Discarded(5),
    );
    check(&a(WELL_KNOWN, 5, &[0, 0, 3]), 5, external(), Discarded(5));
    check(&a(WELL_KNOWN, 5, &[0, 0, 3, 0xe8]), 5, internal(), Kept(5));
    check(&a(WELL_KNOWN, 5, &[0, 0, 3]), 5, internal(), Withdrawn(5));
}

#[test]
fn s7_6_atomic_aggregate() {
    check(&a(WELL_KNOWN, 6, &[]), 6, external(), Kept(6));
    check(&a(WELL_KNOWN, 6, &[1]), 6, external(), Discarded(6));
}

#[test]
fn s7_7_aggregator_and_rfc_7607() {
    check(
        &a(OPTIONAL_TRANSITIVE, 7, &[0, 0, 0xfd, 0xe9, 192, 0, 2, 9]),
        7,
        external(),
        Kept(7),
    );
    // Six octets is the 2-octet form: wrong on a 4-octet session.
    check(
        &a(OPTIONAL_TRANSITIVE, 7, &[0xfd, 0xe9, 192, 0, 2, 9]),
        7,
        external(),
        Discarded(7),
    );
    check(
        &a(OPTIONAL_TRANSITIVE, 7, &[0, 0, 0, 0, 192, 0, 2, 9]),
        7,
        external(),
        Discarded(7),
    );
    let two = Options {
        four_octet_as: false,
        external: true,
    };
    // On a 2-octet session the AS_PATH is 2-octet too.
    let p = a(WELL_KNOWN, 2, &[2, 1, 0xfd, 0xe9]);
    let agg = a(OPTIONAL_TRANSITIVE, 7, &[0xfd, 0xe9, 192, 0, 2, 9]);
    assert_eq!(
        outcome(Carrier::Nlri, &[2], &[p.clone(), agg].concat(), 7, two),
        Kept(7)
    );
    let agg0 = a(OPTIONAL_TRANSITIVE, 7, &[0, 0, 192, 0, 2, 9]);
    assert_eq!(
        outcome(Carrier::Nlri, &[2], &[p, agg0].concat(), 7, two),
        Discarded(7)
    );
}

#[test]
fn rfc_6793_as4_aggregator_replaces_as_trans() {
    let two = Options {
        four_octet_as: false,
        external: true,
    };
    let p = a(WELL_KNOWN, 2, &[2, 1, 0xfd, 0xe9]);
    let agg = a(OPTIONAL_TRANSITIVE, 7, &[0x5b, 0xa0, 192, 0, 2, 9]);
    let as4 = a(
        OPTIONAL_TRANSITIVE,
        18,
        &[0xfa, 0x56, 0xea, 0x00, 192, 0, 2, 9],
    );
    let Ok(Message::Update(u)) = decode(&update(Carrier::Nlri, &[2], &[p, agg, as4].concat()), two)
    else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::AGGREGATOR),
        Some(&Attribute::Aggregator {
            asn: 4_200_000_000,
            address: "192.0.2.9".parse().unwrap()
        })
    );
}

#[test]
fn s7_8_communities() {
    check(
        &a(OPTIONAL_TRANSITIVE, 8, &[0xff, 0xff, 0xff, 0x01]),
        8,
        external(),
        Kept(8),
    );
    check(&a(OPTIONAL_TRANSITIVE, 8, &[]), 8, external(), Withdrawn(8));
    check(
        &a(OPTIONAL_TRANSITIVE, 8, &[0, 1, 0, 1, 0]),
        8,
        external(),
        Withdrawn(8),
    );
}

#[test]
fn s7_9_and_7_10_route_reflection_attributes() {
    let id = a(OPTIONAL, 9, &[192, 0, 2, 7]);
    let bad_id = a(OPTIONAL, 9, &[192, 0, 2]);
    check(&id, 9, internal(), Kept(9));
    check(&bad_id, 9, internal(), Withdrawn(9));
    check(&bad_id, 9, external(), Discarded(9));
    let clusters = a(OPTIONAL, 10, &[192, 0, 2, 7, 192, 0, 2, 8]);
    let bad = a(OPTIONAL, 10, &[192, 0, 2, 7, 1, 2]);
    let empty = a(OPTIONAL, 10, &[]);
    check(&clusters, 10, internal(), Kept(10));
    check(&bad, 10, internal(), Withdrawn(10));
    check(&empty, 10, internal(), Withdrawn(10));
    check(&bad, 10, external(), Discarded(10));
}

#[test]
fn s7_11_and_7_12_malformed_mp_attributes_reset_the_session() {
    // Next hop length 5 for IPv6.
    let mut bad = vec![0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    bad.extend_from_slice(&[32, 0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(
        outcome(Carrier::Nlri, &[], &a(OPTIONAL, 14, &bad), 14, internal()),
        Reset(3, 9)
    );
    // A withdrawn prefix of 129 bits.
    let unreach = a(OPTIONAL, 15, &[0, 2, 1, 129, 0]);
    assert_eq!(
        outcome(Carrier::Nlri, &[], &unreach, 15, internal()),
        Reset(3, 9)
    );
}

#[test]
fn s7_14_extended_communities() {
    let good = a(OPTIONAL_TRANSITIVE, 16, &[0, 2, 0xfd, 0xe9, 0, 0, 0, 1]);
    check(&good, 16, external(), Kept(16));
    check(
        &a(OPTIONAL_TRANSITIVE, 16, &[0; 12]),
        16,
        external(),
        Withdrawn(16),
    );
    check(
        &a(OPTIONAL_TRANSITIVE, 16, &[]),
        16,
        external(),
        Withdrawn(16),
    );
}

#[test]
fn s7_15_ipv6_address_specific_extended_communities() {
    check(
        &a(OPTIONAL_TRANSITIVE, 25, &[0; 20]),
        25,
        external(),
        Kept(25),
    );
    check(
        &a(OPTIONAL_TRANSITIVE, 25, &[0; 30]),
        25,
        external(),
        Withdrawn(25),
    );
}

#[test]
fn rfc_8092_large_communities() {
    let one = [0, 0, 0xfd, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2];
    check(&a(OPTIONAL_TRANSITIVE, 32, &one), 32, external(), Kept(32));
    check(
        &a(OPTIONAL_TRANSITIVE, 32, &one[..11]),
        32,
        external(),
        Withdrawn(32),
    );
    check(
        &a(OPTIONAL_TRANSITIVE, 32, &[one, one].concat()[..13]),
        32,
        external(),
        Withdrawn(32),
    );
    check(
        &a(OPTIONAL_TRANSITIVE, 32, &[]),
        32,
        external(),
        Withdrawn(32),
    );
    // Section 5: repeats are removed.
    let twice = a(OPTIONAL_TRANSITIVE, 32, &[one, one].concat());
    let Ok(Message::Update(u)) = decode(&update(Carrier::Nlri, &[], &twice), external()) else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::LARGE_COMMUNITIES),
        Some(&Attribute::LargeCommunities(vec![[65001, 1, 2]]))
    );
}

#[test]
fn unknown_attributes_optional_kept_well_known_refused() {
    let mine = a(OPTIONAL_TRANSITIVE, 99, &[1, 2, 3]);
    let Ok(Message::Update(u)) = decode(&update(Carrier::Nlri, &[], &mine), external()) else {
        panic!()
    };
    assert_eq!(
        u.attribute(99),
        Some(&Attribute::Unknown {
            flags: OPTIONAL_TRANSITIVE | 0x20,
            code: 99,
            value: vec![1, 2, 3]
        }),
        "kept, and marked Partial to be passed on"
    );
    // RFC 4271 6.3: Unrecognized Well-known Attribute, with the attribute as data.
    let unknown = a(WELL_KNOWN, 99, &[1]);
    let e = decode(&update(Carrier::MpReach, &[], &unknown), external()).unwrap_err();
    assert_eq!(
        (
            e.notification.code,
            e.notification.subcode,
            e.notification.data
        ),
        (3, 2, unknown)
    );
}

#[test]
fn encoding_puts_mp_attributes_first_then_ascending_type_codes() {
    // RFC 7606 section 5.1, RFC 4271 section 5.
    let u = Update {
        attributes: vec![
            Attribute::Communities(vec![1]),
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(AsPath::sequence(vec![65001])),
            Attribute::MpReach(MpReach {
                afi: afi::IPV6,
                safi: SAFI_UNICAST,
                next_hops: vec!["2001:db8::1".parse().unwrap()],
                nlri: vec!["2001:db8::/32".parse().unwrap()],
            }),
        ],
        ..Update::default()
    };
    let mut out = Vec::new();
    encode(&Message::Update(u), internal(), &mut out).unwrap();
    let mut codes = Vec::new();
    let mut rest = &out[23..];
    while let [flags, code, rest_ @ ..] = rest {
        let (len, skip) = if flags & 0x10 != 0 {
            (usize::from(u16::from_be_bytes([rest_[0], rest_[1]])), 2)
        } else {
            (usize::from(rest_[0]), 1)
        };
        codes.push(*code);
        rest = &rest_[skip + len..];
    }
    assert_eq!(codes, vec![14, 1, 2, 8]);
}

#[test]
fn rfc_6793_an_aggregator_with_a_real_as_makes_the_as4_attributes_stale() {
    // Section 4.2.3: an old speaker aggregated after the AS4_ attributes were made.
    let two = Options {
        four_octet_as: false,
        external: true,
    };
    let p = a(WELL_KNOWN, 2, &[2, 2, 0xfd, 0xe9, 0x5b, 0xa0]);
    let as4 = a(OPTIONAL_TRANSITIVE, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x00]);
    let path = |agg_as: [u8; 2]| {
        let agg = a(
            OPTIONAL_TRANSITIVE,
            7,
            &[agg_as[0], agg_as[1], 192, 0, 2, 9],
        );
        let m = update(Carrier::Nlri, &[2], &[p.clone(), as4.clone(), agg].concat());
        let Ok(Message::Update(u)) = decode(&m, two) else {
            panic!()
        };
        u.attribute(attr::AS_PATH).cloned()
    };
    assert_eq!(
        path([0xfd, 0xe8]),
        Some(Attribute::AsPath(AsPath::sequence(vec![65001, 23456]))),
        "AGGREGATOR 65000: AS4_PATH ignored"
    );
    assert_eq!(
        path([0x5b, 0xa0]),
        Some(Attribute::AsPath(AsPath::sequence(vec![
            65001,
            4_200_000_000
        ]))),
        "AGGREGATOR AS_TRANS: AS4_PATH merged"
    );
}

#[test]
fn rfc_6793_as4_attributes_with_wrong_flags_are_discarded_not_withdrawn() {
    let two = Options {
        four_octet_as: false,
        external: true,
    };
    let p = a(WELL_KNOWN, 2, &[2, 2, 0xfd, 0xe9, 0x5b, 0xa0]);
    let as4 = a(WELL_KNOWN, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x00]);
    let m = update(Carrier::Nlri, &[2], &[p, as4].concat());
    let Ok(Message::Update(u)) = decode(&m, two) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(
        u.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(AsPath::sequence(vec![65001, 23456])))
    );
}

#[test]
fn s3_c_an_mp_reach_with_wrong_flags_still_gives_the_routes_to_withdraw() {
    // Sent as optional transitive: treat-as-withdraw, and its prefixes are found (the
    // `outcome` helper counts them).
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v.push(0);
    v.extend_from_slice(&[32, 0x20, 0x01, 0x0d, 0xb8]);
    let mp = a(OPTIONAL_TRANSITIVE, 14, &v);
    let mut attrs = mp;
    attrs.extend(origin());
    attrs.extend(as_path());
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    let Ok(Message::Update(u)) = decode(&m, internal()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw.map(|e| e.code), Some(14));
    assert!(
        matches!(u.attribute(attr::MP_REACH_NLRI), Some(Attribute::MpReach(r)) if r.nlri.len() == 1)
    );
}

#[test]
fn every_origin_value_and_every_octet_of_a_large_community() {
    for (value, origin) in [(0, Origin::Igp), (1, Origin::Egp), (2, Origin::Incomplete)] {
        let o = a(WELL_KNOWN, 1, &[value]);
        let Ok(Message::Update(u)) = decode(&update(Carrier::Nlri, &[1], &o), internal()) else {
            panic!()
        };
        assert_eq!(u.attribute(attr::ORIGIN), Some(&Attribute::Origin(origin)));
    }
    let bytes: Vec<u8> = (1..=12).collect();
    let large = a(OPTIONAL_TRANSITIVE, 32, &bytes);
    let Ok(Message::Update(u)) = decode(&update(Carrier::Nlri, &[], &large), internal()) else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::LARGE_COMMUNITIES),
        Some(&Attribute::LargeCommunities(vec![[
            0x0102_0304,
            0x0506_0708,
            0x090a_0b0c
        ]]))
    );
}

#[test]
fn rfc_6793_an_aggregator_beyond_two_octets_goes_as_as_trans_and_as4_aggregator() {
    let two = Options {
        four_octet_as: false,
        external: true,
    };
    let encoded = |asn: u32| {
        let u = Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![65001])),
                Attribute::NextHop("192.0.2.1".parse().unwrap()),
                Attribute::Aggregator {
                    asn,
                    address: "192.0.2.9".parse().unwrap(),
                },
            ],
            nlri: vec!["10.1.2.0/24".parse().unwrap()],
            ..Update::default()
        };
        let mut out = Vec::new();
        encode(&Message::Update(u.clone()), two, &mut out).unwrap();
        let Ok(Message::Update(back)) = decode(&out, two) else {
            panic!()
        };
        assert_eq!(back.attributes, u.attributes, "read back as written");
        out
    };
    let big = encoded(4_200_000_000);
    // AGGREGATOR: AS_TRANS (0x5ba0) and the address; AS4_AGGREGATOR: the whole AS.
    assert!(
        big.windows(9)
            .any(|w| w == [0xc0, 7, 6, 0x5b, 0xa0, 192, 0, 2, 9])
    );
    assert!(
        big.windows(11)
            .any(|w| w == [0xc0, 18, 8, 0xfa, 0x56, 0xea, 0x00, 192, 0, 2, 9])
    );
    let small = encoded(65535);
    assert!(
        small
            .windows(9)
            .any(|w| w == [0xc0, 7, 6, 0xff, 0xff, 192, 0, 2, 9])
    );
    assert!(
        !small.windows(2).any(|w| w == [0xc0, 18]),
        "no AS4_AGGREGATOR"
    );
}
