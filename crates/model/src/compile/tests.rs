use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::*;
use crate::doc::{Stamp, complete, locate, references};
use crate::kind::kind;

/// Completed documents and who refers to what, as the controller keeps them.
#[derive(Default)]
struct Docs {
    docs: Vec<(&'static str, Value)>,
    referrers: HashMap<String, Vec<(String, String)>>,
}

impl Docs {
    fn put(&mut self, collection: &str, id: &str, body: Value) {
        let k = kind(collection).unwrap();
        let mut stamp = Stamp {
            etag: "W/\"1\"",
            new_instance_id: &mut || "i".to_string(),
            provisioning_state: "Succeeded",
        };
        let doc = complete(k, id, body, None, &mut stamp).unwrap();
        for r in references(k, &doc) {
            self.referrers
                .entry(canonical(&r.to))
                .or_default()
                .push((r.from, r.field));
        }
        self.docs.push((k.name, doc));
    }
}

impl Resources for Docs {
    fn get(&self, reference: &str) -> Option<&Value> {
        let wanted = canonical(reference);
        self.docs.iter().find_map(|(_, d)| {
            let own = canonical(d.get("resourceRef")?.as_str()?);
            if wanted == own || wanted.starts_with(&format!("{own}/")) {
                locate(d, reference)
            } else {
                None
            }
        })
    }

    fn all(&self, collection: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|(k, _)| *k == collection)
            .map(|(_, d)| d)
            .collect()
    }

    fn referrers(&self, canonical: &str) -> Vec<(String, String)> {
        self.referrers.get(canonical).cloned().unwrap_or_default()
    }
}

fn nic(ip: &str, mac: &str, pools: Value, nat: Value) -> Value {
    json!({"properties": {
        "privateMacAddress": mac,
        "server": {"resourceRef": "/servers/HyperVHost"},
        "ipConfigurations": [{"resourceId": "ip1", "properties": {
            "privateIPAddress": ip,
            "loadBalancerBackendAddressPools": pools,
            "loadBalancerInboundNatRules": nat
        }}]
    }})
}

/// The portal: VIP 192.168.133.74, HTTP to PortalVM and PortalVM2 (probed), SSH on
/// 2222 to PortalVM alone, all on HyperVHost.
fn portal() -> Docs {
    let mut d = Docs::default();
    d.put("servers", "HyperVHost", json!({"properties": {}}));
    d.put(
        "loadBalancers",
        "portal",
        json!({"properties": {
            "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAddress": "192.168.133.74"}}],
            "backendAddressPools": [{"resourceId": "web"}],
            "probes": [{"resourceId": "http", "properties": {"protocol": "Http", "port": 80, "requestPath": "/", "intervalInSeconds": 5, "numberOfProbes": 2}}],
            "loadBalancingRules": [{"resourceId": "http", "properties": {
                "protocol": "Tcp", "frontendPort": 80, "backendPort": 8080, "loadDistribution": "SourceIP",
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
                "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/web"},
                "probe": {"resourceRef": "/loadBalancers/portal/probes/http"}
            }}],
            "inboundNatRules": [{"resourceId": "ssh", "properties": {
                "protocol": "Tcp", "frontendPort": 2222, "backendPort": 22,
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}]
            }}]
        }}),
    );
    let web = json!([{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]);
    d.put(
        "networkInterfaces",
        "PortalVM",
        nic(
            "192.168.100.74",
            "00155D640700",
            web.clone(),
            json!([{"resourceRef": "/loadBalancers/portal/inboundNatRules/ssh"}]),
        ),
    );
    d.put(
        "networkInterfaces",
        "PortalVM2",
        nic("192.168.100.75", "00155D640701", web, json!([])),
    );
    d
}

#[test]
fn rules_become_vip_entries_with_their_backends_probe_and_distribution() {
    let d = portal();
    let vips = vips(&d);
    assert_eq!(vips.len(), 2);
    let http = &vips[0];
    assert_eq!(
        (http.vip, http.protocol, http.port, http.distribution),
        (
            "192.168.133.74".parse().unwrap(),
            Protocol::Tcp,
            80,
            Distribution::TwoTuple
        )
    );
    assert_eq!(http.rule, "/loadBalancers/portal/loadBalancingRules/http");
    let dips: Vec<(String, u16, Option<&str>)> = http
        .backends
        .iter()
        .map(|b| (b.dip.to_string(), b.port, b.mac.as_deref()))
        .collect();
    assert_eq!(
        dips,
        [
            ("192.168.100.74".to_string(), 8080, Some("00155D640700")),
            ("192.168.100.75".to_string(), 8080, Some("00155D640701"))
        ]
    );
    assert_eq!(
        http.backends[0].server.as_deref(),
        Some("/servers/HyperVHost")
    );
    let probe = http.probe.as_ref().unwrap();
    assert_eq!(
        (
            probe.protocol.as_str(),
            probe.port,
            probe.request_path.as_deref()
        ),
        ("http", 80, Some("/"))
    );
    let ssh = &vips[1];
    assert_eq!(
        (ssh.port, ssh.backends.len(), ssh.backends[0].port),
        (2222, 1, 22)
    );
    assert_eq!(ssh.backends[0].dip.to_string(), "192.168.100.74");
}

#[test]
fn each_host_gets_the_mappings_and_probes_of_its_dips() {
    let d = portal();
    let hosts = hosts(&vips(&d), &BTreeMap::new());
    assert_eq!(hosts.len(), 1);
    let h = &hosts["/servers/hypervhost"];
    let m: Vec<(u16, String, u16)> = h
        .mappings
        .values()
        .map(|m| (m.frontend_port, m.dip.to_string(), m.backend_port))
        .collect();
    assert_eq!(
        m,
        // By key: DIP, then VIP, protocol and port (as text).
        [
            (2222, "192.168.100.74".into(), 22),
            (80, "192.168.100.74".into(), 8080),
            (80, "192.168.100.75".into(), 8080),
        ]
    );
    assert_eq!(h.probes.len(), 2, "one probe per DIP");
}

#[test]
fn a_mux_peers_as_its_router_configuration_says_and_carries_every_vip() {
    let mut d = portal();
    d.put(
        "loadBalancerMuxes",
        "MuxVM",
        json!({"properties": {"routerConfiguration": {"localASN": 64501, "peerRouterConfigurations": [
            {"routerIPAddress": "192.168.100.1", "peerASN": 64500}
        ]}}}),
    );
    let v = vips(&d);
    let m = mux(d.all("loadBalancerMuxes")[0], &v).unwrap();
    assert_eq!(m.local_asn, 64501);
    assert_eq!(m.peers, [("192.168.100.1".parse().unwrap(), 64500)]);
    assert_eq!(
        m.vips,
        v.iter()
            .map(|v| (v.key(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    );
    assert_eq!(
        m.vips.keys().collect::<Vec<_>>(),
        ["192.168.133.74 tcp 2222", "192.168.133.74 tcp 80"]
    );
    // The configuration travels as JSON and comes back the same.
    let back: MuxConfig = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn a_frontend_on_a_public_ip_address_takes_its_address_and_all_means_both_protocols() {
    let mut d = Docs::default();
    d.put(
        "publicIPAddresses",
        "pip",
        json!({"properties": {"ipAddress": "40.40.40.5"}}),
    );
    d.put(
        "loadBalancers",
        "lb",
        json!({"properties": {
            "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"publicIPAddress": {"resourceRef": "/publicIPAddresses/pip"}}}],
            "backendAddressPools": [{"resourceId": "pool"}],
            "loadBalancingRules": [{"resourceId": "dns", "properties": {
                "protocol": "All", "frontendPort": 53,
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/lb/frontendIPConfigurations/fe"}],
                "backendAddressPool": {"resourceRef": "/loadBalancers/lb/backendAddressPools/pool"}
            }}]
        }}),
    );
    let v = vips(&d);
    let keys: Vec<(String, Protocol, u16)> = v
        .iter()
        .map(|x| (x.vip.to_string(), x.protocol, x.port))
        .collect();
    assert_eq!(
        keys,
        [
            ("40.40.40.5".into(), Protocol::Tcp, 53),
            ("40.40.40.5".into(), Protocol::Udp, 53)
        ]
    );
    assert!(v[0].backends.is_empty());
    assert!(hosts(&v, &BTreeMap::new()).is_empty());
}

#[test]
fn compiled_configurations_hold_no_null_so_changes_travel_as_merge_patches() {
    // RFC 7396 cannot say "set to null": a configuration with one would go whole.
    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(m) => m.values().any(has_null),
            _ => false,
        }
    }
    let mut d = portal();
    d.put(
        "loadBalancerMuxes",
        "MuxVM",
        json!({"properties": {"routerConfiguration": {"localASN": 64501, "peerRouterConfigurations": []}}}),
    );
    let v = vips(&d);
    assert!(
        v.iter().any(|v| v.probe.is_none()),
        "an entry without a probe"
    );
    let m = serde_json::to_value(mux(d.all("loadBalancerMuxes")[0], &v).unwrap()).unwrap();
    assert!(!has_null(&m), "{m}");
    let h = serde_json::to_value(&hosts(&v, &BTreeMap::new())["/servers/hypervhost"]).unwrap();
    assert!(!has_null(&h), "{h}");
}

#[test]
fn the_muxes_get_backends_their_hosts_have_programmed_with_their_health() {
    let d = portal();
    let v = vips(&d);
    let pa: IpAddr = "192.168.233.21".parse().unwrap();
    let host = "/servers/hypervhost".to_string();
    let mut o = Observed::default();
    // Nothing reported: nothing a Mux could use, so no entry at all.
    assert!(observe(&v, &o).is_empty());
    // A provider address, but no DIP programmed yet: still nothing.
    o.provider_addresses.insert(host.clone(), vec![pa]);
    assert!(observe(&v, &o).is_empty());
    // PortalVM programmed, and reported down.
    o.programmed
        .insert(host.clone(), ["192.168.100.74".parse().unwrap()].into());
    o.down.insert("192.168.100.74".parse().unwrap());
    let seen = observe(&v, &o);
    assert_eq!(seen.len(), 2, "the HTTP entry and the SSH entry");
    for entry in &seen {
        assert_eq!(entry.backends.len(), 1, "PortalVM2 is not programmed");
        let b = &entry.backends[0];
        assert_eq!(b.dip.to_string(), "192.168.100.74");
        assert_eq!(b.provider_address, Some(pa));
        assert!(!b.healthy);
    }
    // Both programmed, both up.
    o.programmed.insert(
        host,
        [
            "192.168.100.74".parse().unwrap(),
            "192.168.100.75".parse().unwrap(),
        ]
        .into(),
    );
    o.down.clear();
    let seen = observe(&v, &o);
    assert_eq!(seen[0].backends.len(), 2);
    assert!(seen[0].backends.iter().all(|b| b.healthy));
    // What the resources say of each entry is kept.
    assert_eq!(seen[0].rule, v[0].rule);
    assert_eq!(seen[0].distribution, Distribution::TwoTuple);
}

#[test]
fn a_backend_read_without_health_is_healthy() {
    let b: Backend = serde_json::from_value(json!({
        "ipConfiguration": "/networkInterfaces/PortalVM/ipConfigurations/ip1",
        "dip": "192.168.100.74", "port": 80
    }))
    .unwrap();
    assert!(b.healthy);
    assert_eq!((b.server, b.mac, b.provider_address), (None, None, None));
}

#[test]
fn udp_rules_source_ip_protocol_and_the_order_of_entries() {
    let mut d = Docs::default();
    for (lb, vip, protocol, distribution) in [
        ("a", "192.168.133.80", "Udp", "SourceIPProtocol"),
        ("b", "192.168.133.75", "Tcp", "Default"),
    ] {
        d.put(
            "loadBalancers",
            lb,
            json!({"properties": {
                "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAddress": vip}}],
                "backendAddressPools": [{"resourceId": "web"}],
                "loadBalancingRules": [{"resourceId": "r", "properties": {
                    "protocol": protocol, "frontendPort": 53, "loadDistribution": distribution,
                    "frontendIPConfigurations": [{"resourceRef": format!("/loadBalancers/{lb}/frontendIPConfigurations/fe")}],
                    "backendAddressPool": {"resourceRef": format!("/loadBalancers/{lb}/backendAddressPools/web")}}}]
            }}),
        );
    }
    let v = vips(&d);
    // In VIP order, not in the load balancers' order.
    let got: Vec<(String, Protocol, Distribution)> = v
        .iter()
        .map(|v| (v.vip.to_string(), v.protocol, v.distribution))
        .collect();
    assert_eq!(
        got,
        [
            (
                "192.168.133.75".into(),
                Protocol::Tcp,
                Distribution::FiveTuple
            ),
            (
                "192.168.133.80".into(),
                Protocol::Udp,
                Distribution::ThreeTuple
            ),
        ]
    );
}

/// The portal with an outbound NAT rule: its web pool's connections leave as the VIP.
fn portal_with_outbound(protocol: &str) -> Docs {
    let mut d = Docs::default();
    d.put("servers", "HyperVHost", json!({"properties": {}}));
    d.put(
        "loadBalancers",
        "portal",
        json!({"properties": {
            "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAddress": "192.168.133.74"}}],
            "backendAddressPools": [{"resourceId": "web"}],
            "loadBalancingRules": [{"resourceId": "http", "properties": {
                "protocol": "Tcp", "frontendPort": 80,
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
                "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}
            }}],
            "outboundNatRules": [{"resourceId": "out", "properties": {
                "protocol": protocol,
                "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
                "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}
            }}]
        }}),
    );
    let web = json!([{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]);
    d.put(
        "networkInterfaces",
        "PortalVM",
        nic("192.168.100.74", "00155D640700", web, json!([])),
    );
    d
}

#[test]
fn an_outbound_rule_gives_hosts_their_dips_ranges_and_the_muxes_the_ranges() {
    let d = portal_with_outbound("All");
    let v = vips(&d);
    let outbound: Vec<&Vip> = v.iter().filter(|e| e.outbound).collect();
    assert_eq!(outbound.len(), 2, "All: TCP and UDP");
    assert!(
        outbound
            .iter()
            .all(|e| e.port == 0 && e.backends.len() == 1)
    );
    let vip: IpAddr = "192.168.133.74".parse().unwrap();
    let dip: IpAddr = "192.168.100.74".parse().unwrap();
    let snat = BTreeMap::from([(vip, BTreeMap::from([(1024, dip), (1040, dip)]))]);
    let compiled = hosts(&v, &snat);
    let host = &compiled["/servers/hypervhost"];
    assert_eq!(
        host.mappings.len(),
        1,
        "the load-balancing rule's mapping alone"
    );
    let out = &host.outbound["192.168.100.74 192.168.133.74"];
    assert_eq!(out.protocols, [Protocol::Tcp, Protocol::Udp]);
    assert_eq!(out.ranges, [1024, 1040]);
    assert_eq!(out.mac.as_deref(), Some("00155D640700"));
    assert_eq!(out.rule, "/loadBalancers/portal/outboundNatRules/out");
    // The Muxes carry no outbound entry as a VIP entry; each range with its host.
    let muxes = mux(
        &json!({"properties": {"routerConfiguration": {"localASN": 64512}}}),
        &v,
    )
    .unwrap();
    assert_eq!(muxes.vips.len(), 1);
    let observed = Observed {
        provider_addresses: BTreeMap::from([(
            "/servers/hypervhost".to_string(),
            vec!["192.168.233.21".parse().unwrap()],
        )]),
        programmed: BTreeMap::from([("/servers/hypervhost".to_string(), [dip].into())]),
        ..Observed::default()
    };
    let ranges = snat_ranges(&observe(&v, &observed), &snat);
    assert_eq!(ranges.len(), 2);
    assert_eq!(
        ranges["192.168.133.74 1040"],
        SnatRange {
            vip,
            start: 1040,
            dip,
            mac: Some("00155D640700".into()),
            provider_address: "192.168.233.21".parse().unwrap(),
            vni: LOGICAL_NETWORK_VNI,
        }
    );
    // Before the host has a provider address, the Muxes have nowhere to send them.
    assert!(snat_ranges(&observe(&v, &Observed::default()), &snat).is_empty());
    // A TCP rule is TCP alone.
    let d = portal_with_outbound("Tcp");
    let h = hosts(&vips(&d), &snat);
    assert_eq!(
        h["/servers/hypervhost"].outbound["192.168.100.74 192.168.133.74"].protocols,
        [Protocol::Tcp]
    );
}
