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

/// Each node's configuration and its revision, by node name: what a controller serves.
/// Shared, never copied: a new compilation is a new map.
pub type Configs =
    std::sync::Arc<std::collections::BTreeMap<String, (u64, std::sync::Arc<serde_json::Value>)>>;

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
    /// An agent's first connection waits a share of this, fixed by its node's name: a
    /// fleet started at once reaches the controller spread over the splay, not in one
    /// burst. Zero: at once.
    pub splay: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            keepalive: Duration::from_secs(1),
            hold: Duration::from_secs(3),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            splay: Duration::ZERO,
        }
    }
}

/// The credential of `node`: a keyed hash (SipHash-2-4, 128 bits) of the node's name
/// under a key derived from the controller's secret. The controller issues one per node
/// without storing any, and checks a Hello against it.
pub fn node_token(secret: &str, node: &str) -> String {
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;
    let mut keys = SipHasher24::new_with_keys(0x5374_7261_7461_4e6f, 0x6465_546f_6b65_6e21);
    keys.write(secret.as_bytes());
    let k = keys.finish128();
    let mut h = SipHasher24::new_with_keys(k.h1, k.h2);
    h.write(node.as_bytes());
    format!("{:032x}", h.finish128().as_u128())
}

#[cfg(test)]
mod tests;
