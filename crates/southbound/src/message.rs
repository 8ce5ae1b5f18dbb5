//! What the controller and its agents say to each other.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message, as JSON with a `type` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Message {
    /// Agent → controller, first: who it is, its credential, and the revision of the
    /// configuration it last applied (none at first start).
    Hello {
        node: String,
        token: String,
        applied: Option<u64>,
    },
    /// Controller → agent: accepted; `revision` is the node's current configuration's.
    Welcome { revision: u64 },
    /// Controller → agent: not accepted, and why. The connection closes.
    Refused { reason: String },
    /// Controller → agent: the node's whole configuration.
    Snapshot { revision: u64, config: Value },
    /// Controller → agent: the change from revision `base` (which the agent has) to
    /// `revision`, as a JSON merge patch (RFC 7396).
    Delta {
        base: u64,
        revision: u64,
        patch: Value,
    },
    /// Agent → controller: the configuration of `revision` is in force.
    Applied { revision: u64 },
    /// Agent → controller: the configuration of `revision` could not be applied.
    Failed { revision: u64, reason: String },
    /// Agent → controller: what the node sees (DIP health, BGP state, ...).
    Report { status: Value },
    /// Either way, when there is nothing else to say.
    Keepalive,
}
