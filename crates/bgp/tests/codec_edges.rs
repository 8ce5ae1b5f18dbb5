//! The codec at its edges, each message written byte by byte from the RFCs: lengths at
//! their limits, attribute flags kept and passed on, AS_SET and AS4_PATH merging (RFC
//! 6793 4.2.3), MP_REACH next hops of each size, capabilities' bit layouts.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use strata_bgp::codec::*;

const AS4: Options = Options {
    four_octet_as: true,
    external: false,
};

const TWO: Options = Options {
    four_octet_as: false,
    external: false,
};

fn with_header(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    with_header(2, &body)
}

/// ORIGIN IGP, AS_PATH [65001], NEXT_HOP 192.168.100.20.
const BASE: [u8; 20] = [
    0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 4, 192, 168, 100, 20,
];

fn decoded(bytes: &[u8], options: Options) -> Update {
    match decode(bytes, options).unwrap() {
        Message::Update(u) => u,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_open_shorter_than_29_bytes_has_a_bad_length() {
    // Version, AS, hold time, identifier: 9 bytes, no optional parameters length.
    let open = with_header(1, &[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1]);
    assert_eq!(open.len(), 28);
    let e = decode(&open, AS4).unwrap_err();
    assert_eq!(
        (
            e.notification.code,
            e.notification.subcode,
            e.notification.data
        ),
        (1, 2, vec![0, 28])
    );
}

#[test]
fn an_unknown_well_known_attribute_is_answered_with_the_whole_attribute() {
    // Type 99 with the optional bit clear, ahead of the others.
    let mut attrs = vec![0x40, 99, 2, 0xab, 0xcd];
    attrs.extend_from_slice(&BASE);
    let e = decode(&update(&attrs, &[24, 192, 0, 2]), AS4).unwrap_err();
    assert_eq!(
        (
            e.notification.code,
            e.notification.subcode,
            e.notification.data
        ),
        (3, 2, vec![0x40, 99, 2, 0xab, 0xcd])
    );
}

#[test]
fn unknown_optional_attributes_keep_their_meaning_bits_and_transitive_ones_become_partial() {
    let mut attrs = BASE.to_vec();
    // Optional non-transitive, extended length: kept as 0x80.
    attrs.extend_from_slice(&[0x90, 200, 0, 1, 0x11]);
    // Optional transitive: passed on with Partial set.
    attrs.extend_from_slice(&[0xc0, 201, 1, 0x22]);
    // Optional transitive, already partial, extended length: stays 0xe0.
    attrs.extend_from_slice(&[0xf0, 202, 0, 1, 0x33]);
    let u = decoded(&update(&attrs, &[24, 192, 0, 2]), AS4);
    let unknown: Vec<(u8, u8)> = u
        .attributes
        .iter()
        .filter_map(|a| match a {
            Attribute::Unknown { flags, code, .. } => Some((*code, *flags)),
            _ => None,
        })
        .collect();
    assert_eq!(unknown, [(200, 0x80), (201, 0xe0), (202, 0xe0)]);
}

#[test]
fn as_sets_are_read() {
    // AS_PATH: AS_SEQUENCE [65001], AS_SET {65002, 65003}.
    let mut attrs = vec![0x40, 1, 1, 0];
    attrs.extend_from_slice(&[
        0x40, 2, 16, 2, 1, 0, 0, 0xfd, 0xe9, 1, 2, 0, 0, 0xfd, 0xea, 0, 0, 0xfd, 0xeb,
    ]);
    attrs.extend_from_slice(&[0x40, 3, 4, 192, 168, 100, 20]);
    let u = decoded(&update(&attrs, &[24, 192, 0, 2]), AS4);
    assert!(u.treat_as_withdraw.is_none(), "{:?}", u.treat_as_withdraw);
    let Some(Attribute::AsPath(p)) = u.attribute(attr::AS_PATH) else {
        panic!()
    };
    assert_eq!(
        p.segments,
        [
            AsSegment {
                set: false,
                asns: vec![65001]
            },
            AsSegment {
                set: true,
                asns: vec![65002, 65003]
            }
        ]
    );
    assert_eq!(p.len(), 2, "a set counts as one");
    assert!(!p.is_empty());
    assert!(AsPath::default().is_empty());
}

/// Reads AS_PATH (2-octet) and AS4_PATH as an old speaker would send them.
fn merged(as_path: &[u8], as4_path: &[u8]) -> Vec<AsSegment> {
    let mut attrs = vec![0x40, 1, 1, 0];
    if as_path.len() > 255 {
        attrs.extend_from_slice(&[0x50, 2]);
        attrs.extend_from_slice(&(as_path.len() as u16).to_be_bytes());
    } else {
        attrs.extend_from_slice(&[0x40, 2, as_path.len() as u8]);
    }
    attrs.extend_from_slice(as_path);
    attrs.extend_from_slice(&[0xc0, 17, as4_path.len() as u8]);
    attrs.extend_from_slice(as4_path);
    attrs.extend_from_slice(&[0x40, 3, 4, 192, 0, 2, 1]);
    let u = decoded(&update(&attrs, &[24, 198, 51, 100]), TWO);
    match u.attribute(attr::AS_PATH) {
        Some(Attribute::AsPath(p)) => p.segments.clone(),
        other => panic!("{other:?}"),
    }
}

fn seq(asns: &[u32]) -> AsSegment {
    AsSegment {
        set: false,
        asns: asns.to_vec(),
    }
}

fn set(asns: &[u32]) -> AsSegment {
    AsSegment {
        set: true,
        asns: asns.to_vec(),
    }
}

fn two_octet(segments: &[(u8, &[u16])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (kind, asns) in segments {
        v.extend_from_slice(&[*kind, asns.len() as u8]);
        for a in *asns {
            v.extend_from_slice(&a.to_be_bytes());
        }
    }
    v
}

fn four_octet(segments: &[(u8, &[u32])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (kind, asns) in segments {
        v.extend_from_slice(&[*kind, asns.len() as u8]);
        for a in *asns {
            v.extend_from_slice(&a.to_be_bytes());
        }
    }
    v
}

#[test]
fn as4_path_merging_counts_a_set_as_one_and_joins_sequences_at_the_seam() {
    // AS_PATH: SEQ 64500, SET {64501, 64502}, SEQ AS_TRANS (3 ASNs as counted);
    // AS4_PATH: SEQ 4200000000 (1). The leading 2 (the sequence and the set) stay.
    let out = merged(
        &two_octet(&[(2, &[64500]), (1, &[64501, 64502]), (2, &[23456])]),
        &four_octet(&[(2, &[4_200_000_000])]),
    );
    assert_eq!(
        out,
        [seq(&[64500]), set(&[64501, 64502]), seq(&[4_200_000_000])]
    );
    // A set in front of the seam stays a set: nothing joins it.
    let out = merged(
        &two_octet(&[(1, &[64501, 64502]), (2, &[23456, 23456])]),
        &four_octet(&[(2, &[4_200_000_000, 4_200_000_001])]),
    );
    assert_eq!(
        out,
        [set(&[64501, 64502]), seq(&[4_200_000_000, 4_200_000_001])]
    );
    // Sequences meeting at the seam are one, while they fit in one segment (255).
    let lead: Vec<u16> = (1..=20).collect();
    let trans = [23456u16; 20];
    let mut whole: Vec<u16> = lead.clone();
    whole.extend_from_slice(&trans);
    let tail: Vec<u32> = (0..20).map(|i| 4_200_000_000 + i).collect();
    let out = merged(&two_octet(&[(2, &whole)]), &four_octet(&[(2, &tail)]));
    let mut expected: Vec<u32> = lead.iter().map(|&a| u32::from(a)).collect();
    expected.extend_from_slice(&tail);
    assert_eq!(out, [seq(&expected)]);
}

#[test]
fn sequences_too_long_for_one_segment_stay_two() {
    // 200 leading ASNs and an AS4_PATH of 60: 260 do not fit in one segment.
    let lead: Vec<u16> = (1..=200).collect();
    let trans = [23456u16; 60];
    let tail: Vec<u32> = (0..60).map(|i| 4_200_000_000 + i).collect();
    let out = merged(
        &two_octet(&[(2, &lead), (2, &trans)]),
        &four_octet(&[(2, &tail)]),
    );
    let lead32: Vec<u32> = lead.iter().map(|&a| u32::from(a)).collect();
    assert_eq!(out, [seq(&lead32), seq(&tail)]);
}

fn mp_reach_update(mp: &[u8]) -> Update {
    let mut attrs = vec![0x90, 14];
    attrs.extend_from_slice(&(mp.len() as u16).to_be_bytes());
    attrs.extend_from_slice(mp);
    attrs.extend_from_slice(&[0x40, 1, 1, 0, 0x40, 2, 0]);
    decoded(&update(&attrs, &[]), AS4)
}

#[test]
fn mp_reach_next_hops_of_each_size() {
    // IPv4 unicast in MP_REACH_NLRI: a 4-byte next hop.
    let u = mp_reach_update(&[0, 1, 1, 4, 192, 0, 2, 1, 0, 24, 198, 51, 100]);
    let Some(Attribute::MpReach(m)) = u.attribute(attr::MP_REACH_NLRI) else {
        panic!("{u:?}")
    };
    assert_eq!(m.next_hops, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]);
    assert_eq!(m.nlri, ["198.51.100.0/24".parse().unwrap()]);
    // IPv6 with a global and a link-local next hop (RFC 2545): 32 bytes.
    let mut v6 = vec![0, 2, 1, 32];
    v6.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6.extend_from_slice(&"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&[0, 32, 0x20, 0x01, 0x0d, 0xb8]);
    let u = mp_reach_update(&v6);
    let Some(Attribute::MpReach(m)) = u.attribute(attr::MP_REACH_NLRI) else {
        panic!("{u:?}")
    };
    assert_eq!(
        m.next_hops,
        [
            "2001:db8::1".parse::<IpAddr>().unwrap(),
            "fe80::1".parse::<IpAddr>().unwrap()
        ]
    );
    assert_eq!(m.nlri, ["2001:db8::/32".parse().unwrap()]);
}

#[test]
fn mp_unreach_reads_ipv4_and_ipv6_and_refuses_other_families() {
    let read = |mp: &[u8]| {
        let mut attrs = vec![0x90, 15];
        attrs.extend_from_slice(&(mp.len() as u16).to_be_bytes());
        attrs.extend_from_slice(mp);
        decode(&update(&attrs, &[]), AS4)
    };
    let Message::Update(u) = read(&[0, 1, 1, 24, 198, 51, 100]).unwrap() else {
        panic!()
    };
    let Some(Attribute::MpUnreach(m)) = u.attribute(attr::MP_UNREACH_NLRI) else {
        panic!("{u:?}")
    };
    assert_eq!(
        (m.afi, m.withdrawn.clone()),
        (1, vec!["198.51.100.0/24".parse().unwrap()])
    );
    let Message::Update(u) = read(&[0, 2, 1, 32, 0x20, 0x01, 0x0d, 0xb8]).unwrap() else {
        panic!()
    };
    assert!(u.attribute(attr::MP_UNREACH_NLRI).is_some());
    // AFI 25 (L2VPN): not a family this speaker reads.
    let other = read(&[0, 25, 65, 0]);
    assert!(
        match &other {
            Err(_) => true,
            Ok(Message::Update(u)) => u.attribute(attr::MP_UNREACH_NLRI).is_none(),
            Ok(_) => false,
        },
        "{other:?}"
    );
}

fn open_with(capabilities: Vec<Capability>) -> Message {
    Message::Open(Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities,
    })
}

#[test]
fn capabilities_fill_an_open_up_to_255_bytes_of_parameters() {
    // Each unknown capability of 49 value bytes takes 51; four and one of 47 make 253.
    let cap = |n: usize| Capability::Unknown {
        code: 200,
        value: vec![0; n],
    };
    let fits = open_with(vec![cap(49), cap(49), cap(49), cap(49), cap(47)]);
    let mut out = Vec::new();
    encode(&fits, AS4, &mut out).unwrap();
    assert_eq!(out[28], 255, "optional parameters length");
    let too_many = open_with(vec![cap(49), cap(49), cap(49), cap(49), cap(48)]);
    let mut out = Vec::new();
    assert!(encode(&too_many, AS4, &mut out).is_err());
    assert!(out.is_empty() || out.len() <= 29);
}

#[test]
fn graceful_restart_is_laid_out_as_rfc_4724_says() {
    let gr = Capability::GracefulRestart(GracefulRestart {
        restarting: true,
        notification: true,
        time: 0x0abc,
        families: vec![(1, 1, true), (2, 1, false)],
    });
    let mut out = Vec::new();
    encode(&open_with(vec![gr.clone()]), AS4, &mut out).unwrap();
    // Capability 64, length 10: R and N bits and the 12-bit time, then per family
    // AFI, SAFI, and the forwarding bit.
    let expected = [64, 10, 0xca, 0xbc, 0, 1, 1, 0x80, 0, 2, 1, 0];
    assert!(
        out.windows(expected.len()).any(|w| w == expected),
        "{out:02x?}"
    );
    let Message::Open(o) = decode(&out, AS4).unwrap() else {
        panic!()
    };
    assert_eq!(o.capabilities, [gr]);
    // Neither bit, a short time.
    let plain = Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: false,
        time: 120,
        families: vec![],
    });
    let mut out = Vec::new();
    encode(&open_with(vec![plain]), AS4, &mut out).unwrap();
    assert!(out.windows(4).any(|w| w == [64, 2, 0, 120]), "{out:02x?}");
}

fn as_path_update(asns: Vec<u32>) -> Message {
    Message::Update(Update {
        attributes: vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(AsPath::sequence(asns)),
            Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
        ],
        nlri: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    })
}

#[test]
fn as4_path_goes_only_with_asns_that_do_not_fit_two_octets() {
    let has_as4_path = |asns: Vec<u32>| {
        let mut out = Vec::new();
        encode(&as_path_update(asns), TWO, &mut out).unwrap();
        // Optional transitive, type 17.
        out.windows(2).any(|w| w == [0xc0, attr::AS4_PATH])
    };
    assert!(!has_as4_path(vec![65001, 65535]), "65535 fits");
    assert!(has_as4_path(vec![65001, 65536]));
    assert!(has_as4_path(vec![4_200_000_000]));
}

#[test]
fn a_message_of_4096_bytes_goes_and_one_more_does_not() {
    // An UPDATE of /32s: header 19, lengths 4, attributes, then 5 bytes a prefix.
    let base = {
        let mut out = Vec::new();
        encode(&as_path_update(vec![65001]), AS4, &mut out).unwrap();
        out.len() - 4 // without its one /24
    };
    let with = |count: usize, extra: u8| {
        let mut nlri: Vec<Ipv4Net> = (0..count as u32)
            .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
            .collect();
        if extra > 0 {
            nlri.push(Ipv4Net::new(Ipv4Addr::new(11, 0, 0, 0), extra).unwrap());
        }
        let Message::Update(mut u) = as_path_update(vec![65001]) else {
            panic!()
        };
        u.nlri = nlri;
        let mut out = Vec::new();
        encode(&Message::Update(u), AS4, &mut out).map(|()| out.len())
    };
    let room = 4096 - base;
    // Fill with /32s (5 bytes) and make up the rest with one shorter prefix.
    let count = room / 5;
    let rest = room - count * 5;
    let extra = match rest {
        0 => 0,
        r => ((r - 1) * 8) as u8,
    };
    assert_eq!(with(count, extra).unwrap(), 4096);
    let over = if rest == 0 {
        with(count, 8)
    } else {
        with(count, extra + 8)
    };
    assert!(over.is_err(), "{over:?}");
}

#[test]
fn an_attribute_over_255_bytes_takes_the_extended_length() {
    let with_communities = |n: usize| {
        let Message::Update(mut u) = as_path_update(vec![65001]) else {
            panic!()
        };
        u.attributes.push(Attribute::Unknown {
            flags: 0xc0,
            code: 220,
            value: vec![7; n],
        });
        let mut out = Vec::new();
        encode(&Message::Update(u), AS4, &mut out).unwrap();
        out
    };
    let short = with_communities(255);
    assert!(
        short.windows(3).any(|w| w == [0xc0, 220, 255]),
        "one length byte"
    );
    let long = with_communities(256);
    assert!(
        long.windows(4).any(|w| w == [0xd0, 220, 1, 0]),
        "flags with Extended Length, two length bytes"
    );
    let Message::Update(u) = decode(&long, AS4).unwrap() else {
        panic!()
    };
    assert!(
        u.attributes.iter().any(
            |a| matches!(a, Attribute::Unknown { code: 220, value, .. } if value.len() == 256)
        )
    );
}

#[test]
fn attributes_len_is_what_the_encoder_writes() {
    let attributes = vec![
        Attribute::Origin(Origin::Egp),
        Attribute::AsPath(AsPath::sequence(vec![65001, 4_200_000_000, 64500])),
        Attribute::Med(7),
        Attribute::LocalPref(200),
        Attribute::Communities(vec![0xfde9_0001, 0xffff_ff01]),
        Attribute::Aggregator {
            asn: 4_200_000_000,
            address: Ipv4Addr::new(192, 0, 2, 9),
        },
        Attribute::ExtendedCommunities(vec![[0, 2, 0xfd, 0xe9, 0, 0, 0, 1]]),
        Attribute::LargeCommunities(vec![[4_200_000_000, 1, 2]]),
        Attribute::Unknown {
            flags: 0xc0,
            code: 240,
            value: vec![1; 300],
        },
    ];
    for options in [AS4, TWO] {
        let len = attributes_len(&attributes, options).unwrap();
        let mut out = Vec::new();
        let u = Update {
            attributes: attributes.clone(),
            ..Update::default()
        };
        encode(&Message::Update(u), options, &mut out).unwrap();
        // Header 19, the two length fields 4, no routes.
        assert_eq!(
            len,
            out.len() - 23,
            "four-octet AS: {}",
            options.four_octet_as
        );
    }
    assert_eq!(attributes_len(&[], AS4).unwrap(), 0);
}

#[test]
fn a_shutdown_communication_is_cut_at_a_character_boundary() {
    // 127 ASCII bytes and a 2-byte character: 129 bytes; cut to 128 would split it.
    let text = format!("{}é", "a".repeat(127));
    let n = Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN, &text);
    assert_eq!(n.data[0], 127);
    assert_eq!(&n.data[1..], "a".repeat(127).as_bytes());
    // Other subcodes carry none.
    assert!(
        Notification::cease(cease::PEER_DECONFIGURED, "bye")
            .data
            .is_empty()
    );
}
