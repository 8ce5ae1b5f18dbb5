//! Malformed messages get the NOTIFICATION RFC 4271 section 6 names, or (for attribute
//! errors RFC 7606 lets a session survive) treat-as-withdraw.

#![allow(clippy::unwrap_used)]

use strata_bgp::codec::*;

const AS4: Options = Options {
    four_octet_as: true,
    external: false,
};

fn with_header(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

fn notification(bytes: &[u8]) -> (u8, u8, Vec<u8>) {
    let e = decode(bytes, AS4).unwrap_err();
    (
        e.notification.code,
        e.notification.subcode,
        e.notification.data,
    )
}

/// ORIGIN IGP, AS_PATH [65001], NEXT_HOP 192.168.100.20, as BIRD sends them.
const GOOD_ATTRS: [u8; 20] = [
    0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 4, 192, 168, 100, 20,
];

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    with_header(2, &body)
}

#[test]
fn header_errors() {
    let mut bad_marker = with_header(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(notification(&bad_marker), (1, 1, vec![]));
    let mut short = with_header(4, &[]);
    short[17] = 18;
    assert_eq!(message_len(&short).unwrap_err().notification.subcode, 2);
    assert_eq!(notification(&with_header(9, &[])), (1, 3, vec![9]));
    // A KEEPALIVE with a body has a bad length; the data is the length field.
    assert_eq!(notification(&with_header(4, &[0])), (1, 2, vec![0, 20]));
    assert_eq!(
        message_len(&[0xff; 10]).unwrap(),
        None,
        "not enough bytes yet"
    );
}

#[test]
fn open_errors() {
    let open = |version: u8, hold: u16, id: [u8; 4]| {
        let mut b = vec![version, 0xfd, 0xe9];
        b.extend_from_slice(&hold.to_be_bytes());
        b.extend_from_slice(&id);
        b.push(0);
        with_header(1, &b)
    };
    assert_eq!(
        notification(&open(3, 90, [10, 0, 0, 1])),
        (2, 1, vec![0, 4])
    );
    assert_eq!(notification(&open(4, 2, [10, 0, 0, 1])).1, 6);
    assert_eq!(notification(&open(4, 90, [0, 0, 0, 0])).1, 3);
    assert!(
        decode(&open(4, 0, [10, 0, 0, 1]), AS4).is_ok(),
        "hold time 0 is allowed"
    );
    let mut with_auth = open(4, 90, [10, 0, 0, 1]);
    // One optional parameter of type 1 (deprecated authentication).
    let n = with_auth.len();
    with_auth[n - 1] = 3;
    with_auth.extend_from_slice(&[1, 1, 0]);
    with_auth[17] += 3;
    assert_eq!(notification(&with_auth).1, 4);
}

#[test]
fn attribute_errors_are_treat_as_withdraw() {
    let nlri = [24, 10, 1, 2];
    let ok = decode(&update(&GOOD_ATTRS, &nlri), AS4).unwrap();
    let Message::Update(u) = ok else { panic!() };
    assert_eq!(u.treat_as_withdraw, None);

    // ORIGIN 7.
    let mut bad_origin = GOOD_ATTRS;
    bad_origin[3] = 7;
    // NEXT_HOP with 3 bytes: the attribute list then is shorter by one.
    let short_nh = [&GOOD_ATTRS[..15], &[3, 192, 168, 100]].concat();
    // COMMUNITIES of 3 bytes.
    let bad_comm = [&GOOD_ATTRS[..], &[0xc0, 8, 3, 1, 2, 3]].concat();
    // ORIGIN with the optional flag.
    let mut bad_flags = GOOD_ATTRS;
    bad_flags[0] = 0xc0;
    // No NEXT_HOP at all.
    let missing = &GOOD_ATTRS[..13];
    // An attribute whose length overruns the list.
    let overrun = [&GOOD_ATTRS[..], &[0xc0, 8, 200, 1]].concat();
    for (attrs, code) in [
        (&bad_origin[..], attr::ORIGIN),
        (&short_nh[..], attr::NEXT_HOP),
        (&bad_comm[..], attr::COMMUNITIES),
        (&bad_flags[..], attr::ORIGIN),
        (missing, attr::NEXT_HOP),
        (&overrun[..], attr::COMMUNITIES),
    ] {
        let Message::Update(u) = decode(&update(attrs, &nlri), AS4).unwrap() else {
            panic!()
        };
        assert_eq!(u.treat_as_withdraw.map(|e| e.code), Some(code), "{attrs:?}");
        assert_eq!(
            u.nlri.len(),
            1,
            "the prefixes are still found, to be withdrawn"
        );
    }
}

#[test]
fn errors_that_reset_the_session() {
    // A prefix longer than 32 bits in the NLRI: Invalid Network Field.
    assert_eq!(
        notification(&update(&GOOD_ATTRS, &[33, 1, 2, 3, 4, 5])).1,
        10
    );
    // Withdrawn routes length past the end: Malformed Attribute List.
    assert_eq!(notification(&with_header(2, &[0, 9, 0, 0])).1, 1);
    // A malformed MP_REACH_NLRI (next hop length 5 for IPv4): Optional Attribute Error.
    let mp = [0x80, 14, 9, 0, 1, 1, 5, 1, 2, 3, 4, 5];
    assert_eq!(notification(&update(&mp, &[])), (3, 9, vec![]));
}

#[test]
fn two_octet_as_paths_and_as_trans() {
    // RFC 6793: to a speaker without 4-octet AS numbers, AS_PATH carries AS_TRANS and
    // AS4_PATH the whole path; reading both gives the path back.
    let path = AsPath::sequence(vec![65001, 4_200_000_000]);
    let u = Update {
        attributes: vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(path.clone()),
            Attribute::NextHop("192.168.100.20".parse().unwrap()),
        ],
        nlri: vec!["192.168.133.74/32".parse().unwrap()],
        ..Update::default()
    };
    let two = Options {
        four_octet_as: false,
        external: false,
    };
    let mut out = Vec::new();
    encode(&Message::Update(u), two, &mut out).unwrap();
    // AS_PATH: flags 0x40, type 2, length 6, a sequence of two 2-octet ASNs.
    let as_path = [0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0x5b, 0xa0];
    assert!(out.windows(9).any(|w| w == as_path), "{out:02x?}");
    // AS4_PATH: flags 0xc0 (optional transitive), type 17, a sequence of 4-octet ASNs.
    let as4_path = [0xc0, 17, 10, 2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00];
    assert!(out.windows(13).any(|w| w == as4_path), "{out:02x?}");
    let Message::Update(back) = decode(&out, two).unwrap() else {
        panic!()
    };
    assert_eq!(
        back.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(path))
    );
    assert_eq!(back.attributes.len(), 3, "AS4_PATH is merged, not kept");
}

#[test]
fn as4_path_from_an_old_speaker_is_merged_and_from_a_new_one_ignored() {
    // An old speaker (2-octet) prepended 64500 in front of a path that went through a
    // 4-octet AS: AS_PATH 64500 65001 AS_TRANS, AS4_PATH 65001 4200000000.
    let body = |as_path: &[u8], as4: &[u8]| {
        let mut attrs = vec![0x40, 1, 1, 0];
        attrs.extend_from_slice(&[0x40, 2, as_path.len() as u8]);
        attrs.extend_from_slice(as_path);
        attrs.extend_from_slice(&[0xc0, 17, as4.len() as u8]);
        attrs.extend_from_slice(as4);
        attrs.extend_from_slice(&[0x40, 3, 4, 192, 0, 2, 1]);
        let mut b = vec![0, 0];
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&attrs);
        b.extend_from_slice(&[24, 198, 51, 100]);
        b
    };
    let old = body(
        &[2, 3, 0xfb, 0xf4, 0xfd, 0xe9, 0x5b, 0xa0],
        &[2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00],
    );
    let two = Options {
        four_octet_as: false,
        external: false,
    };
    let Message::Update(u) = decode(&with_header(2, &old), two).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(AsPath::sequence(vec![
            64500,
            65001,
            4_200_000_000
        ])))
    );
    // An AS4_PATH longer than AS_PATH is ignored (RFC 6793 section 4.2.3).
    let longer = body(
        &[2, 1, 0xfb, 0xf4],
        &[2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00],
    );
    let Message::Update(u) = decode(&with_header(2, &longer), two).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(AsPath::sequence(vec![64500])))
    );
    // Between 4-octet speakers an AS4_PATH means nothing and is dropped.
    let new = body(&[2, 1, 0, 0, 0xfb, 0xf4], &[2, 1, 0xfa, 0x56, 0xea, 0x00]);
    let four = Options {
        four_octet_as: true,
        external: false,
    };
    let Message::Update(u) = decode(&with_header(2, &new), four).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.attribute(attr::AS_PATH),
        Some(&Attribute::AsPath(AsPath::sequence(vec![64500])))
    );
    assert_eq!(u.attributes.len(), 3);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn prefix() -> impl Strategy<Value = ipnet::Ipv4Net> {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| ipnet::Ipv4Net::new(a.into(), l).unwrap().trunc())
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(kind in 1u8..=6, body in proptest::collection::vec(any::<u8>(), 0..200), four in any::<bool>()) {
            let _ = decode(&with_header(kind, &body), Options { four_octet_as: four, external: false });
        }

        #[test]
        fn updates_round_trip(
            withdrawn in proptest::collection::vec(prefix(), 0..20),
            nlri in proptest::collection::vec(prefix(), 1..20),
            path in proptest::collection::vec(1u32.., 1..10),
            med in any::<Option<u32>>(),
            communities in proptest::collection::vec(any::<u32>(), 0..5),
            nh in any::<[u8; 4]>().prop_filter("unicast", |a| a[0] != 0 && a[0] < 224),
        ) {
            let mut attributes = vec![
                Attribute::Origin(Origin::Egp),
                Attribute::AsPath(AsPath::sequence(path)),
                Attribute::NextHop(std::net::Ipv4Addr::from(nh)),
            ];
            attributes.extend(med.map(Attribute::Med));
            if !communities.is_empty() {
                attributes.push(Attribute::Communities(communities));
            }
            let u = Message::Update(Update { withdrawn, attributes, nlri, treat_as_withdraw: None });
            let mut out = Vec::new();
            encode(&u, AS4, &mut out).unwrap();
            prop_assert_eq!(decode(&out, AS4).unwrap(), u);
        }
    }
}
