//! A packet that goes round between two routers fails its scenario, whatever the
//! scenario expected; a reject route ends the loop with an ICMP error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::{Clock, Lab};

/// r1 sends 10.9.0.0/16 to r2, whose default route points back at r1.
fn looping(r2_extra: &str) -> String {
    format!(
        r#"
[lab]
name = "loop"

[[network]]
name = "lan1"
prefix = "10.0.1.0/24"

[[network]]
name = "lan2"
prefix = "10.0.2.0/24"

[[node]]
name = "client"
[[node.nic]]
network = "lan1"
address = "10.0.1.10/24"
[[node.route]]
prefix = "0.0.0.0/0"
via = "10.0.1.1"

[[node]]
name = "r1"
kind = "router"
[[node.nic]]
network = "lan1"
address = "10.0.1.1/24"
[[node.nic]]
network = "lan2"
address = "10.0.2.1/24"
[[node.route]]
prefix = "10.9.0.0/16"
via = "10.0.2.2"

[[node]]
name = "r2"
kind = "router"
[[node.nic]]
network = "lan2"
address = "10.0.2.2/24"
[[node.route]]
prefix = "0.0.0.0/0"
via = "10.0.2.1"
{r2_extra}
[[scenario]]
name = "nowhere"
from = "client"
ping = "10.9.0.1"
count = 1
expect = "failure"
"#
    )
}

fn run(text: &str) -> strata_lab::ScenarioResult {
    let topology = strata_lab::file::parse("loop.toml", text).unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(strata_lab::BOOT_LIMIT);
    lab.run_scenario(0)
}

#[test]
fn a_loop_fails_the_scenario_even_when_failure_was_expected() {
    let r = run(&looping(""));
    assert!(!r.passed, "{r:?}");
    let failure = r
        .failures
        .iter()
        .find(|f| f.starts_with("a packet looped"))
        .unwrap();
    assert!(
        failure.contains("ICMP echo request 10.0.1.10 > 10.9.0.1")
            && failure.contains("r1 on lan2")
            && failure.contains("r2 on lan2"),
        "{failure}"
    );
    // The ping's own retransmission is not a loop: only the one packet is named.
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
}

#[test]
fn a_reject_route_ends_it_with_host_unreachable() {
    let r = run(&looping(
        "[[node.route]]\nprefix = \"10.9.0.0/16\"\ntype = \"reject\"\n",
    ));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(
        strata_lab::ScenarioResult::nodes(&r.reply),
        ["r2", "r1", "client"]
    );
    assert!(
        r.reply[0].what.contains("ICMP unreachable code 1"),
        "{:?}",
        r.reply
    );
    let r = run(&looping(
        "[[node.route]]\nprefix = \"10.9.0.0/16\"\ntype = \"blackhole\"\n",
    ));
    assert!(r.passed, "{:?}", r.failures);
    assert!(
        r.reply.is_empty(),
        "a blackhole answers nothing: {:?}",
        r.reply
    );
}
