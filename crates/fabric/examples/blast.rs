//! A packet sender for benchmarks: pre-built UDP frames over a `PacketLink`, 64 per
//! `sendmmsg`, for a number of seconds, spread over many flows (source ports).
//!
//! ```text
//! blast [--xdp] INTERFACE DST_MAC SRC_IP DST_IP:PORT SECONDS FLOWS [PPS]
//! ```
//!
//! With PPS, it paces itself to that rate (in batches of 64); without, it sends flat out.
//!
//! With `--xdp`, the kernel sends instead, as a NIC would hand frames over: an XDP
//! program run on one frame again and again (`BPF_PROG_TEST_RUN` with live frames)
//! gives each a random flow's source port and redirects it out of INTERFACE (flat out:
//! no PPS), so the
//! frames reach the other end as XDP frames, no socket buffer built and none to free
//! on the receiving CPU. The other end must take XDP frames: a veth whose peer has an
//! XDP program or GRO on. (What the other end could not take is not counted: count at
//! the receiver.)
//!
//! Prints what it sent and the rate. Run it in the sender's namespace (`ip netns exec`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use strata_fabric::Link;
use strata_fabric::linux::{PacketLink, bpf};

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

/// The XDP generator's program: a random source port among `flows` from 10,000 up,
/// then out of the interface `ifindex`.
fn generator(ifindex: i32, flows: u16) -> [bpf::Insn; 15] {
    use bpf::insn;
    [
        insn(0xbf, 6, 1, 0, 0),                         // r6 = ctx
        insn(0x85, 0, 0, 0, bpf::FUNC_GET_PRANDOM_U32), // r0 = random
        insn(0x97, 0, 0, 0, i32::from(flows.max(1))),   // r0 %= flows
        insn(0x07, 0, 0, 0, 10_000),                    // r0 += 10000
        insn(0xdc, 0, 0, 0, 16),                        // r0 = htons(r0)
        insn(0x61, 2, 6, 0, 0),                         // r2 = ctx->data
        insn(0x61, 3, 6, 4, 0),                         // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),                         // r4 = r2
        insn(0x07, 4, 0, 0, 36),                        // r4 += 36
        insn(0x2d, 4, 3, 1, 0),                         // if r4 > r3 skip the store
        insn(0x6b, 2, 0, 34, 0),                        // UDP source port = r0
        insn(0xb7, 1, 0, 0, ifindex),                   // r1 = ifindex
        insn(0xb7, 2, 0, 0, 0),                         // r2 = 0
        insn(0x85, 0, 0, 0, bpf::FUNC_REDIRECT),        // bpf_redirect(r1, r2)
        insn(0x95, 0, 0, 0, 0),                         // return it
    ]
}

/// Frames per run of the generator. Each run also costs the kernel some 25 ms of
/// setting up and tearing down besides the frames (seen on this project's machines),
/// which the sender's CPU spends waiting: long runs keep that small (a run of 2^20
/// frames lasts about a quarter of a second here).
const RUN: u32 = 1 << 20;

/// `--xdp`: runs the generator for `seconds` (rounded up to whole runs); returns how
/// many frames it made.
fn generate(
    interface: &str,
    frame: &[u8],
    flows: u16,
    seconds: f64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let ifindex = netns_index(interface)?;
    let program = bpf::load_xdp(&generator(ifindex, flows), "strata_blast")?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut made = 0u64;
    while Instant::now() < until {
        bpf::run_live(&program, frame, RUN)?;
        made += u64::from(RUN);
    }
    Ok(made)
}

/// The index of `interface` in this namespace.
fn netns_index(interface: &str) -> Result<i32, Box<dyn std::error::Error>> {
    let path = format!("/sys/class/net/{interface}/ifindex");
    Ok(std::fs::read_to_string(&path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .parse()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let xdp = args.first().is_some_and(|a| a == "--xdp");
    if xdp {
        args.remove(0);
    }
    let (args, rate) = match args.as_slice() {
        [rest @ .., rate] if args.len() == 7 => (rest, rate.parse::<f64>()?),
        _ => (args.as_slice(), 0.0),
    };
    let [interface, dst_mac, src, dst, seconds, flows] = args else {
        return Err(
            "usage: blast [--xdp] INTERFACE DST_MAC SRC_IP DST_IP:PORT SECONDS FLOWS [PPS]".into(),
        );
    };
    let mut link = PacketLink::open(interface)?;
    let dst_mac = mac(dst_mac).ok_or("DST_MAC: expected aa:bb:cc:dd:ee:ff")?;
    let src: Ipv4Addr = src.parse()?;
    let dst: SocketAddrV4 = dst.parse()?;
    let seconds: f64 = seconds.parse()?;
    let flows: u16 = flows.parse()?;
    let own = link.mac()?;
    if xdp {
        if rate > 0.0 {
            return Err(
                "--xdp sends flat out: no PPS (the kernel's generator runs cannot be paced finely)"
                    .into(),
            );
        }
        let start = Instant::now();
        let made = generate(
            interface,
            &frame(own, dst_mac, src, dst, 10_000),
            flows,
            seconds,
        )?;
        let took = start.elapsed().as_secs_f64();
        println!(
            "made {made} frames by XDP in {took:.2} s: {:.0} pps",
            made as f64 / took
        );
        return Ok(());
    }
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
