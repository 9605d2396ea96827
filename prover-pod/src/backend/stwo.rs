//! Stwo (exec profile `stwo`): StarkWare's Circle STARK prover proving runs of the pool's
//! compiled Cairo 0 program, through zkfleet's Cairo tools (the `cairo/` crate, built by
//! `e2e/scripts/build-cairo.sh`).
//!
//! - Parameters: exactly one `.json` file among the pool's parameter files, the program as
//!   `cairo-compile --proof_mode` writes it, declaring all eleven builtins (Stwo's Cairo
//!   adapter expects the full set).
//! - Input: `program_input.json`, the program input `cairo-run --program_input` takes. A
//!   job carries its input rather than a finished run so the verifier can run the pool's
//!   program on it itself and derive the statement, trusting nothing the prover made; and it
//!   is what a Cairo user has at hand.
//! - Prove: `zkfleet-stwo-prove` runs the program with cairo-vm (layout `all_cairo_stwo`)
//!   and proves the run with the `canonical_small` preprocessed trace, which keeps a proof of
//!   a few thousand steps near 6.3 GB (the full trace takes 22.6 GB; see README.md). The
//!   pool's command may add prover flags after the program (`--pow-bits`, `--n-queries`).
//! - Proof: Stwo's binary proof, carried as `{"base64": ..}`. Public outputs: the `output`
//!   segment (decimal) and the `programHash` (Blake2s of the program, as Stwo reports it).
//! - Verify: `zkfleet-cairo stwo-verify` (built on stable Rust) runs the program on the job's
//!   input, checks the proof carries that program and output and at least
//!   [`MIN_SECURITY_BITS`], then runs cairo-air's verifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    Backend, BackendError, Judged, LoadContext, ParamsError, ProofInput, ProofOutput, Verdict,
    binary_proof, binary_proof_bytes, exec_error, other_statement, write_file,
};
use crate::cancel::Cancel;
use crate::exec::{self, ExecError};

/// The program input file of a job.
pub const PROGRAM_INPUT: &str = "program_input.json";

/// The input files a job carries, from the table of proof systems.
fn takes() -> &'static [&'static str] {
    super::files_of("stwo")
}

/// The least security a proof may carry (pow_bits + log_blowup_factor x n_queries), whatever
/// parameters the prover chose: Stwo's own production default.
pub const MIN_SECURITY_BITS: u32 = 96;

/// Exit status of the Cairo tools when the program does not run on the job's input.
const BAD_INPUT: &str = "code 3";
/// Exit status of `stwo-verify` when it refuses the proof.
const INVALID: &str = "code 1";

/// The Stwo proof system, with its program found.
pub struct StwoBackend {
    /// The prover command: `zkfleet-stwo-prove` and any flags the pool adds.
    pub prover: Vec<String>,
    /// The verifier program, `zkfleet-cairo`.
    pub verifier: String,
    /// The compiled program.
    pub program: PathBuf,
    pub work_root: Option<PathBuf>,
    pub timeout: Duration,
}

/// Registry entry: finds the program among the parameter files.
pub fn load(ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    let (_, path) = ctx.program_file("stwo")?;
    let mut prover = ctx.template.clone();
    if prover.is_empty() {
        prover.push("zkfleet-stwo-prove".into());
    }
    let verifier = ctx
        .args
        .exec_verify_template()
        .map_err(ParamsError::Invalid)?
        .and_then(|t| t.into_iter().next())
        .unwrap_or_else(|| "zkfleet-cairo".into());
    let backend = StwoBackend {
        prover,
        verifier,
        program: path,
        work_root: ctx.args.exec_workdir.clone(),
        timeout: ctx.timeout,
    };
    Ok((Arc::new(backend), String::new()))
}

fn program_input(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<&[u8], BackendError> {
    let value = super::json_file(
        "stwo",
        takes(),
        files,
        PROGRAM_INPUT,
        "give the program input cairo-run takes, {\"n\": 10}",
    )?;
    if !value.is_object() {
        return Err(BackendError::InvalidFile {
            name: PROGRAM_INPUT.into(),
            reason: "not a JSON object; give the program input cairo-run takes, {\"n\": 10}".into(),
        });
    }
    Ok(&files[PROGRAM_INPUT])
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A Cairo tool's failure: exit 3 is the input's fault (the program fails on it).
fn tool_error(e: ExecError) -> BackendError {
    match e {
        ExecError::Failed { code, stderr_tail } if code == BAD_INPUT => {
            BackendError::InputRejected(stderr_tail)
        }
        e => exec_error(e),
    }
}

impl StwoBackend {
    /// Runs `zkfleet-cairo stwo-verify` on `proof` and the job's input file: the verdict and
    /// the statement it derived from the input.
    fn check_proof(&self, proof: &Value, input: &[u8]) -> Result<Judged, BackendError> {
        // A proof that is not even base64 is still checked, as an empty file, so the
        // statement is derived all the same.
        let bytes = binary_proof_bytes(proof).unwrap_or_default();
        let dir = exec::work_dir(self.work_root.as_deref()).map_err(exec_error)?;
        let (input_path, proof_path) =
            (dir.path().join(PROGRAM_INPUT), dir.path().join("proof.bin"));
        write_file(&input_path, input)?;
        write_file(&proof_path, &bytes)?;
        let argv = [
            self.verifier.clone(),
            "stwo-verify".into(),
            "--program".into(),
            path_arg(&self.program),
            "--program-input".into(),
            path_arg(&input_path),
            "--proof".into(),
            path_arg(&proof_path),
            "--min-security-bits".into(),
            MIN_SECURITY_BITS.to_string(),
        ];
        let verdict = match exec::run(&argv, dir.path(), self.timeout, &Cancel::new()) {
            Ok(()) => Ok(()),
            Err(ExecError::Failed { code, stderr_tail }) if code == INVALID => {
                Err(format!("zkfleet-cairo stwo-verify: {stderr_tail}"))
            }
            Err(e) => return Err(tool_error(e)),
        };
        // The statement is the first line the verifier printed: the run's, never the proof's.
        let log = std::fs::read_to_string(dir.path().join("prover.log")).unwrap_or_default();
        let statement = log
            .lines()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
            .ok_or_else(|| {
                BackendError::Exec("zkfleet-cairo stwo-verify printed no statement".into())
            })?;
        Ok(Judged { verdict, statement })
    }
}

impl Backend for StwoBackend {
    fn system(&self) -> &'static str {
        "stwo"
    }

    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        super::check_kind(self.system(), takes(), input)?;
        if let ProofInput::Files(files) = input {
            program_input(files)?;
        }
        Ok(())
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        self.check(&input)?;
        let ProofInput::Files(files) = input else {
            unreachable!("check refuses every input but files")
        };
        let dir = exec::work_dir(self.work_root.as_deref()).map_err(exec_error)?;
        let path = |name: &str| dir.path().join(name);
        let (input, proof, statement) = (
            path(PROGRAM_INPUT),
            path("proof.bin"),
            path("statement.json"),
        );
        write_file(&input, program_input(&files)?)?;
        let start = Instant::now();
        let mut argv = vec![self.prover[0].clone()];
        argv.extend([
            "--program".into(),
            path_arg(&self.program),
            "--program-input".into(),
            path_arg(&input),
            "--proof".into(),
            path_arg(&proof),
            "--statement".into(),
            path_arg(&statement),
        ]);
        argv.extend(self.prover[1..].iter().cloned());
        exec::run(&argv, dir.path(), self.timeout, cancel).map_err(tool_error)?;
        let proof = std::fs::read(&proof)
            .map_err(|e| BackendError::Exec(format!("zkfleet-stwo-prove wrote no proof: {e}")))?;
        let statement: Value = std::fs::read(&statement)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| BackendError::Exec("zkfleet-stwo-prove wrote no statement".into()))?;
        Ok(ProofOutput::stark(binary_proof(&proof), statement, start))
    }

    /// Without the job's input there is no statement to derive: a Stwo proof is only checked
    /// with it ([`Backend::verify_input`]).
    fn verify(&self, _: &Value, _: &[String], _: Option<&Value>) -> Result<Verdict, BackendError> {
        Ok(Err(
            "a Stwo proof is checked against the job's program input: send the input with it"
                .into(),
        ))
    }

    /// The statement is the pool's program run on the job's input, by the verifier itself:
    /// its program hash and output. The proof must carry exactly them, and so must the public
    /// outputs the prover reported.
    fn verify_input(
        &self,
        proof: &Value,
        _: &[String],
        public_outputs: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        self.check(&input)?;
        let ProofInput::Files(files) = input else {
            unreachable!("check refuses every input but files")
        };
        let judged = self.check_proof(proof, program_input(&files)?)?;
        if judged.verdict.is_ok() && public_outputs != Some(&judged.statement) {
            return Ok(Judged {
                verdict: other_statement("reported output or program hash"),
                statement: judged.statement,
            });
        }
        Ok(judged)
    }
}
