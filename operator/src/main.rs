//! The zkfleet-operator binary: parses flags and runs the operator.

use clap::Parser;
use zkfleet_operator::config::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    zkfleet_operator::runtime::run(Cli::parse()).await
}
