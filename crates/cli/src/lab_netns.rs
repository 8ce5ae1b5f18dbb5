//! `strata lab up --netns`: a lab file built as Linux network namespaces, one per node
//! (`strata-<node>`), its networks bridges in `strata-fabric`. VMs are the kernel's
//! stack (their pages served by python's http.server, names from
//! `/etc/netns/<namespace>/hosts`); NCVM runs `strata controller`, which takes the lab's
//! resources through its API; every other node (routers, Muxes, hosts) runs as a `strata
//! lab node` process, configured as the lab configures it and by the controller.
//! `strata lab down` removes it all. Root only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_lab::topology::{Kind, Topology};
use strata_node::LinkKind;

mod daemons;
mod roles;
pub(crate) mod trace;
pub(crate) use daemons::RouterImpl;

const FABRIC: &str = "strata-fabric";

fn ns(node: &str) -> String {
    format!("strata-{node}")
}

/// Where a lab's state (pids, logs, the controller's data) is kept.
fn state_dir(lab: &str) -> PathBuf {
    PathBuf::from("/run/strata").join(lab)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Turns off transmit checksum offload (and so segmentation offload) on every interface
/// of namespace `name` but its loopback.
fn checksums_in_software(name: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["-n", name, "-o", "link", "show"])
        .output()
        .context("running ip")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "2: eth0@if7: <BROADCAST,...> ..."
        let Some(dev) = line.split(": ").nth(1).and_then(|d| d.split('@').next()) else {
            continue;
        };
        if dev == "lo" {
            continue;
        }
        let out = Command::new("ip")
            .args(["netns", "exec", name, "ethtool", "-K", dev, "tx", "off"])
            .output()
            .context("running ethtool (needed with STRATA_LINK=xdp)")?;
        if !out.status.success() {
            bail!(
                "ethtool -K {dev} tx off in {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

fn mac(n: usize, nic: usize) -> String {
    strata_lab::mac_of(n, nic)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How a node runs in namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The kernel's stack (a VM).
    Kernel,
    /// `strata controller` on the kernel's stack.
    Controller,
    /// A Strata node process.
    Strata,
    /// A router run by BIRD or FRR on the kernel's forwarding plane.
    Daemon,
}

fn role(t: &Topology, n: usize, router: RouterImpl) -> Role {
    let s = &t.nodes[n];
    if router != RouterImpl::Strata && daemons::replaceable(s) {
        Role::Daemon
    } else if s.controller.is_some() {
        Role::Controller
    } else if s.kind == Kind::Vm
        && s.mux.is_none()
        && s.vswitch.is_none()
        && s.bgp.is_none()
        && s.nat.is_none()
        && !s
            .services
            .iter()
            .any(|x| matches!(x, strata_node::ServiceConfig::Dns { .. }))
    {
        Role::Kernel
    } else {
        Role::Strata
    }
}

/// The interface of each of node `n`'s links, in the node's link order: `eth<i>` for
/// NIC `i`, `uplink` for a host's vSwitch uplink, `vm<k>` for its k-th VM port.
pub(crate) fn interfaces(t: &Topology, n: usize, links: &[LinkKind]) -> Vec<String> {
    let vms: Vec<&str> = t
        .nodes
        .iter()
        .filter(|v| v.nics.iter().any(|c| c.vswitch_host == Some(n)))
        .map(|v| v.name.as_str())
        .collect();
    links
        .iter()
        .map(|l| match l {
            LinkKind::Nic(i) => format!("eth{i}"),
            LinkKind::Uplink => "uplink".to_string(),
            LinkKind::VmPort(vm) => format!(
                "vm{}",
                vms.iter().position(|v| v == vm).unwrap_or(usize::MAX)
            ),
        })
        .collect()
}

/// `strata lab node`: one node of a lab file as a process on its namespace's
/// interfaces, until SIGINT or SIGTERM.
pub(crate) fn node(
    file: Option<&PathBuf>,
    name: &str,
    netns: &str,
    secret: &Path,
) -> anyhow::Result<bool> {
    let topology = crate::load(file)?;
    let n = topology
        .node(name)
        .with_context(|| format!("no node {name:?} in this lab"))?;
    let secret =
        std::fs::read_to_string(secret).with_context(|| format!("reading {}", secret.display()))?;
    let config = strata_lab::node_config(&topology, n, secret.trim());
    let links = strata_node::Node::new(config.clone(), Duration::ZERO)?
        .links()
        .to_vec();
    let names = interfaces(&topology, n, &links);
    let stop = strata_runtime::signals::stop_on_term();
    strata_fabric::linux::netns::enter(netns)?;
    let mut opened = Vec::new();
    for i in &names {
        opened.push(strata_runtime::open_link(i).with_context(|| format!("interface {i}"))?);
    }
    let mut driver = strata_runtime::Driver::new(config, opened)?;
    tracing::info!(node = name, netns, interfaces = ?names, "node up");
    // Its BGP sessions, for `lab up` to wait on.
    let status = state_dir(&topology.name).join(format!("{name}.bgp"));
    driver.run_reporting(stop, Some(&status))?;
    tracing::info!(node = name, "stopped");
    Ok(true)
}

/// Builds the lab as namespaces and starts its processes; returns once the controller
/// reports every load balancer applied.
pub(crate) fn up(file: Option<&PathBuf>, router: RouterImpl) -> anyhow::Result<bool> {
    let topology = crate::load(file)?;
    if !root() {
        bail!("lab up --netns needs root (it makes network namespaces)");
    }
    daemons::check_installed(router)?;
    let state = state_dir(&topology.name);
    if state.exists() {
        bail!(
            "lab {} is up already ({}): strata lab down {} first",
            topology.name,
            state.display(),
            file.map(|f| f.display().to_string()).unwrap_or_default()
        );
    }
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let result = build(&topology, file, &state, router);
    if let Err(e) = &result {
        let kept = std::env::temp_dir().join(format!("strata-{}-failed", topology.name));
        let _ = std::fs::remove_dir_all(&kept);
        let _ = std::fs::create_dir_all(&kept);
        for entry in std::fs::read_dir(&state).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "log" || x == "bgp") {
                let _ = std::fs::copy(&path, kept.join(entry.file_name()));
            }
        }
        eprintln!(
            "lab up failed: {e:#}; taking down what was built (its logs are kept in {})",
            kept.display()
        );
        let _ = down_state(&state);
    }
    result
}

fn build(
    t: &Topology,
    file: Option<&PathBuf>,
    state: &Path,
    router: RouterImpl,
) -> anyhow::Result<bool> {
    let role = |t: &Topology, n: usize| role(t, n, router);
    let mut namespaces = vec![FABRIC.to_string()];
    namespaces.extend(t.nodes.iter().map(|n| ns(&n.name)));
    std::fs::write(state.join("namespaces"), namespaces.join("\n"))?;
    for name in &namespaces {
        ip(&["netns", "add", name])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
    }
    println!("lab {}: {} namespaces", t.name, namespaces.len());
    for (i, _) in t.networks.iter().enumerate() {
        let br = format!("br{i}");
        ip(&["-n", FABRIC, "link", "add", &br, "type", "bridge"])?;
        ip(&["-n", FABRIC, "link", "set", &br, "up"])?;
    }
    // The wires: a NIC to its network's bridge, a VM's NIC to its host's port, a host's
    // uplink to its uplink network. The lab's MACs go on the nodes' ends.
    for (n, node) in t.nodes.iter().enumerate() {
        let here = ns(&node.name);
        let uplink = node.vswitch.as_ref().map(|s| s.uplink_network);
        for (i, nic) in node.nics.iter().enumerate() {
            let dev = format!("eth{i}");
            if let Some(h) = nic.vswitch_host {
                let k = t
                    .nodes
                    .iter()
                    .filter(|v| v.nics.iter().any(|c| c.vswitch_host == Some(h)))
                    .position(|v| v.name == node.name)
                    .unwrap_or(0);
                let port = format!("vm{k}");
                ip(&[
                    "-n",
                    &here,
                    "link",
                    "add",
                    &dev,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    &ns(&t.nodes[h].name),
                ])?;
                ip(&["-n", &ns(&t.nodes[h].name), "link", "set", &port, "up"])?;
            } else if uplink == Some(nic.network) {
                // The host's vNIC on its own switch: no interface of its own.
                continue;
            } else {
                let peer = format!("p{n}x{i}");
                ip(&[
                    "-n", &here, "link", "add", &dev, "type", "veth", "peer", "name", &peer,
                    "netns", FABRIC,
                ])?;
                ip(&[
                    "-n",
                    FABRIC,
                    "link",
                    "set",
                    &peer,
                    "master",
                    &format!("br{}", nic.network),
                    "up",
                ])?;
            }
            ip(&["-n", &here, "link", "set", &dev, "address", &mac(n, i)])?;
            ip(&["-n", &here, "link", "set", &dev, "up"])?;
        }
        if let Some(net) = uplink {
            let peer = format!("p{n}up");
            ip(&[
                "-n", &here, "link", "add", "uplink", "type", "veth", "peer", "name", &peer,
                "netns", FABRIC,
            ])?;
            ip(&[
                "-n",
                FABRIC,
                "link",
                "set",
                &peer,
                "master",
                &format!("br{net}"),
                "up",
            ])?;
            ip(&["-n", &here, "link", "set", "uplink", "up"])?;
        }
    }
    // With the role processes on AF_XDP (STRATA_LINK=xdp), the kernels on the other side
    // of their links (the VMs', BIRD's or FRR's) must finish their own checksums: XDP
    // carries no word of one left to the device. So no interface of a node's namespace
    // leaves its checksum to the device then.
    if std::env::var("STRATA_LINK").as_deref() == Ok("xdp") {
        for node in &t.nodes {
            checksums_in_software(&ns(&node.name))?;
        }
    }
    // Names, for the kernel's resolver in every namespace: the lab's DNS records, and
    // every node's addresses by its name (so that a reverse lookup, as python's web
    // server makes when it starts, is answered here and does not wait on a DNS server
    // out of reach).
    let mut hosts = String::new();
    for node in &t.nodes {
        for nic in &node.nics {
            hosts.push_str(&format!("{} {}\n", nic.addr.addr(), node.name));
        }
    }
    for node in &t.nodes {
        for s in &node.services {
            if let strata_node::ServiceConfig::Dns { records, .. } = s {
                for (name, addr) in records {
                    hosts.push_str(&format!("{addr} {name}\n"));
                }
            }
        }
    }
    let mut pids = Vec::new();
    let log = |name: &str| -> anyhow::Result<std::fs::File> {
        Ok(std::fs::File::create(state.join(format!("{name}.log")))?)
    };
    let mut web = Vec::new();
    // The kernel's nodes: addresses, routes, names, web servers.
    for (n, node) in t.nodes.iter().enumerate() {
        if role(t, n) == Role::Strata {
            continue;
        }
        let here = ns(&node.name);
        for (i, nic) in node.nics.iter().enumerate() {
            ip(&[
                "-n",
                &here,
                "addr",
                "add",
                &nic.addr.to_string(),
                "dev",
                &format!("eth{i}"),
            ])?;
        }
        if role(t, n) == Role::Daemon {
            daemons::kernel_router(&here, node)?;
        }
        for r in node.routes.iter().filter(|_| role(t, n) != Role::Daemon) {
            if let Some(via) = r.via {
                ip(&[
                    "-n",
                    &here,
                    "route",
                    "add",
                    &r.prefix.to_string(),
                    "via",
                    &via.to_string(),
                ])?;
            }
        }
        let etc = PathBuf::from("/etc/netns").join(&here);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(etc.join("hosts"), format!("127.0.0.1 localhost\n{hosts}"))?;
        for s in &node.services {
            if let strata_node::ServiceConfig::Http { port, pages, .. } = s {
                // A directory per server: a node's servers have pages of their own.
                let www = state.join(format!("www-{}-{port}", node.name));
                std::fs::create_dir_all(&www)?;
                for p in pages {
                    let path = p.path.trim_start_matches('/');
                    let file = if path.is_empty() { "index.html" } else { path };
                    std::fs::write(www.join(file), &p.body)?;
                }
                let child = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &here,
                        "python3",
                        "-m",
                        "http.server",
                        &port.to_string(),
                        "--bind",
                        &node.nics[0].addr.addr().to_string(),
                    ])
                    .arg("--directory")
                    .arg(&www)
                    .stdout(Stdio::null())
                    .stderr(log(&format!("http-{}", node.name))?)
                    .spawn()
                    .context("starting python3's http.server")?;
                pids.push(child.id());
                web.push((here.clone(), *port));
            }
        }
    }
    // The web servers listen before the lab is called up (python takes a moment).
    let deadline = Instant::now() + Duration::from_secs(15);
    for (here, port) in &web {
        while !listening(here, *port) {
            if Instant::now() > deadline {
                bail!("the web server in {here} is not listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The routing daemons, in place of Strata's router.
    for (n, node) in t.nodes.iter().enumerate() {
        let Some(bgp) = node.bgp.as_ref().filter(|_| role(t, n) == Role::Daemon) else {
            continue;
        };
        let dir = state.join(&node.name);
        match router {
            RouterImpl::Bird => {
                daemons::start_bird(&ns(&node.name), node, bgp, &dir)?;
                println!(
                    "{}: BIRD (birdc -s {} show route)",
                    node.name,
                    dir.join("bird.ctl").display()
                );
            }
            RouterImpl::Frr => {
                daemons::start_frr(&ns(&node.name), node, bgp, &dir)?;
                println!(
                    "{}: FRR (ip netns exec {} vtysh --vty_socket {} -c 'show ip route')",
                    node.name,
                    ns(&node.name),
                    dir.display()
                );
            }
            RouterImpl::Strata => {}
        }
    }
    let exe = std::env::current_exe()?;
    let save = |pids: &[u32]| {
        std::fs::write(
            state.join("pids"),
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    // The controller.
    let (c, nc) = t
        .nodes
        .iter()
        .enumerate()
        .find(|(n, _)| role(t, *n) == Role::Controller)
        .context("the lab has no [node.controller]")?;
    let nc_ns = ns(&nc.name);
    let address = nc.nics[0].addr.addr();
    let southbound = nc.controller.as_ref().map_or(8081, |s| s.southbound_port);
    let data = state.join("controller");
    let child = Command::new("ip")
        .args(["netns", "exec", &nc_ns])
        .arg(&exe)
        .arg("controller")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen",
            &format!("{address}:8080"),
            "--southbound",
            &format!("{address}:{southbound}"),
        ])
        .stdout(Stdio::null())
        .stderr(log("controller")?)
        .spawn()?;
    pids.push(child.id());
    save(&pids)?;
    let ctl = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(Command::new("ip")
            .args(["netns", "exec", &nc_ns])
            .arg(&exe)
            .arg("ctl")
            .args(args)
            .env("STRATA_CONTROLLER", format!("http://{address}:8080"))
            .env("STRATA_TOKEN_FILE", data.join("token"))
            .env_remove("STRATA_TOKEN")
            .output()?)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(data.join("token").exists() && ctl(&["get", "servers"])?.status.success()) {
        if Instant::now() > deadline {
            bail!("the controller on {} did not come up", nc.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c;
    let docs: Vec<String> = strata_lab::resources::resources(t)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|(collection, id, mut body)| {
            body["resourceRef"] = format!("/{collection}/{id}").into();
            serde_yaml_ng::to_string(&body)
        })
        .collect::<Result<_, _>>()?;
    let resources = state.join("resources.yaml");
    std::fs::write(&resources, docs.join("---\n"))?;
    let out = ctl(&["apply", "-f", resources.to_str().unwrap_or_default()])?;
    if !out.status.success() {
        bail!(
            "putting the lab's resources: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "controller: http://{address}:8080/networking/v1/ in {nc_ns}, {} resources",
        docs.len()
    );
    // Every other node, a Strata process: a role's (`strata router`, `mux`,
    // `host-agent`) from a file written here, or `strata lab node`.
    let secret = std::fs::read_to_string(data.join("token"))?;
    let southbound_at = std::net::SocketAddrV4::new(address, southbound);
    for (n, node) in t.nodes.iter().enumerate() {
        if role(t, n) != Role::Strata {
            continue;
        }
        let status = state.join(format!("{}.bgp", node.name));
        let mut cmd = Command::new(&exe);
        match roles::role_file(t, n, southbound_at, secret.trim(), &status) {
            Some(file) => {
                let path = state.join(format!("{}.toml", node.name));
                write_private(&path, &file.toml)?;
                cmd.args([file.command, "--config"]).arg(path);
            }
            None => {
                cmd.args(["lab", "node"]);
                if let Some(f) = file {
                    cmd.arg(f);
                }
                cmd.args(["--node", &node.name, "--netns", &ns(&node.name)])
                    .arg("--secret-file")
                    .arg(data.join("token"));
            }
        }
        let child = cmd.stdout(Stdio::null()).stderr(log(&node.name)?).spawn()?;
        pids.push(child.id());
    }
    save(&pids)?;
    // Up once every BGP session is established and its BFD session up (as the emulated
    // lab's boot waits): until BFD is up, BGP does not act on it (RFC 5882 §3.2), and a
    // Mux lost then would stay a next hop for the hold time ...
    let speakers: Vec<&str> = t
        .nodes
        .iter()
        .enumerate()
        .filter(|(n, node)| {
            role(t, *n) == Role::Strata
                && node.bgp.as_ref().is_some_and(|b| !b.neighbors.is_empty())
        })
        .map(|(_, node)| node.name.as_str())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let down: Vec<&str> = speakers
            .iter()
            .copied()
            .filter(|name| {
                std::fs::read_to_string(state.join(format!("{name}.bgp"))).map_or(true, |s| {
                    s.is_empty()
                        || s.lines().any(|l| {
                            !l.ends_with(" Established")
                                || (l.contains(" bfd=") && !l.contains(" bfd=Up "))
                        })
                })
            })
            .collect();
        if down.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "BGP (or BFD) sessions of {} not up after 60 s",
                down.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // ... and every load balancer is applied by the nodes it reaches.
    if let Some(slb) = &t.slb {
        for (id, _) in &slb.load_balancers {
            let out = ctl(&["wait", "loadBalancers", id, "--timeout", "60"])?;
            if !out.status.success() {
                bail!(
                    "loadBalancers/{id}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    println!(
        "lab {} is up: {} processes; try: ip netns exec {} curl http://portal.azurestack.local/",
        t.name,
        pids.len(),
        ns("ClientVM")
    );
    println!(
        "logs and state in {}; strata lab down removes it all",
        state.display()
    );
    Ok(true)
}

/// Whether this process runs as root (its effective user, from /proc).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// Whether a TCP socket listens on `port` in namespace `ns`.
fn listening(ns: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Hltn"])
        .arg(format!("sport = :{port}"))
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// Writes a file only root can read (a role file holds its node's token).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Stops the lab's processes and removes its namespaces.
pub(crate) fn down(file: Option<&PathBuf>) -> anyhow::Result<bool> {
    let topology = crate::load(file)?;
    let state = state_dir(&topology.name);
    if !state.exists() {
        bail!("lab {} is not up (no {})", topology.name, state.display());
    }
    down_state(&state)?;
    println!("lab {} is down", topology.name);
    Ok(true)
}

fn down_state(state: &Path) -> anyhow::Result<()> {
    if let Ok(text) = std::fs::read_to_string(state.join("pids")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .output();
        }
        std::thread::sleep(Duration::from_millis(300));
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
    }
    if let Ok(text) = std::fs::read_to_string(state.join("namespaces")) {
        for name in text.lines().filter(|l| l.starts_with("strata-")) {
            // Processes still in it (a web server started by `ip netns exec`) go too.
            let _ = Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).lines() {
                        let _ = Command::new("kill").args(["-KILL", pid.trim()]).output();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
        }
    }
    std::fs::remove_dir_all(state).with_context(|| format!("removing {}", state.display()))?;
    Ok(())
}
