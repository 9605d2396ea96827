//! `verify`: checks a succeeded Groth16 job's proof on this machine, with a key from a file or
//! from the pool's parameters (found as the operator finds it: the snarkjs verification key
//! among `spec.parameters.files`, else the zkey, checked against its sha256). STARK and VM
//! proofs need their own system's verifier, which this tool does not carry.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;
use zkfleet_contract::Digest;
use zkfleet_crds::v1alpha1::{ParameterFile, ParametersLocation, ProofJob, ProverPool};
use zkfleet_groth16_verifier::Verifier;

use crate::artifact::{self, JobProof};
use crate::cluster::Cluster;

/// Exit status of `verify` for a proof this tool cannot check (STARK and VM proofs).
pub const NOT_CHECKABLE: u8 = 3;

/// Verifying key file name when the pool does not name one (as in the operator).
pub const DEFAULT_VERIFICATION_KEY: &str = "verification_key.json";
/// Proving key file name when the pool does not name one (as in the operator).
pub const DEFAULT_ZKEY: &str = "circuit.zkey";

/// First bytes of a snarkjs `.zkey`.
const ZKEY_MAGIC: &[u8] = b"zkey";

/// Which of the pool's parameter files holds its verifying key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFile {
    /// A snarkjs `verification_key.json`.
    Json(ParameterFile),
    /// A zkey, whose verifying-key sections are read.
    Zkey(ParameterFile),
}

impl KeyFile {
    pub fn file(&self) -> &ParameterFile {
        match self {
            KeyFile::Json(f) | KeyFile::Zkey(f) => f,
        }
    }
}

/// Verifies the job's proof: OK exits 0, INVALID exits 1, a STARK or VM proof exits 3.
pub async fn run(
    cluster: &Cluster,
    name: &str,
    vk: Option<&Path>,
    artifact: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let job = cluster.job(name).await?;
    let (pool_namespace, pool_name) = proving_pool(&job, &cluster.namespace);
    let pool = kube::Api::<ProverPool>::namespaced(cluster.client.clone(), &pool_namespace)
        .get_opt(&pool_name)
        .await
        .with_context(|| format!("reading ProverPool {pool_namespace}/{pool_name}"))?;
    let proof = artifact::load(&job, artifact).await?;
    if let Some(message) = not_checkable(&job, pool.as_ref(), &proof) {
        eprintln!("{message}");
        return Ok(ExitCode::from(NOT_CHECKABLE));
    }
    let (verifier, key) = match vk {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (
                parse_key(&path.display().to_string(), &bytes)?,
                path.display().to_string(),
            )
        }
        None => {
            let pool = pool.as_ref().with_context(|| {
                format!(
                    "ProverPool {pool_name} of ProofJob {name} no longer exists, so its verifying key cannot be read: pass --vk verification_key.json"
                )
            })?;
            pool_key(cluster, &job, pool).await?
        }
    };
    let signals = proof.public_signals.clone().unwrap_or_default();
    let verdict = verifier.verify(&Value::Object(proof.proof.clone()), &signals);
    Ok(report(name, &key, verdict))
}

/// The pool whose key checks the job's proof, as `(namespace, name)`: the one that proved it
/// (`status.pool`, set when the job moved to a fallback pool), else `spec.poolRef`, in its own
/// namespace when it names one (a shared pool). Never a same-named pool of the job's namespace
/// that did not prove it: that one could supply any key.
pub fn proving_pool(job: &ProofJob, job_namespace: &str) -> (String, String) {
    if let Some(current) = job.status.as_ref().and_then(|s| s.pool.as_ref()) {
        return (current.namespace.clone(), current.name.clone());
    }
    let reference = &job.spec.pool_ref;
    (
        reference
            .namespace
            .clone()
            .unwrap_or_else(|| job_namespace.to_string()),
        reference.name.clone(),
    )
}

/// Prints the verdict and gives the exit status.
fn report(
    name: &str,
    key: &str,
    verdict: Result<bool, zkfleet_groth16_verifier::VerifyError>,
) -> ExitCode {
    match verdict {
        Ok(true) => {
            println!("OK: the proof of ProofJob {name} verifies against {key}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("INVALID: the proof of ProofJob {name} does not verify against {key}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("INVALID: the proof of ProofJob {name} cannot be checked against {key}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why this tool cannot check the proof, or `None` for a Groth16 proof. The pool says which
/// system proved it; without the pool, the result's shape does.
pub fn not_checkable(
    job: &ProofJob,
    pool: Option<&ProverPool>,
    proof: &JobProof,
) -> Option<String> {
    let groth16 = pool.map_or(proof.is_groth16(), |p| p.spec.backend.proves_groth16());
    if groth16 {
        return None;
    }
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let profile = pool.and_then(|p| p.spec.backend.exec_profile());
    let (system, verifier) = match profile {
        Some(p) => (p.system().title, p.system().verifier),
        None => ("a STARK or VM prover", "that system's verifier"),
    };
    let on_cluster = job
        .status
        .as_ref()
        .and_then(|s| s.verification.as_ref())
        .map(|v| match (&v.verifier, v.verified, v.skipped) {
            (_, _, true) => {
                "On the cluster it was not verified (the pool turns verification off).".to_string()
            }
            (Some(by), true, _) => format!("On the cluster it was verified by {by}."),
            _ => "On the cluster it was verified.".to_string(),
        })
        .unwrap_or_default();
    Some(format!(
        "ProofJob {name} holds a {system} proof; kubectl zkfleet checks Groth16 proofs only. \
         Offline verification needs that system's verifier: write the proof with `kubectl zkfleet proof {name}` \
         and check it with {verifier}. {on_cluster}"
    ).trim_end().to_string())
}

/// The pool's verifying key, read from its parameters as the operator reads it, and a name
/// for it in messages.
async fn pool_key(
    cluster: &Cluster,
    job: &ProofJob,
    pool: &ProverPool,
) -> anyhow::Result<(Verifier, String)> {
    same_parameters(job, pool)?;
    let pool_name = pool.metadata.name.as_deref().unwrap_or("?");
    let parameters = &pool.spec.parameters;
    let file = key_file(pool)?;
    let file_name = &file.file().name;
    let bytes = match parameters.source.location() {
        Some(ParametersLocation::ConfigMap(source)) => {
            let config_map = cluster
                .api::<ConfigMap>()
                .get_opt(&source.name)
                .await
                .with_context(|| {
                    format!("reading ConfigMap {} (the parameters of pool {pool_name})", source.name)
                })?
                .with_context(|| {
                    format!(
                        "ConfigMap {} with the parameters of pool {pool_name} does not exist: pass --vk verification_key.json",
                        source.name
                    )
                })?;
            config_map_file(&config_map, file_name).with_context(|| {
                format!(
                    "ConfigMap {} has no key {file_name}: pass --vk verification_key.json",
                    source.name
                )
            })?
        }
        Some(ParametersLocation::Url(url)) => {
            let url = format!("{}/{file_name}", url.trim_end_matches('/'));
            artifact::fetch(&url).await.with_context(|| {
                format!("reading the verifying key of pool {pool_name}; or pass --vk verification_key.json")
            })?
        }
        Some(ParametersLocation::Pvc(pvc)) => bail!(
            "the verifying key of pool {pool_name} is on PersistentVolumeClaim {}, which this machine cannot read: pass --vk with the circuit's verification_key.json (or its .zkey)",
            pvc.claim_name
        ),
        None => bail!(
            "pool {pool_name} sets no single spec.parameters.source: pass --vk verification_key.json"
        ),
    };
    check_sha256(file.file(), &bytes)?;
    let verifier = parse_key(file_name, &bytes)?;
    Ok((
        verifier,
        format!(
            "{file_name} of pool {pool_name} (parameters {})",
            parameters.version
        ),
    ))
}

/// The job was proved with the parameters the pool has now; otherwise the pool's key may not
/// be the one that checks it.
pub fn same_parameters(job: &ProofJob, pool: &ProverPool) -> anyhow::Result<()> {
    let proved_with = job
        .status
        .as_ref()
        .and_then(|s| s.parameters_version.as_deref());
    let now = &pool.spec.parameters.version;
    match proved_with {
        Some(version) if version != now => bail!(
            "ProofJob {} was proved with parameters {version}, but pool {} now has {now}: its key may not check this proof; pass --vk with the verification key of {version}",
            job.metadata.name.as_deref().unwrap_or("?"),
            pool.metadata.name.as_deref().unwrap_or("?"),
        ),
        _ => Ok(()),
    }
}

/// Which of `spec.parameters.files` holds the pool's verifying key: the snarkjs verification
/// key when listed (small), else the zkey; the names from `spec.backend.groth16` or their
/// defaults.
pub fn key_file(pool: &ProverPool) -> anyhow::Result<KeyFile> {
    let settings = pool.spec.backend.groth16.as_ref();
    let vk = settings
        .and_then(|g| g.verification_key.as_deref())
        .unwrap_or(DEFAULT_VERIFICATION_KEY);
    let zkey = settings
        .and_then(|g| g.zkey.as_deref())
        .unwrap_or(DEFAULT_ZKEY);
    let files = &pool.spec.parameters.files;
    let find = |name: &str| files.iter().find(|f| f.name == name).cloned();
    find(vk)
        .map(KeyFile::Json)
        .or_else(|| find(zkey).map(KeyFile::Zkey))
        .with_context(|| {
            format!(
                "pool {} lists neither {vk} nor {zkey} in spec.parameters.files: pass --vk verification_key.json",
                pool.metadata.name.as_deref().unwrap_or("?")
            )
        })
}

/// Checks a key file's bytes against its sha256 in `spec.parameters.files`.
pub fn check_sha256(file: &ParameterFile, bytes: &[u8]) -> anyhow::Result<()> {
    let actual = Digest::of(bytes).hex();
    if !actual.eq_ignore_ascii_case(&file.sha256) {
        bail!(
            "{} in the pool's parameters has sha256 {actual}, but spec.parameters.files says {}: it is not the key the pool proves with; pass --vk with the right key",
            file.name,
            file.sha256
        );
    }
    Ok(())
}

/// A verifying key from a snarkjs `verification_key.json` or a `.zkey`, told apart by content.
pub fn parse_key(name: &str, bytes: &[u8]) -> anyhow::Result<Verifier> {
    if bytes.starts_with(ZKEY_MAGIC) {
        return Verifier::from_zkey_bytes(bytes)
            .with_context(|| format!("{name} is not a usable Groth16 BN254 zkey"));
    }
    let json: Value = serde_json::from_slice(bytes).with_context(|| {
        format!("{name} is neither a snarkjs verification_key.json nor a .zkey")
    })?;
    Verifier::from_json(&json).with_context(|| {
        format!("{name} is not a Groth16 BN254 verification key (snarkjs verification_key.json)")
    })
}

/// A file's bytes in a ConfigMap: `data` first, then `binaryData` (as the operator reads them).
fn config_map_file(config_map: &ConfigMap, name: &str) -> Option<Vec<u8>> {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(name))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            config_map
                .binary_data
                .as_ref()
                .and_then(|d| d.get(name))
                .map(|b| b.0.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::job;
    use serde_json::json;

    /// The proof is checked with the key of the pool that made it, never with a same-named
    /// pool of the job's own namespace.
    #[test]
    fn the_key_comes_from_the_pool_that_proved_the_job() {
        let own = job(json!({"phase": "Succeeded"}));
        assert_eq!(proving_pool(&own, "team"), ("team".into(), "alpha".into()));
        let mut shared = own.clone();
        shared.spec.pool_ref.namespace = Some("fleet".into());
        assert_eq!(
            proving_pool(&shared, "team"),
            ("fleet".into(), "alpha".into())
        );
        let moved = job(json!({"phase": "Succeeded",
            "pool": {"namespace": "fleet", "name": "beta", "sinceAttempt": 2}}));
        assert_eq!(
            proving_pool(&moved, "team"),
            ("fleet".into(), "beta".into())
        );
    }

    fn pool(backend: Value, files: &[&str]) -> ProverPool {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": "alpha"},
            "spec": {
                "backend": backend,
                "parameters": {
                    "version": "v2",
                    "source": {"configMap": {"name": "params"}},
                    "files": files.iter()
                        .map(|n| json!({"name": n, "sha256": "ab".repeat(32)}))
                        .collect::<Vec<_>>(),
                },
            },
        }))
        .unwrap()
    }

    fn groth16_pool(files: &[&str]) -> ProverPool {
        pool(json!({"type": "groth16-bn254"}), files)
    }

    fn stark_proof() -> JobProof {
        JobProof {
            proof: json!({"base64": "AA=="}).as_object().cloned().unwrap(),
            public_signals: None,
            public_outputs: json!({"programHash": "0x1"}).as_object().cloned(),
            source: "test".into(),
        }
    }

    #[test]
    fn the_key_is_the_verification_key_when_listed_else_the_zkey() {
        let both = groth16_pool(&["circuit.zkey", "circuit.wasm", "verification_key.json"]);
        assert!(
            matches!(key_file(&both).unwrap(), KeyFile::Json(f) if f.name == "verification_key.json")
        );
        let zkey_only = groth16_pool(&["circuit.zkey", "circuit.wasm"]);
        assert!(
            matches!(key_file(&zkey_only).unwrap(), KeyFile::Zkey(f) if f.name == "circuit.zkey")
        );
        let renamed = pool(
            json!({"type": "groth16-bn254", "groth16": {"zkey": "mul.zkey", "verificationKey": "vk.json"}}),
            &["mul.zkey", "verification_key.json"],
        );
        assert!(matches!(key_file(&renamed).unwrap(), KeyFile::Zkey(f) if f.name == "mul.zkey"));
        let err = key_file(&groth16_pool(&["circuit.wasm"])).unwrap_err();
        assert!(err.to_string().contains("--vk"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_the_listed_one_is_refused() {
        let file = ParameterFile {
            name: "verification_key.json".into(),
            sha256: Digest::of(b"the key").hex(),
        };
        assert!(check_sha256(&file, b"the key").is_ok());
        let err = check_sha256(&file, b"another key").unwrap_err();
        assert!(
            err.to_string().contains("not the key the pool proves with"),
            "{err}"
        );
    }

    #[test]
    fn keys_are_told_apart_by_content_and_junk_is_named() {
        let err = parse_key("vk.json", b"not json").unwrap_err();
        assert!(format!("{err:#}").contains("neither a snarkjs verification_key.json nor a .zkey"));
        let err = parse_key("vk.json", br#"{"protocol": "groth16"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("not a Groth16 BN254 verification key"));
        let err = parse_key("c.zkey", b"zkey\x01\x00\x00\x00").unwrap_err();
        assert!(format!("{err:#}").contains("not a usable Groth16 BN254 zkey"));
    }

    #[test]
    fn a_job_proved_with_other_parameters_needs_its_own_key() {
        let pool = groth16_pool(&["verification_key.json"]);
        assert!(same_parameters(&job(json!({"parametersVersion": "v2"})), &pool).is_ok());
        assert!(same_parameters(&job(json!({})), &pool).is_ok());
        let err = same_parameters(&job(json!({"parametersVersion": "v1"})), &pool).unwrap_err();
        assert!(
            err.to_string()
                .contains("pass --vk with the verification key of v1"),
            "{err}"
        );
    }

    #[test]
    fn stark_proofs_are_not_checked_here_and_say_by_what_they_can_be() {
        let miden = pool(
            json!({"type": "exec", "exec": {"command": ["miden-vm"], "profile": "miden"}}),
            &["program.masm"],
        );
        let j = job(json!({"phase": "Succeeded",
            "verification": {"verified": true, "verifier": "verifier/alpha-verifier-0"}}));
        let message = not_checkable(&j, Some(&miden), &stark_proof()).unwrap();
        assert!(message.contains("Miden VM proof"), "{message}");
        assert!(message.contains("miden-vm verify"), "{message}");
        assert!(
            message.contains("verified by verifier/alpha-verifier-0"),
            "{message}"
        );
        // Without the pool, the result's shape decides.
        assert!(not_checkable(&j, None, &stark_proof()).is_some());
        let groth16 = groth16_pool(&["verification_key.json"]);
        assert_eq!(not_checkable(&j, Some(&groth16), &stark_proof()), None);
    }
}
