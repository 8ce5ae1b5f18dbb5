//! Message-level rules of RFC 4271 section 4 and 6, RFC 4486, RFC 8203, RFC 4724 and RFC
//! 6793, from hand-written bytes: lengths per message type, OPEN fields, capabilities,
//! End-of-RIB, Cease subcodes and shutdown communications, and framing a stream.

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

fn code(bytes: &[u8]) -> (u8, u8) {
    let e = decode(bytes, AS4).unwrap_err();
    (e.notification.code, e.notification.subcode)
}

#[test]
fn each_type_has_its_least_length_or_exact_length() {
    // RFC 4271 6.1: Bad Message Length (1/2) for an UPDATE under 23 octets, a
    // NOTIFICATION under 21, a ROUTE-REFRESH (RFC 2918) other than 23.
    for body in 0..4 {
        assert_eq!(
            code(&with_header(2, &vec![0; body])),
            (1, 2),
            "UPDATE +{body}"
        );
    }
    assert!(decode(&with_header(2, &[0, 0, 0, 0]), AS4).is_ok());
    for body in 0..2 {
        assert_eq!(
            code(&with_header(3, &vec![6; body])),
            (1, 2),
            "NOTIFICATION +{body}"
        );
    }
    assert!(decode(&with_header(3, &[6, 2]), AS4).is_ok());
    for body in [3, 5] {
        assert_eq!(
            code(&with_header(5, &vec![0; body])),
            (1, 2),
            "ROUTE-REFRESH +{body}"
        );
    }
    assert_eq!(
        decode(&with_header(5, &[0, 1, 0, 1]), AS4).unwrap(),
        Message::RouteRefresh(RouteRefresh {
            afi: 1,
            subtype: 0,
            safi: 1
        })
    );
}

fn open(id: [u8; 4], capabilities: &[u8]) -> Vec<u8> {
    let mut b = vec![4, 0xfd, 0xe9, 0, 90];
    b.extend_from_slice(&id);
    if capabilities.is_empty() {
        b.push(0);
    } else {
        b.push(capabilities.len() as u8 + 2);
        b.extend_from_slice(&[2, capabilities.len() as u8]);
        b.extend_from_slice(capabilities);
    }
    with_header(1, &b)
}

#[test]
fn an_open_needs_a_unicast_identifier() {
    // RFC 4271 6.2: Bad BGP Identifier (2/3).
    for id in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255]] {
        assert_eq!(code(&open(id, &[])), (2, 3), "{id:?}");
    }
    assert!(decode(&open([10, 0, 0, 1], &[]), AS4).is_ok());
}

#[test]
fn capabilities_read_as_their_rfcs_lay_them_out() {
    // Route refresh (2) and enhanced route refresh (70) carry nothing; 4-octet AS (65)
    // carries the AS, which then is the speaker's.
    let caps = [2, 0, 70, 0, 65, 4, 0xfa, 0x56, 0xea, 0x00];
    let Message::Open(o) = decode(&open([10, 0, 0, 1], &caps), AS4).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        [
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(4_200_000_000)
        ]
    );
    assert_eq!(o.asn(), 4_200_000_000);
    // With a value they are not the ones we know, and kept as they came.
    let odd = [2, 1, 9, 70, 1, 9];
    let Message::Open(o) = decode(&open([10, 0, 0, 1], &odd), AS4).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        [
            Capability::Unknown {
                code: 2,
                value: vec![9]
            },
            Capability::Unknown {
                code: 70,
                value: vec![9]
            }
        ]
    );
    assert_eq!(o.asn(), 65001, "the 2-octet field without the capability");
}

#[test]
fn end_of_rib_is_an_empty_update_or_an_empty_mp_unreach() {
    // RFC 4724 section 2.
    let ipv4 = Update::end_of_rib(afi::IPV4, SAFI_UNICAST);
    assert_eq!(ipv4, Update::default());
    assert_eq!(ipv4.is_end_of_rib(), Some((afi::IPV4, SAFI_UNICAST)));
    let mut bytes = Vec::new();
    encode(&Message::Update(ipv4), AS4, &mut bytes).unwrap();
    assert_eq!(bytes.len(), 23);
    let ipv6 = Update::end_of_rib(afi::IPV6, SAFI_UNICAST);
    assert_eq!(ipv6.is_end_of_rib(), Some((afi::IPV6, SAFI_UNICAST)));
    let ipv4_multicast = Update::end_of_rib(afi::IPV4, 2);
    assert_eq!(ipv4_multicast.is_end_of_rib(), Some((afi::IPV4, 2)));
    // Anything announced or withdrawn is not one.
    let withdraws = Update {
        withdrawn: vec!["10.0.0.0/8".parse().unwrap()],
        ..Update::default()
    };
    assert_eq!(withdraws.is_end_of_rib(), None);
    let announces = Update {
        nlri: vec!["10.0.0.0/8".parse().unwrap()],
        ..Update::default()
    };
    assert_eq!(announces.is_end_of_rib(), None);
    let mp_withdraws = Update {
        attributes: vec![Attribute::MpUnreach(MpUnreach {
            afi: afi::IPV6,
            safi: SAFI_UNICAST,
            withdrawn: vec!["2001:db8::/32".parse().unwrap()],
        })],
        ..Update::default()
    };
    assert_eq!(mp_withdraws.is_end_of_rib(), None);
}

#[test]
fn notifications_read_as_rfc_4271_and_4486_name_them() {
    let n = |code, subcode| {
        Notification {
            code,
            subcode,
            data: vec![],
        }
        .to_string()
    };
    assert_eq!(n(1, 2), "Message Header Error / Bad Message Length (1/2)");
    assert_eq!(n(2, 2), "OPEN Message Error / Bad Peer AS (2/2)");
    assert_eq!(n(2, 3), "OPEN Message Error / Bad BGP Identifier (2/3)");
    assert_eq!(n(2, 5), "OPEN Message Error (2/5)", "deprecated: not named");
    assert_eq!(n(2, 7), "OPEN Message Error / Unsupported Capability (2/7)");
    assert_eq!(
        n(3, 1),
        "UPDATE Message Error / Malformed Attribute List (3/1)"
    );
    assert_eq!(n(3, 11), "UPDATE Message Error / Malformed AS_PATH (3/11)");
    assert_eq!(
        n(3, 7),
        "UPDATE Message Error (3/7)",
        "deprecated: not named"
    );
    assert_eq!(n(4, 0), "Hold Timer Expired (4/0)");
    assert_eq!(n(5, 1), "Finite State Machine Error (5/1)");
    assert_eq!(n(7, 1), "ROUTE-REFRESH Message Error (7/1)");
    assert_eq!(n(9, 9), "unknown error (9/9)");
    let ceases = [
        "Maximum Number of Prefixes Reached",
        "Administrative Shutdown",
        "Peer De-configured",
        "Administrative Reset",
        "Connection Rejected",
        "Other Configuration Change",
        "Connection Collision Resolution",
        "Out of Resources",
        "Hard Reset",
    ];
    for (i, name) in ceases.iter().enumerate() {
        let sub = i as u8 + 1;
        assert_eq!(n(6, sub), format!("Cease / {name} (6/{sub})"));
    }
    assert_eq!(n(6, 42), "Cease (6/42)");
}

#[test]
fn shutdown_communications_only_in_administrative_shutdown_and_reset() {
    // RFC 8203 section 2: a length, then that many octets of UTF-8.
    let with = |code, subcode, data: &[u8]| Notification {
        code,
        subcode,
        data: data.to_vec(),
    };
    assert_eq!(
        with(6, 2, b"\x02hi").shutdown_communication(),
        Some(Ok("hi"))
    );
    assert_eq!(
        with(6, 4, b"\x02hi").shutdown_communication(),
        Some(Ok("hi"))
    );
    // Other Ceases and other codes carry none, whatever their data.
    assert_eq!(with(6, 3, b"\x02hi").shutdown_communication(), None);
    assert_eq!(with(3, 2, b"\x02hi").shutdown_communication(), None);
    // No data, or length 0: none.
    assert_eq!(with(6, 2, b"").shutdown_communication(), None);
    assert_eq!(with(6, 2, b"\x00").shutdown_communication(), None);
    // Malformed: the length overruns, or the text is not UTF-8.
    assert_eq!(
        with(6, 2, b"\x05hi").shutdown_communication(),
        Some(Err(BadCommunication::Overrun {
            length: 5,
            available: 2
        }))
    );
    assert_eq!(
        with(6, 2, b"\x02\xc3\x28").shutdown_communication(),
        Some(Err(BadCommunication::NotUtf8))
    );
    assert_eq!(
        with(6, 2, b"\x02\xc3\x28").to_string(),
        "Cease / Administrative Shutdown (6/2): malformed shutdown communication (not UTF-8)"
    );
    // We cut ours at 128 octets, and never inside a character.
    let text = format!("a{}", "é".repeat(100));
    let n = Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN, &text);
    assert_eq!(n.data[0], 127);
    assert_eq!(n.shutdown_communication(), Some(Ok(&text[..127])));
    // Only the subcodes that carry one get one.
    assert!(
        Notification::cease(cease::PEER_DECONFIGURED, "x")
            .data
            .is_empty()
    );
    assert!(
        Notification::cease(cease::ADMINISTRATIVE_RESET, "")
            .data
            .is_empty()
    );
}

#[test]
fn a_stream_is_framed_one_message_at_a_time() {
    let mut stream = with_header(4, &[]);
    stream.extend_from_slice(&with_header(3, &[6, 2]));
    stream.extend_from_slice(&with_header(4, &[])[..10]);
    let mut buf = stream.clone();
    assert_eq!(take_message(&mut buf, AS4), Some(Ok(Message::Keepalive)));
    assert!(matches!(
        take_message(&mut buf, AS4),
        Some(Ok(Message::Notification(_)))
    ));
    // Half a header: nothing yet, and nothing taken.
    assert_eq!(take_message(&mut buf, AS4), None);
    assert_eq!(buf.len(), 10);
    buf.extend_from_slice(&with_header(4, &[])[10..]);
    assert_eq!(take_message(&mut buf, AS4), Some(Ok(Message::Keepalive)));
    assert!(buf.is_empty());
    // A whole header but part of the body: nothing yet.
    let whole = with_header(3, &[6, 2, 0]);
    let mut buf = whole[..20].to_vec();
    assert_eq!(take_message(&mut buf, AS4), None);
    // A bad marker: the error, and the stream is dropped (it is out of step).
    let mut buf = vec![0u8; 19];
    assert!(matches!(take_message(&mut buf, AS4), Some(Err(_))));
    assert!(buf.is_empty());
}
