//! `zkfleet-stwo-prove`: proves a run of a compiled Cairo 0 program with Stwo (the
//! `stwo-cairo-prover` crate), writing the binary proof and the statement it proves.
//! Built with the nightly toolchain the prover crate needs (e2e/scripts/build-cairo.sh).
//!
//! Exit status: 0 proved; 3 the program does not run on the input (the input's fault); 2 the
//! program or flags are at fault; 1 the prover failed.

use std::path::PathBuf;
use std::process::ExitCode;

use cairo_air::utils::{serialize_proof_to_file, ProofFormat};
use clap::{Parser, ValueEnum};
use stwo::core::fri::FriConfig;
use stwo::core::pcs::PcsConfig;
use stwo::core::vcs_lifted::blake2_merkle::Blake2sMerkleChannel;
use stwo_cairo_common::preprocessed_columns::preprocessed_trace::PreProcessedTraceVariant;
use stwo_cairo_prover::prover::{prove_cairo, ChannelHash, ProverParameters};
use zkfleet_cairo::{run, RunError, RunOptions, Statement};

#[derive(Clone, Copy, ValueEnum)]
enum Preprocessed {
    /// The full preprocessed trace: about 22.6 GB for a 6,048-step run.
    Canonical,
    /// The small preprocessed trace: about 6.3 GB and 8x faster for the same run.
    CanonicalSmall,
}

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The compiled program (cairo-compile --proof_mode, all eleven builtins declared).
    #[arg(long)]
    program: PathBuf,
    /// The program input JSON, read by `ids.X = program_input['X']` hints.
    #[arg(long)]
    program_input: PathBuf,
    /// Where to write the proof (binary format).
    #[arg(long)]
    proof: PathBuf,
    /// Where to write the statement (output and program hash) as JSON.
    #[arg(long)]
    statement: PathBuf,
    #[arg(long, value_enum, default_value = "canonical-small")]
    preprocessed_trace: Preprocessed,
    /// Proof-of-work bits before the FRI queries.
    #[arg(long, default_value_t = 26)]
    pow_bits: u32,
    /// FRI queries; security is pow_bits + log_blowup_factor * n_queries.
    #[arg(long, default_value_t = 70)]
    n_queries: usize,
    #[arg(long, default_value_t = 1)]
    log_blowup_factor: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fail = |code: u8, message: String| {
        eprintln!("{message}");
        ExitCode::from(code)
    };
    let program = match std::fs::read(&cli.program) {
        Ok(p) => p,
        Err(e) => return fail(2, format!("{}: {e}", cli.program.display())),
    };
    let input = match std::fs::read(&cli.program_input)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}")))
    {
        Ok(i) => i,
        Err(e) => return fail(3, format!("the program input: {e}")),
    };
    let options = RunOptions {
        layout: cairo_vm::types::layout_name::LayoutName::all_cairo_stwo,
        pad_trace: false,
    };
    let runner = match run(&program, &input, &options) {
        Ok(r) => r,
        Err(e @ RunError::Input(_)) => return fail(3, e.to_string()),
        Err(e) => return fail(2, e.to_string()),
    };
    let statement = match Statement::of(&runner) {
        Ok(s) => s,
        Err(e) => return fail(2, e.to_string()),
    };
    let prover_input = match stwo_cairo_adapter::adapter::adapt(&runner) {
        Ok(i) => i,
        Err(e) => return fail(3, format!("the run cannot be proved by Stwo: {e}")),
    };
    drop(runner);
    let parameters = ProverParameters {
        channel_hash: ChannelHash::Blake2s,
        channel_salt: 0,
        pcs_config: PcsConfig {
            pow_bits: cli.pow_bits,
            fri_config: FriConfig {
                log_last_layer_degree_bound: 0,
                log_blowup_factor: cli.log_blowup_factor,
                n_queries: cli.n_queries,
                fold_step: 1,
            },
            lifting_log_size: None,
        },
        preprocessed_trace: match cli.preprocessed_trace {
            Preprocessed::Canonical => PreProcessedTraceVariant::Canonical,
            Preprocessed::CanonicalSmall => PreProcessedTraceVariant::CanonicalSmall,
        },
        store_polynomials_coefficients: false,
        include_all_preprocessed_columns: false,
    };
    let proof = match prove_cairo::<Blake2sMerkleChannel>(prover_input, parameters) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("Stwo failed to prove the run: {e}")),
    };
    if let Err(e) = serialize_proof_to_file(&proof, &cli.proof, ProofFormat::Binary) {
        return fail(1, format!("{}: {e}", cli.proof.display()));
    }
    if let Err(e) = std::fs::write(&cli.statement, statement.public_outputs().to_string()) {
        return fail(1, format!("{}: {e}", cli.statement.display()));
    }
    ExitCode::SUCCESS
}
