//! The controller's side of the southbound protocol without the I/O: what each node
//! should carry and at which revision, who is admitted, what each agent has applied, and
//! the SLB manager fed by the agents' reports. The TCP server and the lab's NCVM both
//! drive one.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_southbound::peer::Event;

use crate::core::Controller;
use crate::desired::{Compiler, Publisher};
use crate::slb::{HealthChange, SlbManager};
use crate::store::Store;

/// Reports change what the Muxes carry (a DIP programmed, its health, SNAT ranges), and
/// a compilation costs the whole configuration: reports that come within this long of
/// the last compilation wait for the next, and go in together. Writes compile at once.
pub const REPORT_BATCH: Duration = Duration::from_millis(50);

/// What a node's agent last said about its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Applied(u64),
    Failed { revision: u64, reason: String },
}

/// The southbound state of a controller.
#[derive(Debug)]
pub struct Hub {
    secret: String,
    compiler: Compiler,
    publisher: Publisher,
    /// What the publisher holds, shared with whoever serves it.
    snapshot: strata_southbound::Configs,
    slb: SlbManager,
    /// The revision the configurations were last compiled at, and whether a report
    /// changed what the Muxes must carry since.
    compiled_at: Option<u64>,
    observed_changed: bool,
    /// When the configurations were last compiled.
    compiled_when: Option<Duration>,
    revision: u64,
    nodes: BTreeMap<String, NodeState>,
    /// For the writes in `(after, upto]`: the configuration revision they were compiled
    /// into and the nodes whose configuration they changed.
    compilations: Vec<Compilation>,
    /// Whether what [`Hub::settle`] decides may have changed since it last ran (a node
    /// said something, or a compilation came).
    unsettled: bool,
}

/// What became of some writes: applied (`Ok`), refused (`Err`, why), or not known yet.
type Outcome = Option<Result<(), String>>;

#[derive(Debug)]
struct Compilation {
    after: u64,
    upto: u64,
    revision: u64,
    nodes: Vec<String>,
}

impl Hub {
    /// `secret` is what node tokens derive from (see [`strata_southbound::node_token`]).
    pub fn new(secret: impl Into<String>) -> Hub {
        Hub {
            secret: secret.into(),
            compiler: Compiler::new(),
            publisher: Publisher::new(),
            snapshot: strata_southbound::Configs::default(),
            slb: SlbManager::new(),
            compiled_at: None,
            observed_changed: false,
            compiled_when: None,
            revision: 0,
            nodes: BTreeMap::new(),
            compilations: Vec::new(),
            unsettled: false,
        }
    }

    /// Compiles again if the resources changed since the last time, or the reports did
    /// and [`REPORT_BATCH`] has passed since (see [`Hub::refresh_at`]). Returns the
    /// nodes whose configuration changed (or appeared) and those now gone.
    pub fn refresh<S: Store>(
        &mut self,
        c: &Controller<S>,
        now: Duration,
    ) -> (Vec<String>, Vec<String>) {
        let written = self.compiled_at != Some(c.revision());
        let reported = self.refresh_at().is_some_and(|at| at <= now);
        if !written && !reported {
            return (Vec::new(), Vec::new());
        }
        let after = self.compiled_at.unwrap_or(0);
        self.compiled_at = Some(c.revision());
        self.compiled_when = Some(now);
        self.observed_changed = false;
        // A report changes configurations without a write: the revision still moves on.
        let revision = c.revision().max(self.revision + 1);
        // Ports for the outbound rules' DIPs first: they are part of what is compiled.
        let entries = self.compiler.entries(c);
        self.slb.allocate(&entries);
        let compiled = self.compiler.assemble(c, &entries, self.slb.observed());
        let (changed, gone) = self.publisher.update(revision, compiled);
        if !changed.is_empty() {
            self.revision = revision;
        }
        if !changed.is_empty() || !gone.is_empty() {
            self.unsettled = true;
            self.snapshot = std::sync::Arc::new(self.publisher.all().clone());
        }
        for node in &gone {
            self.nodes.remove(node);
        }
        // Only a compilation that took in writes has writes to settle.
        if c.revision() > after {
            self.unsettled = true;
            self.compilations.push(Compilation {
                after,
                upto: c.revision(),
                revision,
                nodes: changed.clone(),
            });
        }
        (changed, gone)
    }

    /// When reports wait to be compiled: the time [`Hub::refresh`] takes them in.
    pub fn refresh_at(&self) -> Option<Duration> {
        self.observed_changed.then(|| {
            self.compiled_when
                .map_or(Duration::ZERO, |t| t + REPORT_BATCH)
        })
    }

    /// What became of the writes of one compilation: applied by every node they changed,
    /// refused by one of them (its reason), or not known yet.
    fn compilation_outcome(&self, compilation: &Compilation) -> Outcome {
        let mut pending = false;
        for node in &compilation.nodes {
            // A node whose configuration has moved on since: what it applies now
            // includes this write.
            match self.nodes.get(node) {
                Some(NodeState::Applied(r)) if *r >= compilation.revision => {}
                Some(NodeState::Failed { revision, reason })
                    if *revision >= compilation.revision =>
                {
                    return Some(Err(format!("{node}: {reason}")));
                }
                _ if !self.publisher.knows(node) => {}
                _ => pending = true,
            }
        }
        (!pending).then_some(Ok(()))
    }

    /// Sets the provisioningState of the resources whose writes every node they changed
    /// has applied (Succeeded), or one refused (Failed).
    pub fn settle<S: Store>(&mut self, c: &mut Controller<S>) {
        if !std::mem::take(&mut self.unsettled) {
            return;
        }
        if c.oldest_updating().is_some() {
            // Each compilation's outcome once, for the writes it holds together.
            for k in &self.compilations {
                if let Some(result) = self.compilation_outcome(k) {
                    c.settle(k.after, k.upto, &result);
                }
            }
        }
        // What no resource waits for any more.
        match c.oldest_updating() {
            Some(oldest) => self.compilations.retain(|k| k.upto >= oldest),
            None => self.compilations.clear(),
        }
    }

    /// Each node's configuration and its revision.
    /// The SLB manager (its SNAT port pool, its events).
    pub fn slb_mut(&mut self) -> &mut SlbManager {
        &mut self.slb
    }

    pub fn configs(&self) -> &strata_southbound::Configs {
        &self.snapshot
    }

    /// The current revision of a known node whose token is right.
    pub fn admit(&self, node: &str, token: &str) -> Option<u64> {
        let (revision, _) = self.publisher.get(node)?;
        (token == strata_southbound::node_token(&self.secret, node)).then_some(*revision)
    }

    /// Takes what a connection reported. Returns the DIP health changes a host reported
    /// (the Muxes' configurations change with them at the next [`Hub::refresh`]).
    pub fn event(&mut self, event: &Event) -> Vec<HealthChange> {
        if !matches!(
            event,
            Event::Send(_) | Event::Close(_) | Event::Report { .. }
        ) {
            self.unsettled = true;
        }
        match event {
            Event::Applied { node, revision } => {
                self.nodes
                    .insert(node.clone(), NodeState::Applied(*revision));
                Vec::new()
            }
            Event::Failed {
                node,
                revision,
                reason,
            } => {
                self.nodes.insert(
                    node.clone(),
                    NodeState::Failed {
                        revision: *revision,
                        reason: reason.clone(),
                    },
                );
                Vec::new()
            }
            Event::Report { node, status } => {
                let (health, changed) = self.slb.report(node, status);
                self.observed_changed |= changed;
                health
            }
            Event::Accepted {
                node,
                applied: Some(revision),
            } => {
                // Reconnected with a configuration: what it applied before.
                self.nodes
                    .insert(node.clone(), NodeState::Applied(*revision));
                Vec::new()
            }
            Event::Send(_) | Event::Close(_) | Event::Accepted { .. } => Vec::new(),
        }
    }

    /// What a node's agent last said.
    pub fn node_state(&self, node: &str) -> Option<&NodeState> {
        self.nodes.get(node)
    }

    /// Whether every node has applied its current configuration.
    pub fn converged(&self) -> bool {
        // Reports waiting for their batch will change what some nodes carry.
        self.refresh_at().is_none()
            && self.publisher.all().iter().all(|(node, (revision, _))| {
                self.nodes.get(node) == Some(&NodeState::Applied(*revision))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time of the tests' first compilation.
    const T: Duration = Duration::from_secs(1);
    use crate::MemStore;
    use serde_json::json;
    use strata_model::kind;

    fn put(c: &mut Controller<MemStore>, collection: &str, id: &str, body: serde_json::Value) {
        c.put(kind(collection).unwrap(), id, body, None).unwrap();
    }

    fn mux(asn: u32) -> serde_json::Value {
        json!({"properties": {"routerConfiguration": {"localASN": asn, "peerRouterConfigurations": []}}})
    }

    fn state(c: &Controller<MemStore>, collection: &str, id: &str) -> serde_json::Value {
        c.get(kind(collection).unwrap(), id).unwrap()["properties"]["provisioningState"].clone()
    }

    fn applied(node: &str, revision: u64) -> Event {
        Event::Applied {
            node: node.into(),
            revision,
        }
    }

    #[test]
    fn it_compiles_when_something_changed_and_a_report_moves_the_revision_on() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        let mut hub = Hub::new("s");
        put(&mut c, "servers", "HyperVHost", json!({"properties": {}}));
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64501));
        let (changed, gone) = hub.refresh(&c, T);
        assert_eq!((changed.len(), gone.len()), (2, 0));
        let first = hub.configs()["MuxVM"].0;
        assert_eq!(first, c.revision());
        // Nothing new: nothing compiled.
        assert_eq!(hub.refresh(&c, T), (Vec::new(), Vec::new()));
        // A host's report that changes nothing the nodes carry: no new revision.
        hub.event(&Event::Report {
            node: "HyperVHost".into(),
            status: json!({"bgp": []}),
        });
        assert_eq!(hub.refresh_at(), None);
        assert_eq!(hub.refresh(&c, T), (Vec::new(), Vec::new()));
        // One that changes what the SLB manager knows (a provider address): compiled
        // again, once the batch's time has come.
        hub.event(&Event::Report {
            node: "HyperVHost".into(),
            status: json!({"providerAddresses": ["192.168.233.21"], "dips": []}),
        });
        assert_eq!(hub.refresh_at(), Some(T + REPORT_BATCH));
        // Nothing the nodes carry depends on it without a VIP: no node changes.
        assert_eq!(hub.refresh(&c, T + REPORT_BATCH), (Vec::new(), Vec::new()));
        assert_eq!(hub.refresh_at(), None);
        // A write changes the Mux; its revision is the write's.
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64502));
        let (changed, _) = hub.refresh(&c, T);
        assert_eq!(changed, ["MuxVM"]);
        assert_eq!(hub.configs()["MuxVM"].0, c.revision());
        assert_eq!(hub.configs()["HyperVHost"].0, first);
        // Gone: out of the configurations served.
        c.delete(kind("loadBalancerMuxes").unwrap(), "MuxVM", None)
            .unwrap();
        let (_, gone) = hub.refresh(&c, T);
        assert_eq!(gone, ["MuxVM"]);
        assert!(!hub.configs().contains_key("MuxVM"));
        assert_eq!(
            hub.admit("MuxVM", &strata_southbound::node_token("s", "MuxVM")),
            None
        );
    }

    #[test]
    fn a_report_alone_gives_a_configuration_a_revision_past_every_earlier_one() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        crate::desired::tests_support::portal(&mut c);
        let mut hub = Hub::new("s");
        hub.refresh(&c, T);
        let before = hub.configs()["MuxVM"].0;
        // The host says it has the DIP: the Muxes get it, without any write.
        hub.event(&Event::Report {
            node: "HyperVHost".into(),
            status: json!({"providerAddresses": ["192.168.233.21"],
                "dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        });
        let (changed, _) = hub.refresh(&c, T + REPORT_BATCH);
        assert!(changed.contains(&"MuxVM".to_string()), "{changed:?}");
        let after = hub.configs()["MuxVM"].0;
        assert!(after > before, "{after} after {before}");
        // And again: each time past the last.
        hub.event(&Event::Report {
            node: "HyperVHost".into(),
            status: json!({"dips": [{"dip": "192.168.100.74", "healthy": false}]}),
        });
        hub.refresh(&c, T + 2 * REPORT_BATCH);
        assert!(hub.configs()["MuxVM"].0 > after);
    }

    #[test]
    fn reports_wait_for_the_batch_and_a_write_takes_them_in_at_once() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        crate::desired::tests_support::portal(&mut c);
        let mut hub = Hub::new("s");
        hub.refresh(&c, T);
        let report = |hub: &mut Hub, healthy: bool| {
            hub.event(&Event::Report {
                node: "HyperVHost".into(),
                status: json!({"providerAddresses": ["192.168.233.21"],
                    "dips": [{"dip": "192.168.100.74", "healthy": healthy}]}),
            });
        };
        let dip_in_mux = |hub: &Hub| {
            hub.configs()["MuxVM"].1["mux"]["vips"]["192.168.133.74 tcp 80"]["backends"][0]
                ["healthy"]
                .clone()
        };
        // Two reports within the batch: nothing compiled until its end, then both.
        report(&mut hub, true);
        let soon = T + REPORT_BATCH / 5;
        assert_eq!(hub.refresh(&c, soon), (Vec::new(), Vec::new()));
        report(&mut hub, false);
        assert_eq!(hub.refresh_at(), Some(T + REPORT_BATCH));
        let just_before = T + REPORT_BATCH - Duration::from_micros(1);
        assert_eq!(hub.refresh(&c, just_before), (Vec::new(), Vec::new()));
        assert_eq!(dip_in_mux(&hub), serde_json::Value::Null);
        for node in ["MuxVM", "HyperVHost"] {
            let revision = hub.configs()[node].0;
            hub.event(&applied(node, revision));
        }
        assert!(!hub.converged(), "reports wait to be compiled");
        let (changed, _) = hub.refresh(&c, T + REPORT_BATCH);
        assert!(changed.contains(&"MuxVM".to_string()), "{changed:?}");
        assert_eq!(dip_in_mux(&hub), json!(false));
        // A report, then a write before its batch ends: compiled with the write.
        report(&mut hub, true);
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64502));
        hub.refresh(&c, T + REPORT_BATCH + Duration::from_millis(1));
        assert_eq!(dip_in_mux(&hub), json!(true));
        assert_eq!(hub.refresh_at(), None);
    }

    #[test]
    fn each_write_succeeds_once_the_nodes_it_changed_have_applied_it() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        let mut hub = Hub::new("s");
        put(&mut c, "servers", "HyperVHost", json!({"properties": {}}));
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64501));
        hub.refresh(&c, T);
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Updating");
        assert!(!hub.converged());
        hub.event(&applied("MuxVM", c.revision()));
        hub.settle(&mut c);
        // The server's node has not applied its configuration yet.
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Updating");
        hub.event(&applied("HyperVHost", c.revision()));
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Succeeded");
        assert_eq!(state(&c, "servers", "HyperVHost"), "Succeeded");
        assert!(hub.converged());
        // A second write, then a third: each settles as its node applies it.
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64502));
        hub.refresh(&c, T);
        let second = c.revision();
        put(
            &mut c,
            "credentials",
            "x",
            json!({"properties": {"type": "UsernamePassword"}}),
        );
        hub.refresh(&c, T);
        hub.settle(&mut c);
        assert_eq!(
            state(&c, "credentials", "x"),
            "Succeeded",
            "it changes no node"
        );
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Updating");
        hub.event(&applied("MuxVM", second));
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Succeeded");
        // A node that cannot apply: Failed, with its reason.
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64503));
        hub.refresh(&c, T);
        hub.event(&Event::Failed {
            node: "MuxVM".into(),
            revision: c.revision(),
            reason: "no".into(),
        });
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Failed");
        assert_eq!(
            hub.node_state("MuxVM"),
            Some(&NodeState::Failed {
                revision: c.revision(),
                reason: "no".into()
            })
        );
        // A reconnecting agent that had applied a revision counts as having it.
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64504));
        hub.refresh(&c, T);
        hub.event(&Event::Accepted {
            node: "MuxVM".into(),
            applied: Some(c.revision()),
        });
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Succeeded");
        // A failure of an earlier revision says nothing of a later write.
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64505));
        hub.refresh(&c, T);
        let earlier = c.revision();
        hub.event(&Event::Failed {
            node: "MuxVM".into(),
            revision: earlier,
            reason: "no".into(),
        });
        put(&mut c, "loadBalancerMuxes", "MuxVM", mux(64506));
        hub.refresh(&c, T);
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Updating");
        hub.event(&applied("MuxVM", c.revision()));
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancerMuxes", "MuxVM"), "Succeeded");
        assert!(c.oldest_updating().is_none());
    }

    #[test]
    fn a_write_waits_no_more_for_a_node_deleted_before_it_applied() {
        let mut c = Controller::open(MemStore::default(), 1).unwrap();
        crate::desired::tests_support::portal(&mut c);
        let mut hub = Hub::new("s");
        hub.refresh(&c, T);
        for node in ["MuxVM", "HyperVHost"] {
            let revision = hub.configs()[node].0;
            hub.event(&applied(node, revision));
        }
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancers", "portal"), "Succeeded");
        // The rule changes: the host's mappings with it.
        let mut lb = c.get(kind("loadBalancers").unwrap(), "portal").unwrap();
        lb["properties"]["loadBalancingRules"][0]["properties"]["backendPort"] = json!(8080);
        put(&mut c, "loadBalancers", "portal", lb);
        let (changed, _) = hub.refresh(&c, T);
        assert_eq!(changed, ["HyperVHost"]);
        // The host goes before it applied (its NIC first, which refers to it).
        c.delete(kind("networkInterfaces").unwrap(), "PortalVM", None)
            .unwrap();
        c.delete(kind("servers").unwrap(), "HyperVHost", None)
            .unwrap();
        let (_, gone) = hub.refresh(&c, T);
        assert_eq!(gone, ["HyperVHost"]);
        hub.settle(&mut c);
        assert_eq!(state(&c, "loadBalancers", "portal"), "Succeeded");
    }
}
