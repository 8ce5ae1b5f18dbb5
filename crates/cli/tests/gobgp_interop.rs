//! `strata bgp` against GoBGP (gobgpd) on loopback addresses: the session comes up, our
//! VIP reaches GoBGP's RIB with our AS path and next hop, and a route added to GoBGP
//! reaches us.
//!
//! Skipped (with a message) when gobgpd is not installed, unless STRATA_REQUIRE_GOBGP is
//! set, as the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Guard, loopback_pair, speaker, speaker_config, status_says, wait_for};

#[test]
fn strata_and_gobgp_exchange_routes() {
    if !common::gobgp_present() {
        return;
    }
    let (gobgp_ip, our_ip) = loopback_pair(3);
    let mut guard = Guard::new("gobgp");
    let dir = guard.dir.clone();
    std::fs::write(
        dir.join("gobgp.toml"),
        format!(
            "[global.config]\n  as = 64500\n  router-id = \"10.0.0.2\"\n  local-address-list = [\"{gobgp_ip}\"]\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{our_ip}\"\n    peer-as = 64501\n\
             [neighbors.transport.config]\n    local-address = \"{gobgp_ip}\"\n  [neighbors.timers.config]\n    hold-time = 9\n"
        ),
    )
    .unwrap();
    let (config, status) = speaker_config(&dir, &our_ip, &gobgp_ip, "");
    guard
        .children
        .push(common::start_gobgpd(&dir.join("gobgp.toml"), &gobgp_ip));
    guard.children.push(speaker(&config));
    let gobgp = |args: &[&str]| common::gobgp(&gobgp_ip, args);
    wait_for("GoBGP to learn our VIP", Duration::from_secs(20), || {
        gobgp(&["global", "rib", "-a", "ipv4"]).lines().any(|l| {
            l.contains("192.168.133.74/32") && l.contains("192.0.2.20") && l.contains("64501")
        })
    });
    gobgp(&[
        "global",
        "rib",
        "add",
        "198.51.100.0/24",
        "nexthop",
        "192.0.2.1",
        "-a",
        "ipv4",
    ]);
    wait_for(
        "our speaker to learn GoBGP's route",
        Duration::from_secs(20),
        || {
            status_says(
                &status,
                "received 198.51.100.0/24 via 192.0.2.1 AS path 64500",
            )
        },
    );
    let neighbors = gobgp(&["neighbor"]);
    assert!(
        neighbors.contains(&our_ip) && neighbors.contains("Establ"),
        "{neighbors}"
    );
}
