//! The seed's POC lab in virtual time: every scenario passes, along the hops the seed and
//! the lab file describe, the same way every run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strata_lab::file::parse;
use strata_lab::topology::Topology;
use strata_lab::{Clock, Lab, ScenarioResult};

fn poc() -> Topology {
    parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .expect("the POC lab parses")
}

fn run_all() -> (Lab, Vec<ScenarioResult>) {
    let mut lab = Lab::new(poc(), Clock::Virtual).expect("the POC lab boots");
    let results = lab.run_scenarios();
    (lab, results)
}

fn by_name<'a>(results: &'a [ScenarioResult], name: &str) -> &'a ScenarioResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

fn nodes(hops: &[strata_lab::Hop]) -> Vec<String> {
    ScenarioResult::nodes(hops)
}

#[test]
fn every_scenario_passes() {
    let (_, results) = run_all();
    assert!(results.len() >= 11);
    for r in &results {
        assert!(r.passed, "{}", strata_lab::report::scenario(r));
    }
}

#[test]
fn seed_flow_to_portalvm() {
    let (_, results) = run_all();
    let http = by_name(&results, "http-portalvm");
    assert_eq!(
        nodes(&http.request),
        ["ClientVM", "NATVM", "BGPVM", "HyperVHost", "PortalVM"]
    );
    assert_eq!(
        nodes(&http.reply),
        ["PortalVM", "HyperVHost", "BGPVM", "ClientVM"]
    );
    assert_eq!(
        http.request
            .iter()
            .map(|h| h.network.as_str())
            .collect::<Vec<_>>(),
        [
            "nat-internal",
            "nat-internal",
            "management",
            "CCI_External.PortalVM"
        ]
    );
    match &http.report {
        Some(strata_node::TaskReport::Http(r)) => {
            assert_eq!(r.status, Some(200));
            assert!(r.body.contains("Azure Stack portal"));
            assert_eq!(
                r.resolved.as_ref().map(|(_, a)| a.to_string()),
                Some("192.168.100.74".to_string()),
                "the name resolved over DNS"
            );
        }
        other => panic!("{other:?}"),
    }
    let dns = by_name(&results, "dns-portal-vip");
    assert!(dns.summary.contains("192.168.133.74"), "{}", dns.summary);
    assert_eq!(nodes(&dns.request), ["ClientVM", "NATVM", "BGPVM", "ADVM"]);
}

#[test]
fn snat_and_port_forward_rewrite_addresses() {
    let (lab, results) = run_all();
    let snat = by_name(&results, "snat-to-internet");
    let outside = snat
        .request
        .iter()
        .find(|h| h.network == "external")
        .expect("an external hop");
    assert!(
        outside.what.starts_with("TCP 203.0.113.1:"),
        "the Internet host sees NATVM's address: {}",
        outside.what
    );
    let inside = &snat.request[0];
    assert!(
        inside.what.starts_with("TCP 192.168.200.10:"),
        "{}",
        inside.what
    );

    let fwd = by_name(&results, "port-forward-from-internet");
    assert_eq!(
        nodes(&fwd.request),
        ["Internet", "NATVM", "BGPVM", "HyperVHost", "PortalVM"]
    );
    assert!(
        fwd.request[1].what.contains("> 192.168.100.74:80"),
        "{}",
        fwd.request[1].what
    );
    assert!(
        fwd.reply
            .last()
            .is_some_and(|h| h.what.starts_with("TCP 203.0.113.1:8080 >"))
    );

    let nat = lab
        .node("NATVM")
        .and_then(|n| n.nat())
        .expect("NATVM has a NAT");
    assert!(nat.counters().translated_out > 0 && nat.counters().translated_in > 0);
    assert_eq!(nat.counters().table_full, 0);
}

#[test]
fn unrouted_destination_gets_net_unreachable() {
    let (lab, results) = run_all();
    let r = by_name(&results, "provider-network-unreachable-from-client");
    assert!(r.passed);
    assert!(
        r.reply[0]
            .what
            .starts_with("ICMP unreachable code 0 192.168.200.1 >"),
        "{}",
        r.reply[0].what
    );
    assert!(lab.node("NATVM").unwrap().router().counters().no_route >= 1);
}

#[test]
fn runs_are_deterministic() {
    let render = |results: &[ScenarioResult]| {
        results
            .iter()
            .map(strata_lab::report::scenario)
            .collect::<Vec<_>>()
            .join("")
    };
    let (_, a) = run_all();
    let (_, b) = run_all();
    assert_eq!(render(&a), render(&b));
}

#[test]
fn malformed_frames_are_dropped_and_counted_and_nothing_breaks() {
    let mut lab = Lab::new(poc(), Clock::Virtual).unwrap();
    let bgpvm_mac = strata_lab::mac_of(lab.topology().node("BGPVM").unwrap(), 0);
    let mut bad_ip = Vec::new();
    bad_ip.extend_from_slice(bgpvm_mac.as_bytes());
    bad_ip.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x66, 0x08, 0x00]);
    // IPv4 with a header checksum that does not match.
    bad_ip.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0xde, 0xad, 192, 168, 100, 9, 192, 168, 200, 10,
    ]);
    bad_ip.extend_from_slice(&[0; 8]);
    let mut short = bgpvm_mac.as_bytes().to_vec();
    short.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x66, 0x08, 0x06, 0, 1]);
    assert!(lab.inject("management", "ADVM", bad_ip));
    assert!(lab.inject("management", "ADVM", short));
    assert!(lab.inject("management", "ADVM", vec![1, 2, 3]));
    lab.run_for(Duration::from_millis(10));
    let counters = *lab.node("BGPVM").unwrap().router().counters();
    assert_eq!(counters.malformed, 2, "{counters:?}");
    let results = lab.run_scenarios();
    assert!(results.iter().all(|r| r.passed));
}

#[test]
fn portal_through_the_vip_mux_vxlan_and_direct_server_return() {
    let (lab, results) = run_all();
    let portal = by_name(&results, "portal");
    assert!(portal.passed, "{}", strata_lab::report::scenario(portal));
    let path = nodes(&portal.request);
    assert_eq!(path[..3], ["ClientVM", "NATVM", "BGPVM"]);
    // BGPVM has both Muxes as equal-cost next hops; the flow took one of them.
    let mux_pa = match path[3].as_str() {
        "MuxVM" => "192.168.233.20",
        "MuxVM2" => "192.168.233.22",
        other => panic!("not a Mux: {other} in {path:?}"),
    };
    assert_eq!(path[4], "HyperVHost");
    assert!(path[5].starts_with("PortalVM"), "{path:?}");
    // The Mux wraps the packet, unchanged, in VXLAN to the host's PA.
    let vxlan = portal
        .request
        .iter()
        .find(|h| h.network == "provider")
        .expect("a provider hop");
    assert!(
        vxlan.what.starts_with(&format!("VXLAN vni 4096 {mux_pa}:"))
            && vxlan
                .what
                .contains("> 192.168.233.21:4789 | TCP 192.168.200.10:"),
        "{}",
        vxlan.what
    );
    assert!(
        vxlan.what.ends_with("> 192.168.133.74:80 [SYN] len 0"),
        "{}",
        vxlan.what
    );
    // The host's VFP rewrote VIP to DIP on the way in ...
    let last = portal.request.last().unwrap();
    assert!(last.what.contains("> 192.168.100.7"), "{}", last.what);
    // ... and DIP to VIP on the way out, straight to the router: no Mux on the way back.
    let reply = nodes(&portal.reply);
    assert!(!reply.iter().any(|n| n.starts_with("MuxVM")), "{reply:?}");
    assert_eq!(reply[1..], ["HyperVHost", "BGPVM", "ClientVM"]);
    let out = &portal.reply[1];
    assert!(
        out.what
            .starts_with("TCP 192.168.133.74:80 > 192.168.200.10:"),
        "{}",
        out.what
    );

    let mux = lab.node(&path[3]).and_then(|n| n.mux()).expect("a Mux");
    assert!(mux.counters().encapsulated > 0);
    assert_eq!(mux.counters().no_vip, 0);
    let vswitch = lab
        .node("HyperVHost")
        .and_then(|n| n.vswitch())
        .expect("the host has a vSwitch");
    assert!(vswitch.counters().decapsulated > 0);
    assert_eq!(vswitch.counters().vfp_dropped, 0);
}

#[test]
fn connections_spread_over_both_dips_and_nat_rules_reach_one() {
    let (_, results) = run_all();
    let spread = by_name(&results, "portal-spread");
    assert!(spread.passed, "{}", strata_lab::report::scenario(spread));
    let counts: Vec<usize> = spread.split.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts.iter().sum::<usize>(), 40);
    assert!(counts.iter().all(|n| *n >= 8), "{:?}", spread.split);
    let nat = by_name(&results, "portal-inbound-nat");
    assert_eq!(
        nat.split,
        [("served by PortalVM2 192.168.100.75".to_string(), 5)]
    );
    assert_eq!(
        nodes(&nat.request).last().map(String::as_str),
        Some("PortalVM2")
    );
}

#[test]
fn a_failed_dip_leaves_the_pool_and_established_flows_to_the_other_survive() {
    let (lab, results) = run_all();
    let fails = by_name(&results, "portalvm2-fails");
    assert!(fails.passed, "{}", strata_lab::report::scenario(fails));
    // The host agent's probes found it, not the Mux: the report came from HyperVHost.
    // The first report about PortalVM2 is its failure, and PortalVM was never reported
    // down until the scenario that stops it too.
    let log = lab.health_log();
    let first = log
        .iter()
        .find(|(_, _, dip, _)| dip.to_string() == "192.168.100.75")
        .unwrap();
    assert_eq!(
        (first.1.as_str(), first.3),
        ("HyperVHost", false),
        "{log:?}"
    );
    let stops_too = by_name(&results, "portalvm-stops-too").started;
    assert!(
        log.iter()
            .all(|(t, _, dip, up)| dip.to_string() != "192.168.100.74" || *up || *t >= stops_too),
        "{log:?}"
    );
    let after = by_name(&results, "portal-after-failure");
    assert_eq!(
        after.split,
        [("served by PortalVM 192.168.100.74".to_string(), 20)]
    );
    let survive = by_name(&results, "portal-long-downloads-survive");
    assert!(survive.passed, "{}", strata_lab::report::scenario(survive));
    assert!(
        survive
            .summary
            .contains("served by PortalVM 192.168.100.74"),
        "{}",
        survive.summary
    );
    let back = by_name(&results, "portalvm2-recovers");
    assert!(back.passed, "{}", strata_lab::report::scenario(back));
    // The probes themselves crossed the vSwitch: the host sent them from its vNIC.
    let host = lab.node("HyperVHost").unwrap();
    let probes = host.probes();
    assert_eq!(
        probes.len(),
        4,
        "the portal's two DIPs and a web VM of each tenant: {probes:?}"
    );
    assert!(
        probes.iter().all(|(_, up, sent, _)| *up && *sent >= 5),
        "{probes:?}"
    );
}

#[test]
fn the_vip_route_is_learned_over_bgp_and_withdrawn_without_dips() {
    let (lab, results) = run_all();
    for name in [
        "portal",
        "vip-withdrawn",
        "portal-down-without-dips",
        "vip-announced-again",
    ] {
        let r = by_name(&results, name);
        assert!(r.passed, "{}", strata_lab::report::scenario(r));
    }
    let bgpvm = lab.node("BGPVM").unwrap();
    let route = bgpvm
        .router()
        .fib()
        .get("192.168.133.74/32".parse().unwrap())
        .expect("the VIP route");
    assert_eq!(route.origin, strata_node::router::Origin::Bgp);
    assert_eq!(route.gateway, Some("192.168.100.20".parse().unwrap()));
    let neighbors = bgpvm.bgp_status().unwrap();
    assert_eq!(neighbors.len(), 2);
    assert_eq!(neighbors[0].state, strata_node::bgp::State::Established);
    let via = |vip: &str| (vip.parse().unwrap(), "192.168.100.20".parse().unwrap());
    assert_eq!(
        neighbors[0].received,
        [
            via("192.168.133.74/32"),
            via("192.168.133.80/32"),
            via("192.168.133.90/32")
        ],
        "the portal's VIP and each tenant's"
    );
    let mux = lab.node("MuxVM").unwrap().bgp_status().unwrap();
    let vip = |v: &str| v.parse::<ipnet::Ipv4Net>().unwrap();
    assert_eq!(
        mux[0].advertised,
        [
            vip("192.168.133.74/32"),
            vip("192.168.133.80/32"),
            vip("192.168.133.90/32")
        ]
    );
}

#[test]
fn two_muxes_share_the_vip_by_ecmp_and_one_can_leave() {
    let (lab, results) = run_all();
    for name in [
        "portal-over-two-muxes",
        "muxvm2-stops",
        "portal-through-one-mux",
        "downloads-survive-the-mux-failure",
    ] {
        let r = by_name(&results, name);
        assert!(r.passed, "{}", strata_lab::report::scenario(r));
    }
    // Both Muxes carried VIP traffic while both were up.
    for mux in ["MuxVM", "MuxVM2"] {
        let m = lab.node(mux).and_then(|n| n.mux()).unwrap();
        assert!(m.counters().encapsulated > 10, "{mux}: {:?}", m.counters());
    }
    // The downloads that crossed the Mux failure all completed.
    let survived = by_name(&results, "downloads-survive-the-mux-failure");
    assert_eq!(
        survived.split.iter().map(|(_, n)| n).sum::<usize>(),
        8,
        "{}",
        survived.summary
    );
}

#[test]
fn both_muxes_were_equal_cost_next_hops_before_one_left() {
    let topology = poc();
    let names: Vec<String> = topology.scenarios.iter().map(|s| s.name.clone()).collect();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(strata_lab::BOOT_LIMIT);
    let route = lab
        .node("BGPVM")
        .unwrap()
        .router()
        .fib()
        .get("192.168.133.74/32".parse().unwrap())
        .cloned()
        .unwrap();
    let mut hops: Vec<_> = route
        .next_hops()
        .map(|(_, g)| g.unwrap().to_string())
        .collect();
    hops.sort();
    assert_eq!(hops, ["192.168.100.20", "192.168.100.21"]);
    assert!(names.iter().any(|n| n == "muxvm2-stops"));
}

#[test]
fn graceful_restart_keeps_the_vip_through_a_mux_restart() {
    let topology = poc();
    let names: Vec<String> = topology.scenarios.iter().map(|s| s.name.clone()).collect();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(strata_lab::BOOT_LIMIT);
    let vip: ipnet::Ipv4Net = "192.168.133.74/32".parse().unwrap();
    let muxvm = |lab: &Lab| {
        lab.node("BGPVM")
            .unwrap()
            .bgp_status()
            .unwrap()
            .into_iter()
            .find(|n| n.address.to_string() == "192.168.100.20")
            .unwrap()
    };
    for (i, name) in names.iter().enumerate() {
        let r = lab.run_scenario(i);
        assert!(r.passed, "{}", strata_lab::report::scenario(&r));
        if name == "muxvm-restarts" {
            // The session is down (reset, no NOTIFICATION), yet the route is still there.
            let n = muxvm(&lab);
            assert_ne!(n.state, strata_node::bgp::State::Established);
            assert_eq!(n.last_down.as_deref(), Some("connection lost"));
            assert!(lab.node("BGPVM").unwrap().router().fib().get(vip).is_some());
        }
        if name == "muxvm-session-back" {
            let n = muxvm(&lab);
            assert_eq!(n.state, strata_node::bgp::State::Established);
            assert!(
                n.received
                    .contains(&(vip, "192.168.100.20".parse().unwrap()))
            );
            assert_eq!(n.received.len(), 3, "the tenants' VIPs too");
            break;
        }
    }
}

#[test]
fn a_mux_leaves_by_cease_comes_back_and_is_lost_by_bfd() {
    let topology = poc();
    let names: Vec<String> = topology.scenarios.iter().map(|s| s.name.clone()).collect();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(strata_lab::BOOT_LIMIT);
    let vip: ipnet::Ipv4Net = "192.168.133.74/32".parse().unwrap();
    let next_hops = |lab: &Lab| {
        let route = lab
            .node("BGPVM")
            .unwrap()
            .router()
            .fib()
            .get(vip)
            .cloned()
            .unwrap();
        let mut hops: Vec<String> = route
            .next_hops()
            .map(|(_, g)| g.unwrap().to_string())
            .collect();
        hops.sort();
        hops
    };
    let muxvm2 = |lab: &Lab| {
        lab.node("BGPVM")
            .unwrap()
            .bgp_status()
            .unwrap()
            .into_iter()
            .find(|n| n.address.to_string() == "192.168.100.21")
            .unwrap()
    };
    for (i, name) in names.iter().enumerate() {
        let r = lab.run_scenario(i);
        assert!(r.passed, "{}", strata_lab::report::scenario(&r));
        match name.as_str() {
            "muxvm2-stops" => {
                assert_eq!(next_hops(&lab), ["192.168.100.20"]);
                assert_eq!(
                    muxvm2(&lab).last_down.as_deref(),
                    Some(
                        "received Cease / Administrative Shutdown (6/2): \"the node is shutting down\""
                    )
                );
            }
            "muxvm2-comes-back" => {
                assert_eq!(next_hops(&lab), ["192.168.100.20", "192.168.100.21"]);
                assert_eq!(muxvm2(&lab).state, strata_node::bgp::State::Established);
            }
            "muxvm2-cut-off" => {
                assert_eq!(next_hops(&lab), ["192.168.100.20"]);
                assert_eq!(muxvm2(&lab).last_down.as_deref(), Some("BFD session down"));
                assert!(lab.cut_frames() > 0);
                break;
            }
            _ => {}
        }
    }
}

/// RFC 5880/5882 in the lab: BGPVM and the Muxes run BFD at 100 ms x 3, so a Mux cut off
/// without a word leaves BGPVM's ECMP set once three intervals pass without a packet,
/// not after the 30 s hold time. Ten cuts at different moments of the transmit cycle.
#[test]
fn bfd_drops_a_cut_off_mux_within_its_detection_time() {
    let vip: ipnet::Ipv4Net = "192.168.133.74/32".parse().unwrap();
    let hops = |lab: &Lab| {
        let fib = lab.node("BGPVM").unwrap().router().fib();
        fib.get(vip).map_or(0, |r| r.next_hops().count())
    };
    let mut detections = Vec::new();
    for round in 0..10u64 {
        let mut lab = Lab::new(poc(), Clock::Virtual).unwrap();
        let (up, all) = lab.boot(strata_lab::BOOT_LIMIT);
        assert_eq!(up, all);
        let bgpvm = lab.node("BGPVM").unwrap().bgp_status().unwrap();
        assert!(
            bgpvm
                .iter()
                .all(|n| n.bfd == Some(strata_node::bgp_codec::bfd::State::Up))
        );
        lab.run_for(Duration::from_millis(1000 + 37 * round));
        assert_eq!(hops(&lab), 2);
        let muxvm2 = lab
            .topology()
            .nodes
            .iter()
            .position(|n| n.name == "MuxVM2")
            .unwrap();
        lab.set_cut(muxvm2, true);
        let cut_at = lab.now();
        // Not at once: BFD waits out its detection time.
        lab.run_for(Duration::from_millis(150));
        assert_eq!(
            hops(&lab),
            2,
            "round {round}: dropped before the detection time"
        );
        assert!(lab.run_until(Duration::from_secs(2), |lab| hops(lab) == 1));
        detections.push(lab.now() - cut_at);
        let status = lab.node("BGPVM").unwrap().bgp_status().unwrap();
        let n = status
            .iter()
            .find(|n| n.address.to_string() == "192.168.100.21")
            .unwrap();
        assert_eq!(n.last_down.as_deref(), Some("BFD session down"));
    }
    detections.sort();
    println!("BFD detection in the lab (100 ms x 3): {detections:?}");
    // Three intervals after the last packet, which left up to one (jittered) interval
    // before the cut.
    assert!(
        detections
            .iter()
            .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400)),
        "{detections:?}"
    );
}

/// The whole run of the POC lab, every scenario with its hops, pinned: the lab runs in
/// virtual time, so the same file gives the same run, and a change in behaviour (a path,
/// a timing, a summary) shows here as a diff. Two runs in one process agree first.
#[test]
fn the_poc_run_is_pinned() {
    let run = || {
        let topology = strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .expect("the POC lab parses");
        let mut lab = strata_lab::Lab::new(topology, strata_lab::Clock::Virtual).expect("lab");
        lab.boot(strata_lab::BOOT_LIMIT);
        let results = lab.run_scenarios();
        let mut text = String::new();
        for r in &results {
            text.push_str(&strata_lab::report::scenario(r));
        }
        text.push_str(&strata_lab::report::summary(&results));
        text
    };
    let first = run();
    assert_eq!(first, run(), "two runs of the same lab differ");
    insta::assert_snapshot!("poc_run", first);
}
