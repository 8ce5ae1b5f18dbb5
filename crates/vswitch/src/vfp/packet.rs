//! What VFP sees of a frame: the metadata rules match on and flows are keyed by.

use std::net::{IpAddr, Ipv4Addr};

use strata_wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, Header};
use strata_wire::flow::{FlowKey, FlowKey6, Ipv4Layout, Ipv6Layout, proto};
use strata_wire::vxlan::{self, Vni};
use strata_wire::{ETHERNET_HEADER_LEN, EthernetAddress};

/// An IP version: groups hold the rules of one (as VFP's groups are IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// A packet's flow, IPv4 or IPv6. An IPv4 flow keeps its 13-byte key, so the flow table
/// of an IPv4 port hashes no more than it did before IPv6 came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    V4(FlowKey),
    V6(FlowKey6),
}

impl Flow {
    pub fn family(&self) -> Family {
        match self {
            Flow::V4(_) => Family::Ipv4,
            Flow::V6(_) => Family::Ipv6,
        }
    }

    pub fn proto(&self) -> u8 {
        match self {
            Flow::V4(k) => k.proto,
            Flow::V6(k) => k.proto,
        }
    }

    pub fn src(&self) -> IpAddr {
        match self {
            Flow::V4(k) => k.src.into(),
            Flow::V6(k) => k.src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            Flow::V4(k) => k.dst.into(),
            Flow::V6(k) => k.dst.into(),
        }
    }

    pub fn src_port(&self) -> u16 {
        match self {
            Flow::V4(k) => k.src_port,
            Flow::V6(k) => k.src_port,
        }
    }

    pub fn dst_port(&self) -> u16 {
        match self {
            Flow::V4(k) => k.dst_port,
            Flow::V6(k) => k.dst_port,
        }
    }

    /// The flow of the replies.
    pub fn reversed(&self) -> Flow {
        match self {
            Flow::V4(k) => Flow::V4(k.reversed()),
            Flow::V6(k) => Flow::V6(k.reversed()),
        }
    }

    /// The flow with its destination (or, if not `destination`, its source) address and
    /// port rewritten; `None` when `addr` is of the other family (VFP does not translate
    /// between families).
    pub fn rewritten(&self, destination: bool, addr: IpAddr, port: Option<u16>) -> Option<Flow> {
        let mut f = *self;
        match (&mut f, addr) {
            (Flow::V4(k), IpAddr::V4(a)) => {
                let (ip, p) = if destination {
                    (&mut k.dst, &mut k.dst_port)
                } else {
                    (&mut k.src, &mut k.src_port)
                };
                *ip = a;
                *p = port.unwrap_or(*p);
            }
            (Flow::V6(k), IpAddr::V6(a)) => {
                let (ip, p) = if destination {
                    (&mut k.dst, &mut k.dst_port)
                } else {
                    (&mut k.src, &mut k.src_port)
                };
                *ip = a;
                *p = port.unwrap_or(*p);
            }
            _ => return None,
        }
        Some(f)
    }

    /// A 32-bit mix of the flow's fields: the entropy of an outer UDP source port.
    pub fn entropy(&self) -> u32 {
        let fold = |a: IpAddr| match a {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => {
                let b = a.octets();
                (0..4).fold(0, |acc, i| {
                    acc ^ u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
                })
            }
        };
        u32::from(self.src_port())
            ^ u32::from(self.dst_port())
            ^ fold(self.src())
            ^ fold(self.dst())
    }
}

impl std::fmt::Display for Flow {
    /// `tcp 10.0.0.1:80 > 10.0.0.2:4000`; `icmp 10.0.0.1 > 10.0.0.2 id 7` (an echo's
    /// identifier stands in for the ports); IPv6 addresses in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = |a: IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        match self.proto() {
            1 | 58 => write!(
                f,
                "{} {} > {} id {}",
                if self.proto() == 1 { "icmp" } else { "icmpv6" },
                self.src(),
                self.dst(),
                self.src_port()
            ),
            proto => {
                match proto {
                    6 => f.write_str("tcp")?,
                    17 => f.write_str("udp")?,
                    other => write!(f, "proto {other}")?,
                }
                write!(
                    f,
                    " {} > {}",
                    ep(self.src(), self.src_port()),
                    ep(self.dst(), self.dst_port())
                )
            }
        }
    }
}

/// The direction of a packet relative to the VM of the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the network toward the VM.
    In,
    /// From the VM toward the network.
    Out,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// The VXLAN encapsulation around a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Encap {
    /// Outer source and destination: provider addresses.
    pub src_pa: Ipv4Addr,
    pub dst_pa: Ipv4Addr,
    pub vni: Vni,
    /// Bytes of outer Ethernet, IPv4, UDP and VXLAN in front of the inner frame.
    pub len: usize,
}

/// Where the pieces of the (inner) IP packet sit, as parsing validated them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpLayout {
    V4(Ipv4Layout),
    V6(Ipv6Layout),
}

impl IpLayout {
    /// The transport header's offset and the packet's end, from the IP header.
    pub fn l4(&self) -> (usize, usize) {
        match self {
            IpLayout::V4(l) => (l.header_len, l.total_len),
            IpLayout::V6(l) => (l.l4_offset, l.total_len),
        }
    }
}

/// The headers of a frame as VFP matches them. With encapsulation, the addresses are the
/// inner frame's.
///
/// Parsing validates the frame once; applying a flow's transposition to the same frame
/// uses the offsets found here instead of parsing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub encap: Option<Encap>,
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub flow: Flow,
    pub tcp_flags: u8,
    /// Where the IP header starts in the (inner) frame: after its Ethernet header and
    /// any VLAN tag.
    pub l3_offset: usize,
    pub ip: IpLayout,
}

/// Why VFP could not read a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("neither IPv4 nor IPv6")]
    NotIp,
    #[error("malformed: {0}")]
    Malformed(strata_wire::Error),
}

impl Metadata {
    /// Reads a frame, looking inside VXLAN (UDP port 4789 over IPv4) if it is
    /// encapsulated (once: VXLAN inside VXLAN is read as the outer packet alone).
    #[inline(always)]
    pub fn parse(frame: &[u8]) -> Result<Metadata, ParseError> {
        match Metadata::parse_common(frame) {
            Some(m) => Ok(m),
            None => Metadata::parse_general(frame),
        }
    }

    /// [`Self::parse`] of any frame.
    #[inline(never)]
    pub(super) fn parse_general(frame: &[u8]) -> Result<Metadata, ParseError> {
        let outer = Metadata::parse_plain(frame)?;
        let Some(len) = outer.vxlan_len(frame) else {
            return Ok(outer);
        };
        let IpLayout::V4(layout) = outer.ip else {
            return Ok(outer);
        };
        let inner_frame = &frame[len..];
        // The VNI was read by `vxlan_len`.
        let Ok((vni, _)) = vxlan::parse(&frame[len - vxlan::HEADER_LEN..]) else {
            return Ok(outer);
        };
        let inner = Metadata::parse_plain(inner_frame)?;
        if inner.vxlan_len(inner_frame).is_some() {
            return Ok(outer);
        }
        Ok(Metadata {
            encap: Some(Encap {
                src_pa: layout.src,
                dst_pa: layout.dst,
                vni,
                len,
            }),
            ..inner
        })
    }

    /// The common case, read at fixed offsets into one value: an untagged Ethernet frame
    /// of IPv4 TCP or UDP (not a later fragment), alone or inside VXLAN over such a
    /// frame. It gives exactly what the general reading below gives, or `None` to leave
    /// the frame to it (a VLAN tag, IPv6, ICMP, anything malformed or unusual).
    #[inline(always)]
    pub(super) fn parse_common(frame: &[u8]) -> Option<Metadata> {
        let outer = Common::read(frame)?;
        if !outer.is_vxlan() {
            return Some(outer.metadata(None));
        }
        let udp = &frame[ETHERNET_HEADER_LEN + outer.layout.header_len..][..outer.l4_len()];
        let (vni, _) = vxlan::parse(udp.get(8..)?).ok()?;
        let len = ETHERNET_HEADER_LEN + outer.layout.header_len + 8 + vxlan::HEADER_LEN;
        let inner = Common::read(&frame[len..])?;
        if inner.is_vxlan() {
            return None;
        }
        Some(inner.metadata(Some(Encap {
            src_pa: outer.layout.src,
            dst_pa: outer.layout.dst,
            vni,
            len,
        })))
    }

    /// Where the inner frame starts, if this IPv4 packet is VXLAN (UDP to port 4789 with
    /// a valid VXLAN header).
    #[inline(always)]
    fn vxlan_len(&self, frame: &[u8]) -> Option<usize> {
        let (IpLayout::V4(layout), Flow::V4(flow)) = (&self.ip, &self.flow) else {
            return None;
        };
        if flow.proto != proto::UDP || flow.dst_port != vxlan::UDP_PORT {
            return None;
        }
        let udp =
            frame.get(self.l3_offset + layout.header_len..self.l3_offset + layout.total_len)?;
        if udp.len() < 8 {
            return None;
        }
        vxlan::parse(&udp[8..]).ok()?;
        Some(self.l3_offset + layout.header_len + 8 + vxlan::HEADER_LEN)
    }

    /// Reads a frame's Ethernet and IP headers, whatever it carries.
    #[inline(always)]
    fn parse_plain(frame: &[u8]) -> Result<Metadata, ParseError> {
        let (eth, off) = Header::parse(frame).map_err(ParseError::Malformed)?;
        let ip = &frame[off..];
        match eth.ethertype {
            ETHERTYPE_IPV4 => {
                let layout = Ipv4Layout::parse(ip).map_err(ParseError::Malformed)?;
                let flow = layout.flow_key(ip).map_err(ParseError::Malformed)?;
                Ok(Metadata {
                    encap: None,
                    eth_src: eth.src,
                    eth_dst: eth.dst,
                    flow: Flow::V4(flow),
                    tcp_flags: tcp_flags(flow.proto, ip, layout.header_len),
                    l3_offset: off,
                    ip: IpLayout::V4(layout),
                })
            }
            ETHERTYPE_IPV6 => {
                let layout = Ipv6Layout::parse(ip).map_err(ParseError::Malformed)?;
                let flow = layout.flow_key(ip).map_err(ParseError::Malformed)?;
                Ok(Metadata {
                    encap: None,
                    eth_src: eth.src,
                    eth_dst: eth.dst,
                    flow: Flow::V6(flow),
                    tcp_flags: tcp_flags(flow.proto, ip, layout.l4_offset),
                    l3_offset: off,
                    ip: IpLayout::V6(layout),
                })
            }
            _ => Err(ParseError::NotIp),
        }
    }
}

/// An untagged Ethernet frame of IPv4 TCP or UDP, as [`Metadata::parse_common`] reads it.
struct Common {
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    layout: Ipv4Layout,
    flow: FlowKey,
    tcp_flags: u8,
}

impl Common {
    /// The frame's headers, if it is of the common shape and valid.
    #[inline(always)]
    fn read(frame: &[u8]) -> Option<Common> {
        let ethertype = frame.get(12..ETHERNET_HEADER_LEN)?;
        if ethertype != ETHERTYPE_IPV4.to_be_bytes() {
            return None;
        }
        let ip = &frame[ETHERNET_HEADER_LEN..];
        let layout = Ipv4Layout::parse(ip).ok()?;
        if !matches!(layout.proto, proto::TCP | proto::UDP) {
            return None;
        }
        let flow = layout.flow_key(ip).ok()?;
        Some(Common {
            eth_dst: EthernetAddress::from_bytes(&frame[0..6]),
            eth_src: EthernetAddress::from_bytes(&frame[6..12]),
            layout,
            flow,
            tcp_flags: tcp_flags(flow.proto, ip, layout.header_len),
        })
    }

    /// Bytes of the transport header and payload.
    fn l4_len(&self) -> usize {
        self.layout.total_len - self.layout.header_len
    }

    fn is_vxlan(&self) -> bool {
        self.flow.proto == proto::UDP && self.flow.dst_port == vxlan::UDP_PORT
    }

    #[inline(always)]
    fn metadata(&self, encap: Option<Encap>) -> Metadata {
        Metadata {
            encap,
            eth_src: self.eth_src,
            eth_dst: self.eth_dst,
            flow: Flow::V4(self.flow),
            tcp_flags: self.tcp_flags,
            l3_offset: ETHERNET_HEADER_LEN,
            ip: IpLayout::V4(self.layout),
        }
    }
}

/// The flags of a TCP segment whose header starts at `l4`; 0 for other protocols.
fn tcp_flags(protocol: u8, ip: &[u8], l4: usize) -> u8 {
    if protocol == proto::TCP {
        ip.get(l4 + 13).copied().unwrap_or(0)
    } else {
        0
    }
}
