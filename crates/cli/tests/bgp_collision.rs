//! Connection collision (RFC 4271 section 6.8) on real sockets: the speaker opens a
//! connection to a raw peer while the peer opens one to the speaker. The connection kept
//! is the one opened by the side with the higher BGP Identifier; the other is closed with
//! Cease / Connection Collision Resolution (RFC 4486 subcode 7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Guard, loopback_pair, message, read_message, speaker, wait_for};

/// Reads messages until one of `kind`; returns it.
fn read_until(s: &mut TcpStream, kind: u8) -> Vec<u8> {
    loop {
        let m = read_message(s);
        if m[18] == kind {
            return m;
        }
    }
}

/// An OPEN from AS 64500 with identifier `id`, hold time 30, 4-octet AS capability.
fn open(id: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = id.octets();
    message(
        1,
        &[
            4, 0xfb, 0xf4, 0, 30, a, b, c, d, 8, 2, 6, 65, 4, 0, 0, 0xfb, 0xf4,
        ],
    )
}

/// Runs a collision against a raw peer announcing `peer_id` and checks that the speaker
/// closes the right connection and comes up on the other.
fn collide(tag: u8, peer_id: Ipv4Addr, speaker_wins: bool) {
    let guard = Guard::new(&format!("collision-{tag}"));
    let (peer_ip, our_ip) = loopback_pair(tag);
    let listener = TcpListener::bind((peer_ip.as_str(), 1179)).unwrap();
    let (config, status) = common::speaker_config(&guard.dir, &our_ip, &peer_ip, "port = 1179\n");
    // The speaker listens on 1179 too, on its own address.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("\n[[neighbor]]", "\nport = 1179\n[[neighbor]]", 1),
    )
    .unwrap();
    let mut guard = guard;
    guard.children.push(speaker(&config));

    // Connection 1: the speaker's.
    let (mut first, _) = listener.accept().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_message(&mut first)[18], 1, "the speaker's OPEN");
    // Connection 2: ours, from our address so the speaker knows whose it is.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let ip: Ipv4Addr = peer_ip.parse().unwrap();
    socket.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
    let ours: Ipv4Addr = our_ip.parse().unwrap();
    socket
        .connect(&SocketAddr::from((ours, 1179)).into())
        .unwrap();
    let mut second: TcpStream = socket.into();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    second.write_all(&open(peer_id)).unwrap();
    assert_eq!(read_message(&mut second)[18], 1, "the speaker's OPEN");

    let (mut kept, mut closed) = if speaker_wins {
        (first, second)
    } else {
        (second, first)
    };
    let cease = read_until(&mut closed, 3);
    assert_eq!(
        &cease[19..21],
        &[6, 7],
        "Cease / Connection Collision Resolution"
    );
    if speaker_wins {
        kept.write_all(&open(peer_id)).unwrap();
    }
    assert_eq!(
        read_until(&mut kept, 4)[18],
        4,
        "KEEPALIVE on the kept connection"
    );
    kept.write_all(&message(4, &[])).unwrap();
    wait_for("Established", Duration::from_secs(5), || {
        common::status_says(&status, &format!("neighbor {peer_ip} AS 64500 Established"))
    });
    // Routes go out on the connection kept.
    let update = read_until(&mut kept, 2);
    assert!(
        update.ends_with(&[32, 192, 168, 133, 74]),
        "the VIP's UPDATE: {update:?}"
    );
}

#[test]
fn the_speaker_keeps_its_own_connection_when_its_identifier_is_higher() {
    // The speaker's identifier is 127.x.9.3.
    collide(9, Ipv4Addr::new(10, 9, 9, 9), true);
}

#[test]
fn the_speaker_yields_to_the_connection_of_a_higher_identifier() {
    collide(10, Ipv4Addr::new(200, 0, 0, 1), false);
}
