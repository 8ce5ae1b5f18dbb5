//! A packet sender for benchmarks: pre-built UDP frames over a `PacketLink`, 64 per
//! `sendmmsg`, for a number of seconds, spread over many flows (source ports).
//!
//! ```text
//! blast INTERFACE DST_MAC SRC_IP DST_IP:PORT SECONDS FLOWS [PPS]
//! ```
//!
//! With PPS, it paces itself to that rate (in batches of 64); without, it sends flat out.
//!
//! Prints what it sent and the rate. Run it in the sender's namespace (`ip netns exec`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use strata_fabric::Link;
use strata_fabric::linux::PacketLink;

/// One frame: Ethernet, IPv4, UDP and 18 bytes of payload (60 bytes, the minimum).
fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: SocketAddrV4,
    sport: u16,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total: u16 = 20 + 8 + 18;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(8u16 + 18).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(&[0x5a; 18]);
    f
}

fn mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, rate) = match args.as_slice() {
        [rest @ .., rate] if args.len() == 7 => (rest, rate.parse::<f64>()?),
        _ => (args.as_slice(), 0.0),
    };
    let [interface, dst_mac, src, dst, seconds, flows] = args else {
        return Err("usage: blast INTERFACE DST_MAC SRC_IP DST_IP:PORT SECONDS FLOWS [PPS]".into());
    };
    let mut link = PacketLink::open(interface)?;
    let dst_mac = mac(dst_mac).ok_or("DST_MAC: expected aa:bb:cc:dd:ee:ff")?;
    let src: Ipv4Addr = src.parse()?;
    let dst: SocketAddrV4 = dst.parse()?;
    let seconds: f64 = seconds.parse()?;
    let flows: u16 = flows.parse()?;
    let own = link.mac()?;
    let frames: Vec<Vec<u8>> = (0..flows.max(1))
        .map(|i| frame(own, dst_mac, src, dst, 10_000u16.wrapping_add(i)))
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let (mut sent, mut full) = (0u64, 0u64);
    let mut at = 0;
    let mut batches = 0u64;
    while Instant::now() < until {
        if rate > 0.0 {
            // Batch k leaves at k * 64 / rate seconds.
            let due = start + Duration::from_secs_f64(batches as f64 * 64.0 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        for _ in 0..(if rate > 0.0 { 1 } else { 64 }) {
            batches += 1;
            let end = (at + 64).min(refs.len());
            let n = link.send(&refs[at..end])?;
            sent += n as u64;
            if n < end - at {
                full += 1;
            }
            at = if end == refs.len() { 0 } else { end };
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} frames in {took:.2} s: {:.0} pps ({full} sends found the queue full)",
        sent as f64 / took
    );
    Ok(())
}
