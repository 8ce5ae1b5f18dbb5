//! `strata bgp` against FRR's bgpd (run alone, without zebra) on loopback addresses: the
//! session comes up, our VIP reaches FRR with our AS path and next hop, FRR's network
//! reaches us, and the path FRR reflects back through our own AS is refused as a loop.
//!
//! Skipped (with a message) when FRR is not installed, unless STRATA_REQUIRE_FRR is set, as
//! the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BGPD: &str = "/usr/lib/frr/bgpd";

/// Kills what it holds and removes the directory when the test ends, passed or not.
struct Guard {
    children: Vec<Child>,
    pid_file: PathBuf,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
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

fn vtysh(dir: &Path, command: &str) -> String {
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(dir)
        .args(["-c", command])
        .output()
        .unwrap();
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
    let x = (std::process::id() % 200) as u8 + 20;
    let (frr_ip, our_ip) = (format!("127.{x}.4.2"), format!("127.{x}.4.3"));
    let dir = std::env::temp_dir().join(format!("strata-frr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("bgpd.pid");
    let mut guard = Guard {
        children: Vec::new(),
        pid_file: pid_file.clone(),
        dir: dir.clone(),
    };
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
    let status = dir.join("status.txt");
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{our_ip}\"\nlocal = \"{our_ip}\"\nstatus_file = \"{}\"\n\
             [[neighbor]]\naddress = \"{frr_ip}\"\nasn = 64500\nhold_time = 9\n\
             [[announce]]\nprefix = \"192.168.133.74/32\"\nnext_hop = \"192.0.2.20\"\n",
            status.display()
        ),
    )
    .unwrap();
    guard.children.push(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["bgp", "run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("FRR to learn our VIP", Duration::from_secs(30), || {
        let route = vtysh(&dir, "show bgp ipv4 unicast 192.168.133.74/32");
        route.contains("64501") && route.contains("192.0.2.20 from")
    });
    wait_for(
        "our speaker to learn FRR's network",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&status).is_ok_and(|s| {
                s.contains("received 198.51.100.0/24") && s.contains("AS path 64500\n")
            })
        },
    );
    // FRR sends our own VIP back with AS path 64500 64501: a loop, not kept.
    let s = std::fs::read_to_string(&status).unwrap();
    assert!(!s.contains("received 192.168.133.74/32"), "{s}");
    assert!(vtysh(&dir, "show bgp summary").contains(&our_ip));
}
