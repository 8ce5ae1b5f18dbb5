//! Strata's IPv4 router: the L3 layer of every node.
//!
//! A node's frames come in through [`Router::receive`]; the router answers ARP for the
//! node's addresses, hands packets addressed to the node to its own TCP/IP stack, and (when
//! forwarding is on) forwards the rest: longest-prefix match in the [`Fib`], TTL decrement
//! with an RFC 1624 checksum update, MAC rewrite, ARP resolution with a bounded queue,
//! ICMP time-exceeded, unreachable and fragmentation-needed errors (RFC 792, RFC 1812).
//! Packets from the node's own stack leave through [`Router::send`]. Frames to transmit
//! are taken from [`Router::poll_transmit`]; timers run in [`Router::poll`].
//!
//! [`Hooks`] let a role sit in the forwarding path: NAT rewrites packets before the
//! routing decision (DNAT) and after it (SNAT).
//!
//! Sans-IO: `now` is an argument; the forwarding path moves the caller's frame buffer
//! through and allocates nothing once the neighbour is resolved.

mod fib;
mod icmp;
mod neighbor;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use strata_wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4};
use strata_wire::flow::Ipv4Layout;
use strata_wire::{ETHERNET_HEADER_LEN, EthernetAddress};

pub use fib::{Fib, MAX_ECMP, Origin, Route, RouteKind};
use neighbor::{Enqueued, NeighborCache};

/// Index of an interface of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfIndex(pub usize);

/// A router interface: one NIC, one address.
#[derive(Debug, Clone)]
pub struct Interface {
    pub mac: EthernetAddress,
    /// The interface's address and the subnet it is on.
    pub addr: Ipv4Net,
    /// Largest IPv4 packet the link carries.
    pub mtu: usize,
}

/// How a router behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Forward packets not addressed to this node (a router), or drop them (a host).
    pub forwarding: bool,
    /// Neighbour cache capacity.
    pub neighbor_limit: usize,
    /// Frames held per unresolved neighbour.
    pub pending_limit: usize,
    /// TTL of packets the router originates (ICMP errors).
    pub default_ttl: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forwarding: false,
            neighbor_limit: 1024,
            pending_limit: 8,
            default_ttl: 64,
        }
    }
}

/// What a hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Drop the packet; the hook counts why.
    Drop,
    /// The hook took the packet (a Mux encapsulating it, a host agent decapsulating it);
    /// the router does nothing more with it.
    Consumed,
}

/// Points in the forwarding path where a role may rewrite, take or drop an IPv4 packet.
/// The router parses and validates the header once; the hooks get that parse (`layout`)
/// with the packet. A hook that accepts a packet may rewrite its addresses and ports
/// (keeping its checksums right) but not its length; the router reads the addresses
/// again after `pre_routing`.
pub trait Hooks {
    /// Before the routing decision, for packets received on `in_if` (DNAT goes here).
    /// `frame` is the whole frame, the IPv4 packet at [`ETHERNET_HEADER_LEN`] and
    /// trimmed to its total length; a hook may take it (`std::mem::take`) and return
    /// [`Verdict::Consumed`], or grow it in place, and hand it back later to
    /// [`Router::send_frame`] (a Mux encapsulating, with no copy and no allocation).
    fn pre_routing(
        &mut self,
        _now: Duration,
        _in_if: IfIndex,
        _layout: &Ipv4Layout,
        _frame: &mut Vec<u8>,
    ) -> Verdict {
        Verdict::Accept
    }

    /// After the routing decision, for packets leaving by `out_if`; `in_if` is `None` for
    /// packets the node originates (SNAT goes here). `packet` is the IPv4 packet.
    fn post_routing(
        &mut self,
        _now: Duration,
        _in_if: Option<IfIndex>,
        _out_if: IfIndex,
        _layout: &Ipv4Layout,
        _packet: &mut [u8],
    ) -> Verdict {
        Verdict::Accept
    }
}

/// No role in the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Why the router dropped a frame; each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not Ethernet II, or an IPv4 or ARP packet that does not parse.
    Malformed,
    /// Unicast to another MAC address (the segment flooded it to us).
    OtherHost,
    /// A tagged frame on an untagged interface, or an EtherType we do not carry.
    Unsupported,
    /// Not for this node, and forwarding is off.
    NotForwarding,
    TtlExceeded,
    NoRoute,
    /// Larger than the outgoing MTU and DF set (an ICMP error was sent) or fragmentation
    /// would be needed (Strata does not fragment).
    TooBig,
    /// The next hop did not answer ARP.
    NeighborUnreachable,
    /// The neighbour table or a pending queue was full.
    NeighborOverflow,
    /// A hook (NAT) refused it.
    Hook,
    /// A blackhole route matched it.
    Blackholed,
    /// A reject route matched it (an ICMP host unreachable was sent).
    Rejected,
}

/// Per-router counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub local: u64,
    pub forwarded: u64,
    pub originated: u64,
    /// Packets a hook took over (see [`Verdict::Consumed`]).
    pub consumed: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub icmp_errors_sent: u64,
    pub malformed: u64,
    pub other_host: u64,
    pub unsupported: u64,
    pub not_forwarding: u64,
    pub ttl_exceeded: u64,
    pub no_route: u64,
    pub too_big: u64,
    pub neighbor_unreachable: u64,
    pub neighbor_overflow: u64,
    pub hook: u64,
    pub blackholed: u64,
    pub rejected: u64,
}

impl Counters {
    fn count(&mut self, drop: Drop) {
        let c = match drop {
            Drop::Malformed => &mut self.malformed,
            Drop::OtherHost => &mut self.other_host,
            Drop::Unsupported => &mut self.unsupported,
            Drop::NotForwarding => &mut self.not_forwarding,
            Drop::TtlExceeded => &mut self.ttl_exceeded,
            Drop::NoRoute => &mut self.no_route,
            Drop::Blackholed => &mut self.blackholed,
            Drop::Rejected => &mut self.rejected,
            Drop::TooBig => &mut self.too_big,
            Drop::NeighborUnreachable => &mut self.neighbor_unreachable,
            Drop::NeighborOverflow => &mut self.neighbor_overflow,
            Drop::Hook => &mut self.hook,
        };
        *c += 1;
    }
}

/// Errors configuring a router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no interface {0:?}")]
    NoInterface(IfIndex),
    #[error("next hop {gateway} of {prefix} is not on a connected subnet")]
    UnreachableGateway { prefix: Ipv4Net, gateway: Ipv4Addr },
}

/// A packet for the node's own stack.
#[derive(Debug)]
pub struct Delivered {
    pub in_if: IfIndex,
    /// The IPv4 packet, trimmed to its total length.
    pub packet: Vec<u8>,
}

/// The IPv4 router of a node.
#[derive(Debug)]
pub struct Router {
    config: Config,
    ifaces: Vec<Interface>,
    fib: Fib,
    neighbors: NeighborCache,
    outbox: VecDeque<(IfIndex, Vec<u8>)>,
    counters: Counters,
    /// IPv4 identification of the packets the router itself builds.
    ident: u16,
}

impl Router {
    pub fn new(config: Config) -> Router {
        Router {
            neighbors: NeighborCache::new(config.neighbor_limit, config.pending_limit),
            config,
            ifaces: Vec::new(),
            fib: Fib::new(),
            outbox: VecDeque::new(),
            counters: Counters::default(),
            ident: 0,
        }
    }

    /// Adds an interface and the connected route to its subnet.
    pub fn add_interface(&mut self, iface: Interface) -> IfIndex {
        let index = IfIndex(self.ifaces.len());
        self.fib.insert(
            iface.addr.trunc(),
            Route::new(index, None, Origin::Connected),
        );
        self.ifaces.push(iface);
        index
    }

    /// Adds a static route via `gateway`, which must be on a connected subnet.
    pub fn add_route(&mut self, prefix: Ipv4Net, gateway: Ipv4Addr) -> Result<(), ConfigError> {
        let iface = self
            .ifaces
            .iter()
            .position(|i| i.addr.contains(&gateway) && i.addr.addr() != gateway)
            .ok_or(ConfigError::UnreachableGateway { prefix, gateway })?;
        self.fib.insert(
            prefix,
            Route::new(IfIndex(iface), Some(gateway), Origin::Static),
        );
        Ok(())
    }

    /// Adds a static route that discards what it matches (see [`RouteKind`]).
    pub fn add_discard(&mut self, prefix: Ipv4Net, kind: RouteKind) {
        self.fib
            .insert(prefix.trunc(), Route::discard(kind, Origin::Static));
    }

    /// Installs a route from a routing protocol, over one gateway or several of equal
    /// cost, unless a more preferred origin already has the prefix. Gateways not on a
    /// connected subnet are skipped; returns whether a route was installed.
    pub fn install(&mut self, prefix: Ipv4Net, gateways: &[Ipv4Addr], origin: Origin) -> bool {
        let prefix = prefix.trunc();
        if self.fib.get(prefix).is_some_and(|r| r.origin < origin) {
            return false;
        }
        let hops: Vec<(IfIndex, Ipv4Addr)> = gateways
            .iter()
            .filter_map(|g| {
                self.ifaces
                    .iter()
                    .position(|i| i.addr.contains(g) && i.addr.addr() != *g)
                    .map(|i| (IfIndex(i), *g))
            })
            .collect();
        match Route::multipath(&hops, origin) {
            Some(route) => {
                self.fib.insert(prefix, route);
                true
            }
            None => false,
        }
    }

    /// Removes the route to `prefix` if `origin` installed it.
    pub fn uninstall(&mut self, prefix: Ipv4Net, origin: Origin) -> bool {
        let prefix = prefix.trunc();
        if self.fib.get(prefix).is_some_and(|r| r.origin == origin) {
            self.fib.remove(prefix);
            true
        } else {
            false
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }

    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    pub fn fib_mut(&mut self) -> &mut Fib {
        &mut self.fib
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Resolved neighbours: interface, address, MAC.
    pub fn neighbors(&self, now: Duration) -> Vec<(IfIndex, Ipv4Addr, EthernetAddress)> {
        self.neighbors.resolved(now)
    }

    fn is_local(&self, dst: Ipv4Addr) -> bool {
        dst.is_broadcast()
            || self.ifaces.iter().any(|i| {
                i.addr.addr() == dst || (i.addr.prefix_len() < 31 && i.addr.broadcast() == dst)
            })
    }

    /// Whether a hook let the packet through; counts it if not.
    fn passes(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Accept => true,
            Verdict::Drop => {
                self.counters.count(Drop::Hook);
                false
            }
            Verdict::Consumed => {
                self.counters.consumed += 1;
                false
            }
        }
    }

    /// Takes a frame received on `in_if`. Returns the packet if it is for this node;
    /// anything to send as a result waits in [`Router::poll_transmit`].
    pub fn receive<H: Hooks>(
        &mut self,
        now: Duration,
        in_if: IfIndex,
        mut frame: Vec<u8>,
        hooks: &mut H,
    ) -> Option<Delivered> {
        self.counters.rx_frames += 1;
        let Some(iface) = self.ifaces.get(in_if.0) else {
            self.counters.count(Drop::Unsupported);
            return None;
        };
        if frame.len() < ETHERNET_HEADER_LEN {
            self.counters.count(Drop::Malformed);
            return None;
        }
        let dst_mac = EthernetAddress::from_bytes(&frame[0..6]);
        if dst_mac != iface.mac && !dst_mac.is_broadcast() {
            self.counters.count(Drop::OtherHost);
            return None;
        }
        match u16::from_be_bytes([frame[12], frame[13]]) {
            ETHERTYPE_ARP => {
                self.receive_arp(now, in_if, &frame[ETHERNET_HEADER_LEN..]);
                None
            }
            ETHERTYPE_IPV4 => {
                let mut layout = match Ipv4Layout::parse(&frame[ETHERNET_HEADER_LEN..]) {
                    Ok(l) => l,
                    Err(_) => {
                        self.counters.count(Drop::Malformed);
                        return None;
                    }
                };
                // Ethernet pads short frames; the IP total length says where the packet ends.
                frame.truncate(ETHERNET_HEADER_LEN + layout.total_len);
                let verdict = hooks.pre_routing(now, in_if, &layout, &mut frame);
                if !self.passes(verdict) {
                    return None;
                }
                // A hook (DNAT) may have rewritten the addresses, never the length.
                let Some(addrs) = frame.get(ETHERNET_HEADER_LEN + 12..ETHERNET_HEADER_LEN + 20)
                else {
                    self.counters.count(Drop::Malformed);
                    return None;
                };
                layout.src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
                layout.dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
                let dst = layout.dst;
                if self.is_local(dst) {
                    self.counters.local += 1;
                    frame.drain(..ETHERNET_HEADER_LEN);
                    return Some(Delivered {
                        in_if,
                        packet: frame,
                    });
                }
                if !self.config.forwarding {
                    self.counters.count(Drop::NotForwarding);
                    return None;
                }
                self.forward(now, in_if, &layout, frame, hooks);
                None
            }
            _ => {
                self.counters.count(Drop::Unsupported);
                None
            }
        }
    }

    fn forward<H: Hooks>(
        &mut self,
        now: Duration,
        in_if: IfIndex,
        layout: &Ipv4Layout,
        mut frame: Vec<u8>,
        hooks: &mut H,
    ) {
        let dst = layout.dst;
        if layout.ttl <= 1 {
            self.counters.count(Drop::TtlExceeded);
            self.icmp_error(now, in_if, &frame, icmp::TIME_EXCEEDED, 0, 0, hooks);
            return;
        }
        let Some((_, route)) = self.fib.lookup(dst) else {
            self.counters.count(Drop::NoRoute);
            self.icmp_error(
                now,
                in_if,
                &frame,
                icmp::UNREACHABLE,
                icmp::NET_UNREACHABLE,
                0,
                hooks,
            );
            return;
        };
        match route.kind {
            RouteKind::Forward => {}
            RouteKind::Blackhole => {
                self.counters.count(Drop::Blackholed);
                return;
            }
            RouteKind::Reject => {
                self.counters.count(Drop::Rejected);
                self.icmp_error(
                    now,
                    in_if,
                    &frame,
                    icmp::UNREACHABLE,
                    icmp::HOST_UNREACHABLE,
                    0,
                    hooks,
                );
                return;
            }
        }
        let (out_if, gateway) = if route.is_multipath() {
            route.pick(ecmp_hash(&frame[ETHERNET_HEADER_LEN..]))
        } else {
            (route.iface, route.gateway)
        };
        let ip = &mut frame[ETHERNET_HEADER_LEN..];
        let verdict = hooks.post_routing(now, Some(in_if), out_if, layout, ip);
        if !self.passes(verdict) {
            return;
        }
        let mtu = self.ifaces[out_if.0].mtu;
        if ip.len() > mtu {
            self.counters.count(Drop::TooBig);
            let dont_frag = ip[6] & 0x40 != 0;
            if dont_frag {
                self.icmp_error(
                    now,
                    in_if,
                    &frame,
                    icmp::UNREACHABLE,
                    icmp::FRAG_NEEDED,
                    mtu as u32,
                    hooks,
                );
            }
            return;
        }
        // TTL and protocol share a 16-bit word of the header checksum.
        let old = u16::from_be_bytes([ip[8], ip[9]]);
        ip[8] -= 1;
        let new = u16::from_be_bytes([ip[8], ip[9]]);
        let check = u16::from_be_bytes([ip[10], ip[11]]);
        ip[10..12].copy_from_slice(&strata_wire::checksum::update16(check, old, new).to_be_bytes());
        self.counters.forwarded += 1;
        self.transmit(now, out_if, gateway.unwrap_or(dst), frame, hooks);
    }

    /// Sends an IPv4 packet the node's own stack built.
    pub fn send<H: Hooks>(&mut self, now: Duration, packet: &[u8], hooks: &mut H) {
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + packet.len()];
        frame[ETHERNET_HEADER_LEN..].copy_from_slice(packet);
        self.send_frame(now, frame, hooks);
    }

    /// Sends the IPv4 packet at [`ETHERNET_HEADER_LEN`] in `frame` as the node's own (the
    /// bytes before it become the Ethernet header): [`Router::send`] without a copy, for
    /// a packet a hook built in the frame it took.
    pub fn send_frame<H: Hooks>(&mut self, now: Duration, mut frame: Vec<u8>, hooks: &mut H) {
        let layout = match frame.get(ETHERNET_HEADER_LEN..).map(Ipv4Layout::parse) {
            Some(Ok(l)) => l,
            _ => {
                self.counters.count(Drop::Malformed);
                return;
            }
        };
        frame.truncate(ETHERNET_HEADER_LEN + layout.total_len);
        let route = if layout.dst.is_broadcast() {
            // Limited broadcast leaves by the first interface (no route needed).
            self.ifaces
                .first()
                .map(|_| (RouteKind::Forward, IfIndex(0), None))
        } else {
            self.fib.lookup(layout.dst).map(|(_, r)| {
                let (out_if, gateway) = if r.is_multipath() {
                    r.pick(ecmp_hash(&frame[ETHERNET_HEADER_LEN..]))
                } else {
                    (r.iface, r.gateway)
                };
                (r.kind, out_if, gateway)
            })
        };
        let Some((kind, out_if, gateway)) = route else {
            self.counters.count(Drop::NoRoute);
            return;
        };
        match kind {
            RouteKind::Forward => {}
            RouteKind::Blackhole => return self.counters.count(Drop::Blackholed),
            RouteKind::Reject => return self.counters.count(Drop::Rejected),
        }
        let verdict = hooks.post_routing(
            now,
            None,
            out_if,
            &layout,
            &mut frame[ETHERNET_HEADER_LEN..],
        );
        if !self.passes(verdict) {
            return;
        }
        self.counters.originated += 1;
        self.transmit(now, out_if, gateway.unwrap_or(layout.dst), frame, hooks);
    }

    /// Puts the Ethernet header on and sends, or waits for ARP.
    fn transmit<H: Hooks>(
        &mut self,
        now: Duration,
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        mut frame: Vec<u8>,
        hooks: &mut H,
    ) {
        let iface = &self.ifaces[out_if.0];
        frame[6..12].copy_from_slice(iface.mac.as_bytes());
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        if next_hop.is_broadcast()
            || (iface.addr.prefix_len() < 31 && next_hop == iface.addr.broadcast())
        {
            frame[0..6].copy_from_slice(&[0xff; 6]);
            self.outbox.push_back((out_if, frame));
            return;
        }
        if let Some(mac) = self.neighbors.lookup(now, out_if, next_hop) {
            frame[0..6].copy_from_slice(mac.as_bytes());
            self.outbox.push_back((out_if, frame));
            return;
        }
        match self.neighbors.enqueue(now, out_if, next_hop, frame) {
            Enqueued::Resolve => self.arp_request(out_if, next_hop),
            Enqueued::Waiting => {}
            Enqueued::DroppedOldest => self.counters.count(Drop::NeighborOverflow),
            Enqueued::Refused(frame) => {
                self.counters.count(Drop::NeighborUnreachable);
                self.icmp_error_from_out(now, out_if, &frame, hooks);
            }
        }
    }

    fn receive_arp(&mut self, now: Duration, in_if: IfIndex, arp: &[u8]) {
        let Ok(packet) = strata_wire::ArpPacket::new_checked(arp) else {
            self.counters.count(Drop::Malformed);
            return;
        };
        let Ok(strata_wire::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = strata_wire::ArpRepr::parse(&packet)
        else {
            self.counters.count(Drop::Malformed);
            return;
        };
        let iface = &self.ifaces[in_if.0];
        let for_us = target_protocol_addr == iface.addr.addr();
        if !source_hardware_addr.is_unicast() || !iface.addr.contains(&source_protocol_addr) {
            // Not a neighbour on this link; answer nothing, learn nothing.
            return;
        }
        let released = self.neighbors.learn(
            now,
            in_if,
            source_protocol_addr,
            source_hardware_addr,
            for_us,
        );
        for mut frame in released {
            frame[0..6].copy_from_slice(source_hardware_addr.as_bytes());
            self.outbox.push_back((in_if, frame));
        }
        if for_us && operation == strata_wire::ArpOperation::Request {
            let reply = strata_wire::ArpRepr::EthernetIpv4 {
                operation: strata_wire::ArpOperation::Reply,
                source_hardware_addr: iface.mac,
                source_protocol_addr: iface.addr.addr(),
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            let frame = arp_frame(iface.mac, source_hardware_addr, &reply);
            self.counters.arp_replies_sent += 1;
            self.outbox.push_back((in_if, frame));
        }
    }

    fn arp_request(&mut self, out_if: IfIndex, target: Ipv4Addr) {
        let iface = &self.ifaces[out_if.0];
        let request = strata_wire::ArpRepr::EthernetIpv4 {
            operation: strata_wire::ArpOperation::Request,
            source_hardware_addr: iface.mac,
            source_protocol_addr: iface.addr.addr(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let frame = arp_frame(iface.mac, EthernetAddress::BROADCAST, &request);
        self.counters.arp_requests_sent += 1;
        self.outbox.push_back((out_if, frame));
    }

    /// Sends an ICMP error about the frame `offending` (with its Ethernet header) that
    /// arrived on `in_if`, from that interface's address.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error<H: Hooks>(
        &mut self,
        now: Duration,
        in_if: IfIndex,
        offending: &[u8],
        kind: u8,
        code: u8,
        mtu: u32,
        hooks: &mut H,
    ) {
        let from = self.ifaces[in_if.0].addr.addr();
        self.ident = self.ident.wrapping_add(1);
        if let Some(packet) = icmp::error(
            from,
            self.config.default_ttl,
            self.ident,
            &offending[ETHERNET_HEADER_LEN..],
            kind,
            code,
            mtu,
        ) {
            self.counters.icmp_errors_sent += 1;
            self.send(now, &packet, hooks);
        }
    }

    /// Host unreachable for a frame whose next hop did not resolve. The frame was routed,
    /// so its interface of arrival is unknown; the error comes from the outgoing one.
    fn icmp_error_from_out<H: Hooks>(
        &mut self,
        now: Duration,
        out_if: IfIndex,
        frame: &[u8],
        hooks: &mut H,
    ) {
        self.icmp_error(
            now,
            out_if,
            frame,
            icmp::UNREACHABLE,
            icmp::HOST_UNREACHABLE,
            0,
            hooks,
        );
    }

    /// Runs timers: ARP retransmission and failure.
    pub fn poll<H: Hooks>(&mut self, now: Duration, hooks: &mut H) {
        let expired = self.neighbors.poll(now);
        for (iface, ip) in expired.probe {
            self.arp_request(iface, ip);
        }
        for (iface, frame) in expired.unreachable {
            self.counters.count(Drop::NeighborUnreachable);
            self.icmp_error_from_out(now, iface, &frame, hooks);
        }
    }

    /// When [`Router::poll`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        self.neighbors.poll_at()
    }

    /// The next frame to send and the interface to send it on.
    pub fn poll_transmit(&mut self) -> Option<(IfIndex, Vec<u8>)> {
        self.outbox.pop_front()
    }
}

/// The ECMP hash of a packet: the Toeplitz hash of its addresses and ports (addresses
/// alone for fragments and other protocols), so a flow keeps one next hop.
fn ecmp_hash(ip: &[u8]) -> u32 {
    let Ok(layout) = Ipv4Layout::parse(ip) else {
        return 0;
    };
    let mut input = [0u8; 12];
    input[0..4].copy_from_slice(&layout.src.octets());
    input[4..8].copy_from_slice(&layout.dst.octets());
    match layout.flow_key(ip) {
        Ok(k)
            if matches!(
                k.proto,
                strata_wire::flow::proto::TCP | strata_wire::flow::proto::UDP
            ) =>
        {
            input[8..10].copy_from_slice(&k.src_port.to_be_bytes());
            input[10..12].copy_from_slice(&k.dst_port.to_be_bytes());
            strata_wire::toeplitz::toeplitz(&input)
        }
        _ => strata_wire::toeplitz::toeplitz(&input[..8]),
    }
}

fn arp_frame(src: EthernetAddress, dst: EthernetAddress, repr: &strata_wire::ArpRepr) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER_LEN + repr.buffer_len()];
    frame[0..6].copy_from_slice(dst.as_bytes());
    frame[6..12].copy_from_slice(src.as_bytes());
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    repr.emit(&mut strata_wire::ArpPacket::new_unchecked(
        &mut frame[ETHERNET_HEADER_LEN..],
    ));
    frame
}

#[cfg(test)]
mod tests;
