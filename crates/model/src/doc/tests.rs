use super::*;
use crate::kind::kind;
use serde_json::json;

fn complete_as(kind_name: &str, id: &str, body: Value) -> Result<Value, Invalid> {
    let mut n = 0;
    let mut new_id = || {
        n += 1;
        format!("inst-{n}")
    };
    let mut stamp = Stamp {
        etag: "W/\"1\"",
        new_instance_id: &mut new_id,
        provisioning_state: "Succeeded",
    };
    complete(kind(kind_name).unwrap(), id, body, None, &mut stamp)
}

fn lb(rule: Value) -> Value {
    json!({
        "properties": {
            "frontendIPConfigurations": [{
                "resourceId": "fe",
                "properties": {"privateIPAddress": "192.168.133.74", "privateIPAllocationMethod": "Static"}
            }],
            "backendAddressPools": [{"resourceId": "pool", "properties": {}}],
            "probes": [{"resourceId": "http", "properties": {"protocol": "Http", "port": 80, "requestPath": "/", "intervalInSeconds": 5, "numberOfProbes": 2}}],
            "loadBalancingRules": [rule],
        }
    })
}

fn rule(props: Value) -> Value {
    let mut p = json!({
        "protocol": "Tcp",
        "frontendPort": 80,
        "backendPort": 80,
        "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
        "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/pool"},
    });
    if let (Value::Object(p), Value::Object(extra)) = (&mut p, props) {
        p.extend(extra);
    }
    json!({"resourceId": "http", "properties": p})
}

#[test]
fn a_load_balancer_is_completed_with_refs_etags_ids_and_states() {
    let doc = complete_as("loadBalancers", "portal", lb(rule(json!({})))).unwrap();
    assert_eq!(doc["resourceId"], "portal");
    assert_eq!(doc["resourceRef"], "/loadBalancers/portal");
    assert_eq!(doc["etag"], "W/\"1\"");
    assert_eq!(doc["instanceId"], "inst-1");
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
    let fe = &doc["properties"]["frontendIPConfigurations"][0];
    assert_eq!(
        fe["resourceRef"],
        "/loadBalancers/portal/frontendIPConfigurations/fe"
    );
    assert_eq!(fe["etag"], "W/\"1\"");
    assert_eq!(fe["properties"]["provisioningState"], "Succeeded");
    assert!(fe["instanceId"].as_str().unwrap().starts_with("inst-"));

    let refs = references(kind("loadBalancers").unwrap(), &doc);
    let fields: Vec<(&str, &str, &str)> = refs
        .iter()
        .map(|r| (r.from.as_str(), r.field.as_str(), r.to.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "/loadBalancers/portal/loadBalancingRules/http",
                "backendAddressPool",
                "/loadBalancers/portal/backendAddressPools/pool"
            ),
            (
                "/loadBalancers/portal/loadBalancingRules/http",
                "frontendIPConfigurations",
                "/loadBalancers/portal/frontendIPConfigurations/fe"
            ),
        ]
    );
    assert_eq!(
        refs[1].pointer,
        "/properties/loadBalancingRules/0/properties/frontendIPConfigurations/0/resourceRef"
    );
}

#[test]
fn bad_fields_are_named_by_pointer_with_what_was_expected() {
    let cases = [
        (
            rule(json!({"frontendPort": 70000})),
            "/properties/loadBalancingRules/0/properties/frontendPort",
            "expected a port number 0-65535, found 70000",
        ),
        (
            rule(json!({"protocol": "Sctp"})),
            "/properties/loadBalancingRules/0/properties/protocol",
            "expected one of Tcp, Udp, All, found \"Sctp\"",
        ),
        (
            rule(
                json!({"backendAddressPool": {"resourceRef": "/loadBalancers/portal/probes/http"}}),
            ),
            "/properties/loadBalancingRules/0/properties/backendAddressPool/resourceRef",
            "expected a reference to /loadBalancers/*/backendAddressPools/*, found \"/loadBalancers/portal/probes/http\"",
        ),
        (
            json!({"resourceId": "http", "properties": {"protocol": "Tcp", "backendPort": 80}}),
            "/properties/loadBalancingRules/0/properties/frontendPort",
            "expected a port number 0-65535: the field is required",
        ),
        (
            json!({"properties": {}}),
            "/properties/loadBalancingRules/0/resourceId",
            "expected an id: every child resource needs one",
        ),
    ];
    for (r, pointer, message) in cases {
        let e = complete_as("loadBalancers", "portal", lb(r)).unwrap_err();
        assert_eq!((e.pointer.as_str(), e.message.as_str()), (pointer, message));
    }
    let mut bad_ip = lb(rule(json!({})));
    bad_ip["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"] =
        json!("192.168.133.300");
    let e = complete_as("loadBalancers", "portal", bad_ip).unwrap_err();
    assert_eq!(
        e.pointer,
        "/properties/frontendIPConfigurations/0/properties/privateIPAddress"
    );
    assert_eq!(
        e.message,
        "expected an IP address (or \"\"), found \"192.168.133.300\""
    );
}

#[test]
fn the_envelope_is_checked() {
    let e = complete_as("loadBalancers", "portal", json!([])).unwrap_err();
    assert_eq!(
        (e.pointer.as_str(), e.message.as_str()),
        ("", "expected a JSON object")
    );
    let e = complete_as("loadBalancers", "portal", json!({"resourceId": "other"})).unwrap_err();
    assert_eq!(e.pointer, "/resourceId");
    let e = complete_as("loadBalancers", "portal", json!({"properties": 3})).unwrap_err();
    assert_eq!(e.pointer, "/properties");
    let e = complete_as("loadBalancers", "portal", json!({"tags": [1]})).unwrap_err();
    assert_eq!(
        (e.pointer.as_str(), e.message.as_str()),
        ("/tags", "expected an object, found an array")
    );
    let e = complete_as("loadBalancers", "portal", json!({"resourceMetadata": "x"})).unwrap_err();
    assert_eq!(e.pointer, "/resourceMetadata");
    let e = complete_as("loadBalancers", "portal", json!({"resourceRef": {}})).unwrap_err();
    assert_eq!(e.pointer, "/resourceRef");
    let e = complete_as("loadBalancers", "portal", json!({"resourceId": 7})).unwrap_err();
    assert_eq!(e.pointer, "/resourceId");
    let mut twice = lb(rule(json!({})));
    twice["properties"]["backendAddressPools"] =
        json!([{"resourceId": "pool"}, {"resourceId": "POOL"}]);
    let e = complete_as("loadBalancers", "portal", twice).unwrap_err();
    assert_eq!(e.pointer, "/properties/backendAddressPools/1/resourceId");
    let e = complete_as(
        "loadBalancers",
        "portal",
        json!({"properties": {"probes": {"resourceId": "x"}}}),
    )
    .unwrap_err();
    assert_eq!(e.pointer, "/properties/probes");
}

#[test]
fn an_http_probe_needs_a_path_and_pools_run_forwards_in_one_family() {
    let mut no_path = lb(rule(json!({})));
    no_path["properties"]["probes"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("requestPath");
    let e = complete_as("loadBalancers", "portal", no_path).unwrap_err();
    assert_eq!(e.pointer, "/properties/probes/0/properties/requestPath");

    let ln = |start: &str, end: &str| {
        json!({"properties": {"subnets": [{"resourceId": "vip", "properties": {
            "addressPrefix": "192.168.133.0/24",
            "ipPools": [{"resourceId": "p", "properties": {"startIPAddress": start, "endIPAddress": end}}]
        }}]}})
    };
    let ok = complete_as(
        "logicalNetworks",
        "public",
        ln("192.168.133.10", "192.168.133.99"),
    )
    .unwrap();
    assert_eq!(
        ok["properties"]["subnets"][0]["properties"]["ipPools"][0]["resourceRef"],
        "/logicalNetworks/public/subnets/vip/ipPools/p"
    );
    let at = "/properties/subnets/0/properties/ipPools/0/properties";
    let e = complete_as(
        "logicalNetworks",
        "public",
        ln("192.168.133.10", "2001:db8::1"),
    )
    .unwrap_err();
    assert_eq!(e.pointer, format!("{at}/endIPAddress"));
    let e = complete_as(
        "logicalNetworks",
        "public",
        ln("192.168.133.99", "192.168.133.10"),
    )
    .unwrap_err();
    assert_eq!(
        (e.pointer.as_str(), e.message.as_str()),
        (
            format!("{at}/endIPAddress").as_str(),
            "expected an address at or after the start 192.168.133.99, found 192.168.133.10"
        )
    );
}

#[test]
fn instance_ids_stay_with_what_stays() {
    let kind = kind("loadBalancers").unwrap();
    let mut n = 0;
    let mut new_id = || {
        n += 1;
        format!("inst-{n}")
    };
    let mut stamp = Stamp {
        etag: "W/\"1\"",
        new_instance_id: &mut new_id,
        provisioning_state: "Succeeded",
    };
    let first = complete(kind, "portal", lb(rule(json!({}))), None, &mut stamp).unwrap();
    let mut changed = lb(rule(json!({})));
    changed["properties"]["backendAddressPools"] =
        json!([{"resourceId": "pool"}, {"resourceId": "second"}]);
    let mut stamp = Stamp {
        etag: "W/\"2\"",
        new_instance_id: &mut || "fresh".to_string(),
        provisioning_state: "Succeeded",
    };
    let second = complete(kind, "portal", changed, Some(&first), &mut stamp).unwrap();
    assert_eq!(second["instanceId"], first["instanceId"]);
    assert_eq!(
        second["properties"]["backendAddressPools"][0]["instanceId"],
        first["properties"]["backendAddressPools"][0]["instanceId"]
    );
    assert_eq!(
        second["properties"]["backendAddressPools"][1]["instanceId"],
        "fresh"
    );
    assert_eq!(
        second["properties"]["backendAddressPools"][0]["etag"],
        "W/\"2\""
    );
}

#[test]
fn back_references_are_dropped_on_the_way_in_and_computed_on_the_way_out() {
    let kind = kind("loadBalancers").unwrap();
    let mut body = lb(rule(json!({})));
    body["properties"]["backendAddressPools"][0]["properties"]["backendIPConfigurations"] =
        json!([{"resourceRef": "/networkInterfaces/made-up/ipConfigurations/x"}]);
    let mut doc = complete_as("loadBalancers", "portal", body).unwrap();
    assert!(
        references(kind, &doc)
            .iter()
            .all(|r| !r.to.contains("made-up")),
        "a read-only field is not a reference"
    );
    let referrers = |target: &str| -> Vec<(String, String)> {
        match target {
            "/loadbalancers/portal/backendaddresspools/pool" => vec![
                (
                    "/networkInterfaces/b/ipConfigurations/1".into(),
                    "loadBalancerBackendAddressPools".into(),
                ),
                (
                    "/networkInterfaces/a/ipConfigurations/1".into(),
                    "loadBalancerBackendAddressPools".into(),
                ),
                (
                    "/loadBalancers/portal/loadBalancingRules/http".into(),
                    "backendAddressPool".into(),
                ),
            ],
            "/loadbalancers/portal/frontendipconfigurations/fe" => vec![(
                "/loadBalancers/portal/loadBalancingRules/http".into(),
                "frontendIPConfigurations".into(),
            )],
            _ => vec![],
        }
    };
    fill_back_refs(kind, &mut doc, &referrers);
    let pool = &doc["properties"]["backendAddressPools"][0]["properties"];
    assert_eq!(
        pool["backendIPConfigurations"],
        json!([
            {"resourceRef": "/networkInterfaces/a/ipConfigurations/1"},
            {"resourceRef": "/networkInterfaces/b/ipConfigurations/1"}
        ])
    );
    assert_eq!(
        pool["loadBalancingRules"],
        json!([{"resourceRef": "/loadBalancers/portal/loadBalancingRules/http"}])
    );
    assert_eq!(pool["outboundNatRules"], json!([]));
    let fe = &doc["properties"]["frontendIPConfigurations"][0]["properties"];
    assert_eq!(
        fe["loadBalancingRules"],
        json!([{"resourceRef": "/loadBalancers/portal/loadBalancingRules/http"}])
    );
    assert_eq!(
        doc["properties"]["probes"][0]["properties"]["loadBalancingRules"],
        json!([])
    );
}

#[test]
fn references_locate_their_objects() {
    let doc = complete_as("loadBalancers", "portal", lb(rule(json!({})))).unwrap();
    let fe = locate(&doc, "/loadBalancers/portal/frontendIPConfigurations/FE").unwrap();
    assert_eq!(fe["resourceId"], "fe");
    assert!(locate(&doc, "/loadBalancers/portal/frontendIPConfigurations/nope").is_none());
    assert_eq!(locate(&doc, "/loadBalancers/portal").unwrap(), &doc);
    assert!(locate(&doc, "/loadBalancers/portal/probes").is_none());
}

#[test]
fn muxes_and_singletons() {
    let mux = json!({"properties": {"routerConfiguration": {
        "localASN": 64628,
        "peerRouterConfigurations": [{"routerIPAddress": "192.168.200.1", "peerASN": 0}]
    }}});
    let e = complete_as("loadBalancerMuxes", "MuxVM1", mux).unwrap_err();
    assert_eq!(
        e.pointer,
        "/properties/routerConfiguration/peerRouterConfigurations/0/peerASN"
    );
    let e = complete_as("loadBalancerMuxes", "MuxVM1", json!({"properties": {}})).unwrap_err();
    assert_eq!(e.pointer, "/properties/routerConfiguration/localASN");
    let config = complete_as(
        "loadBalancerManager",
        "config",
        json!({"properties": {"vipIpPools": [{"resourceRef": "/logicalNetworks/public/subnets/vip/ipPools/p"}]}}),
    )
    .unwrap();
    assert_eq!(config["resourceRef"], "/loadBalancerManager/config");
    assert!(
        config.get("resourceId").is_none(),
        "a singleton has no resourceId"
    );
}

#[test]
fn ids_and_port_ranges() {
    assert!(valid_id("DVLAB-MUX01"));
    assert!(!valid_id(""));
    assert!(!valid_id("a/b"));
    assert!(!valid_id(&"x".repeat(257)));
    for ok in ["*", "80", "0-65535", "1024 - 2048"] {
        assert!(valid_port_range(ok), "{ok}");
    }
    for bad in ["", "70000", "9-8", "a-b", "1-"] {
        assert!(!valid_port_range(bad), "{bad}");
    }
}

proptest::proptest! {
    /// Any JSON body: completing it never panics.
    #[test]
    fn any_body_is_answered(body in arbitrary_json()) {
        for k in crate::KINDS {
            let _ = complete_as(k.name, "x", body.clone());
        }
    }
}

fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9/.*-]{0,12}".prop_map(Value::String),
        Just(json!("properties")),
        Just(json!("resourceId")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("properties".to_string()),
            Just("resourceId".to_string()),
            Just("resourceRef".to_string()),
            Just("subnets".to_string()),
            Just("ipPools".to_string()),
            Just("probes".to_string()),
            Just("loadBalancingRules".to_string()),
            Just("routerConfiguration".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
