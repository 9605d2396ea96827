//! The proof-system seam: every proof system the pod runs is one module behind [`Backend`]
//! (the input it takes, prove, verify, what its proof and public outputs are), found by name
//! in [`REGISTRY`]. The HTTP server and agent mode know nothing of any system; they prove
//! through [`crate::runner`] and verify through [`Backend::verify`]. Errors carry stable codes
//! (the `code` of the HTTP error body and the `outcome` label of the proofs metric).
//!
//! Adding a proof system: its row in zkfleet's table of proof systems
//! (`zkfleet_contract::systems`: name, input files, default command, verifier), a module here
//! with its `load` function and its tests, and one line in [`REGISTRY`]. The test below holds
//! the two lists together.

pub mod groth16;
pub mod miden;
pub mod stone;
pub mod stwo;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cancel::Cancel;
use crate::exec::ExecError;
use crate::groth16::json;
use crate::groth16::witness::WitnessError;
use crate::groth16::{Groth16Error, wtns};
use crate::params::{FetchError, Fetched};
use stone::StoneInputError;

pub use groth16::{ExecGroth16Backend, Groth16Backend, Groth16Files};

/// What to prove: circuit inputs (the witness is computed from the circuit's wasm), a ready
/// `.wtns` witness (Groth16), or named input files (STARK and VM provers).
#[derive(Clone, Debug)]
pub enum ProofInput {
    Inputs(Value),
    Wtns(Vec<u8>),
    Files(BTreeMap<String, Vec<u8>>),
}

impl ProofInput {
    /// The kind of input, for messages.
    fn kind(&self) -> &'static str {
        match self {
            ProofInput::Inputs(_) => "circuit inputs",
            ProofInput::Wtns(_) => "a witness",
            ProofInput::Files(_) => "input files",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub witness_ms: f64,
    pub prove_ms: f64,
}

/// A proof as JSON (snarkjs form for Groth16, Stone's proof file for Stone, `{"base64": ..}`
/// for binary proofs) with what it commits to: Groth16 public signals, or the public outputs
/// of other systems.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProofOutput {
    pub proof: Value,
    pub public_signals: Vec<String>,
    pub public_outputs: Option<Value>,
    pub timings: Timings,
}

impl ProofOutput {
    /// The output of a Groth16 prover: snarkjs `proof.json` and public signals.
    pub fn groth16(
        proof: Value,
        public_signals: Vec<String>,
        witness_ms: f64,
        proving_started: Instant,
    ) -> Self {
        ProofOutput {
            proof,
            public_signals,
            public_outputs: None,
            timings: Timings {
                witness_ms,
                prove_ms: ms(proving_started),
            },
        }
    }

    /// The output of a STARK or VM prover: its proof and public outputs, no public signals,
    /// no witness step.
    pub fn stark(proof: Value, public_outputs: Value, proving_started: Instant) -> Self {
        ProofOutput {
            proof,
            public_signals: Vec::new(),
            public_outputs: Some(public_outputs),
            timings: Timings {
                witness_ms: 0.0,
                prove_ms: ms(proving_started),
            },
        }
    }
}

/// A proof system's answer about one proof: `Ok(())` when it verifies, else why not.
pub type Verdict = Result<(), String>;

/// A proof checked against a job's own input: the verdict, and the statement it was checked
/// against as derived from the input (never taken from the proof).
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub statement: Value,
}

/// The verdict on a proof whose claims differ from what the job's input gives. It names no
/// value: the claims of a proof of another statement may be another tenant's.
pub(crate) fn other_statement(what: &str) -> Verdict {
    Err(format!(
        "the proof is of another statement: its {what} differ from those the job's input gives"
    ))
}

/// A request the backend refuses or cannot finish; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Witness(#[from] WitnessError),
    #[error("invalid .wtns witness: {0}")]
    Wtns(#[from] wtns::WtnsError),
    #[error(transparent)]
    Groth16(#[from] Groth16Error),
    #[error("invalid proof: {0}")]
    Proof(#[from] json::JsonError),
    #[error("this pod has no circuit wasm, so it only proves .wtns witnesses")]
    NoWasm,
    #[error("proof is not of the expected shape: {0}")]
    ProofShape(String),
    #[error("{0}")]
    Exec(String),
    #[error("the proof was cancelled before it finished")]
    Cancelled,
    #[error(transparent)]
    StoneInput(#[from] StoneInputError),
    #[error("this pod runs {system}, which takes {takes}, not {given}")]
    WrongInput {
        system: &'static str,
        takes: String,
        given: &'static str,
    },
    #[error(
        "input file {name} is missing: {system} takes the files {takes}; add it to the job's input.files"
    )]
    MissingFile {
        system: &'static str,
        name: String,
        takes: String,
    },
    #[error("input file {name} is not one {system} takes ({takes}); remove it or rename it")]
    UnknownFile {
        system: &'static str,
        name: String,
        takes: String,
    },
    #[error("input file {name}: {reason}")]
    InvalidFile { name: String, reason: String },
    #[error("the prover rejected the input: {0}")]
    InputRejected(String),
    #[error("this pod cannot verify {0} proofs: it has no verifier configured")]
    NoVerifier(&'static str),
}

impl BackendError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::Witness(e) => match e {
                WitnessError::NotAnObject => "invalid_input",
                WitnessError::UnknownSignal(_) => "unknown_signal",
                WitnessError::WrongSize { .. } => "wrong_signal_size",
                WitnessError::NotAFieldValue { .. } => "invalid_signal_value",
                WitnessError::MissingSignal { .. } => "missing_signal",
                WitnessError::Rejected(_) => "witness_rejected",
                WitnessError::BadWasm(_) | WitnessError::WrongField => "invalid_parameters",
            },
            BackendError::Wtns(_) => "invalid_witness",
            BackendError::Groth16(e) => match e {
                Groth16Error::WrongWitnessLength { .. } | Groth16Error::WitnessNotOne => {
                    "wrong_witness_length"
                }
                Groth16Error::WrongPublicCount { .. } => "wrong_public_count",
                Groth16Error::BadDomain(_) => "invalid_parameters",
                Groth16Error::Cancelled => "cancelled",
                // Not the pod's fault nor worth a retry: the job's own witness is wrong.
                Groth16Error::Unsatisfied { .. } => "input_rejected",
            },
            BackendError::Proof(json::JsonError::BadSignal(_)) => "invalid_public_signal",
            BackendError::Proof(_) => "invalid_proof",
            BackendError::NoWasm => "inputs_unsupported",
            BackendError::ProofShape(_) => "invalid_json",
            BackendError::Exec(_) => "prover_failed",
            BackendError::Cancelled => "cancelled",
            BackendError::StoneInput(StoneInputError::MissingSteps) => "missing_n_steps",
            BackendError::StoneInput(
                StoneInputError::BadSteps(..) | StoneInputError::NotANumber(_),
            ) => "invalid_n_steps",
            BackendError::WrongInput { .. } => "wrong_input_kind",
            BackendError::MissingFile { .. } => "missing_input_file",
            BackendError::UnknownFile { .. } => "unknown_input_file",
            BackendError::InvalidFile { .. } => "invalid_input_file",
            BackendError::InputRejected(_) => "input_rejected",
            BackendError::NoVerifier(_) => "verification_unsupported",
        }
    }

    /// True when the request is malformed rather than unprovable (400, not 422).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            BackendError::StoneInput(_)
                | BackendError::WrongInput { .. }
                | BackendError::MissingFile { .. }
                | BackendError::UnknownFile { .. }
                | BackendError::InvalidFile { .. }
                | BackendError::ProofShape(_)
        )
    }

    /// True when the request itself is at fault (4xx), false for the pod (5xx). A
    /// cancelled proof says nothing about its input, so it is worth another try.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self.code(),
            "invalid_parameters" | "prover_failed" | "cancelled" | "verification_unsupported"
        )
    }
}

/// A proof system with its parameters loaded: one per pod.
pub trait Backend: Send + Sync {
    /// The proof system's name in the registry (`groth16-bn254`, `snarkjs`, `rapidsnark`,
    /// `stone`, `miden`).
    fn system(&self) -> &'static str;
    /// The named input files a job must carry (from the table of proof systems), or empty
    /// for Groth16 systems, which take circuit inputs or a witness.
    fn input_files(&self) -> &'static [&'static str] {
        files_of(self.system())
    }
    /// Refuses a request before it takes a slot (input of the wrong kind, a missing file,
    /// a Stone trace length no FRI layout fits).
    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        check_kind(self.system(), self.input_files(), input)
    }
    /// Proves `input`, giving up with [`BackendError::Cancelled`] soon after `cancel` is
    /// raised (the waiting side went away: lease revoked, timeout, client gone).
    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError>;
    /// Checks a proof against what it claims (`public_signals` for Groth16, `public_outputs`
    /// for other systems) under this pod's parameters: the verdict, or an error when the
    /// proof cannot be checked here at all.
    fn verify(
        &self,
        proof: &Value,
        public_signals: &[String],
        public_outputs: Option<&Value>,
    ) -> Result<Verdict, BackendError>;
    /// Checks a proof of the job's `input`: derives the statement from the input and this
    /// pod's parameters, refuses a proof whose claims differ from it (a valid proof of another
    /// statement), and checks the proof against the derived statement. An input no statement
    /// can be derived from is an error for which [`BackendError::is_client_error`] holds: the
    /// input's fault, not the prover's.
    fn verify_input(
        &self,
        proof: &Value,
        public_signals: &[String],
        public_outputs: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError>;
    /// Fault injection (`corrupt-proofs`): changes `proof` so this system's verifier must
    /// refuse it, keeping its shape where it can so only a real verifier can tell. The default
    /// flips one bit in the middle of a binary proof (`{"base64": ..}`) and wraps anything
    /// else out of shape.
    fn tamper(&self, proof: &mut Value) {
        tamper_binary(proof);
    }
    /// snarkjs `verification_key.json`, when the system has one.
    fn verification_key(&self) -> Option<Value> {
        None
    }
}

/// The default input check: Groth16 systems (no input files) take circuit inputs or a
/// witness; file systems take exactly their files.
pub fn check_kind(
    system: &'static str,
    takes: &'static [&'static str],
    input: &ProofInput,
) -> Result<(), BackendError> {
    let names = || takes.join(", ");
    match (takes.is_empty(), input) {
        (true, ProofInput::Files(_)) => Err(BackendError::WrongInput {
            system,
            takes: "circuit inputs or a witness".into(),
            given: input.kind(),
        }),
        (true, _) => Ok(()),
        (false, ProofInput::Files(files)) => {
            if let Some(name) = files.keys().find(|n| !takes.contains(&n.as_str())) {
                return Err(BackendError::UnknownFile {
                    system,
                    name: name.clone(),
                    takes: names(),
                });
            }
            if let Some(name) = takes.iter().find(|n| !files.contains_key(**n)) {
                return Err(BackendError::MissingFile {
                    system,
                    name: name.to_string(),
                    takes: names(),
                });
            }
            Ok(())
        }
        (false, _) => Err(BackendError::WrongInput {
            system,
            takes: format!("the input files {}", names()),
            given: input.kind(),
        }),
    }
}

/// Writes a file a prover or verifier reads, in a proof's work directory.
pub(crate) fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), BackendError> {
    std::fs::write(path, bytes)
        .map_err(|e| BackendError::Exec(format!("cannot write {}: {e}", path.display())))
}

/// A binary proof file as the proof JSON carries it: `{"base64": ..}`.
pub(crate) fn binary_proof(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    serde_json::json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// The bytes of a binary proof (`{"base64": ..}`), when it is one.
pub(crate) fn binary_proof_bytes(proof: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = proof["base64"].as_str()?;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The default [`Backend::tamper`]: one bit flipped in the middle of a binary proof, else
/// the proof wrapped out of shape.
pub(crate) fn tamper_binary(proof: &mut Value) {
    match binary_proof_bytes(proof).filter(|b| !b.is_empty()) {
        Some(mut bytes) => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            *proof = binary_proof(&bytes);
        }
        None => *proof = serde_json::json!({ "corrupted": proof.take() }),
    }
}

/// The input files of `system`, from the table of proof systems.
pub(crate) fn files_of(system: &str) -> &'static [&'static str] {
    zkfleet_contract::systems::proof_system(system).map_or(&[], |s| s.input_files)
}

/// A JSON input file of a file-taking system, parsed; `reason` ends the message of a file that
/// is not JSON (what the user should send instead).
pub(crate) fn json_file(
    system: &'static str,
    takes: &[&str],
    files: &BTreeMap<String, Vec<u8>>,
    name: &str,
    reason: &str,
) -> Result<Value, BackendError> {
    let bytes = files.get(name).ok_or_else(|| BackendError::MissingFile {
        system,
        name: name.into(),
        takes: takes.join(", "),
    })?;
    serde_json::from_slice(bytes).map_err(|e| BackendError::InvalidFile {
        name: name.into(),
        reason: format!("not JSON ({e}); {reason}"),
    })
}

/// Everything a proof system may need to load: its flags and the checked parameter files.
pub struct LoadContext {
    /// The pod's flags.
    pub args: crate::config::ServeArgs,
    /// The parameter files as fetched and checked, when a source is configured.
    pub fetched: Option<Fetched>,
    /// The exec command template (profile default or the pool's command).
    pub template: Vec<String>,
    /// Longest one external prover run may take.
    pub timeout: Duration,
}

impl LoadContext {
    /// The program a `system` pool proves: the one parameter file with the extension the
    /// table of proof systems gives it (`.masm` for Miden), by name and local path.
    pub fn program_file(&self, system: &str) -> Result<(String, PathBuf), ParamsError> {
        let ext = zkfleet_contract::systems::proof_system(system)
            .and_then(|s| s.program_extension)
            .ok_or_else(|| ParamsError::Invalid(format!("{system} proves no pool-held program")))?;
        let names: Vec<String> = match &self.fetched {
            Some(f) => f.files.iter().map(|f| f.name.clone()).collect(),
            None => self
                .args
                .parameter_files
                .iter()
                .map(|f| f.name.clone())
                .collect(),
        };
        let programs: Vec<&String> = names.iter().filter(|n| n.ends_with(ext)).collect();
        let [program] = programs.as_slice() else {
            return Err(ParamsError::Invalid(format!(
                "the {system} profile proves one program ({ext}), but the parameter files hold {} {ext} files: list exactly one in spec.parameters.files",
                programs.len()
            )));
        };
        let path = self.parameter_file(program).ok_or_else(|| {
            ParamsError::Unavailable(format!(
                "the program {program} is not among the loaded parameter files"
            ))
        })?;
        Ok((program.to_string(), path))
    }

    /// A parameter file's local path: from the fetched set, else under --parameters-dir.
    pub fn parameter_file(&self, name: &str) -> Option<PathBuf> {
        if let Some(f) = self.fetched.as_ref().and_then(|f| f.get(name)) {
            return Some(f.path.clone());
        }
        self.args
            .parameters_dir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
    }
}

/// Loads a proof system: the system and the digest the pod reports (the proving key's for
/// Groth16, the parameter files' for others).
pub type LoadFn = fn(&LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError>;

/// Every proof system, by name. `groth16-bn254` is the built-in prover; the rest are exec
/// profiles.
pub const REGISTRY: &[(&str, LoadFn)] = &[
    ("groth16-bn254", groth16::load_builtin),
    ("snarkjs", groth16::load_exec),
    ("rapidsnark", groth16::load_exec),
    ("stone", stone::load),
    ("miden", miden::load),
    ("stwo", stwo::load),
];

/// Loads the proof system named `system` (see [`REGISTRY`]).
pub fn load(system: &str, ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    let (_, load) = REGISTRY
        .iter()
        .find(|(name, _)| *name == system)
        .ok_or_else(|| ParamsError::Invalid(format!("no proof system named {system}")))?;
    load(ctx)
}

/// An external prover's failure; a cancelled run keeps its own code.
pub(crate) fn exec_error(e: ExecError) -> BackendError {
    match e {
        ExecError::Cancelled => BackendError::Cancelled,
        e => BackendError::Exec(e.to_string()),
    }
}

/// The failure of a STARK or VM prover that reads a job's own files: one that exits with a
/// status refused the input (a trace Stone cannot prove, a failed MASM assertion), which no
/// retry can fix; one killed by a signal (out of memory, a timeout) may do better elsewhere.
pub(crate) fn input_error(e: ExecError) -> BackendError {
    match e {
        ExecError::Failed { code, stderr_tail } if code.starts_with("code ") => {
            BackendError::InputRejected(format!("the prover exited with {code}: {stderr_tail}"))
        }
        e => exec_error(e),
    }
}

/// Runs a command-line verifier: exit 0 is valid, another exit status is the verdict "invalid"
/// with the verifier's words; a verifier that cannot be started or is killed is an error.
/// `name` says which verifier, in the verdict.
pub(crate) fn run_verifier(
    name: &str,
    argv: &[String],
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<Verdict, BackendError> {
    match crate::exec::run(argv, dir, timeout, &Cancel::new()) {
        Ok(()) => Ok(Ok(())),
        Err(ExecError::Failed { code, stderr_tail }) if code.starts_with("code ") => {
            Ok(Err(format!("{name} exited with {code}: {stderr_tail}")))
        }
        Err(e) => Err(exec_error(e)),
    }
}

pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Why parameters could not be loaded; the pod stays up and not ready.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "parameters digest sha256:{expected} does not match file {file} (its sha256 is sha256:{actual}); fix the file or its sha256 in the parameters"
    )]
    DigestMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<FetchError> for ParamsError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::DigestMismatch {
                name,
                expected,
                actual,
            } => ParamsError::DigestMismatch {
                file: name,
                expected: expected.hex(),
                actual: actual.hex(),
            },
            FetchError::Unavailable { .. } => ParamsError::Unavailable(e.to_string()),
            FetchError::Config(_)
            | FetchError::InputMismatch { .. }
            | FetchError::TooLarge { .. } => ParamsError::Invalid(e.to_string()),
        }
    }
}

impl ParamsError {
    pub fn code(&self) -> &'static str {
        match self {
            ParamsError::DigestMismatch { .. } => "digest_mismatch",
            ParamsError::Invalid(_) => "invalid_parameters",
            ParamsError::Unavailable(_) => "parameters_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proof_system_of_the_table_has_a_backend_and_back() {
        for system in zkfleet_contract::systems::PROOF_SYSTEMS {
            assert!(
                REGISTRY.iter().any(|(name, _)| *name == system.name),
                "{} is in the table but has no backend in REGISTRY",
                system.name
            );
        }
        for (name, _) in REGISTRY {
            assert!(
                *name == "groth16-bn254" || zkfleet_contract::systems::proof_system(name).is_some(),
                "{name} has a backend but no row in the table"
            );
        }
        // The files the backends read by name are the ones the table lists.
        assert!(files_of("stone").contains(&stone::PUBLIC_INPUT));
        assert!(files_of("stone").contains(&stone::TRACE));
        assert!(files_of("miden").contains(&miden::INPUTS));
        assert!(files_of("stwo").contains(&stwo::PROGRAM_INPUT));
    }
}
