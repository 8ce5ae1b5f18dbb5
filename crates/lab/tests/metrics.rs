//! The lab's Prometheus metrics and its dashboard state: what they hold after real
//! traffic, and promtool's acceptance of the exposition.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_lab::{Clock, Lab};

fn poc_after_portal() -> Lab {
    let topology = strata_lab::file::parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .expect("the POC lab parses");
    let mut lab = Lab::new(topology, Clock::Virtual).expect("the lab starts");
    lab.boot(strata_lab::BOOT_LIMIT);
    let portal = lab
        .topology()
        .scenarios
        .iter()
        .position(|s| s.name == "portal")
        .unwrap();
    assert!(lab.run_scenario(portal).passed);
    lab
}

/// The value of the one sample with this name and these labels.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in\n{text}");
    found[0]
}

#[test]
fn metrics_count_what_crossed_the_lab() {
    let lab = poc_after_portal();
    let text = strata_lab::metrics::render(&lab);
    assert!(
        text.contains("# TYPE strata_link_tx_frames_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let mux_tx = sample(
        &text,
        "strata_link_tx_frames_total",
        &[r#"network="provider""#, r#"role="mux""#, r#"node="MuxVM2""#],
    ) + sample(
        &text,
        "strata_link_tx_frames_total",
        &[r#"network="provider""#, r#"role="mux""#, r#"node="MuxVM""#],
    );
    assert!(
        mux_tx >= 3.0,
        "the Muxes sent the portal flow in VXLAN: {mux_tx}"
    );
    assert_eq!(
        sample(
            &text,
            "strata_bgp_session_established",
            &[r#"node="BGPVM""#, r#"neighbor="192.168.100.20""#]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "strata_mux_vip_dips",
            &[
                r#"node="MuxVM""#,
                r#"vip="192.168.133.74 tcp/80""#,
                r#"state="up""#
            ]
        ),
        2.0
    );
    assert!(
        sample(
            &text,
            "strata_vfp_flows",
            &[r#"node="HyperVHost""#, r#"port="PortalVM""#]
        ) + sample(
            &text,
            "strata_vfp_flows",
            &[r#"node="HyperVHost""#, r#"port="PortalVM2""#]
        ) >= 2.0
    );
    assert_eq!(
        sample(&text, "strata_agent_connected", &[r#"node="MuxVM""#]),
        1.0
    );
    // The lab's own PUTs went through the controller's core, not its HTTP API.
    assert!(!text.contains("strata_api_requests_total{"), "{text}");
}

#[test]
fn promtool_accepts_the_metrics() {
    let lab = poc_after_portal();
    strata_testkit::assert_promtool_accepts(&strata_lab::metrics::render(&lab));
}

#[test]
fn the_dashboard_state_has_every_section() {
    let lab = poc_after_portal();
    let s = strata_lab::dashboard::state(&lab);
    assert_eq!(s["lab"], "azure-stack-poc");
    for section in ["links", "nodes", "bgp", "muxes", "vfp", "resources"] {
        assert!(
            s[section].as_array().is_some_and(|a| !a.is_empty()),
            "{section} in {s:#}"
        );
    }
    let mux = &s["muxes"][0];
    assert_eq!(mux["vips"][0]["loadDistribution"], "Default");
    assert_eq!(mux["vips"][0]["protocol"], "tcp");
    assert!(
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["collection"] == "loadBalancers" && r["provisioningState"] == "Succeeded"),
        "{:#}",
        s["resources"]
    );
}
