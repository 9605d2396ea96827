//! `zkfleet-cairo`: runs Cairo 0 programs for Stone and checks Stwo proofs. See lib.rs for
//! the input model and the exit codes below for how a caller tells the outcomes apart.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use cairo_air::utils::{deserialize_proof_from_file, ProofFormat};
use clap::{Parser, Subcommand};
use stwo::core::vcs_lifted::blake2_merkle::{Blake2sMerkleChannel, Blake2sMerkleHasher};
use zkfleet_cairo::{layout, limbs, run, RunError, RunOptions, Statement};

/// Exit status of `stwo-verify` when the proof is refused.
const INVALID: u8 = 1;
/// Exit status when the program or the flags are at fault.
const USAGE: u8 = 2;
/// Exit status when the program does not run on the job's input: the input's fault.
const BAD_INPUT: u8 = 3;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a compiled program in proof mode and writes the four files Stone's cpu_air_prover
    /// reads, as `cairo-run --proof_mode` does.
    Run {
        /// The compiled program (cairo-compile --proof_mode).
        #[arg(long)]
        program: PathBuf,
        /// The program input JSON, read by `ids.X = program_input['X']` hints.
        #[arg(long)]
        program_input: PathBuf,
        /// The layout (Stone: small, recursive, starknet, ...).
        #[arg(long, default_value = "small")]
        layout: String,
        #[arg(long)]
        air_public_input: PathBuf,
        #[arg(long)]
        air_private_input: PathBuf,
        #[arg(long)]
        trace_file: PathBuf,
        #[arg(long)]
        memory_file: PathBuf,
    },
    /// Checks a Stwo proof (binary format, Blake2s channel) of `program` run on
    /// `program_input`: the proof must carry this run's program and output and at least
    /// `min_security_bits`, and pass cairo-air's verifier. Prints the statement (the run's
    /// output and program hash) as JSON once the program ran, then exits 0 when the proof holds; exits 1 with the reason when the proof is refused, 3 when the
    /// program does not run on the input, 2 when the program or flags are at fault.
    StwoVerify {
        #[arg(long)]
        program: PathBuf,
        #[arg(long)]
        program_input: PathBuf,
        #[arg(long)]
        proof: PathBuf,
        /// Least security a proof may carry: pow_bits + log_blowup_factor * n_queries.
        #[arg(long, default_value_t = 96)]
        min_security_bits: u32,
    },
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

fn run_error(e: RunError) -> ExitCode {
    match e {
        RunError::Input(_) => fail(BAD_INPUT, e),
        RunError::Program(_) => fail(USAGE, e),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(path).map_err(|e| fail(USAGE, format!("{}: {e}", path.display())))
}

fn read_input(path: &PathBuf) -> Result<serde_json::Value, ExitCode> {
    serde_json::from_slice(&read(path)?)
        .map_err(|e| fail(BAD_INPUT, format!("the program input is not JSON: {e}")))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            program,
            program_input,
            layout: layout_name,
            air_public_input,
            air_private_input,
            trace_file,
            memory_file,
        } => {
            let result = (|| {
                let layout = layout(&layout_name).map_err(|e| fail(USAGE, e))?;
                let runner = run(
                    &read(&program)?,
                    &read_input(&program_input)?,
                    &RunOptions {
                        layout,
                        pad_trace: true,
                    },
                )
                .map_err(run_error)?;
                write_stone_files(
                    &runner,
                    &air_public_input,
                    &air_private_input,
                    &trace_file,
                    &memory_file,
                )
                .map_err(|e| fail(USAGE, e))
            })();
            result.err().unwrap_or(ExitCode::SUCCESS)
        }
        Command::StwoVerify {
            program,
            program_input,
            proof,
            min_security_bits,
        } => stwo_verify(&program, &program_input, &proof, min_security_bits)
            .err()
            .unwrap_or(ExitCode::SUCCESS),
    }
}

fn write_stone_files(
    runner: &cairo_vm::vm::runners::cairo_runner::CairoRunner,
    public_input: &PathBuf,
    private_input: &PathBuf,
    trace_file: &PathBuf,
    memory_file: &PathBuf,
) -> Result<(), String> {
    let trace = runner
        .relocated_trace
        .as_ref()
        .ok_or("the run left no trace")?;
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(trace_file).map_err(|e| e.to_string())?);
    cairo_vm::cairo_run::write_encoded_trace(trace, &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(memory_file).map_err(|e| e.to_string())?);
    cairo_vm::cairo_run::write_encoded_memory(&runner.relocated_memory, &mut out)
        .map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let public = runner
        .get_air_public_input()
        .map_err(|e| e.to_string())?
        .serialize_json()
        .map_err(|e| e.to_string())?;
    std::fs::write(public_input, public).map_err(|e| e.to_string())?;
    let absolute = |p: &PathBuf| {
        std::path::absolute(p)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| e.to_string())
    };
    let private = runner
        .get_air_private_input()
        .to_serializable(absolute(trace_file)?, absolute(memory_file)?)
        .serialize_json()
        .map_err(|e| e.to_string())?;
    std::fs::write(private_input, private).map_err(|e| e.to_string())
}

fn stwo_verify(
    program: &PathBuf,
    program_input: &PathBuf,
    proof: &PathBuf,
    min_security_bits: u32,
) -> Result<(), ExitCode> {
    // The statement comes from this process's own run of the pool's program on the job's
    // input, never from the proof.
    let runner = run(
        &read(program)?,
        &read_input(program_input)?,
        &RunOptions {
            layout: cairo_vm::types::layout_name::LayoutName::all_cairo_stwo,
            pad_trace: false,
        },
    )
    .map_err(run_error)?;
    let statement = Statement::of(&runner).map_err(run_error)?;
    // The statement goes out first, so a caller has it whatever the verdict.
    println!("{}", statement.public_outputs());

    // cairo-air asserts on some malformed claims: a panic is a refused proof, not a crash.
    std::panic::set_hook(Box::new(|_| {}));
    let verdict = std::panic::catch_unwind(|| -> Result<(), String> {
        let proof = deserialize_proof_from_file::<Blake2sMerkleHasher>(proof, ProofFormat::Binary)
            .map_err(|e| format!("the proof is not a binary Stwo Cairo proof: {e}"))?;
        let config = proof.stark_proof.config;
        let bits = config.pow_bits
            + config.fri_config.log_blowup_factor * config.fri_config.n_queries as u32;
        if bits < min_security_bits {
            return Err(format!(
                "the proof carries {bits} bits of security (pow_bits {} + log_blowup_factor {} x n_queries {}), below the pool's minimum {min_security_bits}",
                config.pow_bits, config.fri_config.log_blowup_factor, config.fri_config.n_queries
            ));
        }
        let memory = &proof.claim.public_data.public_memory;
        let claimed_program: Vec<[u32; 8]> = memory.program.iter().map(|(_, v)| *v).collect();
        if claimed_program != statement.program {
            return Err("the proof is of another program than the pool's".into());
        }
        let claimed_output: Vec<[u32; 8]> = memory.output.iter().map(|(_, v)| *v).collect();
        let expected_output: Vec<[u32; 8]> = statement.output.iter().map(limbs).collect();
        if claimed_output != expected_output {
            return Err(
                "the proof is of another statement: its output differs from the one the job's input gives"
                    .into(),
            );
        }
        cairo_air::verifier::verify_cairo::<Blake2sMerkleChannel>(proof)
            .map_err(|e| format!("Stwo's verifier refused the proof: {e}"))
    });
    match verdict {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(fail(INVALID, reason)),
        Err(_) => Err(fail(
            INVALID,
            "Stwo's verifier refused the proof: its claim is malformed",
        )),
    }
}
