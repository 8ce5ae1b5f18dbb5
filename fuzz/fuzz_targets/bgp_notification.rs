//! NOTIFICATION (RFC 4271 4.5) with its Cease shutdown communication (RFC 8203, RFC
//! 9003): decoded, round-tripped, read and displayed without panicking; a communication
//! that reads is the UTF-8 text the length says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::Message;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((options, m)) = common::message(3, data) else { return };
    let Some(Message::Notification(n)) = common::round_trip(&m, options) else { return };
    if let Some(Ok(text)) = n.shutdown_communication() {
        assert_eq!(usize::from(n.data[0]), text.len());
    }
    let _ = n.to_string();
});
