//! What VFP sees of a frame: the metadata rules match on and flows are keyed by.

use std::net::Ipv4Addr;

use strata_wire::EthernetAddress;
use strata_wire::ethernet::{ETHERTYPE_IPV4, Header};
use strata_wire::flow::{FlowKey, Ipv4Layout, proto};
use strata_wire::vxlan::{self, Vni};

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

/// The headers of a frame as VFP matches them. With encapsulation, the addresses are the
/// inner frame's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub encap: Option<Encap>,
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub flow: FlowKey,
    pub tcp_flags: u8,
}

/// Why VFP could not read a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an IPv4 frame")]
    NotIpv4,
    #[error("malformed: {0}")]
    Malformed(strata_wire::Error),
}

impl Metadata {
    /// Reads a frame, looking inside VXLAN (UDP port 4789) if it is encapsulated.
    pub fn parse(frame: &[u8]) -> Result<Metadata, ParseError> {
        let (eth, off) = Header::parse(frame).map_err(ParseError::Malformed)?;
        if eth.ethertype != ETHERTYPE_IPV4 {
            return Err(ParseError::NotIpv4);
        }
        let ip = &frame[off..];
        let layout = Ipv4Layout::parse(ip).map_err(ParseError::Malformed)?;
        let flow = layout.flow_key(ip).map_err(ParseError::Malformed)?;
        if flow.proto == proto::UDP && flow.dst_port == vxlan::UDP_PORT {
            let udp = &ip[layout.header_len..layout.total_len];
            if udp.len() >= 8
                && let Ok((vni, inner_frame)) = vxlan::parse(&udp[8..])
            {
                let len = off + layout.header_len + 8 + vxlan::HEADER_LEN;
                let inner = Metadata::parse(inner_frame)?;
                if inner.encap.is_none() {
                    return Ok(Metadata {
                        encap: Some(Encap {
                            src_pa: layout.src,
                            dst_pa: layout.dst,
                            vni,
                            len,
                        }),
                        ..inner
                    });
                }
            }
        }
        let tcp_flags = if flow.proto == proto::TCP {
            ip.get(layout.header_len + 13).copied().unwrap_or(0)
        } else {
            0
        };
        Ok(Metadata {
            encap: None,
            eth_src: eth.src,
            eth_dst: eth.dst,
            flow,
            tcp_flags,
        })
    }
}
