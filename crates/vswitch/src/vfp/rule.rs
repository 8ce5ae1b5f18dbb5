//! Layers, groups, rules: VFP's policy objects.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use ipnet::IpNet;
use strata_wire::EthernetAddress;
use strata_wire::vxlan::Vni;

use super::packet::{Direction, Family, Metadata};

/// What a rule matches. Empty lists and `None` match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Prefixes of the group's family (a prefix of the other family matches nothing).
    pub src: Vec<IpNet>,
    pub dst: Vec<IpNet>,
    pub proto: Option<u8>,
    pub src_ports: Option<RangeInclusive<u16>>,
    pub dst_ports: Option<RangeInclusive<u16>>,
    /// Whether the frame must (or must not) be VXLAN-encapsulated.
    pub encapsulated: Option<bool>,
    pub vni: Option<Vni>,
}

impl Conditions {
    pub fn any() -> Conditions {
        Conditions::default()
    }

    pub fn matches(&self, m: &Metadata) -> bool {
        let f = &m.flow;
        (self.src.is_empty() || self.src.iter().any(|n| n.contains(&f.src())))
            && (self.dst.is_empty() || self.dst.iter().any(|n| n.contains(&f.dst())))
            && self.proto.is_none_or(|p| p == f.proto())
            && self
                .src_ports
                .as_ref()
                .is_none_or(|r| r.contains(&f.src_port()))
            && self
                .dst_ports
                .as_ref()
                .is_none_or(|r| r.contains(&f.dst_port()))
            && self.encapsulated.is_none_or(|e| e == m.encap.is_some())
            && self.vni.is_none_or(|v| m.encap.is_some_and(|e| e.vni == v))
    }
}

impl std::fmt::Display for Conditions {
    /// `any`, or what must hold: `src 10.0.0.0/8 dst 192.168.133.74/32 tcp dport 80
    /// vxlan vni 4096`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let nets = |v: &[IpNet]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let ports = |r: &RangeInclusive<u16>| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        };
        if !self.src.is_empty() {
            parts.push(format!("src {}", nets(&self.src)));
        }
        if !self.dst.is_empty() {
            parts.push(format!("dst {}", nets(&self.dst)));
        }
        if let Some(p) = self.proto {
            parts.push(match p {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                58 => "icmpv6".to_string(),
                other => format!("proto {other}"),
            });
        }
        if let Some(r) = &self.src_ports {
            parts.push(format!("sport {}", ports(r)));
        }
        if let Some(r) = &self.dst_ports {
            parts.push(format!("dport {}", ports(r)));
        }
        match self.encapsulated {
            Some(true) => parts.push("vxlan".into()),
            Some(false) => parts.push("not vxlan".into()),
            None => {}
        }
        if let Some(v) = self.vni {
            parts.push(format!("vni {v}"));
        }
        if parts.is_empty() {
            f.write_str("any")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// A VXLAN encapsulation to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncapSpec {
    pub src_pa: Ipv4Addr,
    pub dst_pa: Ipv4Addr,
    pub vni: Vni,
    pub outer_src_mac: EthernetAddress,
    pub outer_dst_mac: EthernetAddress,
}

/// An address rewrite; a port of `None` keeps the packet's port. The address must be of
/// the packet's family: a rule that would change it blocks the packet instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NatSpec {
    pub src: Option<(IpAddr, Option<u16>)>,
    pub dst: Option<(IpAddr, Option<u16>)>,
}

/// Source ports are handed out for outbound NAT in ranges of this many contiguous ports
/// (Ananta's figure).
pub const SNAT_RANGE: u16 = 8;

/// Outbound NAT to a VIP: the source becomes the VIP and a port of the ranges the SLB
/// manager gave this port (each [`SNAT_RANGE`] ports from its start). A port serves many
/// connections, as long as their destinations differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnatSpec {
    pub vip: IpAddr,
    /// The first port of each range.
    pub ranges: Vec<u16>,
}

impl SnatSpec {
    /// The ports of the ranges, as `1024-1031,2048-2055`.
    pub fn describe_ranges(&self) -> String {
        if self.ranges.is_empty() {
            return "none".into();
        }
        self.ranges
            .iter()
            .map(|&s| format!("{s}-{}", s.saturating_add(SNAT_RANGE - 1)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    Block,
    /// Remove the VXLAN encapsulation.
    Decap,
    /// Add a VXLAN encapsulation.
    Encap(EncapSpec),
    /// Rewrite addresses and ports. Stateful: the layer keeps what it did, for the
    /// flow's later packets and the inverse for its replies.
    Nat(NatSpec),
    /// Rewrite the source to the VIP and a free port of its ranges. Stateful, as `Nat`;
    /// when no port is free the packet is dropped (counted as `snat_exhausted`).
    Snat(SnatSpec),
    /// Lower the MSS option of TCP SYNs (both directions of the flow) to this value, so
    /// that segments still fit the MTU once encapsulated.
    ClampMss(u16),
    /// Rewrite the inner MAC addresses.
    SetMac {
        src: Option<EthernetAddress>,
        dst: Option<EthernetAddress>,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = |e: &Option<(IpAddr, Option<u16>)>| match e {
            Some((IpAddr::V6(a), Some(p))) => format!("[{a}]:{p}"),
            Some((a, Some(p))) => format!("{a}:{p}"),
            Some((a, None)) => a.to_string(),
            None => "*".into(),
        };
        match self {
            Action::Allow => f.write_str("allow"),
            Action::Block => f.write_str("block"),
            Action::Decap => f.write_str("decap vxlan"),
            Action::Encap(e) => write!(f, "encap vxlan vni {} {} > {}", e.vni, e.src_pa, e.dst_pa),
            Action::Nat(n) => write!(f, "nat src {} dst {}", ep(&n.src), ep(&n.dst)),
            Action::Snat(s) => write!(f, "snat to {} ports {}", s.vip, s.describe_ranges()),
            Action::ClampMss(mss) => write!(f, "clamp tcp mss {mss}"),
            Action::SetMac { src, dst } => write!(f, "set mac src {src:?} dst {dst:?}"),
        }
    }
}

/// A rule: conditions, an action, a priority (lower wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub priority: u16,
    pub conditions: Conditions,
    pub action: Action,
}

/// Rules for one direction and one IP family; at most one of them (the best priority
/// that matches) applies to a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub direction: Direction,
    pub family: Family,
    pub priority: u16,
    pub rules: Vec<Rule>,
}

impl Group {
    /// The rule that applies to `m`, if any.
    pub fn matching(&self, m: &Metadata) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.conditions.matches(m))
            .min_by_key(|r| r.priority)
    }
}

/// A layer: groups of rules owned by one policy (VNET, SLB NAT, ACL …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    /// Layers are ordered from the network (lowest) to the VM (highest): inbound packets
    /// walk them in that order, outbound packets in reverse.
    pub priority: u16,
    pub groups: Vec<Group>,
}
