//! The VFP engine.
//!
//! ```text
//!  frame ─► Metadata::parse ─► UFT lookup (direction, flow, VNI) ─hit─► HeaderTransposition::apply
//!                                    │ miss / stale generation
//!                                    ▼
//!           layers in order (in) / reverse order (out)
//!             └─ groups of the direction and IP family, by priority
//!                  └─ the best-priority matching rule: its action folds into the transposition
//!                                    ▼
//!           cache (and, for a rewrite, cache the inverse for the replies) ─► apply
//! ```
//!
//! Bounded: a port caches at most its limit of flows (500,000 by default); when full,
//! expired and stale entries are swept, and a flow that still does not fit stays on the
//! slow path (counted). TCP flows expire sooner once a FIN or RST is seen. A policy change
//! bumps the port's generation, so cached flows are recomputed on their next packet.

mod packet;
mod port;
mod rule;
mod state;
mod transposition;

pub use packet::{Direction, Encap, Family, Flow, IpLayout, Metadata, ParseError};
pub use port::{
    Applied, DEFAULT_FLOW_LIMIT, DropReason, Explanation, FlowId, FlowTimeouts, Port, PortCounters,
    SnatShortfall, UftEntry, Verdict, describe_action,
};
pub use rule::{Action, Conditions, EncapSpec, Group, Layer, NatSpec, Rule, SNAT_RANGE, SnatSpec};
pub use state::{LayerFlow, LayerKey};
pub use transposition::{EncapOp, HeaderTransposition, PUSH_LEN};

#[cfg(test)]
mod tests;
