//! The southbound protocol over the node's own TCP stack: the agent of a Mux or a
//! Hyper-V host ([`Client`]), and the controller's listening side on NCVM ([`Server`]).
//! The protocol's cores ([`strata_southbound`]) decide what to say; these move its frames
//! through smoltcp sockets.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

use serde_json::Value;
use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use strata_southbound::Timers;
use strata_southbound::agent::{Agent, Output};
use strata_southbound::frame::{self, Decoder};
use strata_southbound::peer::{Event, Peer};

use super::message_socket;

const BUFFER: usize = 64 * 1024;

/// The TCP port the controller listens on for agents (as `strata controller
/// --southbound` does by default).
pub const DEFAULT_PORT: u16 = 8081;

/// Writes what fits of `out` to the socket; true if anything was written.
fn flush(socket: &mut tcp::Socket, out: &mut Vec<u8>) -> bool {
    if out.is_empty() || !socket.can_send() {
        return false;
    }
    match socket.send_slice(out) {
        Ok(n) if n > 0 => {
            out.drain(..n);
            true
        }
        _ => false,
    }
}

/// Reads everything the socket holds into the decoder; true if anything was read.
fn fill(socket: &mut tcp::Socket, decoder: &mut Decoder) -> bool {
    let mut read = false;
    while socket.can_recv() {
        match socket.recv(|data| (data.len(), data.to_vec())) {
            Ok(data) if !data.is_empty() => {
                decoder.push(&data);
                read = true;
            }
            _ => break,
        }
    }
    read
}

/// An agent: connects to the controller, applies what it sends, reports back.
#[derive(Debug)]
pub struct Client {
    agent: Agent,
    controller: SocketAddrV4,
    socket: Option<SocketHandle>,
    /// Whether the current socket was seen established (so its end is a disconnection).
    open: bool,
    decoder: Decoder,
    out: Vec<u8>,
    was_ready: bool,
    /// Configurations to apply, in order: revision, the whole, what changed.
    pub(crate) to_apply: VecDeque<(u64, std::sync::Arc<Value>, Option<Value>)>,
    /// Times this agent has (re)connected and been accepted.
    pub sessions: u64,
}

impl Client {
    pub(crate) fn new(
        node: &str,
        token: &str,
        controller: SocketAddrV4,
        timers: Timers,
        now: Duration,
    ) -> Client {
        let mut agent = Agent::new(node, token, timers);
        agent.start(now);
        Client {
            agent,
            controller,
            socket: None,
            open: false,
            decoder: Decoder::new(),
            out: Vec::new(),
            was_ready: false,
            to_apply: VecDeque::new(),
            sessions: 0,
        }
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The role applied (or could not apply) a configuration.
    pub(crate) fn applied(&mut self, revision: u64, result: Result<(), String>) {
        self.agent.applied(revision, result);
    }

    /// Sends a status report (dropped while not connected).
    pub(crate) fn report(&mut self, status: Value) {
        self.agent.report(status);
    }

    /// Whether the agent has just been accepted (again): its reports are to be sent anew.
    pub(crate) fn take_welcomed(&mut self) -> bool {
        let ready = self.agent.is_ready();
        let welcomed = ready && !self.was_ready;
        self.was_ready = ready;
        if welcomed {
            self.sessions += 1;
        }
        welcomed
    }

    fn drop_socket(&mut self, sockets: &mut SocketSet<'static>, reaper: &mut Vec<SocketHandle>) {
        if let Some(h) = self.socket.take() {
            sockets.get_mut::<tcp::Socket>(h).abort();
            reaper.push(h);
        }
        self.open = false;
        self.out.clear();
        self.decoder = Decoder::new();
    }

    /// Moves the session on; true if anything happened.
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        port: &mut dyn FnMut() -> u16,
        reaper: &mut Vec<SocketHandle>,
    ) -> bool {
        let mut progressed = false;
        // The connection's state.
        if let Some(h) = self.socket {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if socket.state() == tcp::State::Established && !self.open {
                self.open = true;
                self.agent.connected(now);
                progressed = true;
            } else if !socket.is_active() || socket.state() == tcp::State::CloseWait {
                // Refused, reset, timed out or closed by the controller.
                self.drop_socket(sockets, reaper);
                self.agent.disconnected(now);
                progressed = true;
            }
        }
        if let Some(h) = self.socket {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if fill(socket, &mut self.decoder) {
                progressed = true;
                loop {
                    match self.decoder.next_message() {
                        Ok(Some(m)) => {
                            if let strata_southbound::Message::Refused { reason } = &m {
                                tracing::warn!(reason, "southbound: the controller refused us");
                            }
                            self.agent.received(now, m);
                        }
                        Ok(None) => break,
                        // A controller that speaks garbage is not one to trust: start
                        // again.
                        Err(_) => {
                            self.agent.disconnected(now);
                            self.drop_socket(sockets, reaper);
                            break;
                        }
                    }
                }
            }
        }
        self.agent.poll(now);
        while let Some(output) = self.agent.poll_output() {
            progressed = true;
            match output {
                Output::Connect => {
                    self.drop_socket(sockets, reaper);
                    let h = message_socket(sockets, BUFFER);
                    let remote = IpEndpoint::new(
                        IpAddress::Ipv4(*self.controller.ip()),
                        self.controller.port(),
                    );
                    if sockets
                        .get_mut::<tcp::Socket>(h)
                        .connect(cx, remote, port())
                        .is_err()
                    {
                        reaper.push(h);
                        self.agent.disconnected(now);
                    } else {
                        self.socket = Some(h);
                    }
                }
                Output::Send(m) => frame::encode(&m, &mut self.out),
                Output::Close => self.drop_socket(sockets, reaper),
                Output::Apply {
                    revision,
                    config,
                    patch,
                } => self.to_apply.push_back((revision, config, patch)),
            }
        }
        if let Some(h) = self.socket {
            progressed |= flush(sockets.get_mut::<tcp::Socket>(h), &mut self.out);
        }
        progressed
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.agent.poll_at()
    }
}

/// One agent's connection on the controller's side.
#[derive(Debug)]
struct Conn {
    handle: SocketHandle,
    peer: Option<Peer>,
    decoder: Decoder,
    out: Vec<u8>,
    applied: Option<u64>,
    closing: bool,
}

/// The controller's southbound listener: agents connect, prove who they are, and are
/// sent their node's configuration; what they say goes to the node's owner.
#[derive(Debug)]
pub struct Server {
    port: u16,
    secret: String,
    timers: Timers,
    conns: Vec<Conn>,
    configs: strata_southbound::Configs,
    events: Vec<Event>,
    /// Connections refused or dropped, with the reason (for the log).
    pub closed: Vec<String>,
}

impl Server {
    /// Listens on `port` with `backlog` sockets: that many agents at once.
    pub(crate) fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        secret: String,
        timers: Timers,
        backlog: usize,
    ) -> Server {
        let conns = (0..backlog.max(1))
            .map(|_| Conn {
                handle: message_socket(sockets, BUFFER),
                peer: None,
                decoder: Decoder::new(),
                out: Vec::new(),
                applied: None,
                closing: false,
            })
            .collect();
        Server {
            port,
            secret,
            timers,
            conns,
            configs: strata_southbound::Configs::default(),
            events: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// The configurations to serve, by node; each connected agent is sent what changed.
    pub(crate) fn publish(&mut self, configs: &strata_southbound::Configs) {
        self.configs = configs.clone();
        for conn in &mut self.conns {
            if let Some(peer) = conn.peer.as_mut() {
                publish(peer, &self.configs, conn.applied);
            }
        }
    }

    /// What the agents said since the last call: accepted, applied, failed, reports.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The nodes connected now.
    pub fn connected(&self) -> Vec<&str> {
        self.conns
            .iter()
            .filter_map(|c| c.peer.as_ref()?.node())
            .collect()
    }

    pub(crate) fn poll(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let mut progressed = false;
        for conn in &mut self.conns {
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            if !socket.is_open() {
                *conn = Conn {
                    handle: conn.handle,
                    peer: None,
                    decoder: Decoder::new(),
                    out: Vec::new(),
                    applied: None,
                    closing: false,
                };
                // Listening cannot fail on a closed socket with a non-zero port.
                let _ = socket.listen(self.port);
                progressed = true;
                continue;
            }
            if conn.closing {
                if flush(socket, &mut conn.out) {
                    progressed = true;
                }
                if conn.out.is_empty() && socket.state() != tcp::State::Closed {
                    socket.close();
                }
                if matches!(socket.state(), tcp::State::CloseWait) {
                    socket.abort();
                }
                continue;
            }
            match socket.state() {
                tcp::State::Established | tcp::State::CloseWait => {}
                _ => continue,
            }
            let peer = conn.peer.get_or_insert_with(|| Peer::new(now, self.timers));
            if socket.state() == tcp::State::CloseWait {
                // The agent went away.
                socket.abort();
                progressed = true;
                continue;
            }
            if fill(socket, &mut conn.decoder) {
                progressed = true;
                let (secret, configs) = (&self.secret, &self.configs);
                let admit = |node: &str, token: &str| {
                    let (revision, _) = configs.get(node)?;
                    (token == strata_southbound::node_token(secret, node)).then_some(*revision)
                };
                loop {
                    match conn.decoder.next_message() {
                        Ok(Some(m)) => peer.received(now, m, &admit),
                        Ok(None) => break,
                        Err(e) => {
                            peer.malformed(&e.to_string());
                            break;
                        }
                    }
                }
            }
            peer.poll(now);
            while let Some(event) = peer.poll_event() {
                progressed = true;
                match &event {
                    Event::Send(m) => frame::encode(m, &mut conn.out),
                    Event::Close(reason) => {
                        tracing::warn!(reason, "southbound: closing an agent's connection");
                        self.closed.push(reason.clone());
                        conn.closing = true;
                    }
                    Event::Accepted { applied, .. } => {
                        conn.applied = *applied;
                        publish(peer, &self.configs, conn.applied);
                    }
                    Event::Applied { revision, .. } => conn.applied = Some(*revision),
                    Event::Failed { .. } | Event::Report { .. } => {}
                }
                if !matches!(event, Event::Send(_) | Event::Close(_)) {
                    self.events.push(event);
                }
            }
            progressed |= flush(socket, &mut conn.out);
        }
        progressed
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.conns
            .iter()
            .filter_map(|c| c.peer.as_ref()?.poll_at())
            .min()
    }
}

fn publish(peer: &mut Peer, configs: &strata_southbound::Configs, applied: Option<u64>) {
    let Some(node) = peer.node() else {
        return;
    };
    match configs.get(node) {
        Some((revision, config)) => peer.publish(*revision, config, applied),
        None => peer.end(format!("node {node}: its resource was deleted")),
    }
}
