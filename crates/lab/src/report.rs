//! Human-readable scenario results.

use std::fmt::Write;

use crate::{Hop, ScenarioResult};

/// Formats one scenario's result with its hop-by-hop paths.
pub fn scenario(r: &ScenarioResult) -> String {
    let mut out = String::new();
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{verdict}  {}  {}  [t={:.3}s..{:.3}s]",
        r.name,
        r.summary,
        r.started.as_secs_f64(),
        r.ended.as_secs_f64()
    );
    if !r.description.is_empty() {
        let _ = writeln!(out, "      {}", r.description);
    }
    for f in &r.failures {
        let _ = writeln!(out, "      ! {f}");
    }
    path(&mut out, "request", &r.request, r.started);
    path(&mut out, "reply", &r.reply, r.started);
    out
}

fn path(out: &mut String, what: &str, hops: &[Hop], start: std::time::Duration) {
    if hops.is_empty() {
        let _ = writeln!(out, "      {what:<8} (no frames seen)");
        return;
    }
    let _ = writeln!(
        out,
        "      {what:<8} {}",
        ScenarioResult::nodes(hops).join(" → ")
    );
    // A background fetch's frames come before the `await` that reports them: time them
    // from their first hop then.
    let start = hops.first().map_or(start, |h| h.time.min(start));
    for h in hops {
        let _ = writeln!(
            out,
            "        +{:>9.3} ms  {:<22} {:<10} → {:<10} {}",
            h.time.saturating_sub(start).as_secs_f64() * 1000.0,
            h.network,
            h.from,
            h.to,
            h.what
        );
    }
}

/// The closing line: how many passed.
pub fn summary(results: &[ScenarioResult]) -> String {
    let passed = results.iter().filter(|r| r.passed).count();
    format!("{passed}/{} scenarios passed", results.len())
}

/// A text picture of a topology: each network with the NICs on it, then each node's
/// routes and roles.
pub fn topology(t: &crate::topology::Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lab {}: {}", t.name, t.description);
    for (i, net) in t.networks.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nnetwork {} {}  {}",
            net.name, net.prefix, net.description
        );
        for (n, node) in t.nodes.iter().enumerate() {
            for (k, nic) in node
                .nics
                .iter()
                .enumerate()
                .filter(|(_, nic)| nic.network == i)
            {
                let _ = writeln!(
                    out,
                    "  ├─ {:<12} {:<16} {:<18} {}",
                    node.name,
                    nic.name,
                    nic.addr,
                    crate::mac_of(n, k)
                );
            }
        }
    }
    let _ = writeln!(out);
    for node in &t.nodes {
        let mut roles = vec![node.kind.as_str().to_string()];
        if node.nat.is_some() {
            roles.push("nat".into());
        }
        for s in &node.services {
            roles.push(match s {
                strata_node::ServiceConfig::Http { port, .. } => format!("http:{port}"),
                strata_node::ServiceConfig::Dns { .. } => "dns".into(),
            });
        }
        let _ = writeln!(
            out,
            "node {} [{}]  {}",
            node.name,
            roles.join(", "),
            node.description
        );
        for r in &node.routes {
            let target = match (r.via, r.kind) {
                (Some(via), _) => format!("via {via}"),
                (None, strata_node::router::RouteKind::Reject) => "reject".to_string(),
                (None, _) => "blackhole".to_string(),
            };
            let _ = writeln!(out, "  route {} {target}  {}", r.prefix, r.note);
        }
    }
    out
}

/// Each host vSwitch's VM ports: their VFP layers, groups and rules (`vfpctrl
/// /list-rule`) and their cached flows (`/list-unified-flow`). `port` picks one port.
pub fn vfp(lab: &crate::Lab, port: Option<&str>, rules: bool, flows: bool) -> String {
    let mut out = String::new();
    for node in lab.nodes() {
        let Some(vswitch) = node.vswitch() else {
            continue;
        };
        for (p, name, mac) in vswitch.vm_ports() {
            if port.is_some_and(|want| want != name) {
                continue;
            }
            let Some(vfp) = vswitch.vfp(p) else { continue };
            let _ = writeln!(
                out,
                "{} vSwitch {} port {name} ({mac})",
                node.name(),
                vswitch.name()
            );
            if rules {
                for line in vfp.describe_rules().lines().skip(1) {
                    let _ = writeln!(out, "{line}");
                }
            }
            if flows {
                let c = vfp.counters();
                let _ = writeln!(
                    out,
                    "  unified flow table: {} flows; fast path {}, slow path {}, dropped {}",
                    vfp.flows().len(),
                    c.fast_path,
                    c.slow_path,
                    c.dropped_blocked + c.dropped_unparsed
                );
                out.push_str(&vfp.describe_flows(lab.now()));
            }
        }
    }
    out
}

/// Each Mux's VIP map: entries, their DIPs, where each DIP lives and whether it is in the
/// pool; and the Mux's counters.
pub fn mux(lab: &crate::Lab) -> String {
    let mut out = String::new();
    for node in lab.nodes() {
        let Some(mux) = node.mux() else { continue };
        let c = mux.counters();
        let f = mux.flow_counters();
        let _ = writeln!(
            out,
            "Mux {} (PA {}): {} encapsulated, {} no VIP, {} no healthy DIP, {} re-hashed; flow table {} hits, {} misses",
            node.name(),
            mux.config().pa,
            c.encapsulated,
            c.no_vip,
            c.no_healthy_dip,
            c.rehashed,
            f.hits,
            f.misses
        );
        for (config, healthy) in mux.vips() {
            let k = config.key;
            let _ = writeln!(
                out,
                "  VIP {} {}/{} (loadDistribution {}, VNI {})",
                k.vip,
                crate::diagram::protocol_name(k.proto),
                k.port,
                crate::distribution_name(config.distribution),
                config.vni
            );
            for (dip, up) in config.dips.iter().zip(healthy) {
                let _ = writeln!(
                    out,
                    "    DIP {}:{} on host PA {}  {}",
                    dip.addr,
                    dip.port,
                    dip.host_pa,
                    if up {
                        "in the pool"
                    } else {
                        "out (probe failed)"
                    }
                );
            }
        }
    }
    out
}

/// Each BGP speaker's neighbors, their state, and the routes received and advertised
/// (like `birdc show protocols` and `show route`).
pub fn bgp(lab: &crate::Lab) -> String {
    let mut out = String::new();
    for node in lab.nodes() {
        let Some(neighbors) = node.bgp_status() else {
            continue;
        };
        let _ = writeln!(out, "{}:", node.name());
        for n in neighbors {
            let _ = writeln!(
                out,
                "  neighbor {} AS {}  {:?}{}",
                n.address,
                n.asn,
                n.state,
                n.last_down
                    .map(|d| format!(" (last down: {d})"))
                    .unwrap_or_default()
            );
            for (prefix, next_hop) in &n.received {
                let _ = writeln!(out, "    received {prefix} via {next_hop}");
            }
            for prefix in &n.advertised {
                let _ = writeln!(out, "    advertised {prefix}");
            }
        }
    }
    out
}

/// One traced flow: the request's hops, then the reply's, numbered as the SVG numbers
/// them, each with the interfaces it left and entered and what its sender did.
pub fn trace(r: &ScenarioResult) -> String {
    let mut out = String::new();
    let verdict = if r.passed { "ok" } else { "FAILED" };
    let _ = writeln!(out, "{verdict}: {}", r.summary);
    for f in &r.failures {
        let _ = writeln!(out, "  ! {f}");
    }
    let mut number = 0;
    for (what, hops) in [("request", &r.request), ("reply", &r.reply)] {
        if hops.is_empty() {
            let _ = writeln!(out, "\n{what}: no frames seen");
            continue;
        }
        let _ = writeln!(out, "\n{what}: {}", ScenarioResult::nodes(hops).join(" → "));
        for h in hops.iter() {
            number += 1;
            let _ = writeln!(
                out,
                "{number:>3}  +{:.3} ms  {} ({}) → {} ({}) on {}",
                h.time.saturating_sub(r.started).as_secs_f64() * 1000.0,
                h.from,
                h.from_iface,
                h.to,
                h.to_iface,
                h.network
            );
            let _ = writeln!(out, "       {}", h.what);
            for d in &h.did {
                let _ = writeln!(out, "       {}: {d}", h.from);
            }
        }
    }
    out
}

/// [`trace`] as JSON: `{passed, summary, failures, request: [hop], reply: [hop]}`, each
/// hop `{number, time_ms, network, from, from_interface, to, to_interface, frame, did}`.
pub fn trace_json(r: &ScenarioResult) -> serde_json::Value {
    let mut number = 0;
    let mut hops = |hops: &[Hop]| -> Vec<serde_json::Value> {
        hops.iter()
            .map(|h| {
                number += 1;
                serde_json::json!({
                    "number": number,
                    "time_ms": h.time.saturating_sub(r.started).as_secs_f64() * 1000.0,
                    "network": h.network,
                    "from": h.from,
                    "from_interface": h.from_iface,
                    "to": h.to,
                    "to_interface": h.to_iface,
                    "frame": h.what,
                    "did": h.did,
                })
            })
            .collect()
    };
    let request = hops(&r.request);
    let reply = hops(&r.reply);
    serde_json::json!({
        "passed": r.passed,
        "summary": r.summary,
        "failures": r.failures,
        "request": request,
        "reply": reply,
    })
}
