//! Miden VM (exec profile `miden`): `miden-vm prove` runs the pool's MASM program on a job's
//! `inputs.json` and proves the run with Miden's Plonky3-based STARK prover.
//!
//! - Parameters: exactly one `.masm` file among the pool's parameter files, the program. At
//!   load the pod compiles it (`miden-vm compile`) for its program hash, so the hash a proof is
//!   checked against comes from the pool's parameters, never from the pod that proved.
//! - Input: `inputs.json`, Miden's input file (`operand_stack`, optional `advice_stack`,
//!   `advice_map`, `merkle_store`). The operand stack is public; advice is private.
//! - Proof: the binary proof file, carried as `{"base64": ..}`. Public outputs: the
//!   `programHash`, the public `operandStack` and the `stackOutputs`.
//! - Verify: `miden-vm verify` with the outputs and inputs rebuilt from the public outputs and
//!   this pod's program hash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Backend, BackendError, Judged, LoadContext, ParamsError, ProofInput, ProofOutput, Verdict,
    binary_proof, binary_proof_bytes, exec_error, input_error, other_statement, run_verifier,
    write_file,
};
use crate::cancel::Cancel;
use crate::exec::{self, ExecError};

/// Miden's input file.
pub const INPUTS: &str = "inputs.json";

/// The input files a job carries, from the table of proof systems.
fn takes() -> &'static [&'static str] {
    super::files_of("miden")
}

/// The Miden VM proof system, with its program loaded.
pub struct MidenBackend {
    /// `miden-vm` (or the pool's command, its first word).
    pub program: String,
    /// The MASM program.
    pub masm: PathBuf,
    /// Its hash, hex, as `miden-vm compile` printed it.
    pub program_hash: String,
    pub work_root: Option<PathBuf>,
    pub timeout: Duration,
}

/// Registry entry: finds the program among the parameter files and compiles it for its hash.
pub fn load(ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    let program = ctx
        .template
        .first()
        .cloned()
        .unwrap_or_else(|| "miden-vm".into());
    let (masm, path) = ctx.program_file("miden")?;
    let timeout = ctx.timeout;
    let program_hash = compile(&program, &path, ctx.args.exec_workdir.as_deref(), timeout)?;
    tracing::info!(program = %masm, program_hash, "miden program compiled");
    let digest = format!("miden:{program_hash}");
    let backend = MidenBackend {
        program,
        masm: path,
        program_hash,
        work_root: ctx.args.exec_workdir.clone(),
        timeout,
    };
    Ok((Arc::new(backend), digest))
}

/// Compiles the program and returns its hash.
fn compile(
    program: &str,
    masm: &Path,
    work_root: Option<&Path>,
    timeout: Duration,
) -> Result<String, ParamsError> {
    let dir = exec::work_dir(work_root).map_err(|e| ParamsError::Unavailable(e.to_string()))?;
    let out = dir.path().join("program.masp");
    let argv = [
        program.to_string(),
        "compile".into(),
        "-a".into(),
        masm.to_string_lossy().into_owned(),
        "-o".into(),
        out.to_string_lossy().into_owned(),
    ];
    exec::run(&argv, dir.path(), timeout, &Cancel::new()).map_err(|e| match e {
        ExecError::Failed { stderr_tail, .. } => ParamsError::Invalid(format!(
            "the program {} does not compile: {stderr_tail}",
            masm.display()
        )),
        e => ParamsError::Unavailable(format!("cannot run {program} compile: {e}")),
    })?;
    let log = std::fs::read_to_string(dir.path().join("prover.log")).unwrap_or_default();
    hash_in(&log, "program hash is ").ok_or_else(|| {
        ParamsError::Invalid(format!(
            "{program} compile printed no program hash: is it miden-vm? It printed: {}",
            log.trim()
        ))
    })
}

/// The 64-hex-digit hash that follows `marker` in a miden-vm log.
fn hash_in(log: &str, marker: &str) -> Option<String> {
    let at = log.find(marker)? + marker.len();
    let hash: String = log[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (hash.len() == 64).then_some(hash)
}

/// The public operand stack of an input file.
fn operand_stack(inputs: &Value) -> Result<Vec<Value>, BackendError> {
    let invalid = |reason: &str| BackendError::InvalidFile {
        name: INPUTS.into(),
        reason: reason.into(),
    };
    let stack = inputs
        .get("operand_stack")
        .ok_or_else(|| {
            invalid(
                "has no operand_stack: give Miden's input file, {\"operand_stack\": [\"1\", ...]}",
            )
        })?
        .as_array()
        .ok_or_else(|| invalid("operand_stack is not a list of numbers as strings"))?;
    if !stack.iter().all(Value::is_string) {
        return Err(invalid("operand_stack is not a list of numbers as strings"));
    }
    Ok(stack.clone())
}

fn parse_inputs(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Value, BackendError> {
    let inputs = super::json_file(
        "miden",
        takes(),
        files,
        INPUTS,
        "give Miden's input file, {\"operand_stack\": [\"1\", ...]}",
    )?;
    operand_stack(&inputs)?;
    Ok(inputs)
}

impl Backend for MidenBackend {
    fn system(&self) -> &'static str {
        "miden"
    }

    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        super::check_kind(self.system(), takes(), input)?;
        if let ProofInput::Files(files) = input {
            parse_inputs(files)?;
        }
        Ok(())
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let ProofInput::Files(files) = input else {
            return Err(BackendError::WrongInput {
                system: "miden",
                takes: format!("the input files {}", takes().join(", ")),
                given: "circuit inputs or a witness",
            });
        };
        let inputs = parse_inputs(&files)?;
        let dir = exec::work_dir(self.work_root.as_deref()).map_err(exec_error)?;
        let path = |name: &str| dir.path().join(name);
        let (input, proof, output) = (path(INPUTS), path("program.proof"), path("outputs.json"));
        write_file(&input, &files[INPUTS])?;
        let start = Instant::now();
        let argv = [
            self.program.clone(),
            "prove".into(),
            self.masm.to_string_lossy().into_owned(),
            "-i".into(),
            input.to_string_lossy().into_owned(),
            "-p".into(),
            proof.to_string_lossy().into_owned(),
            "-o".into(),
            output.to_string_lossy().into_owned(),
            // Debug instructions are for development, not for a fleet.
            "--release".into(),
        ];
        // The VM refusing the run (a failed assertion, too many cycles) is the input's fault.
        exec::run(&argv, dir.path(), self.timeout, cancel).map_err(input_error)?;
        let proof = std::fs::read(&proof)
            .map_err(|e| BackendError::Exec(format!("miden-vm wrote no proof: {e}")))?;
        let outputs: Value = std::fs::read(&output)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| BackendError::Exec("miden-vm wrote no outputs file".into()))?;
        Ok(ProofOutput::stark(
            binary_proof(&proof),
            json!({
                "programHash": self.program_hash,
                "operandStack": operand_stack(&inputs)?,
                "stackOutputs": outputs["stack"],
            }),
            start,
        ))
    }

    fn verify(
        &self,
        proof: &Value,
        _: &[String],
        public_outputs: Option<&Value>,
    ) -> Result<Verdict, BackendError> {
        let Some(outputs) = public_outputs else {
            return Ok(Err("the proof came without its public outputs".into()));
        };
        if outputs["programHash"].as_str() != Some(self.program_hash.as_str()) {
            return Ok(Err(format!(
                "the proof claims program hash {}, but the pool's program hashes to {}",
                outputs["programHash"], self.program_hash
            )));
        }
        let Some(bytes) = binary_proof_bytes(proof) else {
            return Ok(Err("the proof is not {\"base64\": <proof file>}".into()));
        };
        let (Some(stack_in), Some(stack_out)) = (
            outputs["operandStack"].as_array(),
            outputs["stackOutputs"].as_array(),
        ) else {
            return Ok(Err(
                "the public outputs lack operandStack or stackOutputs".into()
            ));
        };
        let dir = exec::work_dir(self.work_root.as_deref()).map_err(exec_error)?;
        let path = |name: &str| dir.path().join(name);
        let (input, proof, output) = (path(INPUTS), path("program.proof"), path("outputs.json"));
        write_file(
            &input,
            json!({"operand_stack": stack_in}).to_string().as_bytes(),
        )?;
        write_file(&output, json!({"stack": stack_out}).to_string().as_bytes())?;
        write_file(&proof, &bytes)?;
        let argv = [
            self.program.clone(),
            "verify".into(),
            "-p".into(),
            proof.to_string_lossy().into_owned(),
            "-i".into(),
            input.to_string_lossy().into_owned(),
            "-o".into(),
            output.to_string_lossy().into_owned(),
            "-x".into(),
            self.program_hash.clone(),
        ];
        run_verifier("miden-vm verify", &argv, dir.path(), self.timeout)
    }

    /// The statement is the pool's program (its hash, compiled here) run on the job's input
    /// stack; the stack outputs are what the proof binds, checked by `miden-vm verify`.
    fn verify_input(
        &self,
        proof: &Value,
        _: &[String],
        public_outputs: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        self.check(&input)?;
        let ProofInput::Files(files) = input else {
            return Err(BackendError::WrongInput {
                system: "miden",
                takes: format!("the input files {}", takes().join(", ")),
                given: "circuit inputs or a witness",
            });
        };
        let operand_stack = operand_stack(&parse_inputs(&files)?)?;
        let statement = json!({
            "programHash": self.program_hash,
            "operandStack": operand_stack,
        });
        let claims = public_outputs.unwrap_or(&Value::Null);
        let verdict = if claims["programHash"] != statement["programHash"] {
            other_statement("program hash")
        } else if claims["operandStack"] != statement["operandStack"] {
            other_statement("input stack")
        } else {
            self.verify(proof, &[], public_outputs)?
        };
        Ok(Judged { verdict, statement })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_hash_is_read_from_the_compile_log() {
        let hash = "ab".repeat(32);
        let log = format!("=====\nCompile program\n=====\nprogram hash is {hash}\n");
        assert_eq!(hash_in(&log, "program hash is "), Some(hash));
        assert_eq!(hash_in("program hash is abc", "program hash is "), None);
        assert_eq!(hash_in("nothing here", "program hash is "), None);
    }

    #[test]
    fn inputs_need_an_operand_stack_of_strings() {
        let files =
            |text: &str| std::iter::once((INPUTS.to_string(), text.as_bytes().to_vec())).collect();
        assert!(parse_inputs(&files(r#"{"operand_stack": ["5"]}"#)).is_ok());
        for bad in [
            r#"{"operand_stack": [5]}"#,
            r#"{"advice_stack": []}"#,
            "not json",
        ] {
            let e = parse_inputs(&files(bad)).unwrap_err();
            assert_eq!(e.code(), "invalid_input_file", "{bad}: {e}");
        }
    }
}
