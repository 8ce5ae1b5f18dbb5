//! What each node should carry, from the stored resources: every Mux (by its
//! loadBalancerMuxes id) gets its peering and every VIP; every host (by its servers id)
//! gets its DIPs' mappings and probes. [`Publisher`] numbers each node's configuration
//! with the revision at which it last changed, so an agent is sent only what changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use strata_model::compile::{self, Observed, Resources};
use strata_model::doc::canonical;

use crate::core::Controller;
use crate::store::Store;

impl<S: Store> Resources for Controller<S> {
    fn get(&self, reference: &str) -> Option<&Value> {
        self.resolve_ref(reference)
    }

    fn all(&self, collection: &str) -> Vec<&Value> {
        self.documents(collection)
    }

    fn referrers(&self, canonical: &str) -> Vec<(String, String)> {
        self.referrers_of(canonical)
    }
}

/// Every node's configuration as JSON, by node name, with what the agents reported
/// (`observed`: the hosts' provider addresses and the DIPs' health).
pub fn compile<S: Store>(c: &Controller<S>, observed: &Observed) -> BTreeMap<String, Value> {
    let vips = compile::vips(c);
    let mut out = BTreeMap::new();
    let observed_vips = compile::observe(&vips, observed);
    for mux in c.documents("loadBalancerMuxes") {
        let (Some(id), Some(config)) = (
            mux.get("resourceId").and_then(Value::as_str),
            compile::mux(mux, &observed_vips),
        ) else {
            continue;
        };
        let value = serde_json::json!({"role": "mux", "mux": config});
        out.insert(id.to_string(), value);
    }
    let hosts = compile::hosts(&vips);
    for server in c.documents("servers") {
        let (Some(id), Some(reference)) = (
            server.get("resourceId").and_then(Value::as_str),
            server.get("resourceRef").and_then(Value::as_str),
        ) else {
            continue;
        };
        let host = hosts
            .get(&canonical(reference))
            .cloned()
            .unwrap_or_default();
        out.insert(
            id.to_string(),
            serde_json::json!({"role": "host", "host": host}),
        );
    }
    out
}

/// Each node's configuration and the revision at which it last changed.
#[derive(Debug, Default)]
pub struct Publisher {
    nodes: BTreeMap<String, (u64, Arc<Value>)>,
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// Takes a fresh compilation at `revision`; returns the nodes whose configuration
    /// changed (or appeared), and those that are gone.
    pub fn update(
        &mut self,
        revision: u64,
        compiled: BTreeMap<String, Value>,
    ) -> (Vec<String>, Vec<String>) {
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !compiled.contains_key(*n))
            .cloned()
            .collect();
        for n in &gone {
            self.nodes.remove(n);
        }
        let mut changed = Vec::new();
        for (node, config) in compiled {
            match self.nodes.get(&node) {
                Some((_, old)) if **old == config => {}
                _ => {
                    self.nodes.insert(node.clone(), (revision, Arc::new(config)));
                    changed.push(node);
                }
            }
        }
        (changed, gone)
    }

    /// A node's configuration and its revision.
    pub fn get(&self, node: &str) -> Option<&(u64, Arc<Value>)> {
        self.nodes.get(node)
    }

    /// Every node's configuration and revision.
    pub fn all(&self) -> &BTreeMap<String, (u64, Arc<Value>)> {
        &self.nodes
    }

    /// Whether a node has a configuration (is known to the controller).
    pub fn knows(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use serde_json::json;
    use strata_model::kind;

    /// The host has reported its provider address.
    fn observed() -> Observed {
        let mut o = Observed::default();
        o.provider_addresses.insert(
            "/servers/hypervhost".into(),
            vec!["192.168.233.21".parse().unwrap()],
        );
        o.programmed.insert(
            "/servers/hypervhost".into(),
            [
                "192.168.100.74".parse().unwrap(),
                "192.168.100.75".parse().unwrap(),
            ]
            .into(),
        );
        o
    }

    fn put(c: &mut Controller<MemStore>, collection: &str, id: &str, body: Value) {
        c.put(kind(collection).unwrap(), id, body, None).unwrap();
    }

    fn portal(c: &mut Controller<MemStore>) {
        put(c, "servers", "HyperVHost", json!({"properties": {}}));
        put(
            c,
            "loadBalancerMuxes",
            "MuxVM",
            json!({"properties": {"routerConfiguration": {"localASN": 64501, "peerRouterConfigurations": [{"routerIPAddress": "192.168.100.1", "peerASN": 64500}]}}}),
        );
        put(
            c,
            "logicalNetworks",
            "public",
            json!({"properties": {"subnets": [{"resourceId": "vip", "properties": {"addressPrefix": "192.168.133.0/24", "ipPools": [{"resourceId": "pool", "properties": {"startIPAddress": "192.168.133.74", "endIPAddress": "192.168.133.99"}}]}}]}}),
        );
        put(
            c,
            "loadBalancerManager",
            "config",
            json!({"properties": {"vipIpPools": [{"resourceRef": "/logicalNetworks/public/subnets/vip/ipPools/pool"}]}}),
        );
        put(
            c,
            "loadBalancers",
            "portal",
            json!({"properties": {
                "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
                "backendAddressPools": [{"resourceId": "web"}],
                "loadBalancingRules": [{"resourceId": "http", "properties": {"protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
                    "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
                    "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}}}]
            }}),
        );
        put(
            c,
            "networkInterfaces",
            "PortalVM",
            json!({"properties": {"server": {"resourceRef": "/servers/HyperVHost"}, "ipConfigurations": [{"resourceId": "ip1", "properties": {"privateIPAddress": "192.168.100.74", "loadBalancerBackendAddressPools": [{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]}}]}}),
        );
    }

    #[test]
    fn muxes_and_hosts_get_their_parts_of_the_resources() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        portal(&mut c);
        let nodes = compile(&c, &observed());
        assert_eq!(nodes.keys().collect::<Vec<_>>(), ["HyperVHost", "MuxVM"]);
        let mux = &nodes["MuxVM"];
        assert_eq!(mux["role"], "mux");
        assert_eq!(mux["mux"]["localAsn"], 64501);
        assert_eq!(
            mux["mux"]["vips"]["192.168.133.74 tcp 80"]["vip"],
            "192.168.133.74"
        );
        let backend = &mux["mux"]["vips"]["192.168.133.74 tcp 80"]["backends"][0];
        assert_eq!(backend["dip"], "192.168.100.74");
        assert_eq!(backend["providerAddress"], "192.168.233.21");
        assert_eq!(backend["healthy"], true);
        // Until the host reports its provider address and the DIP programmed, the Muxes
        // cannot send it anything.
        let mut unprogrammed = observed();
        unprogrammed.programmed.clear();
        let nodes = compile(&c, &unprogrammed);
        assert_eq!(
            nodes["MuxVM"]["mux"]["vips"]["192.168.133.74 tcp 80"]["backends"],
            json!([])
        );
        let unreported = compile(&c, &Observed::default());
        assert_eq!(
            unreported["MuxVM"]["mux"]["vips"]["192.168.133.74 tcp 80"]["backends"],
            json!([])
        );
        assert_eq!(
            unreported["HyperVHost"]["host"]["mappings"]["192.168.100.74 192.168.133.74 tcp 80"]["dip"],
            "192.168.100.74"
        );
        // A DIP reported down is carried as such.
        let mut down = observed();
        down.down.insert("192.168.100.74".parse().unwrap());
        let nodes = compile(&c, &down);
        assert_eq!(
            nodes["MuxVM"]["mux"]["vips"]["192.168.133.74 tcp 80"]["backends"][0]["healthy"],
            false
        );
        let host = &nodes["HyperVHost"];
        assert_eq!(
            host["host"]["mappings"]["192.168.100.74 192.168.133.74 tcp 80"]["dip"],
            "192.168.100.74"
        );
    }

    #[test]
    fn a_nodes_revision_moves_only_when_its_configuration_changes() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        portal(&mut c);
        let mut p = Publisher::new();
        let (changed, gone) = p.update(c.revision(), compile(&c, &observed()));
        assert_eq!((changed.len(), gone.len()), (2, 0));
        let first = c.revision();
        // A resource nobody compiles from: no node changes.
        put(
            &mut c,
            "credentials",
            "x",
            json!({"properties": {"type": "UsernamePassword"}}),
        );
        let (changed, _) = p.update(c.revision(), compile(&c, &observed()));
        assert!(changed.is_empty());
        assert_eq!(p.get("MuxVM").unwrap().0, first);
        // A second DIP: both the Mux and the host change.
        put(
            &mut c,
            "networkInterfaces",
            "PortalVM2",
            json!({"properties": {"server": {"resourceRef": "/servers/HyperVHost"}, "ipConfigurations": [{"resourceId": "ip1", "properties": {"privateIPAddress": "192.168.100.75", "loadBalancerBackendAddressPools": [{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]}}]}}),
        );
        let (changed, _) = p.update(c.revision(), compile(&c, &observed()));
        assert_eq!(changed, ["HyperVHost", "MuxVM"]);
        assert_eq!(p.get("MuxVM").unwrap().0, c.revision());
        // A Mux removed is gone.
        c.delete(kind("loadBalancerMuxes").unwrap(), "MuxVM", None)
            .unwrap();
        let (_, gone) = p.update(c.revision(), compile(&c, &observed()));
        assert_eq!(gone, ["MuxVM"]);
        assert!(!p.knows("MuxVM"));
        assert!(p.knows("HyperVHost"));
    }
}
