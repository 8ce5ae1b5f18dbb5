//! Shutdown communications (RFC 8203) both ways with BIRD 2, and a neighbor removed by a
//! reload: BIRD's words reach `strata bgp show`, ours reach BIRD.
//!
//! Skipped (with a message) when BIRD is not installed, unless STRATA_REQUIRE_BIRD is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{bird_present, birdc, start_bird, wait_for};

fn show(config: &std::path::Path) -> String {
    common::bgp_show(config, &[])
}

#[test]
fn shutdown_communications_cross_both_ways_and_a_removed_neighbor_is_told() {
    if !bird_present() {
        return;
    }
    let (bird_ip, our_ip) = common::loopback_pair(21);
    let dir = std::env::temp_dir().join(format!("strata-bird-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\n\
             protocol bgp strata {{\n  local {bird_ip} as 64500;\n  neighbor {our_ip} as 64501;\n  \
             multihop;\n  strict bind on;\n  hold time 9;\n  connect retry time 1;\n  \
             error wait time 1, 2;\n  ipv4 {{ import all; export none; }};\n}}\n"
        ),
    )
    .unwrap();
    let (config, _status) = common::speaker_config(&dir, &our_ip, &bird_ip, "");
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&config));
    let established = |ctl: &std::path::Path| {
        birdc(ctl, &["show", "protocols", "strata"]).contains("Established")
    };
    wait_for("the session", Duration::from_secs(20), || established(&ctl));

    // BIRD shuts the session down with a message: it is our neighbor's last error.
    birdc(&ctl, &["disable", "strata", "\"maintenance window\""]);
    wait_for(
        "BIRD's shutdown communication",
        Duration::from_secs(10),
        || {
            show(&config).contains(
            "last error: received Cease / Administrative Shutdown (6/2): \"maintenance window\"",
        )
        },
    );
    // BIRD comes back; the error stays on show until another replaces it.
    birdc(&ctl, &["enable", "strata"]);
    wait_for("the session again", Duration::from_secs(20), || {
        established(&ctl)
    });
    assert!(show(&config).contains("maintenance window"));

    // The neighbor leaves our file; SIGHUP tells BIRD why.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("address = \"{bird_ip}\""),
            "address = \"127.0.0.99\"",
        ),
    )
    .unwrap();
    common::hangup(guard.children.last().unwrap());
    wait_for("BIRD to hear our reason", Duration::from_secs(10), || {
        let all = birdc(&ctl, &["show", "protocols", "all", "strata"]);
        all.contains("Received: Administrative shutdown")
    });
    let all = birdc(&ctl, &["show", "protocols", "all", "strata"]);
    println!("{all}");
    assert!(
        all.contains("neighbor removed from the configuration"),
        "{all}"
    );
    assert!(!show(&config).contains(&format!("neighbor {bird_ip}")));
}
