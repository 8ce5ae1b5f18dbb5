//! The SLB host agent's policy: the VFP layers it programs on a DIP's switch port.
//!
//! - `SLB_DECAP` (network side): inbound VXLAN from the Muxes with the VIP's VNI is
//!   decapsulated.
//! - `SLB_NAT`: inbound traffic to VIP:frontendPort is rewritten to DIP:backendPort, one
//!   rule per loadBalancingRule or inboundNatRule that has this DIP. The rewrite is
//!   stateful, so the DIP's replies leave with VIP:frontendPort as their source and go
//!   straight to the client's router: direct server return.
//!
//! - MSS clamping: TCP SYNs of those flows (and their SYN-ACKs) carry at most
//!   [`CLAMPED_MSS`], so the clients' segments still fit the path once the Mux
//!   encapsulates them.
//! - `SLB_SNAT` (between the two): outbound connections of a DIP with an outboundNatRule
//!   leave with the VIP and a port of the DIP's ranges as their source, straight to the
//!   router; their replies come back through a Mux in VXLAN, are decapsulated, and find
//!   the connection in this layer's state. Destinations in the DIP's own networks are
//!   exempt (`exempt`): that traffic stays between the VMs.
//!
//! Everything else passes (the ACL layers of the Network Controller are another issue).

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use strata_vswitch::vfp::{
    Action, Conditions, Direction, Family, Group, Layer, NatSpec, Rule, SnatSpec,
};
use strata_wire::vxlan::Vni;

use crate::mux::VipKey;

/// Name of the decapsulation layer.
pub const DECAP_LAYER: &str = "SLB_DECAP";
/// Name of the NAT layer.
pub const NAT_LAYER: &str = "SLB_NAT";
/// Name of the outbound NAT layer.
pub const SNAT_LAYER: &str = "SLB_SNAT";

/// A DIP's outbound NAT: its connections of `protocols` leave as `vip`, with ports of
/// `ranges` (the first port of each 8-port range), except to `exempt` destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundNat {
    pub name: String,
    pub vip: Ipv4Addr,
    pub protocols: Vec<u8>,
    pub ranges: Vec<u16>,
    pub exempt: Vec<Ipv4Net>,
}

/// One VIP mapping that lands on a DIP: traffic to `vip` is rewritten to the DIP's
/// `backend_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DipMapping {
    /// The rule's name, shown by `vfpctrl`-style listings.
    pub name: String,
    pub vip: VipKey,
    pub backend_port: u16,
}

/// The MSS the host agent clamps TCP SYNs to on a DIP port: a 1500-byte path less the
/// VXLAN overhead (50) and the IPv4 and TCP headers (40), so encapsulated segments from
/// clients still fit.
pub const CLAMPED_MSS: u16 = 1500 - strata_wire::vxlan::OVERHEAD_IPV4 as u16 - 40;

/// The SNAT layer for a DIP's outbound rules (none without one).
pub fn snat_layer(dip: Ipv4Addr, outbound: &[OutboundNat]) -> Option<Layer> {
    if outbound.is_empty() {
        return None;
    }
    let mut rules = Vec::new();
    for (i, o) in outbound.iter().enumerate() {
        if !o.exempt.is_empty() {
            rules.push(Rule {
                name: format!("{}-exempt", o.name),
                priority: 1,
                conditions: Conditions {
                    src: vec![IpNet::V4(Ipv4Net::from(dip))],
                    dst: o.exempt.iter().map(|n| IpNet::V4(*n)).collect(),
                    ..Conditions::any()
                },
                action: Action::Allow,
            });
        }
        for &proto in &o.protocols {
            rules.push(Rule {
                name: format!("{}-{}", o.name, if proto == 6 { "tcp" } else { "udp" }),
                priority: 10 + i as u16,
                conditions: Conditions {
                    src: vec![IpNet::V4(Ipv4Net::from(dip))],
                    proto: Some(proto),
                    ..Conditions::any()
                },
                action: Action::Snat(SnatSpec {
                    vip: o.vip.into(),
                    ranges: o.ranges.clone(),
                }),
            });
        }
    }
    Some(Layer {
        name: SNAT_LAYER.into(),
        priority: 150,
        groups: vec![Group {
            name: "outbound".into(),
            direction: Direction::Out,
            family: Family::Ipv4,
            priority: 1,
            rules,
        }],
    })
}

/// The layers for a DIP's port (IPv4 groups: the VIPs and DIPs of the SLB are IPv4): the
/// decapsulation, and the NAT of its mappings and the SNAT of its outbound rules where
/// it has them.
pub fn dip_layers(
    dip: Ipv4Addr,
    vni: Vni,
    mappings: &[DipMapping],
    outbound: &[OutboundNat],
) -> Vec<Layer> {
    let decap = Layer {
        name: DECAP_LAYER.into(),
        priority: 100,
        groups: vec![Group {
            name: "in".into(),
            direction: Direction::In,
            family: Family::Ipv4,
            priority: 1,
            rules: vec![Rule {
                name: format!("decap-vni-{vni}"),
                priority: 1,
                conditions: Conditions {
                    encapsulated: Some(true),
                    vni: Some(vni),
                    ..Conditions::any()
                },
                action: Action::Decap,
            }],
        }],
    };
    let rules = mappings
        .iter()
        .enumerate()
        .map(|(i, m)| Rule {
            name: m.name.clone(),
            priority: 10 + i as u16,
            conditions: Conditions {
                dst: vec![IpNet::V4(Ipv4Net::from(m.vip.vip))],
                proto: Some(m.vip.proto),
                dst_ports: (m.vip.proto != strata_wire::flow::proto::ICMP)
                    .then_some(m.vip.port..=m.vip.port),
                encapsulated: Some(false),
                ..Conditions::any()
            },
            action: Action::Nat(NatSpec {
                src: None,
                dst: Some((dip.into(), Some(m.backend_port))),
            }),
        })
        .collect();
    let vips: Vec<IpNet> = mappings
        .iter()
        .map(|m| IpNet::V4(Ipv4Net::from(m.vip.vip)))
        .collect();
    let nat = Layer {
        name: NAT_LAYER.into(),
        priority: 200,
        groups: vec![
            Group {
                name: "vip-to-dip".into(),
                direction: Direction::In,
                family: Family::Ipv4,
                priority: 1,
                rules,
            },
            // Its own group, so it applies alongside the NAT rule, and ahead of it, while the
            // destination is still the VIP. The flow's replies get it too (the SYN-ACK's
            // MSS is what limits the client's segments).
            Group {
                name: "mss-clamp".into(),
                direction: Direction::In,
                family: Family::Ipv4,
                priority: 0,
                rules: vec![Rule {
                    name: format!("clamp-mss-{CLAMPED_MSS}"),
                    priority: 1,
                    conditions: Conditions {
                        dst: vips,
                        proto: Some(strata_wire::flow::proto::TCP),
                        // Only what was decapsulated (or came unencapsulated): a foreign
                        // VNI's frame is not ours to edit.
                        encapsulated: Some(false),
                        ..Conditions::any()
                    },
                    action: Action::ClampMss(CLAMPED_MSS),
                }],
            },
        ],
    };
    let mut layers = vec![decap];
    if !mappings.is_empty() {
        layers.push(nat);
    }
    layers.extend(snat_layer(dip, outbound));
    layers
}
