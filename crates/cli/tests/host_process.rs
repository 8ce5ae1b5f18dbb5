//! `strata host-agent` as a process in a network namespace: its vSwitch switches a VM's
//! frames (a namespace with the kernel's stack) out of its uplink to the management
//! network, its management vNIC answers there, and `strata controller` (in another
//! namespace, on the kernel's TCP) configures it over the southbound protocol: the
//! host's `servers` resource is Updating until the host has applied it. Needs root (CI
//! runs as root); skipped without it unless `STRATA_REQUIRE_NETNS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use strata_testkit::netns::{Scene, allowed as netns_allowed, run};

mod support;
use support::controller::ctl;

fn mac_of(ns: &str, dev: &str) -> String {
    run("ip", &["-n", ns, "-o", "link", "show", dev])
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_string()
}

fn ping(ns: &str, to: &str) -> Output {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", to,
        ])
        .output()
        .unwrap()
}

#[test]
fn a_host_agent_process_switches_its_vms_and_is_configured_by_the_controller() {
    if !netns_allowed() {
        return;
    }
    let id = std::process::id();
    let (mut scene, names) = Scene::new(&["hnc", "host", "hvm", "hpa"]);
    let (nc, host, vm, prov) = (
        names[0].clone(),
        names[1].clone(),
        names[2].clone(),
        names[3].clone(),
    );
    let dir = std::env::temp_dir().join(format!("strata-host-process-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    scene.dir = Some(dir.clone());
    let data = dir.join("controller");
    let ip = |args: &[&str]| {
        run("ip", args);
    };
    // The management network: the controller and the host's uplink. A VM behind the
    // host's switch; the provider network behind its PA interface.
    ip(&[
        "-n", &nc, "link", "add", "n0", "type", "veth", "peer", "name", "eth0", "netns", &host,
    ]);
    ip(&[
        "-n", &vm, "link", "add", "v0", "type", "veth", "peer", "name", "vm0", "netns", &host,
    ]);
    ip(&[
        "-n", &prov, "link", "add", "p0", "type", "veth", "peer", "name", "eth1", "netns", &host,
    ]);
    for (ns, dev) in [
        (&nc, "n0"),
        (&nc, "lo"),
        (&host, "eth0"),
        (&host, "eth1"),
        (&host, "vm0"),
        (&vm, "v0"),
        (&prov, "p0"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", &nc, "addr", "add", "10.0.0.10/24", "dev", "n0"]);
    ip(&["-n", &vm, "addr", "add", "10.0.0.74/24", "dev", "v0"]);
    ip(&["-n", &prov, "addr", "add", "192.168.233.20/24", "dev", "p0"]);

    scene.children.push(support::controller::start(&nc, &data));
    let resource = dir.join("server.yaml");
    std::fs::write(
        &resource,
        "resourceRef: /servers/HyperVHost\nproperties:\n  connections:\n    \
         - managementAddresses: [10.0.0.2]\n",
    )
    .unwrap();
    let out = ctl(&nc, &data, &["apply", "-f", resource.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(ctl(&nc, &data, &["node-token", "HyperVHost"]).stdout).unwrap();

    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "netns = \"{host}\"\nname = \"HyperVHost\"\ncontroller = \"10.0.0.10:8081\"\n\
             token = \"{}\"\nswitch = \"CCI_External\"\nuplink = \"eth0\"\n\
             [management]\nname = \"vEthernet 1001\"\naddress = \"10.0.0.2/24\"\n\
             [provider]\ninterface = \"eth1\"\naddress = \"192.168.233.21/24\"\n\
             [[vm]]\nname = \"PortalVM\"\ninterface = \"vm0\"\nmac = \"{}\"\n",
            token.trim(),
            mac_of(&vm, "v0")
        ),
    )
    .unwrap();
    scene.children.push(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["host-agent", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // Configured by the controller: Updating until the host applied it.
    let out = ctl(
        &nc,
        &data,
        &["wait", "servers", "HyperVHost", "--timeout", "20"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "servers/HyperVHost Succeeded\n"
    );

    // The VM's frames cross the vSwitch and its uplink: the kernel in the VM reaches the
    // controller's host, and the host's own vNIC on the switch answers the VM.
    let out = ping(&vm, "10.0.0.10");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ping(&vm, "10.0.0.2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The host's PA answers on the provider network.
    let out = ping(&prov, "192.168.233.21");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // SIGTERM: it stops cleanly.
    let mut agent = scene.children.pop().unwrap();
    run("kill", &["-TERM", &agent.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the host agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("VFP rules and probes come from the controller"),
        "{log}"
    );
}
