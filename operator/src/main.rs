//! The zkfleet-operator binary. The controllers arrive with the ProverPool
//! issue; until then the binary says so instead of pretending to run.
fn main() -> std::process::ExitCode {
    eprintln!(
        "zkfleet-operator {}: the ProverPool and ProofJob controllers are not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
