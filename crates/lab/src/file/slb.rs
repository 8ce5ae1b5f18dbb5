//! The `[slb]` section: load balancers in the Network Controller's own terms
//! (frontendIPConfigurations, backendAddressPools, loadBalancingRules, probes,
//! inboundNatRules, outboundNatRules), checked with file:line, and turned into the resources the lab PUTs
//! to its controller (the VIP entries are kept too, for the lab's own reports and
//! checks).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use strata_model::compile::LOGICAL_NETWORK_VNI;
use toml::Spanned;

use super::{Checker, LabFileError};
use crate::topology::{BackendSpec, NodeSpec, OutboundSpec, ProbeSpec, SlbSpec, VipSpec};
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::VipKey;
use strata_wire::flow::proto;
use strata_wire::vxlan::Vni;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlbDef {
    #[serde(default = "default_vni")]
    vni: Spanned<u32>,
    /// The prefix VIPs come from: the controller's vipIpPool.
    #[serde(rename = "vipPrefix")]
    vip_prefix: Spanned<String>,
    #[serde(default, rename = "loadBalancers")]
    load_balancers: Vec<LoadBalancerDef>,
    /// The ports the SLB manager cuts SNAT ranges from (`"1024-65535"` unless given):
    /// a small pool shows exhaustion.
    #[serde(default, rename = "snatPorts")]
    snat_ports: Option<Spanned<String>>,
}

fn default_vni() -> Spanned<u32> {
    Spanned::new(0..0, 4096)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBalancerDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    #[serde(default, rename = "frontendIPConfigurations")]
    frontends: Vec<FrontendDef>,
    #[serde(default, rename = "backendAddressPools")]
    pools: Vec<PoolDef>,
    #[serde(default, rename = "loadBalancingRules")]
    rules: Vec<RuleDef>,
    #[serde(default)]
    probes: Vec<ProbeDef>,
    #[serde(default, rename = "inboundNatRules")]
    nat_rules: Vec<NatRuleDef>,
    #[serde(default, rename = "outboundNatRules")]
    outbound_rules: Vec<OutboundRuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundRuleDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    #[serde(rename = "frontendIPConfiguration")]
    frontend: Spanned<String>,
    #[serde(rename = "backendAddressPool")]
    pool: Spanned<String>,
    /// `Tcp`, `Udp` or `All`.
    protocol: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontendDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    #[serde(rename = "privateIPAddress")]
    address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    /// Backend VMs, by node name (each one's NIC on a host's vSwitch is the DIP).
    members: Spanned<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    #[serde(rename = "frontendIPConfiguration")]
    frontend: Spanned<String>,
    #[serde(rename = "backendAddressPool")]
    pool: Spanned<String>,
    protocol: Spanned<String>,
    #[serde(rename = "frontendPort")]
    frontend_port: u16,
    #[serde(rename = "backendPort")]
    backend_port: u16,
    #[serde(default, rename = "loadDistribution")]
    distribution: Option<Spanned<String>>,
    probe: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    protocol: Spanned<String>,
    port: u16,
    #[serde(rename = "requestPath")]
    request_path: Option<String>,
    #[serde(default = "default_interval", rename = "intervalInSeconds")]
    interval: u32,
    #[serde(default = "default_probes", rename = "numberOfProbes")]
    count: u32,
}

fn default_interval() -> u32 {
    5
}

fn default_probes() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatRuleDef {
    #[serde(rename = "resourceId")]
    resource_id: Spanned<String>,
    #[serde(rename = "frontendIPConfiguration")]
    frontend: Spanned<String>,
    protocol: Spanned<String>,
    #[serde(rename = "frontendPort")]
    frontend_port: u16,
    #[serde(rename = "backendPort")]
    backend_port: u16,
    /// The backend VM, by node name.
    member: Spanned<String>,
}

pub(super) fn check<E: Fn(std::ops::Range<usize>, String) -> LabFileError>(
    c: &Checker<'_, E>,
    def: &SlbDef,
    networks: &[crate::topology::Network],
    nodes: &[NodeSpec],
    node_index: &HashMap<String, usize>,
) -> Result<SlbSpec, LabFileError> {
    let vni = Vni::new(*def.vni.get_ref())
        .filter(|v| v.get() == LOGICAL_NETWORK_VNI)
        .ok_or_else(|| {
            c.at(
                &def.vni,
                format!(
                    "VNI {}: the controller sends the DIPs of logical networks VNI {LOGICAL_NETWORK_VNI} (virtual networks, with their own VNIs, come with tenants)",
                    def.vni.get_ref()
                ),
            )
        })?;
    let vip_prefix = c.prefix(&def.vip_prefix, "vipPrefix")?.trunc();
    if vip_prefix.prefix_len() > 30 {
        return Err(c.at(
            &def.vip_prefix,
            format!("vipPrefix {vip_prefix} has no room for VIPs (at most /30)"),
        ));
    }
    // VIPs are routed (a /32 from each Mux), never on a link: none may be an address of
    // a lab network.
    if let Some(net) = networks
        .iter()
        .find(|n| n.prefix.contains(&vip_prefix) || vip_prefix.contains(&n.prefix))
    {
        return Err(c.at(
            &def.vip_prefix,
            format!(
                "vipPrefix {vip_prefix} overlaps network {:?} ({}): VIPs are announced as /32s, not addresses on a lab network",
                net.name, net.prefix
            ),
        ));
    }
    let mut load_balancers = Vec::new();
    let mut backends: Vec<BackendSpec> = Vec::new();

    // A DIP is a VM's NIC that is a port of a host's vSwitch.
    let dip_of = |name: &Spanned<String>| -> Result<(usize, usize), LabFileError> {
        let &n = node_index.get(name.get_ref()).ok_or_else(|| {
            c.at(
                name,
                format!("unknown node {:?} as a backend", name.get_ref()),
            )
        })?;
        let nic = nodes[n]
            .nics
            .iter()
            .position(|nic| {
                nic.vswitch_host.is_some_and(|h| {
                    nodes[h]
                        .vswitch
                        .as_ref()
                        .is_some_and(|s| s.provider_nic.is_some())
                })
            })
            .ok_or_else(|| {
                c.at(
                    name,
                    format!(
                        "backend {:?} has no NIC on a host vSwitch with a provider address",
                        name.get_ref()
                    ),
                )
            })?;
        Ok((n, nic))
    };
    let protocol = |p: &Spanned<String>| match p.get_ref().to_ascii_lowercase().as_str() {
        "tcp" => Ok(proto::TCP),
        "udp" => Ok(proto::UDP),
        other => Err(c.at(
            p,
            format!("expected protocol \"Tcp\" or \"Udp\", found {other:?}"),
        )),
    };
    let mut vips = Vec::new();
    let mut outbound = Vec::new();
    let mut keys = HashMap::new();
    for lb in &def.load_balancers {
        let lb_name = lb.resource_id.get_ref();
        load_balancers.push((lb_name.clone(), load_balancer(lb)));
        let mut frontends = HashMap::new();
        for f in &lb.frontends {
            let addr: Ipv4Addr = f.address.get_ref().parse().map_err(|_| {
                c.at(
                    &f.address,
                    format!(
                        "expected privateIPAddress as an IPv4 address, found {:?}",
                        f.address.get_ref()
                    ),
                )
            })?;
            if !vip_prefix.contains(&addr)
                || addr == vip_prefix.network()
                || addr == vip_prefix.broadcast()
            {
                return Err(c.at(
                    &f.address,
                    format!("VIP {addr} is not an address of vipPrefix {vip_prefix}"),
                ));
            }
            frontends.insert(f.resource_id.get_ref().clone(), addr);
        }
        let frontend = |r: &Spanned<String>| {
            frontends.get(r.get_ref()).copied().ok_or_else(|| {
                c.at(
                    r,
                    format!(
                        "no frontendIPConfiguration {:?} in loadBalancer {lb_name:?}",
                        r.get_ref()
                    ),
                )
            })
        };
        let mut pools = HashMap::new();
        for p in &lb.pools {
            let members = p
                .members
                .get_ref()
                .iter()
                .map(|m| dip_of(&Spanned::new(p.members.span(), m.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            for &m in &members {
                backend(&mut backends, m).pools.push(format!(
                    "/loadBalancers/{lb_name}/backendAddressPools/{}",
                    p.resource_id.get_ref()
                ));
            }
            pools.insert(p.resource_id.get_ref().clone(), members);
        }
        let mut probes = HashMap::new();
        for p in &lb.probes {
            let http_path = match p.protocol.get_ref().to_ascii_lowercase().as_str() {
                "tcp" => None,
                "http" => Some(p.request_path.clone().unwrap_or_else(|| "/".into())),
                other => {
                    return Err(c.at(
                        &p.protocol,
                        format!("expected probe protocol \"Tcp\" or \"Http\", found {other:?}"),
                    ));
                }
            };
            if p.interval == 0 || p.count == 0 {
                return Err(c.at(
                    &p.resource_id,
                    "intervalInSeconds and numberOfProbes must be at least 1".into(),
                ));
            }
            probes.insert(
                p.resource_id.get_ref().clone(),
                ProbeSpec {
                    name: format!("{lb_name}/{}", p.resource_id.get_ref()),
                    http_path,
                    port: p.port,
                    interval: Duration::from_secs(u64::from(p.interval)),
                    count: p.count,
                },
            );
        }
        let mut add = |name: &Spanned<String>, vip: VipSpec| {
            if let Some(other) = keys.insert(vip.key, vip.name.clone()) {
                return Err(c.at(
                    name,
                    format!(
                        "{} uses the same VIP, protocol and port as {other}",
                        vip.name
                    ),
                ));
            }
            vips.push(vip);
            Ok(())
        };
        for r in &lb.rules {
            let members = pools.get(r.pool.get_ref()).cloned().ok_or_else(|| {
                c.at(
                    &r.pool,
                    format!(
                        "no backendAddressPool {:?} in loadBalancer {lb_name:?}",
                        r.pool.get_ref()
                    ),
                )
            })?;
            let distribution = match r.distribution.as_ref().map(|d| d.get_ref().as_str()) {
                None | Some("Default") => Distribution::FiveTuple,
                Some("SourceIPProtocol") => Distribution::ThreeTuple,
                Some("SourceIP") => Distribution::TwoTuple,
                Some(other) => {
                    return Err(c.at(
                        r.distribution.as_ref().unwrap_or(&r.resource_id),
                        format!("expected loadDistribution \"Default\", \"SourceIPProtocol\" or \"SourceIP\", found {other:?}"),
                    ));
                }
            };
            let probe = match &r.probe {
                Some(p) => Some(probes.get(p.get_ref()).cloned().ok_or_else(|| {
                    c.at(
                        p,
                        format!("no probe {:?} in loadBalancer {lb_name:?}", p.get_ref()),
                    )
                })?),
                None => None,
            };
            let vip = VipSpec {
                name: format!("{lb_name}/{}", r.resource_id.get_ref()),
                key: VipKey {
                    vip: frontend(&r.frontend)?,
                    proto: protocol(&r.protocol)?,
                    port: r.frontend_port,
                },
                distribution,
                members,
                backend_port: r.backend_port,
                probe,
            };
            add(&r.resource_id, vip)?;
        }
        for r in &lb.outbound_rules {
            frontend(&r.frontend)?;
            let members = pools.get(r.pool.get_ref()).ok_or_else(|| {
                c.at(
                    &r.pool,
                    format!(
                        "no backendAddressPool {:?} in loadBalancer {lb_name:?}",
                        r.pool.get_ref()
                    ),
                )
            })?;
            if !["tcp", "udp", "all"].contains(&r.protocol.get_ref().to_ascii_lowercase().as_str())
            {
                return Err(c.at(
                    &r.protocol,
                    format!(
                        "expected protocol \"Tcp\", \"Udp\" or \"All\", found {:?}",
                        r.protocol.get_ref()
                    ),
                ));
            }
            outbound.push(OutboundSpec {
                name: format!("{lb_name}/{}", r.resource_id.get_ref()),
                vip: frontend(&r.frontend)?,
                members: members.clone(),
            });
        }
        for r in &lb.nat_rules {
            let vip = VipSpec {
                name: format!("{lb_name}/{}", r.resource_id.get_ref()),
                key: VipKey {
                    vip: frontend(&r.frontend)?,
                    proto: protocol(&r.protocol)?,
                    port: r.frontend_port,
                },
                distribution: Distribution::FiveTuple,
                members: vec![dip_of(&r.member)?],
                backend_port: r.backend_port,
                probe: None,
            };
            backend(&mut backends, vip.members[0])
                .nat_rules
                .push(format!(
                    "/loadBalancers/{lb_name}/inboundNatRules/{}",
                    r.resource_id.get_ref()
                ));
            add(&r.resource_id, vip)?;
        }
    }
    let snat_ports = match &def.snat_ports {
        None => None,
        Some(p) => {
            let bad = || {
                c.at(
                    p,
                    format!(
                        "expected snatPorts as FIRST-LAST within 1024-65535 holding at least one 8-port range from a multiple of 8, found {:?}",
                        p.get_ref()
                    ),
                )
            };
            let (a, b) = p.get_ref().split_once('-').ok_or_else(bad)?;
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a < 1024 || b < a.div_ceil(8) * 8 + 7 {
                return Err(bad());
            }
            Some(a..=b)
        }
    };
    Ok(SlbSpec {
        vni,
        vip_prefix,
        vips,
        outbound,
        snat_ports,
        load_balancers,
        backends,
    })
}

/// The backend entry of a DIP, added if new.
fn backend(backends: &mut Vec<BackendSpec>, dip: (usize, usize)) -> &mut BackendSpec {
    let i = match backends.iter().position(|b| (b.node, b.nic) == dip) {
        Some(i) => i,
        None => {
            backends.push(BackendSpec {
                node: dip.0,
                nic: dip.1,
                pools: Vec::new(),
                nat_rules: Vec::new(),
            });
            backends.len() - 1
        }
    };
    &mut backends[i]
}

/// A loadBalancer resource, as a user would PUT it.
fn load_balancer(lb: &LoadBalancerDef) -> Value {
    let lb_name = lb.resource_id.get_ref();
    let child = |kind: &str, id: &Spanned<String>| json!({"resourceRef": format!("/loadBalancers/{lb_name}/{kind}/{}", id.get_ref())});
    let frontends: Vec<Value> = lb
        .frontends
        .iter()
        .map(|f| {
            json!({
                "resourceId": f.resource_id.get_ref(),
                "properties": {
                    "privateIPAddress": f.address.get_ref(),
                    "privateIPAllocationMethod": "Static",
                },
            })
        })
        .collect();
    let pools: Vec<Value> = lb
        .pools
        .iter()
        .map(|p| json!({"resourceId": p.resource_id.get_ref(), "properties": {}}))
        .collect();
    let rules: Vec<Value> = lb
        .rules
        .iter()
        .map(|r| {
            let mut properties = json!({
                "protocol": r.protocol.get_ref(),
                "frontendPort": r.frontend_port,
                "backendPort": r.backend_port,
                "frontendIPConfigurations": [child("frontendIPConfigurations", &r.frontend)],
                "backendAddressPool": child("backendAddressPools", &r.pool),
                "loadDistribution": r.distribution.as_ref().map_or("Default", |d| d.get_ref().as_str()),
            });
            if let Some(p) = &r.probe {
                properties["probe"] = child("probes", p);
            }
            json!({"resourceId": r.resource_id.get_ref(), "properties": properties})
        })
        .collect();
    let probes: Vec<Value> = lb
        .probes
        .iter()
        .map(|p| {
            let mut properties = json!({
                "protocol": p.protocol.get_ref(),
                "port": p.port,
                "intervalInSeconds": p.interval,
                "numberOfProbes": p.count,
            });
            if let Some(path) = &p.request_path {
                properties["requestPath"] = json!(path);
            }
            json!({"resourceId": p.resource_id.get_ref(), "properties": properties})
        })
        .collect();
    let nat_rules: Vec<Value> = lb
        .nat_rules
        .iter()
        .map(|r| {
            json!({
                "resourceId": r.resource_id.get_ref(),
                "properties": {
                    "protocol": r.protocol.get_ref(),
                    "frontendPort": r.frontend_port,
                    "backendPort": r.backend_port,
                    "frontendIPConfigurations": [child("frontendIPConfigurations", &r.frontend)],
                },
            })
        })
        .collect();
    let outbound_rules: Vec<Value> = lb
        .outbound_rules
        .iter()
        .map(|r| {
            json!({
                "resourceId": r.resource_id.get_ref(),
                "properties": {
                    "protocol": r.protocol.get_ref(),
                    "frontendIPConfigurations": [child("frontendIPConfigurations", &r.frontend)],
                    "backendAddressPool": child("backendAddressPools", &r.pool),
                },
            })
        })
        .collect();
    let mut lb_doc = json!({"properties": {
        "frontendIPConfigurations": frontends,
        "backendAddressPools": pools,
        "loadBalancingRules": rules,
        "probes": probes,
        "inboundNatRules": nat_rules,
    }});
    if !outbound_rules.is_empty() {
        lb_doc["properties"]["outboundNatRules"] = Value::Array(outbound_rules);
    }
    lb_doc
}
