//! `strata lab up --netns --router bird|frr`: a lab router (a node with BGP and no NAT,
//! Mux or vSwitch: BGPVM in the POC lab) run by a real routing daemon on the kernel's
//! forwarding plane instead of by Strata. Its static routes go into the namespace's
//! table with `ip route` (reject and blackhole as `unreachable` and `blackhole`); the
//! daemon speaks BGP and BFD with the lab's neighbors and installs what it learns, every
//! equal path of a prefix as one multipath route.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_lab::topology::NodeSpec;
use strata_node::apps::bgp::BgpConfig;
use strata_node::router::RouteKind;

/// Who runs the lab's routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RouterImpl {
    /// Strata's router (`strata lab node`).
    Strata,
    /// BIRD 2.
    Bird,
    /// FRR: zebra, bfdd and bgpd.
    Frr,
}

/// Whether `--router` replaces this node: a router with BGP and nothing else of Strata's.
pub(crate) fn replaceable(node: &NodeSpec) -> bool {
    node.bgp.is_some() && node.nat.is_none() && node.mux.is_none() && node.vswitch.is_none()
}

fn bfd_ms(d: Duration) -> u128 {
    d.as_millis()
}

/// BIRD 2's configuration for `node`.
pub(crate) fn bird_conf(node: &NodeSpec, bgp: &BgpConfig) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# {}, written by strata lab up --netns --router bird",
        node.name
    );
    let _ = writeln!(c, "router id {};", bgp.router_id);
    c.push_str("protocol device {}\n");
    c.push_str("protocol direct { ipv4; }\n");
    // Only what BGP learns goes to the kernel: the static routes are there already.
    c.push_str(
        "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n  \
         merge paths on;\n}\n",
    );
    if let Some(bfd) = bgp.neighbors.iter().find_map(|n| n.bfd) {
        let _ = writeln!(
            c,
            "protocol bfd {{\n  interface \"*\" {{\n    min rx interval {} ms;\n    \
             min tx interval {} ms;\n    multiplier {};\n  }};\n}}",
            bfd_ms(bfd.required_min_rx),
            bfd_ms(bfd.desired_min_tx),
            bfd.detect_mult
        );
    }
    for (i, n) in bgp.neighbors.iter().enumerate() {
        let _ = write!(
            c,
            "protocol bgp peer{i} {{\n  local as {};\n  neighbor {} as {};\n  hold time {};\n  \
             connect retry time {};\n  error wait time 1, 4;\n",
            bgp.asn,
            n.address,
            n.asn,
            n.hold_time,
            n.connect_retry.as_secs().max(1)
        );
        if n.passive {
            c.push_str("  passive on;\n");
        }
        if n.bfd.is_some() {
            c.push_str("  bfd on;\n");
        }
        c.push_str("  ipv4 { import all; export none; };\n}\n");
    }
    c
}

/// FRR's integrated configuration for `node` (zebra, bfdd, bgpd).
pub(crate) fn frr_conf(node: &NodeSpec, bgp: &BgpConfig) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "! {}, written by strata lab up --netns --router frr",
        node.name
    );
    c.push_str("frr defaults traditional\n");
    let _ = writeln!(c, "hostname {}", node.name);
    if bgp.neighbors.iter().any(|n| n.bfd.is_some()) {
        c.push_str("bfd\n");
        for n in &bgp.neighbors {
            let Some(bfd) = n.bfd else { continue };
            let Some(nic) = node.nics.iter().position(|x| x.addr.contains(&n.address)) else {
                continue;
            };
            let _ = write!(
                c,
                " peer {} local-address {} interface eth{nic}\n  receive-interval {}\n  \
                 transmit-interval {}\n  detect-multiplier {}\n !\n",
                n.address,
                node.nics[nic].addr.addr(),
                bfd_ms(bfd.required_min_rx),
                bfd_ms(bfd.desired_min_tx),
                bfd.detect_mult
            );
        }
        c.push_str("!\n");
    }
    let _ = write!(
        c,
        "router bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n",
        bgp.asn, bgp.router_id
    );
    for n in &bgp.neighbors {
        let a = n.address;
        let _ = write!(
            c,
            " neighbor {a} remote-as {}\n neighbor {a} timers {} {}\n \
             neighbor {a} timers connect {}\n",
            n.asn,
            (n.hold_time / 3).max(1),
            n.hold_time,
            n.connect_retry.as_secs().max(1)
        );
        if n.passive {
            let _ = writeln!(c, " neighbor {a} passive");
        }
        if n.bfd.is_some() {
            let _ = writeln!(c, " neighbor {a} bfd");
        }
    }
    c.push_str(" address-family ipv4 unicast\n  maximum-paths 16\n");
    for n in &bgp.neighbors {
        // Nothing goes back out: the Muxes only announce.
        let _ = writeln!(c, "  neighbor {} prefix-list none out", n.address);
    }
    c.push_str(" exit-address-family\n!\nip prefix-list none seq 5 deny any\n!\n");
    c
}

fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// The namespace's kernel as a router: forwarding on, flows (not packets) spread over
/// equal paths, the node's static routes, the lab's reject and blackhole routes.
pub(crate) fn kernel_router(ns: &str, node: &NodeSpec) -> anyhow::Result<()> {
    run(
        "sysctl",
        in_ns(ns, "sysctl").args([
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
        ]),
    )?;
    for r in &node.routes {
        let prefix = r.prefix.to_string();
        let mut args = vec!["-n", ns, "route", "add"];
        let via;
        match r.kind {
            RouteKind::Reject => args.extend(["unreachable", &prefix]),
            RouteKind::Blackhole => args.extend(["blackhole", &prefix]),
            RouteKind::Forward => {
                let Some(v) = r.via else { continue };
                via = v.to_string();
                args.extend([prefix.as_str(), "via", &via]);
            }
        }
        run("ip route", Command::new("ip").args(&args))?;
    }
    Ok(())
}

fn wait_for_file(path: &Path, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(path).is_ok_and(|p| !p.trim().is_empty()) {
        if Instant::now() > deadline {
            bail!("{what} did not start ({} not written)", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Fails, saying what to install, if the chosen router is not installed.
pub(crate) fn check_installed(router: RouterImpl) -> anyhow::Result<()> {
    let (present, package) = match router {
        RouterImpl::Strata => return Ok(()),
        RouterImpl::Bird => (
            Command::new("bird").arg("--version").output().is_ok(),
            "bird2",
        ),
        RouterImpl::Frr => (Path::new(FRR).join("bgpd").exists(), "frr"),
    };
    if !present {
        bail!("--router {router:?} needs the {package} package (apt-get install {package})");
    }
    Ok(())
}

/// Starts BIRD in `ns` with its files in `dir`. It daemonizes; `lab down` ends it with
/// the namespace's other processes.
pub(crate) fn start_bird(
    ns: &str,
    node: &NodeSpec,
    bgp: &BgpConfig,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("bird.conf");
    std::fs::write(&conf, bird_conf(node, bgp))?;
    let pid = dir.join("bird.pid");
    run(
        "bird",
        in_ns(ns, "bird")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(&pid)
            .stdout(Stdio::null()),
    )?;
    wait_for_file(&pid, "bird")
}

/// The directory FRR's daemons are installed in.
pub(crate) const FRR: &str = "/usr/lib/frr";

/// Starts FRR's zebra, bfdd and bgpd in `ns` with their files and sockets in `dir`.
pub(crate) fn start_frr(
    ns: &str,
    node: &NodeSpec,
    bgp: &BgpConfig,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("frr.conf");
    std::fs::write(&conf, frr_conf(node, bgp))?;
    // The daemons drop privileges to the frr user, which must own their directory.
    run(
        "chown",
        Command::new("chown").arg("-R").arg("frr:frr").arg(dir),
    )?;
    let d = dir.to_str().context("a directory name that is not UTF-8")?;
    let address = bgp.router_id.to_string();
    for daemon in ["zebra", "bfdd", "bgpd"] {
        let pid = dir.join(format!("{daemon}.pid"));
        let mut c = in_ns(ns, &format!("{FRR}/{daemon}"));
        c.args(["-d", "-f", &format!("{d}/frr.conf"), "-i"])
            .arg(&pid)
            .args(["-z", &format!("{d}/zserv.api"), "--vty_socket", d])
            .args(["-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-P", "0"])
            .arg("--log")
            .arg(format!("file:{d}/{daemon}.log"));
        match daemon {
            "bfdd" => c.args(["--bfdctl", &format!("{d}/bfdd.sock")]),
            "bgpd" => c.args(["-l", &address, "-p", "179"]),
            _ => &mut c,
        };
        run(daemon, c.stdout(Stdio::null()))?;
        wait_for_file(&pid, daemon)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bgpvm() -> (NodeSpec, BgpConfig) {
        let t = strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap();
        let node = t.nodes[t.node("BGPVM").unwrap()].clone();
        let bgp = node.bgp.clone().unwrap();
        (node, bgp)
    }

    #[test]
    fn only_a_bgp_router_is_replaced() {
        let t = strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap();
        let replaced: Vec<&str> = t
            .nodes
            .iter()
            .filter(|n| replaceable(n))
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(replaced, ["BGPVM"]);
    }

    #[test]
    fn bird_gets_the_neighbors_timers_and_multipath() {
        let (node, bgp) = bgpvm();
        let c = bird_conf(&node, &bgp);
        for line in [
            "router id 192.168.100.1;",
            "merge paths on;",
            "export where source = RTS_BGP;",
            "min rx interval 100 ms;",
            "multiplier 3;",
            "neighbor 192.168.100.20 as 64501;",
            "neighbor 192.168.100.21 as 64501;",
            "local as 64500;",
            "hold time 30;",
            "passive on;",
            "bfd on;",
        ] {
            assert!(c.contains(line), "{line:?} missing from\n{c}");
        }
    }

    #[test]
    fn frr_gets_the_neighbors_timers_and_multipath() {
        let (node, bgp) = bgpvm();
        let c = frr_conf(&node, &bgp);
        for line in [
            "router bgp 64500\n",
            "bgp router-id 192.168.100.1\n",
            " peer 192.168.100.20 local-address 192.168.100.1 interface eth0\n",
            "  receive-interval 100\n",
            "  detect-multiplier 3\n",
            " neighbor 192.168.100.21 remote-as 64501\n",
            " neighbor 192.168.100.21 timers 10 30\n",
            " neighbor 192.168.100.20 passive\n",
            " neighbor 192.168.100.20 bfd\n",
            "  maximum-paths 16\n",
        ] {
            assert!(c.contains(line), "{line:?} missing from\n{c}");
        }
    }

    /// BIRD itself reads what we write (`bird -p` parses and exits).
    #[test]
    fn bird_parses_its_configuration() {
        if Command::new("bird").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("STRATA_REQUIRE_BIRD").is_none(),
                "BIRD is required but not installed"
            );
            return;
        }
        let (node, bgp) = bgpvm();
        let dir = std::env::temp_dir().join(format!("strata-bird-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, bird_conf(&node, &bgp)).unwrap();
        let out = Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
