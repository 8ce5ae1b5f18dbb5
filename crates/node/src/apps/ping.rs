//! ICMP echo (ping) client task over a smoltcp ICMP socket.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

const PAYLOAD: &[u8] = b"strata ping payload 0123456789ab";

/// What a ping found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReport {
    pub target: Ipv4Addr,
    pub ident: u16,
    pub sent: u16,
    pub received: u16,
    /// Round-trip time of each reply, in order of sequence number.
    pub rtts: Vec<Duration>,
}

/// Sends `count` echo requests `interval` apart and waits `timeout` after the last.
#[derive(Debug)]
pub struct Ping {
    handle: SocketHandle,
    count: u16,
    interval: Duration,
    timeout: Duration,
    next_send: Duration,
    sent_at: Vec<Duration>,
    replies: Vec<Option<Duration>>,
    done: bool,
    report: PingReport,
}

impl Ping {
    pub(crate) fn start(
        now: Duration,
        sockets: &mut SocketSet<'static>,
        target: Ipv4Addr,
        ident: u16,
        count: u16,
        interval: Duration,
        timeout: Duration,
    ) -> Ping {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 4096]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 4096]);
        let mut socket = icmp::Socket::new(rx, tx);
        // A fresh socket binds to any identifier.
        let _ = socket.bind(icmp::Endpoint::Ident(ident));
        Ping {
            handle: sockets.add(socket),
            count,
            interval,
            timeout,
            next_send: now,
            sent_at: Vec::new(),
            replies: Vec::new(),
            done: count == 0,
            report: PingReport {
                target,
                ident,
                sent: 0,
                received: 0,
                rtts: Vec::new(),
            },
        }
    }

    pub(crate) fn poll(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        if self.done {
            return false;
        }
        let socket = sockets.get_mut::<icmp::Socket>(self.handle);
        let mut progressed = false;
        let caps = ChecksumCapabilities::default();
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_slice(&mut buf) {
            progressed = true;
            let Ok(packet) = Icmpv4Packet::new_checked(&buf[..n]) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
                Icmpv4Repr::parse(&packet, &caps)
            {
                let seq = usize::from(seq_no);
                if ident == self.report.ident
                    && from == IpAddress::Ipv4(self.report.target)
                    && seq < self.replies.len()
                    && self.replies[seq].is_none()
                {
                    self.replies[seq] = Some(now - self.sent_at[seq]);
                    self.report.received += 1;
                }
            }
        }
        if self.report.sent < self.count && now >= self.next_send && socket.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: self.report.ident,
                seq_no: self.report.sent,
                data: PAYLOAD,
            };
            let mut bytes = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]), &caps);
            if socket
                .send_slice(&bytes, IpAddress::Ipv4(self.report.target))
                .is_ok()
            {
                self.sent_at.push(now);
                self.replies.push(None);
                self.report.sent += 1;
                self.next_send = now + self.interval;
                progressed = true;
            }
        }
        let all_sent = self.report.sent == self.count;
        let all_back = self.report.received == self.count;
        let last_timed_out = self
            .sent_at
            .last()
            .is_some_and(|t| all_sent && now >= *t + self.timeout);
        if all_back || last_timed_out {
            self.done = true;
            self.report.rtts = self.replies.iter().flatten().copied().collect();
            sockets.remove(self.handle);
            progressed = true;
        }
        progressed
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        if self.done {
            return None;
        }
        if self.report.sent < self.count {
            Some(self.next_send)
        } else {
            self.sent_at.last().map(|t| *t + self.timeout)
        }
    }

    pub(crate) fn report(&self) -> Option<&PingReport> {
        self.done.then_some(&self.report)
    }
}
