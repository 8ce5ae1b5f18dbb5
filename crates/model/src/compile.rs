//! From resources to what the roles carry: every VIP the load balancers define (with its
//! backends, distribution and probe), each Mux's routing configuration, and each host's
//! VIP→DIP mappings and probes. The controller compiles on every write and sends each
//! node its part over the southbound protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::doc::canonical;

/// A transport protocol a VIP entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// How a VIP spreads flows (the rule's loadDistribution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Distribution {
    /// Source and destination address and port, and protocol.
    #[default]
    FiveTuple,
    /// Source and destination address ("SourceIP").
    TwoTuple,
    /// Addresses and protocol ("SourceIPProtocol").
    ThreeTuple,
}

/// A health probe, as the host agent runs it against each local DIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub reference: String,
    /// `tcp` or `http`.
    pub protocol: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_path: Option<String>,
    pub interval_seconds: u32,
    pub number_of_probes: u32,
}

/// The VXLAN network identifier the Muxes and hosts use for DIPs on logical networks
/// (the lowest virtual subnet ID; the resources of Windows Server 2016 name none).
pub const LOGICAL_NETWORK_VNI: u32 = 4096;

/// A backend of a VIP: a NIC's ip configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// The ip configuration's reference.
    pub ip_configuration: String,
    pub dip: IpAddr,
    pub port: u16,
    /// The server (host) the NIC is on, if the NIC names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The NIC's MAC address as the Network Controller writes it (`001DD8070001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The provider address of the backend's host, once its agent has reported one
    /// (see [`Observed`]): where the Muxes send the VIP's traffic in VXLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_address: Option<IpAddr>,
    /// Whether the host agent's probes find the DIP healthy (the SLB manager's view).
    #[serde(default = "yes")]
    pub healthy: bool,
}

fn yes() -> bool {
    true
}

/// What the controller learns from its agents rather than from the resources: the
/// SLB manager's view of the hosts, and the SNAT port ranges it handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Each VIP's SNAT ranges (by first port, a multiple of [`SNAT_RANGE`]) and the DIP
    /// holding each.
    pub snat: BTreeMap<IpAddr, BTreeMap<u16, IpAddr>>,
    /// Each host's provider addresses, by its server reference (canonical).
    pub provider_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The DIPs each host has programmed (its VFP rewrites VIP to DIP), by its server
    /// reference: a Mux sends a DIP traffic only once its host can take it.
    pub programmed: BTreeMap<String, BTreeSet<IpAddr>>,
    /// DIPs a host agent's probes found down.
    pub down: BTreeSet<IpAddr>,
}

/// Ports a SNAT range holds (Ananta's figure); ranges start at a multiple of it.
pub const SNAT_RANGE: u16 = 8;

/// One entry of a rule on a VIP: a loadBalancingRule's or inboundNatRule's (what the
/// Muxes match and where they send it), or an outboundNatRule's (`outbound`: the
/// backends' connections leave with the VIP as their source; `port` is 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vip {
    pub vip: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// The loadBalancingRule or inboundNatRule this entry comes from.
    pub rule: String,
    pub distribution: Distribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// The VXLAN network identifier the Mux encapsulates with.
    pub vni: u32,
    pub backends: Vec<Backend>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outbound: bool,
    /// For an outbound entry: the destinations its backends reach untranslated (the
    /// prefixes of their own subnets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
}

impl Vip {
    /// The entry's key in a Mux's configuration: what the Mux matches (`192.168.133.74
    /// tcp 80`). The configuration is a map by this key, so a change to one VIP travels
    /// to the agents as a patch of that entry alone.
    pub fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.vip,
            match self.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            },
            self.port
        )
    }
}

/// What every Mux carries, and how one peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MuxConfig {
    pub local_asn: u32,
    /// (router address, its AS).
    pub peers: Vec<(IpAddr, u32)>,
    /// By [`Vip::key`].
    pub vips: BTreeMap<String, Vip>,
    /// The SNAT ranges handed out, by `VIP start` (see [`snat_ranges`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snat: BTreeMap<String, SnatRange>,
}

/// A SNAT range as the Muxes carry it: replies to ports `start..start + 8` of `vip`
/// go to `dip` on the host at `provider_address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnatRange {
    pub vip: IpAddr,
    pub start: u16,
    pub dip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub provider_address: IpAddr,
    pub vni: u32,
}

/// What a host programs for a DIP's outbound connections: they leave as `vip`, with
/// ports of `ranges` (the first port of each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbound {
    pub rule: String,
    pub vip: IpAddr,
    pub protocols: Vec<Protocol>,
    pub dip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub vni: u32,
    pub ranges: Vec<u16>,
    /// Destinations reached untranslated: the subnets of the VIP's backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
}

/// One VIP→DIP translation a host programs on a DIP's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    pub rule: String,
    pub vip: IpAddr,
    pub protocol: Protocol,
    pub frontend_port: u16,
    pub dip: IpAddr,
    pub backend_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The VXLAN network identifier the Muxes send this VIP's traffic with.
    pub vni: u32,
}

/// What a host (a server) carries: the mappings of its DIPs and the probes to run, each
/// a map (so a change travels as a patch of the entries it touches).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostConfig {
    /// By `DIP VIP protocol port`.
    pub mappings: BTreeMap<String, Mapping>,
    /// (DIP, probe), by `DIP probe-reference`.
    pub probes: BTreeMap<String, (IpAddr, Probe)>,
    /// The DIPs' outbound NAT, by `DIP VIP`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbound: BTreeMap<String, Outbound>,
}

/// What the compiler reads: documents by reference, and who refers to what.
pub trait Resources {
    /// The object a reference names (a resource or a child of one).
    fn get(&self, reference: &str) -> Option<&Value>;
    /// Every document of a collection.
    fn all(&self, collection: &str) -> Vec<&Value>;
    /// (referring object, field) for the canonical form of a reference.
    fn referrers(&self, canonical: &str) -> Vec<(String, String)>;
}

fn protocols(p: &str) -> Vec<Protocol> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => vec![Protocol::Tcp],
        "udp" => vec![Protocol::Udp],
        _ => vec![Protocol::Tcp, Protocol::Udp],
    }
}

fn distribution(d: Option<&str>) -> Distribution {
    match d.map(str::to_ascii_lowercase).as_deref() {
        Some("sourceip") => Distribution::TwoTuple,
        Some("sourceipprotocol") => Distribution::ThreeTuple,
        _ => Distribution::FiveTuple,
    }
}

fn ref_of(v: &Value) -> Option<&str> {
    v.get("resourceRef")?.as_str()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)?.as_str()
}

fn port_at(v: &Value, pointer: &str) -> Option<u16> {
    u16::try_from(v.pointer(pointer)?.as_u64()?).ok()
}

/// The VIP address of a frontend: its own, or its public IP address's.
fn frontend_vip(r: &dyn Resources, frontend: &Value) -> Option<IpAddr> {
    let own = str_at(frontend, "/properties/privateIPAddress").and_then(|s| s.parse().ok());
    own.or_else(|| {
        let pip = r.get(
            frontend
                .pointer("/properties/publicIPAddress")
                .and_then(ref_of)?,
        )?;
        str_at(pip, "/properties/ipAddress")?.parse().ok()
    })
}

fn probe(r: &dyn Resources, reference: &str) -> Option<Probe> {
    let p = r.get(reference)?;
    Some(Probe {
        reference: reference.to_string(),
        protocol: str_at(p, "/properties/protocol")?.to_ascii_lowercase(),
        port: port_at(p, "/properties/port")?,
        request_path: str_at(p, "/properties/requestPath").map(str::to_string),
        interval_seconds: p
            .pointer("/properties/intervalInSeconds")
            .and_then(Value::as_u64)
            .map_or(5, |n| n.min(3600) as u32),
        number_of_probes: p
            .pointer("/properties/numberOfProbes")
            .and_then(Value::as_u64)
            .map_or(2, |n| n.min(100) as u32),
    })
}

/// The backend an ip configuration makes, serving on `port`.
fn backend(r: &dyn Resources, ip_configuration: &str, port: u16) -> Option<Backend> {
    let ipc = r.get(ip_configuration)?;
    let dip = str_at(ipc, "/properties/privateIPAddress")?.parse().ok()?;
    // The NIC: the ip configuration's reference less its last two segments.
    let nic_ref = ip_configuration.rsplitn(3, '/').nth(2)?;
    let nic = r.get(nic_ref);
    Some(Backend {
        ip_configuration: ip_configuration.to_string(),
        dip,
        port,
        server: nic
            .and_then(|n| n.pointer("/properties/server"))
            .and_then(ref_of)
            .map(str::to_string),
        mac: nic
            .and_then(|n| str_at(n, "/properties/privateMacAddress"))
            .map(str::to_string),
        provider_address: None,
        healthy: true,
    })
}

/// Every VIP entry the load balancers define, in a stable order.
pub fn vips(r: &dyn Resources) -> Vec<Vip> {
    let mut out: Vec<Vip> = r
        .all("loadBalancers")
        .into_iter()
        .flat_map(|lb| lb_vips(r, lb))
        .collect();
    sort_vips(&mut out);
    out
}

/// The stable order of VIP entries: VIP, protocol, port, rule.
pub fn sort_vips(vips: &mut [Vip]) {
    vips.sort_by(|a, b| {
        (a.vip, a.protocol, a.port, &a.rule).cmp(&(b.vip, b.protocol, b.port, &b.rule))
    });
}

/// The VIP entries of one load balancer (what it reads besides its own document: the
/// NICs in its pools and NAT rules, the public IP addresses of its frontends).
pub fn lb_vips(r: &dyn Resources, lb: &Value) -> Vec<Vip> {
    let mut out = Vec::new();
    let rules = lb
        .pointer("/properties/loadBalancingRules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for rule in rules {
        let Some(rule_ref) = rule.get("resourceRef").and_then(Value::as_str) else {
            continue;
        };
        let Some(frontend_port) = port_at(rule, "/properties/frontendPort") else {
            continue;
        };
        let backend_port = port_at(rule, "/properties/backendPort").unwrap_or(frontend_port);
        let backends = pool_backends(r, rule, backend_port);
        let probe = rule
            .pointer("/properties/probe")
            .and_then(ref_of)
            .and_then(|p| probe(r, p));
        let template = Vip {
            vip: IpAddr::from([0, 0, 0, 0]),
            protocol: Protocol::Tcp,
            port: frontend_port,
            rule: rule_ref.to_string(),
            distribution: distribution(str_at(rule, "/properties/loadDistribution")),
            probe,
            vni: LOGICAL_NETWORK_VNI,
            backends,
            outbound: false,
            exempt: Vec::new(),
        };
        entries(r, rule, &template, &mut out);
    }
    let nat_rules = lb
        .pointer("/properties/inboundNatRules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for rule in nat_rules {
        let Some(rule_ref) = rule.get("resourceRef").and_then(Value::as_str) else {
            continue;
        };
        let (Some(frontend_port), Some(backend_port)) = (
            port_at(rule, "/properties/frontendPort"),
            port_at(rule, "/properties/backendPort"),
        ) else {
            continue;
        };
        let backends: Vec<Backend> = r
            .referrers(&canonical(rule_ref))
            .into_iter()
            .filter(|(_, field)| field == "loadBalancerInboundNatRules")
            .filter_map(|(ipc, _)| backend(r, &ipc, backend_port))
            .take(1)
            .collect();
        let template = Vip {
            vip: IpAddr::from([0, 0, 0, 0]),
            protocol: Protocol::Tcp,
            port: frontend_port,
            rule: rule_ref.to_string(),
            distribution: Distribution::FiveTuple,
            probe: None,
            vni: LOGICAL_NETWORK_VNI,
            backends,
            outbound: false,
            exempt: Vec::new(),
        };
        entries(r, rule, &template, &mut out);
    }
    let outbound_rules = lb
        .pointer("/properties/outboundNatRules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for rule in outbound_rules {
        let Some(rule_ref) = rule.get("resourceRef").and_then(Value::as_str) else {
            continue;
        };
        let backends = pool_backends(r, rule, 0);
        let template = Vip {
            vip: IpAddr::from([0, 0, 0, 0]),
            protocol: Protocol::Tcp,
            port: 0,
            rule: rule_ref.to_string(),
            distribution: Distribution::FiveTuple,
            probe: None,
            vni: LOGICAL_NETWORK_VNI,
            exempt: subnets(r, &backends),
            backends,
            outbound: true,
        };
        entries(r, rule, &template, &mut out);
    }
    out
}

/// The address prefixes of the subnets the backends' ip configurations are on, sorted.
fn subnets(r: &dyn Resources, backends: &[Backend]) -> Vec<String> {
    let mut out: Vec<String> = backends
        .iter()
        .filter_map(|b| {
            let ipc = r.get(&b.ip_configuration)?;
            let subnet = r.get(ipc.pointer("/properties/subnet").and_then(ref_of)?)?;
            Some(str_at(subnet, "/properties/addressPrefix")?.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The backends of a rule's backendAddressPool (its NICs' ip configurations), serving
/// on `port`, in a stable order.
fn pool_backends(r: &dyn Resources, rule: &Value, port: u16) -> Vec<Backend> {
    let pool = rule
        .pointer("/properties/backendAddressPool")
        .and_then(ref_of);
    let mut backends: Vec<Backend> = pool
        .map(|p| r.referrers(&canonical(p)))
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, field)| field == "loadBalancerBackendAddressPools")
        .filter_map(|(ipc, _)| backend(r, &ipc, port))
        .collect();
    backends.sort_by(|a, b| a.ip_configuration.cmp(&b.ip_configuration));
    backends
}

/// The entries of a rule: `template` for each of its frontends' VIPs and each protocol
/// it names.
fn entries(r: &dyn Resources, rule: &Value, template: &Vip, out: &mut Vec<Vip>) {
    let frontends = rule
        .pointer("/properties/frontendIPConfigurations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for fe in frontends.iter().filter_map(ref_of).filter_map(|f| r.get(f)) {
        let Some(vip) = frontend_vip(r, fe) else {
            continue;
        };
        for protocol in protocols(str_at(rule, "/properties/protocol").unwrap_or("Tcp")) {
            out.push(Vip {
                vip,
                protocol,
                ..template.clone()
            });
        }
    }
}

/// The VIPs as the Muxes carry them: each backend with its host's provider address and
/// its health as the host agents report them. A backend whose host has not reported a
/// provider address, or has not programmed the DIP yet, cannot take traffic and is left
/// out; a VIP left with no backend is left out too (a Mux could do nothing with it, and
/// announces nothing for it either way).
pub fn observe(vips: &[Vip], observed: &Observed) -> Vec<Vip> {
    vips.iter()
        .map(|v| Vip {
            backends: v
                .backends
                .iter()
                .filter_map(|b| {
                    let server = canonical(b.server.as_deref()?);
                    let pa = observed.provider_addresses.get(&server)?.first()?;
                    if !observed.programmed.get(&server)?.contains(&b.dip) {
                        return None;
                    }
                    Some(Backend {
                        provider_address: Some(*pa),
                        healthy: !observed.down.contains(&b.dip),
                        ..b.clone()
                    })
                })
                .collect(),
            ..v.clone()
        })
        .filter(|v| !v.backends.is_empty())
        .collect()
}

/// A Mux's configuration: its routerConfiguration and every VIP (as [`observe`] gives
/// them).
pub fn mux(mux: &Value, vips: &[Vip]) -> Option<MuxConfig> {
    let rc = mux.pointer("/properties/routerConfiguration")?;
    let local_asn = u32::try_from(rc.get("localASN")?.as_u64()?).ok()?;
    let peers = rc
        .get("peerRouterConfigurations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let addr = p.get("routerIPAddress")?.as_str()?.parse().ok()?;
            let asn = u32::try_from(p.get("peerASN")?.as_u64()?).ok()?;
            Some((addr, asn))
        })
        .collect();
    Some(MuxConfig {
        local_asn,
        peers,
        vips: vips
            .iter()
            .filter(|v| !v.outbound)
            .map(|v| (v.key(), v.clone()))
            .collect(),
        snat: BTreeMap::new(),
    })
}

/// The SNAT ranges the Muxes carry, by `VIP start`: each range handed out (`snat`) to a
/// DIP that an outbound entry of the VIP (as [`observe`] gives it) has on a host with a
/// provider address.
pub fn snat_ranges(
    observed_vips: &[Vip],
    snat: &BTreeMap<IpAddr, BTreeMap<u16, IpAddr>>,
) -> BTreeMap<String, SnatRange> {
    let mut out = BTreeMap::new();
    for v in observed_vips.iter().filter(|v| v.outbound) {
        let Some(ranges) = snat.get(&v.vip) else {
            continue;
        };
        for b in &v.backends {
            let Some(pa) = b.provider_address else {
                continue;
            };
            for (&start, _) in ranges.iter().filter(|(_, dip)| **dip == b.dip) {
                out.insert(
                    format!("{} {start}", v.vip),
                    SnatRange {
                        vip: v.vip,
                        start,
                        dip: b.dip,
                        mac: b.mac.clone(),
                        provider_address: pa,
                        vni: v.vni,
                    },
                );
            }
        }
    }
    out
}

/// Each server's configuration, by the server's reference (canonical), with the SNAT
/// ranges handed out (`snat`) to its DIPs.
pub fn hosts(
    vips: &[Vip],
    snat: &BTreeMap<IpAddr, BTreeMap<u16, IpAddr>>,
) -> BTreeMap<String, HostConfig> {
    let mut out: BTreeMap<String, HostConfig> = BTreeMap::new();
    for v in vips {
        for b in &v.backends {
            let Some(server) = &b.server else {
                continue;
            };
            let host = out.entry(canonical(server)).or_default();
            if v.outbound {
                let entry = host
                    .outbound
                    .entry(format!("{} {}", b.dip, v.vip))
                    .or_insert_with(|| Outbound {
                        rule: v.rule.clone(),
                        vip: v.vip,
                        protocols: Vec::new(),
                        dip: b.dip,
                        mac: b.mac.clone(),
                        vni: v.vni,
                        exempt: v.exempt.clone(),
                        ranges: snat
                            .get(&v.vip)
                            .into_iter()
                            .flatten()
                            .filter(|(_, dip)| **dip == b.dip)
                            .map(|(start, _)| *start)
                            .collect(),
                    });
                if !entry.protocols.contains(&v.protocol) {
                    entry.protocols.push(v.protocol);
                }
                continue;
            }
            host.mappings.insert(
                format!("{} {}", b.dip, v.key()),
                Mapping {
                    rule: v.rule.clone(),
                    vip: v.vip,
                    protocol: v.protocol,
                    frontend_port: v.port,
                    dip: b.dip,
                    backend_port: b.port,
                    mac: b.mac.clone(),
                    vni: v.vni,
                },
            );
            if let Some(p) = &v.probe {
                host.probes
                    .entry(format!("{} {}", b.dip, p.reference))
                    .or_insert_with(|| (b.dip, p.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
