//! The lab's state for its dashboard, as JSON: links, nodes, BGP sessions with their
//! routes, each Mux's VIPs and DIP health, each VFP port's layers and cached flows, and
//! the controller's resources with their provisioningState. Field names are stable (see
//! docs/cli-json.md).

use serde_json::{Value, json};

use crate::Lab;

/// The whole state now.
pub fn state(lab: &Lab) -> Value {
    let mut links = Vec::new();
    for (s, segment) in lab.segments().iter().enumerate() {
        for port in 0..segment.ports() {
            let (Some(n), Some(c)) = (
                lab.port_owner(s, port),
                segment.counters(strata_fabric::PortId(port)),
            ) else {
                continue;
            };
            links.push(json!({
                "network": segment.name(),
                "node": lab.nodes()[n].name(),
                "tx_frames": c.tx_frames,
                "tx_bytes": c.tx_bytes,
                "rx_frames": c.rx_frames,
                "rx_bytes": c.rx_bytes,
                "queue_drops": c.queue_drops,
            }));
        }
    }
    let mut nodes = Vec::new();
    for node in lab.nodes() {
        let c = node.router().counters();
        nodes.push(json!({
            "name": node.name(),
            "received": c.rx_frames,
            "forwarded": c.forwarded,
            "dropped": c.malformed + c.unsupported + c.not_forwarding + c.ttl_exceeded
                + c.no_route + c.too_big + c.neighbor_unreachable + c.neighbor_overflow,
            "agent": node.agent().map(|a| json!({
                "connected": a.agent().is_ready(),
                "applied": a.agent().applied_revision(),
            })),
        }));
    }
    let mut resources = Vec::new();
    if let Some(nc) = lab.nc() {
        let controller = nc.controller();
        for kind in strata_model::kind::KINDS {
            for doc in controller.documents(kind.name) {
                resources.push(json!({
                    "collection": kind.name,
                    "resourceId": doc.get("resourceId"),
                    "provisioningState": doc.pointer("/properties/provisioningState"),
                }));
            }
        }
    }
    json!({
        "lab": lab.topology().name,
        "time_s": lab.now().as_secs_f64(),
        "links": links,
        "nodes": nodes,
        "bgp": bgp(lab),
        "muxes": muxes(lab),
        "vfp": vfp(lab),
        "resources": resources,
    })
}

/// Each BGP speaker's neighbours: state, BFD, routes received and advertised, the last
/// error (`strata lab bgp -o json`).
pub fn bgp(lab: &Lab) -> Vec<Value> {
    let mut out = Vec::new();
    for node in lab.nodes() {
        if let Some(neighbors) = node.bgp_status() {
            for nb in neighbors {
                out.push(json!({
                    "node": node.name(),
                    "neighbor": nb.address.to_string(),
                    "asn": nb.asn,
                    "state": format!("{:?}", nb.state),
                    "bfd": nb.bfd.map(|s| format!("{s:?}")),
                    "received": nb.received.iter()
                        .map(|(p, h)| json!({"prefix": p.to_string(), "next_hop": h.to_string()}))
                        .collect::<Vec<_>>(),
                    "advertised": nb.advertised.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "last_error": nb.last_down,
                }));
            }
        }
    }
    out
}

/// Each Mux's VIP entries, their DIPs and health, and its counters (`strata lab mux -o
/// json`).
pub fn muxes(lab: &Lab) -> Vec<Value> {
    let mut out = Vec::new();
    for node in lab.nodes() {
        let Some(mux) = node.mux() else { continue };
        let vips: Vec<Value> = mux
            .vips()
            .into_iter()
            .map(|(config, healthy)| {
                let k = config.key;
                json!({
                    "vip": k.vip.to_string(),
                    "protocol": crate::diagram::protocol_name(k.proto),
                    "port": k.port,
                    "loadDistribution": crate::distribution_name(config.distribution),
                    "vni": config.vni.get(),
                    "dips": config.dips.iter().zip(&healthy).map(|(d, up)| json!({
                        "address": d.addr.to_string(),
                        "port": d.port,
                        "host_pa": d.host_pa.to_string(),
                        "healthy": up,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let c = mux.counters();
        let f = mux.flow_counters();
        out.push(json!({
            "node": node.name(),
            "pa": mux.config().pa.to_string(),
            "encapsulated": c.encapsulated,
            "no_vip": c.no_vip,
            "no_healthy_dip": c.no_healthy_dip,
            "rehashed": c.rehashed,
            "flow_hits": f.hits,
            "flow_misses": f.misses,
            "vips": vips,
        }));
    }
    out
}

/// Each VM port's VFP: counters, and its rules and cached flows as `strata lab vfp`
/// prints them (`-o json` of that command has them field by field).
pub fn vfp(lab: &Lab) -> Vec<Value> {
    let mut out = Vec::new();
    for node in lab.nodes() {
        let Some(vswitch) = node.vswitch() else {
            continue;
        };
        for (p, port, _) in vswitch.vm_ports() {
            let Some(v) = vswitch.vfp(p) else { continue };
            let c = v.counters();
            out.push(json!({
                "node": node.name(),
                "port": port,
                "flows": v.flows().len(),
                "fast_path": c.fast_path,
                "slow_path": c.slow_path,
                "rules": v.describe_rules(),
                "cached": v.describe_flows(lab.now()),
            }));
        }
    }
    out
}
