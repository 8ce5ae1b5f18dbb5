//! The `strata` binary as a user meets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        // Run from elsewhere: the built-in lab must not depend on the working directory.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("strata runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lab_run_passes_from_any_directory() {
    let (code, out, _) = strata(&["lab", "run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS  http-portalvm"), "{out}");
    assert!(out.contains("PASS  portal "), "{out}");
    assert!(
        out.contains("ClientVM → NATVM → BGPVM → MuxVM → HyperVHost → PortalVM"),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.ends_with("scenarios passed")),
        "{out}"
    );
}

#[test]
fn help_is_there() {
    let (code, out, _) = strata(&["lab", "run", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--capture"), "{out}");
    let (code, out, _) = strata(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("lab"), "{out}");
}

#[test]
fn bad_lab_file_names_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[lab]\nname = \"x\"\n\n[[network]]\nname = \"lan\"\nprefix = \"10.0.0.0/24\"\n\n[[node]]\nname = \"a\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.1/24\"\n[[node.route]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.1.0.1\"\n",
    )
    .unwrap();
    let (code, _, err) = strata(&["lab", "run", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:15:7: next hop 10.1.0.1"), "{err}");
    let (code, _, err) = strata(&["lab", "run", "--scenario", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no scenario \"nope\""), "{err}");
    let (code, _, err) = strata(&["lab", "run", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn capture_writes_one_pcap_per_network() {
    let dir = std::env::temp_dir().join(format!("strata-cap-{}", std::process::id()));
    let (code, out, _) = strata(&[
        "lab",
        "run",
        "--scenario",
        "snat-to-internet",
        "--capture",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    for net in ["management", "nat-internal", "provider", "external"] {
        let bytes = std::fs::read(dir.join(format!("{net}.pcap"))).unwrap();
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "{net}: pcap magic");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn show_draws_the_topology() {
    let (code, out, _) = strata(&["lab", "show"]);
    assert_eq!(code, 0);
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = out.lines().map(squeeze).collect();
    let has = |want: &str| assert!(lines.iter().any(|l| l == want), "{want:?} in\n{out}");
    has("├─ HyperVHost PAhostVNIC 192.168.233.21/24 00:15:5d:64:07:01");
    has("└─ HyperVHost2 PAhostVNIC 192.168.233.23/24 00:15:5d:64:0a:01");
    has(
        "├─ PortalVM Ethernet (port of HyperVHost's CCI_External) 192.168.100.74/24 00:15:5d:64:08:00",
    );
    has(
        "route 192.168.133.0/24 reject the VIP pool: a VIP whose /32 is withdrawn is unreachable here (ICMP), instead of looping to NATVM and back",
    );
    has("software load balancer: VNI 4096, VIPs from 192.168.133.0/24");
    has(
        "portal/https-portal 192.168.133.74 tcp/80 80 Default PortalVM, PortalVM2 http :80/ every 5s x2",
    );
    has("BGPVM 64500 192.168.100.21 64501 passive 30s 100 ms x3");
    has("portal-down-without-dips ClientVM GET http://portal.azurestack.local/ failure");

    let (code, out, _) = strata(&["lab", "show", "-o", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["slb"]["vni"], 4096);
    assert_eq!(json["networks"][0]["nics"][0]["mac"], "00:15:5d:64:02:00");
    assert_eq!(json["bgp"][0]["node"], "BGPVM");
    let bgpvm = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "BGPVM")
        .unwrap();
    assert!(
        bgpvm["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "reject")
    );
}

#[test]
fn vfp_lists_rules_and_unified_flows_of_a_port() {
    let (code, out, err) = strata(&["lab", "vfp", "--port", "PortalVM", "--scenario", "portal"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("HyperVHost vSwitch CCI_External port PortalVM (00:15:5d:"),
        "{out}"
    );
    assert!(
        out.contains(", VNI 4096)\n"),
        "the port's virtual network: {out}"
    );
    // In JSON too; a VM no load balancer has (PortalVM3, until one does) is on none.
    for (vm, vni) in [
        ("PortalVM", serde_json::json!(4096)),
        ("PortalVM3", serde_json::Value::Null),
    ] {
        let (code, out, err) = strata(&[
            "lab",
            "vfp",
            "--port",
            vm,
            "--scenario",
            "portal",
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let ports: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(ports[0]["vni"], vni, "{vm}: {out}");
    }
    assert!(
        out.contains("rule decap-vni-4096 (priority 1): decap vxlan"),
        "{out}"
    );
    assert!(out.contains("nat src * dst 192.168.100.74:80"), "{out}");
    assert!(
        out.contains("vni 4096  pop vxlan, dst 192.168.100.74:80"),
        "{out}"
    );
    assert!(out.contains("src 192.168.133.74:80"), "{out}");
    // The NAT layer's own record of each connection, both sides.
    assert!(out.contains("  layer SLB_NAT: "), "{out}");
    assert!(
        out.contains("    out tcp 192.168.100.74:80 > 192.168.200.10:")
            && out.contains("  src 192.168.133.74:80, mss 1410  reply idle "),
        "{out}"
    );
    let (code, out, _) = strata(&["lab", "vfp", "--list-rule", "--scenario", "ping-ncvm"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("port PortalVM2") && !out.contains("unified flow table"),
        "{out}"
    );
    assert!(
        out.contains("rule https-portal (priority 10): nat src * dst 192.168.100.74:80  if dst 192.168.133.74/32 tcp dport 80 not vxlan"),
        "the rule's match conditions: {out}"
    );
    // Filters and a limit for large flow tables.
    let (code, out, _) = strata(&[
        "lab",
        "vfp",
        "--port",
        "PortalVM",
        "--scenario",
        "portal",
        "--list-unified-flow",
        "--proto",
        "tcp",
        "--direction",
        "IN",
        "--limit",
        "1",
    ]);
    assert_eq!(code, 0);
    let flows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  in ") || l.starts_with("  out "))
        .collect();
    assert_eq!(flows.len(), 1, "{out}");
    assert!(flows[0].starts_with("  in tcp "), "{out}");
    assert!(
        out.contains("... and ") && out.contains("not matching the filter not shown"),
        "{out}"
    );
    let (code, out, _) = strata(&[
        "lab",
        "vfp",
        "--port",
        "PortalVM",
        "--scenario",
        "portal",
        "--addr",
        "192.168.200.10",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["mac"], "00:15:5d:64:08:00");
    assert_eq!(
        json[0]["layers"][1]["groups"][1]["rules"][0]["conditions"],
        "dst 192.168.133.74/32 tcp dport 80 not vxlan"
    );
    let layer_flows = &json[0]["layer_flows"][0];
    assert_eq!(layer_flows["layer"], "SLB_NAT", "{out}");
    assert!(
        layer_flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["side"] == "opening"
                && f["direction"] == "in"
                && f["action"] == "dst 192.168.100.74:80, mss 1410"),
        "{out}"
    );
    let flows = json[0]["flows"].as_array().unwrap();
    assert!(!flows.is_empty());
    assert!(
        flows
            .iter()
            .all(|f| f["flow"].as_str().unwrap().contains("192.168.200.10")),
        "{flows:?}"
    );
    let (code, _, err) = strata(&["lab", "vfp", "--port", "NoSuchVM"]);
    assert_eq!(code, 2);
    assert!(err.contains("no VM port \"NoSuchVM\""), "{err}");
}

#[test]
fn mux_shows_vips_and_dip_health() {
    let (code, out, _) = strata(&["lab", "mux", "--scenario", "portalvm2-fails"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("MUX     VIP             RULE"),
        "{out}"
    );
    let row = |dip: &str| {
        lines
            .iter()
            .find(|l| l.starts_with("MuxVM ") && l.contains("tcp/80 ") && l.contains(dip))
            .unwrap_or_else(|| panic!("{dip} in {out}"))
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("192.168.100.75:80"),
        [
            "MuxVM",
            "192.168.133.74",
            "tcp/80",
            "Default",
            "4096",
            "192.168.100.75:80",
            "192.168.233.21",
            "out (probe failed)"
        ]
    );
    assert_eq!(row("192.168.100.74:80").last(), Some(&"in the pool"));
    // Columns line up under their headers.
    let state = lines[0].find("STATE").unwrap();
    assert!(
        lines[1..7]
            .iter()
            .all(|l| l.len() > state && l.as_bytes()[state - 1] == b' ')
    );

    let (code, out, _) = strata(&["lab", "mux", "--scenario", "portalvm2-fails", "-o", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["node"], "MuxVM");
    assert_eq!(json[0]["vips"][0]["loadDistribution"], "Default");
    let dips = json[0]["vips"][0]["dips"].as_array().unwrap();
    assert!(
        dips.iter()
            .any(|d| d["address"] == "192.168.100.75" && d["healthy"] == false)
    );
}

#[test]
fn bgp_shows_neighbors_and_routes() {
    let (code, out, _) = strata(&["lab", "bgp", "--scenario", "ping-ncvm"]);
    assert_eq!(code, 0, "{out}");
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = out.lines().map(squeeze).collect();
    assert_eq!(
        lines[0],
        "NODE NEIGHBOR AS STATE BFD RECEIVED ADVERTISED LAST ERROR"
    );
    assert!(
        lines.contains(&"BGPVM 192.168.100.20 64501 Established Up 3 0".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"MuxVM 192.168.100.1 64500 Established Up 0 3".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(
            &"BGPVM 192.168.100.20 received 192.168.133.74/32 192.168.100.20".to_string()
        ),
        "{out}"
    );
    assert!(
        lines.contains(&"MuxVM 192.168.100.1 advertised 192.168.133.74/32".to_string()),
        "{out}"
    );
    let (code, out, _) = strata(&["lab", "bgp", "--scenario", "ping-ncvm", "-o", "JSON"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bgpvm = json
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "BGPVM" && n["neighbor"] == "192.168.100.20")
        .unwrap();
    assert_eq!(bgpvm["state"], "Established");
    assert_eq!(bgpvm["received"][0]["prefix"], "192.168.133.74/32");
    assert_eq!(bgpvm["received"][1]["prefix"], "192.168.133.80/32");
}

/// Each broken rule of a `strata bgp` file is refused with the file, the line of the
/// offending value, and the rule.
#[test]
fn bgp_config_errors_name_file_line_and_rule() {
    let dir = std::env::temp_dir().join(format!("strata-cli-bgpconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let head = "asn = 64501\nrouter_id = \"127.0.0.3\"\nlocal = \"127.0.0.3\"\n";
    let neighbor = "[[neighbor]]\naddress = \"127.0.0.2\"\nasn = 64500\n";
    let long_key = format!("password = \"{}\"\n", "k".repeat(81));
    let cases: Vec<(String, usize, &str)> = vec![
        (
            head.replace("64501", "0"),
            1,
            "asn 0 is reserved (RFC 7607)",
        ),
        (head.replace("64501", "23456"), 1, "asn 23456 is AS_TRANS"),
        (
            head.replace("router_id = \"127.0.0.3\"", "router_id = \"0.0.0.0\""),
            2,
            "router_id 0.0.0.0 is not a unicast address",
        ),
        (
            format!("{head}graceful_restart = 5000\n"),
            4,
            "graceful_restart is at most 4095 seconds",
        ),
        (
            format!("{head}{neighbor}{neighbor}"),
            8,
            "neighbor 127.0.0.2 is configured twice (also neighbor 1)",
        ),
        (
            format!("{head}{}", neighbor.replace("64500", "0")),
            6,
            "neighbor 127.0.0.2: asn 0 is reserved (RFC 7607)",
        ),
        (
            format!("{head}{neighbor}hold_time = 2\n"),
            7,
            "neighbor 127.0.0.2: hold_time must be 0 or at least 3",
        ),
        (
            format!("{head}{neighbor}{long_key}"),
            7,
            "neighbor 127.0.0.2: password must be 1 to 80 bytes",
        ),
        (
            format!("{head}{}", neighbor.replace("127.0.0.2", "127.0.0.3")),
            5,
            "neighbor 127.0.0.3 is our own address",
        ),
        (
            format!(
                "{}{neighbor}",
                head.replace("local = \"127.0.0.3\"", "local = \"::1\"")
            ),
            5,
            "neighbor 127.0.0.2 is not of the family of local ::1",
        ),
        (
            format!(
                "{head}[[announce]]\nprefix = \"192.168.133.74/33\"\nnext_hop = \"192.0.2.1\"\n"
            ),
            5,
            "prefix length \"33\" is not 0 to 32",
        ),
        (
            format!(
                "{head}[[announce]]\nprefix = \"192.168.133.300/32\"\nnext_hop = \"192.0.2.1\"\n"
            ),
            5,
            "\"192.168.133.300\" is not an IP address",
        ),
        (
            format!("{head}[[announce]]\nprefix = \"10.0.0.0/8\"\nnext_hop = \"2001:db8::1\"\n"),
            6,
            "announce 10.0.0.0/8: next hop 2001:db8::1 is of the other address family",
        ),
        (format!("{head}asnn = 1\n"), 4, "unknown field `asnn`"),
    ];
    for (i, (text, line, rule)) in cases.iter().enumerate() {
        let config = dir.join(format!("bgp{i}.toml"));
        std::fs::write(&config, text).unwrap();
        let path = config.to_str().unwrap();
        let (code, _, err) = strata(&["bgp", "run", "--config", path]);
        assert_ne!(code, 0, "{text}");
        assert!(
            err.contains(&format!("{path}:{line}: ")),
            "line {line} of\n{text}\n{err}"
        );
        assert!(err.contains(rule), "{rule:?} for\n{text}\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    // `strata lab run | head -1`.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["lab", "run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("lab azure-stack-poc"), "{first}");
    let out = child.wait_with_output().unwrap();
    // Ended by the closed pipe, as other tools are (or, had it written everything into
    // the pipe before the reader left, done); never a panic's exit 101.
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "{:?}",
        out.status
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn trace_prints_each_hop_and_exits_by_the_flow() {
    let (code, out, err) = strata(&[
        "lab",
        "trace",
        "--from",
        "ClientVM",
        "--to",
        "http://portal.azurestack.local/",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ok: ClientVM GET http://portal.azurestack.local/"),
        "{out}"
    );
    assert!(out.contains("load-balances VIP 192.168.133.74:80"), "{out}");
    assert!(
        out.contains("reply: PortalVM → HyperVHost → BGPVM → ClientVM"),
        "{out}"
    );

    let dir = std::env::temp_dir().join(format!("strata-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("path.svg");
    let (code, out, err) = strata(&[
        "lab",
        "trace",
        "--from",
        "ClientVM",
        "--to",
        "192.168.100.74",
        "--proto",
        "ICMP",
        "-o",
        "json",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["request"][0]["from"], "ClientVM");
    assert_eq!(json["request"].as_array().unwrap().len(), 4);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let hops = json["request"].as_array().unwrap().len() + json["reply"].as_array().unwrap().len();
    assert_eq!(
        drawn.matches("class=\"hop\"").count(),
        hops,
        "one arrow per hop"
    );

    // A flow that fails exits 1; a bad target is an error (2) naming what was expected.
    let (code, out, _) = strata(&[
        "lab",
        "trace",
        "--from",
        "ClientVM",
        "--to",
        "192.168.100.74:9",
        "--proto",
        "udp",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ICMP unreachable"), "{out}");
    let (code, _, err) = strata(&["lab", "trace", "--from", "ClientVM", "--to", "nowhere"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected a URL"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagram_writes_svg_dot_and_mermaid() {
    let dir = std::env::temp_dir().join(format!("strata-diagram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("topology.svg");
    let (code, _, err) = strata(&["lab", "diagram", "-o", svg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("data-node=\"MuxVM\""),
        "{text}"
    );
    let (code, out, _) = strata(&["lab", "diagram", "-f", "dot"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("graph \"azure-stack-poc"), "{out}");
    let (code, out, _) = strata(&["lab", "diagram", "--format", "Mermaid"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("flowchart TB"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_names_the_commit() {
    let (code, out, _) = strata(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("strata 0."), "{out}");
    assert!(out.contains("commit "), "{out}");
}

#[test]
fn an_unwritable_capture_directory_fails_before_the_run() {
    let dir = std::env::temp_dir().join(format!("strata-ro-{}", std::process::id()));
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    let (code, out, err) = strata(&["lab", "run", "--capture", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("cannot write there"), "{err}");
    assert!(!out.contains("PASS"), "no scenario ran: {out}");
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn show_commands_exit_non_zero_when_a_scenario_fails() {
    let dir = std::env::temp_dir().join(format!("strata-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("failing.toml");
    let mut text = strata_lab_poc();
    text.push_str(
        "\n[[scenario]]\nname = \"cannot-pass\"\nfrom = \"ClientVM\"\nping = \"192.168.233.21\"\ncount = 1\n",
    );
    std::fs::write(&file, text).unwrap();
    for command in ["mux", "bgp", "vfp"] {
        let (code, _, err) = strata(&[
            "lab",
            command,
            file.to_str().unwrap(),
            "--scenario",
            "cannot-pass",
        ]);
        assert_eq!(code, 1, "lab {command}: {err}");
        assert!(err.contains("scenario cannot-pass failed"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn strata_lab_poc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../labs/azure-stack-poc.toml"
    ))
    .unwrap()
}

#[test]
fn completions_load_in_bash_and_the_manual_renders() {
    let (code, script, _) = strata(&["completions", "bash"]);
    assert_eq!(code, 0);
    let dir = std::env::temp_dir().join(format!("strata-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strata.bash");
    std::fs::write(&file, &script).unwrap();
    // Bash loads it and registers the completion; it completes `strata lab tr` to `trace`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p strata && COMP_WORDS=(strata lab tr) COMP_CWORD=2 COMP_LINE='strata lab tr' COMP_POINT=13 && _strata strata tr lab && echo \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _strata strata"), "{stdout}");
    assert!(
        stdout.lines().last().unwrap_or("").contains("trace"),
        "{stdout}"
    );
    let (code, _, _) = strata(&["completions", "Zsh"]);
    assert_eq!(code, 0, "shell names in any case");

    let (code, page, _) = strata(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH strata 1"), "{page}");
    assert!(
        page.contains("lab") && page.contains("completions"),
        "{page}"
    );
    let (code, _, err) = strata(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let trace = std::fs::read_to_string(dir.join("strata-lab-trace.1")).unwrap();
    assert!(trace.contains("\\-\\-from"), "{trace}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bgp_show_asks_a_socket_without_a_configuration() {
    let (code, _, err) = strata(&["bgp", "show"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--config") && err.contains("--socket"),
        "{err}"
    );
    let (code, _, err) = strata(&["bgp", "show", "--socket", "/nonexistent/strata.sock"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("connecting to /nonexistent/strata.sock (is the speaker running?)"),
        "{err}"
    );
}

#[test]
fn a_boot_shows_a_progress_bar_on_a_terminal_only() {
    let (code, out, err) = strata(&["lab", "run", "--scenario", "ping-ncvm"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains('\x1b') && !err.contains('\x1b'),
        "no escapes into a pipe"
    );
    // On a terminal (script(1) gives the command one), the bar is drawn, then cleared.
    let Ok(tty) = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} lab run --scenario ping-ncvm",
            env!("CARGO_BIN_EXE_strata")
        ))
        .arg("/dev/null")
        .output()
    else {
        eprintln!("skipped: no script(1)");
        return;
    };
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(
        text.contains("boot [") && text.contains("BGP sessions, agents"),
        "{text}"
    );
    assert!(
        text.contains("\r\x1b[2Kboot: 4/4 BGP sessions established"),
        "{text}"
    );
}

#[test]
fn lab_run_as_json() {
    let (code, out, err) = strata(&[
        "lab",
        "run",
        "-o",
        "json",
        "--scenario",
        "portal",
        "--scenario",
        "ping-ncvm",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&out).expect("one JSON document, nothing else");
    assert_eq!(doc["boot"]["sessions_up"], 4);
    assert_eq!(doc["passed"], 2);
    let portal = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "portal")
        .unwrap();
    assert_eq!(
        portal["request"][3]["frame"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("VXLAN")
    );
    assert!(
        portal["request"][3]["did"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().starts_with("load-balances VIP"))
    );
}
