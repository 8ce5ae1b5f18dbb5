//! Strata's router on real interfaces: a client and a server namespace, each with the
//! kernel's own stack, joined through a namespace where a Strata node forwards between
//! two AF_PACKET links. The kernel's `ping` crosses it (TTL 63: one router hop), and the
//! node answers ping itself. Needs root (CI runs as root); skipped without it unless
//! `STRATA_REQUIRE_NETNS` is set. The namespaces are removed however the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_fabric::linux::{LinuxLink, PacketLink, netns};
use strata_node::{NicConfig, NodeConfig};
use strata_runtime::Driver;
use strata_testkit::netns::{Scene, allowed as netns_allowed, run};
use strata_wire::EthernetAddress;

fn nic(link: &LinuxLink, addr: &str) -> NicConfig {
    NicConfig {
        name: link.name().to_string(),
        mac: EthernetAddress(link.mac().unwrap()),
        addr: addr.parse().unwrap(),
        mtu: 1500,
        behind_switch: false,
    }
}

#[test]
fn the_kernels_ping_crosses_a_strata_router() {
    if !netns_allowed() {
        return;
    }
    let (_scene, names) = Scene::new(&["client", "router", "server"]);
    let (client, router, server) = (names[0].clone(), names[1].clone(), names[2].clone());
    let ip = |args: &[&str]| {
        run("ip", args);
    };
    ip(&[
        "-n", &client, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", &router,
    ]);
    ip(&[
        "-n", &server, "link", "add", "s0", "type", "veth", "peer", "name", "r1", "netns", &router,
    ]);
    for (ns, dev) in [
        (&client, "c0"),
        (&router, "r0"),
        (&router, "r1"),
        (&server, "s0"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", &client, "addr", "add", "10.1.0.2/24", "dev", "c0"]);
    ip(&["-n", &client, "route", "add", "default", "via", "10.1.0.1"]);
    ip(&["-n", &server, "addr", "add", "10.2.0.2/24", "dev", "s0"]);
    ip(&["-n", &server, "route", "add", "default", "via", "10.2.0.1"]);

    // The router namespace's interfaces have no address: Strata is the router there.
    let links = netns::run_in(&router, || {
        Ok(vec![
            PacketLink::open("r0")?.into(),
            PacketLink::open("r1")?.into(),
        ])
    })
    .unwrap();
    let config = NodeConfig {
        forwarding: true,
        seed: 1,
        ..NodeConfig::new(
            "router",
            vec![nic(&links[0], "10.1.0.1/24"), nic(&links[1], "10.2.0.1/24")],
        )
    };
    let mut driver = Driver::new(config, links).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let status = std::env::temp_dir().join(format!("strata-router-status-{}", std::process::id()));
    let running = {
        let stop = stop.clone();
        let status = status.clone();
        std::thread::spawn(move || {
            driver.run_reporting(&stop, Some(&status)).unwrap();
            driver
        })
    };

    let ping = |ns: &str, to: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to,
            ])
            .output()
            .unwrap()
    };
    // Through the router, both ways: one hop, TTL 64 - 1.
    let across = ping(&client, "10.2.0.2");
    let text = String::from_utf8_lossy(&across.stdout);
    assert!(
        across.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&across.stderr)
    );
    assert!(text.contains("ttl=63"), "{text}");
    let back = ping(&server, "10.1.0.2");
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stdout)
    );
    // The router answers for itself.
    let own = ping(&client, "10.1.0.1");
    let text = String::from_utf8_lossy(&own.stdout);
    assert!(own.status.success(), "{text}");
    assert!(text.contains("ttl=64"), "{text}");

    stop.store(true, Ordering::Relaxed);
    let driver = running.join().unwrap();
    let c = driver.counters();
    assert!(c.received >= 12 && c.sent >= 12, "{c:?}");
    assert_eq!((c.errors, c.send_dropped), (0, 0), "{c:?}");
    assert!(driver.node().router().counters().forwarded >= 12);
    // Its status file was written: empty, for a router without BGP.
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "");
    let _ = std::fs::remove_file(&status);
}

/// An interface taken down under a running driver: the error is counted, nothing
/// panics, and once it is up again the node answers as before.
#[test]
fn a_link_that_goes_down_and_up_is_counted_and_survived() {
    if !netns_allowed() {
        return;
    }
    let (_scene, names) = Scene::new(&["node", "peer"]);
    let (node, peer) = (names[0].clone(), names[1].clone());
    run(
        "ip",
        &[
            "-n", &peer, "link", "add", "p0", "type", "veth", "peer", "name", "n0", "netns", &node,
        ],
    );
    run("ip", &["-n", &peer, "link", "set", "p0", "up"]);
    run("ip", &["-n", &node, "link", "set", "n0", "up"]);
    run(
        "ip",
        &["-n", &peer, "addr", "add", "10.5.0.2/24", "dev", "p0"],
    );
    let links =
        netns::run_in(&node, || Ok(vec![LinuxLink::from(PacketLink::open("n0")?)])).unwrap();
    let config = NodeConfig {
        name: "node".into(),
        nics: vec![nic(&links[0], "10.5.0.1/24")],
        routes: vec![],
        discards: vec![],
        forwarding: false,
        nat: None,
        dns_server: None,
        services: vec![],
        vswitch: None,
        mux: None,
        probes: vec![],
        bgp: None,
        control: None,
        seed: 1,
    };
    let mut driver = Driver::new(config, links).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            driver.run(&stop).unwrap();
            driver
        })
    };
    let ping = || {
        Command::new("ip")
            .args([
                "netns", "exec", &peer, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.5.0.1",
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ping(), "the node answers");
    run("ip", &["-n", &node, "link", "set", "n0", "down"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    run("ip", &["-n", &node, "link", "set", "n0", "up"]);
    assert!(ping(), "the node answers again once its link is up");
    stop.store(true, Ordering::Relaxed);
    let driver = running.join().expect("the driver did not panic");
    assert!(driver.counters().errors >= 1, "{:?}", driver.counters());
}

#[test]
fn a_driver_needs_an_interface_for_every_link() {
    let config = NodeConfig {
        name: "lonely".into(),
        nics: vec![NicConfig {
            name: "eth0".into(),
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addr: "10.9.0.1/24".parse().unwrap(),
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
        probes: vec![],
        bgp: None,
        control: None,
        seed: 1,
    };
    let e = Driver::new(config, Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the node has 1 links, but 0 interfaces were given"
    );
}
