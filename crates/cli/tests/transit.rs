//! `strata bgp` between two real routers, passing each one's routes on to the other:
//! BIRD 2 (AS 64500) ── strata (AS 64501) ── GoBGP (AS 64502), on loopback addresses.
//! BIRD's IPv4 and IPv6 routes reach GoBGP with our AS prepended and our next hop (one
//! outside 127/8 for GoBGP, which refuses loopback next hops); a
//! route BIRD withdraws leaves GoBGP; GoBGP's route reaches BIRD.
//!
//! Skipped (with a message) when BIRD or GoBGP is not installed, unless
//! STRATA_REQUIRE_BIRD / STRATA_REQUIRE_GOBGP is set, as the README's test command sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Guard, bird_present, birdc, speaker, start_bird, status_says, wait_for};

#[test]
fn routes_pass_through_strata_between_bird_and_gobgp() {
    if !bird_present() {
        return;
    }
    if !common::gobgp_present() {
        return;
    }
    let x = (std::process::id() % 200) as u8 + 20;
    let bird_ip = format!("127.{x}.6.2");
    let our_ip = format!("127.{x}.6.3");
    let gobgp_ip = format!("127.{x}.6.4");
    let dir = std::env::temp_dir().join(format!("strata-transit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\n\
             protocol static s4 {{ ipv4; route 198.51.100.0/24 blackhole; }}\n\
             protocol static s6 {{ ipv6; route 2001:db8:100::/48 blackhole; }}\n\
             protocol bgp strata {{\n  local {bird_ip} as 64500;\n  neighbor {our_ip} as 64501;\n  multihop;\n  strict bind on;\n  hold time 9;\n  \
             ipv4 {{ import all; export all; next hop address 192.0.2.1; }};\n  \
             ipv6 {{ import all; export all; next hop address 2001:db8::1; }};\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("gobgp.toml"),
        format!(
            "[global.config]\n  as = 64502\n  router-id = \"10.0.0.4\"\n  local-address-list = [\"{gobgp_ip}\"]\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{our_ip}\"\n    peer-as = 64501\n\
             [neighbors.transport.config]\n    local-address = \"{gobgp_ip}\"\n  [neighbors.timers.config]\n    hold-time = 9\n\
             [[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"ipv4-unicast\"\n\
             [[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"ipv6-unicast\"\n"
        ),
    )
    .unwrap();
    let status = dir.join("status.txt");
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{our_ip}\"\nlocal = \"{our_ip}\"\nnext_hop6 = \"2001:db8::3\"\n\
             status_file = \"{}\"\n\
             [[neighbor]]\naddress = \"{bird_ip}\"\nasn = 64500\nhold_time = 9\nipv6 = true\n\
             [[neighbor]]\naddress = \"{gobgp_ip}\"\nasn = 64502\nhold_time = 9\nipv6 = true\n\
             next_hop = \"192.0.2.3\"\n",
            status.display()
        ),
    )
    .unwrap();
    let (mut guard, ctl): (Guard, _) = start_bird(dir.clone());
    guard
        .children
        .push(common::start_gobgpd(&dir.join("gobgp.toml"), &gobgp_ip));
    guard.children.push(speaker(&config));
    let gobgp = |args: &[&str]| common::gobgp(&gobgp_ip, args);

    // BIRD's routes reach GoBGP through us: our AS first, our next hop.
    wait_for(
        "GoBGP to learn BIRD's IPv4 route through strata",
        Duration::from_secs(30),
        || {
            gobgp(&["global", "rib", "-a", "ipv4"]).lines().any(|l| {
                l.contains("198.51.100.0/24")
                    && l.contains("192.0.2.3")
                    && l.contains("64501 64500")
            })
        },
    );
    wait_for(
        "GoBGP to learn BIRD's IPv6 route through strata",
        Duration::from_secs(15),
        || {
            gobgp(&["global", "rib", "-a", "ipv6"]).lines().any(|l| {
                l.contains("2001:db8:100::/48")
                    && l.contains("2001:db8::3")
                    && l.contains("64501 64500")
            })
        },
    );
    // (The status file is rewritten at most five times a second.)
    wait_for(
        "the status to show BIRD's IPv6 route",
        Duration::from_secs(5),
        || {
            status_says(
                &status,
                "received 2001:db8:100::/48 via 2001:db8::1 AS path 64500",
            )
        },
    );

    // GoBGP's route reaches BIRD the same way.
    gobgp(&[
        "global",
        "rib",
        "add",
        "203.0.113.0/24",
        "nexthop",
        "192.0.2.4",
        "-a",
        "ipv4",
    ]);
    wait_for(
        "BIRD to learn GoBGP's route through strata",
        Duration::from_secs(15),
        || {
            let route = birdc(&ctl, &["show", "route", "for", "203.0.113.0/24", "all"]);
            route.contains("BGP.as_path: 64501 64502")
                && route.contains(&format!("BGP.next_hop: {our_ip}"))
        },
    );

    // BIRD withdraws its IPv4 route: it leaves GoBGP too.
    birdc(&ctl, &["disable", "s4"]);
    wait_for(
        "GoBGP to drop the route BIRD withdrew",
        Duration::from_secs(15),
        || !gobgp(&["global", "rib", "-a", "ipv4"]).contains("198.51.100.0/24"),
    );
    assert!(gobgp(&["global", "rib", "-a", "ipv6"]).contains("2001:db8:100::/48"));
}
