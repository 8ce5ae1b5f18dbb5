//! `strata lab trace --netns`: a TCP flow's path through a lab built with `lab up
//! --netns`, read from captures of its wires. `dumpcap` records every port of the
//! networks' bridges (in `strata-fabric`) and every VM port of every host while the
//! kernel's curl runs in the first node's namespace; tshark (an independent decoder)
//! reads them back. The flow's SYN is followed by its sequence number, which NAT, VXLAN
//! and VFP's VIP→DIP rewrite all leave alone, and its SYN-ACK by the acknowledgement.
//! A frame seen on several ports of one bridge was sent by the port that saw it first.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use strata_lab::topology::Topology;

use super::{FABRIC, ns};

/// A wire a capture listens on.
struct Wire {
    /// The namespace its interface is in, and the interface.
    netns: String,
    interface: String,
    /// The node on this end, and the network.
    node: String,
    network: String,
    /// For a VM's port: the VM (whose frames come from its own MAC) and its host.
    vm: Option<(String, String)>,
}

impl Wire {
    /// Whether `s` was captured on this wire (interfaces of different namespaces may
    /// share a name: every VM has an `eth0`).
    fn captured(&self, s: &Seen) -> bool {
        self.netns == s.netns && self.interface == s.interface
    }
}

/// Every wire of the lab, as `lab up --netns` built it.
fn wires(t: &Topology) -> Vec<Wire> {
    let mut out = Vec::new();
    for (n, node) in t.nodes.iter().enumerate() {
        let uplink = node.vswitch.as_ref().map(|s| s.uplink_network);
        for (i, nic) in node.nics.iter().enumerate() {
            let network = t.networks[nic.network].name.clone();
            if let Some(h) = nic.vswitch_host {
                let k = t
                    .nodes
                    .iter()
                    .filter(|v| v.nics.iter().any(|c| c.vswitch_host == Some(h)))
                    .position(|v| v.name == node.name)
                    .unwrap_or(0);
                // A VM on the kernel's stack is listened to on its own end: the host's
                // end may be an AF_XDP socket's, whose program takes frames before the
                // kernel's captures see them (and sends past them).
                let (netns, interface) =
                    if super::role(t, n, super::RouterImpl::Strata) == super::Role::Kernel {
                        (ns(&node.name), format!("eth{i}"))
                    } else {
                        (ns(&t.nodes[h].name), format!("vm{k}"))
                    };
                out.push(Wire {
                    netns,
                    interface,
                    node: node.name.clone(),
                    network,
                    vm: Some((node.name.clone(), t.nodes[h].name.clone())),
                });
            } else if uplink != Some(nic.network) {
                out.push(Wire {
                    netns: FABRIC.into(),
                    interface: format!("p{n}x{i}"),
                    node: node.name.clone(),
                    network,
                    vm: None,
                });
            }
        }
        if let Some(net) = uplink {
            out.push(Wire {
                netns: FABRIC.into(),
                interface: format!("p{n}up"),
                node: node.name.clone(),
                network: t.networks[net].name.clone(),
                vm: None,
            });
        }
    }
    out
}

/// One hop of the flow: a frame on a wire, from one node to another.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Hop {
    /// Since the first frame of the trace.
    pub at_ms: f64,
    pub network: String,
    pub from: String,
    pub to: String,
    /// What tshark decoded: addresses, ports, flags, VXLAN.
    pub frame: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Trace {
    pub request: Vec<Hop>,
    pub reply: Vec<Hop>,
}

/// A frame as tshark read it.
#[derive(Debug, Clone)]
struct Seen {
    time: f64,
    /// Where it was captured: the namespace and its interface.
    netns: String,
    interface: String,
    src_mac: String,
    dst_mac: String,
    ips: Vec<String>,
    ports: (String, String),
    seq: u64,
    ack: u64,
    flags: String,
    vni: String,
    md5: String,
}

fn capture(netns: &str, interfaces: &[&str], file: &Path) -> anyhow::Result<Child> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns, "dumpcap", "-q"]);
    for i in interfaces {
        c.args(["-i", i]);
    }
    c.arg("-w")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dumpcap (Wireshark's; install tshark)")
}

/// The frames of a capture made in namespace `netns`.
fn read(file: &Path, netns: &str) -> anyhow::Result<Vec<Seen>> {
    let out = Command::new("tshark")
        .args(["-o", "frame.generate_md5_hash:TRUE", "-r"])
        .arg(file)
        .args(["-Y", "tcp", "-T", "fields", "-E", "separator=\t"])
        .args(["-e", "frame.time_epoch", "-e", "frame.interface_name"])
        .args([
            "-e", "eth.src", "-e", "eth.dst", "-e", "ip.src", "-e", "ip.dst",
        ])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.seq_raw",
        ])
        .args([
            "-e",
            "tcp.ack_raw",
            "-e",
            "tcp.flags.str",
            "-e",
            "vxlan.vni",
        ])
        .args(["-e", "frame.md5_hash"])
        .output()
        .context("running tshark")?;
    if !out.status.success() {
        bail!("tshark: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 13 {
                return None;
            }
            // The inner addresses of a VXLAN frame come after the outer ones.
            let ips = f[4]
                .split(',')
                .zip(f[5].split(','))
                .flat_map(|(s, d)| [s.to_string(), d.to_string()])
                .collect();
            Some(Seen {
                time: f[0].parse().ok()?,
                netns: netns.to_string(),
                interface: f[1].to_string(),
                src_mac: f[2].split(',').next()?.to_string(),
                dst_mac: f[3].split(',').next()?.to_string(),
                ips,
                ports: (f[6].to_string(), f[7].to_string()),
                seq: f[8].parse().ok()?,
                ack: f[9].parse().unwrap_or(0),
                flags: f[10].replace('·', "").to_string(),
                vni: f[11].to_string(),
                md5: f[12].to_string(),
            })
        })
        .collect())
}

/// tshark's flag letters as words, SYN first (`AS` is `SYN, ACK`).
fn flag_words(letters: &str) -> String {
    [
        ('S', "SYN"),
        ('F', "FIN"),
        ('R', "RST"),
        ('P', "PSH"),
        ('A', "ACK"),
    ]
    .iter()
    .filter(|(c, _)| letters.contains(*c))
    .map(|(_, w)| *w)
    .collect::<Vec<_>>()
    .join(", ")
}

fn describe(s: &Seen) -> String {
    let flags = flag_words(s.flags.trim());
    match s.ips.as_slice() {
        [outer_src, outer_dst, src, dst, ..] if !s.vni.is_empty() => format!(
            "VXLAN VNI {} {outer_src} > {outer_dst}: TCP {src}:{} > {dst}:{} [{flags}]",
            s.vni, s.ports.0, s.ports.1
        ),
        [src, dst, ..] => format!("TCP {src}:{} > {dst}:{} [{flags}]", s.ports.0, s.ports.1),
        _ => format!("TCP [{flags}]"),
    }
}

/// The lab's MAC of each node's NICs, to name a frame's receiver.
fn macs(t: &Topology) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (n, node) in t.nodes.iter().enumerate() {
        for i in 0..node.nics.len() {
            out.insert(super::mac(n, i), node.name.clone());
        }
    }
    out
}

/// The hops of the frames that `pick` keeps, in time order; a frame seen on several
/// ports of a bridge counts once, from the port that saw it first.
fn hops(seen: &[Seen], wires: &[Wire], t: &Topology, pick: impl Fn(&Seen) -> bool) -> Vec<Hop> {
    let macs = macs(t);
    let mut frames: Vec<&Seen> = seen.iter().filter(|s| pick(s)).collect();
    frames.sort_by(|a, b| a.time.total_cmp(&b.time));
    let mut done: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for s in frames {
        let Some(w) = wires.iter().find(|w| w.captured(s)) else {
            continue;
        };
        let key = (w.network.clone(), s.md5.clone());
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        let (from, to) = match &w.vm {
            Some((vm, host)) if macs.get(&s.src_mac) == Some(vm) => (vm.clone(), host.clone()),
            Some((vm, host)) => (host.clone(), vm.clone()),
            None => {
                // The host's uplink carries its VMs' frames too: the switch sent them.
                let to = macs
                    .get(&s.dst_mac)
                    .cloned()
                    .unwrap_or_else(|| s.dst_mac.clone());
                (w.node.clone(), to)
            }
        };
        out.push(Hop {
            at_ms: s.time,
            network: w.network.clone(),
            from,
            to,
            frame: describe(s),
        });
    }
    out
}

/// Runs `curl URL` in `from`'s namespace with every wire captured, and follows it.
pub(crate) fn trace(t: &Topology, from: &str, url: &str) -> anyhow::Result<Trace> {
    if t.node(from).is_none() {
        bail!("no node {from:?} in this lab");
    }
    if !super::state_dir(&t.name).exists() {
        bail!("lab {} is not up: strata lab up --netns first", t.name);
    }
    let wires = wires(t);
    let dir = std::env::temp_dir().join(format!("strata-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for w in &wires {
        by_ns.entry(&w.netns).or_default().push(&w.interface);
    }
    let mut children = Vec::new();
    let mut files = Vec::new();
    for (k, (netns, interfaces)) in by_ns.iter().enumerate() {
        let file = dir.join(format!("{k}.pcapng"));
        children.push(capture(netns, interfaces, &file)?);
        files.push((file, *netns));
    }
    // dumpcap has its interfaces open once its file exists and has been written to.
    std::thread::sleep(Duration::from_millis(1500));
    let curl = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns(from),
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
        ])
        .arg(url)
        .status();
    std::thread::sleep(Duration::from_millis(500));
    for c in &mut children {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    if !curl.is_ok_and(|s| s.success()) {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("curl {url} from {from} failed");
    }
    let mut seen = Vec::new();
    for (f, netns) in &files {
        seen.extend(read(f, netns)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let result = follow(&seen, &wires, t, from)?;
    Ok(result)
}

/// The flow `from` opened: its first SYN's path and its SYN-ACK's.
fn follow(seen: &[Seen], wires: &[Wire], t: &Topology, from: &str) -> anyhow::Result<Trace> {
    let first = seen
        .iter()
        .filter(|s| {
            s.flags.trim() == "S"
                && wires
                    .iter()
                    .any(|w| w.captured(s) && w.node == from && w.vm.is_none())
        })
        .min_by(|a, b| a.time.total_cmp(&b.time))
        .with_context(|| format!("no SYN from {from} was captured"))?;
    let isn = first.seq;
    let request = hops(seen, wires, t, |s| s.flags.trim() == "S" && s.seq == isn);
    let reply = hops(seen, wires, t, |s| {
        s.flags.trim() == "AS" && s.ack == isn.wrapping_add(1) & 0xffff_ffff
    });
    let start = request.first().map_or(0.0, |h| h.at_ms);
    let rebase = |mut v: Vec<Hop>| {
        for h in &mut v {
            h.at_ms = (h.at_ms - start) * 1000.0;
        }
        v
    };
    Ok(Trace {
        request: rebase(request),
        reply: rebase(reply),
    })
}

/// The path's nodes, `A → B → C`.
fn path(hops: &[Hop]) -> String {
    let mut nodes: Vec<&str> = Vec::new();
    for h in hops {
        if nodes.last() != Some(&h.from.as_str()) {
            nodes.push(&h.from);
        }
        nodes.push(&h.to);
    }
    nodes.join(" → ")
}

/// The trace as text.
pub(crate) fn render(t: &Trace) -> String {
    let mut out = String::new();
    for (what, hops) in [("request", &t.request), ("reply", &t.reply)] {
        out.push_str(&format!("{what:<8} {}\n", path(hops)));
        for h in hops {
            out.push_str(&format!(
                "  +{:>9.3} ms  {:<14} {:<11} → {:<11} {}\n",
                h.at_ms, h.network, h.from, h.to, h.frame
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_words_syn_first() {
        assert_eq!(flag_words("S"), "SYN");
        assert_eq!(flag_words("AS"), "SYN, ACK");
        assert_eq!(flag_words("AP"), "PSH, ACK");
        assert_eq!(flag_words("AF"), "FIN, ACK");
        assert_eq!(flag_words("R"), "RST");
    }

    #[test]
    fn every_wire_of_the_poc_is_named_as_lab_up_builds_it() {
        let t = strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap();
        let w = wires(&t);
        let client = t.node("ClientVM").unwrap();
        let find = |i: &str| w.iter().find(|x| x.interface == i).unwrap();
        let c = find(&format!("p{client}x0"));
        assert_eq!((c.netns.as_str(), c.node.as_str()), (FABRIC, "ClientVM"));
        assert_eq!(c.network, "nat-internal");
        let host = t.node("HyperVHost").unwrap();
        let up = find(&format!("p{host}up"));
        assert_eq!(
            (up.node.as_str(), up.network.as_str()),
            ("HyperVHost", "management")
        );
        let vm = w
            .iter()
            .find(|x| x.vm.as_ref().is_some_and(|(v, _)| v == "PortalVM"))
            .unwrap();
        assert_eq!(
            (vm.netns.as_str(), vm.interface.as_str()),
            ("strata-PortalVM", "eth0"),
            "a VM on the kernel's stack is listened to on its own end"
        );
        // The host's management vNIC is on its own switch: no wire of its own.
        assert!(!w.iter().any(|x| x.interface == format!("p{host}x0")));
    }
}
