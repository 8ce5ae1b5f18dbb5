//! A speaker fed arbitrary bytes, cut at arbitrary places, after a valid OPEN and
//! KEEPALIVE from its neighbor: never panics, and answers with what it has to send.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_bgp::codec::{encode, Capability, Message, Open, Options};
use strata_bgp::session::Config;
use strata_bgp::speaker::{PeerConfig, PeerId, Speaker};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let mut session = Config::new(65000, Ipv4Addr::new(2, 2, 2, 2), 65001);
    session.passive = true;
    let peer = PeerConfig {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_address: Ipv4Addr::new(10, 0, 0, 2),
        session,
    };
    let mut speaker = Speaker::new(65000, None, vec![peer.clone(), peer]);
    speaker.start(Duration::ZERO);
    let Some(conn) = speaker.connected(PeerId(0), false, Duration::ZERO) else { return };
    let options = Options { four_octet_as: true, external: false };
    let mut bytes = Vec::new();
    let open = Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: vec![Capability::FourOctetAs(65001)],
    };
    encode(&Message::Open(open), options, &mut bytes).expect("an OPEN encodes");
    encode(&Message::Keepalive, options, &mut bytes).expect("a KEEPALIVE encodes");
    bytes.extend_from_slice(body);
    let cut = usize::from(cut).min(bytes.len());
    speaker.received(conn, &bytes[..cut], Duration::ZERO);
    speaker.received(conn, &bytes[cut..], Duration::from_secs(1));
    speaker.poll(Duration::from_secs(300));
    while speaker.poll_output().is_some() {}
});
