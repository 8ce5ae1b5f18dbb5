//! The Network Controller's northbound resources, as Windows Server 2016's Network
//! Controller serves them under `/networking/v1/`: which collections there are, what
//! their documents must hold (checked with the JSON pointer of the first offending field),
//! the references between resources and the read-only back-references computed from
//! them, and the VIP pools addresses are allocated from.
//!
//! Documents are kept as JSON, whole: fields this crate does not check are stored and
//! returned as the client sent them, so the Network Controller's own documents come back
//! in the shape they went in. No I/O and no clock here: the controller supplies etags and
//! instance ids.

pub mod alloc;
pub mod compile;
pub mod doc;
pub mod kind;

pub use doc::{
    Invalid, Reference, Stamp, canonical, complete, fill_back_refs, locate, references,
    set_provisioning_state,
};
pub use kind::{KINDS, Kind, kind};
