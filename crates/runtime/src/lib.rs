//! Strata's roles on real networks: a [`Node`] driven on the wall clock over Linux
//! interfaces, each of its links an AF_PACKET or AF_XDP socket
//! ([`strata_fabric::linux`], chosen by [`open_link`]).
//!
//! ```text
//!   poll(2) on every link, until the node's next deadline
//!     ├─ each link: recv a batch ─► Node::receive
//!     ├─ Node::poll(now)
//!     └─ Node::poll_transmit ─► per link, send a batch
//! ```
//!
//! The node is the same code the lab runs in virtual time; only the clock and the links
//! differ.

#![allow(unsafe_code)]

pub mod host;
pub mod mux;
pub mod router;
pub mod signals;

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_fabric::linux::{LinuxLink, PacketLink, XdpLink};
use strata_fabric::{Batch, Link};
use strata_node::{Node, NodeConfig, NodeError};

/// Frames read from a link in one call.
const BATCH: usize = 64;
/// A receive slot: the largest frame taken, a segmentation offload's super-frame (an
/// IPv4 packet of 64 KiB behind a tagged Ethernet header), with its virtio_net_hdr. The
/// batch's memory is committed only as far as frames fill it.
const FRAME: usize = 10 + 18 + 65_535;
/// The longest the driver sleeps without looking at the node.
const IDLE: Duration = Duration::from_millis(100);
/// Batches read from one link in one round (see [`Driver::step`]).
const BATCHES_PER_STEP: usize = 4;
/// A new frame buffer's capacity: a 1,500-byte packet with its Ethernet header, and
/// room for a Mux's VXLAN encapsulation in place. Larger frames grow their buffer once.
const BUFFER: usize = 2048;
/// Spare frame buffers kept: a round's batches of four links.
const SPARE: usize = 1024;

/// Why a driver could not start.
#[derive(Debug)]
pub enum DriverError {
    Node(NodeError),
    /// The node has this many links, the driver was given that many interfaces.
    Links {
        node: usize,
        given: usize,
    },
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Node(e) => write!(f, "{e}"),
            DriverError::Links { node, given } => write!(
                f,
                "the node has {node} links, but {given} interfaces were given"
            ),
        }
    }
}

impl std::error::Error for DriverError {}

/// What a driver moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounters {
    pub received: u64,
    pub sent: u64,
    /// Frames the node sent that a link did not take (its queue was full).
    pub send_dropped: u64,
    /// Receive or send errors other than a full queue.
    pub errors: u64,
}

/// A node on the wall clock, its links on Linux interfaces.
#[derive(Debug)]
pub struct Driver {
    node: Node,
    links: Vec<LinuxLink>,
    start: Instant,
    batch: Batch,
    /// Frames the node sent, per link, until the next send.
    out: Vec<Vec<Vec<u8>>>,
    /// Frame buffers the links have sent, to carry what they receive next: in the
    /// steady state a frame costs no allocation.
    spare: Vec<Vec<u8>>,
    counters: DriverCounters,
}

impl Driver {
    /// The node of `config`, link `i` on `links[i]` (the node's links are its NICs in
    /// order, then its vSwitch's uplink and VM ports; see `Node::links`).
    pub fn new(config: NodeConfig, links: Vec<LinuxLink>) -> Result<Driver, DriverError> {
        let node = Node::new(config, Duration::ZERO).map_err(DriverError::Node)?;
        if node.links().len() != links.len() {
            return Err(DriverError::Links {
                node: node.links().len(),
                given: links.len(),
            });
        }
        let out = vec![Vec::new(); links.len()];
        Ok(Driver {
            node,
            links,
            start: Instant::now(),
            batch: Batch::new(BATCH, FRAME),
            out,
            spare: Vec::new(),
            counters: DriverCounters::default(),
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn counters(&self) -> DriverCounters {
        self.counters
    }

    /// The links, in the node's order.
    pub fn links(&self) -> &[LinuxLink] {
        &self.links
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// One round: reads what waits on every link, moves the node on, sends what it
    /// sent. Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now();
        for (i, link) in self.links.iter_mut().enumerate() {
            // A few batches per link per round, so that a link that never runs dry
            // neither starves the others nor piles frames up in the node.
            for _ in 0..BATCHES_PER_STEP {
                match link.recv(&mut self.batch) {
                    Ok(0) => break,
                    Ok(n) => {
                        moved = true;
                        self.counters.received += n as u64;
                        let spare = &mut self.spare;
                        let frames = self.batch.iter().map(|frame| {
                            let mut buffer =
                                spare.pop().unwrap_or_else(|| Vec::with_capacity(BUFFER));
                            buffer.clear();
                            buffer.extend_from_slice(frame);
                            buffer
                        });
                        self.node.receive_batch(now, i, frames);
                        if n < self.batch.capacity() {
                            break;
                        }
                    }
                    Err(e) => {
                        self.counters.errors += 1;
                        tracing::warn!(link = link.name(), "receive: {e}");
                        break;
                    }
                }
            }
        }
        self.node.poll(now);
        while let Some((i, frame)) = self.node.poll_transmit() {
            if let Some(q) = self.out.get_mut(i) {
                q.push(frame);
            }
        }
        for (link, queue) in self.links.iter_mut().zip(&mut self.out) {
            if queue.is_empty() {
                continue;
            }
            moved = true;
            match link.send(queue) {
                Ok(n) => {
                    self.counters.sent += n as u64;
                    self.counters.send_dropped += (queue.len() - n) as u64;
                }
                Err(e) => {
                    self.counters.errors += 1;
                    self.counters.send_dropped += queue.len() as u64;
                    tracing::warn!(link = link.name(), "send: {e}");
                }
            }
            let room = SPARE.saturating_sub(self.spare.len());
            self.spare.extend(queue.drain(..).take(room));
        }
        moved
    }

    /// Runs until `stop` is set: a step whenever a link has frames or the node's next
    /// deadline comes.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        self.run_with(stop, IDLE, |_| {})
    }

    /// [`Driver::run`], rewriting `status` (when given) every 200 ms with the state of
    /// the node's BGP neighbors (see [`bgp_status`]).
    pub fn run_reporting(&mut self, stop: &AtomicBool, status: Option<&Path>) -> io::Result<()> {
        match status {
            None => self.run(stop),
            Some(path) => self.run_with(stop, Duration::from_millis(200), |node| {
                if let Err(e) = write_atomically(path, &bgp_status(node)) {
                    tracing::warn!(path = %path.display(), "writing the status file: {e}");
                }
            }),
        }
    }

    /// [`Driver::run`], showing the node to `look` at most every `every` (to publish
    /// its state).
    pub fn run_with(
        &mut self,
        stop: &AtomicBool,
        every: Duration,
        mut look: impl FnMut(&Node),
    ) -> io::Result<()> {
        let mut looked: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if looked.is_none_or(|t| t.elapsed() >= every) {
                look(&self.node);
                looked = Some(Instant::now());
            }
            if self.step() {
                continue;
            }
            let now = self.now();
            let wait = self
                .node
                .poll_at(now)
                .map_or(IDLE, |at| at.saturating_sub(now).min(IDLE));
            self.wait(wait)?;
        }
        Ok(())
    }

    /// Sleeps until a link is readable or `wait` passes.
    fn wait(&self, wait: Duration) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = self
            .links
            .iter()
            .map(|l| libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: the array and its length describe live pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A role file's node token: given inline (`token`), or read from `token_file`.
pub(crate) fn node_token(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<String, String> {
    match (token, token_file) {
        (Some(t), _) => Ok(t.trim().to_string()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("token_file {}: {e}", f.display())),
        (None, None) => Err("give token or token_file".into()),
    }
}

/// Opens a link on an interface of the calling thread's namespace, as the role
/// processes do, by the backend `STRATA_LINK` names:
/// - `socket` (the default): an AF_PACKET socket read by `recvmmsg`;
/// - `ring`: the same socket read by its receive ring (less CPU per packet under load,
///   up to a millisecond more latency per hop when traffic is light; see
///   `PacketLink::open_ring`);
/// - `xdp`: an AF_XDP socket fed by an XDP program on the interface, so that the
///   kernel builds nothing for the frames it hands over (the least CPU per packet; see
///   `XdpLink` for what it leaves out), with `STRATA_XDP_FRAMES` frames each way (a
///   power of two, 2,048 by default; more absorb longer bursts, at 4 KiB each).
pub fn open_link(interface: &str) -> io::Result<LinuxLink> {
    match std::env::var("STRATA_LINK").as_deref() {
        Ok("ring") => {
            let link = PacketLink::open_ring(interface)?;
            tracing::info!(interface, "receiving by the ring");
            Ok(link.into())
        }
        Ok("xdp") => {
            let frames = match std::env::var("STRATA_XDP_FRAMES") {
                Ok(n) => n.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("STRATA_XDP_FRAMES={n}: expected a number of frames"),
                    )
                })?,
                Err(_) => strata_fabric::linux::XDP_FRAMES,
            };
            let link = XdpLink::open_with(interface, frames)?;
            tracing::info!(interface, native = link.native(), "receiving by AF_XDP");
            Ok(link.into())
        }
        Ok("socket") | Err(_) => Ok(PacketLink::open(interface)?.into()),
        Ok(other) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("STRATA_LINK={other}: expected \"socket\", \"ring\" or \"xdp\""),
        )),
    }
}

/// The state of a node's BGP neighbors, one line each: `ADDRESS STATE`, or `ADDRESS
/// bfd=BFDSTATE STATE` for a neighbor with BFD (e.g. `192.168.100.1 bfd=Up
/// Established`). Empty for a node without BGP or without neighbors yet.
pub fn bgp_status(node: &Node) -> String {
    let Some(neighbors) = node.bgp_status() else {
        return String::new();
    };
    neighbors
        .iter()
        .map(|n| match n.bfd {
            Some(bfd) => format!("{} bfd={bfd:?} {:?}\n", n.address, n.state),
            None => format!("{} {:?}\n", n.address, n.state),
        })
        .collect()
}

/// Replaces `path` with `text` so that a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use strata_node::NicConfig;
    use strata_node::apps::bgp::{BgpConfig, NeighborConfig};

    fn node(bgp: Option<BgpConfig>) -> Node {
        let config = NodeConfig {
            forwarding: true,
            bgp,
            seed: 1,
            ..NodeConfig::new(
                "r",
                vec![NicConfig {
                    name: "eth0".into(),
                    mac: strata_wire::EthernetAddress([2, 0, 0, 0, 0, 1]),
                    addr: "10.0.0.1/24".parse().unwrap_or_else(|_| unreachable!()),
                    mtu: 1500,
                    behind_switch: false,
                }],
            )
        };
        Node::new(config, Duration::ZERO).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_status_has_a_line_per_neighbor_with_its_bfd() {
        let neighbor = |last: u8, bfd| NeighborConfig {
            address: Ipv4Addr::new(10, 0, 0, last),
            asn: 64501,
            passive: true,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            bfd,
        };
        let bfd = strata_node::bgp_codec::bfd::Config::new(Duration::from_millis(100), 3);
        let n = node(Some(BgpConfig {
            asn: 64500,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            neighbors: vec![neighbor(20, Some(bfd)), neighbor(21, None)],
            networks: vec![],
            announce_vips: false,
            install_routes: true,
            added: Default::default(),
        }));
        let status = bgp_status(&n);
        let lines: Vec<&str> = status.lines().collect();
        assert_eq!(lines.len(), 2, "{status}");
        assert!(lines[0].starts_with("10.0.0.20 bfd=Down "), "{status}");
        assert!(
            lines[1].starts_with("10.0.0.21 ") && !lines[1].contains("bfd="),
            "{status}"
        );
        assert!(status.ends_with('\n'));
        assert_eq!(bgp_status(&node(None)), "", "no BGP, no lines");
    }

    #[test]
    fn a_status_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("strata-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("status");
        write_atomically(&path, "one\ntwo\n").unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&path, "three\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("three\n")
        );
        assert!(!dir.join("status.new").exists(), "no temporary file left");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
