//! The `[slb]` section: load balancers in the Network Controller's own terms
//! (frontendIPConfigurations, backendAddressPools, loadBalancingRules, probes,
//! inboundNatRules), compiled to the VIP entries the Muxes and host agents carry.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, LabFileError};
use crate::topology::{NodeSpec, ProbeSpec, SlbSpec, VipSpec};
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::VipKey;
use strata_wire::flow::proto;
use strata_wire::vxlan::Vni;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlbDef {
    #[serde(default = "default_vni")]
    vni: Spanned<u32>,
    #[serde(default, rename = "loadBalancers")]
    load_balancers: Vec<LoadBalancerDef>,
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
    nodes: &[NodeSpec],
    node_index: &HashMap<String, usize>,
) -> Result<SlbSpec, LabFileError> {
    let vni = Vni::new(*def.vni.get_ref())
        .filter(|v| (4096..=(1 << 24) - 2).contains(&v.get()))
        .ok_or_else(|| {
            c.at(
                &def.vni,
                format!(
                    "VNI {} out of the virtual subnet range 4096..=16777214",
                    def.vni.get_ref()
                ),
            )
        })?;
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
    let mut keys = HashMap::new();
    for lb in &def.load_balancers {
        let lb_name = lb.resource_id.get_ref();
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
            add(&r.resource_id, vip)?;
        }
    }
    Ok(SlbSpec { vni, vips })
}
