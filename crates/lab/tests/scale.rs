//! The datacenter lab (labs/datacenter.toml, stamped from templates) at a tenth of its
//! size: 10 hosts of 20 VMs, 8 Muxes, 10 tenants, in virtual time. Every scenario passes,
//! and every tenant's VIP is announced by every Mux. (The full size, and 200x the POC, are
//! measured by scripts/bench-lab-scale.sh.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::{Clock, Lab};

const DATACENTER: &str = include_str!("../../../labs/datacenter.toml");

/// The datacenter lab with `hosts` hosts and as many tenants (as the bench script cuts it).
fn scaled(hosts: usize) -> String {
    let last_vip = format!("192.168.128.{}", hosts + 1);
    let text = DATACENTER
        .replace("\ncopies = 100\n", &format!("\ncopies = {hosts}\n"))
        .replace("\ncopies = 2000\n", &format!("\ncopies = {}\n", hosts * 20))
        .replace("% 100 + 1}", &format!("% {hosts} + 1}}"))
        .replace("192.168.128.101", &last_vip)
        .replace("for tenant 100", &format!("for tenant {hosts}"))
        .replace("VM2000", &format!("VM{}", hosts * 20))
        .replace("\"Host100\"", &format!("\"Host{hosts}\""));
    assert_ne!(text, DATACENTER);
    text
}

#[test]
fn the_datacenter_lab_at_a_tenth_passes_its_scenarios() {
    let topology = strata_lab::file::parse("datacenter-10.toml", &scaled(10)).unwrap();
    assert_eq!(topology.nodes.len(), 10 * 21 + 8 + 5);
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    let results = lab.run_scenarios();
    for r in &results {
        assert!(r.passed, "{}", strata_lab::report::scenario(r));
    }
    assert_eq!(results.len(), 4);
    let status = lab.node("BGPVM").unwrap().bgp_status().unwrap();
    assert_eq!(status.len(), 8, "a session with every Mux");
    for n in &status {
        assert_eq!(n.received.len(), 10, "each tenant's /32 from {}", n.address);
    }
    // The agents boot together without overflowing a port (their first connections are
    // splayed): each connected once, no frame was lost anywhere.
    for node in lab.nodes().iter().filter(|n| n.agent().is_some()) {
        assert_eq!(node.agent().unwrap().sessions, 1, "{}", node.name());
    }
    for segment in lab.segments() {
        for port in 0..segment.ports() {
            let c = segment.counters(strata_fabric::PortId(port)).unwrap();
            assert_eq!(c.queue_drops, 0, "{} port {port}", segment.name());
        }
    }
    // A host's ARP requests for its VMs went to them alone, and its VMs heard no host's
    // request for anyone else: a VM's link carried a few broadcasts at most (its own, and
    // those of the nodes whose addresses no VM has, before its host knew its address).
    for h in 1..=10 {
        let host = lab.node(&format!("Host{h}")).unwrap().vswitch().unwrap();
        assert!(
            host.counters().arp_steered >= 20,
            "Host{h}: {:?}",
            host.counters()
        );
    }
    let vm_links = lab.segments().iter().filter(|s| s.name().contains(".VM"));
    let broadcasts: usize = vm_links
        .map(|s| {
            s.captured()
                .iter()
                .filter(|c| c.bytes[0] == 0xff && c.bytes[12..14] == [0x08, 0x06])
                .count()
        })
        .sum();
    assert!(
        broadcasts <= 200 * 3,
        "{broadcasts} ARP broadcasts on 200 VMs' links"
    );
}
