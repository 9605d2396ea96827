//! zkfleet prover pod: proving backends, parameters loader, the HTTP server and the lease
//! protocol it speaks with the operator in agent mode.

pub mod agent;
pub mod backend;
pub mod cancel;
pub mod config;
pub mod exec;
pub mod groth16;
pub mod input;
pub mod metrics;
pub mod params;
pub mod runner;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod usage;

/// The lease protocol with the operator's dispatcher (from the shared contract crate).
pub use zkfleet_contract::lease;
