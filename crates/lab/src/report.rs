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
            let _ = writeln!(out, "  route {} via {}  {}", r.prefix, r.via, r.note);
        }
    }
    out
}
