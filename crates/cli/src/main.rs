//! `strata`: the command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_lab::{Clock, Lab, report};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
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
    },
    /// Check a lab file and print its topology: networks, nodes, addresses, routes.
    Show {
        /// The lab file; without it, the built-in POC lab.
        file: Option<PathBuf>,
    },
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

fn run(
    file: Option<PathBuf>,
    capture: Option<PathBuf>,
    only: Vec<String>,
    realtime: bool,
) -> anyhow::Result<bool> {
    let topology = load(file.as_ref())?;
    for name in &only {
        if !topology.scenarios.iter().any(|s| &s.name == name) {
            let known: Vec<_> = topology.scenarios.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!(
                "no scenario {name:?} in this lab (scenarios: {})",
                known.join(", ")
            );
        }
    }
    println!(
        "lab {}: {} networks, {} nodes, {} scenarios ({} time)",
        topology.name,
        topology.networks.len(),
        topology.nodes.len(),
        topology.scenarios.len(),
        if realtime { "wall-clock" } else { "virtual" }
    );
    let selected: Vec<usize> = (0..topology.scenarios.len())
        .filter(|&i| only.is_empty() || only.contains(&topology.scenarios[i].name))
        .collect();
    let mut lab = Lab::new(
        topology,
        if realtime {
            Clock::Wall
        } else {
            Clock::Virtual
        },
    )?;
    let mut results = Vec::new();
    for i in selected {
        let result = lab.run_scenario(i);
        print!("{}", report::scenario(&result));
        results.push(result);
    }
    println!("{}", report::summary(&results));
    if let Some(dir) = capture {
        let files = lab
            .write_captures(&dir)
            .with_context(|| format!("writing captures to {}", dir.display()))?;
        for f in files {
            println!("capture: {}", f.display());
        }
    }
    Ok(results.iter().all(|r| r.passed))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Lab(LabCommand::Run {
            file,
            capture,
            scenarios,
            realtime,
        }) => run(file, capture, scenarios, realtime),
        Command::Lab(LabCommand::Show { file }) => load(file.as_ref()).map(|t| {
            print!("{}", report::topology(&t));
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
