//! zkfleet operator: the ProverPool and ProofJob controllers, the dispatcher that leases jobs
//! to prover pods, leader election, metrics and the admin server.
//!
//! The binary (`main.rs`) only parses flags and calls [`runtime::run`]. Pool reconcile is a
//! pipeline, one module each: [`pool::fetch`] → [`pool::validate`] → [`build`] →
//! [`pool::apply`] → [`pool::status`]; `validate` and `build` take no client. Jobs are admitted
//! by [`job`] and run by [`dispatcher`].

pub mod admin;
pub mod artifacts;
pub mod build;
pub mod config;
pub mod dispatcher;
pub mod external_metrics;
pub mod job;
pub mod job_trace;
pub mod keda_scaler;
pub mod leader;
pub mod metrics;
pub mod params;
pub mod pool;
pub mod runtime;
pub mod scope;
pub mod telemetry;
pub mod verifying_keys;

/// Field manager of every server-side apply this operator makes, children and status alike.
pub const FIELD_MANAGER: &str = "zkfleet-operator";
