//! Strata's network controller: the resources of the Network Controller's northbound API
//! (`/networking/v1/...`), kept durably, checked, and (next) compiled into each role's
//! configuration.
//!
//! - [`store`]: where documents are kept (a trait; redb embedded by default).
//! - [`core`]: PUT, GET, DELETE with etags, references and VIP allocation; no I/O.
//! - [`desired`]: each node's configuration compiled from the resources, revisioned.
//! - [`api`]: the HTTP API (axum), bearer-token authentication.
//! - [`server`]: the data directory (store, token) and serving the API.
//! - [`southbound`]: agents over TCP, each sent its node's configuration as it changes.

pub mod api;
pub mod core;
pub mod desired;
pub mod openapi;
pub mod server;
pub mod southbound;
pub mod store;

pub use crate::core::{Controller, Error};
pub use store::{MemStore, RedbStore, Store};
