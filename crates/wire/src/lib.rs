//! Strata's wire layer: views over packet bytes and the few builders the data path needs.
//!
//! Ethernet, ARP, IPv4, ICMPv4, UDP and TCP come from smoltcp's `wire` module, re-exported
//! here so that every other crate names packets through this one. What smoltcp does not
//! cover is written here by hand: the 802.1Q tag ([`ethernet`]), the VXLAN header of
//! RFC 7348 ([`vxlan`]), the RFC 1624 incremental checksum update NAT needs ([`checksum`]),
//! the transport flow key of a packet ([`flow`]) and a one-line description of a frame for
//! traces ([`describe`]).
//!
//! The contract, as in smoltcp: a view is built with a checked constructor that validates
//! lengths once; after that no accessor panics. Malformed input is an [`Error`], never a
//! panic, whatever the bytes.

pub mod checksum;
pub mod describe;
pub mod ethernet;
pub mod flow;
pub mod rewrite;
pub mod toeplitz;
pub mod vxlan;

pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Cidr,
    Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket,
};

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length a header declares) does.
    #[error("{what}: truncated, {have} bytes where {need} are needed")]
    Truncated {
        what: &'static str,
        have: usize,
        need: usize,
    },
    /// A field holds a value the protocol forbids.
    #[error("{what}: malformed ({why})")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    /// A non-first IPv4 fragment carries no transport header, so it has no flow key.
    #[error("IPv4 fragment without transport header")]
    Fragment,
}

/// Ethernet header length without a VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<(), Error> {
    if buf.len() < need {
        Err(Error::Truncated {
            what,
            have: buf.len(),
            need,
        })
    } else {
        Ok(())
    }
}
