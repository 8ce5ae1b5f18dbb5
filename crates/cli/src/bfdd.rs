//! BFD on real UDP for `strata bgp run`: a driver of [`strata_bgp::bfd::Session`], one
//! per neighbor with `bfd = true`.
//!
//! Control packets arrive on one socket bound to our address and port 3784, with their
//! TTL reported ([`crate::udp_ttl`]); one that did not arrive with 255 did not come from
//! the link and is dropped (RFC 5881 section 5). Each session sends from a socket of
//! its own, on a source port in 49152–65535, with TTL 255.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use strata_bgp::bfd::{self, Change, Packet, Session};
use strata_bgp::speaker::PeerId;

/// One neighbor's session and the socket it sends from.
struct Peer {
    peer: PeerId,
    address: IpAddr,
    session: Session,
    tx: UdpSocket,
}

/// Every BFD session of the speaker.
pub(crate) struct Bfd {
    local: IpAddr,
    rx: tokio::net::UdpSocket,
    peers: Vec<Peer>,
    next_discriminator: u32,
    /// Packets dropped (the reason of each is logged at debug level).
    pub(crate) dropped: u64,
}

impl Bfd {
    /// Listens on `local`, port `port` (3784 but in tests).
    pub(crate) fn bind(local: IpAddr, port: u16) -> io::Result<Bfd> {
        let rx = UdpSocket::bind(SocketAddr::new(local, port))?;
        rx.set_nonblocking(true)?;
        crate::udp_ttl::report_ttl(&rx, local.is_ipv6())?;
        Ok(Bfd {
            local,
            rx: tokio::net::UdpSocket::from_std(rx)?,
            peers: Vec::new(),
            next_discriminator: std::process::id().wrapping_mul(2_654_435_761) | 1,
            dropped: 0,
        })
    }

    /// Starts a session with `peer` at `address`.
    pub(crate) fn add(
        &mut self,
        peer: PeerId,
        address: IpAddr,
        config: bfd::Config,
        now: Duration,
    ) -> io::Result<()> {
        let discriminator = self.next_discriminator;
        self.next_discriminator = self.next_discriminator.wrapping_add(1).max(1);
        let tx = source_socket(self.local, discriminator)?;
        self.peers.push(Peer {
            peer,
            address,
            session: Session::new(config, discriminator, now),
            tx,
        });
        Ok(())
    }

    /// Ends the session with `peer`, telling the neighbor (AdminDown) first.
    pub(crate) fn remove(&mut self, peer: PeerId, now: Duration) {
        if let Some(i) = self.peers.iter().position(|p| p.peer == peer) {
            let mut p = self.peers.remove(i);
            p.session.set_admin_down(true, now);
            if let Some(packet) = p.session.poll_transmit(now) {
                let _ = p.tx.send_to(&packet.emit(), (p.address, bfd::PORT));
            }
        }
    }

    /// The state of the session with `peer`.
    pub(crate) fn state(&self, peer: PeerId) -> Option<bfd::State> {
        self.peers
            .iter()
            .find(|p| p.peer == peer)
            .map(|p| p.session.state())
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.peers.iter().filter_map(|p| p.session.poll_at()).min()
    }

    /// Waits until a packet can be read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.rx.readable().await
    }

    /// Reads every packet waiting.
    pub(crate) fn receive(&mut self, now: Duration) {
        let mut buf = [0u8; 128];
        loop {
            let got = self.rx.try_io(tokio::io::Interest::READABLE, || {
                crate::udp_ttl::recv(&self.rx, &mut buf)
            });
            let (n, from, ttl) = match got {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("BFD socket: {e}");
                    return;
                }
            };
            if let Err(why) = self.take(&buf[..n], from.ip(), ttl, now) {
                self.dropped += 1;
                tracing::debug!(from = %from, "BFD packet dropped: {why}");
            }
        }
    }

    fn take(
        &mut self,
        bytes: &[u8],
        from: IpAddr,
        ttl: Option<u8>,
        now: Duration,
    ) -> Result<(), bfd::Discard> {
        if ttl != Some(bfd::TTL) {
            return Err(bfd::Discard::Ttl);
        }
        let packet = Packet::parse(bytes)?;
        // By our discriminator once the peer knows it, else by its address.
        let peer = self
            .peers
            .iter_mut()
            .find(|p| {
                if packet.your_discriminator != 0 {
                    p.session.local_discriminator() == packet.your_discriminator
                } else {
                    p.address == from
                }
            })
            .ok_or(bfd::Discard::YourDiscriminator)?;
        peer.session.receive(&packet, now)
    }

    /// Runs the timers, sends what is due; returns the sessions that changed state.
    pub(crate) fn run(&mut self, now: Duration) -> Vec<(PeerId, IpAddr, Change)> {
        let mut changes = Vec::new();
        for p in &mut self.peers {
            p.session.poll(now);
            while let Some(packet) = p.session.poll_transmit(now) {
                if let Err(e) = p.tx.send_to(&packet.emit(), (p.address, bfd::PORT))
                    && e.kind() != io::ErrorKind::WouldBlock
                {
                    tracing::debug!(neighbor = %p.address, "BFD send: {e}");
                }
            }
            while let Some(change) = p.session.poll_change() {
                changes.push((p.peer, p.address, change));
            }
        }
        changes
    }
}

/// A socket to send one session's packets from: TTL 255, a source port of
/// 49152–65535 (RFC 5881 section 4), the same for all its packets.
fn source_socket(local: IpAddr, discriminator: u32) -> io::Result<UdpSocket> {
    let first = 49152 + (discriminator % 16384) as u16;
    let mut port = first;
    loop {
        match UdpSocket::bind(SocketAddr::new(local, port)) {
            Ok(s) => {
                let sock = socket2::SockRef::from(&s);
                if local.is_ipv6() {
                    sock.set_unicast_hops_v6(u32::from(bfd::TTL))?;
                } else {
                    sock.set_ttl_v4(u32::from(bfd::TTL))?;
                }
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                port = if port == u16::MAX { 49152 } else { port + 1 };
                if port == first {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
