//! The proving backends behind one interface, and the errors they report
//! with stable codes (the `code` of the HTTP error body and the `outcome`
//! label of the proofs metric).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cancel::Cancel;
use crate::exec::{ExecError, StoneInput, StoneInputError};
use crate::groth16::json::{self, ProofJson};
use crate::groth16::preprocessed::{self, LoadReport};
use crate::groth16::witness::{WitnessCalculator, WitnessError};
use crate::groth16::{Groth16Error, Prover, wtns};
use crate::params::FetchError;

/// What to prove: circuit inputs (the witness is computed from the circuit's
/// wasm), a ready `.wtns` witness, or a Cairo run for Stone.
#[derive(Clone, Debug)]
pub enum ProofInput {
    Inputs(Value),
    Wtns(Vec<u8>),
    Stone(StoneInput),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub witness_ms: f64,
    pub prove_ms: f64,
}

/// A proof as JSON (snarkjs form for Groth16, Stone's proof file for Stone)
/// with its public signals (none for Stone: its public input is the request's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProofOutput {
    pub proof: Value,
    pub public_signals: Vec<String>,
    pub timings: Timings,
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
    #[error("{0}")]
    Exec(String),
    #[error("the proof was cancelled before it finished")]
    Cancelled,
    #[error(transparent)]
    StoneInput(#[from] StoneInputError),
    #[error(
        "this pod runs Stone (exec profile stone) and proves Cairo runs: send `stone` with publicInput, privateInput, trace and memory"
    )]
    StoneOnly,
    #[error(
        "this pod proves Groth16 circuits, not Cairo runs: send `inputs` or `witness`, or send `stone` to a pod started with --exec-profile stone"
    )]
    NotStone,
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
            },
            BackendError::Proof(json::JsonError::BadSignal(_)) => "invalid_public_signal",
            BackendError::Proof(_) => "invalid_proof",
            BackendError::NoWasm => "inputs_unsupported",
            BackendError::Exec(_) => "prover_failed",
            BackendError::Cancelled => "cancelled",
            BackendError::StoneInput(StoneInputError::MissingSteps) => "missing_n_steps",
            BackendError::StoneInput(
                StoneInputError::BadSteps(..) | StoneInputError::NotANumber(_),
            ) => "invalid_n_steps",
            BackendError::StoneOnly | BackendError::NotStone => "wrong_input_kind",
        }
    }

    /// True when the request is malformed rather than unprovable (400, not 422).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            BackendError::StoneInput(_) | BackendError::StoneOnly | BackendError::NotStone
        )
    }

    /// True when the request itself is at fault (4xx), false for the pod (5xx). A
    /// cancelled proof says nothing about its input, so it is worth another try.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self.code(),
            "invalid_parameters" | "prover_failed" | "cancelled"
        )
    }
}

/// A proving backend with its parameters loaded.
pub trait Backend: Send + Sync {
    /// The backend name as in `ProverPool.spec.backend` (`groth16-bn254`, `exec`).
    fn name(&self) -> &'static str;
    /// Refuses a request before it takes a slot (input of the wrong kind,
    /// a Stone trace length no FRI layout fits).
    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        match input {
            ProofInput::Stone(_) => Err(BackendError::NotStone),
            _ => Ok(()),
        }
    }
    /// Proves `input`, giving up with [`BackendError::Cancelled`] soon after `cancel` is
    /// raised (the waiting side went away: lease revoked, timeout, client gone).
    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError>;
    /// Whether `verify` can check this backend's proofs.
    fn verifies(&self) -> bool {
        true
    }
    fn verify(&self, proof: &ProofJson, public_signals: &[String]) -> Result<bool, BackendError>;
    /// snarkjs `verification_key.json`, when the backend has one.
    fn verification_key(&self) -> Option<Value>;
}

/// Where the groth16 parameters are on local disk.
#[derive(Clone, Debug)]
pub struct Groth16Files {
    pub zkey: PathBuf,
    pub zkey_sha256: Option<String>,
    pub wasm: Option<PathBuf>,
    pub wasm_sha256: Option<String>,
    pub cache_dir: Option<PathBuf>,
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
            FetchError::Config(_) => ParamsError::Invalid(e.to_string()),
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

/// The `groth16-bn254` backend.
pub struct Groth16Backend {
    prover: Prover,
    witness: Option<WitnessCalculator>,
    vk_json: Value,
    pub report: LoadReport,
}

impl Groth16Backend {
    /// Loads and checks the zkey (through the preprocessed cache) and the wasm.
    pub fn load(files: &Groth16Files) -> Result<Arc<Self>, ParamsError> {
        Self::load_inner(files, false)
    }

    /// Like [`Groth16Backend::load`] for files whose sha256 the parameters
    /// loader has just checked against `zkey_sha256`/`wasm_sha256` (the
    /// digests must be set): the zkey is not hashed again, so a cached
    /// preprocessed key is used without reading the zkey at all.
    pub fn load_checked(files: &Groth16Files) -> Result<Arc<Self>, ParamsError> {
        Self::load_inner(files, true)
    }

    fn load_inner(files: &Groth16Files, checked: bool) -> Result<Arc<Self>, ParamsError> {
        let (zkey, report) = match &files.zkey_sha256 {
            Some(known) if checked => preprocessed::load(
                &files.zkey,
                Some(known.trim_start_matches("sha256:")),
                files.cache_dir.as_deref(),
            ),
            // With an expected digest the file is always hashed and compared,
            // so a cache entry is only used for the exact bytes asked for.
            Some(expected) => {
                let expected = expected.trim_start_matches("sha256:");
                let bytes = std::fs::read(&files.zkey).map_err(|e| {
                    ParamsError::Unavailable(format!("cannot read {}: {e}", files.zkey.display()))
                })?;
                let actual = preprocessed::sha256_hex(&bytes);
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(ParamsError::DigestMismatch {
                        file: files.zkey.display().to_string(),
                        expected: expected.to_ascii_lowercase(),
                        actual,
                    });
                }
                drop(bytes);
                preprocessed::load(&files.zkey, Some(&actual), files.cache_dir.as_deref())
            }
            None => preprocessed::load(&files.zkey, None, files.cache_dir.as_deref()),
        }
        .map_err(|e| match e {
            preprocessed::LoadError::Read { .. } => ParamsError::Unavailable(e.to_string()),
            preprocessed::LoadError::Zkey { .. } => ParamsError::Invalid(e.to_string()),
        })?;
        let prover = Prover::new(zkey).map_err(|e| ParamsError::Invalid(e.to_string()))?;
        let witness = match &files.wasm {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    ParamsError::Unavailable(format!("cannot read {}: {e}", path.display()))
                })?;
                if let Some(expected) = files.wasm_sha256.as_ref().filter(|_| !checked) {
                    let expected = expected.trim_start_matches("sha256:");
                    let actual = preprocessed::sha256_hex(&bytes);
                    if !actual.eq_ignore_ascii_case(expected) {
                        return Err(ParamsError::DigestMismatch {
                            file: path.display().to_string(),
                            expected: expected.to_ascii_lowercase(),
                            actual,
                        });
                    }
                }
                let calc = WitnessCalculator::new(&bytes)
                    .map_err(|e| ParamsError::Invalid(format!("{}: {e}", path.display())))?;
                if calc.witness_size() != prover.n_vars() {
                    return Err(ParamsError::Invalid(format!(
                        "{} computes {} signals but the zkey has {}: they are not the same circuit",
                        path.display(),
                        calc.witness_size(),
                        prover.n_vars()
                    )));
                }
                Some(calc)
            }
            None => None,
        };
        let vk_json = json::verification_key_json(&prover.zkey.pk.vk);
        Ok(Arc::new(Groth16Backend {
            prover,
            witness,
            vk_json,
            report,
        }))
    }
}

/// An external prover's failure; a cancelled run keeps its own code.
fn exec_error(e: ExecError) -> BackendError {
    match e {
        ExecError::Cancelled => BackendError::Cancelled,
        e => BackendError::Exec(e.to_string()),
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Groth16Backend {
    /// The witness of a request as `.wtns` bytes (computed from inputs when needed).
    pub fn witness_file(&self, input: ProofInput) -> Result<Vec<u8>, BackendError> {
        match input {
            ProofInput::Wtns(bytes) => {
                let w = wtns::parse(&bytes)?;
                if w.len() != self.prover.n_vars() {
                    return Err(Groth16Error::WrongWitnessLength {
                        expected: self.prover.n_vars(),
                        got: w.len(),
                    }
                    .into());
                }
                Ok(bytes)
            }
            ProofInput::Inputs(v) => Ok(wtns::write(
                &self
                    .witness
                    .as_ref()
                    .ok_or(BackendError::NoWasm)?
                    .calculate(&v)?,
            )),
            ProofInput::Stone(_) => Err(BackendError::NotStone),
        }
    }
}

/// The `exec` backend for Groth16 provers with the snarkjs file contract
/// (profiles `snarkjs`, `rapidsnark`, or a custom template): the external
/// program proves; the pod computes witnesses and verifies natively with
/// the zkey it also loads.
pub struct ExecGroth16Backend {
    pub inner: Arc<Groth16Backend>,
    pub zkey: PathBuf,
    pub template: Vec<String>,
    pub work_root: Option<PathBuf>,
    pub timeout: std::time::Duration,
}

impl Backend for ExecGroth16Backend {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let start = Instant::now();
        let wtns_bytes = self.inner.witness_file(input)?;
        let witness_ms = ms(start);
        let start = Instant::now();
        let (proof, public_signals) = crate::exec::prove_groth16_files(
            &self.template,
            &self.zkey,
            &wtns_bytes,
            self.work_root.as_deref(),
            self.timeout,
            cancel,
        )
        .map_err(exec_error)?;
        // Checked for shape only: a proof.json that is not a Groth16 proof is the prover's fault.
        serde_json::from_value::<ProofJson>(proof.clone()).map_err(|e| {
            BackendError::Exec(format!(
                "prover wrote a proof.json that is not a groth16 proof: {e}"
            ))
        })?;
        Ok(ProofOutput {
            proof,
            public_signals,
            timings: Timings {
                witness_ms,
                prove_ms: ms(start),
            },
        })
    }

    fn verify(&self, proof: &ProofJson, public_signals: &[String]) -> Result<bool, BackendError> {
        self.inner.verify(proof, public_signals)
    }

    fn verification_key(&self) -> Option<Value> {
        self.inner.verification_key()
    }
}

impl Backend for Groth16Backend {
    fn name(&self) -> &'static str {
        "groth16-bn254"
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let start = Instant::now();
        let witness = match input {
            ProofInput::Inputs(v) => self
                .witness
                .as_ref()
                .ok_or(BackendError::NoWasm)?
                .calculate(&v)?,
            ProofInput::Wtns(bytes) => wtns::parse(&bytes)?,
            ProofInput::Stone(_) => return Err(BackendError::NotStone),
        };
        let witness_ms = ms(start);
        let start = Instant::now();
        let (proof, public) = self.prover.prove_cancellable(&witness, cancel)?;
        Ok(ProofOutput {
            proof: serde_json::to_value(ProofJson::from_proof(&proof))
                .map_err(|e| BackendError::Exec(format!("cannot write the proof as JSON: {e}")))?,
            public_signals: json::public_json(&public),
            timings: Timings {
                witness_ms,
                prove_ms: ms(start),
            },
        })
    }

    fn verify(&self, proof: &ProofJson, public_signals: &[String]) -> Result<bool, BackendError> {
        let proof = proof.to_proof()?;
        let public = json::parse_public(public_signals)?;
        Ok(self.prover.verify(&proof, &public)?)
    }

    fn verification_key(&self) -> Option<Value> {
        Some(self.vk_json.clone())
    }
}

/// The `exec` backend with the `stone` profile: StarkWare Stone's
/// `cpu_air_prover` proves Cairo runs. The pod chooses the FRI parameters from
/// each run's `n_steps`; it has no verifier for Stone proofs.
pub struct StoneBackend {
    pub template: Vec<String>,
    pub work_root: Option<PathBuf>,
    pub timeout: std::time::Duration,
}

impl Backend for StoneBackend {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn check(&self, input: &ProofInput) -> Result<(), BackendError> {
        match input {
            ProofInput::Stone(s) => crate::exec::stone_fri_for(&s.public_input)
                .map(drop)
                .map_err(Into::into),
            _ => Err(BackendError::StoneOnly),
        }
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let ProofInput::Stone(input) = input else {
            return Err(BackendError::StoneOnly);
        };
        let fri = crate::exec::stone_fri_for(&input.public_input)?;
        let start = Instant::now();
        let proof = crate::exec::prove_stone_files(
            &self.template,
            &input,
            &fri,
            self.work_root.as_deref(),
            self.timeout,
            cancel,
        )
        .map_err(exec_error)?;
        Ok(ProofOutput {
            proof,
            public_signals: Vec::new(),
            timings: Timings {
                witness_ms: 0.0,
                prove_ms: ms(start),
            },
        })
    }

    fn verifies(&self) -> bool {
        false
    }

    fn verify(&self, _: &ProofJson, _: &[String]) -> Result<bool, BackendError> {
        Err(BackendError::Exec(
            "this pod does not verify Stone proofs".into(),
        ))
    }

    fn verification_key(&self) -> Option<Value> {
        None
    }
}
