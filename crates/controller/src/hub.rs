//! The controller's side of the southbound protocol without the I/O: what each node
//! should carry and at which revision, who is admitted, what each agent has applied, and
//! the SLB manager fed by the agents' reports. The TCP server and the lab's NCVM both
//! drive one.

use std::collections::BTreeMap;

use strata_southbound::peer::Event;

use crate::core::Controller;
use crate::desired::{Compiler, Publisher};
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
    compiler: Compiler,
    publisher: Publisher,
    /// What the publisher holds, shared with whoever serves it.
    snapshot: strata_southbound::Configs,
    slb: SlbManager,
    /// The revision the configurations were last compiled at, and whether a report
    /// changed what the Muxes must carry since.
    compiled_at: Option<u64>,
    observed_changed: bool,
    revision: u64,
    nodes: BTreeMap<String, NodeState>,
    /// For the writes in `(after, upto]`: the configuration revision they were compiled
    /// into and the nodes whose configuration they changed.
    compilations: Vec<Compilation>,
}

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
            revision: 0,
            nodes: BTreeMap::new(),
            compilations: Vec::new(),
        }
    }

    /// Compiles again if the resources or the reports changed since the last time.
    /// Returns the nodes whose configuration changed (or appeared) and those now gone.
    pub fn refresh<S: Store>(&mut self, c: &Controller<S>) -> (Vec<String>, Vec<String>) {
        if self.compiled_at == Some(c.revision()) && !self.observed_changed {
            return (Vec::new(), Vec::new());
        }
        let after = self.compiled_at.unwrap_or(0);
        self.compiled_at = Some(c.revision());
        self.observed_changed = false;
        // A report changes configurations without a write: the revision still moves on.
        let revision = c.revision().max(self.revision + 1);
        let (changed, gone) = self
            .publisher
            .update(revision, self.compiler.compile(c, self.slb.observed()));
        if !changed.is_empty() {
            self.revision = revision;
        }
        if !changed.is_empty() || !gone.is_empty() {
            self.snapshot = std::sync::Arc::new(self.publisher.all().clone());
        }
        for node in &gone {
            self.nodes.remove(node);
        }
        if c.revision() > after || self.compilations.is_empty() {
            self.compilations.push(Compilation {
                after,
                upto: c.revision(),
                revision,
                nodes: changed.clone(),
            });
        }
        (changed, gone)
    }

    /// What became of the writes at revision `w`: applied by every node they changed,
    /// refused by one of them (its reason), or not known yet.
    fn outcome(&self, w: u64) -> Option<Result<(), String>> {
        let compilation = self
            .compilations
            .iter()
            .find(|k| k.after < w && w <= k.upto)?;
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
        if c.oldest_updating().is_some() {
            c.settle(|w| self.outcome(w));
        }
        // What no resource waits for any more.
        match c.oldest_updating() {
            Some(oldest) => self.compilations.retain(|k| k.upto >= oldest),
            None => self.compilations.clear(),
        }
    }

    /// Each node's configuration and its revision.
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
        self.publisher.all().iter().all(|(node, (revision, _))| {
            self.nodes.get(node) == Some(&NodeState::Applied(*revision))
        })
    }

    pub fn slb(&self) -> &SlbManager {
        &self.slb
    }
}
