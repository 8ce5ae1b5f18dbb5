//! `strata bgp` against BIRD 2 on loopback addresses: the session comes up, each side's
//! announcement reaches the other with its attributes, a stopped speaker's routes leave
//! BIRD, and a malformed UPDATE from a raw test peer gets RFC 7606's treat-as-withdraw
//! while a malformed header gets its NOTIFICATION, without bringing the speaker down.
//!
//! Skipped (with a message) when BIRD is not installed, unless STRATA_REQUIRE_BIRD is set,
//! as the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Guard, bird_present, birdc, message, read_message, start_bird, wait_for};

/// Loopback addresses of our own for this test run.
fn addrs(tag: u8) -> (Ipv4Addr, Ipv4Addr) {
    let x = (std::process::id() % 200) as u8 + 20;
    (Ipv4Addr::new(127, x, tag, 2), Ipv4Addr::new(127, x, tag, 3))
}

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

#[test]
fn bird_keeps_our_routes_through_a_crash_when_we_announce_graceful_restart() {
    if !bird_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-bird-gr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bird_ip, our_ip) = addrs(7);
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\n\
             protocol bgp strata {{\n  local {bird_ip} as 64500;\n  neighbor {our_ip} as 64501;\n  multihop;\n  strict bind on;\n  hold time 9;\n  \
             ipv4 {{ import all; export all; next hop address 192.0.2.1; }};\n}}\n"
        ),
    )
    .unwrap();
    let (config, _status) =
        common::speaker_config(&dir, &our_ip.to_string(), &bird_ip.to_string(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("graceful_restart = 60\n{text}")).unwrap();
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&config));
    let has_vip = |ctl: &Path| {
        birdc(ctl, &["show", "route", "for", "192.168.133.74/32", "all"])
            .contains("BGP.as_path: 64501")
    };
    wait_for("BIRD to learn our VIP", Duration::from_secs(15), || {
        has_vip(&ctl)
    });
    assert!(
        birdc(&ctl, &["show", "protocols", "all", "strata"]).contains("Graceful restart"),
        "BIRD did not see our capability"
    );

    // The speaker dies without a NOTIFICATION: BIRD's session goes down, the route stays.
    let mut crashed = guard.children.pop().unwrap();
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    wait_for(
        "BIRD to see the session go",
        Duration::from_secs(15),
        || !birdc(&ctl, &["show", "protocols", "strata"]).contains("Established"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        has_vip(&ctl),
        "BIRD dropped the VIP although we can restart"
    );

    // Back up: the session comes back and the route is ours again.
    guard.children.push(common::speaker(&config));
    wait_for("the session to come back", Duration::from_secs(20), || {
        birdc(&ctl, &["show", "protocols", "strata"]).contains("Established")
    });
    wait_for("the VIP after the restart", Duration::from_secs(10), || {
        has_vip(&ctl)
    });
}

#[test]
fn strata_and_bird_peer_over_ipv6() {
    if !bird_present() {
        return;
    }
    // Both on ::1 (the one IPv6 loopback address), on ports of this test run's own.
    let base = 20000 + (std::process::id() % 10000) as u16 * 2;
    let (ours, birds) = (base, base + 1);
    let dir = std::env::temp_dir().join(format!("strata-bird-v6-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\n\
             protocol static s6 {{ ipv6; route 2001:db8:200::/48 blackhole; }}\n\
             protocol bgp strata {{\n  local ::1 port {birds} as 64500;\n  neighbor ::1 port {ours} as 64501;\n  \
             multihop;\n  strict bind on;\n  hold time 9;\n  \
             ipv6 {{ import all; export all; next hop address 2001:db8::1; }};\n}}\n"
        ),
    )
    .unwrap();
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"10.0.0.3\"\nlocal = \"::1\"\nport = {ours}\n\
             control_socket = \"{}\"\n\
             [[neighbor]]\naddress = \"::1\"\nport = {birds}\nasn = 64500\nhold_time = 9\nipv6 = true\n\
             [[announce]]\nprefix = \"2001:db8:133::74/128\"\nnext_hop = \"2001:db8::20\"\n",
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&config));
    wait_for(
        "BIRD to learn our IPv6 VIP",
        Duration::from_secs(20),
        || {
            let route = birdc(
                &ctl,
                &["show", "route", "for", "2001:db8:133::74/128", "all"],
            );
            route.contains("BGP.as_path: 64501") && route.contains("BGP.next_hop: 2001:db8::20")
        },
    );
    let show = || common::bgp_show(&config, &[]);
    wait_for(
        "our speaker to learn BIRD's route",
        Duration::from_secs(10),
        || show().contains("received 2001:db8:200::/48 via 2001:db8::1 AS path 64500"),
    );
    assert!(
        show().contains("neighbor ::1 AS 64500 Established"),
        "{}",
        show()
    );
}

#[test]
fn four_octet_as_paths_cross_a_two_octet_session_with_bird() {
    // strata A (AS 4200000001) peers with BIRD and with strata B; BIRD and B peer with
    // 4-octet AS numbers turned off on BIRD's side (RFC 6793: AS_TRANS in AS_PATH, the
    // real path in AS4_PATH). A's route reaches B through BIRD, where B must merge what
    // BIRD wrote; and B passes A's route on to BIRD, where BIRD must read what B wrote.
    if !bird_present() {
        return;
    }
    let x = (std::process::id() % 200) as u8 + 20;
    let bird_ip = format!("127.{x}.12.2");
    let a_ip = format!("127.{x}.12.3");
    let b_ip = format!("127.{x}.12.4");
    let dir = std::env::temp_dir().join(format!("strata-bird-as4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let protocol = |name: &str, ip: &str, asn: u32, as4: &str| {
        format!(
            "protocol bgp {name} {{\n  local {bird_ip} as 64500;\n  neighbor {ip} as {asn};\n  \
             enable as4 {as4};\n  multihop;\n  strict bind on;\n  hold time 9;\n  \
             ipv4 {{ import all; export all; }};\n}}\n"
        )
    };
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\n{}{}",
            protocol("a", &a_ip, 4_200_000_001, "on"),
            protocol("b", &b_ip, 64502, "off")
        ),
    )
    .unwrap();
    let speaker_file = |name: &str, ip: &str, asn: u32, rest: &str| {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "asn = {asn}\nrouter_id = \"{ip}\"\nlocal = \"{ip}\"\n\
                 control_socket = \"{}\"\n\
                 [[neighbor]]\naddress = \"{bird_ip}\"\nasn = 64500\nhold_time = 9\n{rest}",
                dir.join(format!("{name}.sock")).display()
            ),
        )
        .unwrap();
        config
    };
    let a = speaker_file(
        "a",
        &a_ip,
        4_200_000_001,
        &format!(
            "[[neighbor]]\naddress = \"{b_ip}\"\nasn = 64502\nhold_time = 9\n\
             [[announce]]\nprefix = \"198.51.100.0/24\"\nnext_hop = \"192.0.2.1\"\n"
        ),
    );
    let b = speaker_file(
        "b",
        &b_ip,
        64502,
        &format!("[[neighbor]]\naddress = \"{a_ip}\"\nasn = 4200000001\nhold_time = 9\n"),
    );
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&a));
    guard.children.push(common::speaker(&b));
    let show_b = || {
        let out = strata()
            .args(["bgp", "show", "--config"])
            .arg(&b)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // BIRD wrote AS_PATH 64500 AS_TRANS and AS4_PATH 64500 4200000001; B merged them.
    wait_for(
        "B to learn A's route through BIRD, its AS path whole",
        Duration::from_secs(30),
        || {
            let show = show_b();
            show.contains(&format!("neighbor {bird_ip} AS 64500 Established\n"))
                && show.contains(&format!("  sent 198.51.100.0/24 via {b_ip}\n"))
                && show.contains(&format!(
                    "  received 198.51.100.0/24 via {bird_ip} AS path 64500 4200000001\n"
                ))
        },
    );
    // B wrote AS_PATH 64502 AS_TRANS and AS4_PATH 64502 4200000001; BIRD read them.
    wait_for(
        "BIRD to learn A's route through B, its AS path whole",
        Duration::from_secs(10),
        || {
            birdc(&ctl, &["show", "route", "for", "198.51.100.0/24", "all"])
                .contains("BGP.as_path: 64502 4200000001")
        },
    );
}

#[test]
fn strata_and_bird_exchange_routes() {
    if !bird_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-bird-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bird_ip, our_ip) = addrs(1);
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.2;\nprotocol device {{}}\nprotocol static s4 {{ ipv4; route 198.51.100.0/24 blackhole; }}\n\
             protocol bgp strata {{\n  local {bird_ip} as 64500;\n  neighbor {our_ip} as 64501;\n  multihop;\n  strict bind on;\n  hold time 9;\n  \
             ipv4 {{ import all; export all; next hop address 192.0.2.1; }};\n}}\n"
        ),
    )
    .unwrap();
    let (config, status) =
        common::speaker_config(&dir, &our_ip.to_string(), &bird_ip.to_string(), "");
    // Metrics on a free loopback port.
    let metrics_at = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "control_socket = ",
            &format!("metrics_listen = \"{metrics_at}\"\ncontrol_socket = "),
            1,
        ),
    )
    .unwrap();
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&config));

    // BIRD learns our VIP with our AS path and next hop.
    wait_for(
        "BIRD to learn 192.168.133.74/32",
        Duration::from_secs(15),
        || {
            birdc(&ctl, &["show", "route", "for", "192.168.133.74/32", "all"])
                .contains("BGP.as_path: 64501")
        },
    );
    let route = birdc(&ctl, &["show", "route", "for", "192.168.133.74/32", "all"]);
    assert!(route.contains("BGP.next_hop: 192.0.2.20"), "{route}");
    assert!(route.contains("BGP.origin: IGP"), "{route}");
    // We learn BIRD's static route.
    wait_for(
        "our speaker to learn 198.51.100.0/24",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&status)
                .is_ok_and(|s| s.contains("received 198.51.100.0/24 via 192.0.2.1 AS path 64500"))
        },
    );
    let show = strata()
        .args(["bgp", "show", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains(&format!("neighbor {bird_ip} AS 64500 Established")),
        "{show}"
    );
    assert!(
        show.contains("sent 192.168.133.74/32 via 192.0.2.20"),
        "{show}"
    );
    assert!(
        show.contains(&format!(
            "best 198.51.100.0/24 via 192.0.2.1 AS path 64500 from {bird_ip}"
        )),
        "{show}"
    );
    assert!(
        show.contains("best 192.168.133.74/32 via 192.0.2.20 from us"),
        "{show}"
    );
    // Every path, marked, with its attributes; per neighbour, uptime, messages,
    // prefixes and what the OPENs negotiated (BIRD sends 4-octet AS, route refresh and
    // graceful restart).
    assert!(
        show.contains(&format!(
            "  * via 192.0.2.1 from {bird_ip}  AS path [64500] origin Igp local-pref 100"
        )),
        "{show}"
    );
    let neighbor = show
        .split(&format!("neighbor {bird_ip} AS 64500 Established"))
        .nth(1)
        .unwrap_or_default();
    assert!(neighbor.starts_with("\n  up 0:0"), "{show}");
    assert!(neighbor.contains("prefixes 1 in / 1 out"), "{show}");
    assert!(
        neighbor.contains("capabilities: 4-octet AS, route refresh, graceful restart"),
        "{show}"
    );
    assert!(neighbor.contains("ipv4 unicast"), "{show}");
    // The same as JSON, asked of the socket alone (no configuration read).
    let socket = config.with_file_name("control.sock");
    let json = strata()
        .args(["bgp", "show", "-o", "json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&json.stdout),
            String::from_utf8_lossy(&json.stderr)
        )
    });
    let n = &json["neighbors"][0];
    assert_eq!(n["state"], "Established");
    assert!(n["messages_in"].as_u64().unwrap() >= 3, "{n}");
    assert!(
        n["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "route refresh"),
        "{n}"
    );
    let route = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "198.51.100.0/24")
        .unwrap();
    assert_eq!(route["paths"][0]["best"], true);
    assert_eq!(route["paths"][0]["as_path"][0], 64500);
    // The speaker's own metrics, which promtool accepts.
    let metrics = ureq::get(&format!("http://{metrics_at}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let session = format!("neighbor=\"{bird_ip}\",peer_as=\"64500\"");
    assert!(
        metrics.contains(&format!(
            "strata_bgp_session_established{{role=\"bgp\",{session}}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "strata_bgp_prefixes_received{{role=\"bgp\",{session}}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE strata_bgp_messages_received_total counter"),
        "{metrics}"
    );
    common::promtool_accepts(&metrics);
    // The same, asked of the running speaker over its control socket: counts only.
    let summary = strata()
        .args(["bgp", "show", "--summary", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert!(summary.contains("1 routes received, 1 sent"), "{summary}");

    // The announcements change in the file and SIGHUP applies them: the VIP is
    // withdrawn, the new prefix announced, the session stays up.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("192.168.133.74/32", "203.0.113.0/24")).unwrap();
    common::hangup(guard.children.last().unwrap());
    wait_for(
        "BIRD to learn the reloaded announcement",
        Duration::from_secs(15),
        || {
            birdc(&ctl, &["show", "route", "for", "203.0.113.0/24", "all"])
                .contains("BGP.as_path: 64501")
                && !birdc(&ctl, &["show", "route", "for", "192.168.133.74/32"])
                    .contains("192.168.133.74/32")
        },
    );
    assert!(birdc(&ctl, &["show", "protocols", "strata"]).contains("Established"));

    // Our speaker stops: BIRD withdraws what it learned from us.
    let mut speaker = guard.children.pop().unwrap();
    speaker.kill().unwrap();
    speaker.wait().unwrap();
    wait_for("BIRD to drop our route", Duration::from_secs(20), || {
        !birdc(&ctl, &["show", "route", "for", "203.0.113.0/24"]).contains("203.0.113.0/24")
    });
}

#[test]
fn an_md5_signed_session_comes_up_with_bird_and_unsigned_connections_are_refused() {
    if !bird_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-bird-md5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bird_ip, our_ip) = addrs(5);
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 10.0.0.5;\nprotocol device {{}}\n\
             protocol bgp strata {{\n  local {bird_ip} as 64500;\n  neighbor {our_ip} as 64501;\n  multihop;\n  strict bind on;\n  hold time 9;\n  \
             password \"azurestack-poc\";\n  ipv4 {{ import all; export none; }};\n}}\n"
        ),
    )
    .unwrap();
    let (config, _) = common::speaker_config(
        &dir,
        &our_ip.to_string(),
        &bird_ip.to_string(),
        "password = \"azurestack-poc\"\n",
    );
    let (mut guard, ctl) = start_bird(dir);
    guard.children.push(common::speaker(&config));
    wait_for(
        "BIRD to learn 192.168.133.74/32 over the signed session",
        Duration::from_secs(15),
        || {
            birdc(&ctl, &["show", "route", "for", "192.168.133.74/32", "all"])
                .contains("BGP.as_path: 64501")
        },
    );
    // From BIRD's address but without the key, the kernel drops our SYNs: no connection.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((bird_ip, 0)).into())
        .unwrap();
    let unsigned = socket.connect_timeout(
        &std::net::SocketAddr::from((our_ip, 179)).into(),
        Duration::from_secs(2),
    );
    assert!(unsigned.is_err(), "an unsigned connection was accepted");
}

#[test]
fn malformed_messages_from_a_peer_get_the_rfc_answer() {
    let dir = std::env::temp_dir().join(format!("strata-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (peer_ip, our_ip) = addrs(2);
    let status = dir.join("status.txt");
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{our_ip}\"\nlocal = \"{our_ip}\"\nport = 1179\nstatus_file = \"{}\"\n\
             [[neighbor]]\naddress = \"{peer_ip}\"\nasn = 64500\npassive = true\nhold_time = 30\n",
            status.display()
        ),
    )
    .unwrap();
    let mut guard = Guard {
        children: Vec::new(),
        pid_file: None,
        dir: dir.clone(),
    };
    guard.children.push(
        strata()
            .args(["bgp", "run", "--config"])
            .arg(&config)
            .spawn()
            .unwrap(),
    );
    let connect = || {
        let socket = std::net::TcpListener::bind((peer_ip, 0)).unwrap();
        let local = socket.local_addr().unwrap();
        drop(socket);
        // Bind the peer side to its address so the speaker knows it as the neighbor.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&local.into()).unwrap();
        s.connect(&std::net::SocketAddr::from((our_ip, 1179)).into())
            .unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let mut peer = None;
    wait_for("the speaker to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&status).is_ok() && {
            peer = Some(connect());
            true
        }
    });
    let mut peer = peer.unwrap();
    // OPEN: version 4, AS 64500, hold 30, id 10.9.9.9, 4-octet AS capability.
    let open = [
        4, 0xfb, 0xf4, 0, 30, 10, 9, 9, 9, 8, 2, 6, 65, 4, 0, 0, 0xfb, 0xf4,
    ];
    peer.write_all(&message(1, &open)).unwrap();
    assert_eq!(read_message(&mut peer)[18], 1, "their OPEN");
    peer.write_all(&message(4, &[])).unwrap();
    assert_eq!(read_message(&mut peer)[18], 4, "their KEEPALIVE");
    wait_for("Established", Duration::from_secs(5), || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.contains("Established"))
    });
    // A valid UPDATE, then one with ORIGIN 7: treat-as-withdraw, the session stays up.
    let attrs = |origin: u8| {
        let a = [
            0x40, 1, 1, origin, 0x40, 2, 6, 2, 1, 0, 0, 0xfb, 0xf4, 0x40, 3, 4, 192, 0, 2, 9,
        ];
        let mut b = vec![0, 0];
        b.extend_from_slice(&(a.len() as u16).to_be_bytes());
        b.extend_from_slice(&a);
        b.extend_from_slice(&[24, 203, 0, 113]);
        b
    };
    peer.write_all(&message(2, &attrs(0))).unwrap();
    wait_for("the route", Duration::from_secs(5), || {
        std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains("received 203.0.113.0/24 via 192.0.2.9"))
    });
    peer.write_all(&message(2, &attrs(7))).unwrap();
    wait_for("the treat-as-withdraw", Duration::from_secs(5), || {
        std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains("Established") && !s.contains("203.0.113.0/24"))
    });
    // A header with a broken marker: NOTIFICATION Message Header Error / Connection Not
    // Synchronized, and the connection is closed.
    let mut bad = message(4, &[]);
    bad[0] = 0;
    peer.write_all(&bad).unwrap();
    // (The End-of-RIB and KEEPALIVEs the speaker sent before are still in the stream.)
    let notification = loop {
        let m = read_message(&mut peer);
        if m[18] == 3 {
            break m;
        }
    };
    assert_eq!(&notification[18..21], &[3, 1, 1], "{notification:?}");
    // The process is still there, and will take the neighbor back.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        guard.children[0].try_wait().unwrap().is_none(),
        "the speaker is still running"
    );
}
