//! The southbound protocol between the network controller and the agents on its nodes
//! (each Mux, each Hyper-V host), sans-IO: the cores take the time and what arrived and
//! say what to send; drivers own the sockets (the lab's TCP stacks, tokio).
//!
//! - [`frame`]: length-prefixed JSON.
//! - [`message`]: Hello (node, credential, last applied revision), Welcome or Refused,
//!   Snapshot then Deltas (JSON merge patches, [`merge`]), Applied or Failed, Report,
//!   Keepalive.
//! - [`agent::Agent`]: keeps its last configuration when the controller goes away and
//!   reconnects with exponential backoff, resuming from the revision it applied.
//! - [`peer::Peer`]: the controller's side of one connection.

pub mod agent;
pub mod frame;
pub mod merge;
pub mod message;
pub mod peer;

use std::time::Duration;

pub use message::Message;

/// The protocol's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// A keepalive goes out after this long without one.
    pub keepalive: Duration,
    /// Silence for this long ends the connection.
    pub hold: Duration,
    /// The first wait before reconnecting; it doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            keepalive: Duration::from_secs(1),
            hold: Duration::from_secs(3),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
        }
    }
}

#[cfg(test)]
mod tests;
