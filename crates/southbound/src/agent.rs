//! The agent's side: connect, say hello, take the configuration (a snapshot, then
//! deltas), report it applied, keep the connection alive, and when the controller goes
//! away keep the last configuration and reconnect with backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::Timers;
use crate::merge;
use crate::message::Message;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a connection to the controller.
    Connect,
    /// Send this message on the connection.
    Send(Message),
    /// Close the connection.
    Close,
    /// Give the role this configuration (of this revision); answer with
    /// [`Agent::applied`].
    Apply {
        revision: u64,
        /// The whole configuration.
        config: Arc<Value>,
        /// What changed from the configuration applied before, when it came as a Delta
        /// (a JSON merge patch): a role may apply just that.
        patch: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started.
    Idle,
    /// Waiting to connect again.
    Waiting {
        until: Duration,
    },
    Connecting,
    /// Hello sent, no answer yet.
    Greeting,
    /// Welcome received.
    Ready,
}

/// An agent's session with the controller.
#[derive(Debug)]
pub struct Agent {
    node: String,
    token: String,
    timers: Timers,
    state: State,
    /// The configuration last received, kept across disconnections.
    config: Option<(u64, Arc<Value>)>,
    applied: Option<u64>,
    backoff: Duration,
    heard_at: Duration,
    keepalive_at: Duration,
    refused: Option<String>,
    outputs: VecDeque<Output>,
}

impl Agent {
    pub fn new(node: impl Into<String>, token: impl Into<String>, timers: Timers) -> Agent {
        Agent {
            node: node.into(),
            token: token.into(),
            backoff: timers.backoff_min,
            timers,
            state: State::Idle,
            config: None,
            applied: None,
            heard_at: Duration::ZERO,
            keepalive_at: Duration::ZERO,
            refused: None,
            outputs: VecDeque::new(),
        }
    }

    /// Starts connecting: at once, or after the node's share of the splay.
    pub fn start(&mut self, now: Duration) {
        if self.state != State::Idle {
            return;
        }
        let wait = splay_share(&self.node, self.timers.splay);
        if wait.is_zero() {
            self.state = State::Connecting;
            self.outputs.push_back(Output::Connect);
        } else {
            self.state = State::Waiting { until: now + wait };
        }
    }

    /// Whether the controller has accepted this agent on the current connection.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The configuration last received (revision, document), if any: kept while the
    /// controller is away.
    pub fn config(&self) -> Option<&(u64, Arc<Value>)> {
        self.config.as_ref()
    }

    /// The revision last applied.
    pub fn applied_revision(&self) -> Option<u64> {
        self.applied
    }

    /// Why the controller last refused this agent.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The connection is open.
    pub fn connected(&mut self, now: Duration) {
        if self.state != State::Connecting {
            return;
        }
        self.state = State::Greeting;
        self.heard_at = now;
        self.keepalive_at = now + self.timers.keepalive;
        self.outputs.push_back(Output::Send(Message::Hello {
            node: self.node.clone(),
            token: self.token.clone(),
            applied: self.applied,
        }));
    }

    /// The connection could not be opened, or went away.
    pub fn disconnected(&mut self, now: Duration) {
        if matches!(self.state, State::Idle | State::Waiting { .. }) {
            return;
        }
        self.state = State::Waiting {
            until: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(self.timers.backoff_max);
    }

    fn drop_connection(&mut self, now: Duration) {
        self.outputs.push_back(Output::Close);
        self.disconnected(now);
    }

    /// A message from the controller.
    pub fn received(&mut self, now: Duration, message: Message) {
        if !matches!(self.state, State::Greeting | State::Ready) {
            return;
        }
        self.heard_at = now;
        match (self.state, message) {
            (State::Greeting, Message::Welcome { .. }) => {
                self.state = State::Ready;
                self.backoff = self.timers.backoff_min;
                self.refused = None;
            }
            (_, Message::Refused { reason }) => {
                // Tried again with backoff: a node the controller has just been told of
                // may be refused until its configuration is compiled.
                self.refused = Some(reason);
                self.drop_connection(now);
            }
            (State::Ready, Message::Snapshot { revision, config }) => {
                let config = Arc::new(config);
                self.config = Some((revision, config.clone()));
                self.outputs.push_back(Output::Apply {
                    revision,
                    config,
                    patch: None,
                });
            }
            (
                State::Ready,
                Message::Delta {
                    base,
                    revision,
                    patch,
                },
            ) => {
                match self.config.as_mut() {
                    Some((have, config)) if *have == base => {
                        // Copied only if the role still holds the previous one.
                        merge::apply(Arc::make_mut(config), &patch);
                        *have = revision;
                        let config = config.clone();
                        self.outputs.push_back(Output::Apply {
                            revision,
                            config,
                            patch: Some(patch),
                        });
                    }
                    // Not the base we hold: start again, for a snapshot.
                    _ => self.drop_connection(now),
                }
            }
            (_, Message::Keepalive) => {}
            // Anything else is out of order: the connection is not to be trusted.
            _ => self.drop_connection(now),
        }
    }

    /// The role applied (or could not apply) the configuration of `revision`.
    pub fn applied(&mut self, revision: u64, result: Result<(), String>) {
        let message = match result {
            Ok(()) => {
                self.applied = Some(revision);
                Message::Applied { revision }
            }
            Err(reason) => Message::Failed { revision, reason },
        };
        if self.state == State::Ready {
            self.outputs.push_back(Output::Send(message));
        }
    }

    /// Sends what the node sees; dropped while not connected (the next report says it).
    pub fn report(&mut self, status: Value) {
        if self.state == State::Ready {
            self.outputs
                .push_back(Output::Send(Message::Report { status }));
        }
    }

    /// Runs the timers: reconnect, keepalive, and the controller's silence.
    pub fn poll(&mut self, now: Duration) {
        match self.state {
            State::Waiting { until } if until <= now => {
                self.state = State::Connecting;
                self.outputs.push_back(Output::Connect);
            }
            State::Greeting | State::Ready => {
                if now >= self.heard_at + self.timers.hold {
                    self.drop_connection(now);
                } else if now >= self.keepalive_at {
                    self.keepalive_at = now + self.timers.keepalive;
                    self.outputs.push_back(Output::Send(Message::Keepalive));
                }
            }
            _ => {}
        }
    }

    /// When [`Agent::poll`] next has work.
    pub fn poll_at(&self) -> Option<Duration> {
        match self.state {
            State::Waiting { until } => Some(until),
            State::Greeting | State::Ready => {
                Some(self.keepalive_at.min(self.heard_at + self.timers.hold))
            }
            _ => None,
        }
    }
}

/// The part of `splay` a node waits before its first connection: the same for a node
/// every time (a keyed hash of its name), spread evenly over a fleet.
fn splay_share(node: &str, splay: Duration) -> Duration {
    use std::hash::Hasher;
    let nanos = u64::try_from(splay.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = siphasher::sip::SipHasher24::new_with_keys(0x5374_7261_7461_5370, 0x6c61_7921);
    h.write(node.as_bytes());
    Duration::from_nanos(h.finish() % nanos)
}
