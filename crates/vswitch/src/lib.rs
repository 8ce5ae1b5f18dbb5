//! The Hyper-V-style virtual switch's Virtual Filtering Platform (VFP).
//!
//! A VM's switch port holds [`vfp::Layer`]s of match-action rules (VNET decap/encap, SLB
//! NAT, ACL, …). The first packet of a flow walks them (the slow path); the result is
//! compiled into one [`vfp::HeaderTransposition`] and cached in the port's unified flow
//! table, and every later packet of the flow takes that fast path. See [`vfp`].

pub mod switch;
pub mod vfp;
