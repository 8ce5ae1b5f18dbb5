//! The Software Load Balancer's data path.
//!
//! The Mux ([`mux`]) receives packets for VIPs (routers send them to it because it
//! announces each VIP as a /32), picks a DIP with [`maglev`] over the flow hash of
//! [`hash`], remembers the choice in a bounded flow table ([`flow_table`]) and sends the
//! packet, unchanged, inside VXLAN to the provider address of the DIP's host. The host
//! rewrites VIP→DIP and answers straight to the client (direct server return).
//!
//! Sans-IO: `now` is passed in; nothing here reads a clock or touches a socket.

pub mod flow_table;
pub mod hash;
pub mod host;
pub mod maglev;
pub mod mux;
pub mod probe;
