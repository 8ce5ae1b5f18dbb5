//! `strata mux` as a process in a network namespace, configured by `strata controller`
//! running in another, over the southbound protocol on real TCP: the Mux's agent runs on
//! Strata's own stack over AF_PACKET, the controller on the kernel's. A write through the
//! controller's API is Updating until the Mux has applied it, then Succeeded. Needs root
//! (CI runs as root); skipped without it unless `STRATA_REQUIRE_NETNS` is set.
//! Namespaces and processes go however the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_testkit::netns::{Scene, allowed as netns_allowed, run};

mod support;
use support::controller::ctl;

/// `strata ctl` inside the controller's namespace.
fn mux_resource(peers: &str) -> String {
    format!(
        "resourceRef: /loadBalancerMuxes/MuxVM\nproperties:\n  routerConfiguration:\n    \
         localASN: 64501\n    peerRouterConfigurations: {peers}\n"
    )
}

#[test]
fn a_mux_process_is_configured_by_the_controller_over_real_tcp() {
    if !netns_allowed() {
        return;
    }
    let id = std::process::id();
    let (mut cleanup, names) = Scene::new(&["nc", "mux", "pa"]);
    let (nc, mux, prov) = (names[0].clone(), names[1].clone(), names[2].clone());
    let dir = std::env::temp_dir().join(format!("strata-mux-process-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("controller");
    cleanup.dir = Some(dir.clone());
    let ip = |args: &[&str]| run("ip", args);
    ip(&[
        "-n", &nc, "link", "add", "n0", "type", "veth", "peer", "name", "eth0", "netns", &mux,
    ]);
    ip(&[
        "-n", &prov, "link", "add", "p0", "type", "veth", "peer", "name", "eth1", "netns", &mux,
    ]);
    for (ns, dev) in [
        (&nc, "n0"),
        (&mux, "eth0"),
        (&mux, "eth1"),
        (&prov, "p0"),
        (&nc, "lo"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", &nc, "addr", "add", "10.0.0.10/24", "dev", "n0"]);
    ip(&["-n", &prov, "addr", "add", "192.168.233.21/24", "dev", "p0"]);

    // The controller, on the kernel's stack in its namespace.
    cleanup
        .children
        .push(support::controller::start(&nc, &data));
    let file = dir.join("mux.yaml");
    std::fs::write(&file, mux_resource("[]")).unwrap();
    let out = ctl(&nc, &data, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(ctl(&nc, &data, &["node-token", "MuxVM"]).stdout).unwrap();

    // The Mux, on Strata's stack over AF_PACKET in its namespace.
    let config = dir.join("mux.toml");
    std::fs::write(
        &config,
        format!(
            "netns = \"{mux}\"\nname = \"MuxVM\"\ncontroller = \"10.0.0.10:8081\"\n\
             token = \"{}\"\nprovider = \"eth1\"\nasn = 64501\n\
             [[interface]]\nname = \"eth0\"\naddress = \"10.0.0.20/24\"\n\
             [[interface]]\nname = \"eth1\"\naddress = \"192.168.233.20/24\"\n",
            token.trim()
        ),
    )
    .unwrap();
    cleanup.children.push(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["mux", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let wait = || {
        ctl(
            &nc,
            &data,
            &["wait", "loadBalancerMuxes", "MuxVM", "--timeout", "20"],
        )
    };
    let out = wait();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "loadBalancerMuxes/MuxVM Succeeded\n"
    );

    // A change reaches the running Mux: a BGP peer, applied, Succeeded again.
    std::fs::write(
        &file,
        mux_resource("[{routerName: BGPVM, routerIPAddress: 10.0.0.10, peerASN: 64500}]"),
    )
    .unwrap();
    assert!(
        ctl(&nc, &data, &["apply", "-f", file.to_str().unwrap()])
            .status
            .success()
    );
    let out = wait();
    assert!(out.status.success(), "{out:?}");
    // The speaker took the peer and tries it: its SYNs reach the controller's host.
    let mut connecting = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connecting && Instant::now() < deadline {
        let ss = run(
            "ip",
            &[
                "netns",
                "exec",
                &nc,
                "nstat",
                "-az",
                "TcpExtListenDrops",
                "TcpOutRsts",
            ],
        );
        connecting = ss
            .lines()
            .find(|l| l.starts_with("TcpOutRsts"))
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|n| n.parse::<u64>().unwrap_or(0) > 0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(connecting, "the Mux never tried its new BGP peer");

    // SIGTERM: the Mux stops cleanly.
    let mut mux_process = cleanup.children.pop().unwrap();
    run("kill", &["-TERM", &mux_process.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = mux_process.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the Mux did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut mux_process.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("configuration comes from the controller"),
        "{log}"
    );
}
