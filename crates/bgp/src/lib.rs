//! Strata's BGP-4 speaker, sans-IO: the message codec, the session state machine
//! ([`session`], with connection collision resolution), the RIB ([`rib`]), and the
//! speaker that puts them together for many neighbors ([`speaker`]: the one the lab and
//! `strata bgp run` both drive).
//!
//! [`codec`] reads and writes the five message types: OPEN with capabilities
//! (multiprotocol, route refresh, graceful restart, 4-octet AS, enhanced route refresh),
//! UPDATE with its path attributes (ORIGIN, AS_PATH in 2- or 4-octet form, NEXT_HOP, MED,
//! LOCAL_PREF, COMMUNITIES, MP_REACH_NLRI and MP_UNREACH_NLRI for IPv4 and IPv6 unicast;
//! unknown attributes kept as they came), NOTIFICATION, KEEPALIVE and ROUTE-REFRESH.
//!
//! Errors are the protocol's answers: a message that cannot be read gives the
//! NOTIFICATION (code, subcode, data) RFC 4271 section 6 prescribes, and an UPDATE whose
//! attributes are malformed in a way RFC 7606 lets a speaker survive comes back marked
//! *treat-as-withdraw* rather than tearing the session down. Nothing panics on any input.

pub mod bfd;
pub mod codec;
pub mod decision;
pub mod rib;
pub mod session;
pub mod speaker;
