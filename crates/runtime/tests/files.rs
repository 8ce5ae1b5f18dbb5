//! The role processes' configuration files: what they take, and the rule a refused one
//! broke, with the file's name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-runtime-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const INTERFACES: &str = "[[interface]]\nname = \"eth0\"\naddress = \"10.0.0.1/24\"\n\
                          [[interface]]\nname = \"eth1\"\naddress = \"10.1.0.1/24\"\nmtu = 9000\n";

#[test]
fn a_router_file_is_read_with_its_defaults() {
    let path = file(
        "router.toml",
        &format!(
            "{INTERFACES}[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.0.0.254\"\n\
             [[route]]\nprefix = \"10.9.0.0/16\"\ntype = \"reject\"\n\
             [[route]]\nprefix = \"10.8.0.0/16\"\ntype = \"blackhole\"\n"
        ),
    );
    let f = strata_runtime::router::load(&path).unwrap();
    assert_eq!(f.name, "router");
    assert_eq!(f.netns, None);
    assert_eq!(f.interface[0].mtu, 1500, "the default MTU");
    assert_eq!(f.interface[1].mtu, 9000);
    let (via, discards) = strata_runtime::router::split_routes(&f.route);
    assert_eq!(
        via,
        [("0.0.0.0/0".parse().unwrap(), "10.0.0.254".parse().unwrap())]
    );
    assert_eq!(
        discards,
        [
            (
                "10.9.0.0/16".parse().unwrap(),
                strata_node::router::RouteKind::Reject
            ),
            (
                "10.8.0.0/16".parse().unwrap(),
                strata_node::router::RouteKind::Blackhole
            ),
        ]
    );
}

#[test]
fn a_router_file_that_breaks_a_rule_says_which() {
    let cases = [
        ("", "at least one [[interface]]"),
        (
            "[[route]]\nprefix = \"10.9.0.0/16\"\ntype = \"drop\"\n",
            "type \"drop\": expected",
        ),
        (
            "[[route]]\nprefix = \"10.9.0.0/16\"\n",
            "give either via or type",
        ),
        (
            "[[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"10.0.0.9\"\ntype = \"reject\"\n",
            "give either via or type",
        ),
        (
            "[nat]\nexternal = \"eth7\"\n",
            "nat.external \"eth7\" is none of the interfaces",
        ),
        (
            "[nat]\nexternal = \"eth1\"\n[[nat.forward]]\nprotocol = \"sctp\"\nport = 1\nto = \"10.0.0.2:1\"\n",
            "protocol \"sctp\": expected",
        ),
        (
            "[nat]\nexternal = \"eth1\"\nmax_conns = 0\n",
            "nat.max_conns: expected at least 1",
        ),
        (
            "[nat]\nexternal = \"eth1\"\n[nat.timeouts]\nudp = 0\n",
            "nat.timeouts.udp: expected at least 1 second",
        ),
        (
            "[nat]\nexternal = \"eth1\"\n[nat.timeouts]\nsctp = 5\n",
            "unknown field `sctp`",
        ),
    ];
    for (extra, want) in cases {
        let text = if extra.is_empty() {
            "interface = []\n".to_string()
        } else {
            format!("{INTERFACES}{extra}")
        };
        let path = file("bad-router.toml", &text);
        let e = strata_runtime::router::load(&path).unwrap_err();
        assert!(
            e.contains("bad-router.toml") && e.contains(want),
            "{want:?}: {e}"
        );
    }
    // A NAT with a known interface and protocol is taken.
    let path = file(
        "nat.toml",
        &format!(
            "{INTERFACES}[nat]\nexternal = \"eth1\"\n[[nat.forward]]\nprotocol = \"udp\"\nport = 53\nto = \"10.0.0.2:53\"\n"
        ),
    );
    let external = std::net::Ipv4Addr::new(203, 0, 113, 1);
    let nat = strata_runtime::router::load(&path).unwrap().nat.unwrap();
    let config = nat.config(external);
    assert_eq!(config.external_addr, external);
    assert_eq!(config.forwards.len(), 1);
    assert_eq!(config.forwards[0].proto, 17);
    assert_eq!(config.forwards[0].external_port, 53);
    assert_eq!(config.max_conns, 65536, "the default");
    assert_eq!(config.timeouts, strata_node::nat::Timeouts::default());
    // The table's size and the timeouts, each given or left at its default.
    let path = file(
        "nat-sized.toml",
        &format!(
            "{INTERFACES}[nat]\nexternal = \"eth1\"\nmax_conns = 500\n[nat.timeouts]\ntcp_established = 600\ntcp_transitory = 60\ntcp_closed = 5\nudp = 30\nicmp = 7\n"
        ),
    );
    let config = strata_runtime::router::load(&path)
        .unwrap()
        .nat
        .unwrap()
        .config(external);
    assert_eq!(config.max_conns, 500);
    let secs = std::time::Duration::from_secs;
    assert_eq!(
        config.timeouts,
        strata_node::nat::Timeouts {
            tcp_established: secs(600),
            tcp_transitory: secs(60),
            tcp_closed: secs(5),
            udp: secs(30),
            icmp: secs(7),
        }
    );
    let path = file(
        "nat-udp.toml",
        &format!("{INTERFACES}[nat]\nexternal = \"eth1\"\n[nat.timeouts]\nudp = 45\n"),
    );
    let t = strata_runtime::router::load(&path)
        .unwrap()
        .nat
        .unwrap()
        .config(external)
        .timeouts;
    assert_eq!(t.udp, secs(45));
    assert_eq!(t.icmp, strata_node::nat::Timeouts::default().icmp);
}

#[test]
fn a_mux_file_names_its_controller_token_and_provider() {
    let base =
        "name = \"MuxVM\"\ncontroller = \"10.0.0.10:8081\"\nprovider = \"eth1\"\nasn = 64501\n";
    let path = file("mux.toml", &format!("{base}token = \"abc\"\n{INTERFACES}"));
    let f = strata_runtime::mux::load(&path).unwrap();
    assert_eq!(f.name, "MuxVM");
    assert_eq!(f.controller.to_string(), "10.0.0.10:8081");
    // The token from a file of its own, trimmed.
    let token = file("token", "  s3cret\n");
    let path = file(
        "mux2.toml",
        &format!("{base}token_file = \"{}\"\n{INTERFACES}", token.display()),
    );
    assert!(strata_runtime::mux::load(&path).is_ok());
    let cases = [
        (format!("{base}{INTERFACES}"), "give token or token_file"),
        (
            format!("{base}token_file = \"/nonexistent/token\"\n{INTERFACES}"),
            "token_file /nonexistent/token",
        ),
        (
            format!(
                "{}token = \"a\"\n{INTERFACES}",
                base.replace("eth1", "eth5")
            ),
            "provider \"eth5\" is none of the interfaces",
        ),
        (
            format!("{}token = \"a\"\n{INTERFACES}", base.replace("64501", "0")),
            "AS 0 is reserved",
        ),
    ];
    for (text, want) in cases {
        let path = file("bad-mux.toml", &text);
        let e = strata_runtime::mux::load(&path).unwrap_err();
        assert!(
            e.contains("bad-mux.toml") && e.contains(want),
            "{want:?}: {e}"
        );
    }
}

#[test]
fn a_host_file_names_its_switch_uplink_vms_and_controller() {
    let base = "name = \"HyperVHost\"\ncontroller = \"10.0.0.10:8081\"\ntoken = \"t\"\n\
                switch = \"CCI_External\"\nuplink = \"eth0\"\n\
                [management]\nname = \"vEthernet 1001\"\naddress = \"10.0.0.2/24\"\n\
                [provider]\ninterface = \"eth1\"\naddress = \"192.168.233.21/24\"\n";
    let vm = |iface: &str, mac: &str, vlan: &str| {
        format!("[[vm]]\nname = \"PortalVM\"\ninterface = \"{iface}\"\nmac = \"{mac}\"\n{vlan}")
    };
    let path = file(
        "host.toml",
        &format!("{base}{}", vm("vm0", "00:15:5d:64:08:00", "vlan = 10\n")),
    );
    let f = strata_runtime::host::load(&path).unwrap();
    assert_eq!(
        (f.switch.as_str(), f.uplink.as_str()),
        ("CCI_External", "eth0")
    );
    assert_eq!(f.vm[0].vlan, Some(10));
    let cases = [
        (
            format!("{base}{}", vm("vm0", "00:15:5d:64:08", "")),
            "mac \"00:15:5d:64:08\": expected six hex bytes",
        ),
        (
            format!("{base}{}", vm("vm0", "00:15:5d:64:08:zz", "")),
            "expected six hex bytes",
        ),
        (
            format!("{base}{}", vm("vm0", "00:15:5d:64:08:00", "vlan = 4095\n")),
            "VLAN is 1 to 4094",
        ),
        (
            format!("{base}{}", vm("eth1", "00:15:5d:64:08:00", "")),
            "interface \"eth1\" is given twice",
        ),
        (
            base.replace("token = \"t\"\n", ""),
            "give token or token_file",
        ),
    ];
    for (text, want) in cases {
        let path = file("bad-host.toml", &text);
        let e = strata_runtime::host::load(&path).unwrap_err();
        assert!(
            e.contains("bad-host.toml") && e.contains(want),
            "{want:?}: {e}"
        );
    }
}

#[test]
fn a_router_file_may_speak_bgp() {
    let path = file(
        "bgp-router.toml",
        &format!(
            "{INTERFACES}[bgp]\nasn = 64500\nnetworks = [\"10.9.0.0/16\"]\n\
             [[bgp.neighbor]]\naddress = \"10.0.0.20\"\nasn = 64501\npassive = true\n\
             hold_time = 30\nbfd_interval_ms = 100\n\
             [[bgp.neighbor]]\naddress = \"10.0.0.21\"\nasn = 64502\nconnect_retry_s = 0\n"
        ),
    );
    let f = strata_runtime::router::load(&path).unwrap();
    let c = f.bgp.unwrap().config("10.0.0.1".parse().unwrap());
    assert_eq!(c.asn, 64500);
    assert_eq!(c.router_id.to_string(), "10.0.0.1", "the first address");
    assert_eq!(c.networks, ["10.9.0.0/16".parse().unwrap()]);
    assert!(c.install_routes && !c.announce_vips);
    let (a, b) = (&c.neighbors[0], &c.neighbors[1]);
    assert_eq!((a.address.to_string(), a.asn), ("10.0.0.20".into(), 64501));
    assert!(a.passive && !b.passive);
    assert_eq!((a.hold_time, b.hold_time), (30, 90));
    assert_eq!(
        b.connect_retry,
        std::time::Duration::from_secs(1),
        "at least 1 s"
    );
    assert_eq!(a.connect_retry, std::time::Duration::from_secs(5));
    let bfd = a.bfd.unwrap();
    assert_eq!(bfd.desired_min_tx, std::time::Duration::from_millis(100));
    assert_eq!(bfd.detect_mult, 3);
    assert_eq!(b.bfd, None);

    let cases = [
        ("[bgp]\nasn = 0\n", "bgp: AS 0 is reserved"),
        (
            "[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 0\n",
            "neighbor 10.0.0.2: AS 0 is reserved",
        ),
        (
            "[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
             [[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 3\n",
            "neighbor 10.0.0.2 is given twice",
        ),
        (
            "[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nhold_time = 2\n",
            "hold_time is 0 or at least 3",
        ),
        (
            "[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nbfd_interval_ms = 0\n",
            "must be above 0",
        ),
        (
            "[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nbfd_multiplier = 0\n",
            "must be above 0",
        ),
    ];
    for (extra, want) in cases {
        let path = file("bad-bgp-router.toml", &format!("{INTERFACES}{extra}"));
        let e = strata_runtime::router::load(&path).unwrap_err();
        assert!(
            e.contains("bad-bgp-router.toml") && e.contains(want),
            "{want:?}: {e}"
        );
    }
    // Hold time 0 (no keepalives) and 3 are allowed.
    for hold in [0, 3] {
        let path = file(
            "hold-router.toml",
            &format!(
                "{INTERFACES}[bgp]\nasn = 1\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nhold_time = {hold}\n"
            ),
        );
        assert!(strata_runtime::router::load(&path).is_ok(), "hold {hold}");
    }
}

#[test]
fn a_mux_file_sets_the_timers_of_the_peers_the_controller_names() {
    let base = "name = \"MuxVM\"\ncontroller = \"10.0.0.10:8081\"\nprovider = \"eth1\"\n\
                asn = 64501\ntoken = \"t\"\n";
    let path = file("timers-mux.toml", &format!("{base}{INTERFACES}"));
    let f = strata_runtime::mux::load(&path).unwrap();
    assert_eq!(
        (f.hold_time, f.bfd_interval_ms, f.bfd_multiplier),
        (90, None, 3)
    );
    let path = file(
        "timers-mux2.toml",
        &format!("{base}hold_time = 30\nbfd_interval_ms = 100\nbfd_multiplier = 5\n{INTERFACES}"),
    );
    let f = strata_runtime::mux::load(&path).unwrap();
    assert_eq!(
        (f.hold_time, f.bfd_interval_ms, f.bfd_multiplier),
        (30, Some(100), 5)
    );
    for (extra, want) in [
        ("hold_time = 1\n", "hold_time is 0 or at least 3"),
        ("bfd_interval_ms = 0\n", "must be above 0"),
        ("bfd_multiplier = 0\n", "must be above 0"),
    ] {
        let path = file("bad-timers-mux.toml", &format!("{base}{extra}{INTERFACES}"));
        let e = strata_runtime::mux::load(&path).unwrap_err();
        assert!(
            e.contains("bad-timers-mux.toml") && e.contains(want),
            "{want:?}: {e}"
        );
    }
}
