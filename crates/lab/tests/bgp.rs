//! The lab's BGP: two speakers that both connect meet (RFC 4271 section 6.8 settles the
//! collision), and a session refused for its peer AS says why in `lab bgp`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::{Clock, Lab, report};

fn poc_text() -> String {
    strata_lab::AZURE_STACK_POC.to_string()
}

#[test]
fn two_active_speakers_that_both_connect_establish() {
    // BGPVM connects too, instead of waiting: each side both connects and listens.
    let text = poc_text().replace("passive = true", "passive = false");
    let topology = strata_lab::file::parse("active.toml", &text).unwrap();
    let bgpvm = topology.node("BGPVM").unwrap();
    assert!(
        topology.nodes[bgpvm]
            .bgp
            .as_ref()
            .unwrap()
            .neighbors
            .iter()
            .all(|n| !n.passive)
    );
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    let (up, all) = lab.boot(strata_lab::BOOT_LIMIT);
    assert_eq!((up, all), (4, 4), "every session comes up");
    let status = lab.node("BGPVM").unwrap().bgp_status().unwrap();
    // The portal's VIP and the two tenants'.
    assert!(status.iter().all(|n| n.received.len() == 3), "{status:?}");
    // And traffic follows the routes.
    let portal = lab
        .topology()
        .scenarios
        .iter()
        .position(|s| s.name == "portal")
        .unwrap();
    assert!(lab.run_scenario(portal).passed);
}

#[test]
fn a_session_refused_for_its_peer_as_says_why() {
    // The file's checks refuse a wrong AS for a neighbor of the lab; a topology built
    // another way (or a peer that changed its AS) meets the speaker's own check.
    let mut topology = strata_lab::file::parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .unwrap();
    let bgpvm = topology.node("BGPVM").unwrap();
    let neighbors = &mut topology.nodes[bgpvm].bgp.as_mut().unwrap().neighbors;
    neighbors[1].asn = 64599;
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    let (up, all) = lab.boot(std::time::Duration::from_secs(5));
    assert_eq!((up, all), (2, 4), "MuxVM2's session is refused both ways");
    let table = report::bgp(&lab);
    let row = table
        .lines()
        .find(|l| l.starts_with("BGPVM ") && l.contains("192.168.100.21"))
        .unwrap();
    assert!(row.contains("Bad Peer AS"), "{table}");
    let json = strata_lab::dashboard::bgp(&lab);
    let muxvm2 = json.iter().find(|n| n["node"] == "MuxVM2").unwrap();
    assert!(
        muxvm2["last_error"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS"),
        "MuxVM2 hears why: {muxvm2}"
    );
}

#[test]
fn a_connection_that_reaches_another_neighbors_listening_socket_is_handed_over() {
    // MuxVM only waits, like BGPVM: that session never starts, and BGPVM's listening
    // socket for MuxVM (its first neighbor) takes the SYNs MuxVM2 sends to port 179.
    let old = "[node.bgp]\nasn = 64501\n[[node.bgp.neighbor]]\naddress = \"192.168.100.1\"\nasn = 64500\n";
    let text = poc_text().replacen(old, &format!("{old}passive = true\n"), 1);
    assert_ne!(text, poc_text());
    let topology = strata_lab::file::parse("one-side.toml", &text).unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    lab.boot(std::time::Duration::from_secs(5));
    let bgpvm = lab.node("BGPVM").unwrap().bgp_status().unwrap();
    let state = |address: &str| {
        bgpvm
            .iter()
            .find(|n| n.address.to_string() == address)
            .unwrap()
            .state
    };
    assert_eq!(
        state("192.168.100.21"),
        strata_node::bgp::State::Established
    );
    assert_ne!(
        state("192.168.100.20"),
        strata_node::bgp::State::Established
    );
}
