//! The controller's side of the southbound protocol without the I/O: what each node
//! should carry and at which revision, who is admitted, what each agent has applied, and
//! the SLB manager fed by the agents' reports. The TCP server and the lab's NCVM both
//! drive one.

use std::collections::BTreeMap;

use serde_json::Value;
use strata_southbound::peer::Event;

use crate::core::Controller;
use crate::desired::{self, Publisher};
use crate::slb::{HealthChange, SlbManager};
use crate::store::Store;

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
    publisher: Publisher,
    slb: SlbManager,
    /// The revision the configurations were last compiled at, and whether a report
    /// changed what the Muxes must carry since.
    compiled_at: Option<u64>,
    observed_changed: bool,
    revision: u64,
    nodes: BTreeMap<String, NodeState>,
}

impl Hub {
    /// `secret` is what node tokens derive from (see [`strata_southbound::node_token`]).
    pub fn new(secret: impl Into<String>) -> Hub {
        Hub {
            secret: secret.into(),
            publisher: Publisher::new(),
            slb: SlbManager::new(),
            compiled_at: None,
            observed_changed: false,
            revision: 0,
            nodes: BTreeMap::new(),
        }
    }

    /// Compiles again if the resources or the reports changed since the last time.
    /// Returns the nodes whose configuration changed (or appeared) and those now gone.
    pub fn refresh<S: Store>(&mut self, c: &Controller<S>) -> (Vec<String>, Vec<String>) {
        if self.compiled_at == Some(c.revision()) && !self.observed_changed {
            return (Vec::new(), Vec::new());
        }
        self.compiled_at = Some(c.revision());
        self.observed_changed = false;
        // A report changes configurations without a write: the revision still moves on.
        let revision = c.revision().max(self.revision + 1);
        let (changed, gone) = self
            .publisher
            .update(revision, desired::compile(c, self.slb.observed()));
        if !changed.is_empty() {
            self.revision = revision;
        }
        for node in &gone {
            self.nodes.remove(node);
        }
        (changed, gone)
    }

    /// Each node's configuration and its revision.
    pub fn configs(&self) -> &BTreeMap<String, (u64, Value)> {
        self.publisher.all()
    }

    /// The current revision of a known node whose token is right.
    pub fn admit(&self, node: &str, token: &str) -> Option<u64> {
        let (revision, _) = self.publisher.get(node)?;
        (token == strata_southbound::node_token(&self.secret, node)).then_some(*revision)
    }

    /// Takes what a connection reported. Returns the DIP health changes a host reported
    /// (the Muxes' configurations change with them at the next [`Hub::refresh`]).
    pub fn event(&mut self, event: &Event) -> Vec<HealthChange> {
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
            Event::Send(_) | Event::Close(_) | Event::Accepted { .. } => Vec::new(),
        }
    }

    /// What a node's agent last said.
    pub fn node_state(&self, node: &str) -> Option<&NodeState> {
        self.nodes.get(node)
    }

    /// Whether every node has applied its current configuration.
    pub fn converged(&self) -> bool {
        self.publisher.all().iter().all(|(node, (revision, _))| {
            self.nodes.get(node) == Some(&NodeState::Applied(*revision))
        })
    }

    pub fn slb(&self) -> &SlbManager {
        &self.slb
    }
}
