//! What an agent does with the configuration the controller sends: the roles take it by
//! difference, so what the change leaves alone keeps running (a VIP whose entry did not
//! change keeps its flows and DIP positions; a port whose layers did not change keeps
//! its cached flows; a probe that is still wanted keeps its verdict).
//!
//! The configuration is the controller's compiled JSON (`strata_model::compile`):
//! `{"role": "mux", "mux": MuxConfig}` or `{"role": "host", "host": HostConfig}`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use strata_model::compile::{self, Protocol};
use strata_slb::hash::Distribution;
use strata_slb::host::{DECAP_LAYER, DipMapping, NAT_LAYER, OutboundNat, SNAT_LAYER, dip_layers};
use strata_slb::mux::{Dip, Mux, SnatKey, SnatTarget, VipConfig, VipKey};
use strata_vswitch::switch::SwitchPort;
use strata_vswitch::switch::VSwitch;
use strata_wire::EthernetAddress;
use strata_wire::flow::proto;
use strata_wire::vxlan::Vni;

use crate::apps::probe::{ProbeConfig, Prober};

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum Compiled {
    Mux { mux: compile::MuxConfig },
    Host { host: compile::HostConfig },
}

/// A MAC as the Network Controller writes it (`001DD8070001`), or with `-` or `:`.
pub(crate) fn parse_mac(s: &str) -> Option<EthernetAddress> {
    let hex: String = s.chars().filter(|c| *c != '-' && *c != ':').collect();
    if hex.len() != 12 || !hex.is_ascii() {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(EthernetAddress(mac))
}

fn v4(ip: IpAddr, what: &str) -> Result<Ipv4Addr, String> {
    match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(format!("{what} {ip}: the SLB data path carries IPv4 only")),
    }
}

fn vni(v: u32) -> Result<Vni, String> {
    Vni::new(v).ok_or_else(|| format!("VNI {v} does not fit in 24 bits"))
}

fn proto_of(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => proto::TCP,
        Protocol::Udp => proto::UDP,
    }
}

/// A speaker and what it needs to change its neighbors.
pub(crate) struct Bgp<'a> {
    pub speaker: &'a mut crate::apps::bgp::Speaker,
    pub sockets: &'a mut smoltcp::iface::SocketSet<'static>,
    pub router: &'a strata_router::Router,
}

/// The roles an agent configures.
pub(crate) struct Roles<'a> {
    pub mux: Option<&'a mut Mux>,
    pub bgp: Option<Bgp<'a>>,
    pub vswitch: Option<&'a mut VSwitch>,
    pub probers: &'a mut Vec<Prober>,
    pub now: Duration,
}

/// The entries of `field` of `role` that a patch changes, if that is all it changes.
fn entries_only<'a>(
    patch: &'a Value,
    role: &str,
    fields: &[&'static str],
) -> Option<Vec<(&'static str, &'a serde_json::Map<String, Value>)>> {
    let top = patch.as_object()?;
    if top.len() != 1 {
        return None;
    }
    let inner = top.get(role)?.as_object()?;
    inner
        .iter()
        .map(|(k, v)| {
            let field = fields.iter().find(|f| **f == k)?;
            Some((*field, v.as_object()?))
        })
        .collect()
}

/// Applies a configuration; on an error nothing is changed. `patch`, when the
/// configuration came as a change to the one applied before, says which entries changed:
/// only those are applied. A host's returns the DIPs it has programmed (for its report:
/// the Muxes are given a DIP once its host has it).
pub(crate) fn apply(
    config: &Value,
    patch: Option<&Value>,
    mut roles: Roles<'_>,
) -> Result<Option<Vec<Ipv4Addr>>, String> {
    if let Some(patch) = patch {
        if let (Some(changed), Some(mux)) = (
            entries_only(patch, "mux", &["vips", "snat"]),
            roles.mux.as_deref_mut(),
        ) {
            let keys = |field: &str| -> Vec<&str> {
                changed
                    .iter()
                    .filter(|(f, _)| *f == field)
                    .flat_map(|(_, m)| m.keys())
                    .map(String::as_str)
                    .collect()
            };
            let empty = serde_json::Map::new();
            let vips = config
                .pointer("/mux/vips")
                .and_then(Value::as_object)
                .ok_or("configuration: no mux.vips")?;
            let snat = config
                .pointer("/mux/snat")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            // Checked before anything changes.
            let ranges = snat_entries(snat, &keys("snat"))?;
            apply_mux_entries(vips, &keys("vips"), mux)?;
            for (key, target) in ranges {
                match target {
                    Some(t) => mux.set_snat(key, t),
                    None => mux.remove_snat(&key),
                }
            }
            return Ok(None);
        }
        if let (Some(changed), Some(vswitch)) = (
            entries_only(patch, "host", &["mappings", "probes", "outbound"]),
            roles.vswitch.as_deref_mut(),
        ) {
            let host = config.get("host").ok_or("configuration: no host")?;
            // The DIPs whose entries changed (each key starts with the DIP).
            let dips = changed
                .iter()
                .flat_map(|(_, m)| m.keys())
                .filter_map(|k| k.split(' ').next()?.parse::<Ipv4Addr>().ok())
                .collect::<std::collections::BTreeSet<_>>();
            return apply_host_dips(host, &dips, vswitch, roles.probers, roles.now).map(Some);
        }
    }
    let compiled = Compiled::deserialize(config).map_err(|e| format!("configuration: {e}"))?;
    match compiled {
        Compiled::Mux { mux } => {
            let target = roles.mux.ok_or("this node has no Mux")?;
            let entries = vip_entries(&mux)?;
            let peers = mux
                .peers
                .iter()
                .map(|(a, asn)| Ok((v4(*a, "BGP peer")?, *asn)))
                .collect::<Result<Vec<_>, String>>()?;
            let keys: Vec<&str> = mux.snat.keys().map(String::as_str).collect();
            let snat = serde_json::to_value(&mux.snat).map_err(|e| e.to_string())?;
            let ranges = snat_entries(snat.as_object().ok_or("snat")?, &keys)?;
            let bgp = roles.bgp.ok_or("this Mux has no BGP speaker")?;
            bgp.speaker
                .set_neighbors(mux.local_asn, &peers, roles.now, bgp.sockets, bgp.router)?;
            apply_mux(&entries, target);
            let wanted: BTreeMap<SnatKey, SnatTarget> = ranges
                .into_iter()
                .filter_map(|(k, t)| Some((k, t?)))
                .collect();
            for (key, _) in target.snat() {
                if !wanted.contains_key(&key) {
                    target.remove_snat(&key);
                }
            }
            for (key, t) in wanted {
                target.set_snat(key, t);
            }
            Ok(None)
        }
        Compiled::Host { host } => {
            let vswitch = roles.vswitch.ok_or("this node has no vSwitch")?;
            apply_host(&host, vswitch, roles.probers, roles.now).map(Some)
        }
    }
}

/// Applies the VIP entries named by `keys` as `vips` (the whole map) has them now.
fn apply_mux_entries(
    vips: &serde_json::Map<String, Value>,
    keys: &[&str],
    mux: &mut Mux,
) -> Result<(), String> {
    let mut set = Vec::new();
    let mut gone = Vec::new();
    for key in keys {
        match vips.get(*key) {
            Some(v) => {
                let vip = compile::Vip::deserialize(v).map_err(|e| format!("VIP {key}: {e}"))?;
                set.push(vip_entry(&vip)?);
            }
            None => gone.push(parse_vip_key(key).ok_or_else(|| format!("VIP key {key:?}"))?),
        }
    }
    for key in &gone {
        mux.remove_vip(key);
    }
    for (config, _) in &set {
        if mux.vip(&config.key) != Some(config) {
            mux.set_vip(config.clone());
        }
    }
    for (config, health) in &set {
        for (dip, healthy) in config.dips.iter().zip(health) {
            mux.set_dip_health(dip.addr, *healthy);
        }
    }
    Ok(())
}

/// The SNAT ranges named by `keys` as `snat` (the whole map) has them now: `None`
/// for a range no longer there.
fn snat_entries(
    snat: &serde_json::Map<String, Value>,
    keys: &[&str],
) -> Result<Vec<(SnatKey, Option<SnatTarget>)>, String> {
    keys.iter()
        .map(|key| {
            let bad = || format!("SNAT range key {key:?}");
            let (vip, start) = key.split_once(' ').ok_or_else(bad)?;
            let vip: Ipv4Addr = vip.parse().map_err(|_| bad())?;
            let start: u16 = start.parse().map_err(|_| bad())?;
            let snat_key = SnatKey { vip, start };
            let Some(v) = snat.get(*key) else {
                return Ok((snat_key, None));
            };
            let r =
                compile::SnatRange::deserialize(v).map_err(|e| format!("SNAT range {key}: {e}"))?;
            if (r.vip, r.start) != (IpAddr::V4(vip), start)
                || !start.is_multiple_of(strata_slb::mux::SNAT_RANGE)
            {
                return Err(format!(
                    "SNAT range {key}: VIP {} port {} do not match its key",
                    r.vip, r.start
                ));
            }
            let mac = r
                .mac
                .as_deref()
                .and_then(parse_mac)
                .ok_or_else(|| format!("SNAT range {key}: DIP {} has no MAC address", r.dip))?;
            Ok((
                snat_key,
                Some(SnatTarget {
                    dip: v4(r.dip, "DIP")?,
                    host_pa: v4(r.provider_address, "provider address")?,
                    mac,
                    vni: vni(r.vni)?,
                }),
            ))
        })
        .collect()
}

/// A VIP entry's key as the configuration writes it (`192.168.133.74 tcp 80`).
fn parse_vip_key(key: &str) -> Option<VipKey> {
    let mut parts = key.split(' ');
    let vip = parts.next()?.parse().ok()?;
    let proto = match parts.next()? {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        _ => return None,
    };
    let port = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some(VipKey { vip, proto, port })
}

/// The Mux's VIP entries (and each DIP's health) from the compiled VIPs.
fn vip_entries(config: &compile::MuxConfig) -> Result<Vec<(VipConfig, Vec<bool>)>, String> {
    config.vips.values().map(vip_entry).collect()
}

/// One VIP entry and each of its DIPs' health.
fn vip_entry(v: &compile::Vip) -> Result<(VipConfig, Vec<bool>), String> {
    {
        let key = VipKey {
            vip: v4(v.vip, "VIP")?,
            proto: proto_of(v.protocol),
            port: v.port,
        };
        let mut dips = Vec::new();
        let mut health = Vec::new();
        for b in &v.backends {
            let Some(pa) = b.provider_address else {
                continue;
            };
            let mac = b
                .mac
                .as_deref()
                .and_then(parse_mac)
                .ok_or_else(|| format!("DIP {}: no MAC address", b.dip))?;
            dips.push(Dip {
                addr: v4(b.dip, "DIP")?,
                port: b.port,
                host_pa: v4(pa, "provider address")?,
                mac,
                weight: 1,
            });
            health.push(b.healthy);
        }
        let distribution = match v.distribution {
            compile::Distribution::FiveTuple => Distribution::FiveTuple,
            compile::Distribution::ThreeTuple => Distribution::ThreeTuple,
            compile::Distribution::TwoTuple => Distribution::TwoTuple,
        };
        Ok((
            VipConfig {
                key,
                dips,
                distribution,
                vni: vni(v.vni)?,
            },
            health,
        ))
    }
}

fn apply_mux(entries: &[(VipConfig, Vec<bool>)], mux: &mut Mux) {
    let wanted: BTreeMap<VipKey, &VipConfig> = entries.iter().map(|(c, _)| (c.key, c)).collect();
    let stale: Vec<VipKey> = mux
        .vips()
        .iter()
        .map(|(c, _)| c.key)
        .filter(|k| !wanted.contains_key(k))
        .collect();
    for key in stale {
        mux.remove_vip(&key);
    }
    let current: BTreeMap<VipKey, VipConfig> = mux
        .vips()
        .into_iter()
        .map(|(c, _)| (c.key, c.clone()))
        .collect();
    for (config, _) in entries {
        if current.get(&config.key) != Some(config) {
            mux.set_vip(config.clone());
        }
    }
    // Health is per DIP (a probe's verdict on the DIP), whichever entries carry it.
    for (config, health) in entries {
        for (dip, healthy) in config.dips.iter().zip(health) {
            mux.set_dip_health(dip.addr, *healthy);
        }
    }
}

/// What a host programs for one DIP's port.
#[derive(Debug, Clone)]
struct PortPlan {
    dip: Ipv4Addr,
    vni: Vni,
    mappings: Vec<DipMapping>,
    outbound: Vec<OutboundNat>,
}

/// The plan of the port with `mac` among `ports`, made on first use for `dip` on `vni`;
/// `None` when the MAC is no VM of this host (yet: nothing to program). A port's
/// entries must all name one DIP and one VNI.
fn plan_of<'a>(
    by_port: &'a mut BTreeMap<usize, PortPlan>,
    ports: &[(SwitchPort, &str, EthernetAddress)],
    mac: Option<&str>,
    dip: IpAddr,
    vni_id: u32,
) -> Result<Option<&'a mut PortPlan>, String> {
    let mac = mac
        .and_then(parse_mac)
        .ok_or_else(|| format!("DIP {dip}: no MAC address"))?;
    let Some((port, ..)) = ports.iter().find(|(_, _, p)| *p == mac) else {
        return Ok(None);
    };
    let (dip, vni) = (v4(dip, "DIP")?, vni(vni_id)?);
    let plan = by_port.entry(port.0).or_insert_with(|| PortPlan {
        dip,
        vni,
        mappings: Vec::new(),
        outbound: Vec::new(),
    });
    if (plan.dip, plan.vni) != (dip, vni) {
        return Err(format!(
            "the VM with MAC {mac} is DIP {} on VNI {} and DIP {dip} on VNI {vni}",
            plan.dip, plan.vni
        ));
    }
    Ok(Some(plan))
}

/// Plans the ports of the mappings and outbound rules given (by the port's MAC), and
/// the probes.
fn plan_host<'a>(
    mappings: impl Iterator<Item = &'a compile::Mapping>,
    outbound: impl Iterator<Item = &'a compile::Outbound>,
    probes: impl Iterator<Item = &'a (IpAddr, compile::Probe)>,
    ports: &[(SwitchPort, &str, EthernetAddress)],
) -> Result<(BTreeMap<usize, PortPlan>, Vec<ProbeConfig>), String> {
    let mut by_port: BTreeMap<usize, PortPlan> = BTreeMap::new();
    for o in outbound {
        let Some(plan) = plan_of(&mut by_port, ports, o.mac.as_deref(), o.dip, o.vni)? else {
            continue;
        };
        let exempt = o
            .exempt
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("DIP {}: exempt prefix {p:?}", o.dip))
            })
            .collect::<Result<Vec<ipnet::Ipv4Net>, String>>()?;
        plan.outbound.push(OutboundNat {
            name: o.rule.rsplit('/').next().unwrap_or(&o.rule).to_string(),
            vip: v4(o.vip, "VIP")?,
            protocols: o.protocols.iter().map(|p| proto_of(*p)).collect(),
            ranges: o.ranges.clone(),
            exempt,
        });
    }
    for m in mappings {
        let Some(plan) = plan_of(&mut by_port, ports, m.mac.as_deref(), m.dip, m.vni)? else {
            continue;
        };
        plan.mappings.push(DipMapping {
            name: m.rule.rsplit('/').next().unwrap_or(&m.rule).to_string(),
            vip: VipKey {
                vip: v4(m.vip, "VIP")?,
                proto: proto_of(m.protocol),
                port: m.frontend_port,
            },
            backend_port: m.backend_port,
        });
    }
    let mut planned = Vec::new();
    for (dip, p) in probes {
        planned.push(ProbeConfig {
            dip: v4(*dip, "DIP")?,
            port: p.port,
            http_path: (p.protocol == "http").then(|| p.request_path.clone().unwrap_or("/".into())),
            interval: Duration::from_secs(u64::from(p.interval_seconds.max(1))),
            count: p.number_of_probes.max(1),
        });
    }
    Ok((by_port, planned))
}

/// Programs a port's SLB layers (or removes them), leaving unchanged layers alone, and
/// puts the port on its DIP's virtual network (or on none): the switch hands it VXLAN of
/// that VNI only.
fn program_port(vswitch: &mut VSwitch, port: SwitchPort, plan: Option<&PortPlan>) {
    vswitch.set_vni(port, plan.map(|p| p.vni));
    let Some(vfp) = vswitch.vfp_mut(port) else {
        return;
    };
    let layers = plan
        .map(|p| dip_layers(p.dip, p.vni, &p.mappings, &p.outbound))
        .unwrap_or_default();
    for name in [DECAP_LAYER, NAT_LAYER, SNAT_LAYER] {
        if !layers.iter().any(|l| l.name == name) {
            vfp.remove_layer(name);
        }
    }
    for mut layer in layers {
        layer.groups.sort_by_key(|g| g.priority);
        if vfp.layer(&layer.name) != Some(&layer) {
            vfp.set_layer(layer);
        }
    }
}

fn apply_host(
    config: &compile::HostConfig,
    vswitch: &mut VSwitch,
    probers: &mut Vec<Prober>,
    now: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    let ports = vswitch.vm_ports();
    let (by_port, probes) = plan_host(
        config.mappings.values(),
        config.outbound.values(),
        config.probes.values(),
        &ports,
    )?;
    // Checked: now change.
    let port_ids: Vec<_> = ports.iter().map(|(p, ..)| *p).collect();
    for port in port_ids {
        program_port(vswitch, port, by_port.get(&port.0));
    }
    probers.retain(|p| probes.contains(p.config()));
    for probe in probes {
        if !probers.iter().any(|p| *p.config() == probe) {
            probers.push(Prober::new(probe, now));
        }
    }
    Ok(by_port.values().map(|p| p.dip).collect())
}

/// Applies what `host` (the whole configuration) says of the DIPs in `dips` alone: their
/// ports' layers and their probes. Returns every DIP programmed after.
fn apply_host_dips(
    host: &Value,
    dips: &std::collections::BTreeSet<Ipv4Addr>,
    vswitch: &mut VSwitch,
    probers: &mut Vec<Prober>,
    now: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    let touches = |v: &Value| {
        v.get("dip")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Ipv4Addr>().ok())
            .is_some_and(|d| dips.contains(&d))
    };
    let mappings: Vec<compile::Mapping> = host
        .get("mappings")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|v| touches(v))
        .map(|v| compile::Mapping::deserialize(v).map_err(|e| format!("mapping: {e}")))
        .collect::<Result<_, _>>()?;
    let outbound: Vec<compile::Outbound> = host
        .get("outbound")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|v| touches(v))
        .map(|v| compile::Outbound::deserialize(v).map_err(|e| format!("outbound: {e}")))
        .collect::<Result<_, _>>()?;
    let probes: Vec<(IpAddr, compile::Probe)> = host
        .get("probes")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|v| {
            v.get(0)
                .and_then(Value::as_str)
                .and_then(|d| d.parse::<Ipv4Addr>().ok())
                .is_some_and(|d| dips.contains(&d))
        })
        .map(|v| <(IpAddr, compile::Probe)>::deserialize(v).map_err(|e| format!("probe: {e}")))
        .collect::<Result<_, _>>()?;
    let ports = vswitch.vm_ports();
    let (by_port, wanted) = plan_host(mappings.iter(), outbound.iter(), probes.iter(), &ports)?;
    // The ports of these DIPs: those planned, and those programmed for one of them before.
    let mut programmed = Vec::new();
    let port_ids: Vec<_> = ports.iter().map(|(p, ..)| *p).collect();
    for port in port_ids {
        let Some(before) = vswitch.vfp(port).map(slb_dip) else {
            continue;
        };
        let plan = by_port.get(&port.0);
        if plan.is_some() || before.is_some_and(|d| dips.contains(&d)) {
            program_port(vswitch, port, plan);
        }
        programmed.extend(vswitch.vfp(port).and_then(slb_dip));
    }
    probers.retain(|p| !dips.contains(&p.dip()) || wanted.contains(p.config()));
    for probe in wanted {
        if !probers.iter().any(|p| *p.config() == probe) {
            probers.push(Prober::new(probe, now));
        }
    }
    Ok(programmed)
}

/// The DIP a port's SLB layers are for, if it has them: the one its NAT rewrites to, or
/// the source its SNAT rewrites.
fn slb_dip(vfp: &strata_vswitch::vfp::Port) -> Option<Ipv4Addr> {
    use strata_vswitch::vfp::Action;
    let rules = |name| {
        vfp.layer(name)
            .into_iter()
            .flat_map(|l| &l.groups)
            .flat_map(|g| &g.rules)
    };
    let nat = rules(NAT_LAYER).find_map(|r| match &r.action {
        Action::Nat(spec) => match spec.dst {
            Some((IpAddr::V4(d), _)) => Some(d),
            _ => None,
        },
        _ => None,
    });
    nat.or_else(|| {
        rules(SNAT_LAYER)
            .filter(|r| matches!(r.action, Action::Snat(_)))
            .find_map(|r| match r.conditions.src.first() {
                Some(ipnet::IpNet::V4(n)) => Some(n.addr()),
                _ => None,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_read_in_the_network_controllers_spelling_and_the_usual_ones() {
        let want = EthernetAddress([0x00, 0x1d, 0xd8, 0x07, 0x00, 0x01]);
        assert_eq!(parse_mac("001DD8070001"), Some(want));
        assert_eq!(parse_mac("00-1D-D8-07-00-01"), Some(want));
        assert_eq!(parse_mac("00:1d:d8:07:00:01"), Some(want));
        assert_eq!(parse_mac("001DD80700"), None);
        assert_eq!(parse_mac("001DD807000G"), None);
        assert_eq!(parse_mac("ééééééé"), None);
    }
}
