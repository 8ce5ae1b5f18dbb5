//! Strata's network controller: the resources of the Network Controller's northbound API
//! (`/networking/v1/...`), kept durably, checked, and compiled into each role's configuration.
//!
//! - [`store`]: where documents are kept (a trait; redb embedded by default).
//! - [`core`]: PUT, GET, DELETE with etags, references and VIP allocation; no I/O.
//! - [`desired`]: each node's configuration compiled from the resources, revisioned.
//! - [`api`]: the HTTP API (axum), bearer-token authentication.
//! - [`server`]: the data directory (store, token) and serving the API.
//! - [`slb`]: the SLB manager (host agents' reports → what the Muxes carry).
//! - [`hub`]: the southbound state without I/O: configurations by revision, admission,
//!   what each agent applied, the SLB manager.
//! - [`southbound`]: agents over TCP, each sent its node's configuration as it changes.
//! - [`metrics`]: Prometheus metrics (the controller's, and the exposition all serve).

pub mod api;
pub mod core;
pub mod desired;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod slb;
pub mod southbound;
pub mod store;

pub use crate::core::{Controller, Error};
pub use store::{MemStore, RedbStore, Store};
