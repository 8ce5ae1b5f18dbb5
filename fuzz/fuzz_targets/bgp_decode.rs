//! BGP messages from arbitrary bytes (given a valid header): never panics; what decodes
//! encodes and decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::{HEADER_LEN, MARKER, Message, Options, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let options = Options { four_octet_as: first & 0x80 != 0, external: first & 0x40 != 0 };
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((HEADER_LEN + body.len()).min(65535) as u16).to_be_bytes());
    m.push(first & 0x07);
    m.extend_from_slice(body);
    // A treat-as-withdraw UPDATE does not survive re-encoding as itself (what was
    // malformed is dropped), so only well-formed messages must round-trip.
    let malformed = |msg: &Message| matches!(msg, Message::Update(u) if u.treat_as_withdraw.is_some());
    if let Some(msg) = decode(&m, options).ok().filter(|m| !malformed(m)) {
        let mut out = Vec::new();
        if encode(&msg, options, &mut out).is_ok() {
            let again = decode(&out, options).expect("our own encoding decodes");
            assert_eq!(again, msg);
        }
    }
});
