//! `strata lab up --netns`: the POC lab as Linux network namespaces, VMs on the kernel's
//! stack, every Strata role a process (`strata router`, `mux`, `host-agent`) configured
//! by its file and `strata controller`; then again with
//! BIRD, then FRR, as BGPVM (`--router bird|frr`). The kernel's
//! curl in ClientVM reaches the portal's VIP and its flows spread over both DIPs; the
//! port forward and masquerade of NATVM work; a VIP added through the controller's API
//! answers; killing a Mux process leaves the VIPs answering through the other; `strata
//! lab down` leaves nothing behind. Needs root (CI runs as root); skipped without it
//! unless `STRATA_REQUIRE_NETNS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

/// Takes the lab down however the test ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = strata(&["lab", "down"]);
    }
}

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn curl(ns: &str, url: &str) -> Option<String> {
    // Five seconds: room for a SYN retransmitted once (a flow that hashed to a Mux that
    // has just died, until BFD takes it out).
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "-m", "5", url])
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "curl {url} in {ns}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `strata ctl` against the lab's controller, from NCVM's namespace.
fn ctl(args: &[&str]) -> Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            "strata-NCVM",
            env!("CARGO_BIN_EXE_strata"),
            "ctl",
        ])
        .args(args)
        .env("STRATA_CONTROLLER", "http://192.168.100.10:8080")
        .env(
            "STRATA_TOKEN_FILE",
            "/run/strata/azure-stack-poc/controller/token",
        )
        .env_remove("STRATA_TOKEN")
        .output()
        .unwrap()
}

fn strata_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("strata-") && !n.starts_with("strata-test-"))
        .map(str::to_string)
        .collect()
}

/// The whole check, with `router` running BGPVM and the role processes reading their
/// links by `link` (`STRATA_LINK`: socket, ring or xdp).
fn lab(router: &str, link: &str) {
    let guard = Down;
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["lab", "up", "--netns", "--router", router])
        .current_dir(std::env::temp_dir())
        .env("STRATA_LINK", link)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lab azure-stack-poc is up"), "{text}");
    // The role processes read their links the way they were told.
    let log = std::fs::read_to_string("/run/strata/azure-stack-poc/MuxVM.log").unwrap();
    assert_eq!(
        log.contains("receiving by the ring"),
        link == "ring",
        "{link}: {log}"
    );
    assert_eq!(
        log.contains("receiving by AF_XDP"),
        link == "xdp",
        "{link}: {log}"
    );
    let shown = Command::new("ip")
        .args(["-n", "strata-MuxVM", "link", "show", "eth0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.contains("prog/xdp"), link == "xdp", "{link}: {shown}");
    let namespaces = strata_namespaces();
    for node in [
        "ClientVM",
        "NATVM",
        "BGPVM",
        "MuxVM",
        "MuxVM2",
        "HyperVHost",
        "PortalVM",
        "NCVM",
    ] {
        assert!(
            namespaces.contains(&format!("strata-{node}")),
            "{namespaces:?}"
        );
    }

    // Each Strata role is its own process, from the file a user would write.
    let processes = Command::new("pgrep")
        .args(["-af", "strata (router|mux|host-agent) --config"])
        .output()
        .unwrap();
    let processes = String::from_utf8_lossy(&processes.stdout);
    let mut roles: Vec<&str> = processes
        .lines()
        .filter_map(|l| l.split("/run/strata/azure-stack-poc/").nth(1))
        .collect();
    roles.sort_unstable();
    let expected: &[&str] = if router == "strata" {
        &[
            "BGPVM.toml",
            "HyperVHost.toml",
            "HyperVHost2.toml",
            "MuxVM.toml",
            "MuxVM2.toml",
            "NATVM.toml",
        ]
    } else {
        &[
            "HyperVHost.toml",
            "HyperVHost2.toml",
            "MuxVM.toml",
            "MuxVM2.toml",
            "NATVM.toml",
        ]
    };
    assert_eq!(roles, expected, "{processes}");

    // The seed's flow: the kernel's curl in ClientVM, by name, through NATVM, BGPVM (the
    // VIP's /32 learned from the Muxes over BGP), a Mux, VXLAN, the host's VFP, to a
    // portal VM's web server; spread over both DIPs.
    let portal = "http://portal.azurestack.local/";
    // `lab up` returns once the lab is up: the first request is answered.
    let mut served = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let page = curl("strata-ClientVM", portal).expect("the portal answers");
        assert!(page.contains("Azure Stack portal"), "{page}");
        let by = page
            .split("served by ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string();
        *served.entry(by).or_insert(0) += 1;
    }
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["PortalVM", "PortalVM2"],
        "{served:?}"
    );
    // A file larger than a TCP window: the portal VM's kernel hands its VM port TCP
    // super-frames (the veth offers segmentation offload), which the host agent's link
    // cuts into segments; all of it arrives, in order.
    let big: String = (0..20_000)
        .map(|i| format!("line {i:05} of the file\n"))
        .collect();
    for vm in ["PortalVM", "PortalVM2"] {
        std::fs::write(
            format!("/run/strata/azure-stack-poc/www-{vm}-80/big.txt"),
            &big,
        )
        .unwrap();
    }
    for _ in 0..4 {
        let got = curl("strata-ClientVM", "http://portal.azurestack.local/big.txt")
            .expect("the big file comes");
        assert!(got == big, "{} bytes came of {}", got.len(), big.len());
    }
    // A daemon as BGPVM holds the VIP's /32 from both Muxes and gives the kernel both
    // as one multipath route.
    match router {
        "bird" => {
            let out = Command::new("birdc")
                .args(["-s", "/run/strata/azure-stack-poc/BGPVM/bird.ctl"])
                .args(["show", "route", "192.168.133.74/32", "all"])
                .output()
                .unwrap();
            let table = String::from_utf8_lossy(&out.stdout);
            for mux in ["via 192.168.100.20 on eth0", "via 192.168.100.21 on eth0"] {
                assert!(table.contains(mux), "{table}");
            }
        }
        "frr" => {
            let out = Command::new("ip")
                .args(["netns", "exec", "strata-BGPVM", "vtysh"])
                .args(["--vty_socket", "/run/strata/azure-stack-poc/BGPVM"])
                .args(["-c", "show ip route 192.168.133.74/32"])
                .output()
                .unwrap();
            let table = String::from_utf8_lossy(&out.stdout);
            assert!(table.contains("Known via \"bgp\""), "{table}");
            for mux in ["* 192.168.100.20, via eth0", "* 192.168.100.21, via eth0"] {
                assert!(table.contains(mux), "{table}");
            }
        }
        _ => {}
    }
    if router != "strata" {
        let out = Command::new("ip")
            .args(["-n", "strata-BGPVM", "route", "show", "192.168.133.74"])
            .output()
            .unwrap();
        let route = String::from_utf8_lossy(&out.stdout);
        for mux in ["nexthop via 192.168.100.20", "nexthop via 192.168.100.21"] {
            assert!(route.contains(mux), "{route}");
        }
    }
    // The flow's path, from captures of every wire (decoded by tshark): in through a
    // Mux and VXLAN, back straight from the host (direct server return).
    let out = strata(&[
        "lab", "trace", "--netns", "--from", "ClientVM", "--to", portal,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = text.lines().next().unwrap();
    assert!(
        request.starts_with("request  ClientVM → NATVM → BGPVM → MuxVM")
            && request.contains(" → HyperVHost → PortalVM"),
        "{text}"
    );
    assert!(text.contains("VXLAN VNI 4096 192.168.233.2"), "{text}");
    assert!(
        text.contains("reply    PortalVM") && text.contains("→ HyperVHost → BGPVM → ClientVM\n"),
        "{text}"
    );
    assert!(text.contains("[SYN, ACK]"), "{text}");

    // NATVM: its masquerade out, its port forward in.
    let world = curl("strata-ClientVM", "http://203.0.113.100/").unwrap();
    assert!(world.contains("external network"), "{world}");
    let forwarded = curl("strata-Internet", "http://203.0.113.1:8080/").unwrap();
    assert!(
        forwarded.contains("served by PortalVM 192.168.100.74"),
        "{forwarded}"
    );

    // The tenants: each VIP reaches its own VMs, and the VMs' own connections leave as
    // their VIP (the host agent's SNAT) and come back through a Mux.
    for (vip, tenant) in [
        ("192.168.133.80", "Tenant A"),
        ("192.168.133.90", "Tenant B"),
    ] {
        let page = curl("strata-ClientVM", &format!("http://{vip}/")).unwrap();
        assert!(page.contains(tenant), "{vip}: {page}");
    }
    for vm in ["strata-TenantA-Web1", "strata-TenantB-Web2"] {
        for _ in 0..5 {
            let world = curl(vm, "http://203.0.113.100:8080/").unwrap();
            assert!(world.contains("port 8080"), "{vm}: {world}");
        }
    }

    // The controller's API, as a user would reach it: a new dynamic VIP with PortalVM3
    // (on the second host) behind it.
    let mac: String = strata_lab::mac_of(
        strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap()
        .node("PortalVM3")
        .unwrap(),
        0,
    )
    .0
    .iter()
    .map(|b| format!("{b:02X}"))
    .collect();
    let file =
        std::env::temp_dir().join(format!("strata-netns-tenant-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "resourceRef: /loadBalancers/tenant\nproperties:\n  frontendIPConfigurations:\n    - resourceId: fe\n      \
             properties: {{privateIPAllocationMethod: Dynamic}}\n  backendAddressPools:\n    - resourceId: web\n  \
             loadBalancingRules:\n    - resourceId: http\n      properties:\n        protocol: Tcp\n        frontendPort: 80\n        \
             backendPort: 80\n        frontendIPConfigurations: [{{resourceRef: /loadBalancers/tenant/frontendIPConfigurations/fe}}]\n        \
             backendAddressPool: {{resourceRef: /loadBalancers/tenant/backendAddressPools/web}}\n---\n\
             resourceRef: /networkInterfaces/PortalVM3\nproperties:\n  privateMacAddress: {mac}\n  server: {{resourceRef: /servers/HyperVHost2}}\n  \
             ipConfigurations:\n    - resourceId: ipconfig1\n      properties:\n        privateIPAddress: 192.168.100.76\n        \
             loadBalancerBackendAddressPools: [{{resourceRef: /loadBalancers/tenant/backendAddressPools/web}}]\n"
        ),
    )
    .unwrap();
    let out = ctl(&["apply", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (kind, name) in [
        ("networkInterfaces", "PortalVM3"),
        ("loadBalancers", "tenant"),
    ] {
        let out = ctl(&["wait", kind, name, "--timeout", "30"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ctl(&["get", "loadBalancers", "tenant", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vip = doc["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let tenant = format!("http://{vip}/");
    // Succeeded says the Muxes have the VIP; its /32 still has to reach BGPVM over BGP
    // (until then the pool's reject route answers): a few seconds at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        match curl("strata-ClientVM", &tenant) {
            Some(page) => break page,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            None => panic!("the new VIP does not answer"),
        }
    };
    assert!(page.contains("served by PortalVM3"), "{page}");

    // A Mux process dies: BFD takes it out of BGPVM's next hops, and every flow goes
    // through the other. A flow that hashed to it just before may need its SYN sent
    // again (curl waits up to five seconds); none may fail.
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            "strata mux --config /run/strata/azure-stack-poc/MuxVM.toml",
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "no MuxVM process");
    for _ in 0..20 {
        let page = curl("strata-ClientVM", portal).expect("the portal answers without MuxVM");
        assert!(page.contains("Azure Stack portal"), "{page}");
        let page = curl("strata-ClientVM", &tenant).expect("the new VIP answers without MuxVM");
        assert!(page.contains("served by PortalVM3"), "{page}");
    }

    // Down: no namespace (of this lab's; other tests run their own meanwhile), no process, no state left.
    drop(guard);
    assert!(strata_namespaces().is_empty(), "{:?}", strata_namespaces());
    let left = Command::new("pgrep")
        .args(["-f", "/run/strata/azure-stack-poc/"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(!std::path::Path::new("/run/strata/azure-stack-poc").exists());
    let out = strata(&["lab", "down"]);
    assert!(
        !out.status.success(),
        "a second down says the lab is not up"
    );
}

#[test]
fn the_poc_lab_runs_as_namespaces_and_comes_down_clean() {
    if !strata_testkit::netns::allowed() {
        return;
    }
    // One after the other: they share the namespaces' names.
    lab("strata", "ring");
    if Command::new("bird").arg("--version").output().is_ok() {
        lab("bird", "socket");
    } else {
        assert!(
            std::env::var_os("STRATA_REQUIRE_BIRD").is_none(),
            "BIRD is required"
        );
    }
    if std::path::Path::new("/usr/lib/frr/bgpd").exists() {
        // FRR's kernel on the other side of the Muxes' AF_XDP links.
        lab("frr", "xdp");
    } else {
        assert!(
            std::env::var_os("STRATA_REQUIRE_FRR").is_none(),
            "FRR is required"
        );
    }
}
