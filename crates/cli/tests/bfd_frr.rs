//! BFD with FRR's bfdd across a veth pair between two network namespaces this test
//! creates (single hop): FRR (zebra, bfdd, bgpd with `neighbor X bfd`) in one, our
//! speaker in the other. Both BFD sessions come up; when our speaker freezes, FRR's bfdd
//! declares it down and FRR's BGP session follows; when FRR's bfdd freezes, ours does
//! and our BGP session follows.
//!
//! Needs root (namespaces) and FRR; skipped with a message otherwise, unless
//! STRATA_REQUIRE_FRR is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{Netns, log_lines, parse_time, seconds_of_day};
use common::wait_for;

const FRR: &str = "/usr/lib/frr";

fn signal(signal: &str, pid: &str) {
    let sent = Command::new("kill").args([signal, pid]).status().unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

#[test]
fn bfd_with_frr_comes_up_and_each_side_drops_a_frozen_peer() {
    if !Path::new(FRR).join("bfdd").exists() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_FRR").is_none(),
            "FRR is required but not installed"
        );
        eprintln!("FRR not installed; skipping");
        return;
    }
    let Some(mut net) = Netns::new("frr") else {
        assert!(
            std::env::var_os("STRATA_REQUIRE_FRR").is_none(),
            "network namespaces are needed (root)"
        );
        eprintln!("cannot create network namespaces (not root?); skipping");
        return;
    };
    let dir = net.dir.clone();
    let va = net.veth.0.clone();
    std::fs::write(
        dir.join("frr.conf"),
        format!(
            "frr defaults traditional\n\
             bfd\n peer 10.99.0.2 local-address 10.99.0.1 interface {va}\n  \
             receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n\
             router bgp 64500\n bgp router-id 10.99.0.1\n no bgp ebgp-requires-policy\n \
             no bgp network import-check\n neighbor 10.99.0.2 remote-as 64501\n \
             neighbor 10.99.0.2 bfd\n neighbor 10.99.0.2 timers connect 1\n \
             address-family ipv4 unicast\n  network 198.51.100.0/24\n exit-address-family\n!\n"
        ),
    )
    .unwrap();
    // The daemons drop privileges to the frr user, which must own the directory.
    assert!(
        Command::new("chown")
            .args(["-R", "frr:frr"])
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    let d = dir.to_str().unwrap();
    for daemon in ["zebra", "bfdd", "bgpd"] {
        let pid = dir.join(format!("{daemon}.pid"));
        let mut c = net.exec(&net.a, &format!("{FRR}/{daemon}"));
        c.args(["-d", "-f", &format!("{d}/frr.conf"), "-i"])
            .arg(&pid)
            .args(["-z", &format!("{d}/zserv.api"), "--vty_socket", d])
            .args(["-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-P", "0"]);
        match daemon {
            "bfdd" => c.args(["--bfdctl", &format!("{d}/bfdd.sock")]),
            "bgpd" => c.args(["-l", "10.99.0.1", "-p", "179"]),
            _ => &mut c,
        };
        let started = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(started.unwrap().success(), "{daemon}");
        net.pid_files.push(pid.clone());
        wait_for(
            &format!("{daemon}'s pid file"),
            Duration::from_secs(5),
            || std::fs::read_to_string(&pid).is_ok_and(|p| !p.trim().is_empty()),
        );
    }
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"10.99.0.2\"\nlocal = \"10.99.0.2\"\ncontrol_socket = \"{d}/control.sock\"\n\
             [[neighbor]]\naddress = \"10.99.0.1\"\nasn = 64500\nhold_time = 90\n\
             bfd = true\nbfd_interval = 100\nbfd_multiplier = 3\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("strata.log")).unwrap();
    let speaker = net
        .exec(&net.b, env!("CARGO_BIN_EXE_strata"))
        .args(["bgp", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let ours = speaker.id().to_string();
    net.children.push(speaker);
    let ns_a = net.a.clone();
    let vtysh = |command: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns_a,
                "vtysh",
                "--vty_socket",
                d,
                "-c",
                command,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let show = || common::bgp_show(&config, &[]);
    let frr_session_up = || {
        vtysh("show bgp summary").lines().any(|l| {
            l.starts_with("10.99.0.2")
                && !l.contains("Idle")
                && !l.contains("Active")
                && !l.contains("Connect")
        })
    };
    let both_up = || {
        show().contains("Established BFD Up")
            && show().contains("best 198.51.100.0/24")
            && vtysh("show bfd peers").contains("Status: up")
            && frr_session_up()
    };
    wait_for(
        "BFD and BGP up on both sides",
        Duration::from_secs(60),
        both_up,
    );

    // Our speaker freezes: FRR's bfdd declares it down, and FRR's BGP session follows
    // (its hold time is 90 s).
    signal("-STOP", &ours);
    wait_for("FRR to drop us by BFD", Duration::from_secs(5), || {
        vtysh("show bfd peers").contains("control detection time expired") && !frr_session_up()
    });
    signal("-CONT", &ours);
    wait_for("both sides up again", Duration::from_secs(60), both_up);

    // FRR's bfdd freezes: ours declares it down and our BGP session follows.
    let bfdd = std::fs::read_to_string(dir.join("bfdd.pid")).unwrap();
    let stopped = seconds_of_day(std::time::SystemTime::now());
    signal("-STOP", bfdd.trim());
    wait_for("us to drop FRR by BFD", Duration::from_secs(5), || {
        !show().contains("Established")
    });
    let line = log_lines(&dir, "BFD session down:").pop().unwrap();
    let logged = line.get(11..26).and_then(parse_time).unwrap();
    let detected = Duration::from_secs_f64(logged - stopped);
    println!("detected FRR's silence in {detected:?}");
    assert!(detected < Duration::from_secs(1), "{detected:?}");
    let after = show();
    assert!(after.contains("last down: BFD session down"), "{after}");
    assert!(!after.contains("best 198.51.100.0/24"), "{after}");
    signal("-CONT", bfdd.trim());
}
