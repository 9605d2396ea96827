//! StarkWare Stone (exec profile `stone`): `cpu_air_prover` proves a Cairo run, given as the
//! four files `cairo-run --proof_mode` writes. The pod chooses the FRI parameters from each
//! run's `n_steps` and writes Stone's config files (see [`crate::exec`]). Proofs are checked
//! with `cpu_air_verifier` (the verify template) on a pod other than the one that proved, and
//! the program output the job reports must be the one the proof's public input holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Backend, BackendError, Judged, LoadContext, ParamsError, ProofInput, ProofOutput, Verdict,
    check_kind, exec_error, input_error, other_statement, run_verifier,
};
use crate::cancel::Cancel;
use crate::exec::{self, ExecError};

/// `--air_public_input` of the run (holds `n_steps`, the layout and the public memory).
pub const PUBLIC_INPUT: &str = "public_input.json";
/// `--air_private_input` of the run; its trace and memory paths are rewritten by the pod.
pub const PRIVATE_INPUT: &str = "private_input.json";
/// `--trace_file` of the run.
pub const TRACE: &str = "trace.bin";
/// `--memory_file` of the run.
pub const MEMORY: &str = "memory.bin";

/// The input files a job carries, from the table of proof systems.
fn takes() -> &'static [&'static str] {
    super::files_of("stone")
}

/// Why the Stone FRI parameters cannot be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FriError {
    #[error("n_steps must be a power of two, got {0}")]
    NotPowerOfTwo(u64),
    #[error("n_steps must be at least 512, got {0}")]
    TooFewSteps(u64),
    #[error("last_layer_degree_bound must be a power of two, got {0}")]
    LastLayerNotPowerOfTwo(u64),
    #[error(
        "last_layer_degree_bound {bound} leaves no FRI steps for n_steps {n_steps}: \
         log2(bound) must be below log2(n_steps) + 4 = {total}"
    )]
    LastLayerTooLarge {
        bound: u64,
        n_steps: u64,
        total: u32,
    },
    #[error("the largest FRI step must be between 1 and 8, got {0}")]
    BadMaxStep(u32),
}

/// Stone FRI layout: log2(last_layer_degree_bound) + Σ fri_step_list = log2(n_steps) + 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriParameters {
    pub fri_step_list: Vec<u32>,
    pub last_layer_degree_bound: u64,
}

/// log2 of the blow-up Stone uses (`log_n_cosets`), the "+ 4" of the equation.
pub const LOG_N_COSETS: u32 = 4;

/// Chooses FRI parameters for a trace of `n_steps`: the first step is 0 (as
/// in Stone's examples), then steps of `max_step` and a smaller remainder;
/// the last layer defaults to degree bound 64.
pub fn fri_parameters(
    n_steps: u64,
    last_layer_degree_bound: Option<u64>,
    max_step: u32,
) -> Result<FriParameters, FriError> {
    if !(1..=8).contains(&max_step) {
        return Err(FriError::BadMaxStep(max_step));
    }
    if !n_steps.is_power_of_two() {
        return Err(FriError::NotPowerOfTwo(n_steps));
    }
    if n_steps < 512 {
        return Err(FriError::TooFewSteps(n_steps));
    }
    let total = n_steps.trailing_zeros() + LOG_N_COSETS;
    let bound = last_layer_degree_bound.unwrap_or(64);
    if !bound.is_power_of_two() {
        return Err(FriError::LastLayerNotPowerOfTwo(bound));
    }
    let log_bound = bound.trailing_zeros();
    if log_bound >= total {
        return Err(FriError::LastLayerTooLarge {
            bound,
            n_steps,
            total,
        });
    }
    let mut rest = total - log_bound;
    let mut steps = vec![0];
    while rest > 0 {
        let s = rest.min(max_step);
        steps.push(s);
        rest -= s;
    }
    Ok(FriParameters {
        fri_step_list: steps,
        last_layer_degree_bound: bound,
    })
}

/// The `cpu_air_params.json` Stone reads.
pub fn stone_parameter_file(fri: &FriParameters, n_queries: u32, proof_of_work_bits: u32) -> Value {
    json!({
        "field": "PrimeField0",
        "stark": {
            "fri": {
                "fri_step_list": fri.fri_step_list,
                "last_layer_degree_bound": fri.last_layer_degree_bound,
                "n_queries": n_queries,
                "proof_of_work_bits": proof_of_work_bits,
            },
            "log_n_cosets": LOG_N_COSETS,
        },
        "use_extension_field": false,
    })
}

/// Defaults of the Stone profile: 18 queries with 24 proof-of-work bits
/// (Stone's example, ~80 bits of security at blow-up 16), a last FRI layer of
/// degree bound 64, and FRI steps of at most 4 (folding by 16).
pub const STONE_N_QUERIES: u32 = 18;
pub const STONE_PROOF_OF_WORK_BITS: u32 = 24;
pub const STONE_LAST_LAYER_DEGREE_BOUND: u64 = 64;
pub const STONE_MAX_FRI_STEP: u32 = 4;

/// The `cpu_air_prover_config.json` the pod writes: Stone's own example
/// settings, which keep the low-degree extension in memory only where it
/// pays and split the work into tasks for all cores.
pub fn stone_prover_config() -> Value {
    json!({
        "cached_lde_config": {
            "store_full_lde": false,
            "use_fft_for_eval": false,
        },
        "constraint_polynomial_task_size": 256,
        "n_out_of_memory_merkle_layers": 1,
        "table_prover_n_tasks_per_segment": 32,
    })
}

/// Why a Stone request cannot be proved as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoneInputError {
    #[error(
        "public_input has no n_steps: give the public input cairo-run wrote (--air_public_input), which holds n_steps"
    )]
    MissingSteps,
    #[error(
        "n_steps {0}: {1}; run the Cairo program with a step count that is a power of two of at least 512 (cairo-run --proof_mode pads the trace to one)"
    )]
    BadSteps(String, FriError),
    #[error(
        "n_steps {0} is not a whole number: give the power of two (at least 512) cairo-run wrote"
    )]
    NotANumber(String),
}

/// The FRI parameters for a Cairo run, from the `n_steps` of its public input.
pub fn stone_fri_for(public_input: &Value) -> Result<FriParameters, StoneInputError> {
    let n_steps = public_input
        .get("n_steps")
        .ok_or(StoneInputError::MissingSteps)?;
    let n = n_steps
        .as_u64()
        .ok_or_else(|| StoneInputError::NotANumber(n_steps.to_string()))?;
    fri_parameters(n, Some(STONE_LAST_LAYER_DEGREE_BOUND), STONE_MAX_FRI_STEP)
        .map_err(|e| StoneInputError::BadSteps(n.to_string(), e))
}

/// One Stone proof's inputs: what `cairo-run` wrote for the program run.
#[derive(Clone, Debug)]
pub struct StoneInput {
    /// `--air_public_input` JSON (holds `n_steps`, layout, memory segments).
    pub public_input: Value,
    /// `--air_private_input` JSON; its `trace_path` and `memory_path` are
    /// replaced with the files the pod writes.
    pub private_input: Value,
    /// `--trace_file` bytes.
    pub trace: Vec<u8>,
    /// `--memory_file` bytes.
    pub memory: Vec<u8>,
}

/// A Stone proof: writes the inputs, `cpu_air_params.json` (from `fri`) and
/// `cpu_air_prover_config.json` into a fresh directory, runs the template
/// and returns the proof JSON it wrote to `{proof}`.
pub fn prove_stone_files(
    template: &[String],
    input: &StoneInput,
    fri: &FriParameters,
    work_root: Option<&Path>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<Value, ExecError> {
    let dir = exec::work_dir(work_root)?;
    let path = |name: &str| dir.path().join(name);
    let (trace, memory) = (path("trace.bin"), path("memory.bin"));
    std::fs::write(&trace, &input.trace)?;
    std::fs::write(&memory, &input.memory)?;
    let mut private = input.private_input.clone();
    if let Some(obj) = private.as_object_mut() {
        obj.insert("trace_path".into(), json!(trace.to_string_lossy()));
        obj.insert("memory_path".into(), json!(memory.to_string_lossy()));
    }
    let write = |name: &str, v: &Value| -> Result<PathBuf, ExecError> {
        let p = path(name);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?,
        )?;
        Ok(p)
    };
    let private = write("private_input.json", &private)?;
    let public = write("public_input.json", &input.public_input)?;
    let parameters = write(
        "cpu_air_params.json",
        &stone_parameter_file(fri, STONE_N_QUERIES, STONE_PROOF_OF_WORK_BITS),
    )?;
    let config = write("cpu_air_prover_config.json", &stone_prover_config())?;
    let proof = path("proof.json");
    let argv = exec::render(
        template,
        &[
            ("proof", &proof),
            ("public_input", &public),
            ("private_input", &private),
            ("prover_config", &config),
            ("parameters", &parameters),
            ("workdir", dir.path()),
        ],
    )?;
    exec::run(&argv, dir.path(), timeout, cancel)?;
    exec::read_json(&proof)
}

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
    let value = super::json_file(
        "stone",
        takes(),
        files,
        name,
        "give the file cairo-run wrote",
    )?;
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
            takes: format!("the input files {}", takes().join(", ")),
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

    /// A Stone proof file keeps its shape with the last digit of its proof changed.
    fn tamper(&self, proof: &mut Value) {
        match proof["proof_hex"].as_str().filter(|h| !h.is_empty()) {
            Some(hex) => {
                let last = if hex.ends_with('0') { "1" } else { "0" };
                let tampered = format!("{}{last}", &hex[..hex.len() - 1]);
                proof["proof_hex"] = Value::String(tampered);
            }
            None => super::tamper_binary(proof),
        }
    }

    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        check_kind(self.system(), takes(), input)?;
        if let ProofInput::Files(files) = input {
            stone_fri_for(&json_file(files, PUBLIC_INPUT)?)?;
            json_file(files, PRIVATE_INPUT)?;
        }
        Ok(())
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let input = stone_input(input)?;
        let fri = stone_fri_for(&input.public_input)?;
        let start = Instant::now();
        let proof = prove_stone_files(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n_steps: u64, p: &FriParameters) {
        let sum: u32 = p.fri_step_list.iter().sum();
        assert_eq!(
            p.last_layer_degree_bound.trailing_zeros() + sum,
            n_steps.trailing_zeros() + 4
        );
        assert!(p.last_layer_degree_bound.is_power_of_two());
    }

    #[test]
    fn fri_equation_holds_for_every_valid_size() {
        for log in 9..=30 {
            let n = 1u64 << log;
            for bound in [None, Some(1), Some(32), Some(128), Some(1u64 << (log + 3))] {
                for max_step in 1..=5 {
                    let p = fri_parameters(n, bound, max_step).unwrap();
                    check(n, &p);
                    assert!(p.fri_step_list.iter().all(|s| *s <= max_step));
                }
            }
        }
        // Stone's example layout: 16384 steps -> last layer 64, steps [0, 4, 4, 4].
        let p = fri_parameters(16384, None, 4).unwrap();
        assert_eq!(
            p,
            FriParameters {
                fri_step_list: vec![0, 4, 4, 4],
                last_layer_degree_bound: 64
            }
        );
        assert_eq!(
            fri_parameters(512, None, 4).unwrap().fri_step_list,
            vec![0, 4, 3]
        );
    }

    #[test]
    fn impossible_fri_combinations_are_refused() {
        assert_eq!(
            fri_parameters(1000, None, 4),
            Err(FriError::NotPowerOfTwo(1000))
        );
        assert_eq!(fri_parameters(0, None, 4), Err(FriError::NotPowerOfTwo(0)));
        assert_eq!(
            fri_parameters(256, None, 4),
            Err(FriError::TooFewSteps(256))
        );
        assert_eq!(
            fri_parameters(1024, Some(100), 4),
            Err(FriError::LastLayerNotPowerOfTwo(100))
        );
        assert_eq!(
            fri_parameters(1024, Some(1 << 14), 4),
            Err(FriError::LastLayerTooLarge {
                bound: 1 << 14,
                n_steps: 1024,
                total: 14
            })
        );
        assert_eq!(fri_parameters(1024, None, 0), Err(FriError::BadMaxStep(0)));
        let msg = fri_parameters(1024, Some(1 << 20), 4)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("last_layer_degree_bound"), "{msg}");
    }

    #[test]
    fn the_parameter_file_holds_the_fri_steps() {
        let p = stone_parameter_file(&fri_parameters(16384, None, 4).unwrap(), 18, 24);
        assert_eq!(p["stark"]["fri"]["fri_step_list"], json!([0, 4, 4, 4]));
    }
}
