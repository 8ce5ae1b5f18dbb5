//! The fabric: what carries Ethernet frames between the NICs of nodes.
//!
//! An emulated [`Segment`] is one broadcast domain (a network of the lab, such as the
//! management network on the vSwitch `CCI_External`, or a point-to-point link, which is a
//! segment with two ports). It forwards like a learning bridge, delays every frame by the
//! segment's latency, bounds the frames in flight toward each port, counts what it carries
//! and drops, and can capture every frame with its timestamp ([`pcap`] writes captures).
//!
//! Sans-IO: time is passed in; nothing here reads a clock.

pub mod pcap;
mod segment;

pub use segment::{Captured, PortCounters, PortId, Segment, SegmentConfig};
