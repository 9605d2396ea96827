//! zkfleet prover pod: proving backends, parameters loader and the HTTP server.

pub mod backend;
pub mod config;
pub mod exec;
pub mod groth16;
pub mod metrics;
pub mod params;
pub mod server;
