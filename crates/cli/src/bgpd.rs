//! `strata bgp`: the BGP speaker on real TCP, outside the lab.
//!
//! The driver of [`strata_bgp::session::Session`] on the machine's own sockets: one
//! listening socket on the configured local address, one connection per neighbor (two
//! while a connection collision is being settled, RFC 4271 section 6.8), non-blocking,
//! served by a single loop with the wall clock. Routes announced come from
//! the configuration file; routes received are kept per neighbor. The state of every
//! neighbor and its routes is written to a status file, which `strata bgp show` prints.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use serde::Deserialize;
use strata_bgp::codec::{self, AsPath, Attribute, Origin, Update};
use strata_bgp::rib::AdjRibIn;

use crate::tcp_md5;
use strata_bgp::session::{
    Action, Collision, Config, Connection, Event, Session, State, collision,
};

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BgpdConfig {
    pub(crate) asn: u32,
    pub(crate) router_id: Ipv4Addr,
    /// The address to listen on and connect from.
    pub(crate) local: Ipv4Addr,
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    pub(crate) status_file: PathBuf,
    #[serde(default)]
    pub(crate) neighbor: Vec<NeighborDef>,
    #[serde(default)]
    pub(crate) announce: Vec<AnnounceDef>,
}

fn default_port() -> u16 {
    179
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NeighborDef {
    pub(crate) address: Ipv4Addr,
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
}

fn default_hold() -> u16 {
    90
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnnounceDef {
    pub(crate) prefix: Ipv4Net,
    pub(crate) next_hop: Ipv4Addr,
}

struct Peer {
    def: NeighborDef,
    session: Session,
    stream: Option<TcpStream>,
    rx: Vec<u8>,
    /// Whether `stream` is a connection we opened.
    opened_locally: bool,
    /// A connection the neighbor opened while `stream` was still opening.
    second: Option<Second>,
    received: AdjRibIn,
    last_down: Option<String>,
}

/// The other connection of a collision, until one of the two is closed.
struct Second {
    session: Session,
    stream: TcpStream,
    rx: Vec<u8>,
}

pub(crate) fn load(path: &Path) -> anyhow::Result<BgpdConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: BgpdConfig = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })?;
    for n in &config.neighbor {
        if n.hold_time != 0 && n.hold_time < 3 {
            bail!(
                "{}: neighbor {}: hold time must be 0 or at least 3",
                path.display(),
                n.address
            );
        }
        if let Some(p) = &n.password
            && (p.is_empty() || p.len() > tcp_md5::MAX_KEY_LEN)
        {
            bail!(
                "{}: neighbor {}: password must be 1 to {} bytes",
                path.display(),
                n.address,
                tcp_md5::MAX_KEY_LEN
            );
        }
    }
    Ok(config)
}

/// Runs the speaker until `stop` says so (or forever).
pub(crate) fn run(config: BgpdConfig, stop: impl Fn() -> bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddrV4::new(config.local, config.port))
        .with_context(|| format!("listening on {}:{}", config.local, config.port))?;
    listener.set_nonblocking(true)?;
    for n in &config.neighbor {
        if let Some(key) = &n.password {
            tcp_md5::set_key(&listener, n.address, key.as_bytes())
                .with_context(|| format!("TCP MD5 key for neighbor {}", n.address))?;
        }
    }
    let start = Instant::now();
    let mut peers: Vec<Peer> = config
        .neighbor
        .iter()
        .map(|n| {
            let mut c = Config::new(config.asn, config.router_id, n.asn);
            c.passive = n.passive;
            c.hold_time = n.hold_time;
            c.connect_retry = Duration::from_secs(5);
            let mut session = Session::new(c);
            session.handle(Duration::ZERO, Event::Start);
            Peer {
                def: n.clone(),
                session,
                stream: None,
                rx: Vec::new(),
                opened_locally: false,
                second: None,
                received: AdjRibIn::new(),
                last_down: None,
            }
        })
        .collect();
    let mut last_status = String::new();
    while !stop() {
        let now = start.elapsed();
        // Incoming connections go to the neighbor they come from.
        loop {
            match listener.accept() {
                Ok((stream, SocketAddr::V4(from))) => {
                    match peers.iter_mut().find(|p| p.def.address == *from.ip()) {
                        Some(p) if p.stream.is_none() => {
                            stream.set_nonblocking(true)?;
                            p.stream = Some(stream);
                            p.opened_locally = false;
                            p.session.handle(now, Event::TcpConnected);
                        }
                        // A collision: both connections live until the OPENs tell
                        // which one to close.
                        Some(p) if p.second.is_none() => {
                            stream.set_nonblocking(true)?;
                            let session = Session::accepted(p.session.config().clone(), now);
                            p.second = Some(Second {
                                session,
                                stream,
                                rx: Vec::new(),
                            });
                        }
                        _ => drop(stream),
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        for p in &mut peers {
            serve(p, now, &config);
        }
        let status = status(&config, &peers);
        if status != last_status {
            std::fs::write(&config.status_file, &status)
                .with_context(|| format!("writing {}", config.status_file.display()))?;
            last_status = status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in &mut peers {
        p.session.handle(start.elapsed(), Event::Stop);
        serve(p, start.elapsed(), &config);
    }
    std::fs::write(&config.status_file, status(&config, &peers))?;
    Ok(())
}

/// Reads what `stream` has into `rx`; false once the connection is closed.
fn read_into(stream: &mut TcpStream, rx: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => rx.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Feeds the messages in `rx` to `session`, one by one while `more` says so.
fn feed(session: &mut Session, rx: &mut Vec<u8>, now: Duration, more: impl Fn(&Session) -> bool) {
    while more(session)
        && let Some(message) = codec::take_message(rx, session.options())
    {
        let event = match message {
            Ok(m) => Event::Message(m),
            Err(e) => Event::Malformed(e),
        };
        session.handle(now, event);
    }
}

/// Writes what a session queued to `stream` and closes it: for a connection that is
/// being closed.
fn flush_closing(session: &mut Session, stream: &mut TcpStream) {
    flush_sends(session, stream);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Writes the messages a session queued to `stream`, dropping its other actions.
fn flush_sends(session: &mut Session, stream: &mut TcpStream) {
    while let Some(action) = session.poll_action() {
        if let Action::Send(m) = action {
            let mut bytes = Vec::new();
            if codec::encode(&m, session.options(), &mut bytes).is_ok() {
                let _ = write_all_nonblocking(stream, &bytes);
            }
        }
    }
}

/// Serves the second connection of a collision and settles the collision once the
/// OPENs say how (RFC 4271 section 6.8).
fn serve_second(p: &mut Peer, now: Duration) {
    let Some(second) = p.second.as_mut() else {
        return;
    };
    let open = read_into(&mut second.stream, &mut second.rx);
    // Up to its OPEN only: from there the collision decides whether it goes on.
    feed(&mut second.session, &mut second.rx, now, |s| {
        s.peer_id().is_none() && s.state() != State::Idle
    });
    if !open || second.session.state() == State::Idle {
        if let Some(mut second) = p.second.take() {
            flush_closing(&mut second.session, &mut second.stream);
        }
        return;
    }
    second.session.poll(now);
    let verdict = collision(
        Connection {
            session: &p.session,
            opened_locally: p.opened_locally,
        },
        Connection {
            session: &second.session,
            opened_locally: false,
        },
    );
    match verdict {
        // Nothing decided: the OPEN (all a connection short of its peer's OPEN queues)
        // goes out.
        Collision::Wait => flush_sends(&mut second.session, &mut second.stream),
        Collision::CloseSecond => {
            if let Some(mut second) = p.second.take() {
                second.session.close_collision(now);
                flush_closing(&mut second.session, &mut second.stream);
            }
        }
        Collision::CloseFirst => {
            let Some(second) = p.second.take() else {
                return;
            };
            p.session.close_collision(now);
            match p.stream.as_mut() {
                Some(stream) => flush_closing(&mut p.session, stream),
                None => while p.session.poll_action().is_some() {},
            }
            p.session = second.session;
            p.stream = Some(second.stream);
            p.rx = second.rx;
            p.opened_locally = false;
        }
    }
}

/// Reads, runs timers and actions, writes, for one neighbor.
fn serve(p: &mut Peer, now: Duration, config: &BgpdConfig) {
    serve_second(p, now);
    let mut closed = false;
    if let Some(stream) = p.stream.as_mut() {
        closed = !read_into(stream, &mut p.rx);
    }
    // While a collision is open, the first connection goes no further than its OPEN.
    let colliding = p.second.is_some();
    feed(&mut p.session, &mut p.rx, now, |s| {
        !colliding || s.peer_id().is_none()
    });
    if closed {
        p.stream = None;
        p.rx.clear();
        p.session.handle(now, Event::TcpClosed);
    }
    p.session.poll(now);
    while let Some(action) = p.session.poll_action() {
        match action {
            Action::Connect => {
                p.stream = connect(config.local, &p.def);
                p.opened_locally = true;
                let event = if p.stream.is_some() {
                    Event::TcpConnected
                } else {
                    Event::TcpClosed
                };
                p.session.handle(now, event);
            }
            Action::Disconnect => {
                if let Some(s) = p.stream.take() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
            Action::Send(m) => {
                let mut bytes = Vec::new();
                if codec::encode(&m, p.session.options(), &mut bytes).is_ok()
                    && let Some(s) = p.stream.as_mut()
                {
                    // A small message on a fresh socket; a full send buffer means a
                    // dead peer, which the hold timer finds.
                    let _ = write_all_nonblocking(s, &bytes);
                }
            }
            Action::Established(_) => {
                p.last_down = None;
                for (prefix, next_hop) in group(&config.announce) {
                    let update = Update {
                        attributes: vec![
                            Attribute::Origin(Origin::Igp),
                            Attribute::AsPath(AsPath::sequence(vec![config.asn])),
                            Attribute::NextHop(next_hop),
                        ],
                        nlri: prefix,
                        ..Update::default()
                    };
                    p.session.send_update(now, update);
                }
                p.session.send_update(
                    now,
                    Update::end_of_rib(codec::afi::IPV4, codec::SAFI_UNICAST),
                );
            }
            Action::Update(u) => {
                p.received.apply(&u, config.asn);
            }
            Action::Down(reason) => {
                p.last_down = Some(format!("{reason:?}"));
                p.received.clear();
            }
            Action::RouteRefresh(..) => {}
        }
    }
}

/// Announcements grouped by next hop, one UPDATE each.
fn group(announce: &[AnnounceDef]) -> Vec<(Vec<Ipv4Net>, Ipv4Addr)> {
    let mut by_hop: BTreeMap<Ipv4Addr, Vec<Ipv4Net>> = BTreeMap::new();
    for a in announce {
        by_hop.entry(a.next_hop).or_default().push(a.prefix.trunc());
    }
    by_hop.into_iter().map(|(h, p)| (p, h)).collect()
}

fn connect(local: Ipv4Addr, neighbor: &NeighborDef) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())
        .ok()?;
    if let Some(key) = &neighbor.password {
        tcp_md5::set_key(&socket, neighbor.address, key.as_bytes()).ok()?;
    }
    socket
        .connect_timeout(
            &SocketAddr::V4(SocketAddrV4::new(neighbor.address, neighbor.port)).into(),
            Duration::from_secs(3),
        )
        .ok()?;
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

fn write_all_nonblocking(s: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The status file: neighbors and routes, like `birdc show protocols` and `show route`.
fn status(config: &BgpdConfig, peers: &[Peer]) -> String {
    let mut out = format!("router {} AS {}\n", config.router_id, config.asn);
    for p in peers {
        let state = p.session.state();
        out.push_str(&format!(
            "neighbor {} AS {} {:?}{}\n",
            p.def.address,
            p.def.asn,
            state,
            p.last_down
                .as_ref()
                .map(|d| format!(" (last down: {d})"))
                .unwrap_or_default()
        ));
        if state == State::Established {
            for (prefix, next_hops) in group(&config.announce) {
                for p in prefix {
                    out.push_str(&format!("  sent {p} via {next_hops}\n"));
                }
            }
        }
        for (prefix, path) in p.received.iter() {
            let asns: Vec<String> = path.as_path.iter().map(|a| a.to_string()).collect();
            out.push_str(&format!(
                "  received {prefix} via {} AS path {}\n",
                path.next_hop,
                asns.join(" ")
            ));
        }
    }
    out
}
