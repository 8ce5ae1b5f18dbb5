//! `strata lab up --netns`: the POC lab as Linux network namespaces, VMs on the kernel's
//! stack, every Strata role a process configured by `strata controller`. The kernel's
//! curl in ClientVM reaches the portal's VIP and its flows spread over both DIPs; the
//! port forward and masquerade of NATVM work; `strata lab down` leaves nothing behind.
//! (Killing a Mux process is not checked yet: in about one run in four the portal stayed
//! unreachable for over ten seconds after, which is still to be understood.) Needs root (CI
//! runs as root); skipped without it unless `STRATA_REQUIRE_NETNS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Takes the lab down however the test ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = strata(&["lab", "down"]);
    }
}

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn curl(ns: &str, url: &str) -> Option<String> {
    // Five seconds: room for a SYN retransmitted once (a flow that hashed to a Mux that
    // has just died, until BFD takes it out).
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-m", "5", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strata_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("strata-") && !n.starts_with("strata-test-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_poc_lab_runs_as_namespaces_and_comes_down_clean() {
    if !strata_testkit::netns::allowed() {
        return;
    }
    let guard = Down;
    let out = strata(&["lab", "up", "--netns"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lab azure-stack-poc is up"), "{text}");
    let namespaces = strata_namespaces();
    for node in [
        "ClientVM",
        "NATVM",
        "BGPVM",
        "MuxVM",
        "MuxVM2",
        "HyperVHost",
        "PortalVM",
        "NCVM",
    ] {
        assert!(
            namespaces.contains(&format!("strata-{node}")),
            "{namespaces:?}"
        );
    }

    // The seed's flow: the kernel's curl in ClientVM, by name, through NATVM, BGPVM (the
    // VIP's /32 learned from the Muxes over BGP), a Mux, VXLAN, the host's VFP, to a
    // portal VM's web server; spread over both DIPs.
    let portal = "http://portal.azurestack.local/";
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl("strata-ClientVM", portal).is_none() {
        assert!(Instant::now() < deadline, "the portal never answered");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut served = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let page = curl("strata-ClientVM", portal).expect("the portal answers");
        assert!(page.contains("Azure Stack portal"), "{page}");
        let by = page
            .split("served by ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string();
        *served.entry(by).or_insert(0) += 1;
    }
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["PortalVM", "PortalVM2"],
        "{served:?}"
    );
    // NATVM: its masquerade out, its port forward in.
    let world = curl("strata-ClientVM", "http://203.0.113.100/").unwrap();
    assert!(world.contains("external network"), "{world}");
    let forwarded = curl("strata-Internet", "http://203.0.113.1:8080/").unwrap();
    assert!(
        forwarded.contains("served by PortalVM 192.168.100.74"),
        "{forwarded}"
    );

    // Down: no namespace, no process, no state left.
    drop(guard);
    assert!(strata_namespaces().is_empty(), "{:?}", strata_namespaces());
    let left = Command::new("pgrep")
        .args(["-f", "strata lab node|http.server"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(!std::path::Path::new("/run/strata/azure-stack-poc").exists());
    let out = strata(&["lab", "down"]);
    assert!(
        !out.status.success(),
        "a second down says the lab is not up"
    );
}
