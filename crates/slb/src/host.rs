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
//!
//! Everything else passes (the ACL layers of the Network Controller are another issue).

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use strata_vswitch::vfp::{Action, Conditions, Direction, Family, Group, Layer, NatSpec, Rule};
use strata_wire::vxlan::Vni;

use crate::mux::VipKey;

/// Name of the decapsulation layer.
pub const DECAP_LAYER: &str = "SLB_DECAP";
/// Name of the NAT layer.
pub const NAT_LAYER: &str = "SLB_NAT";

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

/// The layers for a DIP's port (IPv4 groups: the VIPs and DIPs of the SLB are IPv4).
pub fn dip_layers(dip: Ipv4Addr, vni: Vni, mappings: &[DipMapping]) -> Vec<Layer> {
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
    vec![decap, nat]
}
