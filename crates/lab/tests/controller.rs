//! The POC lab changed while it runs, through its network controller, in virtual time:
//! each change goes through the controller's API path, is compiled, travels to the
//! agents over the management network and is applied by difference, while the portal
//! keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use strata_lab::file::parse;
use strata_lab::{BOOT_LIMIT, Clock, Lab};
use strata_node::TaskSpec;
use strata_node::apps::http::GetReport;

const VIP: &str = "192.168.133.74";

fn booted() -> Lab {
    let topology = parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    let (up, all) = lab.boot(BOOT_LIMIT);
    assert_eq!(up, all, "BGP sessions up");
    assert!(lab.converged(), "every agent applied its configuration");
    lab
}

/// Runs until every agent has applied what the controller compiled.
fn settle(lab: &mut Lab) {
    assert!(
        lab.run_until(Duration::from_secs(20), Lab::converged),
        "the agents converge"
    );
}

fn start_get(lab: &mut Lab, url: &str, timeout: Duration) -> strata_node::TaskId {
    let now = lab.now();
    lab.node_mut("ClientVM").unwrap().start_task(
        now,
        TaskSpec::HttpGet {
            url: url.into(),
            timeout,
        },
    )
}

fn report(lab: &Lab, id: strata_node::TaskId) -> Option<GetReport> {
    match lab.node("ClientVM").unwrap().task_report(id)? {
        strata_node::TaskReport::Http(r) => Some(r),
        other => panic!("{other:?}"),
    }
}

fn wait_get(lab: &mut Lab, id: strata_node::TaskId, limit: Duration) -> GetReport {
    lab.run_until(limit, |lab| report(lab, id).is_some());
    report(lab, id).expect("the GET finished")
}

fn get(lab: &mut Lab, url: &str) -> GetReport {
    let id = start_get(lab, url, Duration::from_secs(3));
    wait_get(lab, id, Duration::from_secs(4))
}

/// Which VM served each of `n` GETs.
fn spread(lab: &mut Lab, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut served = BTreeMap::new();
    for _ in 0..n {
        let r = get(lab, url);
        assert_eq!(r.status, Some(200), "{r:?}");
        let who = r
            .body
            .split("served by ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .to_string();
        *served.entry(who).or_default() += 1;
    }
    served
}

/// The NC spelling of a lab NIC's MAC.
fn nc_mac(lab: &Lab, node: &str) -> String {
    let n = lab.topology().node(node).unwrap();
    strata_lab::mac_of(n, 0)
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn portalvm3(lab: &Lab, pools: &[&str]) -> Value {
    let pools: Vec<Value> = pools.iter().map(|p| json!({"resourceRef": p})).collect();
    json!({"properties": {
        "privateMacAddress": nc_mac(lab, "PortalVM3"),
        "server": {"resourceRef": "/servers/HyperVHost2"},
        "ipConfigurations": [{"resourceId": "ipconfig1", "properties": {
            "privateIPAddress": "192.168.100.76",
            "privateIPAllocationMethod": "Static",
            "subnet": {"resourceRef": "/logicalNetworks/management/subnets/management"},
            "loadBalancerBackendAddressPools": pools,
        }}],
    }})
}

/// The BGP routes BGPVM holds for `vip`: the Muxes it reaches it through.
fn vip_next_hops(lab: &Lab, vip: &str) -> Vec<String> {
    let prefix: ipnet::Ipv4Net = format!("{vip}/32").parse().unwrap();
    let mut hops: Vec<String> = lab
        .node("BGPVM")
        .unwrap()
        .bgp_status()
        .unwrap()
        .iter()
        .flat_map(|n| n.received.iter().filter(|(p, _)| *p == prefix))
        .map(|(_, via)| via.to_string())
        .collect();
    hops.sort();
    hops
}

#[test]
fn a_dip_added_on_a_second_host_takes_new_connections_and_downloads_in_flight_finish() {
    let mut lab = booted();
    assert_eq!(
        spread(&mut lab, &format!("http://{VIP}/"), 20).len(),
        2,
        "two DIPs to begin with"
    );
    // A long download in flight while the pool changes.
    let slow = start_get(
        &mut lab,
        &format!("http://{VIP}/slow"),
        Duration::from_secs(60),
    );
    lab.run_for(Duration::from_millis(50));

    let body = portalvm3(
        &lab,
        &["/loadBalancers/portal/backendAddressPools/portal-dips"],
    );
    let doc = lab.put("networkInterfaces", "PortalVM3", body).unwrap();
    let state = |doc: &Value| doc["properties"]["provisioningState"].clone();
    assert_eq!(state(&doc), "Updating");
    assert_eq!(state(&doc["properties"]["ipConfigurations"][0]), "Updating");
    settle(&mut lab);
    // Once both Muxes and both hosts have applied it.
    let doc = lab.get("networkInterfaces", "PortalVM3").unwrap();
    assert_eq!(state(&doc), "Succeeded");
    assert_eq!(
        state(&doc["properties"]["ipConfigurations"][0]),
        "Succeeded"
    );

    // Both Muxes carry the third DIP, reached through the second host's provider address.
    for mux in ["MuxVM", "MuxVM2"] {
        let vips = lab.node(mux).unwrap().mux().unwrap().vips();
        let (entry, health) = vips
            .iter()
            .find(|(c, _)| c.key.port == 80)
            .expect("the VIP's port 80 entry");
        let dip = entry
            .dips
            .iter()
            .find(|d| d.addr.to_string() == "192.168.100.76")
            .expect("PortalVM3 is a DIP");
        assert_eq!(dip.host_pa.to_string(), "192.168.233.23");
        assert_eq!(health, &[true, true, true]);
    }
    // The second host programmed PortalVM3's port.
    let host2 = lab.node("HyperVHost2").unwrap().vswitch().unwrap();
    let (port, ..) = host2.vm_ports()[0];
    let layers: Vec<&str> = host2
        .vfp(port)
        .unwrap()
        .layers()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(layers, ["SLB_DECAP", "SLB_NAT"]);

    let served = spread(&mut lab, &format!("http://{VIP}/"), 40);
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served["PortalVM3"] >= 5, "{served:?}");

    let slow = wait_get(&mut lab, slow, Duration::from_secs(40));
    assert_eq!(slow.status, Some(200), "{slow:?}");
    assert!(slow.body.contains("A long download"));
}

#[test]
fn a_new_rule_and_a_changed_probe_reach_the_running_lab() {
    let mut lab = booted();
    assert!(
        get(&mut lab, &format!("http://{VIP}:443/")).error.is_some(),
        "no rule for 443 yet"
    );
    let mut lb = lab.get("loadBalancers", "portal").unwrap();
    let mut rule = lb["properties"]["loadBalancingRules"][0].clone();
    rule["resourceId"] = json!("https-443");
    rule["properties"]["frontendPort"] = json!(443);
    for field in ["resourceRef", "etag", "instanceId"] {
        rule.as_object_mut().unwrap().remove(field);
    }
    lb["properties"]["loadBalancingRules"]
        .as_array_mut()
        .unwrap()
        .push(rule);
    lab.put("loadBalancers", "portal", lb).unwrap();
    settle(&mut lab);
    let r = get(&mut lab, &format!("http://{VIP}:443/"));
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(r.body.contains("Azure Stack portal"));

    // A probe that asks for a page nobody has: every DIP fails it, the host agent says
    // so, the SLB manager empties the pools, and the Muxes withdraw the VIP.
    let generations = |lab: &Lab| -> Vec<u64> {
        let host = lab.node("HyperVHost").unwrap().vswitch().unwrap();
        host.vm_ports()
            .iter()
            .map(|(port, ..)| host.vfp(*port).unwrap().generation())
            .collect()
    };
    let before = generations(&lab);
    let mut lb = lab.get("loadBalancers", "portal").unwrap();
    lb["properties"]["probes"][0]["properties"]["requestPath"] = json!("/missing");
    lab.put("loadBalancers", "portal", lb).unwrap();
    assert!(
        lab.run_until(Duration::from_secs(30), |lab| vip_next_hops(lab, VIP)
            .is_empty()),
        "the VIP is withdrawn once its DIPs fail the probe"
    );
    let down: Vec<_> = lab
        .health_log()
        .iter()
        .filter(|(_, _, _, up)| !up)
        .map(|(_, host, dip, _)| (host.clone(), dip.to_string()))
        .collect();
    assert!(down.contains(&("HyperVHost".into(), "192.168.100.74".into())));
    assert!(down.contains(&("HyperVHost".into(), "192.168.100.75".into())));
    // The probe is the host agent's business, not its ports' policy: their layers, and
    // so their cached flows, were left alone.
    assert_eq!(generations(&lab), before);

    // The probe put back: the DIPs come back, the VIP is announced by both Muxes again.
    let mut lb = lab.get("loadBalancers", "portal").unwrap();
    lb["properties"]["probes"][0]["properties"]["requestPath"] = json!("/");
    lab.put("loadBalancers", "portal", lb).unwrap();
    assert!(
        lab.run_until(Duration::from_secs(30), |lab| vip_next_hops(lab, VIP).len()
            == 2),
        "announced again"
    );
    assert_eq!(get(&mut lab, &format!("http://{VIP}/")).status, Some(200));
}

#[test]
fn a_dynamic_vip_is_allocated_announced_reached_and_withdrawn_when_deleted() {
    let mut lab = booted();
    lab.put(
        "loadBalancers",
        "tenant",
        json!({"properties": {
            "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
            "backendAddressPools": [{"resourceId": "web"}],
            "loadBalancingRules": [{"resourceId": "http", "properties": {
                "protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/tenant/frontendIPConfigurations/fe"}],
                "backendAddressPool": {"resourceRef": "/loadBalancers/tenant/backendAddressPools/web"}}}],
        }}),
    )
    .unwrap();
    let body = portalvm3(&lab, &["/loadBalancers/tenant/backendAddressPools/web"]);
    lab.put("networkInterfaces", "PortalVM3", body).unwrap();
    let lb = lab.get("loadBalancers", "tenant").unwrap();
    let vip = lb["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(vip.starts_with("192.168.133."), "{vip}");
    assert_ne!(vip, VIP, "a VIP already in use is never given again");
    settle(&mut lab);
    assert_eq!(
        vip_next_hops(&lab, &vip),
        ["192.168.100.20", "192.168.100.21"],
        "both Muxes announce the new VIP"
    );
    let r = get(&mut lab, &format!("http://{vip}/"));
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(r.body.contains("served by PortalVM3"), "{}", r.body);

    // Deleting it: the NIC first (the pool is referenced), then the load balancer.
    assert!(matches!(
        lab.delete("loadBalancers", "tenant"),
        Err(strata_controller::Error::Conflict { .. })
    ));
    lab.delete("networkInterfaces", "PortalVM3").unwrap();
    lab.delete("loadBalancers", "tenant").unwrap();
    settle(&mut lab);
    assert!(
        lab.run_until(Duration::from_secs(2), |lab| vip_next_hops(lab, &vip)
            .is_empty()),
        "withdrawn over BGP"
    );
    assert!(get(&mut lab, &format!("http://{vip}/")).error.is_some());
    assert_eq!(
        get(&mut lab, &format!("http://{VIP}/")).status,
        Some(200),
        "the portal is untouched"
    );
}

#[test]
fn agents_keep_their_configuration_while_the_controller_is_away_and_catch_up() {
    let mut lab = booted();
    let ncvm = lab.topology().node("NCVM").unwrap();
    let sessions = |lab: &Lab| -> u64 {
        ["MuxVM", "MuxVM2", "HyperVHost"]
            .iter()
            .map(|n| lab.node(n).unwrap().agent().unwrap().sessions)
            .sum()
    };
    let before = sessions(&lab);
    lab.set_cut(ncvm, true);
    // The agents notice (hold time 3 s) and keep what they have.
    lab.run_for(Duration::from_secs(5));
    for n in ["MuxVM", "MuxVM2", "HyperVHost"] {
        let agent = lab.node(n).unwrap().agent().unwrap();
        assert!(!agent.agent().is_ready(), "{n} lost the controller");
        assert!(
            agent.agent().config().is_some(),
            "{n} kept its configuration"
        );
    }
    assert_eq!(
        get(&mut lab, &format!("http://{VIP}/")).status,
        Some(200),
        "the data path keeps working"
    );
    // A change while the controller cannot reach anyone.
    let mut lb = lab.get("loadBalancers", "portal").unwrap();
    lb["properties"]["inboundNatRules"][0]["properties"]["frontendPort"] = json!(8443);
    lab.put("loadBalancers", "portal", lb).unwrap();
    lab.run_for(Duration::from_secs(2));
    assert!(!lab.converged());

    lab.set_cut(ncvm, false);
    settle(&mut lab);
    assert_eq!(sessions(&lab), before + 3, "every agent reconnected once");
    let r = get(&mut lab, &format!("http://{VIP}:8443/"));
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(r.body.contains("served by PortalVM2"));
    assert!(
        get(&mut lab, &format!("http://{VIP}:8080/"))
            .error
            .is_some()
    );
}

#[test]
fn control_traffic_crosses_the_management_network() {
    let lab = booted();
    // The agents' TCP connections to NCVM's port 8081, seen on the management segment.
    let frames = lab.frames_since(&[]);
    let ncvm = lab.topology().node("NCVM").unwrap();
    let mut talkers: Vec<String> = frames
        .iter()
        .filter(|f| f.to.contains(&ncvm))
        .filter(|f| {
            f.ip.as_ref()
                .is_some_and(|ip| ip.proto == 6 && ip.dst_port == 8081 && ip.tcp_flags & 0x02 != 0)
        })
        .map(|f| lab.topology().nodes[f.from].name.clone())
        .collect();
    talkers.sort();
    talkers.dedup();
    assert_eq!(talkers, ["HyperVHost", "HyperVHost2", "MuxVM", "MuxVM2"]);
}

#[test]
fn a_muxs_peering_follows_its_router_configuration() {
    let mut lab = booted();
    assert_eq!(
        vip_next_hops(&lab, VIP),
        ["192.168.100.20", "192.168.100.21"]
    );
    // MuxVM loses its only peer: it leaves BGPVM with a Cease, and the VIP with it.
    let mut mux = lab.get("loadBalancerMuxes", "MuxVM").unwrap();
    let peers = mux["properties"]["routerConfiguration"]["peerRouterConfigurations"].clone();
    mux["properties"]["routerConfiguration"]["peerRouterConfigurations"] = json!([]);
    lab.put("loadBalancerMuxes", "MuxVM", mux.clone()).unwrap();
    settle(&mut lab);
    assert!(
        lab.run_until(Duration::from_secs(2), |lab| vip_next_hops(lab, VIP)
            == ["192.168.100.21"]),
        "{:?}",
        vip_next_hops(&lab, VIP)
    );
    assert!(lab.node("MuxVM").unwrap().bgp_status().unwrap().is_empty());
    let bgpvm = lab.node("BGPVM").unwrap().bgp_status().unwrap();
    let gone = bgpvm
        .iter()
        .find(|n| n.address.to_string() == "192.168.100.20")
        .unwrap();
    assert_ne!(gone.state, strata_node::bgp::State::Established);
    assert!(
        gone.last_down
            .as_deref()
            .is_some_and(|d| d.contains("neighbor removed by the network controller")),
        "{:?}",
        gone.last_down
    );
    // Given back: a new session, and both Muxes carry the VIP again.
    mux["properties"]["routerConfiguration"]["peerRouterConfigurations"] = peers;
    lab.put("loadBalancerMuxes", "MuxVM", mux.clone()).unwrap();
    settle(&mut lab);
    assert!(
        lab.run_until(Duration::from_secs(10), |lab| vip_next_hops(lab, VIP).len()
            == 2),
        "{:?}",
        vip_next_hops(&lab, VIP)
    );
    // The status lists the new neighbor as itself (not under the removed one's index).
    let status = lab.node("MuxVM").unwrap().bgp_status().unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].address.to_string(), "192.168.100.1");
    assert_eq!(status[0].state, strata_node::bgp::State::Established);
    assert_eq!(status[0].advertised.len(), 3, "the three VIPs: {status:?}");
    // A local AS the running speaker cannot take: the resource says why.
    mux["properties"]["routerConfiguration"]["localASN"] = json!(64999);
    lab.put("loadBalancerMuxes", "MuxVM", mux).unwrap();
    lab.run_until(Duration::from_secs(2), |lab| !lab.updating());
    let doc = lab.get("loadBalancerMuxes", "MuxVM").unwrap();
    assert_eq!(doc["properties"]["provisioningState"], "Failed");
    let message = doc["properties"]["configurationState"]["detailedInfo"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("changing it needs a restart"), "{message}");
    assert_eq!(vip_next_hops(&lab, VIP).len(), 2, "nothing else changed");
}
