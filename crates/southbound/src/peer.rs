//! The controller's side of one agent's connection: check who it is, send its
//! configuration (a snapshot, then deltas from what it has), hear what it applied and
//! what it reports, and drop it when it falls silent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::Timers;
use crate::merge;
use crate::message::Message;

/// What the controller's driver must do for this connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Send(Message),
    /// Close the connection; the reason is for the log.
    Close(String),
    /// The agent of `node` is accepted: publish its configuration to it.
    Accepted {
        node: String,
        applied: Option<u64>,
    },
    /// The agent applied `revision`.
    Applied {
        node: String,
        revision: u64,
    },
    /// The agent could not apply `revision`.
    Failed {
        node: String,
        revision: u64,
        reason: String,
    },
    Report {
        node: String,
        status: Value,
    },
}

/// One agent's connection, on the controller.
#[derive(Debug)]
pub struct Peer {
    timers: Timers,
    node: Option<String>,
    /// The configuration last sent, which the agent holds (or will).
    sent: Option<(u64, Arc<Value>)>,
    heard_at: Duration,
    keepalive_at: Duration,
    closed: bool,
    events: VecDeque<Event>,
}

impl Peer {
    pub fn new(now: Duration, timers: Timers) -> Peer {
        Peer {
            heard_at: now,
            keepalive_at: now + timers.keepalive,
            timers,
            node: None,
            sent: None,
            closed: false,
            events: VecDeque::new(),
        }
    }

    /// The node this connection speaks for, once accepted.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the connection, with the reason (for the log).
    pub fn end(&mut self, reason: String) {
        self.close(reason);
    }

    fn close(&mut self, reason: String) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::Close(reason));
        }
    }

    /// A message from the agent. `admit(node, token)` says whether the node is known and
    /// the token is its credential; `revision` is its configuration's current revision.
    pub fn received(
        &mut self,
        now: Duration,
        message: Message,
        admit: &dyn Fn(&str, &str) -> Option<u64>,
    ) {
        if self.closed {
            return;
        }
        self.heard_at = now;
        match (&self.node, message) {
            (
                None,
                Message::Hello {
                    node,
                    token,
                    applied,
                },
            ) => match admit(&node, &token) {
                Some(revision) => {
                    self.events
                        .push_back(Event::Send(Message::Welcome { revision }));
                    self.events.push_back(Event::Accepted {
                        node: node.clone(),
                        applied,
                    });
                    self.node = Some(node);
                }
                None => {
                    self.events.push_back(Event::Send(Message::Refused {
                        reason: format!("node {node:?} is not known, or its token is wrong"),
                    }));
                    self.close(format!(
                        "refused node {node:?}: unknown node or wrong token"
                    ));
                }
            },
            (None, other) => self.close(format!("{} before Hello", kind(&other))),
            (Some(node), Message::Applied { revision }) => {
                let node = node.clone();
                self.events.push_back(Event::Applied { node, revision });
            }
            (Some(node), Message::Failed { revision, reason }) => {
                let node = node.clone();
                self.events.push_back(Event::Failed {
                    node,
                    revision,
                    reason,
                });
            }
            (Some(node), Message::Report { status }) => {
                let node = node.clone();
                self.events.push_back(Event::Report { node, status });
            }
            (Some(_), Message::Keepalive) => {}
            (Some(_), other) => self.close(format!("unexpected {}", kind(&other))),
        }
    }

    /// A frame that could not be read: the connection goes, with the reason.
    pub fn malformed(&mut self, reason: &str) {
        self.close(format!("malformed message: {reason}"));
    }

    /// Sends the node's configuration of `revision`: the whole of it the first time (or
    /// when the agent's `applied` revision is not what was last sent), else the change
    /// from what was sent. Nothing when the agent already has it.
    pub fn publish(&mut self, revision: u64, config: &Arc<Value>, agent_has: Option<u64>) {
        if self.closed || self.node.is_none() {
            return;
        }
        let message = match &self.sent {
            Some((base, old)) if *base == revision => {
                if old == config {
                    return;
                }
                Message::Snapshot {
                    revision,
                    config: Value::clone(config),
                }
            }
            Some((base, old)) => match merge::diff(old, config) {
                Some(patch) => Message::Delta {
                    base: *base,
                    revision,
                    patch,
                },
                None => Message::Snapshot {
                    revision,
                    config: Value::clone(config),
                },
            },
            None if agent_has == Some(revision) => {
                // Reconnected, and already up to date.
                self.sent = Some((revision, config.clone()));
                return;
            }
            None => Message::Snapshot {
                revision,
                config: Value::clone(config),
            },
        };
        self.sent = Some((revision, config.clone()));
        self.events.push_back(Event::Send(message));
    }

    /// Runs the timers: keepalives, and dropping an agent that fell silent.
    pub fn poll(&mut self, now: Duration) {
        if self.closed {
            return;
        }
        if now >= self.heard_at + self.timers.hold {
            let who = self.node.clone().unwrap_or_else(|| "an agent".into());
            self.close(format!("{who} silent for {:?}", self.timers.hold));
        } else if now >= self.keepalive_at {
            self.keepalive_at = now + self.timers.keepalive;
            if self.node.is_some() {
                self.events.push_back(Event::Send(Message::Keepalive));
            }
        }
    }

    /// When [`Peer::poll`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        (!self.closed).then(|| self.keepalive_at.min(self.heard_at + self.timers.hold))
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Refused { .. } => "Refused",
        Message::Snapshot { .. } => "Snapshot",
        Message::Delta { .. } => "Delta",
        Message::Applied { .. } => "Applied",
        Message::Failed { .. } => "Failed",
        Message::Report { .. } => "Report",
        Message::Keepalive => "Keepalive",
    }
}
