//! Running scenarios on a lab and judging what they found.

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_node::{TaskReport, TaskSpec};

use super::{Background, Hop, Lab, ScenarioResult};
use crate::topology::{Scenario, ScenarioAction};
use crate::trace::{self, Seen};

/// Whether a packet is of the kind a scenario's path starts with.
type Matcher = fn(&trace::IpInfo) -> bool;

/// How long a lab may take to bring its BGP sessions up.
pub const BOOT_LIMIT: Duration = Duration::from_secs(60);

/// Time allowed past a task's own timeout before the runner gives up on it.
const GRACE: Duration = Duration::from_secs(5);
/// Time to let closing handshakes and late replies cross, so the capture is whole.
const SETTLE: Duration = Duration::from_millis(500);

/// What the checks found.
struct Verdict {
    summary: String,
    failures: Vec<String>,
    split: Vec<(String, usize)>,
    request: Vec<Hop>,
    reply: Vec<Hop>,
    report: Option<TaskReport>,
}

impl Lab {
    /// Runs every scenario of the topology, in order.
    pub fn run_scenarios(&mut self) -> Vec<ScenarioResult> {
        (0..self.topology.scenarios.len())
            .map(|i| self.run_scenario(i))
            .collect()
    }

    /// Runs scenario `index` and checks what it must find.
    pub fn run_scenario(&mut self, index: usize) -> ScenarioResult {
        let scenario = self.topology.scenarios[index].clone();
        self.run(index, scenario)
    }

    /// Runs one flow that is not among the lab's scenarios (a ping, a fetch, a lookup)
    /// and reads its request's and reply's paths, with what each node did to them.
    pub fn trace(&mut self, scenario: Scenario) -> ScenarioResult {
        self.run(usize::MAX, scenario)
    }

    fn run(&mut self, index: usize, scenario: Scenario) -> ScenarioResult {
        let started = self.now;
        let verdict = match scenario.action.clone() {
            ScenarioAction::SetHttp { node, enabled } => {
                let name = self.topology.nodes[node].name.clone();
                self.poll_all = true;
                let had = self.nodes[node].set_http_enabled(enabled);
                self.run_for(scenario.wait);
                Verdict {
                    summary: format!(
                        "{} {name}'s HTTP server{}",
                        if enabled { "started" } else { "stopped" },
                        self.health_summary(started)
                    ),
                    failures: if had {
                        Vec::new()
                    } else {
                        vec![format!("{name} runs no HTTP server")]
                    },
                    split: Vec::new(),
                    request: Vec::new(),
                    reply: Vec::new(),
                    report: None,
                }
            }
            ScenarioAction::Cut { node, cut } => {
                let name = self.topology.nodes[node].name.clone();
                self.set_cut(node, cut);
                self.run_for(scenario.wait);
                Verdict {
                    summary: format!(
                        "{} {name}{}",
                        if cut { "cut off" } else { "reconnected" },
                        self.health_summary(self.now.saturating_sub(scenario.wait))
                    ),
                    failures: Vec::new(),
                    split: Vec::new(),
                    request: Vec::new(),
                    reply: Vec::new(),
                    report: None,
                }
            }
            ScenarioAction::StopBgp { node } | ScenarioAction::RestartBgp { node } => {
                let name = self.topology.nodes[node].name.clone();
                let restart = matches!(scenario.action, ScenarioAction::RestartBgp { .. });
                if restart {
                    self.poll_all = true;
                    self.nodes[node].restart_bgp(self.now);
                } else {
                    self.poll_all = true;
                    self.nodes[node].stop_bgp(self.now);
                }
                self.run_for(scenario.wait);
                Verdict {
                    summary: format!(
                        "{} {name}'s BGP sessions",
                        if restart {
                            "reset and restarted"
                        } else {
                            "stopped"
                        }
                    ),
                    failures: Vec::new(),
                    split: Vec::new(),
                    request: Vec::new(),
                    reply: Vec::new(),
                    report: None,
                }
            }
            ScenarioAction::Http {
                repeat,
                background: true,
                ..
            } => {
                let marks = self.capture_marks();
                let spec = self.task_spec(&scenario);
                self.poll_all = true;
                let tasks = (0..repeat.max(1))
                    .map(|_| self.nodes[scenario.from].start_task(self.now, spec.clone()))
                    .collect();
                self.background.insert(index, Background { tasks, marks });
                self.run_for(scenario.wait);
                Verdict {
                    summary: format!(
                        "{} started {} fetches of the page in the background",
                        self.topology.nodes[scenario.from].name,
                        repeat.max(1)
                    ),
                    failures: Vec::new(),
                    split: Vec::new(),
                    request: Vec::new(),
                    reply: Vec::new(),
                    report: None,
                }
            }
            ScenarioAction::Await { scenario: awaited } => {
                let original = self.topology.scenarios[awaited].clone();
                match self.background.remove(&awaited) {
                    None => Verdict {
                        summary: format!("{} was not started", original.name),
                        failures: vec![format!("scenario {} did not run before", original.name)],
                        split: Vec::new(),
                        request: Vec::new(),
                        reply: Vec::new(),
                        report: None,
                    },
                    Some(bg) => {
                        let from = original.from;
                        let tasks = bg.tasks.clone();
                        self.run_until(original.timeout + GRACE, |lab| {
                            tasks
                                .iter()
                                .all(|t| lab.nodes[from].task_report(*t).is_some())
                        });
                        self.run_for(SETTLE + scenario.wait);
                        let reports: Vec<_> = bg
                            .tasks
                            .iter()
                            .map(|t| self.nodes[from].task_report(*t))
                            .collect();
                        let frames = self.frames_since(&bg.marks);
                        let mut v = self.judge(&original, &reports, &frames);
                        v.failures
                            .extend(self.survivors(&original, from, &reports, &frames));
                        v
                    }
                }
            }
            _ => {
                let marks = self.capture_marks();
                let spec = self.task_spec(&scenario);
                let repeat = match scenario.action {
                    ScenarioAction::Http { repeat, .. } => repeat.max(1),
                    _ => 1,
                };
                let from = scenario.from;
                let mut reports = Vec::new();
                for _ in 0..repeat {
                    self.poll_all = true;
                    let task = self.nodes[from].start_task(self.now, spec.clone());
                    self.run_until(scenario.timeout + GRACE, |lab| {
                        lab.nodes[from].task_report(task).is_some()
                    });
                    reports.push(self.nodes[from].task_report(task));
                }
                self.run_for(SETTLE + scenario.wait);
                let frames = self.frames_since(&marks);
                self.judge(&scenario, &reports, &frames)
            }
        };
        let mut failures = verdict.failures;
        failures.extend(self.check_dips(&scenario));
        failures.extend(self.check_routes(&scenario));
        ScenarioResult {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            passed: failures.is_empty(),
            split: verdict.split,
            summary: verdict.summary,
            failures,
            request: verdict.request,
            reply: verdict.reply,
            report: verdict.report,
            started,
            ended: self.now,
        }
    }

    fn task_spec(&self, scenario: &Scenario) -> TaskSpec {
        match &scenario.action {
            ScenarioAction::Ping { target, count } => TaskSpec::Ping {
                target: *target,
                count: *count,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
            },
            ScenarioAction::Resolve { name } => TaskSpec::Resolve {
                name: name.clone(),
                timeout: scenario.timeout,
            },
            ScenarioAction::Http { url, .. } => TaskSpec::HttpGet {
                url: url.clone(),
                timeout: scenario.timeout,
            },
            ScenarioAction::Udp { target } => TaskSpec::Udp {
                target: *target,
                timeout: scenario.timeout,
            },
            // Not tasks; callers handle them first. A harmless stand-in keeps this total.
            ScenarioAction::Await { .. }
            | ScenarioAction::SetHttp { .. }
            | ScenarioAction::StopBgp { .. }
            | ScenarioAction::RestartBgp { .. }
            | ScenarioAction::Cut { .. } => TaskSpec::Resolve {
                name: String::new(),
                timeout: Duration::ZERO,
            },
        }
    }

    /// " (Muxes: DIP down at t)" for the health changes since `since`.
    fn health_summary(&self, since: Duration) -> String {
        let changes: Vec<String> = self
            .health_log
            .iter()
            .filter(|(t, ..)| *t >= since)
            .map(|(t, host, dip, up)| {
                format!(
                    "{host} reported {dip} {} at t={:.3}s",
                    if *up { "up" } else { "down" },
                    t.as_secs_f64()
                )
            })
            .collect();
        if changes.is_empty() {
            String::new()
        } else {
            format!("; {}", changes.join(", "))
        }
    }

    /// Every Mux must hold the expected DIPs out of (or in) every pool that has them.
    fn check_dips(&self, scenario: &Scenario) -> Vec<String> {
        let mut failures = Vec::new();
        for node in &self.nodes {
            let Some(mux) = node.mux() else { continue };
            for (config, healthy) in mux.vips() {
                for (dip, up) in config.dips.iter().zip(&healthy) {
                    if scenario.expect.dips_down.contains(&dip.addr) && *up {
                        failures.push(format!(
                            "{} still sends {:?} to {}",
                            node.name(),
                            config.key.vip,
                            dip.addr
                        ));
                    }
                    if scenario.expect.dips_up.contains(&dip.addr) && !*up {
                        failures.push(format!(
                            "{} holds {} out of {}",
                            node.name(),
                            dip.addr,
                            config.key.vip
                        ));
                    }
                }
            }
        }
        failures
    }

    /// The routes a node must have (exactly that prefix) or lack.
    fn check_routes(&self, scenario: &Scenario) -> Vec<String> {
        let Some(n) = scenario.expect.routes_on else {
            return Vec::new();
        };
        let node = &self.nodes[n];
        let fib = node.router().fib();
        let mut failures = Vec::new();
        for p in &scenario.expect.routes {
            if fib.get(*p).is_none() {
                failures.push(format!("{} has no route to {p}", node.name()));
            }
        }
        for (p, want) in &scenario.expect.next_hops {
            let mut have: Vec<Ipv4Addr> = fib
                .get(*p)
                .map(|r| r.next_hops().filter_map(|(_, hop)| hop).collect())
                .unwrap_or_default();
            have.sort();
            if &have != want {
                failures.push(format!(
                    "{} routes {p} via {have:?}, not {want:?}",
                    node.name()
                ));
            }
        }
        for p in &scenario.expect.no_routes {
            if let Some(r) = fib.get(*p) {
                failures.push(format!(
                    "{} still routes {p} ({:?} via {:?})",
                    node.name(),
                    r.origin,
                    r.gateway
                ));
            }
        }
        failures
    }

    /// For an `await`: every connection whose SYN reached one of `survivors_on` completed.
    fn survivors(
        &self,
        scenario: &Scenario,
        from: usize,
        reports: &[Option<TaskReport>],
        frames: &[Seen],
    ) -> Vec<String> {
        if scenario.expect.survivors_on.is_empty() {
            return Vec::new();
        }
        let mut failures = Vec::new();
        let mut landed = 0;
        for report in reports.iter().flatten() {
            let TaskReport::Http(h) = report else {
                continue;
            };
            let port = h.local_port;
            let Some(syn) = trace::find(frames, 0, |f| {
                f.from == from
                    && f.ip.is_some_and(|ip| {
                        ip.proto == 6 && ip.tcp_flags & 0x12 == 0x02 && ip.src_port == port
                    })
            }) else {
                continue;
            };
            let chain = trace::follow(frames, syn);
            let hops = self.hops(frames, &chain, None);
            let Some(dip) = hops.last().map(|h| h.to.clone()) else {
                continue;
            };
            if scenario.expect.survivors_on.contains(&dip) {
                landed += 1;
                if h.error.is_some() || h.status != Some(200) {
                    failures.push(format!(
                        "connection from port {port} to {dip} did not complete: {}",
                        h.error
                            .clone()
                            .unwrap_or_else(|| format!("status {:?}", h.status))
                    ));
                }
            }
        }
        if landed == 0 {
            failures.push(format!(
                "no connection reached {}",
                scenario.expect.survivors_on.join(" or ")
            ));
        }
        failures
    }

    /// Judges a scenario's task reports against its expectations, and reads its first
    /// request's and reply's paths from the frames.
    fn judge(
        &self,
        scenario: &Scenario,
        reports: &[Option<TaskReport>],
        frames: &[Seen],
    ) -> Verdict {
        let from = scenario.from;
        let name = &self.topology.nodes[from].name;
        let mut failures = Vec::new();
        let report = reports.first().cloned().flatten();
        let (summary, ok, dst): (String, bool, Option<Ipv4Addr>) = match &report {
            None => ("did not finish".into(), false, None),
            Some(TaskReport::Ping(p)) => {
                let rtt = p
                    .rtts
                    .iter()
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
                let summary = format!(
                    "{name} pings {}: {}/{} replies{}",
                    p.target,
                    p.received,
                    p.sent,
                    rtt.map(|r| format!(", max rtt {r:.3} ms"))
                        .unwrap_or_default()
                );
                (summary, p.sent > 0 && p.received == p.sent, Some(p.target))
            }
            Some(TaskReport::Http(h)) => {
                let via = h
                    .resolved
                    .as_ref()
                    .map(|(n, a)| format!(" ({n} is {a} by DNS)"))
                    .unwrap_or_default();
                let summary = match (&h.error, h.status) {
                    (Some(e), _) => format!("{name} GET {}{via}: {e}", h.url),
                    (None, status) => format!(
                        "{name} GET {}{via}: HTTP {} with {} bytes in {:.3} ms",
                        h.url,
                        status.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                        h.body.len(),
                        h.elapsed.as_secs_f64() * 1000.0
                    ),
                };
                let mut ok = h.error.is_none() && h.status.is_some();
                match scenario.expect.status {
                    Some(want) if ok && h.status != Some(want) => {
                        failures.push(format!("expected HTTP status {want}, got {:?}", h.status));
                    }
                    None if ok && h.status != Some(200) => ok = false,
                    _ => {}
                }
                if let Some(want) = &scenario.expect.body_contains
                    && ok
                    && !h.body.contains(want.as_str())
                {
                    failures.push(format!("expected the body to contain {want:?}"));
                }
                (summary, ok, h.server.map(|s| *s.ip()))
            }
            Some(TaskReport::Udp(u)) => {
                let summary = match (u.sent, u.answer) {
                    (false, _) => format!("{name} could not send a datagram to {}", u.target),
                    (true, None) => format!(
                        "{name} sent a datagram to {} from port {}: no answer",
                        u.target, u.local_port
                    ),
                    (true, Some((len, after))) => format!(
                        "{name} sent a datagram to {} from port {}: {len} bytes back in {:.3} ms",
                        u.target,
                        u.local_port,
                        after.as_secs_f64() * 1000.0
                    ),
                };
                (summary, u.answer.is_some(), Some(*u.target.ip()))
            }
            Some(TaskReport::Resolve(l)) => {
                let found = l
                    .addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let summary = match &l.error {
                    Some(e) => format!("{name} resolves {}: {e}", l.name),
                    None => format!("{name} resolves {}: {found}", l.name),
                };
                let ok = l.error.is_none() && !l.addresses.is_empty();
                if let Some(want) = scenario.expect.address
                    && ok
                    && !l.addresses.contains(&want)
                {
                    failures.push(format!("expected the answer to hold {want}"));
                }
                (summary, ok, l.server)
            }
        };
        let many = reports.len() > 1;
        // With several fetches, they are judged together below.
        if !many && ok == scenario.expect.failure {
            failures.push(if !scenario.expect.failure {
                "expected success".to_string()
            } else {
                "expected failure, but it succeeded".to_string()
            });
        }
        let mut split = Vec::new();
        let mut summary = summary;
        if many {
            let bodies: Vec<Option<&str>> = reports
                .iter()
                .map(|r| match r {
                    Some(TaskReport::Http(h)) if h.error.is_none() && h.status == Some(200) => {
                        Some(h.body.as_str())
                    }
                    _ => None,
                })
                .collect();
            let failed = bodies.iter().filter(|b| b.is_none()).count();
            let wanted = &scenario.expect.bodies;
            for want in wanted {
                let n = bodies
                    .iter()
                    .flatten()
                    .filter(|b| b.contains(want.as_str()))
                    .count();
                if n == 0 {
                    failures.push(format!("no response contained {want:?}"));
                }
                split.push((want.clone(), n));
            }
            let stray = bodies
                .iter()
                .flatten()
                .filter(|b| !wanted.is_empty() && !wanted.iter().any(|w| b.contains(w.as_str())))
                .count();
            if stray > 0 {
                failures.push(format!(
                    "{stray} responses contained none of the expected texts"
                ));
            }
            if failed > 0 && scenario.expect.survivors_on.is_empty() {
                failures.push(format!("{failed} of {} fetches failed", reports.len()));
            }
            let counts: Vec<String> = split.iter().map(|(t, n)| format!("{n}× {t:?}")).collect();
            summary = format!(
                "{summary}; {} connections{}: {}",
                reports.len(),
                if failed > 0 {
                    format!(", {failed} failed")
                } else {
                    String::new()
                },
                counts.join(", ")
            );
        }
        for l in trace::loops(
            frames,
            |n| self.topology.nodes[n].name.clone(),
            |s| self.segments[s].name().to_string(),
        ) {
            failures.push(format!("a packet looped: {l}"));
        }
        let (request, reply) = self.paths(frames, from, &scenario.action, dst);
        for (want, got, what) in [
            (&scenario.expect.path, &request, "request path"),
            (&scenario.expect.return_path, &reply, "return path"),
        ] {
            if let Some(want) = want {
                let got = ScenarioResult::nodes(got);
                if !path_matches(want, &got) {
                    failures.push(format!(
                        "{what}: expected {}, saw {}",
                        want.join(" → "),
                        got.join(" → ")
                    ));
                }
            }
        }
        Verdict {
            summary,
            failures,
            split,
            request,
            reply,
            report,
        }
    }

    /// The request's and the reply's hops, read from the frames.
    fn paths(
        &self,
        frames: &[Seen],
        origin: usize,
        action: &ScenarioAction,
        dst: Option<std::net::Ipv4Addr>,
    ) -> (Vec<Hop>, Vec<Hop>) {
        use strata_wire::flow::proto;
        let Some(dst) = dst else {
            return (Vec::new(), Vec::new());
        };
        let (is_request, is_reply): (Matcher, Matcher) = match action {
            ScenarioAction::Ping { .. } => (
                |ip| ip.proto == proto::ICMP && ip.icmp_type == Some(8),
                |ip| ip.proto == proto::ICMP && ip.icmp_type == Some(0),
            ),
            ScenarioAction::Http { .. } => (
                |ip| ip.proto == proto::TCP && ip.tcp_flags & 0x12 == 0x02,
                |ip| ip.proto == proto::TCP && ip.tcp_flags & 0x12 == 0x12,
            ),
            ScenarioAction::Resolve { .. } => (
                |ip| ip.proto == proto::UDP && ip.dst_port == 53,
                |ip| ip.proto == proto::UDP && ip.src_port == 53,
            ),
            ScenarioAction::Udp { .. } => {
                (|ip| ip.proto == proto::UDP, |ip| ip.proto == proto::UDP)
            }
            ScenarioAction::Await { .. }
            | ScenarioAction::SetHttp { .. }
            | ScenarioAction::StopBgp { .. }
            | ScenarioAction::RestartBgp { .. }
            | ScenarioAction::Cut { .. } => {
                return (Vec::new(), Vec::new());
            }
        };
        let Some(first) = trace::find(frames, 0, |f| {
            f.from == origin && f.ip.is_some_and(|ip| ip.dst == dst && is_request(&ip))
        }) else {
            return (Vec::new(), Vec::new());
        };
        let request = trace::follow(frames, first);
        let Some(&last) = request.last() else {
            return (Vec::new(), Vec::new());
        };
        let last_ip = frames[last].ip;
        let responders = frames[last].to.clone();
        // The answer, or an ICMP error (unreachable, time exceeded) from the node where the
        // request stopped, back to the sender as that node saw it.
        let reply_start = trace::find(frames, last, |f| {
            let (Some(ip), Some(req)) = (f.ip, last_ip) else {
                return false;
            };
            let error = ip.proto == proto::ICMP && matches!(ip.icmp_type, Some(3 | 11));
            responders.contains(&f.from)
                && ip.dst == req.src
                && (error || (is_reply(&ip) && ip.src == req.dst))
        });
        let reply = reply_start
            .map(|s| trace::follow(frames, s))
            .unwrap_or_default();
        // The request's last receiver is the node that answered, when the frame was flooded.
        let answerer = reply.first().map(|&i| frames[i].from);
        (
            self.hops(frames, &request, answerer),
            self.hops(frames, &reply, None),
        )
    }

    fn hops(&self, frames: &[Seen], chain: &[usize], last_to: Option<usize>) -> Vec<Hop> {
        let name = |n: usize| self.topology.nodes[n].name.clone();
        chain
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let f = &frames[i];
                // The receiver is the node that sent the next hop, else the one the frame
                // went to.
                let to = match chain.get(k + 1) {
                    Some(&next) => frames[next].from,
                    None => match (f.to.as_slice(), last_to) {
                        ([only], _) => *only,
                        (_, Some(n)) => n,
                        (many, None) => many.first().copied().unwrap_or(f.from),
                    },
                };
                Hop {
                    time: f.time,
                    network: self.segments[f.network].name().to_string(),
                    from: name(f.from),
                    from_iface: self.interface(f.from, f.network),
                    to: name(to),
                    to_iface: self.interface(to, f.network),
                    what: strata_wire::describe::frame(&f.bytes),
                    did: self.explain(frames, chain, k),
                }
            })
            .collect()
    }
}

/// Whether the nodes a packet crossed match an expected path, in which `*` stands for any
/// run of nodes (none included): `["ClientVM", "NATVM", "*"]` is a prefix,
/// `["ClientVM", "*", "PortalVM"]` fixes the ends.
pub(crate) fn path_matches(want: &[String], got: &[String]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w == "*" => (0..=got.len()).any(|k| path_matches(rest, &got[k..])),
        Some((w, rest)) => got
            .split_first()
            .is_some_and(|(g, more)| g == w && path_matches(rest, more)),
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    fn m(want: &[&str], got: &[&str]) -> bool {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        path_matches(&s(want), &s(got))
    }

    #[test]
    fn paths_match_exactly_or_through_stars() {
        let got = [
            "ClientVM",
            "NATVM",
            "BGPVM",
            "MuxVM2",
            "HyperVHost",
            "PortalVM",
        ];
        assert!(m(&got, &got));
        assert!(!m(&got[..5], &got), "without a star, the whole path");
        assert!(m(&["ClientVM", "NATVM", "*"], &got), "a prefix");
        assert!(m(&["ClientVM", "*", "PortalVM"], &got));
        assert!(m(&["*", "MuxVM2", "*"], &got));
        assert!(
            m(
                &[
                    "ClientVM",
                    "NATVM",
                    "BGPVM",
                    "*",
                    "MuxVM2",
                    "HyperVHost",
                    "PortalVM"
                ],
                &got
            ),
            "a star may stand for nothing"
        );
        assert!(!m(&["ClientVM", "*", "MuxVM"], &got));
        assert!(!m(&["NATVM", "*"], &got));
        assert!(m(&["*"], &[]));
        assert!(!m(&[], &["ClientVM"]));
        assert!(m(&[], &[]));
    }
}
