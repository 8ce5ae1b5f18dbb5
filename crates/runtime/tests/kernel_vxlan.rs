//! Strata's Mux on real interfaces, with the Linux kernel as the other end of its VXLAN:
//! a host built from a kernel `vxlan` device and an nftables DNAT (VIP → DIP), instead of
//! Strata's vSwitch, takes the Mux's encapsulated SYN and serves the VIP; the reply goes
//! straight back (direct server return) through the Strata node as a plain router. The
//! kernel's curl fetches the page. Needs root (CI runs as root), `nft` and `curl`; skipped
//! without root unless `STRATA_REQUIRE_NETNS` is set. Everything is removed however the
//! test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_fabric::linux::{LinuxLink, PacketLink, XdpLink, netns};
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::{Dip, MuxConfig, VipConfig, VipKey};
use strata_node::{MuxRole, NicConfig, NodeConfig};
use strata_runtime::Driver;
use strata_testkit::netns::{Scene, allowed as netns_allowed, run};
use strata_wire::EthernetAddress;

fn nic(link: &LinuxLink, addr: &str) -> NicConfig {
    NicConfig {
        name: link.name().to_string(),
        mac: EthernetAddress(link.mac().unwrap()),
        addr: addr.parse().unwrap(),
        mtu: 1500,
        behind_switch: false,
    }
}

/// The MAC of `dev` in namespace `ns`, as `ip` prints it.
fn mac_of(ns: &str, dev: &str) -> EthernetAddress {
    let text = run("ip", &["-n", ns, "-o", "link", "show", dev]);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap();
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[test]
fn a_kernel_vxlan_host_serves_the_vip_the_mux_sends_it() {
    serve_through(false);
}

/// [`a_kernel_vxlan_host_serves_the_vip_the_mux_sends_it`], the Mux's links AF_XDP
/// sockets fed by its XDP program; the program is gone from the interfaces once the
/// links are.
#[test]
fn a_kernel_vxlan_host_serves_the_vip_the_mux_sends_it_by_af_xdp() {
    serve_through(true);
}

fn serve_through(xdp: bool) {
    if !netns_allowed() {
        return;
    }
    let id = std::process::id();
    let (mut cleanup, names) = Scene::new(if xdp {
        &["xc", "xm", "xh", "xd"]
    } else {
        &["vc", "vm", "vh", "vd"]
    });
    let (client, mux, host, vm) = (
        names[0].clone(),
        names[1].clone(),
        names[2].clone(),
        names[3].clone(),
    );
    let ip = |args: &[&str]| run("ip", args);
    ip(&[
        "-n", &client, "link", "add", "c0", "type", "veth", "peer", "name", "m0", "netns", &mux,
    ]);
    ip(&[
        "-n", &host, "link", "add", "h0", "type", "veth", "peer", "name", "m1", "netns", &mux,
    ]);
    for (ns, dev) in [(&client, "c0"), (&mux, "m0"), (&mux, "m1"), (&host, "h0")] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", &client, "addr", "add", "10.1.0.2/24", "dev", "c0"]);
    ip(&[
        "-n",
        &client,
        "route",
        "add",
        "192.168.133.0/24",
        "via",
        "10.1.0.1",
    ]);
    // XDP carries no word of a checksum the sender left to the device (see `XdpLink`):
    // the kernels that send to the XDP links compute theirs.
    if xdp {
        for (ns, dev) in [(&client, "c0"), (&host, "h0")] {
            run(
                "ip",
                &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
            );
        }
    }
    // The host: its provider address and a kernel VXLAN device for VNI 4096 (the IANA
    // port), whose decapsulated side is the VM's namespace, as a VM sits behind a host.
    // In the VM: the DIP, and a DNAT from the VIP to it. Replies leave the VM by a link
    // of their own to the host, which routes them back through the Strata node (DSR).
    // (The VXLAN device's packets must cross a namespace: in the one it was received in,
    // the inner packet keeps the outer packet's conntrack entry and is never NATed.)
    ip(&["-n", &host, "addr", "add", "192.168.233.21/24", "dev", "h0"]);
    ip(&[
        "-n",
        &host,
        "route",
        "add",
        "10.1.0.0/24",
        "via",
        "192.168.233.20",
    ]);
    ip(&[
        "-n",
        &host,
        "link",
        "add",
        "vxlan0",
        "type",
        "vxlan",
        "id",
        "4096",
        "local",
        "192.168.233.21",
        "dstport",
        "4789",
        "nolearning",
        "dev",
        "h0",
    ]);
    ip(&["-n", &host, "link", "set", "vxlan0", "netns", &vm]);
    ip(&["-n", &vm, "link", "set", "vxlan0", "up"]);
    ip(&["-n", &vm, "addr", "add", "10.99.0.5/32", "dev", "vxlan0"]);
    ip(&[
        "-n", &vm, "link", "add", "v1", "type", "veth", "peer", "name", "h1", "netns", &host,
    ]);
    ip(&["-n", &vm, "addr", "add", "10.98.0.2/30", "dev", "v1"]);
    ip(&["-n", &host, "addr", "add", "10.98.0.1/30", "dev", "h1"]);
    ip(&["-n", &vm, "link", "set", "v1", "up"]);
    ip(&["-n", &host, "link", "set", "h1", "up"]);
    ip(&["-n", &vm, "route", "add", "default", "via", "10.98.0.1"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &host,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    );
    for knob in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.vxlan0.rp_filter=0",
    ] {
        run("ip", &["netns", "exec", &vm, "sysctl", "-qw", knob]);
    }
    let dir = std::env::temp_dir().join(format!("strata-vxlan-{id}-{xdp}"));
    std::fs::create_dir_all(&dir).unwrap();
    cleanup.dir = Some(dir.clone());
    let rules = dir.join("slb.nft");
    std::fs::write(
        &rules,
        "table ip slb {\n  chain prerouting {\n    type nat hook prerouting priority -100;\n    \
         iifname \"vxlan0\" ip daddr 192.168.133.74 tcp dport 80 counter dnat to 10.99.0.5:80\n  }\n}\n",
    )
    .unwrap();
    run(
        "ip",
        &["netns", "exec", &vm, "nft", "-f", rules.to_str().unwrap()],
    );
    let dip_mac = mac_of(&vm, "vxlan0");

    // A web server on the DIP, in the VM.
    std::fs::write(
        dir.join("index.html"),
        "served through a kernel VXLAN host\n",
    )
    .unwrap();
    cleanup.children.push(
        Command::new("ip")
            .args(["netns", "exec", &vm, "python3", "-m", "http.server", "80"])
            .args(["--bind", "10.99.0.5", "--directory"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The Mux: a router between the client and the provider network, with the VIP.
    let links = netns::run_in(&mux, move || {
        let open = |name: &str| -> std::io::Result<LinuxLink> {
            Ok(if xdp {
                XdpLink::open(name)?.into()
            } else {
                PacketLink::open(name)?.into()
            })
        };
        Ok(vec![open("m0")?, open("m1")?])
    })
    .unwrap();
    if xdp {
        for dev in ["m0", "m1"] {
            let shown = run("ip", &["-n", &mux, "link", "show", dev]);
            assert!(
                shown.contains("prog/xdp"),
                "no XDP program on {dev}: {shown}"
            );
        }
    }
    let provider = nic(&links[1], "192.168.233.20/24");
    let vip = VipConfig {
        key: VipKey {
            vip: "192.168.133.74".parse().unwrap(),
            proto: 6,
            port: 80,
        },
        dips: vec![Dip {
            addr: "10.99.0.5".parse().unwrap(),
            port: 80,
            host_pa: "192.168.233.21".parse().unwrap(),
            mac: dip_mac,
            weight: 1,
        }],
        distribution: Distribution::FiveTuple,
        vni: strata_wire::vxlan::Vni::new(4096).unwrap(),
    };
    let config = NodeConfig {
        mux: Some(MuxRole {
            config: MuxConfig::new(provider.addr.addr(), provider.mac),
            vips: vec![vip],
        }),
        forwarding: true,
        seed: 1,
        ..NodeConfig::new("MuxVM", vec![nic(&links[0], "10.1.0.1/24"), provider])
    };
    let mut driver = Driver::new(config, links).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            driver.run(&stop).unwrap();
            driver
        })
    };

    // The kernel's curl, through the VIP: the server may take a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(4);
    let page = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &client, "curl", "-s", "-m", "2"])
            .arg("http://192.168.133.74/index.html")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() >= deadline {
            // What the VM saw, for whoever reads the failure.
            for cmd in [
                "ss -ltn",
                "nft list ruleset",
                "nstat -az IpInReceives IpInAddrErrors TcpInErrs TcpInCsumErrors",
            ] {
                let o = Command::new("ip")
                    .args(["netns", "exec", &vm, "sh", "-c", cmd])
                    .output()
                    .unwrap();
                eprintln!(
                    "$ {cmd}\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            panic!("curl never got the page: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(page, "served through a kernel VXLAN host\n");

    stop.store(true, Ordering::Relaxed);
    let driver = running.join().unwrap();
    let counters = *driver.node().mux().unwrap().counters();
    assert!(counters.encapsulated >= 3, "{counters:?}");
    // The replies came back as plain routed packets, not through the Mux.
    assert!(driver.node().router().counters().forwarded >= 2);
    drop(driver);
    for dev in ["m0", "m1"] {
        let shown = run("ip", &["-n", &mux, "link", "show", dev]);
        assert!(!shown.contains("prog/xdp"), "XDP left on {dev}: {shown}");
    }
}
