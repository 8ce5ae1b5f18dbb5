//! The Strata lab: a whole topology in one process, with real Ethernet frames on emulated
//! segments and a real TCP/IP stack in every VM.
//!
//! [`file`] reads a lab file into a [`topology::Topology`]; [`Lab`] builds the nodes and
//! segments and drives them in virtual or wall-clock time; scenarios run on it and report
//! what happened hop by hop, read from the frames that crossed the segments ([`trace`]);
//! [`report`] prints that.

pub mod dashboard;
pub mod diagram;
pub mod file;
mod lab;
pub mod metrics;
pub mod report;
pub mod resources;
pub mod topology;
pub mod trace;

pub use lab::{
    BOOT_LIMIT, Clock, Hop, Lab, LabError, MAX_NICS, MAX_NODES, Nc, ScenarioResult, Waker,
    distribution_name, mac_of, node_config,
};

/// The seed's topology, the Azure Stack POC lab, built into the binary.
pub const AZURE_STACK_POC: &str = include_str!("../../../labs/azure-stack-poc.toml");
/// The name the built-in lab file goes by in messages.
pub const AZURE_STACK_POC_NAME: &str = "labs/azure-stack-poc.toml";

/// A VFP direction: toward the VM (`true`), or from it.
pub fn vfp_direction(inbound: bool) -> strata_node::vswitch::vfp::Direction {
    if inbound {
        strata_node::vswitch::vfp::Direction::In
    } else {
        strata_node::vswitch::vfp::Direction::Out
    }
}
