//! Two nodes on one wire, frames carried by hand in virtual time: ARP, ping, DNS and HTTP
//! through the real stacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_node::apps::http::Page;
use strata_node::{NicConfig, Node, NodeConfig, ServiceConfig, TaskReport, TaskSpec};
use strata_wire::EthernetAddress;

fn node(
    name: &str,
    mac: u8,
    addr: &str,
    services: Vec<ServiceConfig>,
    dns: Option<Ipv4Addr>,
) -> Node {
    Node::new(
        NodeConfig {
            name: name.into(),
            nics: vec![NicConfig {
                name: "eth0".into(),
                mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, mac]),
                addr: addr.parse().unwrap(),
                mtu: 1500,
                behind_switch: false,
            }],
            routes: vec![],
            discards: vec![],
            forwarding: false,
            nat: None,
            dns_server: dns,
            services,
            vswitch: None,
            mux: None,
            probes: vec![],
            bgp: None,
            control: None,
            seed: u64::from(mac),
        },
        Duration::ZERO,
    )
    .unwrap()
}

/// Runs both nodes until `done` or 60 virtual seconds; each frame takes 100 µs.
fn run(
    start: Duration,
    a: &mut Node,
    b: &mut Node,
    mut done: impl FnMut(&Node) -> bool,
) -> Duration {
    let mut now = start;
    let mut wire: Vec<(Duration, bool, Vec<u8>)> = Vec::new();
    while now < start + Duration::from_secs(60) {
        for (at, to_b, frame) in std::mem::take(&mut wire) {
            if at <= now {
                if to_b {
                    b.receive(now, 0, frame)
                } else {
                    a.receive(now, 0, frame)
                }
            } else {
                wire.push((at, to_b, frame));
            }
        }
        a.poll(now);
        b.poll(now);
        while let Some((_, f)) = a.poll_transmit() {
            wire.push((now + Duration::from_micros(100), true, f));
        }
        while let Some((_, f)) = b.poll_transmit() {
            wire.push((now + Duration::from_micros(100), false, f));
        }
        if done(a) {
            return now;
        }
        let next = [a.poll_at(now), b.poll_at(now)]
            .into_iter()
            .flatten()
            .chain(wire.iter().map(|w| w.0))
            .min()
            .unwrap_or(now + Duration::from_millis(10));
        now = next.max(now + Duration::from_micros(1));
    }
    now
}

#[test]
fn ping_dns_and_http_between_two_stacks() {
    let server_services = vec![
        ServiceConfig::Http {
            port: 80,
            pages: vec![Page {
                path: "/".into(),
                body: "<h1>Portal</h1>".into(),
                delay: Duration::ZERO,
            }],
            backlog: 2,
        },
        ServiceConfig::Dns {
            port: 53,
            records: vec![(
                "portal.azurestack.local".into(),
                "10.0.0.2".parse().unwrap(),
            )],
        },
    ];
    let mut client = node(
        "client",
        1,
        "10.0.0.1/24",
        vec![],
        Some("10.0.0.2".parse().unwrap()),
    );
    let mut server = node("server", 2, "10.0.0.2/24", server_services, None);

    let ping = client.start_task(
        Duration::ZERO,
        TaskSpec::Ping {
            target: "10.0.0.2".parse().unwrap(),
            count: 3,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        },
    );
    let now = run(Duration::ZERO, &mut client, &mut server, |c| {
        c.task_report(ping).is_some()
    });
    match client.task_report(ping) {
        Some(TaskReport::Ping(r)) => {
            assert_eq!((r.sent, r.received), (3, 3), "{r:?}");
        }
        other => panic!("{other:?}"),
    }

    let get = client.start_task(
        now,
        TaskSpec::HttpGet {
            url: "http://portal.azurestack.local/".into(),
            timeout: Duration::from_secs(10),
        },
    );
    run(now, &mut client, &mut server, |c| {
        c.task_report(get).is_some()
    });
    match client.task_report(get) {
        Some(TaskReport::Http(r)) => {
            assert_eq!(r.error, None);
            assert_eq!(r.status, Some(200));
            assert_eq!(r.body, "<h1>Portal</h1>");
            assert_eq!(
                r.resolved,
                Some((
                    "portal.azurestack.local".into(),
                    "10.0.0.2".parse().unwrap()
                ))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.service_counters().http_served, 1);
    assert_eq!(server.service_counters().dns_answered, 1);
}

/// The host agent's probes: TCP and HTTP, down after `count` failures, up after one
/// success.
#[test]
fn health_probes_find_a_stopped_server_and_its_return() {
    use strata_node::apps::probe::ProbeConfig;
    let web = vec![ServiceConfig::Http {
        port: 80,
        pages: vec![Page {
            path: "/health".into(),
            body: "ok".into(),
            delay: Duration::ZERO,
        }],
        backlog: 4,
    }];
    let mut server = node("dip", 2, "10.0.0.2/24", web, None);
    let probe = |http_path: Option<&str>| ProbeConfig {
        dip: "10.0.0.2".parse().unwrap(),
        port: 80,
        http_path: http_path.map(str::to_string),
        interval: Duration::from_secs(5),
        count: 2,
    };
    let mut host = Node::new(
        NodeConfig {
            name: "host".into(),
            nics: vec![NicConfig {
                name: "eth0".into(),
                mac: EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 1]),
                addr: "10.0.0.1/24".parse().unwrap(),
                mtu: 1500,
                behind_switch: false,
            }],
            routes: vec![],
            discards: vec![],
            forwarding: false,
            nat: None,
            dns_server: None,
            services: vec![],
            vswitch: None,
            mux: None,
            probes: vec![probe(None), probe(Some("/health"))],
            bgp: None,
            control: None,
            seed: 1,
        },
        Duration::ZERO,
    )
    .unwrap();
    let mut events = Vec::new();
    let now = run(Duration::ZERO, &mut host, &mut server, |_| false);
    events.extend(host.take_health_events());
    assert!(
        events.is_empty(),
        "a healthy DIP raises nothing: {events:?}"
    );
    assert!(
        host.probes()
            .iter()
            .all(|(_, up, sent, failed)| *up && *sent >= 10 && *failed == 0),
        "{:?}",
        host.probes()
    );
    server.set_http_enabled(false);
    let now = run(now, &mut host, &mut server, |_| false);
    let down = host.take_health_events();
    assert_eq!(
        down.len(),
        2,
        "both probes (TCP and HTTP) find it down once: {down:?}"
    );
    assert!(down.iter().all(|(_, up)| !up));
    server.set_http_enabled(true);
    run(now, &mut host, &mut server, |_| false);
    let up = host.take_health_events();
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|(_, up)| *up));
}
