//! What each node should carry, from the stored resources: every Mux (by its
//! loadBalancerMuxes id) gets its peering and every VIP; every host (by its servers id)
//! gets its DIPs' mappings and probes. [`Publisher`] numbers each node's configuration
//! with the revision at which it last changed, so an agent is sent only what changed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use strata_model::compile::{self, HostConfig, Observed, Resources, Vip};
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
    assemble(c, &compile::vips(c), observed, &mut Written::default())
        .into_iter()
        .filter_map(|(node, config)| Some((node, config?)))
        .collect()
}

/// Each node's configuration, or `None` where it is the same as the last time.
pub type Compiled = BTreeMap<String, Option<Value>>;

/// The configurations' parts as last written out, so that what did not change is not
/// written out again.
#[derive(Debug, Default)]
struct Written {
    /// The Muxes' VIP entries: each entry as compiled, and all of them as JSON.
    vips: HashMap<String, Vip>,
    entries: serde_json::Map<String, Value>,
    /// Each Mux's own part (peering), by id.
    muxes: HashMap<String, compile::MuxConfig>,
    /// Each host's configuration, by server reference.
    hosts: HashMap<String, HostConfig>,
    /// The SNAT ranges every Mux carries, by `VIP start`.
    snat: BTreeMap<String, compile::SnatRange>,
}

/// Each node's configuration from the VIP entries (`None`: the same as the last time
/// with this `written`).
fn assemble<S: Store>(
    c: &Controller<S>,
    vips: &[Vip],
    observed: &Observed,
    written: &mut Written,
) -> Compiled {
    let mut out = BTreeMap::new();
    let observed_vips = compile::observe(vips, observed);
    let mut present = HashSet::with_capacity(observed_vips.len());
    let mut entries_changed = false;
    let snat = compile::snat_ranges(&observed_vips, &observed.snat);
    let snat_changed = written.snat != snat;
    written.snat = snat;
    // The Muxes match the load-balancing and inbound NAT entries; outbound entries reach
    // them as SNAT ranges.
    for v in observed_vips.into_iter().filter(|v| !v.outbound) {
        let key = v.key();
        if written.vips.get(&key) != Some(&v) {
            written
                .entries
                .insert(key.clone(), serde_json::to_value(&v).unwrap_or(Value::Null));
            written.vips.insert(key.clone(), v);
            entries_changed = true;
        }
        present.insert(key);
    }
    if present.len() != written.vips.len() {
        written.vips.retain(|k, _| present.contains(k));
        written.entries.retain(|k, _| present.contains(k));
        entries_changed = true;
    }
    let mut muxes = HashMap::new();
    for mux in c.documents("loadBalancerMuxes") {
        let (Some(id), Some(config)) = (
            mux.get("resourceId").and_then(Value::as_str),
            compile::mux(mux, &[]),
        ) else {
            continue;
        };
        if !entries_changed && !snat_changed && written.muxes.get(id) == Some(&config) {
            out.insert(id.to_string(), None);
        } else {
            let mut value = serde_json::json!({"role": "mux", "mux": &config});
            value["mux"]["vips"] = Value::Object(written.entries.clone());
            if !written.snat.is_empty() {
                value["mux"]["snat"] = serde_json::to_value(&written.snat).unwrap_or_default();
            }
            out.insert(id.to_string(), Some(value));
        }
        muxes.insert(id.to_string(), config);
    }
    written.muxes = muxes;
    let mut hosts = compile::hosts(vips, &observed.snat);
    let mut hosts_written = HashMap::new();
    for server in c.documents("servers") {
        let (Some(id), Some(reference)) = (
            server.get("resourceId").and_then(Value::as_str),
            server.get("resourceRef").and_then(Value::as_str),
        ) else {
            continue;
        };
        let reference = canonical(reference);
        let host = hosts.remove(&reference).unwrap_or_default();
        if written.hosts.get(&reference) == Some(&host) {
            out.insert(id.to_string(), None);
        } else {
            out.insert(
                id.to_string(),
                Some(serde_json::json!({"role": "host", "host": &host})),
            );
        }
        hosts_written.insert(reference, host);
    }
    written.hosts = hosts_written;
    out
}

/// Reads resources for the compiler and notes which resources it read.
struct Recording<'a, S> {
    c: &'a Controller<S>,
    reads: RefCell<BTreeSet<String>>,
}

impl<S: Store> Resources for Recording<'_, S> {
    fn get(&self, reference: &str) -> Option<&Value> {
        // The resource the reference is in: its first two segments.
        let top: String = canonical(reference)
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/");
        self.reads.borrow_mut().insert(top);
        self.c.resolve_ref(reference)
    }

    fn all(&self, collection: &str) -> Vec<&Value> {
        self.c.documents(collection)
    }

    fn referrers(&self, canonical: &str) -> Vec<(String, String)> {
        self.c.referrers_of(canonical)
    }
}

/// The id of the load balancer a (canonical) reference points into, if it does.
fn load_balancer_of(reference: &str) -> Option<&str> {
    reference.strip_prefix("/loadbalancers/")?.split('/').next()
}

/// Every reference in a document.
fn references_in<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("resourceRef") {
                out.push(r);
            }
            m.values().for_each(|v| references_in(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| references_in(v, out)),
        _ => {}
    }
}

/// Compiles as the resources change: each load balancer's VIP entries are kept, and a
/// write compiles again only the load balancers it can change (the one written, those
/// that read the resource written, those a written NIC or public IP address refers
/// to). What the result is does not depend on it: [`compile`] gives the same.
#[derive(Debug, Default)]
pub struct Compiler {
    /// The controller revision the entries are at.
    at: Option<u64>,
    /// Each load balancer's entries, by id (lowercase).
    lbs: BTreeMap<String, Vec<Vip>>,
    /// What each load balancer's entries were compiled from: resource references.
    reads: HashMap<String, BTreeSet<String>>,
    /// The other way: by resource reference, the load balancers that read it.
    readers: HashMap<String, BTreeSet<String>>,
    written: Written,
}

impl Compiler {
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Every node's configuration, as [`compile`] gives it, or `None` where it is the
    /// same as the last time.
    pub fn compile<S: Store>(&mut self, c: &Controller<S>, observed: &Observed) -> Compiled {
        let vips = self.entries(c);
        self.assemble(c, &vips, observed)
    }

    /// [`Compiler::compile`] of the entries [`Compiler::entries`] just gave (for a caller
    /// that reads them first: the SLB manager hands out ports for them).
    pub fn assemble<S: Store>(
        &mut self,
        c: &Controller<S>,
        vips: &[Vip],
        observed: &Observed,
    ) -> Compiled {
        assemble(c, vips, observed, &mut self.written)
    }

    /// Every entry of every load balancer, as [`compile::vips`] gives them.
    pub fn entries<S: Store>(&mut self, c: &Controller<S>) -> Vec<Vip> {
        self.update(c);
        let mut vips: Vec<Vip> = self.lbs.values().flatten().cloned().collect();
        compile::sort_vips(&mut vips);
        vips
    }

    fn update<S: Store>(&mut self, c: &Controller<S>) {
        let changes = self.at.and_then(|at| c.changes_since(at));
        self.at = Some(c.revision());
        let Some(changes) = changes else {
            // From scratch.
            self.lbs.clear();
            self.reads.clear();
            self.readers.clear();
            let ids: Vec<String> = c
                .documents("loadBalancers")
                .iter()
                .filter_map(|d| d.get("resourceId")?.as_str())
                .map(str::to_ascii_lowercase)
                .collect();
            for id in ids {
                self.compile_lb(c, &id);
            }
            return;
        };
        let mut dirty = BTreeSet::new();
        for (kind, id) in changes {
            let reference = canonical(&format!("/{kind}/{id}"));
            if kind == "loadBalancers" {
                dirty.insert(id.to_ascii_lowercase());
            }
            if let Some(lbs) = self.readers.get(&reference) {
                dirty.extend(lbs.iter().cloned());
            }
            // What it refers to now (a NIC joining a pool), or what refers to it now (a
            // frontend on a public IP address).
            let mut refs = Vec::new();
            if let Some(doc) = c.resolve_ref(&reference) {
                references_in(doc, &mut refs);
            }
            let referrers = c.referrers_of(&reference);
            for r in refs
                .into_iter()
                .map(canonical)
                .chain(referrers.into_iter().map(|(from, _)| canonical(&from)))
            {
                if let Some(lb) = load_balancer_of(&r) {
                    dirty.insert(lb.to_string());
                }
            }
        }
        for id in dirty {
            self.compile_lb(c, &id);
        }
    }

    /// Compiles one load balancer's entries again (or forgets it, if it is gone).
    fn compile_lb<S: Store>(&mut self, c: &Controller<S>, id: &str) {
        for read in self.reads.remove(id).unwrap_or_default() {
            if let Some(lbs) = self.readers.get_mut(&read) {
                lbs.remove(id);
                if lbs.is_empty() {
                    self.readers.remove(&read);
                }
            }
        }
        let Some(doc) = c.resolve_ref(&format!("/loadBalancers/{id}")) else {
            self.lbs.remove(id);
            return;
        };
        let recording = Recording {
            c,
            reads: RefCell::new(BTreeSet::new()),
        };
        let vips = compile::lb_vips(&recording, doc);
        let reads = recording.reads.into_inner();
        for read in &reads {
            self.readers
                .entry(read.clone())
                .or_default()
                .insert(id.to_string());
        }
        self.reads.insert(id.to_string(), reads);
        self.lbs.insert(id.to_string(), vips);
    }
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
    pub fn update(&mut self, revision: u64, compiled: Compiled) -> (Vec<String>, Vec<String>) {
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
            // The same as the last time.
            let Some(config) = config else { continue };
            match self.nodes.get(&node) {
                Some((_, old)) if **old == config => {}
                _ => {
                    self.nodes
                        .insert(node.clone(), (revision, Arc::new(config)));
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

/// What the tests of other modules build on.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::portal;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use serde_json::json;
    use std::net::IpAddr;
    use strata_model::kind;

    /// A whole compilation, as the publisher takes it.
    fn fresh(compiled: BTreeMap<String, Value>) -> Compiled {
        compiled.into_iter().map(|(n, v)| (n, Some(v))).collect()
    }

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

    pub(crate) fn portal(c: &mut Controller<MemStore>) {
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
            nodes["MuxVM"]["mux"]["vips"],
            json!({}),
            "no backend: no entry"
        );
        let unreported = compile(&c, &Observed::default());
        assert_eq!(unreported["MuxVM"]["mux"]["vips"], json!({}));
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
        let (changed, gone) = p.update(c.revision(), fresh(compile(&c, &observed())));
        assert_eq!((changed.len(), gone.len()), (2, 0));
        let first = c.revision();
        // A resource nobody compiles from: no node changes.
        put(
            &mut c,
            "credentials",
            "x",
            json!({"properties": {"type": "UsernamePassword"}}),
        );
        let (changed, _) = p.update(c.revision(), fresh(compile(&c, &observed())));
        assert!(changed.is_empty());
        assert_eq!(p.get("MuxVM").unwrap().0, first);
        // A second DIP: both the Mux and the host change.
        put(
            &mut c,
            "networkInterfaces",
            "PortalVM2",
            json!({"properties": {"server": {"resourceRef": "/servers/HyperVHost"}, "ipConfigurations": [{"resourceId": "ip1", "properties": {"privateIPAddress": "192.168.100.75", "loadBalancerBackendAddressPools": [{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]}}]}}),
        );
        let (changed, _) = p.update(c.revision(), fresh(compile(&c, &observed())));
        assert_eq!(changed, ["HyperVHost", "MuxVM"]);
        assert_eq!(p.get("MuxVM").unwrap().0, c.revision());
        // A Mux removed is gone.
        c.delete(kind("loadBalancerMuxes").unwrap(), "MuxVM", None)
            .unwrap();
        let (_, gone) = p.update(c.revision(), fresh(compile(&c, &observed())));
        assert_eq!(gone, ["MuxVM"]);
        assert!(!p.knows("MuxVM"));
        assert!(p.knows("HyperVHost"));
    }

    /// A step of a random history of writes.
    fn step(c: &mut Controller<MemStore>, rng: &mut u64) {
        *rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (*rng >> 33) as usize;
        let lb = format!("lb{}", r % 4);
        let nic = format!("nic{}", (r / 4) % 4);
        let pool = |lb: &str| json!({"resourceRef": format!("/loadBalancers/{lb}/backendAddressPools/web")});
        let _ = match (r / 16) % 9 {
            0 | 1 => c.put(
                kind("loadBalancers").unwrap(),
                &lb,
                json!({"properties": {
                    "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
                    "backendAddressPools": [{"resourceId": "web"}],
                    "probes": [{"resourceId": "p", "properties": {"protocol": "Tcp", "port": 80 + (r % 3) as u64}}],
                    "loadBalancingRules": [{"resourceId": "http", "properties": {"protocol": "Tcp",
                        "frontendPort": 80 + (r % 2) as u64, "backendPort": 80,
                        "frontendIPConfigurations": [{"resourceRef": format!("/loadBalancers/{lb}/frontendIPConfigurations/fe")}],
                        "backendAddressPool": {"resourceRef": format!("/loadBalancers/{lb}/backendAddressPools/web")},
                        "probe": {"resourceRef": format!("/loadBalancers/{lb}/probes/p")}}}]
                }}),
                None,
            ).map(drop),
            2 | 3 => {
                // A NIC in one or two pools (that exist).
                let other = format!("lb{}", (r / 128) % 4);
                let pools: Vec<Value> = [lb.as_str(), other.as_str()]
                    .iter()
                    .filter(|l| c.resolve_ref(&format!("/loadBalancers/{l}")).is_some())
                    .map(|l| pool(l))
                    .collect();
                c.put(
                    kind("networkInterfaces").unwrap(),
                    &nic,
                    json!({"properties": {
                        "server": {"resourceRef": "/servers/HyperVHost"},
                        "privateMacAddress": format!("001DD80700{:02X}", (r / 4) % 4),
                        "ipConfigurations": [{"resourceId": "ip1", "properties": {
                            "privateIPAddress": format!("192.168.100.{}", 70 + (r / 4) % 4),
                            "loadBalancerBackendAddressPools": pools}}]}}),
                    None,
                )
                .map(drop)
            }
            4 => c.delete(kind("networkInterfaces").unwrap(), &nic, None),
            5 => c.delete(kind("loadBalancers").unwrap(), &lb, None),
            // A host that comes and goes.
            6 => c
                .put(kind("servers").unwrap(), "Spare", json!({"properties": {}}), None)
                .map(drop),
            7 => c.delete(kind("servers").unwrap(), "Spare", None),
            _ => c.put(
                kind("credentials").unwrap(),
                "x",
                json!({"properties": {"type": "UsernamePassword"}}),
                None,
            ).map(drop),
        };
    }

    #[test]
    fn compiling_as_resources_change_gives_what_compiling_everything_gives() {
        for seed in 1..40u64 {
            let mut c = Controller::open(MemStore::default(), 1).unwrap();
            portal(&mut c);
            let mut compiler = Compiler::new();
            let mut publisher = Publisher::new();
            let mut rng = seed;
            // The random NICs' DIPs programmed too, so the Muxes' entries come and go.
            let mut observed = observed();
            if let Some(dips) = observed.programmed.get_mut("/servers/hypervhost") {
                dips.extend(
                    (70..74).map(|i| format!("192.168.100.{i}").parse::<IpAddr>().unwrap()),
                );
            }
            for i in 0..60 {
                step(&mut c, &mut rng);
                // Sometimes several writes between two compilations.
                if i % 3 == 0 {
                    continue;
                }
                publisher.update(c.revision(), compiler.compile(&c, &observed));
                let published: BTreeMap<String, Value> = publisher
                    .all()
                    .iter()
                    .map(|(n, (_, v))| (n.clone(), Value::clone(v)))
                    .collect();
                assert_eq!(published, compile(&c, &observed), "seed {seed}, step {i}");
            }
        }
    }
}
