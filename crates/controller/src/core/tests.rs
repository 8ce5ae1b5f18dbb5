//! The resource logic against both stores: each test runs on [`MemStore`] and on a
//! [`RedbStore`] in a temporary directory.

use super::*;
use crate::store::{MemStore, RedbStore};
use serde_json::json;
use strata_model::kind;

fn k(name: &str) -> &'static Kind {
    kind(name).unwrap()
}

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("strata-controller-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn public_network() -> Value {
    json!({"properties": {"subnets": [{"resourceId": "vip", "properties": {
        "addressPrefix": "192.168.133.0/24",
        "ipPools": [{"resourceId": "pool", "properties": {
            "startIPAddress": "192.168.133.74", "endIPAddress": "192.168.133.76"}}]
    }}]}})
}

fn manager() -> Value {
    json!({"properties": {"vipIpPools": [
        {"resourceRef": "/logicalNetworks/public/subnets/vip/ipPools/pool"}
    ]}})
}

fn lb(frontend: Value) -> Value {
    json!({"properties": {
        "frontendIPConfigurations": [{"resourceId": "fe", "properties": frontend}],
        "backendAddressPools": [{"resourceId": "pool"}],
        "loadBalancingRules": [{"resourceId": "http", "properties": {
            "protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
            "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/LB/frontendIPConfigurations/fe"}],
            "backendAddressPool": {"resourceRef": "/loadBalancers/LB/backendAddressPools/pool"}
        }}]
    }})
}

fn dynamic() -> Value {
    json!({"privateIPAllocationMethod": "Dynamic"})
}

fn nic(pool: &str) -> Value {
    json!({"properties": {"ipConfigurations": [{"resourceId": "ip1", "properties": {
        "privateIPAddress": "192.168.100.74",
        "loadBalancerBackendAddressPools": [{"resourceRef": pool}]
    }}]}})
}

fn with_pools<S: Store>(c: &mut Controller<S>) {
    c.put(k("logicalNetworks"), "public", public_network(), None)
        .unwrap();
    c.put(k("loadBalancerManager"), "config", manager(), None)
        .unwrap();
}

fn vip(c: &Controller<impl Store>, lb: &str) -> String {
    c.get(k("loadBalancers"), lb).unwrap()["properties"]["frontendIPConfigurations"][0]["properties"]
        ["privateIPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn each(test: impl Fn(Controller<Box<dyn Store>>)) {
    test(Controller::open(Box::new(MemStore::default()) as Box<dyn Store>, 1).unwrap());
    let dir = Dir::new("each");
    let store = RedbStore::open(&dir.0.join("store.redb")).unwrap();
    test(Controller::open(Box::new(store) as Box<dyn Store>, 1).unwrap());
}

#[test]
fn dynamic_vips_take_the_next_free_address_and_keep_it() {
    each(|mut c| {
        with_pools(&mut c);
        let first = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        assert!(first.created);
        assert_eq!(vip(&c, "LB"), "192.168.133.74");
        // A public IP address takes the next one; a static one in the pool is accepted.
        let pip = c
            .put(
                k("publicIPAddresses"),
                "pip",
                json!({"properties": {"publicIPAllocationMethod": "Dynamic"}}),
                None,
            )
            .unwrap();
        assert_eq!(pip.doc["properties"]["ipAddress"], "192.168.133.75");
        // Updating the LB keeps its address.
        let again = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        assert!(!again.created);
        assert_eq!(vip(&c, "LB"), "192.168.133.74");
        c.put(k("loadBalancers"), "lb2", lb2(dynamic()), None)
            .unwrap();
        assert_eq!(vip(&c, "lb2"), "192.168.133.76");
        // The pool is exhausted.
        let e = c
            .put(k("loadBalancers"), "lb3", lb3(dynamic()), None)
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("every address of the vipIpPools is in use"),
            "{e}"
        );
        // Deleting one frees its address for the next.
        c.delete(k("publicIPAddresses"), "pip", None).unwrap();
        c.put(k("loadBalancers"), "lb3", lb3(dynamic()), None)
            .unwrap();
        assert_eq!(vip(&c, "lb3"), "192.168.133.75");
    });
}

fn renamed(body: Value, from: &str, to: &str) -> Value {
    serde_json::from_str(&body.to_string().replace(from, to)).unwrap()
}

fn lb2(frontend: Value) -> Value {
    renamed(lb(frontend), "/loadBalancers/LB/", "/loadBalancers/lb2/")
}

fn lb3(frontend: Value) -> Value {
    renamed(lb(frontend), "/loadBalancers/LB/", "/loadBalancers/lb3/")
}

#[test]
fn static_vips_must_lie_in_a_pool_and_be_free() {
    each(|mut c| {
        let e = c
            .put(
                k("loadBalancers"),
                "LB",
                lb(json!({"privateIPAddress": "192.168.133.74"})),
                None,
            )
            .unwrap_err();
        let Error::Invalid(e) = e else { panic!("{e}") };
        assert_eq!(
            e.pointer,
            "/properties/frontendIPConfigurations/0/properties/privateIPAddress"
        );
        assert!(e.message.contains("names none"), "{}", e.message);
        with_pools(&mut c);
        let e = c
            .put(
                k("loadBalancers"),
                "LB",
                lb(json!({"privateIPAddress": "192.168.133.80"})),
                None,
            )
            .unwrap_err();
        let Error::Invalid(e) = e else { panic!("{e}") };
        assert_eq!(
            e.message,
            "expected an address of a vipIpPool (192.168.133.74-192.168.133.76), found 192.168.133.80"
        );
        c.put(
            k("loadBalancers"),
            "LB",
            lb(json!({"privateIPAddress": "192.168.133.75"})),
            None,
        )
        .unwrap();
        let e = c
            .put(
                k("loadBalancers"),
                "lb2",
                lb2(json!({"privateIPAddress": "192.168.133.75"})),
                None,
            )
            .unwrap_err();
        let Error::Invalid(e) = e else { panic!("{e}") };
        assert!(
            e.message
                .contains("in use by /loadBalancers/LB/frontendIPConfigurations/fe"),
            "{}",
            e.message
        );
        let e = c.put(
            k("loadBalancers"),
            "lb2",
            lb2(json!({"privateIPAllocationMethod": "Static"})),
            None,
        );
        assert!(matches!(e, Err(Error::Invalid(_))));
        // A dynamic one skips the static one's address.
        c.put(k("loadBalancers"), "lb2", lb2(dynamic()), None)
            .unwrap();
        assert_eq!(vip(&c, "lb2"), "192.168.133.74");
    });
}

#[test]
fn references_must_exist_and_what_is_referred_to_cannot_go() {
    each(|mut c| {
        with_pools(&mut c);
        let e = c
            .put(
                k("networkInterfaces"),
                "portal",
                nic("/loadBalancers/LB/backendAddressPools/pool"),
                None,
            )
            .unwrap_err();
        let Error::Invalid(e) = e else { panic!("{e}") };
        assert_eq!(
            e.pointer,
            "/properties/ipConfigurations/0/properties/loadBalancerBackendAddressPools/0/resourceRef"
        );
        assert_eq!(
            e.message,
            "expected a reference to an existing resource: /loadBalancers/LB/backendAddressPools/pool does not exist"
        );
        c.put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        c.put(
            k("networkInterfaces"),
            "portal",
            nic("/loadBalancers/lb/BACKENDADDRESSPOOLS/pool"),
            None,
        )
        .unwrap();
        // The pool lists the NIC's ip configuration, read-only.
        let doc = c.get(k("loadBalancers"), "lb").unwrap();
        assert_eq!(
            doc["properties"]["backendAddressPools"][0]["properties"]["backendIPConfigurations"],
            json!([{"resourceRef": "/networkInterfaces/portal/ipConfigurations/ip1"}])
        );
        // Neither the LB nor, by an update, its pool can go while the NIC refers to it.
        let e = c.delete(k("loadBalancers"), "LB", None).unwrap_err();
        let Error::Conflict { referrers, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(
            referrers,
            &[
                "/networkInterfaces/portal/ipConfigurations/ip1 refers to /loadBalancers/LB/backendAddressPools/pool"
            ]
        );
        let mut without_pool = lb(dynamic());
        without_pool["properties"]["backendAddressPools"] = json!([{"resourceId": "other"}]);
        without_pool["properties"]["loadBalancingRules"] = json!([]);
        assert!(matches!(
            c.put(k("loadBalancers"), "LB", without_pool, None),
            Err(Error::Conflict { .. })
        ));
        // The logical network's pool is referred to by the manager's config.
        assert!(matches!(
            c.delete(k("logicalNetworks"), "public", None),
            Err(Error::Conflict { .. })
        ));
        c.delete(k("networkInterfaces"), "portal", None).unwrap();
        c.delete(k("loadBalancers"), "LB", None).unwrap();
        assert!(matches!(
            c.get(k("loadBalancers"), "LB"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            c.delete(k("loadBalancers"), "LB", None),
            Err(Error::NotFound(_))
        ));
    });
}

#[test]
fn if_match_gives_optimistic_concurrency() {
    each(|mut c| {
        with_pools(&mut c);
        let first = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        let etag = first.doc["etag"].as_str().unwrap().to_string();
        assert!(etag.starts_with("W/\""));
        let second = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), Some(&etag))
            .unwrap();
        let newer = second.doc["etag"].as_str().unwrap().to_string();
        assert_ne!(newer, etag);
        assert_eq!(second.doc["instanceId"], first.doc["instanceId"]);
        let e = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), Some(&etag))
            .unwrap_err();
        assert!(
            matches!(&e, Error::PreconditionFailed { current, .. } if *current == newer),
            "{e}"
        );
        assert!(matches!(
            c.delete(k("loadBalancers"), "LB", Some(&etag)),
            Err(Error::PreconditionFailed { .. })
        ));
        assert!(matches!(
            c.put(k("loadBalancers"), "new", lb(dynamic()), Some(&etag)),
            Err(Error::PreconditionFailed { .. })
        ));
        c.put(k("loadBalancers"), "LB", lb(dynamic()), Some("*"))
            .unwrap();
        let current = c.get(k("loadBalancers"), "LB").unwrap()["etag"]
            .as_str()
            .unwrap()
            .to_string();
        c.delete(k("loadBalancers"), "LB", Some(&current)).unwrap();
    });
}

#[test]
fn what_was_committed_is_there_after_a_reopen() {
    let dir = Dir::new("reopen");
    let path = dir.0.join("store.redb");
    let (etag, revision) = {
        let mut c = Controller::open(RedbStore::open(&path).unwrap(), 7).unwrap();
        with_pools(&mut c);
        let put = c
            .put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        c.put(
            k("publicIPAddresses"),
            "gone",
            json!({"properties": {"publicIPAllocationMethod": "Dynamic"}}),
            None,
        )
        .unwrap();
        c.delete(k("publicIPAddresses"), "gone", None).unwrap();
        (put.doc["etag"].clone(), c.revision())
    };
    let c = Controller::open(RedbStore::open(&path).unwrap(), 8).unwrap();
    assert_eq!(c.revision(), revision);
    assert_eq!(c.len(), 3);
    let doc = c.get(k("loadBalancers"), "lb").unwrap();
    assert_eq!(doc["etag"], etag);
    assert_eq!(vip(&c, "LB"), "192.168.133.74");
    assert!(c.list(k("publicIPAddresses")).is_empty());
    // The indexes were rebuilt: the VIP is still taken, the pool still referred to.
    let mut c = c;
    c.put(k("loadBalancers"), "lb2", lb2(dynamic()), None)
        .unwrap();
    assert_eq!(vip(&c, "lb2"), "192.168.133.75");
    assert!(matches!(
        c.delete(k("logicalNetworks"), "public", None),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn lists_are_by_collection_and_singletons_have_one_name() {
    each(|mut c| {
        with_pools(&mut c);
        c.put(
            k("loadBalancers"),
            "b",
            renamed(lb(dynamic()), "/LB/", "/b/"),
            None,
        )
        .unwrap();
        c.put(
            k("loadBalancers"),
            "a",
            renamed(lb(dynamic()), "/LB/", "/a/"),
            None,
        )
        .unwrap();
        let ids: Vec<Value> = c
            .list(k("loadBalancers"))
            .iter()
            .map(|d| d["resourceId"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b")]);
        assert_eq!(c.list(k("logicalNetworks")).len(), 1);
        assert!(matches!(
            c.put(k("loadBalancerManager"), "other", manager(), None),
            Err(Error::NotFound(_))
        ));
        let bad = c.put(k("loadBalancers"), "a b/c", lb(dynamic()), None);
        assert!(matches!(bad, Err(Error::Invalid(_))));
    });
}

#[test]
fn the_change_log_names_each_write_and_says_when_it_no_longer_reaches_back() {
    let mut c = Controller::open(MemStore::default(), 1).unwrap();
    assert_eq!(c.changes_since(0), Some(Vec::new()));
    c.put(k("logicalNetworks"), "Public", public_network(), None)
        .unwrap();
    c.put(k("loadBalancerManager"), "config", manager(), None)
        .unwrap();
    let r = c.revision();
    c.delete(k("loadBalancerManager"), "config", None).unwrap();
    assert_eq!(
        c.changes_since(0),
        Some(vec![
            ("logicalNetworks", "public"),
            ("loadBalancerManager", "config"),
            ("loadBalancerManager", "config"),
        ])
    );
    assert_eq!(
        c.changes_since(r),
        Some(vec![("loadBalancerManager", "config")])
    );
    assert_eq!(c.changes_since(c.revision()), Some(Vec::new()));
    // Past what it remembers: no answer rather than a partial one.
    for i in 0..LOG_LEN {
        c.put(
            k("credentials"),
            &format!("c{}", i % 3),
            json!({"properties": {"type": "UsernamePassword"}}),
            None,
        )
        .unwrap();
    }
    assert_eq!(c.changes_since(0), None);
    assert_eq!(c.changes_since(r), None);
    let last = c.changes_since(c.revision() - LOG_LEN as u64).unwrap();
    assert_eq!(last.len(), LOG_LEN);
    assert_eq!(c.changes_since(c.revision() - 1).unwrap().len(), 1);
}

#[test]
fn provisioning_settles_in_memory_and_a_reopen_finds_what_was_still_updating() {
    let dir = Dir::new("settle");
    let path = dir.0.join("store.redb");
    {
        let mut c = Controller::open(RedbStore::open(&path).unwrap(), 7).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.oldest_updating(), None);
        c.put(k("logicalNetworks"), "public", public_network(), None)
            .unwrap();
        assert!(!c.is_empty());
        let first = c.revision();
        c.put(k("loadBalancerManager"), "config", manager(), None)
            .unwrap();
        assert_eq!(c.oldest_updating(), Some(first));
        // The first write settles; the second not yet.
        c.settle(first - 1, first, &Ok(()));
        assert_eq!(c.oldest_updating(), Some(first + 1));
        let doc = c.get(k("logicalNetworks"), "public").unwrap();
        assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
        assert_eq!(
            doc["properties"]["subnets"][0]["properties"]["provisioningState"], "Succeeded",
            "its children too"
        );
        // An empty range settles nothing.
        c.settle(first + 1, first + 1, &Ok(()));
        c.settle(first + 1, first, &Ok(()));
        assert_eq!(c.oldest_updating(), Some(first + 1));
        // Written again: Updating since the new write, which the old one's outcome does
        // not settle.
        let second = c.revision();
        c.put(k("loadBalancerManager"), "config", manager(), None)
            .unwrap();
        assert_eq!(c.oldest_updating(), Some(second + 1));
        c.settle(first, second, &Ok(()));
        assert_eq!(c.oldest_updating(), Some(second + 1));
        c.settle(first, c.revision(), &Err("MuxVM: no".into()));
        let doc = c.get(k("loadBalancerManager"), "config").unwrap();
        assert_eq!(doc["properties"]["provisioningState"], "Failed");
        assert_eq!(
            doc["properties"]["configurationState"]["detailedInfo"][0]["message"],
            "MuxVM: no"
        );
        assert_eq!(c.oldest_updating(), None);
    }
    // What settled was kept in memory only: after a restart both read Updating again,
    // until the nodes have them again.
    let c = Controller::open(RedbStore::open(&path).unwrap(), 8).unwrap();
    assert_eq!(c.oldest_updating(), Some(c.revision()));
    let doc = c.get(k("logicalNetworks"), "public").unwrap();
    assert_eq!(doc["properties"]["provisioningState"], "Updating");
}

#[test]
fn instance_ids_and_etags_are_all_different_and_differ_between_seeds() {
    let mut ids = std::collections::HashSet::new();
    let mut etags = std::collections::HashSet::new();
    for seed in [2u64, 4, 1 << 40] {
        let mut c = Controller::open(MemStore::default(), seed).unwrap();
        for i in 0..200 {
            let put = c
                .put(
                    k("credentials"),
                    &format!("c{i}"),
                    json!({"properties": {"type": "UsernamePassword"}}),
                    None,
                )
                .unwrap();
            assert!(ids.insert(put.doc["instanceId"].as_str().unwrap().to_string()));
            assert!(etags.insert(put.doc["etag"].as_str().unwrap().to_string()));
        }
    }
}

#[test]
fn if_match_takes_an_etag_with_or_without_its_weak_prefix() {
    each(|mut c| {
        let put = c
            .put(k("logicalNetworks"), "public", public_network(), None)
            .unwrap();
        let etag = put.doc["etag"].as_str().unwrap().to_string();
        let strong = etag.trim_start_matches("W/").to_string();
        assert_ne!(strong, etag);
        c.put(
            k("logicalNetworks"),
            "public",
            public_network(),
            Some(&strong),
        )
        .unwrap();
    });
}

#[test]
fn internal_frontends_on_virtual_networks_are_no_vips_and_may_share_an_address() {
    each(|mut c| {
        with_pools(&mut c);
        // Tenants' address spaces may overlap each other and the VIP pool.
        for vnet in ["a", "b"] {
            c.put(
                k("virtualNetworks"),
                vnet,
                json!({"properties": {"addressSpace": {"addressPrefixes": ["192.168.133.0/24"]},
                    "subnets": [{"resourceId": "s", "properties": {"addressPrefix": "192.168.133.0/24"}}]}}),
                None,
            )
            .unwrap();
            c.put(
                k("loadBalancers"),
                &format!("internal-{vnet}"),
                json!({"properties": {"frontendIPConfigurations": [{"resourceId": "fe", "properties": {
                    "privateIPAddress": "192.168.133.74", "privateIPAllocationMethod": "Static",
                    "subnet": {"resourceRef": format!("/virtualNetworks/{vnet}/subnets/s")}}}]}}),
                None,
            )
            .unwrap_or_else(|e| panic!("{vnet}: {e}"));
        }
        // A tenant's private address is no VIP: the pool's first is still free.
        c.put(k("loadBalancers"), "LB", lb(dynamic()), None)
            .unwrap();
        assert_eq!(vip(&c, "LB"), "192.168.133.74");
    });
}
