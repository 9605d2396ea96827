//! Groth16 over BN254, circom/snarkjs compatible: the built-in prover (`groth16-bn254`) and
//! external provers with the snarkjs file contract (exec profiles `snarkjs`, `rapidsnark`).
//! Both take circuit inputs or a `.wtns` witness and are verified with the circuit's key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{
    Backend, BackendError, Judged, LoadContext, ParamsError, ProofInput, ProofOutput, Verdict,
    exec_error, ms, other_statement,
};
use crate::cancel::Cancel;
use crate::config::Acceleration;
use crate::groth16::json::{self, ProofJson};
use crate::groth16::preprocessed::{self, LoadReport};
use crate::groth16::r1cs::ConstraintSystem;
use crate::groth16::witness::WitnessCalculator;
use crate::groth16::{Groth16Error, Prover, wtns};

/// Where the groth16 parameters are on local disk.
#[derive(Clone, Debug)]
pub struct Groth16Files {
    pub zkey: PathBuf,
    pub zkey_sha256: Option<String>,
    pub wasm: Option<PathBuf>,
    pub wasm_sha256: Option<String>,
    /// The circuit's constraints, to refuse a `.wtns` that breaks them before proving it.
    pub r1cs: Option<PathBuf>,
    pub r1cs_sha256: Option<String>,
    pub cache_dir: Option<PathBuf>,
}

/// The `groth16-bn254` backend.
pub struct Groth16Backend {
    prover: Prover,
    witness: Option<WitnessCalculator>,
    constraints: Option<ConstraintSystem>,
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
                drop(read_checked(&files.zkey, Some(expected))?);
                let digest = expected.trim_start_matches("sha256:").to_ascii_lowercase();
                preprocessed::load(&files.zkey, Some(&digest), files.cache_dir.as_deref())
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
                let bytes = read_checked(path, files.wasm_sha256.as_deref().filter(|_| !checked))?;
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
        let constraints = match &files.r1cs {
            Some(path) => Some(load_r1cs(
                path,
                files.r1cs_sha256.as_deref().filter(|_| !checked),
                &prover,
            )?),
            None => None,
        };
        let vk_json = json::verification_key_json(&prover.zkey.pk.vk);
        Ok(Arc::new(Groth16Backend {
            prover,
            witness,
            constraints,
            vk_json,
            report,
        }))
    }
}

impl Groth16Backend {
    /// The witness of a request as `.wtns` bytes (computed from inputs when needed).
    pub fn witness_file(&self, input: ProofInput) -> Result<Vec<u8>, BackendError> {
        match input {
            ProofInput::Wtns(bytes) => {
                self.checked_wtns(&bytes)?;
                Ok(bytes)
            }
            ProofInput::Inputs(v) => Ok(wtns::write(
                &self
                    .witness
                    .as_ref()
                    .ok_or(BackendError::NoWasm)?
                    .calculate(&v)?,
            )),
            ProofInput::Files(_) => Err(files_refused()),
        }
    }

    /// Checks a snarkjs proof against public signals with this key.
    /// The public signals a proof of `input` must carry, `witness[1..=nPublic]`: computed
    /// here from the circuit inputs with the circuit's wasm, or read off the witness itself.
    pub fn public_signals_of(&self, input: ProofInput) -> Result<Vec<String>, BackendError> {
        // A .wtns is checked in witness_of; the wasm's witness has the zkey's length (checked
        // at load) and w[0] = 1.
        let witness = self.witness_of(input)?;
        Ok(json::public_json(&witness[1..=self.prover.n_public()]))
    }

    /// The witness of `input`: computed from circuit inputs with the circuit's wasm, or read
    /// from a `.wtns`.
    fn witness_of(&self, input: ProofInput) -> Result<Vec<ark_bn254::Fr>, BackendError> {
        Ok(match input {
            ProofInput::Inputs(v) => self
                .witness
                .as_ref()
                .ok_or(BackendError::NoWasm)?
                .calculate(&v)?,
            ProofInput::Wtns(bytes) => self.checked_wtns(&bytes)?,
            ProofInput::Files(_) => return Err(files_refused()),
        })
    }

    /// A tenant's `.wtns`, refused unless it is a witness of this circuit: its length, and
    /// (when the pool gave the circuit's r1cs) every constraint. A witness generated for
    /// other inputs than the circuit accepts proves to a proof that fails verification, so it
    /// is caught here, as the input's fault, before a proof is spent on it.
    fn checked_wtns(&self, bytes: &[u8]) -> Result<Vec<ark_bn254::Fr>, BackendError> {
        let witness = wtns::parse(bytes)?;
        if witness.len() != self.prover.n_vars() {
            return Err(Groth16Error::WrongWitnessLength {
                expected: self.prover.n_vars(),
                got: witness.len(),
            }
            .into());
        }
        if witness[0] != ark_bn254::Fr::from(1u64) {
            return Err(Groth16Error::WitnessNotOne.into());
        }
        if let Some(constraints) = &self.constraints
            && let Some(constraint) = constraints.first_unsatisfied(&witness)
        {
            return Err(Groth16Error::Unsatisfied { constraint }.into());
        }
        Ok(witness)
    }

    /// [`Backend::verify_input`] for every Groth16 system: the statement is the public signals.
    fn verify_job(
        &self,
        proof: &Value,
        public_signals: &[String],
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        let derived = self.public_signals_of(input)?;
        let statement = serde_json::json!({ "publicSignals": derived });
        if public_signals != derived.as_slice() {
            return Ok(Judged {
                verdict: other_statement("public signals"),
                statement,
            });
        }
        Ok(Judged {
            verdict: self.verify_json(proof, &derived)?,
            statement,
        })
    }

    fn verify_json(
        &self,
        proof: &Value,
        public_signals: &[String],
    ) -> Result<Verdict, BackendError> {
        let proof: ProofJson = serde_json::from_value(proof.clone())
            .map_err(|e| BackendError::ProofShape(e.to_string()))?;
        let proof = proof.to_proof()?;
        let public = json::parse_public(public_signals)?;
        Ok(if self.prover.verify(&proof, &public)? {
            Ok(())
        } else {
            Err("the proof does not verify against the circuit's verifying key".into())
        })
    }
}

/// The `exec` backend for Groth16 provers with the snarkjs file contract
/// (profiles `snarkjs`, `rapidsnark`, or a custom template): the external
/// program proves; the pod computes witnesses and verifies natively with
/// the zkey it also loads.
pub struct ExecGroth16Backend {
    /// `snarkjs` or `rapidsnark`.
    pub system: &'static str,
    pub inner: Arc<Groth16Backend>,
    pub zkey: PathBuf,
    pub template: Vec<String>,
    pub work_root: Option<PathBuf>,
    pub timeout: std::time::Duration,
}

/// Fault injection for Groth16: another valid curve point as `pi_a`, so the proof still
/// parses and only the pairing check refuses it.
fn tamper_groth16(proof: &mut Value) {
    use ark_ec::{AffineRepr as _, CurveGroup as _};
    let parsed = serde_json::from_value::<ProofJson>(proof.clone())
        .ok()
        .and_then(|p| p.to_proof().ok());
    match parsed {
        Some(p) => {
            let a = (p.a + ark_bn254::G1Affine::generator()).into_affine();
            let tampered = ark_groth16::Proof::<ark_bn254::Bn254> { a, ..p };
            *proof = serde_json::to_value(ProofJson::from_proof(&tampered)).unwrap_or(Value::Null);
        }
        None => super::tamper_binary(proof),
    }
}

impl Backend for ExecGroth16Backend {
    fn system(&self) -> &'static str {
        self.system
    }

    fn tamper(&self, proof: &mut Value) {
        tamper_groth16(proof);
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
        Ok(ProofOutput::groth16(
            proof,
            public_signals,
            witness_ms,
            start,
        ))
    }

    fn verify(
        &self,
        proof: &Value,
        public_signals: &[String],
        _: Option<&Value>,
    ) -> Result<Verdict, BackendError> {
        self.inner.verify_json(proof, public_signals)
    }

    fn verify_input(
        &self,
        proof: &Value,
        public_signals: &[String],
        _: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        self.inner.verify_job(proof, public_signals, input)
    }

    fn verification_key(&self) -> Option<Value> {
        self.inner.verification_key()
    }
}

impl Backend for Groth16Backend {
    fn system(&self) -> &'static str {
        "groth16-bn254"
    }

    fn tamper(&self, proof: &mut Value) {
        tamper_groth16(proof);
    }

    fn prove(&self, input: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        let start = Instant::now();
        let witness = self.witness_of(input)?;
        let witness_ms = ms(start);
        let start = Instant::now();
        let (proof, public) = self.prover.prove_cancellable(&witness, cancel)?;
        let proof = serde_json::to_value(ProofJson::from_proof(&proof))
            .map_err(|e| BackendError::Exec(format!("cannot write the proof as JSON: {e}")))?;
        Ok(ProofOutput::groth16(
            proof,
            json::public_json(&public),
            witness_ms,
            start,
        ))
    }

    fn verify(
        &self,
        proof: &Value,
        public_signals: &[String],
        _: Option<&Value>,
    ) -> Result<Verdict, BackendError> {
        self.verify_json(proof, public_signals)
    }

    fn verify_input(
        &self,
        proof: &Value,
        public_signals: &[String],
        _: Option<&Value>,
        input: ProofInput,
    ) -> Result<Judged, BackendError> {
        self.verify_job(proof, public_signals, input)
    }

    fn verification_key(&self) -> Option<Value> {
        Some(self.vk_json.clone())
    }
}

/// A parameter file's bytes, refused when `expected_sha256` (hex, `sha256:` prefix allowed) is
/// given and they have another digest.
fn read_checked(
    path: &std::path::Path,
    expected_sha256: Option<&str>,
) -> Result<Vec<u8>, ParamsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ParamsError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
    if let Some(expected) = expected_sha256 {
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
    Ok(bytes)
}

/// Reads the circuit's r1cs (checking its digest unless the loader just did) and checks it is
/// the zkey's circuit.
fn load_r1cs(
    path: &std::path::Path,
    expected_sha256: Option<&str>,
    prover: &Prover,
) -> Result<ConstraintSystem, ParamsError> {
    let bytes = read_checked(path, expected_sha256)?;
    let constraints = ConstraintSystem::parse(&bytes)
        .map_err(|e| ParamsError::Invalid(format!("{}: {e}", path.display())))?;
    if constraints.n_wires != prover.n_vars() || constraints.n_public != prover.n_public() {
        return Err(ParamsError::Invalid(format!(
            "{} has {} wires and {} public signals but the zkey has {} and {}: they are not the same circuit",
            path.display(),
            constraints.n_wires,
            constraints.n_public,
            prover.n_vars(),
            prover.n_public()
        )));
    }
    Ok(constraints)
}

/// Named input files are for STARK and VM systems, not Groth16.
fn files_refused() -> BackendError {
    BackendError::WrongInput {
        system: "groth16-bn254",
        takes: "circuit inputs or a witness".into(),
        given: "input files",
    }
}

/// Registry entry of the built-in prover.
pub fn load_builtin(ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    if ctx.args.acceleration == Acceleration::Gpu {
        // `gpu` never falls back to the CPU, and this prover has no GPU code yet.
        return Err(ParamsError::Invalid(
            "acceleration gpu: this zkfleet-prover has no GPU code yet and proves on the CPU only; set spec.backend.groth16.acceleration to auto or cpu".into(),
        ));
    }
    let (backend, digest) = load_files(ctx)?;
    Ok((backend, digest))
}

/// Registry entry of the `snarkjs` and `rapidsnark` exec profiles: the external program proves;
/// the pod computes witnesses and verifies with the zkey it also loads.
pub fn load_exec(ctx: &LoadContext) -> Result<(Arc<dyn Backend>, String), ParamsError> {
    let (inner, digest) = load_files(ctx)?;
    let system = match ctx.args.exec_profile.name() {
        "rapidsnark" => "rapidsnark",
        _ => "snarkjs",
    };
    let backend = ExecGroth16Backend {
        system,
        zkey: groth16_files(ctx)?.0.zkey,
        inner,
        template: ctx.template.clone(),
        work_root: ctx.args.exec_workdir.clone(),
        timeout: ctx.timeout,
    };
    Ok((Arc::new(backend), digest))
}

/// Where the zkey and wasm are, and whether their digests were just checked by the loader.
fn groth16_files(ctx: &LoadContext) -> Result<(Groth16Files, bool), ParamsError> {
    let args = &ctx.args;
    let Some((_, names)) = args.parameters().map_err(ParamsError::Invalid)? else {
        return Ok((
            Groth16Files {
                zkey: args.zkey.clone(),
                zkey_sha256: args.zkey_sha256.clone(),
                wasm: args.wasm.clone(),
                wasm_sha256: args.wasm_sha256.clone(),
                r1cs: args.r1cs.clone(),
                r1cs_sha256: args.r1cs_sha256.clone(),
                cache_dir: args.cache_dir.clone(),
            },
            false,
        ));
    };
    let fetched = ctx
        .fetched
        .as_ref()
        .ok_or_else(|| ParamsError::Invalid("parameter files were not fetched".into()))?;
    let file = |name: &str| {
        fetched
            .get(name)
            .ok_or_else(|| ParamsError::Invalid(format!("{name} is not among the parameter files")))
    };
    let zkey = file(&names.zkey)?;
    let wasm = names.wasm.as_deref().map(file).transpose()?;
    let r1cs = names.r1cs.as_deref().map(file).transpose()?;
    Ok((
        Groth16Files {
            zkey: zkey.path.clone(),
            zkey_sha256: Some(zkey.sha256.hex()),
            wasm: wasm.map(|w| w.path.clone()),
            wasm_sha256: wasm.map(|w| w.sha256.hex()),
            r1cs: r1cs.map(|r| r.path.clone()),
            r1cs_sha256: r1cs.map(|r| r.sha256.hex()),
            cache_dir: args.cache_dir.clone(),
        },
        true,
    ))
}

fn load_files(ctx: &LoadContext) -> Result<(Arc<Groth16Backend>, String), ParamsError> {
    let (files, checked) = groth16_files(ctx)?;
    let b = if checked {
        Groth16Backend::load_checked(&files)?
    } else {
        Groth16Backend::load(&files)?
    };
    let digest = format!("sha256:{}", b.report.digest);
    tracing::info!(
        digest,
        from_cache = b.report.from_cache,
        seconds = b.report.seconds,
        note = b.report.cache_note.as_deref().unwrap_or(""),
        "proving key loaded"
    );
    Ok((b, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_groth16_proofs_still_parse() {
        use ark_ec::AffineRepr as _;
        let g = ark_bn254::G1Affine::generator();
        let p = ark_groth16::Proof::<ark_bn254::Bn254> {
            a: g,
            b: ark_bn254::G2Affine::generator(),
            c: g,
        };
        let mut v = serde_json::to_value(ProofJson::from_proof(&p)).unwrap();
        let before = v.clone();
        tamper_groth16(&mut v);
        assert_ne!(v["pi_a"], before["pi_a"]);
        assert_eq!(v["pi_b"], before["pi_b"]);
        let back: ProofJson = serde_json::from_value(v).unwrap();
        assert!(back.to_proof().is_ok());
    }
}
