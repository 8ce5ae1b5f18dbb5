//! A bgperf-style benchmark: N IPv4 prefixes from one peer, through the device under
//! test, to another peer; the time from the first UPDATE sent to the last prefix
//! received, and the memory of the device. The same run measures `strata bgp run` and
//! BIRD 2 side by side, on loopback addresses.
//!
//! ```text
//!   tester (AS 65001) ──N prefixes──► DUT (AS 65000) ──N prefixes──► monitor (AS 65002)
//!   127.X.9.2                          127.X.9.1                      127.X.9.3
//! ```
//!
//! `cargo bench -p strata --bench bgperf` runs N = 100,000 and N = 1,000,000; give sizes
//! as arguments to choose (`-- 100000`), and `--strata-only` to leave BIRD out. The
//! tester and the monitor are this program, with Strata's codec; they send UPDATEs of
//! 1,000 /24s each (4,096 bytes hold about that many), prepared before the clock starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use strata_bgp::codec::{
    self, AsPath, Attribute, Capability, Message, Open, Options, Origin, SAFI_UNICAST, Update,
};

const DUT_AS: u32 = 65000;
const TESTER_AS: u32 = 65001;
const MONITOR_AS: u32 = 65002;
const PER_UPDATE: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strata_only = args.iter().any(|a| a == "--strata-only");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    let bird = !strata_only && Command::new("bird").arg("--version").output().is_ok();
    if !bird && !strata_only {
        eprintln!("bird not installed: measuring strata alone");
    }
    let x = (std::process::id() % 200) as u8 + 20;
    let dut = Ipv4Addr::new(127, x, 9, 1);
    let tester = Ipv4Addr::new(127, x, 9, 2);
    let monitor = Ipv4Addr::new(127, x, 9, 3);
    let dir = std::env::temp_dir().join(format!("strata-bgperf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!(
        "{:>9}  {:<7} {:>12} {:>14} {:>12} {:>15}",
        "prefixes", "DUT", "converged", "prefixes/s", "RSS after", "RSS per route"
    );
    for &n in &sizes {
        let updates = encode_updates(n, tester);
        let mut duts = vec![Dut::Strata];
        if bird {
            duts.push(Dut::Bird);
        }
        for &which in &duts {
            let name = which.name();
            let mut child = DutGuard(which.start(&dir, dut, tester, monitor));
            let result = measure(&updates, n, dut, tester, monitor, child.0.id());
            let _ = child.0.kill();
            let _ = child.0.wait();
            let r = match result {
                Ok(r) => r,
                Err(e) => {
                    println!("{n:>9}  {name:<7} failed: {e}");
                    continue;
                }
            };
            let rate = n as f64 / r.converged.as_secs_f64();
            println!(
                "{n:>9}  {name:<7} {:>10.2} s {:>14.0} {:>9.1} MiB {:>11.0} B",
                r.converged.as_secs_f64(),
                rate,
                r.rss_after as f64 / 1048576.0,
                r.rss_after.saturating_sub(r.rss_before) as f64 / n as f64,
            );
            // The DUT's port must be free for the next one.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Debug, Clone, Copy)]
enum Dut {
    Strata,
    Bird,
}

impl Dut {
    fn name(self) -> &'static str {
        match self {
            Dut::Strata => "strata",
            Dut::Bird => "bird",
        }
    }

    fn start(self, dir: &Path, dut: Ipv4Addr, tester: Ipv4Addr, monitor: Ipv4Addr) -> Child {
        match self {
            Dut::Strata => start_strata(dir, dut, tester, monitor),
            Dut::Bird => start_bird(dir, dut, tester, monitor),
        }
    }
}

/// Kills the DUT if a measurement panics.
struct DutGuard(Child);

impl Drop for DutGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Measured {
    converged: Duration,
    rss_before: u64,
    rss_after: u64,
}

fn measure(
    updates: &[u8],
    n: usize,
    dut: Ipv4Addr,
    tester: Ipv4Addr,
    monitor: Ipv4Addr,
    pid: u32,
) -> Result<Measured, String> {
    let mut to_monitor = establish(monitor, dut, MONITOR_AS)?;
    let mut from_tester = establish(tester, dut, TESTER_AS)?;
    // Let the DUT send its End-of-RIBs and settle.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss(pid);
    let start = Instant::now();
    let sender = {
        let updates = updates.to_vec();
        std::thread::spawn(move || from_tester.write_all(&updates).map(|()| from_tester))
    };
    let seen = count_prefixes(&mut to_monitor, n, Duration::from_secs(600))?;
    let converged = start.elapsed();
    let rss_after = rss(pid);
    let _tester = sender.join().map_err(|_| "sender panicked")?;
    if seen < n {
        return Err(format!("{seen} of {n} prefixes arrived"));
    }
    Ok(Measured {
        converged,
        rss_before,
        rss_after,
    })
}

/// The N prefixes as UPDATEs of [`PER_UPDATE`] /24s each, encoded.
fn encode_updates(n: usize, next_hop: Ipv4Addr) -> Vec<u8> {
    let prefixes: Vec<Ipv4Net> = (0..n as u32)
        .map(|i| Ipv4Net::new(Ipv4Addr::from((1 << 24) + (i << 8)), 24).unwrap())
        .collect();
    let mut out = Vec::new();
    for chunk in prefixes.chunks(PER_UPDATE) {
        let update = Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![TESTER_AS])),
                Attribute::NextHop(next_hop),
            ],
            nlri: chunk.to_vec(),
            ..Update::default()
        };
        codec::encode(&Message::Update(update), options(), &mut out).unwrap();
    }
    out
}

fn options() -> Options {
    Options {
        four_octet_as: true,
        external: false,
    }
}

/// Connects to the DUT from `local` and brings a session up (hold time 0: no
/// keepalives to keep while measuring).
fn establish(local: Ipv4Addr, dut: Ipv4Addr, asn: u32) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| e.to_string())?;
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())
            .map_err(|e| e.to_string())?;
        match socket.connect(&SocketAddr::V4(SocketAddrV4::new(dut, 179)).into()) {
            Ok(()) => break TcpStream::from(socket),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("connecting to the DUT: {e}")),
        }
    };
    let open = Open {
        version: 4,
        my_as: asn as u16,
        hold_time: 0,
        bgp_id: local,
        capabilities: vec![
            Capability::Multiprotocol {
                afi: codec::afi::IPV4,
                safi: SAFI_UNICAST,
            },
            Capability::FourOctetAs(asn),
        ],
    };
    let mut out = Vec::new();
    codec::encode(&Message::Open(open), options(), &mut out).unwrap();
    codec::encode(&Message::Keepalive, options(), &mut out).unwrap();
    stream.write_all(&out).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut rx = Vec::new();
    let mut got_keepalive = false;
    while !got_keepalive {
        match next_message(&mut stream, &mut rx)? {
            Message::Keepalive => got_keepalive = true,
            Message::Notification(n) => return Err(format!("the DUT sent {n}")),
            _ => {}
        }
    }
    Ok(stream)
}

fn next_message(stream: &mut TcpStream, rx: &mut Vec<u8>) -> Result<Message, String> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if let Some(m) = codec::take_message(rx, options()) {
            return m.map_err(|e| format!("{e:?}"));
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the DUT closed the connection".into());
        }
        rx.extend_from_slice(&buf[..n]);
    }
}

/// Reads UPDATEs until `n` distinct prefixes of the test have arrived.
fn count_prefixes(stream: &mut TcpStream, n: usize, limit: Duration) -> Result<usize, String> {
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let mut seen = vec![false; n];
    let mut count = 0;
    let mut rx = Vec::new();
    while count < n {
        let Message::Update(u) = next_message(stream, &mut rx)? else {
            continue;
        };
        let mp = u.attributes.iter().flat_map(|a| match a {
            Attribute::MpReach(m) => m.nlri.clone(),
            _ => Vec::new(),
        });
        for p in u.nlri.iter().map(|p| IpNet::V4(*p)).chain(mp) {
            let IpNet::V4(p) = p else { continue };
            let i = (u32::from(p.addr()).wrapping_sub(1 << 24) >> 8) as usize;
            if p.prefix_len() == 24 && i < n && !seen[i] {
                seen[i] = true;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// The resident set size of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn start_strata(dir: &Path, dut: Ipv4Addr, tester: Ipv4Addr, monitor: Ipv4Addr) -> Child {
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = {DUT_AS}\nrouter_id = \"{dut}\"\nlocal = \"{dut}\"\n\
             [[neighbor]]\naddress = \"{tester}\"\nasn = {TESTER_AS}\npassive = true\n\
             [[neighbor]]\naddress = \"{monitor}\"\nasn = {MONITOR_AS}\npassive = true\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bgp", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn start_bird(dir: &Path, dut: Ipv4Addr, tester: Ipv4Addr, monitor: Ipv4Addr) -> Child {
    let config = dir.join("bird.conf");
    let peer = |name: &str, address: Ipv4Addr, asn: u32| {
        format!(
            "protocol bgp {name} {{\n  local {dut} as {DUT_AS};\n  neighbor {address} as {asn};\n  \
             passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import all; export all; }};\n}}\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "router id {dut};\nprotocol device {{}}\n{}{}",
            peer("tester", tester, TESTER_AS),
            peer("monitor", monitor, MONITOR_AS)
        ),
    )
    .unwrap();
    let ctl: PathBuf = dir.join("bird.ctl");
    Command::new("bird")
        .arg("-f")
        .arg("-c")
        .arg(&config)
        .arg("-s")
        .arg(&ctl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
