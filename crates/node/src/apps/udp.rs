//! A one-datagram UDP client task: sends a datagram and waits for an answer from the
//! target. It exists to trace UDP flows; what answers (a server, or an ICMP error seen in
//! the capture) is for the trace to show.

use std::net::SocketAddrV4;
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// What the datagram sent.
pub const PAYLOAD: &[u8] = b"strata trace datagram\n";

/// What a datagram found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpReport {
    pub target: SocketAddrV4,
    pub local_port: u16,
    pub sent: bool,
    /// The first answer's length and how long it took.
    pub answer: Option<(usize, Duration)>,
}

/// Sends one datagram and waits `timeout` for an answer from the target.
#[derive(Debug)]
pub struct Datagram {
    handle: Option<SocketHandle>,
    started: Duration,
    deadline: Duration,
    report: UdpReport,
    done: bool,
}

impl Datagram {
    pub(crate) fn start(
        now: Duration,
        sockets: &mut SocketSet<'static>,
        target: SocketAddrV4,
        local_port: u16,
        timeout: Duration,
    ) -> Datagram {
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
        let mut socket = udp::Socket::new(rx, tx);
        let report = UdpReport {
            target,
            local_port,
            sent: false,
            answer: None,
        };
        // A fresh socket binds to any non-zero port.
        if socket.bind(local_port).is_err() {
            return Datagram {
                handle: None,
                started: now,
                deadline: now,
                report,
                done: true,
            };
        }
        Datagram {
            handle: Some(sockets.add(socket)),
            started: now,
            deadline: now + timeout,
            report,
            done: false,
        }
    }

    pub(crate) fn poll(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let Some(handle) = self.handle.filter(|_| !self.done) else {
            return false;
        };
        let socket = sockets.get_mut::<udp::Socket>(handle);
        let target = IpEndpoint::new(
            IpAddress::Ipv4(*self.report.target.ip()),
            self.report.target.port(),
        );
        let mut progressed = false;
        if !self.report.sent && socket.send_slice(PAYLOAD, target).is_ok() {
            self.report.sent = true;
            progressed = true;
        }
        let mut buf = [0u8; 1500];
        while let Ok((n, meta)) = socket.recv_slice(&mut buf) {
            progressed = true;
            if meta.endpoint == target && self.report.answer.is_none() {
                self.report.answer = Some((n, now.saturating_sub(self.started)));
            }
        }
        if self.report.answer.is_some() || now >= self.deadline {
            self.done = true;
            sockets.remove(handle);
            self.handle = None;
            progressed = true;
        }
        progressed
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        (!self.done).then_some(self.deadline)
    }

    pub(crate) fn report(&self) -> Option<&UdpReport> {
        self.done.then_some(&self.report)
    }
}
