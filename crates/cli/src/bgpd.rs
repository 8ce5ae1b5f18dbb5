//! `strata bgp`: the BGP speaker on real TCP, outside the lab.
//!
//! A tokio driver of [`strata_bgp::speaker::Speaker`], which does all of BGP (sessions,
//! collisions, RIBs, what to send whom). The driver only moves bytes: one task accepts
//! connections, each connection has a task reading it and a task writing it, and the
//! speaker runs on the main task, woken by what the connections read, by a finished
//! connect, or by its own timers. Routes announced come from the configuration file;
//! routes learned from one neighbor are passed on to the others. The state of every
//! neighbor and its routes is written to a status file, which `strata bgp show` prints.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::IgnoredAny;
use strata_bgp::bfd::Change;
use strata_bgp::codec;
use strata_bgp::rib::Path as RoutePath;
use strata_bgp::session::Config;
use strata_bgp::speaker::{ConnId, Output, PeerConfig, PeerId, Source, Speaker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use toml::Spanned;

use crate::tcp_md5;

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BgpdConfig {
    pub(crate) asn: u32,
    pub(crate) router_id: Ipv4Addr,
    /// The address to listen on and connect from.
    pub(crate) local: IpAddr,
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    /// Where the state of the neighbors and their routes is written (at most five
    /// times a second; the routes only while there are at most [`STATUS_ROUTES`]).
    #[serde(default)]
    pub(crate) status_file: Option<PathBuf>,
    /// A Unix socket `strata bgp show` asks the running speaker on (as `birdc` does).
    #[serde(default)]
    pub(crate) control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://ADDRESS/metrics` (e.g. `127.0.0.1:9179`).
    #[serde(default)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// The next hop of the IPv6 routes passed on; by default the IPv4-mapped form of
    /// `local`.
    #[serde(default)]
    pub(crate) next_hop6: Option<Ipv6Addr>,
    /// Announce graceful restart (RFC 4724) with this restart time, in seconds: a
    /// neighbor keeps our routes that long when we go away without a NOTIFICATION (a
    /// crash, a restart). Neighbors' restarts are honoured either way.
    #[serde(default)]
    pub(crate) graceful_restart: Option<u16>,
    /// Bytes that may wait to be sent to one neighbor; a neighbor that falls further
    /// behind (it stopped reading) loses its connection rather than our memory.
    #[serde(default = "default_send_queue_limit")]
    pub(crate) send_queue_limit: usize,
    /// The UDP port BFD listens on (3784, RFC 5881; another only for tests).
    #[serde(default = "default_bfd_port")]
    pub(crate) bfd_port: u16,
    #[serde(default)]
    pub(crate) neighbor: Vec<NeighborDef>,
    #[serde(default)]
    pub(crate) announce: Vec<AnnounceDef>,
}

fn default_send_queue_limit() -> usize {
    64 << 20
}

fn default_port() -> u16 {
    179
}

fn default_bfd_port() -> u16 {
    strata_bgp::bfd::PORT
}

fn default_bfd_interval() -> u32 {
    300
}

fn default_bfd_multiplier() -> u8 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NeighborDef {
    pub(crate) address: IpAddr,
    pub(crate) asn: u32,
    #[serde(default)]
    pub(crate) passive: bool,
    #[serde(default = "default_hold")]
    pub(crate) hold_time: u16,
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    /// TCP MD5 signature key (RFC 2385) for the connection to this neighbor.
    #[serde(default)]
    pub(crate) password: Option<String>,
    /// The next hop of the IPv4 routes passed on to this neighbor; by default `local`.
    #[serde(default)]
    pub(crate) next_hop: Option<Ipv4Addr>,
    /// Offer IPv6 unicast routes too (multiprotocol, RFC 4760).
    #[serde(default)]
    pub(crate) ipv6: bool,
    /// Run BFD with the neighbor (RFC 5880, single hop): the session drops as soon as
    /// BFD declares it down.
    #[serde(default)]
    pub(crate) bfd: bool,
    /// BFD transmit and receive interval, in milliseconds.
    #[serde(default = "default_bfd_interval")]
    pub(crate) bfd_interval: u32,
    /// BFD packets missed before the neighbor is declared down.
    #[serde(default = "default_bfd_multiplier")]
    pub(crate) bfd_multiplier: u8,
}

impl NeighborDef {
    fn bfd_config(&self) -> strata_bgp::bfd::Config {
        strata_bgp::bfd::Config::new(
            Duration::from_millis(u64::from(self.bfd_interval)),
            self.bfd_multiplier,
        )
    }
}

fn default_hold() -> u16 {
    90
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnnounceDef {
    #[serde(deserialize_with = "prefix")]
    pub(crate) prefix: IpNet,
    pub(crate) next_hop: IpAddr,
}

/// A prefix, `address/length`, with an error that says which part is wrong.
fn prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    let (address, length) = text
        .split_once('/')
        .ok_or_else(|| D::Error::custom(format!("{text:?} is not a prefix (address/length)")))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| D::Error::custom(format!("{address:?} is not an IP address")))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let length: u8 = length.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
        D::Error::custom(format!(
            "prefix length {length:?} is not 0 to {max} (an IPv{} prefix)",
            if address.is_ipv4() { 4 } else { 6 }
        ))
    })?;
    IpNet::new(address, length).map_err(D::Error::custom)
}

/// Where each value the rules check sits in the file (read alongside the
/// configuration, so an error can name its line).
#[derive(Debug, Default, Deserialize)]
struct Spans {
    asn: Option<Spanned<IgnoredAny>>,
    router_id: Option<Spanned<IgnoredAny>>,
    graceful_restart: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    neighbor: Vec<NeighborSpans>,
    #[serde(default)]
    announce: Vec<AnnounceSpans>,
}

#[derive(Debug, Default, Deserialize)]
struct NeighborSpans {
    address: Option<Spanned<IgnoredAny>>,
    asn: Option<Spanned<IgnoredAny>>,
    hold_time: Option<Spanned<IgnoredAny>>,
    password: Option<Spanned<IgnoredAny>>,
    bfd_interval: Option<Spanned<IgnoredAny>>,
    bfd_multiplier: Option<Spanned<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
struct AnnounceSpans {
    prefix: Option<Spanned<IgnoredAny>>,
    next_hop: Option<Spanned<IgnoredAny>>,
}

/// Reads and checks a configuration file. Every error names the file, the line, and
/// the rule broken; all the rules broken are listed, one a line.
pub(crate) fn load(path: &Path) -> anyhow::Result<BgpdConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line =
        |at: Option<usize>| at.map_or(0, |at| text[..at.min(text.len())].matches('\n').count() + 1);
    let config: BgpdConfig = toml::from_str(&text).map_err(|e| {
        let at = line(e.span().map(|s| s.start));
        anyhow::anyhow!("{}:{at}: {}", path.display(), e.message().trim_end())
    })?;
    let spans: Spans = toml::from_str(&text).unwrap_or_default();
    let at = |span: &Option<Spanned<IgnoredAny>>| line(span.as_ref().map(|s| s.span().start));
    let fail = |at: usize, rule: String| format!("{}:{at}: {rule}", path.display());
    let problems: Vec<String> = check(&config)
        .into_iter()
        .map(|problem| {
            let (span, rule) = match problem {
                Problem::Global(field, rule) => (
                    match field {
                        "asn" => at(&spans.asn),
                        "router_id" => at(&spans.router_id),
                        _ => at(&spans.graceful_restart),
                    },
                    rule,
                ),
                Problem::Neighbor(i, field, rule) => {
                    let n = spans.neighbor.get(i);
                    let span = n.map_or(0, |n| match field {
                        "asn" => at(&n.asn),
                        "hold_time" => at(&n.hold_time),
                        "password" => at(&n.password),
                        "bfd_interval" => at(&n.bfd_interval),
                        "bfd_multiplier" => at(&n.bfd_multiplier),
                        _ => at(&n.address),
                    });
                    (span, rule)
                }
                Problem::Announce(i, field, rule) => {
                    let a = spans.announce.get(i);
                    let span = a.map_or(0, |a| match field {
                        "next_hop" => at(&a.next_hop),
                        _ => at(&a.prefix),
                    });
                    (span, rule)
                }
            };
            fail(span, rule)
        })
        .collect();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    Ok(config)
}

/// A rule a configuration breaks: which value, and what the rule is.
#[derive(Debug)]
enum Problem {
    Global(&'static str, String),
    Neighbor(usize, &'static str, String),
    Announce(usize, &'static str, String),
}

/// The rules beyond the file's syntax, in the order of the file.
fn check(c: &BgpdConfig) -> Vec<Problem> {
    use Problem::*;
    let mut problems = Vec::new();
    if c.asn == 0 {
        problems.push(Global("asn", "asn 0 is reserved (RFC 7607)".into()));
    }
    if c.asn == u32::from(codec::AS_TRANS) {
        problems.push(Global(
            "asn",
            "asn 23456 is AS_TRANS, not a speaker's AS (RFC 6793)".into(),
        ));
    }
    let id = c.router_id;
    if id.is_unspecified() || id.is_multicast() || id.is_broadcast() {
        problems.push(Global(
            "router_id",
            format!("router_id {id} is not a unicast address (RFC 4271 4.2)"),
        ));
    }
    if c.graceful_restart.is_some_and(|t| t > 4095) {
        problems.push(Global(
            "graceful_restart",
            "graceful_restart is at most 4095 seconds (a 12-bit field, RFC 4724)".into(),
        ));
    }
    for (i, n) in c.neighbor.iter().enumerate() {
        let who = n.address;
        if let Some(first) = c.neighbor[..i].iter().position(|m| m.address == who) {
            problems.push(Neighbor(
                i,
                "address",
                format!(
                    "neighbor {who} is configured twice (also neighbor {})",
                    first + 1
                ),
            ));
        }
        if who == c.local && n.port == c.port {
            problems.push(Neighbor(
                i,
                "address",
                format!("neighbor {who} is our own address and port (local, port)"),
            ));
        }
        if who.is_ipv4() != c.local.is_ipv4() {
            problems.push(Neighbor(
                i,
                "address",
                format!(
                    "neighbor {who} is not of the family of local {} (one transport per speaker)",
                    c.local
                ),
            ));
        }
        if n.asn == 0 {
            problems.push(Neighbor(
                i,
                "asn",
                format!("neighbor {who}: asn 0 is reserved (RFC 7607)"),
            ));
        }
        if n.hold_time != 0 && n.hold_time < 3 {
            problems.push(Neighbor(
                i,
                "hold_time",
                format!("neighbor {who}: hold_time must be 0 or at least 3 (RFC 4271 4.2)"),
            ));
        }
        if n.bfd && !(10..=60_000).contains(&n.bfd_interval) {
            problems.push(Neighbor(
                i,
                "bfd_interval",
                format!("neighbor {who}: bfd_interval is 10 to 60000 milliseconds"),
            ));
        }
        if n.bfd && n.bfd_multiplier == 0 {
            problems.push(Neighbor(
                i,
                "bfd_multiplier",
                format!("neighbor {who}: bfd_multiplier is 1 to 255"),
            ));
        }
        if let Some(p) = &n.password
            && (p.is_empty() || p.len() > tcp_md5::MAX_KEY_LEN)
        {
            problems.push(Neighbor(
                i,
                "password",
                format!(
                    "neighbor {who}: password must be 1 to {} bytes (TCP MD5 key)",
                    tcp_md5::MAX_KEY_LEN
                ),
            ));
        }
    }
    for (i, a) in c.announce.iter().enumerate() {
        if a.prefix.addr().is_ipv4() != a.next_hop.is_ipv4() {
            problems.push(Announce(
                i,
                "next_hop",
                format!(
                    "announce {}: next hop {} is of the other address family",
                    a.prefix, a.next_hop
                ),
            ));
        }
    }
    problems
}

/// Runs the speaker until `until`, or until SIGTERM or SIGINT; either way the sessions
/// are closed with a Cease (administrative shutdown, with a shutdown communication)
/// first. On SIGHUP the configuration file `path` is read again and applied: neighbors
/// and announcements added and removed ([`Driver::reload`]).
pub(crate) fn run(path: &Path, config: BgpdConfig, until: Option<Instant>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Driver::new(path, config)?.serve(until))
}

/// What the connection tasks tell the speaker's task.
enum Event {
    /// A connect the speaker asked for finished.
    Connected(PeerId, Option<TcpStream>),
    Read(ConnId, Vec<u8>),
    Closed(ConnId),
    /// A request on the control socket, and where the answer goes.
    Control(Request, tokio::net::UnixStream),
    /// A scrape of the metrics.
    Metrics(tokio::sync::oneshot::Sender<String>),
}

/// What `strata bgp show` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Neighbors and every route.
    Show,
    /// Neighbors and route counts.
    Summary,
    /// Neighbors and every route, as JSON.
    Json,
}

impl Request {
    fn as_str(self) -> &'static str {
        match self {
            Request::Show => "show",
            Request::Summary => "summary",
            Request::Json => "json",
        }
    }
}

/// The status file lists the routes only up to this many (it is rewritten whole).
pub(crate) const STATUS_ROUTES: usize = 10_000;

/// A connection's tasks, from the speaker's side.
struct Link {
    /// Bytes to write; dropping it makes the writer finish what it has and shut down.
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    /// Bytes handed to the writer and not yet taken by the socket.
    unsent: Arc<AtomicUsize>,
}

struct Driver {
    path: PathBuf,
    config: BgpdConfig,
    /// Every neighbor the speaker was given, by [`PeerId`]: those removed by a reload
    /// stay, as the speaker keeps their ids.
    neighbors: Vec<NeighborDef>,
    speaker: Speaker,
    start: Instant,
    links: HashMap<ConnId, Link>,
    /// Bounded: a neighbor that sends faster than the speaker takes its routes in waits
    /// (TCP pushes back on it) instead of queueing in our memory.
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    /// BFD sessions, when a neighbor asks for BFD.
    bfd: Option<crate::bfdd::Bfd>,
    /// Whether anything happened since the status file was written.
    dirty: bool,
    last_status: Option<Instant>,
}

/// Reads (of up to 64 KiB each) and other events waiting for the speaker's task.
const EVENTS_QUEUED: usize = 64;

/// The status file is written at most this often.
const STATUS_EVERY: Duration = Duration::from_millis(200);

impl Driver {
    fn new(path: &Path, config: BgpdConfig) -> anyhow::Result<Driver> {
        let peers = config
            .neighbor
            .iter()
            .map(|n| peer_config(&config, n))
            .collect();
        let mut speaker = Speaker::new(config.asn, next_hop6(&config), peers);
        speaker.set_own_addresses(vec![config.local]);
        announce(&mut speaker, &config.announce, Duration::ZERO);
        let (events_tx, events) = mpsc::channel(EVENTS_QUEUED);
        Ok(Driver {
            path: path.to_path_buf(),
            neighbors: config.neighbor.clone(),
            bfd: None,
            config,
            speaker,
            start: Instant::now(),
            links: HashMap::new(),
            events_tx,
            events,
            dirty: true,
            last_status: None,
        })
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn serve(mut self, until: Option<Instant>) -> anyhow::Result<()> {
        let listener = self.listen()?;
        let control = match &self.config.control_socket {
            Some(path) => {
                // A socket left by a speaker that did not exit cleanly.
                let _ = std::fs::remove_file(path);
                Some(
                    tokio::net::UnixListener::bind(path)
                        .with_context(|| format!("control socket {}", path.display()))?,
                )
            }
            None => None,
        };
        if let Some(address) = self.config.metrics_listen {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics on {address}"))?;
            tracing::info!(%address, "serving metrics at /metrics");
            let events = self.events_tx.clone();
            tokio::spawn(serve_metrics(listener, events));
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let until = until.map(tokio::time::Instant::from_std);
        if self.config.neighbor.iter().any(|n| n.bfd) {
            self.bfd = Some(
                crate::bfdd::Bfd::bind(self.config.local, self.config.bfd_port).with_context(
                    || format!("BFD on {}:{}", self.config.local, self.config.bfd_port),
                )?,
            );
        }
        let now = self.now();
        for (i, n) in self.neighbors.iter().enumerate() {
            if n.bfd
                && let Some(bfd) = self.bfd.as_mut()
            {
                bfd.add(PeerId(i), n.address, n.bfd_config(), now)?;
            }
        }
        self.speaker.start(self.now());
        loop {
            self.run_bfd();
            self.carry_out();
            self.write_status(false)?;
            let wake = [
                self.speaker.poll_at().map(|t| self.start + t),
                self.bfd
                    .as_ref()
                    .and_then(crate::bfdd::Bfd::poll_at)
                    .map(|t| self.start + t),
                self.dirty.then(|| {
                    self.last_status
                        .map_or(Instant::now(), |t| t + STATUS_EVERY)
                }),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, from)) = accepted {
                        self.accept(stream, from);
                    }
                }
                Some(event) = self.events.recv() => self.handle(event),
                Ok(()) = bfd_readable(self.bfd.as_ref()) => {
                    let now = self.now();
                    if let Some(bfd) = self.bfd.as_mut() {
                        bfd.receive(now);
                    }
                }
                Ok((stream, _)) = accept_control(control.as_ref()) => {
                    let events = self.events_tx.clone();
                    tokio::spawn(read_request(stream, events));
                }
                () = sleep_until(wake) => self.speaker.poll(self.now()),
                () = sleep_until(until) => break,
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => self.reload(&listener),
            }
            self.dirty = true;
        }
        self.speaker.stop(self.now(), "strata bgp is shutting down");
        self.carry_out();
        // Let the writers send the NOTIFICATIONs before the process goes.
        let writers: Vec<Link> = self.links.drain().map(|(_, l)| l).collect();
        drop(writers);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(path) = &self.config.control_socket {
            let _ = std::fs::remove_file(path);
        }
        self.write_status(true)
    }

    /// The listening socket, with the TCP MD5 keys of the neighbors that have one.
    fn listen(&self) -> anyhow::Result<TcpListener> {
        let c = &self.config;
        let socket = match c.local {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        for n in &c.neighbor {
            if let Some(key) = &n.password {
                tcp_md5::set_key(&socket, n.address, key.as_bytes())
                    .with_context(|| format!("TCP MD5 key for neighbor {}", n.address))?;
            }
        }
        let at = SocketAddr::new(c.local, c.port);
        socket
            .bind(at)
            .with_context(|| format!("listening on {at}"))?;
        Ok(socket.listen(64)?)
    }

    /// Reads the configuration file again and applies it: announcements added and
    /// withdrawn; neighbors added (and started), removed (told so with a Cease and a
    /// shutdown communication, RFC 8203), or, when their settings changed, removed and
    /// added again. A file that does not load changes nothing (and says why). The
    /// speaker's own settings (asn, router_id, local, port) are read at start only.
    fn reload(&mut self, listener: &TcpListener) {
        let config = match load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload: {e:#}; keeping the running configuration");
                return;
            }
        };
        let now = self.now();
        let live = |speaker: &Speaker, address: IpAddr| speaker.peer_by_address(address);
        for old in &self.config.neighbor {
            let kept = config.neighbor.iter().any(|n| n == old);
            if let (false, Some(peer)) = (kept, live(&self.speaker, old.address)) {
                let why = if config.neighbor.iter().any(|n| n.address == old.address) {
                    "neighbor settings changed; reconnecting"
                } else {
                    "neighbor removed from the configuration"
                };
                tracing::info!(neighbor = %old.address, "reload: {why}");
                self.speaker.remove_peer(peer, why, now);
                if let Some(bfd) = self.bfd.as_mut() {
                    bfd.remove(peer, now);
                }
            }
        }
        for n in &config.neighbor {
            if live(&self.speaker, n.address).is_some() {
                continue;
            }
            if let Some(key) = &n.password
                && let Err(e) = tcp_md5::set_key(listener, n.address, key.as_bytes())
            {
                tracing::error!(neighbor = %n.address, "reload: TCP MD5 key: {e}");
            }
            tracing::info!(neighbor = %n.address, "reload: neighbor added");
            let id = self.speaker.add_peer(peer_config(&self.config, n), now);
            debug_assert_eq!(id.0, self.neighbors.len());
            if n.bfd {
                match self.bfd.as_mut() {
                    Some(bfd) => {
                        if let Err(e) = bfd.add(id, n.address, n.bfd_config(), now) {
                            tracing::error!(neighbor = %n.address, "reload: BFD: {e}");
                        }
                    }
                    None => tracing::error!(
                        neighbor = %n.address,
                        "reload: BFD needs a restart (no neighbor had it at start)"
                    ),
                }
            }
            self.neighbors.push(n.clone());
        }
        for old in &self.config.announce {
            if !config
                .announce
                .iter()
                .any(|a| a.prefix.trunc() == old.prefix.trunc())
            {
                self.speaker.withdraw(old.prefix, now);
            }
        }
        let changed: Vec<AnnounceDef> =
            config
                .announce
                .iter()
                .filter(|a| {
                    !self.config.announce.iter().any(|old| {
                        old.prefix.trunc() == a.prefix.trunc() && old.next_hop == a.next_hop
                    })
                })
                .cloned()
                .collect();
        announce(&mut self.speaker, &changed, now);
        tracing::info!(
            "reload: {} neighbors, {} prefixes announced",
            config.neighbor.len(),
            config.announce.len()
        );
        self.config.announce = config.announce;
        self.config.neighbor = config.neighbor;
    }

    /// Runs BFD's timers and sends its packets; a session BFD declares down ends at once
    /// (RFC 5882), one the peer set AdminDown does not.
    fn run_bfd(&mut self) {
        let now = self.now();
        let Some(bfd) = self.bfd.as_mut() else {
            return;
        };
        for (peer, address, change) in bfd.run(now) {
            match change {
                Change::Up => tracing::info!(neighbor = %address, "BFD session up"),
                Change::PeerAdminDown => {
                    tracing::info!(neighbor = %address, "BFD session AdminDown by the neighbor");
                }
                Change::Down(diag) => {
                    tracing::warn!(neighbor = %address, "BFD session down: {diag}");
                    self.speaker.bfd_down(peer, now);
                }
            }
        }
    }

    fn accept(&mut self, stream: TcpStream, from: SocketAddr) {
        let now = self.now();
        let Some(peer) = self.speaker.peer_by_address(from.ip()) else {
            return;
        };
        if let Some(conn) = self.speaker.connected(peer, false, now) {
            self.link(conn, stream);
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Connected(peer, Some(stream)) => {
                if let Some(conn) = self.speaker.connected(peer, true, now) {
                    self.link(conn, stream);
                }
            }
            Event::Connected(peer, None) => self.speaker.connect_failed(peer, now),
            Event::Read(conn, bytes) => self.speaker.received(conn, &bytes, now),
            Event::Closed(conn) => {
                self.links.remove(&conn);
                self.speaker.closed(conn, now);
            }
            Event::Metrics(answer) => {
                let _ = answer.send(metrics(&self.speaker, self.bfd.as_ref(), now));
            }
            Event::Control(request, mut stream) => {
                let text = match request {
                    Request::Json => format!(
                        "{:#}\n",
                        status_json(&self.config, &self.speaker, self.bfd.as_ref(), now)
                    ),
                    _ => status(
                        &self.config,
                        &self.speaker,
                        self.bfd.as_ref(),
                        request == Request::Show,
                        now,
                    ),
                };
                tokio::spawn(async move {
                    let _ = stream.write_all(text.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
    }

    /// Does what the speaker asks.
    fn carry_out(&mut self) {
        while let Some(output) = self.speaker.poll_output() {
            match output {
                Output::Connect(peer) => {
                    let def = self.neighbors[peer.0].clone();
                    let local = self.config.local;
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        let stream = connect(local, &def).await.ok();
                        let _ = events.send(Event::Connected(peer, stream)).await;
                    });
                }
                Output::Send(conn, bytes) => {
                    let Some(link) = self.links.get(&conn) else {
                        continue;
                    };
                    let unsent = link.unsent.fetch_add(bytes.len(), Ordering::Relaxed);
                    if unsent + bytes.len() <= self.config.send_queue_limit {
                        let _ = link.tx.send(bytes);
                        continue;
                    }
                    // The neighbor stopped reading: drop the connection (a NOTIFICATION
                    // would only queue behind what it is not reading).
                    if let Some(link) = self.links.remove(&conn) {
                        link.reader.abort();
                        link.writer.abort();
                    }
                    tracing::warn!(
                        "connection {conn:?}: over {} bytes unsent, dropped",
                        self.config.send_queue_limit
                    );
                    self.speaker.closed(conn, self.start.elapsed());
                }
                Output::Close(conn) => {
                    if let Some(link) = self.links.remove(&conn) {
                        link.reader.abort();
                    }
                }
                Output::Established(peer) => {
                    tracing::info!(neighbor = %self.neighbors[peer.0].address, "session up");
                }
                Output::Down(peer, reason) => {
                    tracing::warn!(
                        neighbor = %self.neighbors[peer.0].address,
                        "session down: {reason}"
                    );
                }
            }
        }
    }

    /// Starts the tasks that read and write a connection.
    fn link(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let events = self.events_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let read = Event::Read(conn, buf[..n].to_vec());
                        if events.send(read).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(Event::Closed(conn)).await;
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let unsent = Arc::new(AtomicUsize::new(0));
        let sent = Arc::clone(&unsent);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
                sent.fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            let _ = write.shutdown().await;
        });
        self.links.insert(
            conn,
            Link {
                tx,
                reader,
                writer,
                unsent,
            },
        );
    }

    /// Writes the status file if something happened and it was not written lately (or
    /// now, if `force`).
    fn write_status(&mut self, force: bool) -> anyhow::Result<()> {
        let Some(file) = &self.config.status_file else {
            return Ok(());
        };
        let due = self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
        if !(force || (self.dirty && due)) {
            return Ok(());
        }
        let routes = self
            .speaker
            .peers()
            .map(|p| p.received.len() + p.sent.len())
            .sum::<usize>();
        let text = status(
            &self.config,
            &self.speaker,
            self.bfd.as_ref(),
            routes <= STATUS_ROUTES,
            self.now(),
        );
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
        self.dirty = false;
        self.last_status = Some(Instant::now());
        Ok(())
    }
}

/// The speaker's view of a neighbor of the file.
fn peer_config(config: &BgpdConfig, n: &NeighborDef) -> PeerConfig {
    let mut session = Config::new(config.asn, config.router_id, n.asn);
    session.passive = n.passive;
    session.hold_time = n.hold_time;
    session.connect_retry = Duration::from_secs(5);
    session.graceful_restart = config.graceful_restart;
    if n.ipv6 {
        session
            .families
            .push((codec::afi::IPV6, codec::SAFI_UNICAST));
    }
    PeerConfig {
        address: n.address,
        // Over an IPv6 session, IPv4 routes need an IPv4 next hop: the neighbor's
        // `next_hop`, else the router ID.
        local_address: n.next_hop.unwrap_or(match config.local {
            IpAddr::V4(local) => local,
            IpAddr::V6(_) => config.router_id,
        }),
        session,
    }
}

/// The next hop of the IPv6 routes passed on: as configured, else our IPv6 address if the
/// sessions run over IPv6 (else the speaker uses the IPv4-mapped form of our address).
fn next_hop6(config: &BgpdConfig) -> Option<Ipv6Addr> {
    config.next_hop6.or(match config.local {
        IpAddr::V6(local) => Some(local),
        IpAddr::V4(_) => None,
    })
}

/// Announces prefixes, one path per next hop.
fn announce(speaker: &mut Speaker, announce: &[AnnounceDef], now: Duration) {
    let mut by_hop: HashMap<IpAddr, Vec<IpNet>> = HashMap::new();
    for a in announce {
        by_hop.entry(a.next_hop).or_default().push(a.prefix);
    }
    for (hop, prefixes) in by_hop {
        speaker.announce_all(&prefixes, hop, now);
    }
}

/// The next connection on the control socket, if there is one.
async fn accept_control(
    listener: Option<&tokio::net::UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Reads a control request (one line) and hands it to the speaker's task; a client that
/// sends nothing useful within a second is dropped.
async fn read_request(mut stream: tokio::net::UnixStream, events: mpsc::Sender<Event>) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), async {
        while line.len() < 64 && stream.read(&mut byte).await.ok()? == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        Some(())
    })
    .await;
    let request = match (read, line.as_slice()) {
        (Ok(Some(())), b"show") => Request::Show,
        (Ok(Some(())), b"summary") => Request::Summary,
        (Ok(Some(())), b"json") => Request::Json,
        _ => {
            let _ = stream
                .write_all(b"error: ask show, summary or json\n")
                .await;
            return;
        }
    };
    let _ = events.send(Event::Control(request, stream)).await;
}

/// Serves `GET /metrics`, each scrape asked of the speaker's task.
async fn serve_metrics(listener: TcpListener, events: mpsc::Sender<Event>) {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let events = events.clone();
            async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if events.send(Event::Metrics(tx)).await.is_err() {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::CONTENT_TYPE, "text/plain")],
                        String::new(),
                    );
                }
                match rx.await {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            strata_controller::metrics::CONTENT_TYPE,
                        )],
                        text,
                    ),
                    Err(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::CONTENT_TYPE, "text/plain")],
                        String::new(),
                    ),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

/// The speaker's metrics: per neighbor, session state, uptime, messages and prefixes
/// in and out, and BFD.
fn metrics(speaker: &Speaker, bfd: Option<&crate::bfdd::Bfd>, now: Duration) -> String {
    use strata_controller::metrics::{counter, exposition, gauge, labels};
    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    let r = &mut registry;
    let up = gauge(
        r,
        "bgp_session_established",
        "1 if the session with the neighbor is Established",
    );
    let uptime = gauge(
        r,
        "bgp_session_uptime_seconds",
        "Seconds since the session became Established",
    );
    let msgs_in = counter(
        r,
        "bgp_messages_received",
        "BGP messages read from the neighbor",
    );
    let msgs_out = counter(
        r,
        "bgp_messages_sent",
        "BGP messages written to the neighbor",
    );
    let prefixes_in = gauge(
        r,
        "bgp_prefixes_received",
        "Prefixes received from the neighbor",
    );
    let prefixes_out = gauge(
        r,
        "bgp_prefixes_advertised",
        "Prefixes advertised to the neighbor",
    );
    let bfd_up = gauge(
        r,
        "bfd_session_up",
        "1 if the BFD session with the neighbor is Up",
    );
    let loc_rib = gauge(r, "bgp_loc_rib_prefixes", "Prefixes with a best path");
    for p in speaker.peers() {
        let address = p.config.address.to_string();
        let asn = p.config.session.peer_as.to_string();
        let l = labels(&[("role", "bgp"), ("neighbor", &address), ("peer_as", &asn)]);
        up.get_or_create(&l).set(i64::from(
            p.state == strata_bgp::session::State::Established,
        ));
        uptime
            .get_or_create(&l)
            .set(p.established_at.map_or(0, |t| {
                i64::try_from(now.saturating_sub(t).as_secs()).unwrap_or(i64::MAX)
            }));
        msgs_in.get_or_create(&l).inc_by(p.messages_in);
        msgs_out.get_or_create(&l).inc_by(p.messages_out);
        prefixes_in
            .get_or_create(&l)
            .set(i64::try_from(p.received.len()).unwrap_or(i64::MAX));
        prefixes_out
            .get_or_create(&l)
            .set(i64::try_from(p.sent.len()).unwrap_or(i64::MAX));
        if let Some(state) = bfd.and_then(|b| b.state(p.id)) {
            bfd_up
                .get_or_create(&l)
                .set(i64::from(state == strata_bgp::bfd::State::Up));
        }
    }
    loc_rib
        .get_or_create(&labels(&[("role", "bgp")]))
        .set(i64::try_from(speaker.loc_rib().count()).unwrap_or(i64::MAX));
    exposition(&registry)
}

/// Asks a running speaker over its control socket (`strata bgp show`).
pub(crate) fn ask(socket: &Path, request: Request) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is the speaker running?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(stream, "{}", request.as_str())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

async fn bfd_readable(bfd: Option<&crate::bfdd::Bfd>) -> std::io::Result<()> {
    match bfd {
        Some(b) => b.readable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Opens a connection to a neighbor from our address, signed if it has a password.
async fn connect(local: IpAddr, neighbor: &NeighborDef) -> std::io::Result<TcpStream> {
    let socket = match local {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    if let Some(key) = &neighbor.password {
        tcp_md5::set_key(&socket, neighbor.address, key.as_bytes())?;
    }
    let to = SocketAddr::new(neighbor.address, neighbor.port);
    tokio::time::timeout(Duration::from_secs(3), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// `h:mm:ss` since `since`.
fn uptime(now: Duration, since: Duration) -> String {
    let s = now.saturating_sub(since).as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// What a session's OPENs came to, in words.
fn capabilities(n: &strata_bgp::session::Negotiated) -> Vec<String> {
    let mut caps = Vec::new();
    if n.options.four_octet_as {
        caps.push("4-octet AS".to_string());
    }
    if n.route_refresh {
        caps.push("route refresh".to_string());
    }
    if let Some(g) = &n.peer_graceful_restart {
        caps.push(format!("graceful restart {} s", g.time));
    }
    for (afi, safi) in &n.families {
        caps.push(match (afi, safi) {
            (1, 1) => "ipv4 unicast".to_string(),
            (2, 1) => "ipv6 unicast".to_string(),
            (a, s) => format!("afi {a} safi {s}"),
        });
    }
    caps
}

/// A path to a prefix, marked `*` (the best), `=` (an equal-cost next hop used beside
/// it) or ` `, and where it came from.
type Marked = (char, Source, Arc<RoutePath>);

/// The prefixes of the Loc-RIB with every path to each, marked, as `birdc show route
/// all` lists them.
fn routes(speaker: &Speaker) -> Vec<(IpNet, Vec<Marked>)> {
    speaker
        .loc_rib()
        .map(|(prefix, best_source, best)| {
            let multipath = speaker.next_hops(&prefix);
            let mut paths = vec![('*', best_source, best.clone())];
            for p in speaker.peers() {
                if Source::Peer(p.id) == best_source {
                    continue;
                }
                if let Some(path) = p.received.get(&prefix) {
                    let mark = if multipath.contains(&path.next_hop) {
                        '='
                    } else {
                        ' '
                    };
                    paths.push((mark, Source::Peer(p.id), path.clone()));
                }
            }
            (prefix, paths)
        })
        .collect()
}

fn source_name(speaker: &Speaker, source: Source) -> String {
    match source {
        Source::Local => "us".to_string(),
        Source::Peer(peer) => speaker
            .peers()
            .find(|p| p.id == peer)
            .map_or_else(|| "?".to_string(), |p| p.config.address.to_string()),
    }
}

fn communities(path: &RoutePath) -> String {
    path.communities
        .iter()
        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Neighbors and (with `routes`, else their counts) routes, like `birdc show protocols
/// all` and `show route all`.
fn status(
    config: &BgpdConfig,
    speaker: &Speaker,
    driver_bfd: Option<&crate::bfdd::Bfd>,
    with_routes: bool,
    now: Duration,
) -> String {
    use std::fmt::Write;
    let mut out = format!("router {} AS {}\n", config.router_id, config.asn);
    if let Some(bfd) = driver_bfd {
        let _ = writeln!(out, "BFD packets dropped: {}", bfd.dropped);
    }
    if with_routes {
        // The Loc-RIB, like `birdc show route`: the best path of each prefix, with every
        // next hop that ties with it; then every path, marked.
        for (prefix, paths) in routes(speaker) {
            let hops: Vec<String> = speaker
                .next_hops(&prefix)
                .iter()
                .map(IpAddr::to_string)
                .collect();
            let (_, source, best) = &paths[0];
            let path = match as_path(best) {
                asns if asns.is_empty() => String::new(),
                asns => format!(" AS path {asns}"),
            };
            let _ = writeln!(
                out,
                "best {prefix} via {}{path} from {}",
                hops.join(", "),
                source_name(speaker, *source)
            );
            for (mark, source, p) in &paths {
                let c = communities(p);
                let _ = writeln!(
                    out,
                    "  {mark} via {} from {}  AS path [{}] origin {:?} local-pref {}{}{}",
                    p.next_hop,
                    source_name(speaker, *source),
                    as_path(p),
                    p.origin,
                    p.local_pref,
                    p.med.map(|m| format!(" med {m}")).unwrap_or_default(),
                    if c.is_empty() {
                        String::new()
                    } else {
                        format!(" communities {c}")
                    }
                );
            }
        }
    }
    for p in speaker.peers() {
        let _ = write!(
            out,
            "neighbor {} AS {} {:?}",
            p.config.address, p.config.session.peer_as, p.state
        );
        if let Some(d) = p.last_down {
            let _ = write!(out, " (last down: {d})");
        }
        if let Some(state) = driver_bfd.and_then(|b| b.state(p.id)) {
            let _ = write!(out, " BFD {state}");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "  {}, messages {} in / {} out, prefixes {} in / {} out",
            match p.established_at {
                Some(t) => format!("up {}", uptime(now, t)),
                None => "down".to_string(),
            },
            p.messages_in,
            p.messages_out,
            p.received.len(),
            p.sent.len()
        );
        if let Some(n) = p.negotiated {
            let _ = writeln!(
                out,
                "  capabilities: {}; hold time {} s; peer id {}",
                capabilities(n).join(", "),
                n.hold_time,
                n.peer_id
            );
        }
        if let Some(e) = p.last_error {
            let _ = writeln!(out, "  last error: {e}");
        }
        if !with_routes {
            let _ = writeln!(
                out,
                "  {} routes received, {} sent",
                p.received.len(),
                p.sent.len()
            );
            continue;
        }
        for (prefix, path) in p.sent.iter() {
            let local = speaker.originated().get(&prefix).is_some();
            let hop = match (prefix, path.next_hop) {
                (_, hop) if local => hop,
                (IpNet::V4(_), _) => IpAddr::V4(p.config.local_address),
                (IpNet::V6(_), _) => {
                    IpAddr::V6(next_hop6(config).unwrap_or(p.config.local_address.to_ipv6_mapped()))
                }
            };
            let _ = writeln!(out, "  sent {prefix} via {hop}");
        }
        for (prefix, path) in p.received.iter() {
            let _ = writeln!(
                out,
                "  received {prefix} via {} AS path {}",
                path.next_hop,
                as_path(path)
            );
        }
    }
    out
}

/// The same as JSON: `router_id`, `asn`, `neighbors[]` (`address`, `asn`, `state`,
/// `bfd`, `uptime_s`, `messages_in`, `messages_out`, `prefixes_in`, `prefixes_out`,
/// `capabilities[]`, `hold_time`, `last_down`, `last_error`), `routes[]` (`prefix`,
/// `paths[]`: `best`, `multipath`, `next_hop`, `from`, `as_path`, `origin`,
/// `local_pref`, `med`, `communities`).
fn status_json(
    config: &BgpdConfig,
    speaker: &Speaker,
    driver_bfd: Option<&crate::bfdd::Bfd>,
    now: Duration,
) -> serde_json::Value {
    use serde_json::json;
    let neighbors: Vec<_> = speaker
        .peers()
        .map(|p| {
            json!({
                "address": p.config.address.to_string(),
                "asn": p.config.session.peer_as,
                "state": format!("{:?}", p.state),
                "bfd": driver_bfd.and_then(|b| b.state(p.id)).map(|s| s.to_string()),
                "uptime_s": p.established_at.map(|t| now.saturating_sub(t).as_secs()),
                "messages_in": p.messages_in,
                "messages_out": p.messages_out,
                "prefixes_in": p.received.len(),
                "prefixes_out": p.sent.len(),
                "capabilities": p.negotiated.map(capabilities).unwrap_or_default(),
                "hold_time": p.negotiated.map(|n| n.hold_time),
                "last_down": p.last_down.map(ToString::to_string),
                "last_error": p.last_error.map(ToString::to_string),
            })
        })
        .collect();
    let routes: Vec<_> = routes(speaker)
        .into_iter()
        .map(|(prefix, paths)| {
            json!({
                "prefix": prefix.to_string(),
                "paths": paths.iter().map(|(mark, source, p)| json!({
                    "best": *mark == '*',
                    "multipath": *mark != ' ',
                    "next_hop": p.next_hop.to_string(),
                    "from": source_name(speaker, *source),
                    "as_path": p.as_path.segments.iter().flat_map(|s| s.asns.iter().copied()).collect::<Vec<u32>>(),
                    "origin": format!("{:?}", p.origin),
                    "local_pref": p.local_pref,
                    "med": p.med,
                    "communities": p.communities.iter().map(|c| format!("{}:{}", c >> 16, c & 0xffff)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "router_id": config.router_id.to_string(),
        "asn": config.asn,
        "neighbors": neighbors,
        "routes": routes,
    })
}

fn as_path(path: &RoutePath) -> String {
    let asns: Vec<String> = path
        .as_path
        .segments
        .iter()
        .flat_map(|s| s.asns.iter().map(u32::to_string))
        .collect();
    asns.join(" ")
}
