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

/// A MAC as the docs write it: `00:15:5d:64:02:00`.
fn colons(mac: strata_wire::EthernetAddress) -> String {
    mac.as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn mac_text(node: usize, nic: usize) -> String {
    colons(crate::mac_of(node, nic))
}

fn route_target(r: &crate::topology::RouteSpec) -> String {
    match (r.via, r.kind) {
        (Some(via), _) => format!("via {via}"),
        (None, strata_node::router::RouteKind::Reject) => "reject".to_string(),
        (None, _) => "blackhole".to_string(),
    }
}

fn roles(node: &crate::topology::NodeSpec) -> Vec<String> {
    let mut roles = vec![node.kind.as_str().to_string()];
    if node.nat.is_some() {
        roles.push("nat".into());
    }
    if let Some(v) = &node.vswitch {
        roles.push(format!("vswitch {}", v.name));
    }
    if node.mux.is_some() {
        roles.push("mux".into());
    }
    if let Some(b) = &node.bgp {
        roles.push(format!("bgp AS {}", b.asn));
    }
    if node.controller.is_some() {
        roles.push("controller".into());
    }
    for s in &node.services {
        roles.push(match s {
            strata_node::ServiceConfig::Http { port, .. } => format!("http:{port}"),
            strata_node::ServiceConfig::Dns { .. } => "dns".into(),
        });
    }
    roles
}

/// What a scenario does, in a few words.
fn scenario_action(t: &crate::topology::Topology, s: &crate::topology::Scenario) -> String {
    use crate::topology::ScenarioAction as A;
    let node = |n: usize| t.nodes[n].name.as_str();
    match &s.action {
        A::Ping { target, count } => format!("{} pings {target} ({count}x)", node(s.from)),
        A::Http {
            url,
            repeat,
            background,
        } => format!(
            "{} GET {url}{}{}",
            node(s.from),
            if *repeat > 1 {
                format!(" x{repeat}")
            } else {
                String::new()
            },
            if *background {
                " in the background"
            } else {
                ""
            }
        ),
        A::Udp { target } => format!("{} sends a datagram to {target}", node(s.from)),
        A::Resolve { name } => format!("{} resolves {name}", node(s.from)),
        A::Await { scenario } => format!("await {}", t.scenarios[*scenario].name),
        A::SetHttp { node: n, enabled } => {
            format!(
                "{} {}'s HTTP server",
                if *enabled { "start" } else { "stop" },
                node(*n)
            )
        }
        A::StopBgp { node: n } => format!("stop {}'s BGP", node(*n)),
        A::RestartBgp { node: n } => format!("restart {}'s BGP", node(*n)),
        A::Cut { node: n, cut } => {
            format!("{} {}", if *cut { "cut" } else { "reconnect" }, node(*n))
        }
    }
}

/// A text picture of a topology: each network with the NICs on it (a tree), each node's
/// roles and routes, the Software Load Balancer, the BGP sessions and the scenarios.
pub fn topology(t: &crate::topology::Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lab {}: {}", t.name, t.description);
    for (i, net) in t.networks.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nnetwork {} {}  {}",
            net.name, net.prefix, net.description
        );
        let mut rows: Vec<[String; 4]> = Vec::new();
        for (n, node) in t.nodes.iter().enumerate() {
            for (k, nic) in node
                .nics
                .iter()
                .enumerate()
                .filter(|(_, nic)| nic.network == i)
            {
                let name = match nic.vswitch_host {
                    Some(h) => format!(
                        "{} (port of {}'s {}{})",
                        nic.name,
                        t.nodes[h].name,
                        t.nodes[h]
                            .vswitch
                            .as_ref()
                            .map_or("vSwitch", |v| v.name.as_str()),
                        nic.vlan.map(|v| format!(", VLAN {v}")).unwrap_or_default()
                    ),
                    None => nic.name.clone(),
                };
                rows.push([
                    node.name.clone(),
                    name,
                    nic.addr.to_string(),
                    mac_text(n, k),
                ]);
            }
        }
        let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2) = (width(0), width(1), width(2));
        for (k, r) in rows.iter().enumerate() {
            let branch = if k + 1 == rows.len() {
                "└─"
            } else {
                "├─"
            };
            let _ = writeln!(
                out,
                "  {branch} {:<w0$}  {:<w1$}  {:<w2$}  {}",
                r[0], r[1], r[2], r[3]
            );
        }
    }
    let _ = writeln!(out, "\nnodes");
    for node in &t.nodes {
        let _ = writeln!(
            out,
            "  {} [{}]  {}",
            node.name,
            roles(node).join(", "),
            node.description
        );
        for r in &node.routes {
            let _ = writeln!(
                out,
                "    route {} {}  {}",
                r.prefix,
                route_target(r),
                r.note
            );
        }
    }
    if let Some(slb) = &t.slb {
        let _ = writeln!(
            out,
            "\nsoftware load balancer: VNI {}, VIPs from {}",
            slb.vni, slb.vip_prefix
        );
        let mut table = Table::new(&[
            "rule",
            "vip",
            "protocol/port",
            "backend port",
            "distribution",
            "dips",
            "probe",
        ]);
        for v in &slb.vips {
            table.row(vec![
                v.name.clone(),
                v.key.vip.to_string(),
                format!(
                    "{}/{}",
                    crate::diagram::protocol_name(v.key.proto),
                    v.key.port
                ),
                v.backend_port.to_string(),
                crate::distribution_name(v.distribution).to_string(),
                v.members
                    .iter()
                    .map(|(n, _)| t.nodes[*n].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                v.probe
                    .as_ref()
                    .map_or("-".to_string(), |p| match &p.http_path {
                        Some(path) => format!(
                            "http :{}{path} every {}s x{}",
                            p.port,
                            p.interval.as_secs(),
                            p.count
                        ),
                        None => format!(
                            "tcp :{} every {}s x{}",
                            p.port,
                            p.interval.as_secs(),
                            p.count
                        ),
                    }),
            ]);
        }
        for line in table.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let mut bgp = Table::new(&["node", "as", "neighbor", "peer as", "mode", "hold", "bfd"]);
    for node in &t.nodes {
        let Some(b) = &node.bgp else { continue };
        for nb in &b.neighbors {
            bgp.row(vec![
                node.name.clone(),
                b.asn.to_string(),
                nb.address.to_string(),
                nb.asn.to_string(),
                if nb.passive { "passive" } else { "active" }.to_string(),
                format!("{}s", nb.hold_time),
                nb.bfd.as_ref().map_or("-".to_string(), |c| {
                    format!("{} ms x{}", c.desired_min_tx.as_millis(), c.detect_mult)
                }),
            ]);
        }
    }
    if !bgp.is_empty() {
        let _ = writeln!(out, "\nbgp");
        for line in bgp.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !t.scenarios.is_empty() {
        let _ = writeln!(out, "\nscenarios");
        let mut table = Table::new(&["name", "does", "expects"]);
        for s in &t.scenarios {
            table.row(vec![
                s.name.clone(),
                scenario_action(t, s),
                if s.expect.failure {
                    "failure"
                } else {
                    "success"
                }
                .to_string(),
            ]);
        }
        for line in table.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// [`topology`] as JSON: `name`, `description`, `networks[]` (`name`, `prefix`,
/// `description`, `nics[]`: `node`, `nic`, `address`, `mac`, `vswitch_of`), `nodes[]`
/// (`name`, `kind`, `roles`, `description`, `routes[]`: `prefix`, `via`, `type`,
/// `note`), `slb` (`vni`, `vipPrefix`, `rules[]`), `bgp[]`, `scenarios[]`.
pub fn topology_json(t: &crate::topology::Topology) -> serde_json::Value {
    use serde_json::json;
    let networks: Vec<_> = t
        .networks
        .iter()
        .enumerate()
        .map(|(i, net)| {
            let nics: Vec<_> = t
                .nodes
                .iter()
                .enumerate()
                .flat_map(|(n, node)| {
                    node.nics
                        .iter()
                        .enumerate()
                        .filter(move |(_, nic)| nic.network == i)
                        .map(move |(k, nic)| {
                            json!({
                                "node": node.name,
                                "nic": nic.name,
                                "address": nic.addr.to_string(),
                                "mac": mac_text(n, k),
                                "vswitch_of": nic.vswitch_host.map(|h| t.nodes[h].name.clone()),
                                "vlan": nic.vlan,
                            })
                        })
                })
                .collect();
            json!({"name": net.name, "prefix": net.prefix.to_string(), "description": net.description, "nics": nics})
        })
        .collect();
    let nodes: Vec<_> = t
        .nodes
        .iter()
        .map(|node| {
            json!({
                "name": node.name,
                "kind": node.kind.as_str(),
                "roles": roles(node),
                "description": node.description,
                "routes": node.routes.iter().map(|r| json!({
                    "prefix": r.prefix.to_string(),
                    "via": r.via.map(|v| v.to_string()),
                    "type": match (r.via, r.kind) {
                        (Some(_), _) => "forward",
                        (None, strata_node::router::RouteKind::Reject) => "reject",
                        (None, _) => "blackhole",
                    },
                    "note": r.note,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let slb = t.slb.as_ref().map(|slb| {
        json!({
            "vni": slb.vni.get(),
            "vipPrefix": slb.vip_prefix.to_string(),
            "rules": slb.vips.iter().map(|v| json!({
                "name": v.name,
                "vip": v.key.vip.to_string(),
                "protocol": crate::diagram::protocol_name(v.key.proto),
                "port": v.key.port,
                "backend_port": v.backend_port,
                "loadDistribution": crate::distribution_name(v.distribution),
                "dips": v.members.iter().map(|(n, _)| t.nodes[*n].name.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });
    let bgp: Vec<_> = t
        .nodes
        .iter()
        .filter_map(|node| {
            let b = node.bgp.as_ref()?;
            Some(json!({
                "node": node.name,
                "asn": b.asn,
                "neighbors": b.neighbors.iter().map(|nb| json!({
                    "address": nb.address.to_string(),
                    "asn": nb.asn,
                    "passive": nb.passive,
                    "hold_time": nb.hold_time,
                    "bfd_interval_ms": nb.bfd.as_ref().map(|c| c.desired_min_tx.as_millis() as u64),
                })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let scenarios: Vec<_> = t
        .scenarios
        .iter()
        .map(|s| json!({"name": s.name, "does": scenario_action(t, s), "expect": if s.expect.failure { "failure" } else { "success" }}))
        .collect();
    json!({
        "name": t.name,
        "description": t.description,
        "networks": networks,
        "nodes": nodes,
        "slb": slb,
        "bgp": bgp,
        "scenarios": scenarios,
    })
}

/// Columns aligned under upper-case headers, two spaces apart, as kubectl prints them.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain(std::iter::once(self.headers[i].chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = String>| {
            let mut l = String::new();
            for (i, c) in cells.enumerate() {
                if i + 1 < widths.len() {
                    let _ = write!(l, "{c:<w$}  ", w = widths[i]);
                } else {
                    l.push_str(&c);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut self.headers.iter().map(|h| h.to_uppercase()));
        for r in &self.rows {
            line(&mut r.iter().cloned());
        }
        out
    }
}

/// Which cached flows `strata lab vfp` lists.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    /// Only flows of this protocol number.
    pub proto: Option<u8>,
    /// Only flows with this source or destination address.
    pub addr: Option<std::net::IpAddr>,
    /// Only flows in this direction.
    pub direction: Option<strata_node::vswitch::vfp::Direction>,
    /// At most this many per port (the rest are counted).
    pub limit: Option<usize>,
}

impl FlowFilter {
    fn admits(&self, id: &strata_node::vswitch::vfp::FlowId) -> bool {
        self.proto.is_none_or(|p| id.flow.proto() == p)
            && self
                .addr
                .is_none_or(|a| id.flow.src() == a || id.flow.dst() == a)
            && self.direction.is_none_or(|d| id.direction == d)
    }
}

/// The VM ports `port` picks (all when `None`): host, switch, port name, its VFP.
fn vfp_ports<'a>(
    lab: &'a crate::Lab,
    port: Option<&'a str>,
) -> impl Iterator<
    Item = (
        &'a str,
        &'a str,
        String,
        String,
        Option<u32>,
        &'a strata_node::vswitch::vfp::Port,
    ),
> + 'a {
    lab.nodes().iter().flat_map(move |node| {
        node.vswitch().into_iter().flat_map(move |vswitch| {
            vswitch
                .vm_ports()
                .into_iter()
                .filter(move |(_, name, _)| port.is_none_or(|want| want == *name))
                .filter_map(move |(p, name, mac)| {
                    Some((
                        node.name(),
                        vswitch.name(),
                        name.to_string(),
                        colons(mac),
                        vswitch.vni(p).map(|v| v.get()),
                        vswitch.vfp(p)?,
                    ))
                })
        })
    })
}

/// Each host vSwitch's VM ports: their VFP layers, groups and rules with what each rule
/// matches (`vfpctrl /list-rule`) and their cached flows, filtered (`/list-unified-flow`).
/// `port` picks one port.
pub fn vfp(
    lab: &crate::Lab,
    port: Option<&str>,
    rules: bool,
    flows: bool,
    filter: &FlowFilter,
) -> String {
    let mut out = String::new();
    for (host, switch, name, mac, vni, vfp) in vfp_ports(lab, port) {
        let vni = vni.map(|v| format!(", VNI {v}")).unwrap_or_default();
        let _ = writeln!(out, "{host} vSwitch {switch} port {name} ({mac}{vni})");
        if rules {
            for line in vfp.describe_rules().lines().skip(1) {
                let _ = writeln!(out, "{line}");
            }
        }
        if flows {
            let c = vfp.counters();
            let all = vfp.flows();
            let _ = writeln!(
                out,
                "  unified flow table: {} flows; fast path {}, slow path {}, dropped {}",
                all.len(),
                c.fast_path,
                c.slow_path,
                c.dropped_blocked + c.dropped_unparsed
            );
            let chosen: Vec<_> = all.iter().filter(|(id, _)| filter.admits(id)).collect();
            let shown = filter.limit.unwrap_or(usize::MAX).min(chosen.len());
            for (id, e) in &chosen[..shown] {
                let _ = writeln!(out, "  {}", vfp.describe_flow(id, e, lab.now()));
            }
            if shown < chosen.len() {
                let _ = writeln!(out, "  ... and {} more", chosen.len() - shown);
            }
            if chosen.len() < all.len() {
                let _ = writeln!(
                    out,
                    "  ({} flows not matching the filter not shown)",
                    all.len() - chosen.len()
                );
            }
            let _ = write!(out, "{}", vfp.describe_layer_flows(lab.now()));
        }
    }
    out
}

/// [`vfp`] as JSON: per port, `node`, `switch`, `port`, `mac`, `vni` (the virtual
/// network whose VXLAN the port takes, or null), `counters`, `layers`
/// (`name`, `priority`, `groups`: `name`, `direction`, `family`, `priority`, `rules`:
/// `name`, `priority`, `conditions`, `action`) and `flows` (`direction`, `flow`, `vni`,
/// `action`, `packets`, `idle_s`, `stale`), filtered as in text, and `layer_flows`
/// (per stateful layer, `layer` and its connections' sides: `direction`, `flow` as the
/// layer sees it, `action`, `side` (`opening` or `reply`), `idle_s`).
pub fn vfp_json(lab: &crate::Lab, port: Option<&str>, filter: &FlowFilter) -> serde_json::Value {
    use serde_json::json;
    let ports: Vec<serde_json::Value> = vfp_ports(lab, port)
        .map(|(host, switch, name, mac, vni, vfp)| {
            let layers: Vec<serde_json::Value> = vfp
                .layers()
                .map(|l| {
                    json!({
                        "name": l.name,
                        "priority": l.priority,
                        "groups": l.groups.iter().map(|g| json!({
                            "name": g.name,
                            "direction": g.direction.to_string(),
                            "family": g.family.to_string(),
                            "priority": g.priority,
                            "rules": g.rules.iter().map(|r| json!({
                                "name": r.name,
                                "priority": r.priority,
                                "conditions": r.conditions.to_string(),
                                "action": r.action.to_string(),
                            })).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let chosen: Vec<_> = vfp
                .flows()
                .into_iter()
                .filter(|(id, _)| filter.admits(id))
                .take(filter.limit.unwrap_or(usize::MAX))
                .map(|(id, e)| {
                    json!({
                        "direction": id.direction.to_string(),
                        "flow": id.flow.to_string(),
                        "vni": id.vni,
                        "action": strata_node::vswitch::vfp::describe_action(e.action.as_ref()),
                        "packets": e.packets,
                        "idle_s": lab.now().saturating_sub(e.last_used).as_secs_f64(),
                        "stale": e.generation != vfp.generation(),
                    })
                })
                .collect();
            let layer_flows: Vec<serde_json::Value> = vfp
                .layer_flows()
                .into_iter()
                .map(|(layer, flows)| {
                    json!({
                        "layer": layer,
                        "flows": flows.iter().map(|(key, e)| json!({
                            "direction": key.direction.to_string(),
                            "flow": key.flow.to_string(),
                            "action": strata_node::vswitch::vfp::describe_action(Some(&e.action)),
                            "side": if e.initiator { "opening" } else { "reply" },
                            "idle_s": lab.now().saturating_sub(e.last_used).as_secs_f64(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let c = vfp.counters();
            json!({
                "node": host,
                "switch": switch,
                "port": name,
                "mac": mac,
                "vni": vni,
                "counters": {
                    "fast_path": c.fast_path,
                    "slow_path": c.slow_path,
                    "dropped_blocked": c.dropped_blocked,
                    "dropped_unparsed": c.dropped_unparsed,
                    "uft_full": c.uft_full,
                    "expired": c.expired,
                    "snat_exhausted": c.snat_exhausted,
                    "nat_collision": c.nat_collision,
                    "state_full": c.state_full,
                    "state_expired": c.state_expired,
                },
                "layers": layers,
                "flows": chosen,
                "layer_flows": layer_flows,
            })
        })
        .collect();
    serde_json::Value::Array(ports)
}

/// Each Mux's VIP map, a row per DIP: where it lives and whether it is in the pool; then
/// each Mux's counters.
pub fn mux(lab: &crate::Lab) -> String {
    let mut map = Table::new(&[
        "mux",
        "vip",
        "rule",
        "distribution",
        "vni",
        "dip",
        "host pa",
        "state",
    ]);
    let mut counters = Table::new(&[
        "mux",
        "pa",
        "encapsulated",
        "no vip",
        "no healthy dip",
        "rehashed",
        "flow hits",
        "flow misses",
    ]);
    for node in lab.nodes() {
        let Some(mux) = node.mux() else { continue };
        let c = mux.counters();
        let f = mux.flow_counters();
        counters.row(vec![
            node.name().to_string(),
            mux.config().pa.to_string(),
            c.encapsulated.to_string(),
            c.no_vip.to_string(),
            c.no_healthy_dip.to_string(),
            c.rehashed.to_string(),
            f.hits.to_string(),
            f.misses.to_string(),
        ]);
        for (config, healthy) in mux.vips() {
            let k = config.key;
            for (dip, up) in config.dips.iter().zip(healthy) {
                map.row(vec![
                    node.name().to_string(),
                    k.vip.to_string(),
                    format!("{}/{}", crate::diagram::protocol_name(k.proto), k.port),
                    crate::distribution_name(config.distribution).to_string(),
                    config.vni.to_string(),
                    format!("{}:{}", dip.addr, dip.port),
                    dip.host_pa.to_string(),
                    if up {
                        "in the pool"
                    } else {
                        "out (probe failed)"
                    }
                    .to_string(),
                ]);
            }
        }
    }
    if counters.is_empty() {
        return String::new();
    }
    format!("{}\n{}", map.render(), counters.render())
}

/// Each BGP speaker's neighbours and their state, then the routes received and
/// advertised (as `birdc show protocols` and `show route` list them).
pub fn bgp(lab: &crate::Lab) -> String {
    let mut sessions = Table::new(&[
        "node",
        "neighbor",
        "as",
        "state",
        "bfd",
        "received",
        "advertised",
        "last error",
    ]);
    let mut routes = Table::new(&["node", "neighbor", "direction", "prefix", "next hop"]);
    for node in lab.nodes() {
        let Some(neighbors) = node.bgp_status() else {
            continue;
        };
        for n in neighbors {
            sessions.row(vec![
                node.name().to_string(),
                n.address.to_string(),
                n.asn.to_string(),
                format!("{:?}", n.state),
                n.bfd
                    .map(|b| format!("{b:?}"))
                    .unwrap_or_else(|| "-".into()),
                n.received.len().to_string(),
                n.advertised.len().to_string(),
                n.last_down.clone().unwrap_or_default(),
            ]);
            for (prefix, next_hop) in &n.received {
                routes.row(vec![
                    node.name().to_string(),
                    n.address.to_string(),
                    "received".into(),
                    prefix.to_string(),
                    next_hop.to_string(),
                ]);
            }
            for prefix in &n.advertised {
                routes.row(vec![
                    node.name().to_string(),
                    n.address.to_string(),
                    "advertised".into(),
                    prefix.to_string(),
                    String::new(),
                ]);
            }
        }
    }
    if sessions.is_empty() {
        return String::new();
    }
    format!("{}\n{}", sessions.render(), routes.render())
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

/// A scenario's result as JSON: `name`, `description`, `started_s`, `ended_s`, and what
/// [`trace_json`] has.
pub fn scenario_json(r: &ScenarioResult) -> serde_json::Value {
    let mut v = trace_json(r);
    v["name"] = r.name.clone().into();
    v["description"] = r.description.clone().into();
    v["started_s"] = r.started.as_secs_f64().into();
    v["ended_s"] = r.ended.as_secs_f64().into();
    v
}

/// [`trace`] as JSON: `{passed, summary, failures, request: [hop], reply: [hop]}`, each
/// hop `{number, time_ms, network, from, from_interface, to, to_interface, frame, did}`.
pub fn trace_json(r: &ScenarioResult) -> serde_json::Value {
    let mut number = 0;
    let mut hops = |hops: &[Hop]| -> Vec<serde_json::Value> {
        // A background fetch's hops come before the `await` that reports them.
        let start = hops.first().map_or(r.started, |h| h.time.min(r.started));
        hops.iter()
            .map(|h| {
                number += 1;
                serde_json::json!({
                    "number": number,
                    "time_ms": h.time.saturating_sub(start).as_secs_f64() * 1000.0,
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
