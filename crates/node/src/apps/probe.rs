//! The SLB host agent's health probes: TCP or HTTP, from the host to each local DIP.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use strata_slb::probe::ProbeState;

use super::http::Get;
use super::tcp_socket;

/// A probe of one DIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub dip: Ipv4Addr,
    pub port: u16,
    /// `Some(path)`: an HTTP GET that must answer 200; `None`: a TCP connection that must
    /// be accepted.
    pub http_path: Option<String>,
    pub interval: Duration,
    /// Consecutive failures that take the DIP out.
    pub count: u32,
}

#[derive(Debug)]
enum Attempt {
    Http(Box<Get>),
    Tcp {
        handle: SocketHandle,
        deadline: Duration,
    },
}

/// Probes one DIP every interval and reports changes of its health.
#[derive(Debug)]
pub(crate) struct Prober {
    config: ProbeConfig,
    state: ProbeState,
    next_at: Duration,
    attempt: Option<Attempt>,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
}

impl Prober {
    pub(crate) fn new(config: ProbeConfig, now: Duration) -> Prober {
        Prober {
            state: ProbeState::new(config.count),
            config,
            next_at: now,
            attempt: None,
            sent: 0,
            failed: 0,
        }
    }

    pub(crate) fn config(&self) -> &ProbeConfig {
        &self.config
    }

    pub(crate) fn dip(&self) -> Ipv4Addr {
        self.config.dip
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.is_up()
    }

    /// Starts, advances or finishes a probe. Returns the DIP's new health if it changed,
    /// and a socket the node should reap once it has closed.
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        port: &mut dyn FnMut() -> u16,
    ) -> (Option<bool>, Option<SocketHandle>) {
        if self.attempt.is_none() && now >= self.next_at {
            self.next_at = now + self.config.interval;
            self.sent += 1;
            // A probe must finish before the next one is due.
            let timeout = self.config.interval;
            self.attempt = Some(match &self.config.http_path {
                Some(path) => {
                    let url = format!("http://{}:{}{}", self.config.dip, self.config.port, path);
                    Attempt::Http(Box::new(Get::start(
                        now,
                        cx,
                        sockets,
                        &url,
                        timeout,
                        port(),
                        None,
                    )))
                }
                None => {
                    let handle = tcp_socket(sockets, 1024);
                    let remote =
                        IpEndpoint::new(IpAddress::Ipv4(self.config.dip), self.config.port);
                    let socket = sockets.get_mut::<tcp::Socket>(handle);
                    if socket.connect(cx, remote, port()).is_err() {
                        socket.abort();
                    }
                    Attempt::Tcp {
                        handle,
                        deadline: now + timeout,
                    }
                }
            });
        }
        let (outcome, reap) = match &mut self.attempt {
            None => return (None, None),
            Some(Attempt::Http(get)) => {
                get.poll(now, cx, sockets);
                match get.report() {
                    None => return (None, None),
                    Some(r) => (
                        r.error.is_none() && r.status == Some(200),
                        get.take_socket(),
                    ),
                }
            }
            Some(Attempt::Tcp { handle, deadline }) => {
                let socket = sockets.get_mut::<tcp::Socket>(*handle);
                if socket.may_send() {
                    // Close politely: the DIP's listening socket must come back for the
                    // next client. The node removes this one once it has closed.
                    socket.close();
                    (true, Some(*handle))
                } else if now >= *deadline || socket.state() == tcp::State::Closed {
                    socket.abort();
                    (false, Some(*handle))
                } else {
                    return (None, None);
                }
            }
        };
        self.attempt = None;
        if !outcome {
            self.failed += 1;
        }
        (self.state.record(outcome), reap)
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        match &self.attempt {
            None => Some(self.next_at),
            Some(Attempt::Http(get)) => get.poll_at(),
            Some(Attempt::Tcp { deadline, .. }) => Some(*deadline),
        }
    }
}
