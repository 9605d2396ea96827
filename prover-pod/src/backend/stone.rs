//! StarkWare Stone (exec profile `stone`): `cpu_air_prover` proves a Cairo run, given as the
//! four files `cairo-run --proof_mode` writes. The pod chooses the FRI parameters from each
//! run's `n_steps` and writes Stone's config files (see [`crate::exec`]). Proofs are checked
//! with `cpu_air_verifier` (the verify template) on a pod other than the one that proved, and
//! the program output the job reports must be the one the proof's public input holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Backend, BackendError, Judged, LoadContext, ParamsError, ProofInput, ProofOutput, Verdict,
    check_kind, exec_error, input_error, other_statement, run_verifier,
};
use crate::cancel::Cancel;
use crate::exec::{self, StoneInput};

/// `--air_public_input` of the run (holds `n_steps`, the layout and the public memory).
pub const PUBLIC_INPUT: &str = "public_input.json";
/// `--air_private_input` of the run; its trace and memory paths are rewritten by the pod.
pub const PRIVATE_INPUT: &str = "private_input.json";
/// `--trace_file` of the run.
pub const TRACE: &str = "trace.bin";
/// `--memory_file` of the run.
pub const MEMORY: &str = "memory.bin";

const FILES: &[&str] = &[PUBLIC_INPUT, PRIVATE_INPUT, TRACE, MEMORY];

/// The Stone proof system.
pub struct StoneBackend {
    pub template: Vec<String>,
    /// `cpu_air_verifier` command, with `{proof}`; `None` when the pod cannot verify.
    pub verify_template: Option<Vec<String>>,
    pub work_root: Option<PathBuf>,
    pub timeout: Duration,
}

/// Registry entry: Stone needs no proving key; the pod is ready once any listed parameter
/// files are fetched and checked.
pub fn load(ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    let verify_template = ctx
        .args
        .exec_verify_template()
        .map_err(ParamsError::Invalid)?
        .or_else(|| Some(vec!["cpu_air_verifier".into(), "--in_file={proof}".into()]));
    let backend = StoneBackend {
        template: ctx.template.clone(),
        verify_template,
        work_root: ctx.args.exec_workdir.clone(),
        timeout: ctx.timeout,
    };
    Ok((Arc::new(backend), String::new()))
}

/// The run's JSON file, parsed.
fn json_file(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    name: &str,
) -> Result<Value, BackendError> {
    let value = super::json_file("stone", FILES, files, name, "give the file cairo-run wrote")?;
    if !value.is_object() {
        return Err(BackendError::InvalidFile {
            name: name.into(),
            reason: "not a JSON object; give the file cairo-run wrote".into(),
        });
    }
    Ok(value)
}

fn stone_input(input: ProofInput) -> Result<StoneInput, BackendError> {
    let ProofInput::Files(mut files) = input else {
        return Err(BackendError::WrongInput {
            system: "stone",
            takes: format!("the input files {}", FILES.join(", ")),
            given: "circuit inputs or a witness",
        });
    };
    let public_input = json_file(&files, PUBLIC_INPUT)?;
    let private_input = json_file(&files, PRIVATE_INPUT)?;
    Ok(StoneInput {
        public_input,
        private_input,
        trace: files.remove(TRACE).unwrap_or_default(),
        memory: files.remove(MEMORY).unwrap_or_default(),
    })
}

/// What a Cairo run makes public: the values of its output segment, read from the public
/// memory of its public input, and its step count and layout.
pub fn program_output(public_input: &Value) -> Value {
    let segment = &public_input["memory_segments"]["output"];
    let (begin, stop) = (segment["begin_addr"].as_u64(), segment["stop_ptr"].as_u64());
    let mut output: Vec<(u64, Value)> = match (begin, stop) {
        (Some(begin), Some(stop)) => public_input["public_memory"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|cell| {
                let address = cell["address"].as_u64()?;
                (begin..stop)
                    .contains(&address)
                    .then(|| (address, cell["value"].clone()))
            })
            .collect(),
        _ => Vec::new(),
    };
    output.sort_by_key(|(address, _)| *address);
    json!({
        "output": output.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "nSteps": public_input["n_steps"],
        "layout": public_input["layout"],
    })
}

impl Backend for StoneBackend {
    fn system(&self) -> &'static str {
        "stone"
    }

    fn input_files(&self) -> &'static [&'static str] {
        FILES
    }

    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        check_kind(self.system(), FILES, input)?;
        if let ProofInput::Files(files) = input {
            exec::stone_fri_for(&json_file(files, PUBLIC_INPUT)?)?;
            json_file(files, PRIVATE_INPUT)?;
        }
        Ok(())
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let input = stone_input(input)?;
        let fri = exec::stone_fri_for(&input.public_input)?;
        let start = Instant::now();
        let proof = exec::prove_stone_files(
            &self.template,
            &input,
            &fri,
            self.work_root.as_deref(),
            self.timeout,
            cancel,
        )
        .map_err(input_error)?;
        Ok(ProofOutput::stark(
            proof,
            program_output(&input.public_input),
            start,
        ))
    }

    fn verify(
        &self,
        proof: &Value,
        _: &[String],
        public_outputs: Option<&Value>,
    ) -> Result<Verdict, BackendError> {
        let template = self
            .verify_template
            .as_ref()
            .ok_or(BackendError::NoVerifier("stone"))?;
        // The output a job reports must be what the proof proves: the public input inside
        // the proof, which the verifier checks the proof against.
        let Some(public_input) = proof.get("public_input") else {
            return Ok(Err(
                "the proof has no public_input: it is not a Stone proof".into(),
            ));
        };
        let claimed = program_output(public_input);
        if public_outputs != Some(&claimed) {
            return Ok(Err(
                "the reported program output is not the one in the proof's public input".into(),
            ));
        }
        let dir = exec::work_dir(self.work_root.as_deref()).map_err(exec_error)?;
        let path = dir.path().join("proof.json");
        std::fs::write(&path, proof.to_string()).map_err(|e| BackendError::Exec(e.to_string()))?;
        let argv = exec::render(template, &[("proof", &path), ("workdir", dir.path())])
            .map_err(exec_error)?;
        run_verifier("the verify command", &argv, dir.path(), self.timeout)
    }

    /// The statement is the job's own public input (layout, `n_steps`, the public memory that
    /// holds the program and its output): the proof's public input must be exactly it.
    fn verify_input(
        &self,
        proof: &Value,
        _: &[String],
        public_outputs: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        let ProofInput::Files(files) = &input else {
            return Err(stone_input(input).err().unwrap_or_else(|| {
                BackendError::ProofShape("a Stone job takes input files".into())
            }));
        };
        let public_input = json_file(files, PUBLIC_INPUT)?;
        let statement = program_output(&public_input);
        let verdict = if proof.get("public_input") != Some(&public_input) {
            other_statement("public input (layout, steps or public memory)")
        } else {
            self.verify(proof, &[], public_outputs)?
        };
        Ok(Judged { verdict, statement })
    }
}
