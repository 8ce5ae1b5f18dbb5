//! What the BGP fuzz targets share: a message of one type around arbitrary bytes, and
//! the round trip every well-formed message must survive.

use strata_bgp::codec::{
    attr, decode, encode, AsSegment, Attribute, Message, Options, HEADER_LEN, MARKER,
};

/// The options the first byte picks, and a message of type `kind` around the rest.
pub fn message(kind: u8, data: &[u8]) -> Option<(Options, Vec<u8>)> {
    let (&first, body) = data.split_first()?;
    let options = Options { four_octet_as: first & 0x80 != 0, external: first & 0x40 != 0 };
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((HEADER_LEN + body.len()).min(65535) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    Some((options, m))
}

/// Attributes in the order the encoder writes them (MP_REACH/MP_UNREACH first, then by
/// type), and AS_SEQUENCEs that follow each other as one (the same path: merging
/// AS4_PATH joins them at the seam), so a decoded message compares with its
/// re-encoding.
pub fn normalize(mut msg: Message) -> Message {
    if let Message::Update(u) = &mut msg {
        u.attributes.sort_by_key(|a: &Attribute| match a.code() {
            attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI => (0, a.code()),
            code => (1, code),
        });
        for a in &mut u.attributes {
            if let Attribute::AsPath(p) = a {
                let mut joined: Vec<AsSegment> = Vec::new();
                for s in p.segments.drain(..) {
                    match joined.last_mut() {
                        Some(last) if !last.set && !s.set => last.asns.extend(s.asns),
                        _ => joined.push(s),
                    }
                }
                p.segments = joined;
            }
        }
    }
    msg
}

/// Decodes `m`; a well-formed message encodes and decodes to itself.
pub fn round_trip(m: &[u8], options: Options) -> Option<Message> {
    let msg = decode(m, options).ok()?;
    // A treat-as-withdraw UPDATE does not survive re-encoding as itself (what was
    // malformed is dropped), so only well-formed messages must round-trip.
    if matches!(&msg, Message::Update(u) if u.treat_as_withdraw.is_some()) {
        return Some(msg);
    }
    let mut out = Vec::new();
    if encode(&msg, options, &mut out).is_ok() {
        let again = decode(&out, options).expect("our own encoding decodes");
        assert_eq!(normalize(again), normalize(msg.clone()));
    }
    Some(msg)
}
