//! VLANs on the hosts' vSwitches: a VM NIC's `vlan` makes its port an access port of that
//! VLAN; the uplinks carry it tagged, so VMs of one VLAN on two hosts reach each other,
//! and nothing else reaches them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::{Clock, Lab, ScenarioResult};

const LAB: &str = r#"
[lab]
name = "vlans"

[[network]]
name = "lan"
prefix = "10.0.0.0/24"

[[node]]
name = "Host1"
kind = "host"
[[node.nic]]
network = "lan"
address = "10.0.0.1/24"
[node.vswitch]
name = "Switch1"
uplink = "lan"

[[node]]
name = "Host2"
kind = "host"
[[node.nic]]
network = "lan"
address = "10.0.0.2/24"
[node.vswitch]
name = "Switch2"
uplink = "lan"

[[node]]
name = "Red1"
[[node.nic]]
network = "lan"
address = "10.0.0.11/24"
vswitch = "Host1"
vlan = 10

[[node]]
name = "Blue1"
[[node.nic]]
network = "lan"
address = "10.0.0.12/24"
vswitch = "Host1"
vlan = 20

[[node]]
name = "Red2"
[[node.nic]]
network = "lan"
address = "10.0.0.21/24"
vswitch = "Host2"
vlan = 10

[[node]]
name = "Plain2"
[[node.nic]]
network = "lan"
address = "10.0.0.22/24"
vswitch = "Host2"

[[scenario]]
name = "red-to-red-across-hosts"
from = "Red1"
ping = "10.0.0.21"
count = 1
path = ["Red1", "Host1", "Host2", "Red2"]

[[scenario]]
name = "red-to-blue-on-one-host"
from = "Red1"
ping = "10.0.0.12"
count = 1
expect = "failure"

[[scenario]]
name = "red-to-untagged"
from = "Red1"
ping = "10.0.0.22"
count = 1
expect = "failure"

[[scenario]]
name = "untagged-to-host"
from = "Plain2"
ping = "10.0.0.1"
count = 1
"#;

#[test]
fn a_vlan_reaches_itself_across_hosts_and_nothing_else() {
    let topology = strata_lab::file::parse("vlans.toml", LAB).unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(strata_lab::BOOT_LIMIT);
    let results = lab.run_scenarios();
    for r in &results {
        assert!(
            r.passed,
            "{}: {:?}\n{}",
            r.name,
            r.failures,
            strata_lab::report::scenario(r)
        );
    }
    // Between the hosts, Red's frames carry tag 10.
    let across = &results[0].request;
    assert_eq!(
        ScenarioResult::nodes(across),
        ["Red1", "Host1", "Host2", "Red2"]
    );
    assert!(across[1].what.contains("vlan 10"), "{:?}", across[1]);
    assert!(
        !across[0].what.contains("vlan"),
        "the access port is untagged: {:?}",
        across[0]
    );
}

#[test]
fn a_vlan_belongs_to_a_vswitch_port() {
    let bad = LAB.replacen(
        "address = \"10.0.0.1/24\"\n",
        "address = \"10.0.0.1/24\"\nvlan = 5\n",
        1,
    );
    let e = strata_lab::file::parse("vlans.toml", &bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("a VLAN is a vSwitch port's: this NIC has no vswitch"),
        "{e}"
    );
    let bad = LAB.replacen("vlan = 20", "vlan = 4095", 1);
    let e = strata_lab::file::parse("vlans.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("VLAN 4095 is not 1 to 4094"), "{e}");
    assert_eq!(
        e.line,
        bad.lines().position(|l| l == "vlan = 4095").unwrap() + 1
    );
}

#[test]
fn lab_show_and_the_diagram_name_the_vlan() {
    let topology = strata_lab::file::parse("vlans.toml", LAB).unwrap();
    let show = strata_lab::report::topology(&topology);
    assert!(
        show.contains("Red1    Ethernet (port of Host1's Switch1, VLAN 10)"),
        "{show}"
    );
    let g = strata_lab::diagram::Graph::of_topology(&topology);
    let red2 = g.nodes.iter().find(|n| n.name == "Red2").unwrap();
    assert_eq!(red2.nics[0].label, "Ethernet 10.0.0.21/24 VLAN 10");
}
