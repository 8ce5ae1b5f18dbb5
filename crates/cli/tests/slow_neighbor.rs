//! A neighbor that stops reading costs the speaker its connection, not unbounded memory:
//! once more than `send_queue_limit` bytes wait for it, the connection is dropped, and
//! the other neighbors carry on.
//!
//! Two raw peers on loopback: one sends routes with a 3,000-byte transitive attribute
//! (each passed on as a 3 KB UPDATE), the other reads nothing, through a 4 KB receive
//! buffer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use common::{Guard, speaker, wait_for};
use ipnet::Ipv4Net;
use strata_bgp::codec::{self, AsPath, Attribute, Capability, Message, Open, Options, Update};

fn options() -> Options {
    Options {
        four_octet_as: true,
        external: false,
    }
}

/// Connects from `local` to the speaker and brings a session up (hold time 0).
fn establish(local: Ipv4Addr, speaker: Ipv4Addr, asn: u32, rcvbuf: Option<usize>) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())
        .unwrap();
    let to = SocketAddr::V4(SocketAddrV4::new(speaker, 179));
    let mut tries = 0;
    while socket.connect(&to.into()).is_err() {
        tries += 1;
        assert!(tries < 100, "the speaker does not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stream = TcpStream::from(socket);
    let open = Open {
        version: 4,
        my_as: asn as u16,
        hold_time: 0,
        bgp_id: local,
        capabilities: vec![Capability::FourOctetAs(asn)],
    };
    let mut out = Vec::new();
    codec::encode(&Message::Open(open), options(), &mut out).unwrap();
    codec::encode(&Message::Keepalive, options(), &mut out).unwrap();
    stream.write_all(&out).unwrap();
    // Their OPEN and KEEPALIVE.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rx = Vec::new();
    let mut buf = [0u8; 4096];
    let mut keepalive = false;
    while !keepalive {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the speaker closed the connection");
        rx.extend_from_slice(&buf[..n]);
        while let Some(m) = codec::take_message(&mut rx, options()) {
            keepalive |= m.unwrap() == Message::Keepalive;
        }
    }
    stream
}

#[test]
fn a_neighbor_that_stops_reading_is_dropped_and_the_others_carry_on() {
    let guard = Guard::new("slow-neighbor");
    let x = (std::process::id() % 200) as u8 + 20;
    let ours = Ipv4Addr::new(127, x, 11, 3);
    let slow = Ipv4Addr::new(127, x, 11, 2);
    let feeder = Ipv4Addr::new(127, x, 11, 4);
    let config = guard.dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{ours}\"\nlocal = \"{ours}\"\n\
             control_socket = \"{}\"\nsend_queue_limit = 1048576\n\
             [[neighbor]]\naddress = \"{slow}\"\nasn = 64600\npassive = true\n\
             [[neighbor]]\naddress = \"{feeder}\"\nasn = 64700\npassive = true\n",
            guard.dir.join("control.sock").display()
        ),
    )
    .unwrap();
    let mut guard = guard;
    guard.children.push(speaker(&config));
    let show = || common::bgp_show(&config, &["--summary"]);

    let _slow = establish(slow, ours, 64600, Some(4096));
    let mut feed = establish(feeder, ours, 64700, None);
    // 3,000 routes, each in its own UPDATE with 3,000 bytes of an optional transitive
    // attribute: about 9 MB to pass on to the slow neighbor, more than the kernel's
    // buffers (4 MB here) and the limit (1 MB) together.
    let mut out = Vec::new();
    for i in 0..3000u32 {
        let update = Update {
            attributes: vec![
                Attribute::Origin(codec::Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64700])),
                Attribute::NextHop(feeder),
                Attribute::Unknown {
                    flags: codec::FLAG_OPTIONAL | codec::FLAG_TRANSITIVE,
                    code: 200,
                    value: vec![0xab; 3000],
                },
            ],
            nlri: vec![Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()],
            ..Update::default()
        };
        codec::encode(&Message::Update(update), options(), &mut out).unwrap();
    }
    feed.write_all(&out).unwrap();

    wait_for(
        "the slow neighbor to be dropped",
        Duration::from_secs(60),
        || {
            let s = show();
            s.contains(&format!("neighbor {slow} AS 64600 Idle"))
                || s.contains(&format!("neighbor {slow} AS 64600 Active"))
        },
    );
    wait_for(
        "every route from the feeder",
        Duration::from_secs(60),
        || show().contains("3000 routes received"),
    );
    let s = show();
    assert!(
        s.contains(&format!("neighbor {feeder} AS 64700 Established")),
        "{s}"
    );
}
