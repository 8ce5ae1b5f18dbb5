//! `strata bgp` against FRR's bgpd (run alone, without zebra) on loopback addresses: the
//! session comes up, our VIP reaches FRR with our AS path and next hop, FRR's network
//! reaches us, and the path FRR reflects back through our own AS is refused as a loop.
//!
//! Skipped (with a message) when FRR is not installed, unless STRATA_REQUIRE_FRR is set, as
//! the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Guard, loopback_pair, speaker, speaker_config, status_says, wait_for};

const BGPD: &str = "/usr/lib/frr/bgpd";

fn vtysh(dir: &Path, command: &str) -> String {
    vtysh_all(dir, &[command])
}

/// Runs commands in one vtysh session (configuration takes several).
fn vtysh_all(dir: &Path, commands: &[&str]) -> String {
    let mut vtysh = Command::new("vtysh");
    vtysh.arg("--vty_socket").arg(dir);
    for c in commands {
        vtysh.args(["-c", c]);
    }
    let out = vtysh.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn strata_and_frr_exchange_routes() {
    if !Path::new(BGPD).exists() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_FRR").is_none(),
            "FRR is required but not installed"
        );
        eprintln!("FRR not installed; skipping");
        return;
    }
    let (frr_ip, our_ip) = loopback_pair(4);
    let mut guard = Guard::new("frr");
    let dir = guard.dir.clone();
    let pid_file = dir.join("bgpd.pid");
    guard.pid_file = Some(pid_file.clone());
    std::fs::write(
        dir.join("bgpd.conf"),
        format!(
            "frr defaults traditional\nrouter bgp 64500\n bgp router-id 10.0.0.2\n no bgp ebgp-requires-policy\n\
             no bgp network import-check\n neighbor {our_ip} remote-as 64501\n neighbor {our_ip} update-source {frr_ip}\n\
             neighbor {our_ip} timers 3 9\n neighbor {our_ip} ebgp-multihop 2\n address-family ipv4 unicast\n\
             network 198.51.100.0/24\n exit-address-family\n"
        ),
    )
    .unwrap();
    // bgpd drops privileges to the frr user, which must own its directory.
    assert!(
        Command::new("chown")
            .args(["-R", "frr:frr"])
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    let started = Command::new(BGPD)
        .arg("-f")
        .arg(dir.join("bgpd.conf"))
        .arg("--no_zebra")
        .arg("-i")
        .arg(&pid_file)
        .arg("-z")
        .arg(dir.join("zserv.api"))
        .arg("--vty_socket")
        .arg(&dir)
        .args([
            "-A", &frr_ip, "-P", "0", "-l", &frr_ip, "-p", "179", "-u", "frr", "-g", "frr", "-d",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(started.success());
    let (config, status) = speaker_config(&dir, &our_ip, &frr_ip, "");
    guard.children.push(speaker(&config));
    wait_for("FRR to learn our VIP", Duration::from_secs(30), || {
        let route = vtysh(&dir, "show bgp ipv4 unicast 192.168.133.74/32");
        route.contains("64501") && route.contains("192.0.2.20 from")
    });
    wait_for(
        "our speaker to learn FRR's network",
        Duration::from_secs(30),
        || {
            status_says(&status, "received 198.51.100.0/24")
                && status_says(&status, "AS path 64500\n")
        },
    );
    // FRR sends our own VIP back with AS path 64500 64501: a loop, not kept.
    assert!(!status_says(&status, "received 192.168.133.74/32"));
    assert!(vtysh(&dir, "show bgp summary").contains(&our_ip));

    // FRR withdraws its network: we drop it.
    vtysh_all(
        &dir,
        &[
            "configure terminal",
            "router bgp 64500",
            "address-family ipv4 unicast",
            "no network 198.51.100.0/24",
        ],
    );
    wait_for(
        "our speaker to drop FRR's withdrawn network",
        Duration::from_secs(30),
        || std::fs::read_to_string(&status).is_ok_and(|s| !s.contains("198.51.100.0/24")),
    );
    // We withdraw the VIP (the file no longer announces it, SIGHUP): FRR drops it.
    let text = std::fs::read_to_string(&config).unwrap();
    let without_vip = text
        .split("[[announce]]")
        .next()
        .unwrap_or_default()
        .to_string();
    std::fs::write(&config, without_vip).unwrap();
    common::hangup(guard.children.last().unwrap());
    wait_for("FRR to drop our VIP", Duration::from_secs(30), || {
        !vtysh(&dir, "show bgp ipv4 unicast 192.168.133.74/32").contains("64501")
    });
}
