//! The seed's flow on real interfaces, every Strata role a process of its own and every
//! VM the kernel's stack: `strata controller` (NCVM) configures `strata mux` (MuxVM) and
//! `strata host-agent` (HyperVHost) over the southbound protocol from the resources a
//! lab file describes; the kernel's curl in ClientVM fetches the VIP; the Mux sends it in
//! VXLAN to the host, whose VFP rewrites VIP to DIP for PortalVM (a python web server),
//! and the reply goes straight back (DSR) through the Mux as a router. Needs root (CI
//! runs as root); skipped without it unless `STRATA_REQUIRE_NETNS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_testkit::netns::{Scene, allowed as netns_allowed, run};

mod support;
use support::controller::ctl;

/// The topology as a lab file: it gives the controller's resources (and the MACs).
const LAB: &str = r#"
[lab]
name = "slb-real"

[[network]]
name = "management"
prefix = "10.0.0.0/24"

[[network]]
name = "provider"
prefix = "192.168.233.0/24"

[[network]]
name = "clients"
prefix = "10.1.0.0/24"

[[node]]
name = "NCVM"
[[node.nic]]
network = "management"
address = "10.0.0.10/24"
[node.controller]
southbound_port = 8081

[[node]]
name = "MuxVM"
kind = "router"
[[node.nic]]
network = "management"
address = "10.0.0.20/24"
[[node.nic]]
network = "provider"
address = "192.168.233.20/24"
[[node.nic]]
network = "clients"
address = "10.1.0.1/24"
[node.mux]
provider = "provider"
[node.bgp]
asn = 64501

[[node]]
name = "HyperVHost"
kind = "host"
[[node.nic]]
name = "vEthernet 1001"
network = "management"
address = "10.0.0.2/24"
[[node.nic]]
name = "PAhostVNIC"
network = "provider"
address = "192.168.233.21/24"
[node.vswitch]
name = "CCI_External"
uplink = "management"
provider = "provider"

[[node]]
name = "PortalVM"
[[node.nic]]
network = "management"
address = "10.0.0.74/24"
vswitch = "HyperVHost"
[[node.http]]
port = 80

[[node]]
name = "ClientVM"
[[node.nic]]
network = "clients"
address = "10.1.0.2/24"

[slb]
vni = 4096
vipPrefix = "192.168.133.0/24"

[[slb.loadBalancers]]
resourceId = "portal"
[[slb.loadBalancers.frontendIPConfigurations]]
resourceId = "portal-vip"
privateIPAddress = "192.168.133.74"
[[slb.loadBalancers.backendAddressPools]]
resourceId = "portal-dips"
members = ["PortalVM"]
[[slb.loadBalancers.loadBalancingRules]]
resourceId = "http"
frontendIPConfiguration = "portal-vip"
backendAddressPool = "portal-dips"
protocol = "Tcp"
frontendPort = 80
backendPort = 80
probe = "portal-http"
[[slb.loadBalancers.probes]]
resourceId = "portal-http"
protocol = "Http"
port = 80
requestPath = "/"
intervalInSeconds = 1
numberOfProbes = 1
"#;

fn mac(node: usize, nic: usize) -> String {
    strata_lab::mac_of(node, nic)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn the_portal_flow_runs_on_real_interfaces_with_every_role_a_process() {
    if !netns_allowed() {
        return;
    }
    let topology = strata_lab::file::parse("slb-real.toml", LAB).unwrap();
    let id = std::process::id();
    let (mut scene, names) = Scene::new(&["fab", "nc", "mux", "host", "portal", "client"]);
    let (fab, nc, mux, host, portal, client) = (
        names[0].clone(),
        names[1].clone(),
        names[2].clone(),
        names[3].clone(),
        names[4].clone(),
        names[5].clone(),
    );
    let dir = std::env::temp_dir().join(format!("strata-slb-real-{id}"));
    std::fs::create_dir_all(dir.join("www")).unwrap();
    scene.dir = Some(dir.clone());
    let data = dir.join("controller");
    let ip = |args: &[&str]| {
        run("ip", args);
    };
    // The management network is a bridge; the others are point to point.
    ip(&["-n", &fab, "link", "add", "mgmt", "type", "bridge"]);
    ip(&["-n", &fab, "link", "set", "mgmt", "up"]);
    for (ns, dev, port) in [
        (&nc, "n0", "b-nc"),
        (&mux, "eth0", "b-mux"),
        (&host, "eth0", "b-host"),
    ] {
        ip(&[
            "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", &fab,
        ]);
        ip(&["-n", &fab, "link", "set", port, "master", "mgmt", "up"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&[
        "-n", &mux, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", &host,
    ]);
    ip(&[
        "-n", &mux, "link", "add", "eth2", "type", "veth", "peer", "name", "c0", "netns", &client,
    ]);
    ip(&[
        "-n", &portal, "link", "add", "v0", "type", "veth", "peer", "name", "vm0", "netns", &host,
    ]);
    for (ns, dev) in [
        (&mux, "eth1"),
        (&mux, "eth2"),
        (&host, "eth1"),
        (&host, "vm0"),
        (&client, "c0"),
        (&nc, "lo"),
        (&portal, "lo"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    // The kernel hosts: the controller, the portal VM (the MAC the resources give it),
    // the client. The VM's replies leave by its gateway, the Mux (direct server return).
    ip(&["-n", &nc, "addr", "add", "10.0.0.10/24", "dev", "n0"]);
    let portal_node = topology.node("PortalVM").unwrap();
    ip(&[
        "-n",
        &portal,
        "link",
        "set",
        "v0",
        "address",
        &mac(portal_node, 0),
    ]);
    ip(&["-n", &portal, "link", "set", "v0", "up"]);
    ip(&["-n", &portal, "addr", "add", "10.0.0.74/24", "dev", "v0"]);
    ip(&["-n", &portal, "route", "add", "default", "via", "10.0.0.20"]);
    ip(&["-n", &client, "addr", "add", "10.1.0.2/24", "dev", "c0"]);
    ip(&["-n", &client, "route", "add", "default", "via", "10.1.0.1"]);
    std::fs::write(dir.join("www/index.html"), "Azure Stack portal, for real\n").unwrap();
    scene.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &portal,
                "python3",
                "-m",
                "http.server",
                "80",
            ])
            .arg("--directory")
            .arg(dir.join("www"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The controller, then the lab's resources through its API, as a user would.
    scene.children.push(support::controller::start(&nc, &data));
    let documents: Vec<String> = strata_lab::resources::resources(&topology)
        .unwrap()
        .into_iter()
        .map(|(collection, id, mut body)| {
            body["resourceRef"] = format!("/{collection}/{id}").into();
            serde_yaml_ng::to_string(&body).unwrap()
        })
        .collect();
    let file = dir.join("resources.yaml");
    std::fs::write(&file, documents.join("---\n")).unwrap();
    let out = ctl(&nc, &data, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = |node: &str| {
        String::from_utf8(ctl(&nc, &data, &["node-token", node]).stdout)
            .unwrap()
            .trim()
            .to_string()
    };

    // The roles, each a process in its namespace.
    let mux_file = dir.join("mux.toml");
    std::fs::write(
        &mux_file,
        format!(
            "netns = \"{mux}\"\nname = \"MuxVM\"\ncontroller = \"10.0.0.10:8081\"\ntoken = \"{}\"\n\
             provider = \"eth1\"\nasn = 64501\n\
             [[interface]]\nname = \"eth0\"\naddress = \"10.0.0.20/24\"\n\
             [[interface]]\nname = \"eth1\"\naddress = \"192.168.233.20/24\"\n\
             [[interface]]\nname = \"eth2\"\naddress = \"10.1.0.1/24\"\n",
            token("MuxVM")
        ),
    )
    .unwrap();
    let host_file = dir.join("host.toml");
    std::fs::write(
        &host_file,
        format!(
            "netns = \"{host}\"\nname = \"HyperVHost\"\ncontroller = \"10.0.0.10:8081\"\n\
             token = \"{}\"\nswitch = \"CCI_External\"\nuplink = \"eth0\"\n\
             [management]\nname = \"vEthernet 1001\"\naddress = \"10.0.0.2/24\"\n\
             [provider]\ninterface = \"eth1\"\naddress = \"192.168.233.21/24\"\n\
             [[vm]]\nname = \"PortalVM\"\ninterface = \"vm0\"\nmac = \"{}\"\n",
            token("HyperVHost"),
            mac(portal_node, 0)
        ),
    )
    .unwrap();
    for (role, file) in [("mux", &mux_file), ("host-agent", &host_file)] {
        scene.children.push(
            Command::new(env!("CARGO_BIN_EXE_strata"))
                .args([role, "--config"])
                .arg(file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let out = ctl(
        &nc,
        &data,
        &["wait", "loadBalancers", "portal", "--timeout", "30"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What crosses the provider network, seen by tshark (an independent decoder).
    let capture = dir.join("provider.pcap");
    scene.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &host,
                "tshark",
                "-q",
                "-i",
                "eth1",
                "-f",
                "udp port 4789",
                "-w",
            ])
            .arg(&capture)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !capture.exists() {
        assert!(Instant::now() < deadline, "tshark did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    // The kernel's curl through the VIP, once the host's probe has the DIP in the pool.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &client, "curl", "-s", "-m", "2"])
            .arg("http://192.168.133.74/index.html")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "curl never got the page: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(page, "Azure Stack portal, for real\n");

    // The request crossed in VXLAN, VNI 4096, from the Mux's PA to the host's, the
    // client's connection inside; the reply did not come back that way (DSR).
    std::thread::sleep(Duration::from_millis(500));
    let mut tshark = scene.children.pop().unwrap();
    run("kill", &["-INT", &tshark.id().to_string()]);
    let _ = tshark.wait();
    let fields = run(
        "tshark",
        &[
            "-r",
            capture.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
        ],
    );
    assert!(
        fields
            .lines()
            .any(|l| l == "4096\t192.168.233.20,10.1.0.2\t192.168.233.21,192.168.133.74\t80"),
        "{fields}"
    );
    assert!(
        !fields
            .lines()
            .any(|l| l.contains("192.168.133.74,10.1.0.2")),
        "a reply went back through VXLAN: {fields}"
    );
}
