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
use strata_slb::host::{DECAP_LAYER, DipMapping, NAT_LAYER, dip_layers};
use strata_slb::mux::{Dip, Mux, VipConfig, VipKey};
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

/// Applies a configuration; on an error nothing is changed. A host's returns the DIPs it
/// has programmed (for its report: the Muxes are given a DIP once its host has it).
pub(crate) fn apply(config: &Value, roles: Roles<'_>) -> Result<Option<Vec<Ipv4Addr>>, String> {
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
            let bgp = roles.bgp.ok_or("this Mux has no BGP speaker")?;
            bgp.speaker
                .set_neighbors(mux.local_asn, &peers, roles.now, bgp.sockets, bgp.router)?;
            apply_mux(&entries, target);
            Ok(None)
        }
        Compiled::Host { host } => {
            let vswitch = roles.vswitch.ok_or("this node has no vSwitch")?;
            apply_host(&host, vswitch, roles.probers, roles.now).map(Some)
        }
    }
}

/// The Mux's VIP entries (and each DIP's health) from the compiled VIPs.
fn vip_entries(config: &compile::MuxConfig) -> Result<Vec<(VipConfig, Vec<bool>)>, String> {
    let mut entries = Vec::new();
    for v in config.vips.values() {
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
        entries.push((
            VipConfig {
                key,
                dips,
                distribution,
                vni: vni(v.vni)?,
            },
            health,
        ));
    }
    Ok(entries)
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

fn apply_host(
    config: &compile::HostConfig,
    vswitch: &mut VSwitch,
    probers: &mut Vec<Prober>,
    now: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    // Each DIP's port, found by the NIC's MAC; its mappings.
    let ports = vswitch.vm_ports();
    let mut by_port: BTreeMap<usize, (Ipv4Addr, Vni, Vec<DipMapping>)> = BTreeMap::new();
    for m in config.mappings.values() {
        let mac = m
            .mac
            .as_deref()
            .and_then(parse_mac)
            .ok_or_else(|| format!("DIP {}: no MAC address", m.dip))?;
        let Some((port, ..)) = ports.iter().find(|(_, _, p)| *p == mac) else {
            // Not a VM of this host (yet): nothing to program.
            continue;
        };
        let (dip, vni) = (v4(m.dip, "DIP")?, vni(m.vni)?);
        let entry = by_port
            .entry(port.0)
            .or_insert_with(|| (dip, vni, Vec::new()));
        entry.2.push(DipMapping {
            name: m.rule.rsplit('/').next().unwrap_or(&m.rule).to_string(),
            vip: VipKey {
                vip: v4(m.vip, "VIP")?,
                proto: proto_of(m.protocol),
                port: m.frontend_port,
            },
            backend_port: m.backend_port,
        });
    }
    let mut probes = Vec::new();
    for (dip, p) in config.probes.values() {
        probes.push(ProbeConfig {
            dip: v4(*dip, "DIP")?,
            port: p.port,
            http_path: (p.protocol == "http").then(|| p.request_path.clone().unwrap_or("/".into())),
            interval: Duration::from_secs(u64::from(p.interval_seconds.max(1))),
            count: p.number_of_probes.max(1),
        });
    }
    // Checked: now change.
    let port_ids: Vec<_> = ports.iter().map(|(p, ..)| *p).collect();
    for port in port_ids {
        let Some(vfp) = vswitch.vfp_mut(port) else {
            continue;
        };
        match by_port.get(&port.0) {
            Some((dip, vni, mappings)) => {
                for mut layer in dip_layers(*dip, *vni, mappings) {
                    layer.groups.sort_by_key(|g| g.priority);
                    if vfp.layers().iter().find(|l| l.name == layer.name) != Some(&layer) {
                        vfp.set_layer(layer);
                    }
                }
            }
            None => {
                vfp.remove_layer(DECAP_LAYER);
                vfp.remove_layer(NAT_LAYER);
            }
        }
    }
    probers.retain(|p| probes.contains(p.config()));
    for probe in probes {
        if !probers.iter().any(|p| *p.config() == probe) {
            probers.push(Prober::new(probe, now));
        }
    }
    Ok(by_port.values().map(|(dip, ..)| *dip).collect())
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
