//! The fabric: what carries Ethernet frames between the NICs of nodes.
//!
//! An emulated [`Segment`] is one broadcast domain (a network of the lab, such as the
//! management network on the vSwitch `CCI_External`, or a point-to-point link, which is a
//! segment with two ports). It forwards like a learning bridge, delays every frame by the
//! segment's latency, bounds the frames in flight toward each port, counts what it carries
//! and drops, and can capture every frame with its timestamp ([`pcap`] writes captures).
//!
//! Sans-IO: time is passed in; nothing here reads a clock.
//!
//! [`linux`] is the other backend: AF_PACKET sockets, or AF_XDP sockets fed by an XDP
//! program, on the interfaces of Linux network namespaces, for the roles run as real
//! processes. All carry frames in batches through [`Link`].

mod batch;
pub mod gso;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod pcap;
mod segment;

pub use batch::Batch;
pub use segment::{Captured, PortCounters, PortId, Segment, SegmentConfig};

/// A node's link to a network: frames out and in, a batch at a time.
pub trait Link {
    /// Sends the frames in order; returns how many the link took (the rest may be sent
    /// again later).
    fn send<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> std::io::Result<usize>;

    /// Receives what is waiting, up to the batch's capacity, without waiting for more;
    /// returns how many frames the batch now holds.
    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<usize>;
}
