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
    assert!(out.contains("PAhostVNIC"), "{out}");
    assert!(out.contains("192.168.233.21/24"), "{out}");
}

#[test]
fn vfp_lists_rules_and_unified_flows_of_a_port() {
    let (code, out, err) = strata(&["lab", "vfp", "--port", "PortalVM", "--scenario", "portal"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("HyperVHost vSwitch CCI_External port PortalVM"),
        "{out}"
    );
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
    let (code, out, _) = strata(&["lab", "vfp", "--list-rule", "--scenario", "ping-ncvm"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("port PortalVM2") && !out.contains("unified flow table"),
        "{out}"
    );
    let (code, _, err) = strata(&["lab", "vfp", "--port", "NoSuchVM"]);
    assert_eq!(code, 2);
    assert!(err.contains("no VM port \"NoSuchVM\""), "{err}");
}

#[test]
fn mux_shows_vips_and_dip_health() {
    let (code, out, _) = strata(&["lab", "mux", "--scenario", "portalvm2-fails"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VIP 192.168.133.74:80 proto 6"), "{out}");
    assert!(
        out.contains("DIP 192.168.100.75:80 on host PA 192.168.233.21  out (probe failed)"),
        "{out}"
    );
    assert!(
        out.contains("DIP 192.168.100.74:80 on host PA 192.168.233.21  in the pool"),
        "{out}"
    );
}

#[test]
fn bgp_shows_neighbors_and_routes() {
    let (code, out, _) = strata(&["lab", "bgp", "--scenario", "ping-ncvm"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("BGPVM:\n  neighbor 192.168.100.20 AS 64501  Established"),
        "{out}"
    );
    assert!(
        out.contains("received 192.168.133.74/32 via 192.168.100.20"),
        "{out}"
    );
    assert!(
        out.contains("MuxVM:\n  neighbor 192.168.100.1 AS 64500  Established"),
        "{out}"
    );
    assert!(out.contains("advertised 192.168.133.74/32"), "{out}");
}

#[test]
fn a_bad_bgp_password_is_refused_naming_the_file_and_neighbor() {
    let dir = std::env::temp_dir().join(format!("strata-cli-md5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bgp.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"127.0.0.3\"\nlocal = \"127.0.0.3\"\nstatus_file = \"{}\"\n\
             [[neighbor]]\naddress = \"127.0.0.2\"\nasn = 64500\npassword = \"{}\"\n",
            dir.join("status").display(),
            "k".repeat(81)
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let (code, _, err) = strata(&["bgp", "run", "--config", path]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(code, 0);
    assert!(err.contains(path), "{err}");
    assert!(
        err.contains("neighbor 127.0.0.2: password must be 1 to 80 bytes"),
        "{err}"
    );
}

#[test]
fn a_neighbor_of_the_other_family_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("strata-cli-family-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bgp.toml");
    std::fs::write(
        &config,
        "asn = 64501\nrouter_id = \"10.0.0.3\"\nlocal = \"::1\"\n\
         [[neighbor]]\naddress = \"127.0.0.2\"\nasn = 64500\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let (code, _, err) = strata(&["bgp", "run", "--config", path]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(code, 0);
    assert!(
        err.contains("neighbor 127.0.0.2: not of the family of local ::1"),
        "{err}"
    );
}
