//! `strata lab trace`: one flow's hops with what each node did, pinned by snapshots (the
//! lab runs in virtual time, so the same file gives the same trace; a change in
//! behaviour shows as a diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::topology::{FlowProto, Scenario};
use strata_lab::{Clock, Lab, ScenarioResult, report};

fn poc() -> Lab {
    let topology = strata_lab::file::parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .expect("the POC lab parses");
    let mut lab = Lab::new(topology, Clock::Virtual).expect("the lab starts");
    lab.boot(strata_lab::BOOT_LIMIT);
    lab
}

fn trace(lab: &mut Lab, from: &str, to: &str, proto: Option<FlowProto>) -> ScenarioResult {
    let flow = Scenario::flow(lab.topology(), from, to, proto).expect("a flow");
    lab.trace(flow)
}

fn did<'a>(r: &'a ScenarioResult, node: &str) -> Vec<&'a str> {
    r.request
        .iter()
        .chain(&r.reply)
        .filter(|h| h.from == node)
        .flat_map(|h| h.did.iter().map(String::as_str))
        .collect()
}

#[test]
fn the_portal_flow_shows_every_decision() {
    let mut lab = poc();
    let r = trace(
        &mut lab,
        "ClientVM",
        "http://portal.azurestack.local/",
        None,
    );
    assert!(r.passed, "{:?}", r.failures);
    insta::assert_snapshot!("portal", report::trace(&r));

    let nodes = ScenarioResult::nodes(&r.request);
    let mux = nodes[3].as_str();
    assert!(mux.starts_with("MuxVM"), "{nodes:?}");
    assert_eq!(
        ScenarioResult::nodes(&r.reply),
        ["PortalVM", "HyperVHost", "BGPVM", "ClientVM"],
        "the reply goes straight back (DSR)"
    );
    let bgpvm = did(&r, "BGPVM").join("\n");
    assert!(
        bgpvm.contains("routes 192.168.133.74 by 192.168.133.74/32 (BGP) via 192.168.100.2"),
        "{bgpvm}"
    );
    assert!(
        bgpvm.contains("picked by the flow's hash from 2 equal-cost next hops"),
        "{bgpvm}"
    );
    let m = did(&r, mux).join("\n");
    assert!(
        m.contains("load-balances VIP 192.168.133.74:80 by rule portal/https-portal (Maglev over 2 DIPs, distribution Default) to DIP 192.168.100.7"),
        "{m}"
    );
    assert!(
        m.contains("encapsulates it in VXLAN VNI 4096: 192.168.233.2"),
        "{m}"
    );
    assert!(m.contains("→ 192.168.233.21 (HyperVHost's PA)"), "{m}");
    let host = did(&r, "HyperVHost").join("\n");
    for want in [
        "takes VXLAN VNI 4096 from 192.168.233.2",
        "layer SLB_NAT group vip-to-dip rule https-portal",
        "VFP rewrites the destination 192.168.133.74:80 → 192.168.100.7",
        "VFP rewrites the source 192.168.100.7",
        "switches it out of its uplink",
    ] {
        assert!(host.contains(want), "{want:?} in {host}");
    }
    // Each hop names the interfaces it left and entered.
    assert_eq!(r.request[0].from_iface, "Ethernet 192.168.200.10");
    assert_eq!(r.request[3].to_iface, "PAhostVNIC 192.168.233.21");
    assert_eq!(r.reply[1].from_iface, "uplink of vSwitch CCI_External");
}

#[test]
fn a_port_forward_shows_the_nat() {
    let mut lab = poc();
    let r = trace(&mut lab, "Internet", "203.0.113.1:8080", None);
    assert!(r.passed, "{:?}", r.failures);
    insta::assert_snapshot!("port_forward", report::trace(&r));
    let nat = did(&r, "NATVM").join("\n");
    assert!(
        nat.contains("NAT rewrites the destination 203.0.113.1:8080 → 192.168.100.74:80"),
        "{nat}"
    );
    assert!(
        nat.contains("NAT rewrites the source 192.168.100.74:80 → 203.0.113.1:8080"),
        "{nat}"
    );
}

#[test]
fn a_datagram_to_a_closed_port_comes_back_as_port_unreachable() {
    let mut lab = poc();
    let r = trace(
        &mut lab,
        "ClientVM",
        "192.168.100.74:9",
        Some(FlowProto::Udp),
    );
    assert!(!r.passed, "nothing answers on port 9");
    insta::assert_snapshot!("udp_unreachable", report::trace(&r));
    assert_eq!(
        ScenarioResult::nodes(&r.request).last().map(String::as_str),
        Some("PortalVM")
    );
    assert!(
        r.reply[0].what.contains("ICMP unreachable"),
        "{:?}",
        r.reply[0]
    );
}

#[test]
fn a_ping_is_traced_with_its_identifier() {
    let mut lab = poc();
    let r = trace(&mut lab, "ClientVM", "192.168.100.20", None);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(
        ScenarioResult::nodes(&r.request),
        ["ClientVM", "NATVM", "BGPVM", "MuxVM"]
    );
    let json = report::trace_json(&r);
    assert_eq!(json["passed"], true);
    assert_eq!(json["request"][0]["number"], 1);
    assert_eq!(
        json["reply"][0]["number"], 4,
        "numbers run on from the request"
    );
    assert_eq!(json["request"][2]["to"], "MuxVM");
    assert!(
        json["request"][0]["frame"]
            .as_str()
            .unwrap()
            .contains("ICMP echo request")
    );
}

#[test]
fn a_flow_that_cannot_be_traced_says_why() {
    let lab = poc();
    let t = lab.topology();
    let err = |from: &str, to: &str, p| Scenario::flow(t, from, to, p).unwrap_err();
    assert!(err("Nobody", "192.168.100.74", None).contains("no node \"Nobody\""));
    assert!(err("ClientVM", "portal", None).contains("expected a URL"));
    assert!(
        err("ClientVM", "192.168.100.74:80", Some(FlowProto::Icmp)).contains("ICMP has no ports")
    );
    assert!(err("ClientVM", "192.168.100.74", Some(FlowProto::Udp)).contains("needs IP:PORT"));
    assert!(err("ClientVM", "http://x/", Some(FlowProto::Udp)).contains("over TCP"));
}

#[test]
fn an_outbound_connection_is_traced_out_as_the_vip_and_back_through_a_mux() {
    let mut lab = poc();
    let r = trace(&mut lab, "TenantA-Web2", "http://203.0.113.100/", None);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(
        ScenarioResult::nodes(&r.request),
        ["TenantA-Web2", "HyperVHost2", "BGPVM", "NATVM", "Internet"]
    );
    let back = ScenarioResult::nodes(&r.reply);
    assert_eq!(back[..3], ["Internet", "NATVM", "BGPVM"], "{back:?}");
    assert!(back[3].starts_with("MuxVM"), "{back:?}");
    assert_eq!(back[4..], ["HyperVHost2", "TenantA-Web2"]);
    let host = did(&r, "HyperVHost2").join("\n");
    assert!(
        host.contains("VFP rewrites the source 192.168.100.82:")
            && host.contains("→ 192.168.133.80:1032"),
        "{host}"
    );
    assert!(
        host.contains("layer SLB_SNAT flow state (reply): dst 192.168.100.82:"),
        "{host}"
    );
    let mux = did(&r, &back[3]).join("\n");
    assert!(
        mux.contains(
            "sends it to DIP 192.168.100.82 (TenantA-Web2), which holds the SNAT ports 192.168.133.80:1032-1039"
        ),
        "{mux}"
    );
}
