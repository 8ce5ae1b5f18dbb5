//! BGP-4 messages on the wire (RFC 4271 section 4) and their errors (section 6, RFC 7606).
//!
//! ```text
//!  0               16      18   19
//!  | marker (all 1s) | length | type | body ...
//! ```
//! [`message_len`] frames a byte stream, [`decode`] reads one message, [`encode`] writes
//! one. How AS numbers are written in AS_PATH depends on whether both speakers announced
//! the 4-octet AS capability (RFC 6793); [`Options`] carries that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Every message starts with 16 bytes of ones.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message (RFC 4271; RFC 8654 extended messages are not negotiated).
pub const MAX_LEN: usize = 4096;
/// The 2-octet AS a 4-octet AS number is sent as where only 2 octets fit (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// Address family identifiers.
pub mod afi {
    pub const IPV4: u16 = 1;
    pub const IPV6: u16 = 2;
}
/// Subsequent address family identifier for unicast.
pub const SAFI_UNICAST: u8 = 1;

/// Message type codes.
mod kind {
    pub(super) const OPEN: u8 = 1;
    pub(super) const UPDATE: u8 = 2;
    pub(super) const NOTIFICATION: u8 = 3;
    pub(super) const KEEPALIVE: u8 = 4;
    pub(super) const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes.
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4456 (route reflection): read and checked, never passed on.
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 4360.
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// RFC 6793: the 4-octet AS path, alongside a 2-octet AS_PATH, between a speaker
    /// that has 4-octet AS numbers and one that has not. The codec writes and merges it;
    /// an [`Update`](super::Update) never holds it.
    pub const AS4_PATH: u8 = 17;
    /// RFC 6793: the 4-octet AGGREGATOR, alongside a 2-octet one; merged like AS4_PATH.
    pub const AS4_AGGREGATOR: u8 = 18;
    /// RFC 5701.
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    /// RFC 8092.
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Well-known communities (RFC 1997 section "Well-known Communities").
pub mod community {
    /// Not advertised outside the AS (nor its confederation).
    pub const NO_EXPORT: u32 = 0xffff_ff01;
    /// Not advertised to any peer.
    pub const NO_ADVERTISE: u32 = 0xffff_ff02;
    /// Not advertised to external peers, confederation members included.
    pub const NO_EXPORT_SUBCONFED: u32 = 0xffff_ff03;
}

pub const FLAG_OPTIONAL: u8 = 0x80;
pub const FLAG_TRANSITIVE: u8 = 0x40;
pub const FLAG_PARTIAL: u8 = 0x20;
/// Both: what an optional transitive attribute carries.
pub const FLAGS_OPTIONAL_TRANSITIVE: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
const FLAG_EXTENDED: u8 = 0x10;

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 section 4.2) with its capabilities (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field; [`AS_TRANS`] for a 4-octet AS.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The speaker's AS: from the 4-octet AS capability if present.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
}

/// A capability of an OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760.
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 7313.
    EnhancedRouteRefresh,
    /// RFC 4724.
    GracefulRestart(GracefulRestart),
    /// RFC 6793.
    FourOctetAs(u32),
    /// Any other, kept as it came.
    Unknown { code: u8, value: Vec<u8> },
}

/// The graceful restart capability (RFC 4724 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R: the speaker has restarted.
    pub restarting: bool,
    /// N: graceful notification (RFC 8538).
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub time: u16,
    /// (AFI, SAFI, forwarding state preserved).
    pub families: Vec<(u16, u8, bool)>,
}

/// UPDATE (RFC 4271 section 4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Vec<Attribute>,
    pub nlri: Vec<Ipv4Net>,
    /// Set when the attributes were malformed in a way RFC 7606 answers with
    /// treat-as-withdraw: every prefix the UPDATE announces is to be withdrawn instead,
    /// and the session stays up.
    pub treat_as_withdraw: Option<AttributeError>,
}

impl Update {
    /// An End-of-RIB marker for `afi`/`safi` (RFC 4724 section 2).
    pub fn end_of_rib(afi: u16, safi: u8) -> Update {
        if afi == afi::IPV4 && safi == SAFI_UNICAST {
            Update::default()
        } else {
            Update {
                attributes: vec![Attribute::MpUnreach(MpUnreach {
                    afi,
                    safi,
                    withdrawn: Vec::new(),
                })],
                ..Update::default()
            }
        }
    }

    /// Whether this is an End-of-RIB marker, and for which family.
    pub fn is_end_of_rib(&self) -> Option<(u16, u8)> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some((afi::IPV4, SAFI_UNICAST)),
            [Attribute::MpUnreach(m)] if m.withdrawn.is_empty() => Some((m.afi, m.safi)),
            _ => None,
        }
    }

    /// The attribute with type `code`, if present.
    pub fn attribute(&self, code: u8) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.code() == code)
    }
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Origin(Origin),
    AsPath(AsPath),
    NextHop(Ipv4Addr),
    Med(u32),
    LocalPref(u32),
    /// RFC 4271 5.1.6: a route aggregated with some path information lost.
    AtomicAggregate,
    /// RFC 4271 5.1.7 (with RFC 6793's AS4_AGGREGATOR merged in).
    Aggregator {
        asn: u32,
        address: Ipv4Addr,
    },
    /// RFC 1997: each community as a 32-bit value (AS in the high half).
    Communities(Vec<u32>),
    /// RFC 4456: the route's originator inside a reflected AS.
    OriginatorId(Ipv4Addr),
    /// RFC 4456: the route reflection clusters the route went through.
    ClusterList(Vec<Ipv4Addr>),
    MpReach(MpReach),
    MpUnreach(MpUnreach),
    /// RFC 4360: 8-octet extended communities.
    ExtendedCommunities(Vec<[u8; 8]>),
    /// RFC 5701: 20-octet IPv6 address specific extended communities.
    Ipv6ExtendedCommunities(Vec<[u8; 20]>),
    /// RFC 8092, without repeats.
    LargeCommunities(Vec<LargeCommunity>),
    /// Any other attribute, kept with its flags (a transitive one is passed on).
    Unknown {
        flags: u8,
        code: u8,
        value: Vec<u8>,
    },
}

/// A large community (RFC 8092): global administrator, then two local data parts.
pub type LargeCommunity = [u32; 3];

impl Attribute {
    pub fn code(&self) -> u8 {
        match self {
            Attribute::Origin(_) => attr::ORIGIN,
            Attribute::AsPath(_) => attr::AS_PATH,
            Attribute::NextHop(_) => attr::NEXT_HOP,
            Attribute::Med(_) => attr::MED,
            Attribute::LocalPref(_) => attr::LOCAL_PREF,
            Attribute::AtomicAggregate => attr::ATOMIC_AGGREGATE,
            Attribute::Aggregator { .. } => attr::AGGREGATOR,
            Attribute::Communities(_) => attr::COMMUNITIES,
            Attribute::OriginatorId(_) => attr::ORIGINATOR_ID,
            Attribute::ClusterList(_) => attr::CLUSTER_LIST,
            Attribute::MpReach(_) => attr::MP_REACH_NLRI,
            Attribute::MpUnreach(_) => attr::MP_UNREACH_NLRI,
            Attribute::ExtendedCommunities(_) => attr::EXTENDED_COMMUNITIES,
            Attribute::Ipv6ExtendedCommunities(_) => attr::IPV6_EXTENDED_COMMUNITIES,
            Attribute::LargeCommunities(_) => attr::LARGE_COMMUNITIES,
            Attribute::Unknown { code, .. } => *code,
        }
    }

    /// The flags this attribute is sent with (without the extended-length bit).
    fn flags(&self) -> u8 {
        match self {
            Attribute::Unknown { flags, .. } => {
                *flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE | FLAG_PARTIAL)
            }
            known => category(known.code()).map_or(0, Category::flags),
        }
    }
}

/// What the optional and transitive bits of a known attribute must be (RFC 4271 section
/// 5; RFC 7606 section 3 (c): anything else makes the attribute malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    WellKnown,
    OptionalTransitive,
    OptionalNonTransitive,
}

impl Category {
    fn flags(self) -> u8 {
        match self {
            Category::WellKnown => FLAG_TRANSITIVE,
            Category::OptionalTransitive => FLAGS_OPTIONAL_TRANSITIVE,
            Category::OptionalNonTransitive => FLAG_OPTIONAL,
        }
    }
}

/// The category of each attribute this codec knows; `None` for the others.
fn category(code: u8) -> Option<Category> {
    use Category::*;
    Some(match code {
        attr::ORIGIN | attr::AS_PATH | attr::NEXT_HOP | attr::LOCAL_PREF => WellKnown,
        attr::ATOMIC_AGGREGATE => WellKnown,
        attr::MED | attr::ORIGINATOR_ID | attr::CLUSTER_LIST => OptionalNonTransitive,
        attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI => OptionalNonTransitive,
        attr::AGGREGATOR | attr::COMMUNITIES | attr::EXTENDED_COMMUNITIES => OptionalTransitive,
        attr::AS4_PATH | attr::AS4_AGGREGATOR => OptionalTransitive,
        attr::IPV6_EXTENDED_COMMUNITIES | attr::LARGE_COMMUNITIES => OptionalTransitive,
        _ => return None,
    })
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH: segments of AS numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: Vec<u32>) -> AsPath {
        AsPath {
            segments: if asns.is_empty() {
                Vec::new()
            } else {
                vec![AsSegment { set: false, asns }]
            },
        }
    }

    /// Path length for best-path selection: a set counts as one (RFC 4271 9.1.2.2).
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| if s.set { 1 } else { s.asns.len() })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether `asn` is anywhere on the path.
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// The AS the route came from, for the MED comparison (RFC 4271 9.1.2.2 (d)): the
    /// first of a leading AS_SEQUENCE; `None` for an empty path or one that starts
    /// with an AS_SET (a route originated, or aggregated, in the local AS).
    pub fn neighbor_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(AsSegment { set: false, asns }) => asns.first().copied(),
            _ => None,
        }
    }
}

/// An AS_SET (`set`) or AS_SEQUENCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    pub set: bool,
    pub asns: Vec<u32>,
}

/// MP_REACH_NLRI (RFC 4760 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub afi: u16,
    pub safi: u8,
    /// One next hop, or for IPv6 a global and a link-local one.
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub afi: u16,
    pub safi: u8,
    pub withdrawn: Vec<IpNet>,
}

/// NOTIFICATION (RFC 4271 section 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// Cease subcodes (RFC 4486, RFC 8538).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
}

/// The longest shutdown communication we send: RFC 9003 allows 255 octets, but a
/// speaker that knows only RFC 8203 takes more than 128 for a malformed one.
pub const SHUTDOWN_COMMUNICATION_MAX: usize = 128;

/// A shutdown communication that does not read (RFC 8203 section 3: it is logged as
/// such, and changes nothing else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCommunication {
    #[error("length {length} overruns the {available} octets that follow")]
    Overrun { length: usize, available: usize },
    #[error("not UTF-8")]
    NotUtf8,
}

impl Notification {
    pub const CEASE: u8 = 6;

    /// A Cease, with a shutdown communication for the subcodes that carry one
    /// (Administrative Shutdown and Reset, RFC 8203 section 2): cut to
    /// [`SHUTDOWN_COMMUNICATION_MAX`] octets at a character boundary.
    pub fn cease(subcode: u8, communication: &str) -> Notification {
        let mut data = Vec::new();
        let carries = matches!(
            subcode,
            cease::ADMINISTRATIVE_SHUTDOWN | cease::ADMINISTRATIVE_RESET
        );
        if carries && !communication.is_empty() {
            let mut end = communication.len().min(SHUTDOWN_COMMUNICATION_MAX);
            while !communication.is_char_boundary(end) {
                end -= 1;
            }
            data.push(end as u8);
            data.extend_from_slice(&communication.as_bytes()[..end]);
        }
        Notification {
            code: Self::CEASE,
            subcode,
            data,
        }
    }

    /// The shutdown communication of an Administrative Shutdown or Reset (RFC 8203, RFC
    /// 9003): `None` when there is none (another message, or no data, or length 0).
    pub fn shutdown_communication(&self) -> Option<Result<&str, BadCommunication>> {
        let carries = self.code == Self::CEASE
            && matches!(
                self.subcode,
                cease::ADMINISTRATIVE_SHUTDOWN | cease::ADMINISTRATIVE_RESET
            );
        let [length, rest @ ..] = self.data.as_slice() else {
            return None;
        };
        if !carries || *length == 0 {
            return None;
        }
        let length = usize::from(*length);
        let Some(text) = rest.get(..length) else {
            return Some(Err(BadCommunication::Overrun {
                length,
                available: rest.len(),
            }));
        };
        Some(std::str::from_utf8(text).map_err(|_| BadCommunication::NotUtf8))
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "unknown error",
        };
        write!(f, "{code}")?;
        // The subcodes of RFC 4271 section 4.5 (and RFC 5492, RFC 9234 for OPEN), named.
        let named = match (self.code, self.subcode) {
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (2, 7) => "Unsupported Capability",
            (2, 11) => "Role Mismatch",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 6) => "Invalid ORIGIN Attribute",
            (3, 8) => "Invalid NEXT_HOP Attribute",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            _ => "",
        };
        if !named.is_empty() {
            write!(f, " / {named}")?;
        }
        if self.code == Self::CEASE {
            let sub = match self.subcode {
                cease::MAX_PREFIXES => "Maximum Number of Prefixes Reached",
                cease::ADMINISTRATIVE_SHUTDOWN => "Administrative Shutdown",
                cease::PEER_DECONFIGURED => "Peer De-configured",
                cease::ADMINISTRATIVE_RESET => "Administrative Reset",
                cease::CONNECTION_REJECTED => "Connection Rejected",
                cease::OTHER_CONFIGURATION_CHANGE => "Other Configuration Change",
                cease::CONNECTION_COLLISION_RESOLUTION => "Connection Collision Resolution",
                cease::OUT_OF_RESOURCES => "Out of Resources",
                cease::HARD_RESET => "Hard Reset",
                _ => "",
            };
            if !sub.is_empty() {
                write!(f, " / {sub}")?;
            }
        }
        write!(f, " ({}/{})", self.code, self.subcode)?;
        // The peer's words, quoted and escaped: they go into logs and tables.
        match self.shutdown_communication() {
            Some(Ok(text)) => write!(f, ": {text:?}"),
            Some(Err(e)) => write!(f, ": malformed shutdown communication ({e})"),
            None => Ok(()),
        }
    }
}

/// ROUTE-REFRESH (RFC 2918; the subtype of RFC 7313: 0 request, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

/// What the session negotiated that changes the encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Both speakers sent the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
    /// The peer is in another AS: LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from it are
    /// discarded on receipt (RFC 7606 sections 7.5, 7.9, 7.10).
    pub external: bool,
}

/// A message that cannot be read, as the NOTIFICATION to answer it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{notification}: {reason}")]
pub struct Error {
    pub notification: Notification,
    pub reason: &'static str,
}

fn error(code: u8, subcode: u8, data: &[u8], reason: &'static str) -> Error {
    Error {
        notification: Notification {
            code,
            subcode,
            data: data.to_vec(),
        },
        reason,
    }
}

/// An attribute problem RFC 7606 answers with treat-as-withdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeError {
    /// The attribute's type code (0 when the attribute list itself was malformed).
    pub code: u8,
    pub reason: &'static str,
}

/// Why a message could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} bytes exceeds the 4096-byte limit")]
    TooLong(usize),
    #[error("attribute {code} has {len} bytes, more than fit")]
    AttributeTooLong { code: u8, len: usize },
}

/// The length of the message at the start of `buf`, once its header is there.
/// `Ok(None)`: fewer than 19 bytes so far. An error is the NOTIFICATION to send.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(error(1, 1, &[], "marker is not all ones"));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(error(1, 2, &buf[16..18], "length outside 19..=4096"));
    }
    Ok(Some(len))
}

/// Takes the first whole message off the front of a stream buffer. `None`: not all of it
/// has arrived. An error is the NOTIFICATION to send; after a framing error (the stream is
/// out of step) the buffer is emptied.
pub fn take_message(buf: &mut Vec<u8>, options: Options) -> Option<Result<Message, Error>> {
    match message_len(buf) {
        Ok(Some(len)) if buf.len() >= len => {
            let message = decode(&buf[..len], options);
            buf.drain(..len);
            Some(message)
        }
        Ok(_) => None,
        Err(e) => {
            buf.clear();
            Some(Err(e))
        }
    }
}

/// Reads one whole message (`buf` is exactly the message).
pub fn decode(buf: &[u8], options: Options) -> Result<Message, Error> {
    let len = message_len(buf)?.ok_or_else(|| error(1, 2, &[], "shorter than a header"))?;
    if len != buf.len() {
        return Err(error(
            1,
            2,
            &buf[16..18],
            "length field disagrees with the message",
        ));
    }
    let body = &buf[HEADER_LEN..];
    let bad_length = || error(1, 2, &buf[16..18], "length wrong for the message type");
    match buf[18] {
        kind::OPEN if len >= 29 => decode_open(body).map(Message::Open),
        kind::UPDATE if len >= 23 => decode_update(body, options).map(Message::Update),
        kind::NOTIFICATION if len >= 21 => Ok(Message::Notification(Notification {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        })),
        kind::KEEPALIVE if len == HEADER_LEN => Ok(Message::Keepalive),
        kind::ROUTE_REFRESH if len == 23 => Ok(Message::RouteRefresh(RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            subtype: body[2],
            safi: body[3],
        })),
        kind::OPEN | kind::UPDATE | kind::NOTIFICATION | kind::KEEPALIVE | kind::ROUTE_REFRESH => {
            Err(bad_length())
        }
        other => Err(error(1, 3, &[other], "unknown message type")),
    }
}

fn decode_open(b: &[u8]) -> Result<Open, Error> {
    let version = b[0];
    if version != 4 {
        // RFC 4271 6.2: the data is the largest version supported.
        return Err(error(2, 1, &[0, 4], "unsupported version"));
    }
    let my_as = u16::from_be_bytes([b[1], b[2]]);
    let hold_time = u16::from_be_bytes([b[3], b[4]]);
    if hold_time == 1 || hold_time == 2 {
        return Err(error(2, 6, &[], "hold time of 1 or 2 seconds"));
    }
    let bgp_id = Ipv4Addr::new(b[5], b[6], b[7], b[8]);
    if bgp_id.is_unspecified() || bgp_id.is_multicast() || bgp_id.is_broadcast() {
        return Err(error(2, 3, &[], "BGP identifier is not a unicast address"));
    }
    let params_len = usize::from(b[9]);
    let mut params = b.get(10..).ok_or_else(|| error(2, 0, &[], "truncated"))?;
    if params.len() != params_len {
        return Err(error(
            2,
            0,
            &[],
            "optional parameters length disagrees with the message",
        ));
    }
    let mut capabilities = Vec::new();
    while !params.is_empty() {
        let [ptype, plen, rest @ ..] = params else {
            return Err(error(2, 0, &[], "truncated optional parameter"));
        };
        let plen = usize::from(*plen);
        let value = rest
            .get(..plen)
            .ok_or_else(|| error(2, 0, &[], "optional parameter overruns"))?;
        if *ptype != 2 {
            return Err(error(
                2,
                4,
                &[],
                "optional parameter other than capabilities",
            ));
        }
        let mut caps = value;
        while !caps.is_empty() {
            let [code, clen, rest @ ..] = caps else {
                return Err(error(2, 0, &[], "truncated capability"));
            };
            let clen = usize::from(*clen);
            let v = rest
                .get(..clen)
                .ok_or_else(|| error(2, 0, &[], "capability overruns"))?;
            capabilities.push(decode_capability(*code, v)?);
            caps = &rest[clen..];
        }
        params = &rest[plen..];
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}

fn decode_capability(code: u8, v: &[u8]) -> Result<Capability, Error> {
    let bad = |reason| error(2, 0, &[], reason);
    Ok(match code {
        1 => match v {
            [a, b, _, safi] => Capability::Multiprotocol {
                afi: u16::from_be_bytes([*a, *b]),
                safi: *safi,
            },
            _ => return Err(bad("multiprotocol capability is not 4 bytes")),
        },
        2 if v.is_empty() => Capability::RouteRefresh,
        70 if v.is_empty() => Capability::EnhancedRouteRefresh,
        64 => {
            let [hi, lo, families @ ..] = v else {
                return Err(bad("graceful restart capability too short"));
            };
            if families.len() % 4 != 0 {
                return Err(bad("graceful restart families are not 4 bytes each"));
            }
            Capability::GracefulRestart(GracefulRestart {
                restarting: hi & 0x80 != 0,
                notification: hi & 0x40 != 0,
                time: u16::from_be_bytes([hi & 0x0f, *lo]),
                families: families
                    .chunks_exact(4)
                    .map(|f| (u16::from_be_bytes([f[0], f[1]]), f[2], f[3] & 0x80 != 0))
                    .collect(),
            })
        }
        65 => match v {
            [a, b, c, d] => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => return Err(bad("4-octet AS capability is not 4 bytes")),
        },
        _ => Capability::Unknown {
            code,
            value: v.to_vec(),
        },
    })
}

/// Reads prefixes of a family (each a length in bits, then just enough bytes).
fn decode_prefixes(mut b: &[u8], afi_: u16) -> Option<Vec<IpNet>> {
    let max = if afi_ == afi::IPV6 { 128 } else { 32 };
    let mut out = Vec::new();
    while let [bits, rest @ ..] = b {
        let bits = *bits;
        if bits > max {
            return None;
        }
        let n = usize::from(bits).div_ceil(8);
        let bytes = rest.get(..n)?;
        let net = if afi_ == afi::IPV6 {
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(bytes);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), bits).ok()?.trunc())
        } else {
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(bytes);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), bits).ok()?.trunc())
        };
        out.push(net);
        b = &rest[n..];
    }
    Some(out)
}

fn ipv4_prefixes(b: &[u8]) -> Option<Vec<Ipv4Net>> {
    decode_prefixes(b, afi::IPV4).map(|v| {
        v.into_iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            })
            .collect()
    })
}

fn decode_update(b: &[u8], options: Options) -> Result<Update, Error> {
    let malformed = |reason| error(3, 1, &[], reason);
    let withdrawn_len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let withdrawn_bytes = b
        .get(2..2 + withdrawn_len)
        .ok_or_else(|| malformed("withdrawn routes overrun"))?;
    let rest = &b[2 + withdrawn_len..];
    let [hi, lo, rest @ ..] = rest else {
        return Err(malformed("no total path attribute length"));
    };
    let attrs_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let attr_bytes = rest
        .get(..attrs_len)
        .ok_or_else(|| malformed("path attributes overrun"))?;
    let nlri_bytes = &rest[attrs_len..];
    let withdrawn = ipv4_prefixes(withdrawn_bytes)
        .ok_or_else(|| error(3, 10, &[], "malformed withdrawn routes"))?;
    let nlri = ipv4_prefixes(nlri_bytes).ok_or_else(|| error(3, 10, &[], "malformed NLRI"))?;
    let mut update = Update {
        withdrawn,
        attributes: Vec::new(),
        nlri,
        treat_as_withdraw: None,
    };
    decode_attributes(attr_bytes, options, &mut update)?;
    if update.treat_as_withdraw.is_none() {
        // RFC 7606 section 3 (d): a well-known mandatory attribute is missing. ORIGIN
        // and AS_PATH go with every route; NEXT_HOP with the routes of the NLRI field
        // only, since MP_REACH_NLRI carries its own (RFC 4760 section 3).
        let ipv4 = !update.nlri.is_empty();
        let mp = update
            .attributes
            .iter()
            .any(|a| matches!(a, Attribute::MpReach(m) if !m.nlri.is_empty()));
        let missing = [
            (attr::ORIGIN, "ORIGIN missing", ipv4 || mp),
            (attr::AS_PATH, "AS_PATH missing", ipv4 || mp),
            (attr::NEXT_HOP, "NEXT_HOP missing", ipv4),
        ]
        .into_iter()
        .find(|&(code, _, needed)| needed && update.attribute(code).is_none());
        if let Some((code, reason, _)) = missing {
            update.treat_as_withdraw = Some(AttributeError { code, reason });
        }
    }
    Ok(update)
}

/// What RFC 6793 attributes a 2-octet speaker passed on, to merge once all are read.
#[derive(Default)]
struct As4 {
    path: Option<AsPath>,
    aggregator: Option<(u32, Ipv4Addr)>,
}

fn decode_attributes(b: &[u8], options: Options, update: &mut Update) -> Result<(), Error> {
    let mut as4 = As4::default();
    decode_attribute_list(b, options, update, &mut as4)?;
    // RFC 6793 section 4.2.3: an AGGREGATOR with a real 2-octet AS means the AS4_
    // attributes are stale (an old speaker aggregated); with AS_TRANS, AS4_AGGREGATOR
    // holds the real one.
    let mut use_as4 = true;
    if let Some(Attribute::Aggregator { asn, address }) = update
        .attributes
        .iter_mut()
        .find(|a| a.code() == attr::AGGREGATOR)
    {
        match as4.aggregator {
            _ if *asn != u32::from(AS_TRANS) => use_as4 = false,
            Some((real, from)) => (*asn, *address) = (real, from),
            None => {}
        }
    }
    if use_as4
        && let Some(as4_path) = as4.path
        && let Some(Attribute::AsPath(path)) = update
            .attributes
            .iter_mut()
            .find(|a| a.code() == attr::AS_PATH)
    {
        *path = merge_as4_path(path, as4_path);
    }
    Ok(())
}

fn decode_attribute_list(
    mut b: &[u8],
    options: Options,
    update: &mut Update,
    as4: &mut As4,
) -> Result<(), Error> {
    let mut seen = [false; 256];
    let withdraw = |update: &mut Update, code: u8, reason: &'static str| {
        update
            .treat_as_withdraw
            .get_or_insert(AttributeError { code, reason });
    };
    while !b.is_empty() {
        let b_start = b;
        let [flags, code, rest @ ..] = b else {
            withdraw(update, 0, "truncated attribute header");
            return Ok(());
        };
        let (len, value_start) = if flags & FLAG_EXTENDED != 0 {
            match rest {
                [hi, lo, ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), 2),
                _ => {
                    withdraw(update, *code, "truncated attribute length");
                    return Ok(());
                }
            }
        } else {
            match rest {
                [l, ..] => (usize::from(*l), 1),
                _ => {
                    withdraw(update, *code, "truncated attribute length");
                    return Ok(());
                }
            }
        };
        let Some(value) = rest.get(value_start..value_start + len) else {
            // RFC 7606 section 4: the attribute overruns the list; the NLRI field is still
            // found from the total length, so the UPDATE is treated as a withdrawal.
            withdraw(update, *code, "attribute overruns the attribute list");
            return Ok(());
        };
        b = &rest[value_start + len..];
        let (flags, code) = (*flags, *code);
        if seen[usize::from(code)] {
            if code == attr::MP_REACH_NLRI || code == attr::MP_UNREACH_NLRI {
                return Err(error(
                    3,
                    1,
                    &[],
                    "MP_REACH_NLRI or MP_UNREACH_NLRI repeated",
                ));
            }
            // RFC 7606 section 3 (g): keep the first, discard the others.
            continue;
        }
        seen[usize::from(code)] = true;
        let Some(category) = category(code) else {
            if flags & FLAG_OPTIONAL == 0 {
                // RFC 4271 6.3: a well-known attribute we do not know is an error the
                // session cannot survive (RFC 7606 leaves this one as it was). The
                // data is the attribute.
                let whole = &b_start[..b_start.len() - b.len()];
                return Err(error(3, 2, whole, "unrecognized well-known attribute"));
            }
            update.attributes.push(Attribute::Unknown {
                // Only the optional, transitive and partial bits mean anything once
                // read; the length form is the encoder's choice, the low bits unused.
                // (Optional, or it would have been refused above.)
                flags: if flags & FLAG_TRANSITIVE != 0 {
                    // An optional transitive attribute we pass on without knowing it.
                    (flags | FLAG_PARTIAL) & 0xe0
                } else {
                    flags & 0xe0
                },
                code,
                value: value.to_vec(),
            });
            continue;
        };
        if flags & FLAGS_OPTIONAL_TRANSITIVE != category.flags() {
            match code {
                // RFC 6793 section 6: a malformed AS4_ attribute is discarded.
                attr::AS4_PATH | attr::AS4_AGGREGATOR => continue,
                // Still read: treat-as-withdraw withdraws the routes it carries.
                attr::MP_REACH_NLRI => {
                    withdraw(update, code, "attribute flags conflict with its type")
                }
                _ => {
                    withdraw(update, code, "attribute flags conflict with its type");
                    continue;
                }
            }
        }
        match decode_known(code, value, options, as4)? {
            Decoded::Attribute(a) => update.attributes.push(a),
            Decoded::Discard => {}
            Decoded::Withdraw(reason) => withdraw(update, code, reason),
        }
    }
    Ok(())
}

/// What becomes of an attribute read (RFC 7606 section 2 names the approaches).
enum Decoded {
    Attribute(Attribute),
    /// "Attribute discard": the UPDATE is read as if the attribute were absent.
    Discard,
    /// "Treat-as-withdraw", for this reason.
    Withdraw(&'static str),
}

/// Reads the value of an attribute this codec knows, each as RFC 7606 section 7 says.
fn decode_known(code: u8, v: &[u8], options: Options, as4: &mut As4) -> Result<Decoded, Error> {
    use Decoded::{Discard, Withdraw};
    let ok = |a| Ok(Decoded::Attribute(a));
    match code {
        // 7.1
        attr::ORIGIN => match v {
            [0] => ok(Attribute::Origin(Origin::Igp)),
            [1] => ok(Attribute::Origin(Origin::Egp)),
            [2] => ok(Attribute::Origin(Origin::Incomplete)),
            _ => Ok(Withdraw("malformed ORIGIN")),
        },
        // 7.2; RFC 7607: AS 0 makes the path malformed.
        attr::AS_PATH => match decode_as_path(v, options) {
            None => Ok(Withdraw("malformed AS_PATH")),
            Some(p) if p.contains(0) => Ok(Withdraw("AS 0 in AS_PATH (RFC 7607)")),
            Some(p) => ok(Attribute::AsPath(p)),
        },
        // 7.3
        attr::NEXT_HOP => match v {
            [a, b, c, d] => {
                let nh = Ipv4Addr::new(*a, *b, *c, *d);
                if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                    Ok(Withdraw("NEXT_HOP is not a unicast address"))
                } else {
                    ok(Attribute::NextHop(nh))
                }
            }
            _ => Ok(Withdraw("NEXT_HOP is not 4 octets")),
        },
        // 7.4
        attr::MED => Ok(be32(v).map_or(Withdraw("MED is not 4 octets"), |m| {
            Decoded::Attribute(Attribute::Med(m))
        })),
        // 7.5: an external peer has no say in our preferences.
        attr::LOCAL_PREF if options.external => Ok(Discard),
        attr::LOCAL_PREF => Ok(be32(v).map_or(Withdraw("LOCAL_PREF is not 4 octets"), |l| {
            Decoded::Attribute(Attribute::LocalPref(l))
        })),
        // 7.6
        attr::ATOMIC_AGGREGATE if v.is_empty() => ok(Attribute::AtomicAggregate),
        // 7.7 (the width follows the AS numbers of the session); RFC 7607: not AS 0.
        attr::AGGREGATOR => Ok(match aggregator(v, options.four_octet_as) {
            Some((asn, address)) if asn != 0 => {
                Decoded::Attribute(Attribute::Aggregator { asn, address })
            }
            _ => Discard,
        }),
        // 7.8
        attr::COMMUNITIES => Ok(match multiple_of::<4>(v) {
            Some(cs) => {
                Decoded::Attribute(Attribute::Communities(cs.map(u32::from_be_bytes).collect()))
            }
            None => Withdraw("COMMUNITIES is not a non-zero multiple of 4 octets"),
        }),
        // 7.9 and 7.10: route reflection attributes are an internal matter.
        attr::ORIGINATOR_ID | attr::CLUSTER_LIST if options.external => Ok(Discard),
        attr::ORIGINATOR_ID => Ok(match v {
            [a, b, c, d] => {
                Decoded::Attribute(Attribute::OriginatorId(Ipv4Addr::new(*a, *b, *c, *d)))
            }
            _ => Withdraw("ORIGINATOR_ID is not 4 octets"),
        }),
        attr::CLUSTER_LIST => Ok(match multiple_of::<4>(v) {
            Some(ids) => {
                Decoded::Attribute(Attribute::ClusterList(ids.map(Ipv4Addr::from).collect()))
            }
            None => Withdraw("CLUSTER_LIST is not a non-zero multiple of 4 octets"),
        }),
        // 7.11 and 7.12: a session reset (RFC 4760 section 7, Optional Attribute Error).
        attr::MP_REACH_NLRI => decode_mp_reach(v)
            .map(|m| Decoded::Attribute(Attribute::MpReach(m)))
            .ok_or_else(|| error(3, 9, &[], "malformed MP_REACH_NLRI")),
        attr::MP_UNREACH_NLRI => decode_mp_unreach(v)
            .map(|m| Decoded::Attribute(Attribute::MpUnreach(m)))
            .ok_or_else(|| error(3, 9, &[], "malformed MP_UNREACH_NLRI")),
        // 7.14
        attr::EXTENDED_COMMUNITIES => Ok(match multiple_of::<8>(v) {
            Some(cs) => Decoded::Attribute(Attribute::ExtendedCommunities(cs.collect())),
            None => Withdraw("EXTENDED_COMMUNITIES is not a non-zero multiple of 8 octets"),
        }),
        // 7.15
        attr::IPV6_EXTENDED_COMMUNITIES => Ok(match multiple_of::<20>(v) {
            Some(cs) => Decoded::Attribute(Attribute::Ipv6ExtendedCommunities(cs.collect())),
            None => Withdraw("IPv6 extended communities are not a non-zero multiple of 20 octets"),
        }),
        // RFC 8092 section 6; repeats are removed silently (section 5).
        attr::LARGE_COMMUNITIES => Ok(match multiple_of::<12>(v) {
            Some(cs) => {
                let mut out: Vec<LargeCommunity> = Vec::new();
                for c in cs {
                    let c =
                        [0, 4, 8].map(|i| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]));
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                Decoded::Attribute(Attribute::LargeCommunities(out))
            }
            None => Withdraw("LARGE_COMMUNITY is not a non-zero multiple of 12 octets"),
        }),
        // RFC 6793: between 4-octet speakers the AS4_ attributes are discarded; from a
        // 2-octet one they are merged once every attribute is read. A malformed one, or
        // one with AS 0 (RFC 7607), is discarded (RFC 6793 section 6).
        attr::AS4_PATH => {
            if !options.four_octet_as {
                as4.path = decode_as_path_width(v, true).filter(|p| !p.contains(0));
            }
            Ok(Discard)
        }
        attr::AS4_AGGREGATOR => {
            if !options.four_octet_as {
                as4.aggregator = aggregator(v, true).filter(|(asn, _)| *asn != 0);
            }
            Ok(Discard)
        }
        // An ATOMIC_AGGREGATE with a value (7.6); `category` names no other.
        _ => Ok(Discard),
    }
}

/// AGGREGATOR or AS4_AGGREGATOR: an AS of 2 or 4 octets, then an IPv4 address.
fn aggregator(v: &[u8], four_octet: bool) -> Option<(u32, Ipv4Addr)> {
    match (four_octet, v) {
        (true, [a, b, c, d, rest @ ..]) => {
            let address: [u8; 4] = rest.try_into().ok()?;
            Some((
                u32::from_be_bytes([*a, *b, *c, *d]),
                Ipv4Addr::from(address),
            ))
        }
        (false, [a, b, rest @ ..]) => {
            let address: [u8; 4] = rest.try_into().ok()?;
            Some((
                u32::from(u16::from_be_bytes([*a, *b])),
                Ipv4Addr::from(address),
            ))
        }
        _ => None,
    }
}

/// The value as `N`-octet items, if it is a non-zero multiple of `N` octets.
fn multiple_of<const N: usize>(v: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    (!v.is_empty() && v.len().is_multiple_of(N)).then(|| {
        v.chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok())
    })
}

fn be32(v: &[u8]) -> Option<u32> {
    match v {
        [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// An AS path's segments as AS_PATH (or AS4_PATH) carries them: 4-octet AS numbers, or
/// 2-octet ones with AS_TRANS for those that do not fit.
fn as_path_bytes(p: &AsPath, four_octet: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for s in &p.segments {
        for chunk in s.asns.chunks(255) {
            v.push(if s.set { 1 } else { 2 });
            v.push(chunk.len() as u8);
            for asn in chunk {
                if four_octet {
                    v.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let two = u16::try_from(*asn).unwrap_or(AS_TRANS);
                    v.extend_from_slice(&two.to_be_bytes());
                }
            }
        }
    }
    v
}

/// RFC 6793 section 4.2.3: the AS path from a speaker without 4-octet AS numbers, from
/// its AS_PATH and the AS4_PATH it passed on. The AS4_PATH holds the path as far back as
/// 4-octet speakers go; the leading ASNs AS_PATH has beyond that are taken from it.
fn merge_as4_path(as_path: &AsPath, as4_path: AsPath) -> AsPath {
    let (n, m) = (as_path.len(), as4_path.len());
    if n < m {
        return as_path.clone();
    }
    let mut lead = n - m;
    let mut segments: Vec<AsSegment> = Vec::new();
    for s in &as_path.segments {
        if lead == 0 {
            break;
        }
        if s.set {
            segments.push(s.clone());
            lead -= 1;
        } else {
            let take = lead.min(s.asns.len());
            segments.push(AsSegment {
                set: false,
                asns: s.asns[..take].to_vec(),
            });
            lead -= take;
        }
    }
    for s in as4_path.segments {
        match segments.last_mut() {
            // Two sequences meeting at the seam are one.
            Some(last) if !last.set && !s.set && last.asns.len() + s.asns.len() <= 255 => {
                last.asns.extend(s.asns);
            }
            _ => segments.push(s),
        }
    }
    AsPath { segments }
}

fn decode_as_path(v: &[u8], options: Options) -> Option<AsPath> {
    decode_as_path_width(v, options.four_octet_as)
}

fn decode_as_path_width(mut v: &[u8], four_octet: bool) -> Option<AsPath> {
    let width = if four_octet { 4 } else { 2 };
    let mut segments = Vec::new();
    while let [kind, count, rest @ ..] = v {
        let set = match kind {
            1 => true,
            2 => false,
            _ => return None,
        };
        let count = usize::from(*count);
        if count == 0 {
            return None;
        }
        let bytes = rest.get(..count * width)?;
        let asns = bytes
            .chunks_exact(width)
            .map(|c| {
                if width == 4 {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        segments.push(AsSegment { set, asns });
        v = &rest[count * width..];
    }
    v.is_empty().then_some(AsPath { segments })
}

fn decode_mp_reach(v: &[u8]) -> Option<MpReach> {
    let [a, b, safi, nh_len, rest @ ..] = v else {
        return None;
    };
    let afi_ = u16::from_be_bytes([*a, *b]);
    let nh_len = usize::from(*nh_len);
    let nh = rest.get(..nh_len)?;
    let next_hops = match (afi_, nh_len) {
        (afi::IPV4, 4) => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        (afi::IPV6, 16) => vec![IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(nh).ok()?))],
        (afi::IPV6, 32) => vec![
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&nh[..16]).ok()?)),
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&nh[16..]).ok()?)),
        ],
        _ => return None,
    };
    // One reserved byte, then the NLRI.
    let nlri = decode_prefixes(rest.get(nh_len + 1..)?, afi_)?;
    Some(MpReach {
        afi: afi_,
        safi: *safi,
        next_hops,
        nlri,
    })
}

fn decode_mp_unreach(v: &[u8]) -> Option<MpUnreach> {
    let [a, b, safi, rest @ ..] = v else {
        return None;
    };
    let afi_ = u16::from_be_bytes([*a, *b]);
    if afi_ != afi::IPV4 && afi_ != afi::IPV6 {
        return None;
    }
    Some(MpUnreach {
        afi: afi_,
        safi: *safi,
        withdrawn: decode_prefixes(rest, afi_)?,
    })
}

/// Writes one message at the end of `out`.
pub fn encode(message: &Message, options: Options, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0, 0]);
    match message {
        Message::Open(o) => {
            out[start + 18] = kind::OPEN;
            out.push(o.version);
            out.extend_from_slice(&o.my_as.to_be_bytes());
            out.extend_from_slice(&o.hold_time.to_be_bytes());
            out.extend_from_slice(&o.bgp_id.octets());
            let mut caps = Vec::new();
            for c in &o.capabilities {
                encode_capability(c, &mut caps);
            }
            if caps.len() > 253 {
                return Err(EncodeError::TooLong(caps.len()));
            }
            if caps.is_empty() {
                out.push(0);
            } else {
                out.push(caps.len() as u8 + 2);
                out.extend_from_slice(&[2, caps.len() as u8]);
                out.extend_from_slice(&caps);
            }
        }
        Message::Update(u) => {
            out[start + 18] = kind::UPDATE;
            let at = out.len();
            out.extend_from_slice(&[0, 0]);
            for p in &u.withdrawn {
                encode_prefix(&IpNet::V4(*p), out);
            }
            let len = (out.len() - at - 2) as u16;
            out[at..at + 2].copy_from_slice(&len.to_be_bytes());
            let at = out.len();
            out.extend_from_slice(&[0, 0]);
            encode_attributes(&u.attributes, options, out)?;
            let len = out.len() - at - 2;
            out[at..at + 2].copy_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
            for p in &u.nlri {
                encode_prefix(&IpNet::V4(*p), out);
            }
        }
        Message::Notification(n) => {
            out[start + 18] = kind::NOTIFICATION;
            out.extend_from_slice(&[n.code, n.subcode]);
            out.extend_from_slice(&n.data);
        }
        Message::Keepalive => out[start + 18] = kind::KEEPALIVE,
        Message::RouteRefresh(r) => {
            out[start + 18] = kind::ROUTE_REFRESH;
            out.extend_from_slice(&r.afi.to_be_bytes());
            out.extend_from_slice(&[r.subtype, r.safi]);
        }
    }
    let len = out.len() - start;
    if len > MAX_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLong(len));
    }
    out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}

/// The path attributes of an UPDATE as they go on the wire, appended to `out`.
fn encode_attributes(
    attributes: &[Attribute],
    options: Options,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    // RFC 7606 section 5.1: MP_REACH_NLRI and MP_UNREACH_NLRI first, so a
    // receiver finds the routes even when a later attribute is malformed; the
    // others in ascending order of type (RFC 4271 section 5).
    let mut ordered: Vec<&Attribute> = attributes.iter().collect();
    ordered.sort_by_key(|a| match a.code() {
        attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI => (0, a.code()),
        code => (1, code),
    });
    for a in ordered {
        encode_attribute(a, options, out)?;
    }
    // RFC 6793 section 4.2.2: to a speaker without 4-octet AS numbers, the ones
    // that do not fit go as AS_TRANS in AS_PATH and AGGREGATOR, and whole in
    // AS4_PATH and AS4_AGGREGATOR.
    if !options.four_octet_as {
        for a in attributes {
            let as4 = match a {
                Attribute::AsPath(path)
                    if path
                        .segments
                        .iter()
                        .flat_map(|s| &s.asns)
                        .any(|&n| n > 0xffff) =>
                {
                    (attr::AS4_PATH, as_path_bytes(path, true))
                }
                Attribute::Aggregator { asn, address } if *asn > 0xffff => {
                    let mut v = asn.to_be_bytes().to_vec();
                    v.extend_from_slice(&address.octets());
                    (attr::AS4_AGGREGATOR, v)
                }
                _ => continue,
            };
            let as4 = Attribute::Unknown {
                flags: FLAGS_OPTIONAL_TRANSITIVE,
                code: as4.0,
                value: as4.1,
            };
            encode_attribute(&as4, options, out)?;
        }
    }
    Ok(())
}

/// The bytes `attributes` take in an UPDATE sent with `options` (AS4_PATH and
/// AS4_AGGREGATOR included where a 2-octet speaker needs them): what is left for NLRI.
pub fn attributes_len(attributes: &[Attribute], options: Options) -> Result<usize, EncodeError> {
    let mut out = Vec::new();
    encode_attributes(attributes, options, &mut out)?;
    Ok(out.len())
}

fn encode_capability(c: &Capability, out: &mut Vec<u8>) {
    let mut push = |code: u8, value: &[u8]| {
        out.push(code);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    match c {
        Capability::Multiprotocol { afi, safi } => {
            let [a, b] = afi.to_be_bytes();
            push(1, &[a, b, 0, *safi]);
        }
        Capability::RouteRefresh => push(2, &[]),
        Capability::EnhancedRouteRefresh => push(70, &[]),
        Capability::GracefulRestart(g) => {
            let mut v = Vec::with_capacity(2 + 4 * g.families.len());
            let time = g.time & 0x0fff;
            v.push(
                (u8::from(g.restarting) << 7) | (u8::from(g.notification) << 6) | (time >> 8) as u8,
            );
            v.push(time as u8);
            for (afi, safi, fwd) in &g.families {
                v.extend_from_slice(&afi.to_be_bytes());
                v.extend_from_slice(&[*safi, u8::from(*fwd) << 7]);
            }
            push(64, &v);
        }
        Capability::FourOctetAs(a) => push(65, &a.to_be_bytes()),
        Capability::Unknown { code, value } => push(*code, value),
    }
}

fn encode_prefix(p: &IpNet, out: &mut Vec<u8>) {
    let bits = p.prefix_len();
    out.push(bits);
    let n = usize::from(bits).div_ceil(8);
    match p {
        IpNet::V4(n4) => out.extend_from_slice(&n4.network().octets()[..n]),
        IpNet::V6(n6) => out.extend_from_slice(&n6.network().octets()[..n]),
    }
}

fn encode_attribute(a: &Attribute, options: Options, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut v = Vec::new();
    match a {
        Attribute::Origin(o) => v.push(*o as u8),
        Attribute::AsPath(p) => v = as_path_bytes(p, options.four_octet_as),
        Attribute::NextHop(nh) => v.extend_from_slice(&nh.octets()),
        Attribute::Med(m) | Attribute::LocalPref(m) => v.extend_from_slice(&m.to_be_bytes()),
        Attribute::AtomicAggregate => {}
        Attribute::Aggregator { asn, address } => {
            if options.four_octet_as {
                v.extend_from_slice(&asn.to_be_bytes());
            } else {
                v.extend_from_slice(&u16::try_from(*asn).unwrap_or(AS_TRANS).to_be_bytes());
            }
            v.extend_from_slice(&address.octets());
        }
        Attribute::Communities(cs) => {
            for c in cs {
                v.extend_from_slice(&c.to_be_bytes());
            }
        }
        Attribute::OriginatorId(id) => v.extend_from_slice(&id.octets()),
        Attribute::ClusterList(ids) => {
            for id in ids {
                v.extend_from_slice(&id.octets());
            }
        }
        Attribute::ExtendedCommunities(cs) => v.extend(cs.iter().flatten()),
        Attribute::Ipv6ExtendedCommunities(cs) => v.extend(cs.iter().flatten()),
        Attribute::LargeCommunities(cs) => {
            for c in cs.iter().flatten() {
                v.extend_from_slice(&c.to_be_bytes());
            }
        }
        Attribute::MpReach(m) => {
            v.extend_from_slice(&m.afi.to_be_bytes());
            v.push(m.safi);
            let mut nh = Vec::new();
            for h in &m.next_hops {
                match h {
                    IpAddr::V4(a) => nh.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => nh.extend_from_slice(&a.octets()),
                }
            }
            v.push(nh.len() as u8);
            v.extend_from_slice(&nh);
            v.push(0);
            for p in &m.nlri {
                encode_prefix(p, &mut v);
            }
        }
        Attribute::MpUnreach(m) => {
            v.extend_from_slice(&m.afi.to_be_bytes());
            v.push(m.safi);
            for p in &m.withdrawn {
                encode_prefix(p, &mut v);
            }
        }
        Attribute::Unknown { value, .. } => v.extend_from_slice(value),
    }
    let flags = a.flags();
    if v.len() > 255 {
        let len = u16::try_from(v.len()).map_err(|_| EncodeError::AttributeTooLong {
            code: a.code(),
            len: v.len(),
        })?;
        out.extend_from_slice(&[flags | FLAG_EXTENDED, a.code()]);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.extend_from_slice(&[flags, a.code(), v.len() as u8]);
    }
    out.extend_from_slice(&v);
    Ok(())
}
