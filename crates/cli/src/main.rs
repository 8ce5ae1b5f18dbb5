//! `strata`: the command-line entry point.

mod bfdd;
mod bgpd;
mod controller;
mod ctl;
mod dashboard;
mod lab_netns;
mod lab_up;
mod progress;
mod sigpipe;
mod tcp_md5;
mod udp_ttl;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_lab::{Clock, Lab, report};

/// The version, and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("STRATA_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version = VERSION,
    about = "Strata: a software-defined network stack, and a lab that runs the Azure Stack POC network in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The emulated lab: a whole topology in one process, no root needed.
    #[command(subcommand)]
    Lab(LabCommand),
    /// The BGP speaker on the machine's own TCP, with a config file.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// The network controller: the Network Controller's REST API (/networking/v1/...)
    /// with its store in a data directory. Every request needs the bearer token the
    /// controller writes to DATA_DIR/token at first start.
    Controller {
        /// Where the store and the token live (created if missing).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The address to serve on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The address agents connect to (the southbound protocol).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
        southbound: std::net::SocketAddr,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `strata completions bash > /etc/bash_completion.d/strata`.
    Completions {
        #[arg(value_enum, ignore_case = true)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `strata man | man -l -`; with --dir, write one
    /// page per command there (strata.1, strata-lab.1, strata-lab-run.1, ...).
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Strata's router (forwarding, static routes, NAT) as a process on the interfaces
    /// of a network namespace, from a configuration file: netns, name,
    /// [[interface]] name/address/mtu, [[route]] prefix/via or type = reject|blackhole,
    /// [nat] external, [[nat.forward]] protocol/port/to. SIGINT or SIGTERM stops it.
    Router {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// An SLB Mux as a process on the interfaces of a network namespace: the file says
    /// where it is (netns, name, [[interface]], provider, [[route]], asn) and who
    /// configures it (controller, token or token_file); its BGP peers and its VIPs
    /// come from the network controller. SIGINT or SIGTERM stops it.
    Mux {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// A Hyper-V host as a process on the interfaces of a network namespace: its
    /// vSwitch (VFP) between an uplink and one interface per VM, its management vNIC,
    /// its provider address, and the SLB host agent, configured by the network
    /// controller (netns, name, controller, token, switch, uplink, [management],
    /// [provider], [[vm]] name/interface/mac/vlan, [[route]]). SIGINT or SIGTERM stops it.
    HostAgent {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The controller's client: get, apply, delete, wait.
    Ctl {
        #[command(flatten)]
        connection: ctl::Connection,
        #[command(subcommand)]
        command: ctl::CtlCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BgpCommand {
    /// Run the speaker: peer with the configured neighbors, announce the configured
    /// prefixes, pass routes between neighbors, keep a status file of neighbors and
    /// routes. SIGHUP reads the file's announcements again; SIGTERM and SIGINT close
    /// the sessions with a Cease and exit.
    Run {
        /// The configuration file (TOML): asn, router_id, local, status_file,
        /// control_socket, metrics_listen, next_hop6, graceful_restart, send_queue_limit,
        /// [[neighbor]] address/asn/passive/hold_time/port/password/next_hop/ipv6,
        /// [[announce]] prefix/next_hop.
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Show neighbors, their state, and routes sent and received: asked of the running
    /// speaker over its control_socket, or read from its status_file.
    #[command(group(clap::ArgGroup::new("speaker").required(true).args(["config", "socket"])))]
    Show {
        /// The speaker's configuration file: its control_socket (or status_file) is asked.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The running speaker's control socket, without reading its configuration.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Route counts instead of the routes.
        #[arg(long)]
        summary: bool,
        /// Per neighbour: state, uptime, messages and prefixes in and out, capabilities
        /// and last error; per prefix, every path (* best, = multipath) with its AS path,
        /// next hop and communities. `json` asks the control socket.
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Boot a lab, run its scenarios, and print each result with the hop-by-hop path its
    /// packets took. Exits 0 only if every scenario passed.
    Run {
        /// The lab file (TOML). Without it, the built-in Azure Stack POC lab
        /// (labs/azure-stack-poc.toml).
        file: Option<PathBuf>,
        /// Write one pcap file per network into this directory.
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
        /// Run only the named scenario (repeatable).
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Run on the wall clock instead of virtual time.
        #[arg(long)]
        realtime: bool,
        /// `json`: one document with the boot and every scenario's result and hops
        /// (docs/cli-json.md).
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
    /// Run a lab's scenarios, then list each VM port's VFP layers and rules and its unified
    /// flow table (like vfpctrl /list-rule and /list-unified-flow).
    Vfp {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// Only this VM's port.
        #[arg(long)]
        port: Option<String>,
        /// Only the layers, groups and rules.
        #[arg(long, conflicts_with = "list_unified_flow")]
        list_rule: bool,
        /// Only the cached flows.
        #[arg(long)]
        list_unified_flow: bool,
        /// Run only the named scenarios first (repeatable); default: all.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Only cached flows of this protocol.
        #[arg(long, value_enum, ignore_case = true)]
        proto: Option<Proto>,
        /// Only cached flows from or to this address.
        #[arg(long, value_name = "IP")]
        addr: Option<std::net::IpAddr>,
        /// Only cached flows in this direction (in: toward the VM).
        #[arg(long, value_enum, ignore_case = true)]
        direction: Option<FlowDirection>,
        /// At most this many cached flows per port.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
    /// Run a lab's scenarios, then show each Mux's VIP map, DIP health and counters.
    Mux {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// Run only the named scenarios first (repeatable); default: all.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
    /// Run a lab's scenarios, then show each BGP speaker's neighbors and routes.
    Bgp {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// Run only the named scenarios first (repeatable); default: all.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
    /// Run a lab on the wall clock until interrupted, with its network controller's API
    /// on loopback: `strata ctl` changes the running lab (the address and the token's
    /// file are printed once the lab is up).
    Up {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// Build it as Linux network namespaces instead (root): one per node, named
        /// strata-<node>, VMs on the kernel's stack, every Strata role a process; returns
        /// once it is up, leaving the processes running (`strata lab down` ends it).
        #[arg(long)]
        netns: bool,
        /// With --netns: who runs the lab's BGP routers (BGPVM): Strata, or BIRD or FRR
        /// in the router's namespace, configured from the lab file.
        #[arg(
            long,
            value_enum,
            ignore_case = true,
            default_value = "strata",
            requires = "netns"
        )]
        router: lab_netns::RouterImpl,
        /// Where the controller's API listens (loopback only).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the API token is kept (default: a directory under the system's
        /// temporary directory named after the lab).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Take down a lab built with `lab up --netns`: its processes and namespaces.
    Down {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
    },
    /// One node of a lab file as a process on the interfaces of a namespace (what `lab
    /// up --netns` runs for each router, Mux and host).
    #[command(hide = true)]
    Node {
        file: Option<PathBuf>,
        #[arg(long)]
        node: String,
        #[arg(long)]
        netns: String,
        /// The controller's API token (the secret node tokens derive from).
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
    },
    /// Draw the lab: its networks, nodes and NICs, each host's vSwitch and VMs, the BGP
    /// sessions, VXLAN tunnels and controller agents (with their state once booted), and
    /// the VIPs with the Muxes that announce them.
    Diagram {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// Write here instead of to standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// svg, dot (graphviz) or mermaid; default: from the output's extension, else svg.
        #[arg(short, long, value_enum, ignore_case = true)]
        format: Option<DiagramFormat>,
        /// Run the named scenarios first (repeatable); default: none, the lab as booted.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
    },
    /// Run one flow through the lab (after its boot, and any scenarios named) and print
    /// each hop of the request and the reply: node, interface, the frame, and what the
    /// node did (the route, NAT, the VIP entry and DIP, VXLAN, the VFP rules). Exits
    /// non-zero if the flow failed.
    Trace {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        /// The node the flow starts from.
        #[arg(long, value_name = "NODE")]
        from: String,
        /// A URL (http://portal.azurestack.local/), IP:PORT, or an IPv4 address.
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// tcp, udp or icmp; default: icmp for a bare address, else tcp.
        #[arg(long, value_enum, ignore_case = true)]
        proto: Option<Proto>,
        /// Run the named scenarios first (repeatable).
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Also draw the path as numbered arrows over the lab's diagram, to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Trace through the lab `lab up --netns` built (root): the kernel's curl to a
        /// URL, followed in captures of every wire.
        #[arg(long, conflicts_with_all = ["svg", "scenarios", "proto"])]
        netns: bool,
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
    /// Check a lab file and print its topology: networks and NICs, nodes with their roles
    /// and routes, the load balancer, BGP sessions and scenarios.
    Show {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
        #[arg(
            short = 'o',
            long = "output",
            value_enum,
            ignore_case = true,
            default_value = "table"
        )]
        output: OutputFormat,
    },
}

/// How a `show`-like command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// Readable text.
    Table,
    /// JSON, with stable field names (see docs/cli-json.md).
    Json,
}

/// Prints what a show-like command found: the table, or JSON.
/// `strata lab trace --netns`.
fn trace_netns(
    file: Option<&PathBuf>,
    from: &str,
    to: &str,
    output: OutputFormat,
) -> anyhow::Result<bool> {
    let topology = load(file)?;
    if !to.starts_with("http://") {
        anyhow::bail!("--netns traces an HTTP request: give --to http://HOST/");
    }
    let result = lab_netns::trace::trace(&topology, from, to)?;
    show(
        output,
        || lab_netns::trace::render(&result),
        || serde_json::to_value(&result).unwrap_or_default(),
    );
    Ok(!result.request.is_empty() && !result.reply.is_empty())
}

fn show(
    output: OutputFormat,
    table: impl FnOnce() -> String,
    json: impl FnOnce() -> serde_json::Value,
) {
    match output {
        OutputFormat::Table => print!("{}", table()),
        OutputFormat::Json => println!("{:#}", json()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FlowDirection {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[allow(clippy::too_many_arguments)]
fn trace(
    file: Option<&PathBuf>,
    from: &str,
    to: &str,
    proto: Option<Proto>,
    only: &[String],
    svg: Option<&PathBuf>,
    output: OutputFormat,
) -> anyhow::Result<bool> {
    use strata_lab::topology::{FlowProto, Scenario};
    let topology = load(file)?;
    let proto = proto.map(|p| match p {
        Proto::Tcp => FlowProto::Tcp,
        Proto::Udp => FlowProto::Udp,
        Proto::Icmp => FlowProto::Icmp,
    });
    let flow = Scenario::flow(&topology, from, to, proto).map_err(anyhow::Error::msg)?;
    let mut lab = booted(topology, only)?;
    let result = lab.trace(flow);
    show(
        output,
        || report::trace(&result),
        || report::trace_json(&result),
    );
    if let Some(path) = svg {
        let graph = strata_lab::diagram::Graph::of(&lab);
        let overlay = strata_lab::diagram::svg::Overlay {
            request: &result.request,
            reply: &result.reply,
        };
        std::fs::write(
            path,
            strata_lab::diagram::svg::render(&graph, Some(overlay)),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(result.passed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DiagramFormat {
    Svg,
    Dot,
    Mermaid,
}

fn diagram(
    file: Option<&PathBuf>,
    output: Option<&PathBuf>,
    format: Option<DiagramFormat>,
    only: &[String],
) -> anyhow::Result<bool> {
    let format = format.unwrap_or_else(|| {
        match output
            .and_then(|o| o.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("dot" | "gv") => DiagramFormat::Dot,
            Some("mmd" | "mermaid") => DiagramFormat::Mermaid,
            _ => DiagramFormat::Svg,
        }
    });
    let topology = load(file)?;
    let lab = booted(topology, only)?;
    let graph = strata_lab::diagram::Graph::of(&lab);
    let text = match format {
        DiagramFormat::Svg => strata_lab::diagram::svg::render(&graph, None),
        DiagramFormat::Dot => graph.dot(),
        DiagramFormat::Mermaid => graph.mermaid(),
    };
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(true)
}

/// Boots a lab, with a progress bar on a terminal: BGP sessions up (with BFD), then
/// the agents configured.
fn boot(lab: &mut Lab) -> (usize, usize) {
    let mut bar = progress::Progress::new("boot");
    let result = lab.boot_with(strata_lab::BOOT_LIMIT, |now, up, all, converged| {
        bar.show(
            up + usize::from(converged),
            all + 1,
            &format!(
                "{up}/{all} BGP sessions, agents {}, t={:.1}s",
                if converged {
                    "configured"
                } else {
                    "converging"
                },
                now.as_secs_f64()
            ),
        );
    });
    bar.finish();
    result
}

/// The lab booted in virtual time, after the named scenarios (none when none is named).
fn booted(topology: strata_lab::topology::Topology, only: &[String]) -> anyhow::Result<Lab> {
    let selected = if only.is_empty() {
        Vec::new()
    } else {
        select(&topology, only)?
    };
    let mut lab = Lab::new(topology, Clock::Virtual)?;
    boot(&mut lab);
    for i in selected {
        lab.run_scenario(i);
    }
    Ok(lab)
}

fn load(file: Option<&PathBuf>) -> anyhow::Result<strata_lab::topology::Topology> {
    let (name, text) = match file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => (
            strata_lab::AZURE_STACK_POC_NAME.to_string(),
            strata_lab::AZURE_STACK_POC.to_string(),
        ),
    };
    Ok(strata_lab::file::parse(&name, &text)?)
}

/// Boots a lab and runs the named scenarios (all when none is named), quietly; says
/// on stderr which failed. The lab, and whether every scenario passed.
fn run_quietly(file: Option<&PathBuf>, only: &[String]) -> anyhow::Result<(Lab, bool)> {
    let topology = load(file)?;
    let selected = select(&topology, only)?;
    let mut lab = Lab::new(topology, Clock::Virtual)?;
    boot(&mut lab);
    let mut passed = true;
    for i in selected {
        let result = lab.run_scenario(i);
        if !result.passed {
            passed = false;
            eprintln!(
                "scenario {} failed: {}",
                result.name,
                result.failures.join("; ")
            );
        }
    }
    Ok((lab, passed))
}

/// The indices of the named scenarios (all when none is named), or an error naming one
/// that does not exist.
fn select(
    topology: &strata_lab::topology::Topology,
    only: &[String],
) -> anyhow::Result<Vec<usize>> {
    for name in only {
        if !topology.scenarios.iter().any(|s| &s.name == name) {
            let known: Vec<_> = topology.scenarios.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!(
                "no scenario {name:?} in this lab (scenarios: {})",
                known.join(", ")
            );
        }
    }
    Ok((0..topology.scenarios.len())
        .filter(|&i| only.is_empty() || only.contains(&topology.scenarios[i].name))
        .collect())
}

fn run(
    file: Option<PathBuf>,
    capture: Option<PathBuf>,
    only: Vec<String>,
    realtime: bool,
    output: OutputFormat,
) -> anyhow::Result<bool> {
    let json = output == OutputFormat::Json;
    // The table's lines; with -o json, nothing but the document goes to stdout.
    macro_rules! say {
        ($($t:tt)*) => { if !json { println!($($t)*) } };
    }
    let topology = load(file.as_ref())?;
    let selected = select(&topology, &only)?;
    if let Some(dir) = &capture {
        // Find out now, not after the run, that the captures cannot be written.
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                let probe = dir.join(".strata-write-test");
                std::fs::write(&probe, b"")?;
                std::fs::remove_file(probe)
            })
            .with_context(|| format!("--capture {}: cannot write there", dir.display()))?;
    }
    say!(
        "lab {}: {} networks, {} nodes, {} scenarios ({} time)",
        topology.name,
        topology.networks.len(),
        topology.nodes.len(),
        topology.scenarios.len(),
        if realtime { "wall-clock" } else { "virtual" }
    );
    let mut lab = Lab::new(
        topology,
        if realtime {
            Clock::Wall
        } else {
            Clock::Virtual
        },
    )?;
    let (up, all) = boot(&mut lab);
    let boot_time = lab.now().as_secs_f64();
    let converged = lab.converged();
    if all > 0 {
        say!(
            "boot: {up}/{all} BGP sessions established (and their BFD up) at t={:.3}s",
            lab.now().as_secs_f64()
        );
    }
    let agents = lab.nodes().iter().filter(|n| n.agent().is_some()).count();
    if agents > 0 {
        say!(
            "controller: {agents} agents {}",
            if lab.converged() {
                "configured from NCVM"
            } else {
                "not all configured yet"
            }
        );
    }
    let mut results = Vec::new();
    for i in selected {
        let result = lab.run_scenario(i);
        if !json {
            print!("{}", report::scenario(&result));
        }
        results.push(result);
    }
    say!("{}", report::summary(&results));
    let captures: Vec<PathBuf> = match capture {
        Some(dir) => lab
            .write_captures(&dir)
            .with_context(|| format!("writing captures to {}", dir.display()))?,
        None => Vec::new(),
    };
    for f in &captures {
        say!("capture: {}", f.display());
    }
    if json {
        let doc = serde_json::json!({
            "lab": lab.topology().name,
            "boot": {"sessions_up": up, "sessions": all, "time_s": boot_time, "converged": converged},
            "passed": results.iter().filter(|r| r.passed).count(),
            "scenarios": results.iter().map(report::scenario_json).collect::<Vec<_>>(),
            "captures": captures.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{doc:#}");
    }
    Ok(results.iter().all(|r| r.passed))
}

/// `strata router`: until SIGINT or SIGTERM.
fn router(config: &std::path::Path) -> anyhow::Result<bool> {
    let file = strata_runtime::router::load(config).map_err(anyhow::Error::msg)?;
    let stop = strata_runtime::signals::stop_on_term();
    let mut driver = strata_runtime::router::driver(&file).map_err(anyhow::Error::msg)?;
    tracing::info!(
        name = file.name,
        netns = file.netns.as_deref().unwrap_or("(this one)"),
        interfaces = file.interface.len(),
        "routing"
    );
    driver.run_reporting(stop, file.status.as_deref())?;
    let c = driver.counters();
    tracing::info!(
        received = c.received,
        sent = c.sent,
        forwarded = driver.node().router().counters().forwarded,
        "stopped"
    );
    Ok(true)
}

/// `strata host-agent`: until SIGINT or SIGTERM.
fn host_agent(config: &std::path::Path) -> anyhow::Result<bool> {
    let file = strata_runtime::host::load(config).map_err(anyhow::Error::msg)?;
    let stop = strata_runtime::signals::stop_on_term();
    let mut driver = strata_runtime::host::driver(&file).map_err(anyhow::Error::msg)?;
    tracing::info!(
        name = file.name,
        switch = file.switch,
        vms = file.vm.len(),
        controller = %file.controller,
        "host up; its VFP rules and probes come from the controller"
    );
    driver.run_reporting(stop, file.status.as_deref())?;
    let c = driver.counters();
    tracing::info!(received = c.received, sent = c.sent, "stopped");
    Ok(true)
}

/// `strata mux`: until SIGINT or SIGTERM.
fn mux(config: &std::path::Path) -> anyhow::Result<bool> {
    let file = strata_runtime::mux::load(config).map_err(anyhow::Error::msg)?;
    let stop = strata_runtime::signals::stop_on_term();
    let mut driver = strata_runtime::mux::driver(&file).map_err(anyhow::Error::msg)?;
    tracing::info!(
        name = file.name,
        controller = %file.controller,
        "Mux up; its configuration comes from the controller"
    );
    driver.run_reporting(stop, file.status.as_deref())?;
    let node = driver.node();
    tracing::info!(
        vips = node.mux().map_or(0, |m| m.vips().len()),
        encapsulated = node.mux().map_or(0, |m| m.counters().encapsulated),
        "stopped"
    );
    Ok(true)
}

/// The manual: the main page to stdout, or every command's page into `dir`.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<bool> {
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        None => {
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing the pages to {}", dir.display()))?;
            eprintln!("wrote the manual pages to {}", dir.display());
        }
    }
    Ok(true)
}

/// Logs to stderr, with timestamps and levels, filtered by `RUST_LOG` (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    sigpipe::restore_default();
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Lab(LabCommand::Run {
            file,
            capture,
            scenarios,
            realtime,
            output,
        }) => run(file, capture, scenarios, realtime, output),
        Command::Lab(LabCommand::Vfp {
            file,
            port,
            list_rule,
            list_unified_flow,
            scenarios,
            proto,
            addr,
            direction,
            limit,
            output,
        }) => run_quietly(file.as_ref(), &scenarios).and_then(|(lab, passed)| {
            let filter = report::FlowFilter {
                proto: proto.map(|p| match p {
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                    Proto::Icmp => 1,
                }),
                addr,
                direction: direction.map(|d| match d {
                    FlowDirection::In => strata_lab::vfp_direction(true),
                    FlowDirection::Out => strata_lab::vfp_direction(false),
                }),
                limit,
            };
            let text = match output {
                OutputFormat::Table => report::vfp(
                    &lab,
                    port.as_deref(),
                    !list_unified_flow,
                    !list_rule,
                    &filter,
                ),
                OutputFormat::Json => {
                    let v = report::vfp_json(&lab, port.as_deref(), &filter);
                    if v.as_array().is_some_and(Vec::is_empty) {
                        String::new()
                    } else {
                        format!("{v:#}\n")
                    }
                }
            };
            if text.is_empty() {
                anyhow::bail!(
                    "no VM port{} on a host vSwitch in this lab",
                    port.map(|p| format!(" {p:?}")).unwrap_or_default()
                );
            }
            print!("{text}");
            Ok(passed)
        }),
        Command::Lab(LabCommand::Mux {
            file,
            scenarios,
            output,
        }) => run_quietly(file.as_ref(), &scenarios).map(|(lab, passed)| {
            show(
                output,
                || report::mux(&lab),
                || strata_lab::dashboard::muxes(&lab).into(),
            );
            passed
        }),
        Command::Lab(LabCommand::Bgp {
            file,
            scenarios,
            output,
        }) => run_quietly(file.as_ref(), &scenarios).map(|(lab, passed)| {
            show(
                output,
                || report::bgp(&lab),
                || strata_lab::dashboard::bgp(&lab).into(),
            );
            passed
        }),
        Command::Bgp(BgpCommand::Run { config, seconds }) => bgpd::load(&config).and_then(|c| {
            let until =
                seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
            bgpd::run(&config, c, until).map(|()| true)
        }),
        Command::Bgp(BgpCommand::Show {
            config,
            socket,
            summary,
            output,
        }) => (|| {
            let request = match (output, summary) {
                (OutputFormat::Json, _) => bgpd::Request::Json,
                (OutputFormat::Table, true) => bgpd::Request::Summary,
                (OutputFormat::Table, false) => bgpd::Request::Show,
            };
            let status = match (socket, config) {
                (Some(socket), _) => bgpd::ask(&socket, request)?,
                (None, Some(config)) => {
                    let c = bgpd::load(&config)?;
                    match (&c.control_socket, &c.status_file) {
                        (Some(socket), _) => bgpd::ask(socket, request)?,
                        (None, Some(_)) if output == OutputFormat::Json => anyhow::bail!(
                            "{}: JSON comes from the speaker's control_socket, and this file names none",
                            config.display()
                        ),
                        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| {
                            format!("reading {} (is the speaker running?)", file.display())
                        })?,
                        (None, None) => anyhow::bail!(
                            "{} names neither a control_socket nor a status_file",
                            config.display()
                        ),
                    }
                }
                (None, None) => anyhow::bail!("--config or --socket is needed"),
            };
            print!("{status}");
            Ok(true)
        })(),
        Command::Controller {
            data_dir,
            listen,
            southbound,
        } => controller::run(&data_dir, listen, southbound).map(|()| true),
        Command::Ctl {
            connection,
            command,
        } => ctl::run(&connection, command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "strata", &mut std::io::stdout());
            Ok(true)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Router { config } => router(&config),
        Command::Mux { config } => mux(&config),
        Command::HostAgent { config } => host_agent(&config),
        Command::Lab(LabCommand::Up {
            file,
            netns: true,
            router,
            ..
        }) => lab_netns::up(file.as_ref(), router),
        Command::Lab(LabCommand::Up {
            file,
            listen,
            data_dir,
            seconds,
            netns: false,
            router: _,
        }) => lab_up::up(file.as_ref(), data_dir, listen, seconds),
        Command::Lab(LabCommand::Down { file }) => lab_netns::down(file.as_ref()),
        Command::Lab(LabCommand::Node {
            file,
            node,
            netns,
            secret_file,
        }) => lab_netns::node(file.as_ref(), &node, &netns, &secret_file),
        Command::Lab(LabCommand::Diagram {
            file,
            output,
            format,
            scenarios,
        }) => diagram(file.as_ref(), output.as_ref(), format, &scenarios),
        Command::Lab(LabCommand::Trace {
            file,
            from,
            to,
            netns: true,
            output,
            ..
        }) => trace_netns(file.as_ref(), &from, &to, output),
        Command::Lab(LabCommand::Trace {
            file,
            from,
            to,
            proto,
            scenarios,
            svg,
            output,
            netns: false,
        }) => trace(
            file.as_ref(),
            &from,
            &to,
            proto,
            &scenarios,
            svg.as_ref(),
            output,
        ),
        Command::Lab(LabCommand::Show { file, output }) => load(file.as_ref()).map(|t| {
            show(
                output,
                || report::topology(&t),
                || report::topology_json(&t),
            );
            true
        }),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
