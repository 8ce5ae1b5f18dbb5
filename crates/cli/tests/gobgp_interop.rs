//! `strata bgp` against GoBGP (gobgpd) on loopback addresses: the session comes up, our
//! VIP reaches GoBGP's RIB with our AS path and next hop, and a route added to GoBGP
//! reaches us.
//!
//! Skipped (with a message) when gobgpd is not installed, unless STRATA_REQUIRE_GOBGP is
//! set, as the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills what it holds and removes the directory when the test ends, passed or not.
struct Guard {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn strata_and_gobgp_exchange_routes() {
    if Command::new("gobgpd").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_GOBGP").is_none(),
            "gobgpd is required but not installed"
        );
        eprintln!("gobgpd not installed; skipping");
        return;
    }
    let x = (std::process::id() % 200) as u8 + 20;
    let (gobgp_ip, our_ip) = (format!("127.{x}.3.2"), format!("127.{x}.3.3"));
    let api = format!("{gobgp_ip}:{}", 50051);
    let dir = std::env::temp_dir().join(format!("strata-gobgp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Guard {
        children: Vec::new(),
        dir: dir.clone(),
    };
    std::fs::write(
        dir.join("gobgp.toml"),
        format!(
            "[global.config]\n  as = 64500\n  router-id = \"10.0.0.2\"\n  local-address-list = [\"{gobgp_ip}\"]\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{our_ip}\"\n    peer-as = 64501\n\
             [neighbors.transport.config]\n    local-address = \"{gobgp_ip}\"\n  [neighbors.timers.config]\n    hold-time = 9\n"
        ),
    )
    .unwrap();
    let status = dir.join("status.txt");
    let config = dir.join("strata.toml");
    // GoBGP refuses a 127/8 NEXT_HOP: announce one outside it (only an attribute here).
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{our_ip}\"\nlocal = \"{our_ip}\"\nstatus_file = \"{}\"\n\
             [[neighbor]]\naddress = \"{gobgp_ip}\"\nasn = 64500\nhold_time = 9\n\
             [[announce]]\nprefix = \"192.168.133.74/32\"\nnext_hop = \"192.0.2.20\"\n",
            status.display()
        ),
    )
    .unwrap();
    guard.children.push(
        Command::new("gobgpd")
            .arg("-f")
            .arg(dir.join("gobgp.toml"))
            .args(["-t", "toml", "--api-hosts", &api, "-l", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    guard.children.push(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["bgp", "run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let gobgp = |args: &[&str]| {
        let out = Command::new("gobgp")
            .args(["-u", &gobgp_ip, "-p", "50051"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("GoBGP to learn our VIP", Duration::from_secs(20), || {
        let rib = gobgp(&["global", "rib", "-a", "ipv4"]);
        rib.lines().any(|l| {
            l.contains("192.168.133.74/32") && l.contains("192.0.2.20") && l.contains("64501")
        })
    });
    let added = Command::new("gobgp")
        .args([
            "-u",
            &gobgp_ip,
            "-p",
            "50051",
            "global",
            "rib",
            "add",
            "198.51.100.0/24",
            "nexthop",
            "192.0.2.1",
            "-a",
            "ipv4",
        ])
        .status()
        .unwrap();
    assert!(added.success());
    wait_for(
        "our speaker to learn GoBGP's route",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&status)
                .is_ok_and(|s| s.contains("received 198.51.100.0/24 via 192.0.2.1 AS path 64500"))
        },
    );
    let neighbors = gobgp(&["neighbor"]);
    assert!(
        neighbors.contains(&our_ip) && neighbors.contains("Establ"),
        "{neighbors}"
    );
}
