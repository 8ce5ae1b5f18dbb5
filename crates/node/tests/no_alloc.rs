//! A Mux node's per-packet path allocates nothing: frames for a VIP enter by
//! `Node::receive_batch` in buffers their owner recycles, are encapsulated in place,
//! routed and taken out by `Node::poll_transmit`, as the runtime's driver does. Counted
//! by the testkit's allocator, which counts this thread's allocations.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::{Dip, MuxConfig, VipConfig, VipKey};
use strata_node::{MuxRole, NicConfig, Node, NodeConfig};
use strata_testkit::allocations;
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

#[global_allocator]
static ALLOCATOR: strata_testkit::Counting = strata_testkit::Counting;

const IN_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const OUT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const HOST_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 100);
const HOST_PA: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);

/// The benchmark's Mux: senders on NIC 0, the host's provider network on NIC 1, VIP
/// UDP port 9 over four DIPs on one host.
fn mux_node() -> Node {
    let nic = |name: &str, mac, addr: &str| NicConfig {
        name: name.into(),
        mac,
        addr: addr.parse().unwrap(),
        mtu: 1500,
        behind_switch: false,
    };
    let vip = VipConfig {
        key: VipKey {
            vip: VIP,
            proto: 17,
            port: 9,
        },
        dips: (1..=4)
            .map(|i| Dip {
                addr: Ipv4Addr::new(10, 3, 0, i),
                port: 9,
                host_pa: HOST_PA,
                mac: EthernetAddress([0x00, 0x15, 0x5d, 0x03, 0x00, i]),
                weight: 1,
            })
            .collect(),
        distribution: Distribution::FiveTuple,
        vni: Vni::new(4096).unwrap(),
    };
    let config = NodeConfig {
        mux: Some(MuxRole {
            config: MuxConfig::new("10.2.0.1".parse().unwrap(), OUT_MAC),
            vips: vec![vip],
        }),
        forwarding: true,
        seed: 1,
        ..NodeConfig::new(
            "mux",
            vec![
                nic("in0", IN_MAC, "10.1.0.1/24"),
                nic("out0", OUT_MAC, "10.2.0.1/24"),
            ],
        )
    };
    Node::new(config, Duration::ZERO).unwrap()
}

/// A 60-byte UDP frame from 10.1.0.(2 + flow / 1000) port 1024 + flow % 1000 to VIP:9.
fn datagram(flow: u16) -> Vec<u8> {
    // Every other flow sends 1,400-byte packets: the largest grow in place too.
    let ip_len: u16 = if flow % 2 == 1 { 1400 } else { 46 };
    let mut f = vec![0u8; 14 + usize::from(ip_len)];
    f[0..6].copy_from_slice(&IN_MAC.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 1, 0, 2 + (flow / 1000) as u8]);
    ip[16..20].copy_from_slice(&VIP.octets());
    let c = strata_wire::checksum::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&(1024 + flow % 1000).to_be_bytes());
    ip[22..24].copy_from_slice(&9u16.to_be_bytes());
    ip[24..26].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// The host's ARP reply to the Mux's request for its provider address.
fn arp_reply() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&OUT_MAC.0);
    f[6..12].copy_from_slice(&HOST_MAC.0);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let arp = &mut f[14..];
    arp[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    arp[8..14].copy_from_slice(&HOST_MAC.0);
    arp[14..18].copy_from_slice(&HOST_PA.octets());
    arp[18..24].copy_from_slice(&OUT_MAC.0);
    arp[24..28].copy_from_slice(&[10, 2, 0, 1]);
    f
}

#[test]
fn a_mux_node_forwards_frames_in_recycled_buffers_without_allocating() {
    let now = Duration::from_secs(1);
    let mut node = mux_node();
    let frames: Vec<Vec<u8>> = (0..2000).map(datagram).collect();

    // The first frame waits for ARP; the reply lets it out, encapsulated to the host.
    node.receive(now, 0, frames[0].clone());
    let (link, request) = node.poll_transmit().unwrap();
    assert_eq!((link, &request[12..14]), (1, &[0x08, 0x06][..]));
    node.receive(now, 1, arp_reply());
    let (link, out) = node.poll_transmit().unwrap();
    assert_eq!(link, 1);
    assert_eq!(&out[0..6], &HOST_MAC.0, "to the host's MAC");
    assert_eq!(
        &out[30..34],
        &HOST_PA.octets(),
        "outer destination: the host's PA"
    );
    assert_eq!(&out[36..38], &4789u16.to_be_bytes(), "VXLAN");
    assert_eq!(
        out.len(),
        14 + 50 + 46,
        "the inner packet whole, after 50 bytes of headers"
    );
    assert_eq!(
        &out[64 + 16..64 + 20],
        &VIP.octets(),
        "the inner packet, to the VIP"
    );

    // Every frame through once (each flow's first packet: Maglev, the flow table), then
    // again and again, as a driver would: a buffer from the pool in, the frame out back
    // into the pool.
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let round = |node: &mut Node, pool: &mut Vec<Vec<u8>>| {
        for chunk in frames.chunks(64) {
            let buffers = chunk.iter().map(|frame| {
                let mut buffer = pool.pop().unwrap_or_else(|| Vec::with_capacity(2048));
                buffer.clear();
                buffer.extend_from_slice(frame);
                buffer
            });
            node.receive_batch(now, 0, buffers);
            node.poll(now);
            let mut sent = 0;
            while let Some((link, frame)) = node.poll_transmit() {
                assert_eq!(link, 1);
                pool.push(frame);
                sent += 1;
            }
            assert_eq!(sent, chunk.len(), "every frame went out");
        }
    };
    round(&mut node, &mut pool);
    let before = allocations();
    for _ in 0..5 {
        round(&mut node, &mut pool);
    }
    assert_eq!(allocations() - before, 0, "10,000 frames allocated");
    assert_eq!(node.mux().unwrap().counters().encapsulated, 12_001);
    // The encapsulation grew each frame inside the buffer it came in.
    assert!(
        pool.iter().all(|b| b.capacity() <= 2048),
        "a buffer grew past 2,048 bytes"
    );
}
