//! zkfleet operator: the ProverPool controller, leader election, metrics and the admin server.
//!
//! The binary (`main.rs`) only parses flags and calls [`runtime::run`]. Reconcile is a pipeline,
//! one module each: [`pool::fetch`] → [`pool::validate`] → [`build`] → [`pool::apply`] →
//! [`pool::status`]; `validate` and `build` take no client.

pub mod admin;
pub mod build;
pub mod config;
pub mod leader;
pub mod metrics;
pub mod params;
pub mod pool;
pub mod runtime;
pub mod telemetry;

/// Field manager of every server-side apply this operator makes, children and status alike.
pub const FIELD_MANAGER: &str = "zkfleet-operator";
