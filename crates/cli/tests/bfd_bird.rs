//! BFD with BIRD 2 across a veth pair between two network namespaces this test creates
//! (single hop, as RFC 5881 means it): BIRD's BFD and ours come up, BIRD's BGP session
//! with us uses it, and when BIRD stops dead (SIGSTOP) we drop the session in well under
//! a second, not after the 90 s hold time; when we stop dead, BIRD drops us.
//!
//! Needs root (namespaces) and BIRD; skipped with a message otherwise, unless
//! STRATA_REQUIRE_BIRD is set. `STRATA_BFD_ROUNDS=10` repeats the stop and prints each
//! detection time (the figure in the notes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{Netns, log_lines, parse_time, seconds_of_day};
use common::{bird_present, wait_for};

fn show(config: &Path) -> String {
    common::bgp_show(config, &[])
}

#[test]
fn bfd_with_bird_comes_up_and_a_stopped_bird_is_dropped_at_once() {
    if !bird_present() {
        return;
    }
    let Some(mut net) = Netns::new("bfd") else {
        assert!(
            std::env::var_os("STRATA_REQUIRE_BIRD").is_none(),
            "network namespaces are needed (root)"
        );
        eprintln!("cannot create network namespaces (not root?); skipping");
        return;
    };
    let dir = net.dir.clone();
    std::fs::write(
        dir.join("bird.conf"),
        "router id 10.99.0.1;\nprotocol device {}\n\
         protocol static { ipv4; route 198.51.100.0/24 blackhole; }\n\
         protocol bfd { interface \"*\" { interval 100 ms; multiplier 3; }; }\n\
         protocol bgp strata {\n  local 10.99.0.1 as 64500;\n  neighbor 10.99.0.2 as 64501;\n  \
         bfd on;\n  hold time 90;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
         ipv4 { import all; export all; };\n}\n",
    )
    .unwrap();
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"10.99.0.2\"\nlocal = \"10.99.0.2\"\ncontrol_socket = \"{}\"\n\
             [[neighbor]]\naddress = \"10.99.0.1\"\nasn = 64500\nhold_time = 90\n\
             bfd = true\nbfd_interval = 100\nbfd_multiplier = 3\n",
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    let ctl = dir.join("bird.ctl");
    let pid_file = dir.join("bird.pid");
    let started = net
        .exec(&net.a, "bird")
        .arg("-c")
        .arg(dir.join("bird.conf"))
        .arg("-s")
        .arg(&ctl)
        .arg("-P")
        .arg(&pid_file)
        .status()
        .unwrap();
    assert!(started.success());
    net.pid_files.push(pid_file.clone());
    let log = std::fs::File::create(dir.join("strata.log")).unwrap();
    let speaker = net
        .exec(&net.b, env!("CARGO_BIN_EXE_strata"))
        .args(["bgp", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    net.children.push(speaker);
    // BIRD writes its pid file after it forks.
    wait_for("BIRD's pid file", Duration::from_secs(5), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    });
    let bird_pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let birdc = |args: &[&str]| {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&ctl)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rounds: usize = std::env::var("STRATA_BFD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut detections = Vec::new();
    for _ in 0..rounds {
        wait_for(
            "BFD and BGP up on both sides",
            Duration::from_secs(30),
            || {
                let ours = show(&config);
                ours.contains("Established BFD Up")
                    && ours.contains("best 198.51.100.0/24")
                    && birdc(&["show", "bfd", "sessions"]).contains("Up")
            },
        );
        // BIRD stops dead: no more BFD packets, and its TCP connection stays open.
        let downs = log_lines(&dir, "BFD session down:").len();
        let stopped = seconds_of_day(std::time::SystemTime::now());
        let kill = Command::new("kill").args(["-STOP", &bird_pid]).status();
        assert!(kill.unwrap().success());
        wait_for("the session to drop by BFD", Duration::from_secs(5), || {
            !show(&config).contains("Established")
        });
        // When, by our own log's timestamp (the polling above is coarser).
        let line = log_lines(&dir, "BFD session down:").pop().unwrap();
        assert_eq!(
            log_lines(&dir, "BFD session down:").len(),
            downs + 1,
            "{}",
            std::fs::read_to_string(dir.join("strata.log")).unwrap_or_default()
        );
        let logged = line
            .get(11..26)
            .and_then(parse_time)
            .unwrap_or_else(|| panic!("no time in {line:?}"));
        detections.push(Duration::from_secs_f64(logged - stopped));
        let ours = show(&config);
        assert!(ours.contains("last down: BFD session down"), "{ours}");
        assert!(ours.contains("BFD packets dropped: 0"), "{ours}");
        assert!(
            !ours.contains("best 198.51.100.0/24"),
            "the route went: {ours}"
        );
        assert!(
            Command::new("kill")
                .args(["-CONT", &bird_pid])
                .status()
                .unwrap()
                .success()
        );
    }
    // The other way: our speaker freezes, BIRD's BFD declares it down and BIRD's BGP
    // session follows (its hold time is 90 s).
    wait_for("both up again", Duration::from_secs(30), || {
        show(&config).contains("Established BFD Up")
            && birdc(&["show", "protocols", "strata"]).contains("Established")
    });
    let ours = net.children[0].id().to_string();
    let kill = Command::new("kill").args(["-STOP", &ours]).status();
    assert!(kill.unwrap().success());
    wait_for("BIRD to drop us by BFD", Duration::from_secs(5), || {
        !birdc(&["show", "protocols", "strata"]).contains("Established")
            && birdc(&["show", "bfd", "sessions"]).contains("Down")
    });
    let all = birdc(&["show", "protocols", "all", "strata"]);
    assert!(all.contains("BFD session down"), "{all}");
    let _ = Command::new("kill").args(["-CONT", &ours]).status();
    detections.sort();
    println!("detection times (100 ms x 3): {detections:?}");
    println!("median: {:?}", detections[detections.len() / 2]);
    // Three intervals, less the jitter, plus polling this test's `strata bgp show`.
    assert!(
        detections[detections.len() / 2] < Duration::from_secs(1),
        "{detections:?}"
    );
}
