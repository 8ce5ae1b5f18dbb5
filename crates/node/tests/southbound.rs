//! The southbound protocol between two nodes' own TCP stacks: the controller's listener
//! on one, a Mux's agent on the other. The agent is admitted with its token and applies
//! what it is sent (a snapshot, then a change), a stranger is refused, and a configuration
//! the Mux cannot take is reported as failed. A peer the controller names gets the
//! Mux's own timers for added neighbors, BFD included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_model::compile::{Backend, Distribution, Protocol, Vip};
use strata_node::apps::bgp::{AddedNeighbors, BgpConfig, NeighborConfig};
use strata_node::bgp_codec::bfd;
use strata_node::slb::mux::MuxConfig;
use strata_node::{ControlConfig, MuxRole, NicConfig, Node, NodeConfig};
use strata_southbound::peer::Event;
use strata_southbound::{Timers, node_token};
use strata_wire::EthernetAddress;

const SECRET: &str = "lab-secret";

fn node(name: &str, mac: u8, addr: &str, control: ControlConfig, mux: bool) -> Node {
    Node::new(config(name, mac, addr, control, mux), Duration::ZERO).unwrap()
}

fn config(name: &str, mac: u8, addr: &str, control: ControlConfig, mux: bool) -> NodeConfig {
    let address: std::net::Ipv4Addr = addr.split('/').next().unwrap().parse().unwrap();
    {
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
            dns_server: None,
            services: vec![],
            vswitch: None,
            mux: mux.then(|| MuxRole {
                config: MuxConfig::new(address, EthernetAddress([0x00, 0x15, 0x5d, 0, 0, mac])),
                vips: vec![],
            }),
            probes: vec![],
            bgp: mux.then(|| BgpConfig {
                asn: 64501,
                router_id: address,
                neighbors: vec![],
                networks: vec![],
                announce_vips: true,
                install_routes: false,
                added: Default::default(),
            }),
            control: Some(control),
            seed: u64::from(mac),
        }
    }
}

fn agent(name: &str, mac: u8, addr: &str, token: String) -> Node {
    node(
        name,
        mac,
        addr,
        ControlConfig::Agent {
            controller: SocketAddrV4::new("10.0.0.10".parse().unwrap(), 8081),
            token,
            timers: Timers::default(),
        },
        true,
    )
}

/// Nodes on one wire (frames flooded to all, 100 µs each), run until `done` or 30 s.
fn run(
    now: &mut Duration,
    nodes: &mut [&mut Node],
    mut done: impl FnMut(&mut [&mut Node]) -> bool,
) {
    let limit = *now + Duration::from_secs(30);
    let mut wire: Vec<(Duration, usize, Vec<u8>)> = Vec::new();
    while *now < limit {
        for (at, from, frame) in std::mem::take(&mut wire) {
            if at <= *now {
                for (i, n) in nodes.iter_mut().enumerate() {
                    if i != from {
                        n.receive(*now, 0, frame.clone());
                    }
                }
            } else {
                wire.push((at, from, frame));
            }
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            n.poll(*now);
            while let Some((_, f)) = n.poll_transmit() {
                wire.push((*now + Duration::from_micros(100), i, f));
            }
        }
        if done(nodes) {
            return;
        }
        let next = nodes
            .iter_mut()
            .filter_map(|n| n.poll_at(*now))
            .chain(wire.iter().map(|w| w.0))
            .min()
            .unwrap_or(*now + Duration::from_millis(10));
        *now = next.max(*now + Duration::from_micros(1));
    }
}

fn portal_vip() -> Vip {
    Vip {
        vip: "192.168.133.74".parse().unwrap(),
        protocol: Protocol::Tcp,
        port: 80,
        rule: "/loadBalancers/portal/loadBalancingRules/http".into(),
        distribution: Distribution::FiveTuple,
        probe: None,
        vni: 4096,
        backends: vec![Backend {
            ip_configuration: "/networkInterfaces/PortalVM/ipConfigurations/ip1".into(),
            dip: "192.168.100.74".parse().unwrap(),
            port: 80,
            server: Some("/servers/HyperVHost".into()),
            mac: Some("00155D640700".into()),
            provider_address: Some("192.168.233.21".parse::<IpAddr>().unwrap()),
            healthy: true,
        }],
        outbound: false,
        exempt: Vec::new(),
    }
}

fn mux_config(asn: u32, vips: &[Vip]) -> Value {
    let vips: serde_json::Map<String, Value> = vips
        .iter()
        .map(|v| (v.key(), serde_json::to_value(v).unwrap()))
        .collect();
    json!({"role": "mux", "mux": {"localAsn": asn, "peers": [], "vips": vips}})
}

fn configs(entries: &[(&str, u64, Value)]) -> strata_southbound::Configs {
    Arc::new(
        entries
            .iter()
            .map(|(n, r, v)| (n.to_string(), (*r, Arc::new(v.clone()))))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[test]
fn an_agent_is_admitted_applies_its_configuration_and_each_change_and_a_stranger_is_refused() {
    let mut nc = node(
        "NCVM",
        10,
        "10.0.0.10/24",
        ControlConfig::Server {
            port: 8081,
            secret: SECRET.into(),
            timers: Timers::default(),
            backlog: 4,
        },
        false,
    );
    let mut mux = agent("MuxVM", 20, "10.0.0.20/24", node_token(SECRET, "MuxVM"));
    let mut stranger = agent("MuxVM9", 21, "10.0.0.21/24", node_token("guess", "MuxVM9"));
    let mut now = Duration::ZERO;
    nc.publish_configs(&configs(&[
        ("MuxVM", 1, mux_config(64501, &[portal_vip()])),
        ("MuxVM9", 1, mux_config(64501, &[])),
    ]));
    let mut events = Vec::new();
    run(&mut now, &mut [&mut nc, &mut mux, &mut stranger], |n| {
        n[1].mux().unwrap().vips().len() == 1 && n[2].agent().unwrap().agent().refused().is_some()
    });
    events.extend(nc.take_control_events());
    let vips = mux.mux().unwrap().vips();
    assert_eq!(vips[0].0.key.vip.to_string(), "192.168.133.74");
    assert_eq!(vips[0].0.dips[0].host_pa.to_string(), "192.168.233.21");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Accepted { node, applied: None } if node == "MuxVM"))
    );
    // The stranger: refused, with the reason on both sides; it applied nothing.
    assert!(stranger.mux().unwrap().vips().is_empty());
    assert!(
        nc.control_server()
            .unwrap()
            .closed
            .iter()
            .any(|r| r.contains("refused node \"MuxVM9\"")),
        "{:?}",
        nc.control_server().unwrap().closed
    );
    assert_eq!(nc.control_server().unwrap().connected(), ["MuxVM"]);

    // Applied, then a change: the VIP goes (as a delta).
    run(&mut now, &mut [&mut nc, &mut mux], |n| {
        n[1].agent().unwrap().agent().applied_revision() == Some(1)
    });
    events.extend(nc.take_control_events());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Applied { node, revision: 1 } if node == "MuxVM"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Report { node, .. } if node == "MuxVM")),
        "{events:?}"
    );
    nc.publish_configs(&configs(&[("MuxVM", 2, mux_config(64501, &[]))]));
    run(&mut now, &mut [&mut nc, &mut mux], |n| {
        n[1].mux().unwrap().vips().is_empty()
            && n[1].agent().unwrap().agent().applied_revision() == Some(2)
    });
    assert!(mux.mux().unwrap().vips().is_empty());

    // A configuration the Mux cannot take (another local AS): refused, nothing changed.
    nc.publish_configs(&configs(&[(
        "MuxVM",
        3,
        mux_config(64999, &[portal_vip()]),
    )]));
    let mut failed = None;
    run(&mut now, &mut [&mut nc, &mut mux], |n| {
        failed = n[0]
            .take_control_events()
            .into_iter()
            .find_map(|e| match e {
                Event::Failed {
                    revision, reason, ..
                } => Some((revision, reason)),
                _ => None,
            });
        failed.is_some()
    });
    let (revision, reason) = failed.expect("the agent said it failed");
    assert_eq!(revision, 3);
    assert!(reason.contains("local AS 64999"), "{reason}");
    assert!(mux.mux().unwrap().vips().is_empty(), "nothing applied");
    assert_eq!(mux.agent().unwrap().agent().applied_revision(), Some(2));
    assert_eq!(mux.agent().unwrap().sessions, 1, "one session all along");
}

#[test]
fn a_peer_the_controller_names_gets_the_muxs_timers_and_bfd() {
    let server = ControlConfig::Server {
        port: 8081,
        secret: SECRET.into(),
        timers: Timers::default(),
        backlog: 4,
    };
    let mut nc = node("NCVM", 10, "10.0.0.10/24", server.clone(), false);
    let bfd = bfd::Config::new(Duration::from_millis(100), 3);
    let mut c = config(
        "MuxVM",
        20,
        "10.0.0.20/24",
        ControlConfig::Agent {
            controller: SocketAddrV4::new("10.0.0.10".parse().unwrap(), 8081),
            token: node_token(SECRET, "MuxVM"),
            timers: Timers::default(),
        },
        true,
    );
    if let Some(b) = c.bgp.as_mut() {
        b.added = AddedNeighbors {
            hold_time: 30,
            connect_retry: Duration::from_secs(1),
            bfd: Some(bfd),
        };
    }
    let mut mux = Node::new(c, Duration::ZERO).unwrap();
    // The router: BGP and BFD with the Mux, from its own configuration.
    let mut c = config("BGPVM", 1, "10.0.0.1/24", server, false);
    c.control = None;
    c.bgp = Some(BgpConfig {
        asn: 64500,
        router_id: "10.0.0.1".parse().unwrap(),
        neighbors: vec![NeighborConfig {
            address: "10.0.0.20".parse().unwrap(),
            asn: 64501,
            passive: true,
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            bfd: Some(bfd),
        }],
        networks: vec![],
        announce_vips: false,
        install_routes: true,
        added: AddedNeighbors::default(),
    });
    let mut router = Node::new(c, Duration::ZERO).unwrap();
    let mut now = Duration::ZERO;
    nc.publish_configs(&configs(&[(
        "MuxVM",
        1,
        json!({"role": "mux", "mux": {"localAsn": 64501, "peers": [["10.0.0.1", 64500]], "vips": {}}}),
    )]));
    let up = |n: &Node| {
        n.bgp_status().is_some_and(|s| {
            s.len() == 1
                && s[0].state == strata_node::bgp::State::Established
                && s[0].bfd == Some(bfd::State::Up)
        })
    };
    run(&mut now, &mut [&mut nc, &mut mux, &mut router], |n| {
        up(n[1]) && up(n[2])
    });
    assert!(up(&mux), "{:?}", mux.bgp_status());
    assert!(up(&router), "{:?}", router.bgp_status());
    assert_eq!(mux.bgp_status().unwrap()[0].address.to_string(), "10.0.0.1");
}
