//! The AF_PACKET backend against the Linux kernel: frames we build go out of a veth in
//! one network namespace, the kernel's own stack in the other answers (ARP, ICMP echo),
//! and the answers come back in batches. Needs root (CI runs as root); skipped without
//! it unless `STRATA_REQUIRE_NETNS` is set. The namespaces are removed however the test
//! ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use strata_fabric::linux::{LinuxLink, PacketLink, XdpLink, netns};
use strata_fabric::{Batch, Link};
use strata_testkit::netns::{Scene, allowed as netns_allowed, run};
use strata_wire::{ArpPacket, EthernetFrame, Icmpv4Packet, Ipv4Packet};

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Two namespaces joined by a veth pair; the second side has 10.77.0.2/24, ours no
/// address at all (our frames are built by hand). Removed when dropped.
struct Pair {
    a: String,
    b: String,
    _scene: Scene,
}

impl Pair {
    /// The second side knows our address, 10.77.0.1, as `OURS` (we answer no ARP).
    fn knows_us(&self) {
        run(
            "ip",
            &[
                "-n",
                &self.b,
                "neigh",
                "add",
                "10.77.0.1",
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                "vb",
            ],
        );
    }

    fn new(tag: &str) -> Option<Pair> {
        if !netns_allowed() {
            return None;
        }
        let (scene, names) = Scene::new(&[&format!("{tag}-a"), &format!("{tag}-b")]);
        let pair = Pair {
            a: names[0].clone(),
            b: names[1].clone(),
            _scene: scene,
        };
        let ip = |args: &[&str]| {
            run("ip", args);
        };
        ip(&[
            "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &pair.b,
        ]);
        ip(&["-n", &pair.b, "addr", "add", "10.77.0.2/24", "dev", "vb"]);
        ip(&["-n", &pair.a, "link", "set", "va", "up"]);
        ip(&["-n", &pair.b, "link", "set", "vb", "up"]);
        Some(pair)
    }
}

/// Runs a python script in `namespace`, which must succeed.
fn python(namespace: &str, script: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", namespace, "python3", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How our end of the pair reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// An AF_PACKET socket, by `recvmmsg`.
    Socket,
    /// An AF_PACKET socket, by its receive ring.
    Ring,
    /// An AF_XDP socket fed by an XDP program.
    Xdp,
}

/// Our end of the pair.
fn open(namespace: &str, backend: Backend) -> LinuxLink {
    netns::run_in(namespace, move || {
        Ok(match backend {
            Backend::Socket => PacketLink::open("va")?.into(),
            Backend::Ring => PacketLink::open_ring("va")?.into(),
            Backend::Xdp => XdpLink::open("va")?.into(),
        })
    })
    .unwrap()
}

/// A namespace tag per test and backend (tests run at once).
fn tag(name: &str, backend: Backend) -> String {
    match backend {
        Backend::Socket => name.to_string(),
        Backend::Ring => format!("{name}-r"),
        Backend::Xdp => format!("{name}-x"),
    }
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&[10, 77, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 77, 0, 2]);
    f
}

fn echo_request(to: [u8; 6], seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"strata fabric test");
    let c = strata_wire::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2]);
    let c = strata_wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = to.to_vec();
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// Receives until `seen` says so or two seconds pass.
fn receive_until(link: &mut LinuxLink, mut seen: impl FnMut(&[u8]) -> bool) -> bool {
    let mut batch = Batch::new(32, 2048);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        link.recv(&mut batch).unwrap();
        if batch.iter().any(&mut seen) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back() {
    the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_with(Backend::Socket);
}

/// [`the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back`], reading by the receive ring.
#[test]
fn the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_by_the_ring() {
    the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_with(Backend::Ring);
}

fn the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_with(backend: Backend) {
    let Some(pair) = Pair::new(&tag("batch", backend)) else {
        return;
    };
    let mut link = open(&pair.a, backend);
    assert_eq!(link.name(), "va");
    // The interface as the kernel numbers and addresses it.
    let shown = run("ip", &["-n", &pair.a, "-o", "link", "show", "va"]);
    let index: i32 = shown.split(':').next().unwrap().trim().parse().unwrap();
    assert_eq!(link.ifindex(), index);
    let mac = shown
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap();
    let mac: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(link.mac().unwrap().to_vec(), mac);

    // ARP: the kernel in the other namespace says where 10.77.0.2 is.
    assert_eq!(link.send(&[&arp_request()]).unwrap(), 1);
    let mut theirs = [0u8; 6];
    assert!(
        receive_until(&mut link, |f| {
            let Ok(eth) = EthernetFrame::new_checked(f) else {
                return false;
            };
            let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                return false;
            };
            let reply = arp.operation() == strata_wire::ArpOperation::Reply
                && arp.source_protocol_addr() == [10, 77, 0, 2]
                && arp.target_hardware_addr() == OURS;
            if reply {
                theirs.copy_from_slice(arp.source_hardware_addr());
                // Handed on whole and unchanged: to us, and exactly an ARP frame long.
                assert_eq!(eth.dst_addr().0, OURS);
                assert_eq!(f.len(), 42);
            }
            reply
        }),
        "the kernel answered our ARP request"
    );

    // 100 echo requests in one call (two system calls of up to 64); the kernel answers
    // every one.
    let requests: Vec<Vec<u8>> = (1..=100).map(|seq| echo_request(theirs, seq)).collect();
    let frames: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    assert_eq!(link.send(&frames).unwrap(), 100, "one call took them all");
    let mut answered = std::collections::BTreeSet::new();
    receive_until(&mut link, |f| {
        let Ok(eth) = EthernetFrame::new_checked(f) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return false;
        };
        if ip.src_addr().to_string() == "10.77.0.2" && u8::from(icmp.msg_type()) == 0 {
            assert_eq!(icmp.echo_ident(), 0x1234);
            let seq = icmp.echo_seq_no();
            assert!(answered.insert(seq), "the reply to {seq} came twice");
        }
        answered.len() == 100
    });
    assert_eq!(answered.len(), 100, "replies to {answered:?}");
    // Each frame comes once, and what we sent ourselves is not read back.
    std::thread::sleep(Duration::from_millis(20));
    let mut batch = Batch::new(8, 2048);
    for _ in 0..4 {
        link.recv(&mut batch).unwrap();
        assert!(
            batch.iter().all(|f| f[6..12] != OURS),
            "our own frames came back"
        );
        assert!(
            batch.iter().all(|f| f.len() < 34 || f[14 + 9] != 1),
            "an echo reply came again"
        );
    }
}

/// [`the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back`], by AF_XDP.
#[test]
fn the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_by_af_xdp() {
    the_kernel_answers_frames_sent_in_batches_and_its_answers_come_back_with(Backend::Xdp);
}

#[test]
fn a_frame_larger_than_a_slot_is_dropped_and_counted() {
    a_frame_larger_than_a_slot_is_dropped_and_counted_with(Backend::Socket);
}

/// [`a_frame_larger_than_a_slot_is_dropped_and_counted`], reading by the receive ring.
#[test]
fn a_frame_larger_than_a_slot_is_dropped_and_counted_by_the_ring() {
    a_frame_larger_than_a_slot_is_dropped_and_counted_with(Backend::Ring);
}

/// [`a_frame_larger_than_a_slot_is_dropped_and_counted`], by AF_XDP.
#[test]
fn a_frame_larger_than_a_slot_is_dropped_and_counted_by_af_xdp() {
    a_frame_larger_than_a_slot_is_dropped_and_counted_with(Backend::Xdp);
}

fn a_frame_larger_than_a_slot_is_dropped_and_counted_with(backend: Backend) {
    let Some(pair) = Pair::new(&tag("slot", backend)) else {
        return;
    };
    let mut link = open(&pair.a, backend);
    link.send(&[&arp_request()]).unwrap();
    // The ARP reply is 42 bytes: too long for 20-byte slots.
    let mut batch = Batch::new(4, 20);
    let deadline = Instant::now() + Duration::from_secs(2);
    while batch.truncated == 0 && Instant::now() < deadline {
        link.recv(&mut batch).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(batch.truncated >= 1);
    assert_eq!(batch.len(), 0, "no cut frame is handed on");
}

#[test]
fn opening_a_missing_interface_or_namespace_says_which() {
    let Some(pair) = Pair::new("missing") else {
        return;
    };
    let e = netns::run_in(&pair.a, || PacketLink::open("nosuch0")).unwrap_err();
    assert!(e.to_string().contains("no interface \"nosuch0\""), "{e}");
    let e = netns::run_in("strata-test-no-such-namespace", || PacketLink::open("va")).unwrap_err();
    assert!(
        e.to_string()
            .contains("network namespace \"strata-test-no-such-namespace\""),
        "{e}"
    );
}

/// A kernel on the other end of a veth leaves its TCP and UDP checksums to the "device"
/// (the veth carries the offload): the link completes them, so what it hands on checks.
#[test]
fn checksums_a_kernel_left_to_the_device_are_completed() {
    checksums_a_kernel_left_to_the_device_are_completed_with(Backend::Socket);
}

/// [`checksums_a_kernel_left_to_the_device_are_completed`], reading by the receive ring.
#[test]
fn checksums_a_kernel_left_to_the_device_are_completed_by_the_ring() {
    checksums_a_kernel_left_to_the_device_are_completed_with(Backend::Ring);
}

fn checksums_a_kernel_left_to_the_device_are_completed_with(backend: Backend) {
    let Some(pair) = Pair::new(&tag("csum", backend)) else {
        return;
    };
    let mut link = open(&pair.a, backend);
    pair.knows_us();
    python(
        &pair.b,
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x' * 300, ('10.77.0.1', 9))",
    );
    let mut checked = false;
    assert!(
        receive_until(&mut link, |f| {
            let Ok(eth) = EthernetFrame::new_checked(f) else {
                return false;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return false;
            };
            if ip.next_header() != strata_wire::IpProtocol::Udp {
                return false;
            }
            // The one's complement sum over the pseudo-header and the datagram, checksum
            // included, is all ones when the checksum is right (RFC 768, RFC 1071).
            let udp = ip.payload();
            let mut all = Vec::new();
            all.extend_from_slice(&ip.src_addr().octets());
            all.extend_from_slice(&ip.dst_addr().octets());
            all.extend_from_slice(&[0, 17]);
            all.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            all.extend_from_slice(udp);
            checked = strata_wire::checksum::checksum(&all) == 0;
            true
        }),
        "the datagram arrived"
    );
    assert!(checked, "its UDP checksum is whole");
}

/// The one's complement checksum of a TCP segment over IPv4 with its pseudo-header:
/// 0 when the segment's checksum is right.
fn tcp_check(ip: &[u8]) -> u16 {
    let header = usize::from(ip[0] & 0x0f) * 4;
    let tcp = &ip[header..];
    let mut all = ip[12..20].to_vec();
    all.extend_from_slice(&[0, 6]);
    all.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    all.extend_from_slice(tcp);
    strata_wire::checksum::checksum(&all)
}

/// Our answer to the kernel's SYN: SYN-ACK from 10.77.0.1:80, MSS 1460, window 65535
/// scaled by 2^7.
fn syn_ack(syn: &[u8]) -> Vec<u8> {
    let ip = &syn[14..];
    let tcp = &ip[usize::from(ip[0] & 0x0f) * 4..];
    let their_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let mut seg = vec![0u8; 28];
    seg[0..2].copy_from_slice(&80u16.to_be_bytes());
    seg[2..4].copy_from_slice(&tcp[0..2]);
    seg[4..8].copy_from_slice(&1000u32.to_be_bytes());
    seg[8..12].copy_from_slice(&their_seq.wrapping_add(1).to_be_bytes());
    seg[12] = 7 << 4;
    seg[13] = 0x12;
    seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
    seg[20..28].copy_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7]);
    let mut ip = vec![
        0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2,
    ];
    let c = strata_wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&seg);
    let mut all = ip[12..20].to_vec();
    all.extend_from_slice(&[0, 6, 0, 28]);
    all.extend_from_slice(&seg);
    let c = strata_wire::checksum::checksum(&all);
    ip[20 + 16..20 + 18].copy_from_slice(&c.to_be_bytes());
    let mut f = syn[6..12].to_vec();
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f
}

/// A kernel that believes its device segments (a veth offers TSO) hands the packet
/// socket TCP super-frames: the link cuts them into the segments a wire would carry,
/// whole, in order and with right checksums.
#[test]
fn tcp_super_frames_from_the_kernel_are_cut_into_segments() {
    tcp_super_frames_from_the_kernel_are_cut_into_segments_with(Backend::Socket);
}

/// [`tcp_super_frames_from_the_kernel_are_cut_into_segments`], reading by the receive ring.
#[test]
fn tcp_super_frames_from_the_kernel_are_cut_into_segments_by_the_ring() {
    tcp_super_frames_from_the_kernel_are_cut_into_segments_with(Backend::Ring);
}

fn tcp_super_frames_from_the_kernel_are_cut_into_segments_with(backend: Backend) {
    let Some(pair) = Pair::new(&tag("gso", backend)) else {
        return;
    };
    let mut link = open(&pair.a, backend);
    pair.knows_us();
    // The kernel's client connects to us and writes 40,000 bytes at once; we answer the
    // handshake and never acknowledge, so it sends its first window and waits.
    let mut client = Command::new("ip")
        .args(["netns", "exec", &pair.b, "python3", "-c"])
        .arg(
            "import socket, time\n\
             s = socket.create_connection(('10.77.0.1', 80), timeout=5)\n\
             s.sendall(bytes(range(256)) * 156 + bytes(64))\n\
             time.sleep(3)",
        )
        .spawn()
        .unwrap();
    let mut batch = Batch::new(16, 70_000);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut first_seq = None;
    let mut data: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
    while Instant::now() < deadline && data.values().map(Vec::len).sum::<usize>() < 8 * 1460 {
        link.recv(&mut batch).unwrap();
        for f in batch.iter() {
            if f.len() < 14 + 40 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 6 {
                continue;
            }
            let ip = &f[14..];
            let tcp = &ip[20..];
            let flags = tcp[13];
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            if flags & 0x02 != 0 {
                first_seq = Some(seq.wrapping_add(1));
                link.send(&[syn_ack(f)]).unwrap();
                continue;
            }
            let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
            if payload.is_empty() {
                continue;
            }
            assert!(
                f.len() <= 1514,
                "a frame of {} bytes went by uncut",
                f.len()
            );
            assert!(payload.len() <= 1460, "over the MSS: {}", payload.len());
            assert_eq!(
                strata_wire::checksum::sum(&ip[..20]),
                0xffff,
                "IPv4 checksum"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                ip.len(),
                "IPv4 total length"
            );
            assert_eq!(tcp_check(ip), 0, "TCP checksum");
            data.insert(seq, payload.to_vec());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = client.kill();
    let _ = client.wait();
    let start = first_seq.expect("the kernel's SYN arrived");
    assert!(
        batch.segmented >= 1,
        "no super-frame came (segmented {}, offloaded {})",
        batch.segmented,
        batch.offloaded
    );
    assert_eq!(batch.offloaded, 0);
    // The segments join up from the first byte, and carry what the client wrote.
    let sent: Vec<u8> = (0..=255u8).cycle().take(256 * 156).collect();
    let mut at = start;
    let mut joined = Vec::new();
    while let Some(p) = data.get(&at) {
        joined.extend_from_slice(p);
        at = at.wrapping_add(p.len() as u32);
    }
    assert!(
        joined.len() >= 8 * 1460,
        "only {} bytes in order",
        joined.len()
    );
    assert_eq!(joined[..], sent[..joined.len()]);
}

/// A super-frame of a kind the link does not cut (UDP segmentation offload, which a
/// veth also takes from its kernel) is dropped and counted, not handed on whole.
#[test]
fn a_udp_super_frame_is_dropped_and_counted() {
    let Some(pair) = Pair::new("ugso") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Socket);
    pair.knows_us();
    // UDP_SEGMENT (103): the kernel sends 4,000 bytes as one super-frame of 1,000-byte
    // datagrams, and one plain datagram after it.
    python(
        &pair.b,
        "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_UDP, 103, 1000)\n\
             s.sendto(b'x' * 4000, ('10.77.0.1', 9))\n\
             p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             p.sendto(b'plain', ('10.77.0.1', 9))",
    );
    let mut batch = Batch::new(8, 70_000);
    let mut lengths = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !lengths.contains(&(14 + 28 + 5)) && Instant::now() < deadline {
        link.recv(&mut batch).unwrap();
        lengths.extend(
            batch
                .iter()
                .filter(|f| f.len() > 14 + 9 && f[12..14] == [0x08, 0x00] && f[14 + 9] == 17)
                .map(<[u8]>::len),
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        lengths.contains(&(14 + 28 + 5)),
        "the plain datagram came: {lengths:?}"
    );
    assert_eq!(batch.offloaded, 1, "the super-frame was counted");
    assert!(
        lengths.iter().all(|&l| l <= 1514),
        "a super-frame was handed on: {lengths:?}"
    );
}

/// A burst larger than one block of the ring (128 KiB) crosses from block to block:
/// every datagram arrives once, in order (a full block is handed over at once, a
/// partly filled one after its timeout).
#[test]
fn a_burst_across_the_rings_blocks_arrives_once_and_in_order() {
    let Some(pair) = Pair::new("burst") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Ring);
    pair.knows_us();
    python(
        &pair.b,
        "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(300):\n    \
                 s.sendto(i.to_bytes(4, 'big') + bytes(1000), ('10.77.0.1', 9))",
    );
    let mut batch = Batch::new(64, 2048);
    // The burst's datagrams in a batch (the kernel also sends IPv6 router
    // solicitations and MLD reports of its own on the new link, at any moment).
    let burst = |batch: &Batch| -> Vec<u32> {
        batch
            .iter()
            .filter(|f| f.len() == 14 + 28 + 1004 && f[14 + 9] == 17)
            .map(|f| u32::from_be_bytes([f[42], f[43], f[44], f[45]]))
            .collect()
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.len() < 300 && Instant::now() < deadline {
        link.recv(&mut batch).unwrap();
        seen.extend(burst(&batch));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(seen, (0..300).collect::<Vec<u32>>());
    // Nothing more: no block is read twice.
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..4 {
        link.recv(&mut batch).unwrap();
        assert_eq!(burst(&batch), Vec::<u32>::new(), "a block was read twice");
    }
}

/// The XDP backend's program runs in the veth's driver while the link is open, one
/// program to an interface; closing the link (or its process ending) takes it away, and
/// the kernel has its frames again.
#[test]
fn an_xdp_link_owns_its_interface_while_it_is_open() {
    let Some(pair) = Pair::new("xdp-own") else {
        return;
    };
    let link = netns::run_in(&pair.a, || XdpLink::open("va")).unwrap();
    assert!(link.native(), "a veth runs XDP in its driver");
    let shown = run("ip", &["-n", &pair.a, "link", "show", "va"]);
    assert!(
        shown.contains("prog/xdp") && !shown.contains("xdpgeneric"),
        "{shown}"
    );
    let e = netns::run_in(&pair.a, || XdpLink::open("va")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy, "{e}");
    assert!(
        e.to_string().contains("va has an AF_XDP socket already"),
        "{e}"
    );
    let e = netns::run_in(&pair.a, || XdpLink::open("nosuch0")).unwrap_err();
    assert!(e.to_string().contains("no interface \"nosuch0\""), "{e}");
    assert_eq!(link.statistics().unwrap(), Default::default());
    drop(link);
    let shown = run("ip", &["-n", &pair.a, "link", "show", "va"]);
    assert!(!shown.contains("prog/xdp"), "{shown}");
    // The kernel's own stack on our side sees frames again: it answers a ping.
    run(
        "ip",
        &["-n", &pair.a, "addr", "add", "10.77.0.1/24", "dev", "va"],
    );
    run(
        "ip",
        &[
            "netns",
            "exec",
            &pair.b,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.77.0.1",
        ],
    );
}

/// More frames than the fill ring has chunks, in bursts the link reads as they come:
/// every chunk goes back to the kernel, so none is lost to a ring left empty, and the
/// sending side reuses the chunks the kernel has finished with.
#[test]
fn an_xdp_link_recycles_its_chunks() {
    let Some(pair) = Pair::new("xdp-chunks") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Xdp);
    pair.knows_us();
    let mut batch = Batch::new(64, 2048);
    let mut replies = 0;
    let theirs = {
        assert_eq!(link.send(&[&arp_request()]).unwrap(), 1);
        let mut mac = [0u8; 6];
        assert!(receive_until(&mut link, |f| {
            let found = f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[21] == 2;
            if found {
                mac.copy_from_slice(&f[22..28]);
            }
            found
        }));
        mac
    };
    // 5,000 echo requests, 50 at a time: 2.5 times the receiving chunks, and as many
    // sending chunks.
    for round in 0..100u16 {
        let requests: Vec<Vec<u8>> = (0..50)
            .map(|i| echo_request(theirs, round * 50 + i))
            .collect();
        assert_eq!(link.send(&requests).unwrap(), 50, "round {round}");
        // Each request was sent from a chunk of its own: the replies answer 50
        // different sequence numbers, those of the round.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = std::collections::BTreeSet::new();
        while got.len() < 50 && Instant::now() < deadline {
            link.recv(&mut batch).unwrap();
            got.extend(
                batch
                    .iter()
                    .filter(|f| f.len() >= 42 && f[14 + 9] == 1 && f[34] == 0)
                    .map(|f| u16::from_be_bytes([f[40], f[41]])),
            );
        }
        let want: std::collections::BTreeSet<u16> = (round * 50..round * 50 + 50).collect();
        assert_eq!(got, want, "round {round}");
        replies += got.len();
    }
    assert_eq!(replies, 5000);
    let LinuxLink::Xdp(link) = link else {
        unreachable!()
    };
    assert_eq!(
        link.statistics().unwrap(),
        Default::default(),
        "nothing dropped"
    );
}

/// A program the verifier refuses: the error says which and carries the verifier's
/// reason (here, a return value never set).
#[test]
fn a_program_the_verifier_refuses_says_why() {
    if !netns_allowed() {
        return;
    }
    let exit = [strata_fabric::linux::bpf::insn(0x95, 0, 0, 0, 0)];
    let e = strata_fabric::linux::bpf::load_xdp(&exit, "strata_bad").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("loading XDP program strata_bad"), "{text}");
    assert!(text.contains("R0 !read_ok"), "{text}");
}

/// The kernel's live frames: a program run 200 times over one frame redirects each
/// copy out of our veth, and the other side (which takes XDP frames: GRO on) receives
/// all 200, unchanged.
#[test]
fn live_frames_redirected_by_a_program_arrive_whole() {
    use strata_fabric::linux::bpf::{self, insn};
    let Some(pair) = Pair::new("live") else {
        return;
    };
    run(
        "ip",
        &["netns", "exec", &pair.b, "ethtool", "-K", "vb", "gro", "on"],
    );
    // Read by the ring: a burst of 200 would overflow a socket's receive buffer.
    let mut theirs = netns::run_in(&pair.b, || PacketLink::open_ring("vb"))
        .map(LinuxLink::from)
        .unwrap();
    let mut frame = echo_request(theirs.mac().unwrap(), 7);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x09]);
    let ours = run("ip", &["-n", &pair.a, "-o", "link", "show", "va"]);
    let index: i32 = ours.split(':').next().unwrap().trim().parse().unwrap();
    let program = [
        insn(0xb7, 1, 0, 0, index),
        insn(0xb7, 2, 0, 0, 0),
        insn(0x85, 0, 0, 0, bpf::FUNC_REDIRECT),
        insn(0x95, 0, 0, 0, 0),
    ];
    let sent = frame.clone();
    netns::run_in(&pair.a, move || {
        let program = bpf::load_xdp(&program, "strata_live")?;
        bpf::run_live(&program, &sent, 200)
    })
    .unwrap();
    let mut got = 0;
    receive_until(&mut theirs, |f| {
        if f[6..12] == [0x02, 0, 0, 0, 0, 0x09] {
            assert_eq!(f, &frame[..]);
            got += 1;
        }
        got == 200
    });
    assert_eq!(got, 200);
}

/// An interface whose driver has no XDP of its own (a namespace's loopback) gets the
/// program on the kernel's socket buffers (generic XDP), and the link says so.
#[test]
fn an_xdp_link_on_a_driver_without_xdp_runs_generic() {
    let Some(pair) = Pair::new("xdp-generic") else {
        return;
    };
    run("ip", &["-n", &pair.a, "link", "set", "lo", "up"]);
    let link = netns::run_in(&pair.a, || XdpLink::open("lo")).unwrap();
    assert!(!link.native());
    let shown = run("ip", &["-n", &pair.a, "link", "show", "lo"]);
    assert!(shown.contains("xdpgeneric"), "{shown}");
}

/// Another XDP program on the interface (here one that passes everything, attached
/// by hand) keeps the link from attaching its own: it says so, and leaves that one be.
#[test]
fn an_xdp_link_does_not_displace_another_program() {
    use strata_fabric::linux::bpf::{self, insn};
    let Some(pair) = Pair::new("xdp-other") else {
        return;
    };
    let index = pair_index(&pair.a);
    let other = netns::run_in(&pair.a, move || {
        let pass = [insn(0xb7, 0, 0, 0, bpf::XDP_PASS), insn(0x95, 0, 0, 0, 0)];
        let program = bpf::load_xdp(&pass, "strata_pass")?;
        let attached = bpf::attach_xdp(&program, index, bpf::XDP_FLAGS_DRV_MODE)?;
        Ok((program, attached))
    })
    .unwrap();
    let e = netns::run_in(&pair.a, || XdpLink::open("va")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy, "{e}");
    assert!(
        e.to_string().contains("va has an XDP program already"),
        "{e}"
    );
    let shown = run("ip", &["-n", &pair.a, "link", "show", "va"]);
    assert!(shown.contains("name strata_pass"), "{shown}");
    drop(other);
}

/// The index of `va` in `namespace`, as `ip` numbers it.
fn pair_index(namespace: &str) -> i32 {
    let shown = run("ip", &["-n", namespace, "-o", "link", "show", "va"]);
    shown.split(':').next().unwrap().trim().parse().unwrap()
}

/// A veth whose peer's MTU is too large for XDP in its driver (without multi-buffer
/// support) gets the program on socket buffers instead.
#[test]
fn an_xdp_link_falls_back_to_generic_when_the_driver_refuses() {
    let Some(pair) = Pair::new("xdp-mtu") else {
        return;
    };
    run("ip", &["-n", &pair.b, "link", "set", "vb", "mtu", "9000"]);
    let link = netns::run_in(&pair.a, || XdpLink::open("va")).unwrap();
    assert!(!link.native());
    let shown = run("ip", &["-n", &pair.a, "link", "show", "va"]);
    assert!(shown.contains("xdpgeneric"), "{shown}");
}

/// The link's descriptor is what `poll(2)` waits on: not readable while nothing has
/// come, readable once a frame has.
#[test]
#[allow(unsafe_code)]
fn an_xdp_link_is_readable_when_a_frame_waits() {
    use std::os::fd::AsRawFd;
    let Some(pair) = Pair::new("xdp-poll") else {
        return;
    };
    // The peer's kernel stays quiet unless asked: no IPv6 neighbour discovery or MLD
    // reports of its own.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &pair.b,
            "sysctl",
            "-qw",
            "net.ipv6.conf.vb.disable_ipv6=1",
        ],
    );
    let mut link = open(&pair.a, Backend::Xdp);
    let mut batch = Batch::new(8, 2048);
    while link.recv(&mut batch).unwrap() > 0 {}
    let readable = |link: &LinuxLink, ms: i32| {
        let mut fd = libc::pollfd {
            fd: link.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, its count given.
        let n = unsafe { libc::poll(&raw mut fd, 1, ms) };
        n == 1 && fd.revents & libc::POLLIN != 0
    };
    assert!(!readable(&link, 50), "readable with nothing received");
    assert_eq!(link.send(&[&arp_request()]).unwrap(), 1);
    assert!(
        readable(&link, 2000),
        "the ARP reply never made it readable"
    );
    assert!(link.recv(&mut batch).unwrap() >= 1);
}

/// A frame fills at most a chunk (2 KiB): one that long is taken, a longer one is not
/// (and what follows it waits for the next send).
#[test]
fn an_xdp_link_sends_frames_up_to_a_chunk() {
    let Some(pair) = Pair::new("xdp-chunk") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Xdp);
    let mut whole = arp_request();
    whole.resize(2048, 0);
    let mut longer = whole.clone();
    longer.push(0);
    assert_eq!(link.send(&[&whole]).unwrap(), 1);
    assert_eq!(link.send(&[&longer, &whole]).unwrap(), 0);
    assert_eq!(link.send(&[&whole, &longer, &whole]).unwrap(), 1);
}

/// A send of more frames than the kernel takes a call (32, in copy mode) sends them
/// all, without another send to push the rest: 1,000 echo requests leave at once.
#[test]
fn an_xdp_link_sends_a_large_batch_whole() {
    let Some(pair) = Pair::new("xdp-large") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Xdp);
    let mut theirs = netns::run_in(&pair.b, || PacketLink::open_ring("vb"))
        .map(LinuxLink::from)
        .unwrap();
    let requests: Vec<Vec<u8>> = (0..1000)
        .map(|seq| echo_request(theirs.mac().unwrap(), seq))
        .collect();
    assert_eq!(link.send(&requests).unwrap(), 1000);
    let mut seqs = std::collections::BTreeSet::new();
    receive_until(&mut theirs, |f| {
        if f[6..12] == OURS && f.len() >= 42 && f[34] == 8 {
            seqs.insert(u16::from_be_bytes([f[40], f[41]]));
        }
        seqs.len() == 1000
    });
    assert_eq!(seqs.len(), 1000);
}

/// Frames the link does not read in time are dropped by the kernel, and counted: with
/// 64 chunks to receive into, a burst of 300 loses some, and the statistics say how.
#[test]
fn an_xdp_link_counts_what_it_could_not_take() {
    let Some(pair) = Pair::new("xdp-full") else {
        return;
    };
    let mut link = netns::run_in(&pair.a, || XdpLink::open_with("va", 64)).unwrap();
    pair.knows_us();
    python(
        &pair.b,
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(300): s.sendto(b'x', ('10.77.0.1', 9))",
    );
    std::thread::sleep(Duration::from_millis(50));
    let stats = link.statistics().unwrap();
    assert!(stats.rx_dropped > 0, "{stats:?}");
    // Chunks ran out (the RX ring has an entry for each, so it is never full first).
    assert_eq!(stats.rx_dropped, stats.rx_fill_ring_empty, "{stats:?}");
    assert_eq!(stats.rx_ring_full, 0, "{stats:?}");
    // What did arrive is there to read, no more than the chunks.
    let mut batch = Batch::new(64, 2048);
    let mut read = 0;
    while link.recv(&mut batch).unwrap() > 0 {
        read += batch.len();
    }
    assert!((1..=64).contains(&read), "{read}");
    // (The peer's kernel may have sent a frame of its own, IPv6 neighbour discovery.)
    assert!(read as u64 + stats.rx_dropped >= 300, "{stats:?} {read}");
}

/// Sending on an interface that is down is an error the caller sees (the kernel's own).
#[test]
fn an_xdp_link_says_when_its_interface_is_down() {
    let Some(pair) = Pair::new("xdp-down") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Xdp);
    run("ip", &["-n", &pair.a, "link", "set", "va", "down"]);
    let e = link.send(&[&arp_request()]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NetworkDown, "{e}");
}

/// A frame the device drops (its peer is down: no carrier) is taken and lost, as on a
/// wire; the link goes on.
#[test]
fn an_xdp_link_without_carrier_drops_what_it_sends() {
    let Some(pair) = Pair::new("xdp-carrier") else {
        return;
    };
    let mut link = open(&pair.a, Backend::Xdp);
    run("ip", &["-n", &pair.b, "link", "set", "vb", "down"]);
    assert_eq!(link.send(&[&arp_request(), &arp_request()]).unwrap(), 2);
    run("ip", &["-n", &pair.b, "link", "set", "vb", "up"]);
    // Once the peer is back, what is sent arrives and is answered.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(link.send(&[&arp_request()]).unwrap(), 1);
    assert!(receive_until(&mut link, |f| f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[21] == 2));
}
