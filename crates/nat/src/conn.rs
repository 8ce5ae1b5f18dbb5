//! A tracked connection and its timeouts.

use std::time::Duration;

use strata_wire::flow::{FlowKey, proto};

/// Idle timeouts by protocol and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// RFC 5382 REQ-5: at least 2 h 4 min for an established TCP connection.
    pub tcp_established: Duration,
    /// Opening and closing TCP connections (RFC 5382: 4 min for transitory states).
    pub tcp_transitory: Duration,
    /// After a RST.
    pub tcp_closed: Duration,
    /// RFC 4787 REQ-5: at least 2 min for UDP.
    pub udp: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
        }
    }
}

/// Which side created a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An inside host's outbound packet (masquerade).
    Snat,
    /// An outside packet to a forwarded port.
    PortForward,
}

/// The coarse TCP state a NAT needs for timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Only the side that opened has spoken.
    Opening,
    Established,
    /// A FIN has been seen.
    Closing,
    /// A RST has been seen, or both FINs.
    Closed,
}

/// One connection through the NAT.
#[derive(Debug, Clone)]
pub struct Conn {
    /// As the inside host sends (before SNAT).
    pub inner: FlowKey,
    /// As the outside sends back (before DNAT).
    pub outer: FlowKey,
    pub origin: Origin,
    pub tcp: Option<TcpState>,
    pub seen_out: bool,
    pub seen_in: bool,
    fins: u8,
    pub last_seen: Duration,
    pub expires: Duration,
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;

impl Conn {
    pub(crate) fn new(
        now: Duration,
        inner: FlowKey,
        outer: FlowKey,
        origin: Origin,
        t: &Timeouts,
    ) -> Conn {
        let tcp = (inner.proto == proto::TCP).then_some(TcpState::Opening);
        let mut c = Conn {
            inner,
            outer,
            origin,
            tcp,
            seen_out: false,
            seen_in: false,
            fins: 0,
            last_seen: now,
            expires: now,
        };
        c.expires = now + c.timeout(t);
        c
    }

    /// Records a packet: `outbound` from inside to outside. `flags` are the TCP flags.
    pub(crate) fn seen(&mut self, now: Duration, outbound: bool, flags: Option<u8>, t: &Timeouts) {
        if outbound {
            self.seen_out = true;
        } else {
            self.seen_in = true;
        }
        if let (Some(state), Some(flags)) = (self.tcp.as_mut(), flags) {
            if flags & RST != 0 {
                *state = TcpState::Closed;
            } else if flags & FIN != 0 {
                self.fins = self.fins.saturating_add(1);
                *state = if self.fins >= 2 {
                    TcpState::Closed
                } else {
                    TcpState::Closing
                };
            } else if *state == TcpState::Opening && self.seen_in && self.seen_out {
                *state = TcpState::Established;
            }
        }
        self.last_seen = now;
        self.expires = now + self.timeout(t);
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        match (self.inner.proto, self.tcp) {
            (_, Some(TcpState::Established)) => t.tcp_established,
            (_, Some(TcpState::Opening | TcpState::Closing)) => t.tcp_transitory,
            (_, Some(TcpState::Closed)) => t.tcp_closed,
            (proto::UDP, _) => t.udp,
            _ => t.icmp,
        }
    }
}
