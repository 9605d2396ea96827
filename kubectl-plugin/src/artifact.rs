//! A succeeded job's proof, wherever the operator put it: on the job's status, or, when too
//! large for it, in the operator's artifact store (`status.result.location`, a JSON object of
//! `proof`, `publicSignals` and `publicOutputs`). Also reads files from URLs, for parameters
//! kept at a `source.url`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use object_store::ObjectStoreExt as _;
use object_store::path::Path as StorePath;
use serde::Deserialize;
use serde_json::{Map, Value};
use zkfleet_contract::Digest;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob};

/// Largest stored proof read: the operator stores results of up to 16 MiB, in JSON.
const MAX_ARTIFACT_BYTES: usize = 64 << 20;

/// A job's proof and what it makes public.
#[derive(Debug, Clone, PartialEq)]
pub struct JobProof {
    /// The proof as its prover wrote it: snarkjs `proof.json` for Groth16.
    pub proof: Map<String, Value>,
    /// Groth16 public signals (snarkjs `public.json`).
    pub public_signals: Option<Vec<String>>,
    /// What a STARK or VM proof commits to (Miden's program hash and stacks, Stone's output).
    pub public_outputs: Option<Map<String, Value>>,
    /// Where the proof was read from, for messages.
    pub source: String,
}

impl JobProof {
    /// Whether the proof is a Groth16 proof, judged from the result alone: snarkjs proofs name
    /// their protocol, and only Groth16 results carry public signals without public outputs.
    pub fn is_groth16(&self) -> bool {
        self.proof.get("protocol").and_then(Value::as_str) == Some("groth16")
            || (self.public_signals.is_some() && self.public_outputs.is_none())
    }
}

/// The result as the artifact store keeps it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    proof: Option<Map<String, Value>>,
    #[serde(default)]
    public_signals: Option<Vec<String>>,
    #[serde(default)]
    public_outputs: Option<Map<String, Value>>,
}

/// The proof of a succeeded job: from its status, or from its stored artifact (read from
/// `artifact` when given, a copy the user fetched themselves).
pub async fn load(job: &ProofJob, artifact: Option<&Path>) -> anyhow::Result<JobProof> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let status = job.status.clone().unwrap_or_default();
    match status.phase {
        Some(JobPhase::Succeeded) => {}
        Some(JobPhase::Failed) => bail!(
            "ProofJob {name} failed ({}): it has no proof; `kubectl zkfleet wait {name}` says why",
            status.reason.as_deref().unwrap_or("no reason given")
        ),
        phase => bail!(
            "ProofJob {name} is {} and has no proof yet: run `kubectl zkfleet wait {name}` first",
            phase.map_or("Pending".into(), |p| format!("{p:?}"))
        ),
    }
    let result = status
        .result
        .with_context(|| format!("ProofJob {name} succeeded but its status has no result"))?;
    if let Some(proof) = result.proof {
        return Ok(JobProof {
            proof,
            public_signals: result.public_signals,
            public_outputs: result.public_outputs,
            source: "the job's status".into(),
        });
    }
    let Some(location) = result.location else {
        bail!("ProofJob {name} succeeded but its status has neither the proof nor its location");
    };
    let (bytes, source) = match artifact {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the stored proof {}", path.display()))?;
            (bytes, path.display().to_string())
        }
        None => (read_artifact(&location).await?, location.clone()),
    };
    if let Some(expected) = &result.sha256 {
        let actual = Digest::of(&bytes).hex();
        if !actual.eq_ignore_ascii_case(expected.trim_start_matches("sha256:")) {
            bail!(
                "{source} has sha256 {actual}, but ProofJob {name} recorded {expected} for its proof at {location}: it is not this job's proof"
            );
        }
    }
    let stored: Stored = serde_json::from_slice(&bytes)
        .with_context(|| format!("{source} is not a stored zkfleet proof (JSON with proof)"))?;
    let proof = stored
        .proof
        .with_context(|| format!("{source} holds no proof object"))?;
    Ok(JobProof {
        proof,
        // What the status kept is the same as the artifact's; the artifact always has it.
        public_signals: stored.public_signals.or(result.public_signals),
        public_outputs: stored.public_outputs.or(result.public_outputs),
        source,
    })
}

/// Reads a stored proof, explaining where it is when this machine cannot reach it.
async fn read_artifact(location: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = location.strip_prefix("file://") {
        return match std::fs::read(path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "the proof is too large for the job's status and is stored at {location}: in the zkfleet operator's \
                 artifacts volume (an emptyDir of its leader pod, or the chart's artifacts.existingClaim), not on this machine. \
                 The operator's image has no shell or tar for `kubectl cp`: copy {path} from that volume (mount the claim in a \
                 pod of your own, or read the emptyDir on the node) and pass --artifact FILE, or have the operator store proofs \
                 where you can read them (chart value artifacts.url: s3://, gs:// or az://)"
            ),
            Err(e) => Err(e).with_context(|| format!("reading the stored proof {path}")),
        };
    }
    fetch(location).await.with_context(|| {
        format!(
            "the proof is too large for the job's status and is stored at {location}, which could not be read from here; \
             set the store's credentials (AWS_*, GOOGLE_*, AZURE_* variables) or download it and pass --artifact FILE"
        )
    })
}

/// Reads a file at `url`: `https://` or `http://`, `s3://`, `gs://` or `az://` (credentials from
/// the standard environment variables, as the operator reads them).
pub async fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    let client = object_store::ClientOptions::new().with_timeout(Duration::from_secs(120));
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..object_store::RetryConfig::default()
    };
    let (store, path) = if matches!(scheme, Some("http" | "https")) {
        // An HTTP store's base is a directory URL; the object is the last segment.
        let (base, name) = url
            .rsplit_once('/')
            .filter(|(base, _)| base.contains("://") && !base.ends_with('/'))
            .with_context(|| format!("{url} names no file"))?;
        let (store, _) = zkfleet_contract::store::object_store_at(base, client, retry)
            .map_err(|e| anyhow::anyhow!("{url} is not usable: {e}"))?;
        let name = StorePath::parse(name).unwrap_or_else(|_| StorePath::from(name));
        (store, name)
    } else {
        zkfleet_contract::store::object_store_at(url, client, retry)
            .map_err(|e| anyhow::anyhow!("{url} is not usable: {e}"))?
    };
    let got = store
        .get(&path)
        .await
        .with_context(|| format!("GET {url}"))?;
    if got.meta.size > MAX_ARTIFACT_BYTES as u64 {
        bail!(
            "{url} is {} bytes, more than the {MAX_ARTIFACT_BYTES} read",
            got.meta.size
        );
    }
    let bytes = got
        .bytes()
        .await
        .with_context(|| format!("reading {url}"))?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::job;
    use serde_json::json;

    fn groth16_proof() -> Value {
        json!({"pi_a": ["1", "2", "1"], "pi_b": [["1", "2"], ["3", "4"], ["1", "0"]],
               "pi_c": ["5", "6", "1"], "protocol": "groth16", "curve": "bn128"})
    }

    #[tokio::test]
    async fn an_inline_proof_comes_from_the_status() {
        let j = job(json!({"phase": "Succeeded", "result": {
            "proof": groth16_proof(), "publicSignals": ["15", "3"],
        }}));
        let proof = load(&j, None).await.unwrap();
        assert!(proof.is_groth16());
        assert_eq!(proof.public_signals, Some(vec!["15".into(), "3".into()]));
        assert_eq!(proof.source, "the job's status");
    }

    #[tokio::test]
    async fn unfinished_and_failed_jobs_have_no_proof_and_say_what_to_run() {
        let err = load(&job(json!({"phase": "Running"})), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("kubectl zkfleet wait plug"),
            "{err}"
        );
        let err = load(
            &job(json!({"phase": "Failed", "reason": "InvalidInput"})),
            None,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("InvalidInput"), "{err}");
    }

    #[tokio::test]
    async fn a_stored_proof_is_read_from_a_file_url_and_checked_against_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proof.json");
        let body = serde_json::to_vec(&json!({
            "proof": {"base64": "AAEC"}, "publicSignals": null,
            "publicOutputs": {"programHash": "0xab", "stackOutputs": ["3"]},
        }))
        .unwrap();
        std::fs::write(&path, &body).unwrap();
        let location = format!("file://{}", path.display());
        let status = |sha256: String| {
            json!({"phase": "Succeeded", "result": {
                "publicOutputs": {"programHash": "0xab", "stackOutputs": ["3"]},
                "location": location, "sha256": sha256, "sizeBytes": body.len(),
            }})
        };
        let proof = load(&job(status(Digest::of(&body).hex())), None)
            .await
            .unwrap();
        assert!(!proof.is_groth16());
        assert_eq!(proof.proof["base64"], "AAEC");
        assert_eq!(proof.public_outputs.unwrap()["programHash"], "0xab");
        assert_eq!(proof.source, location);

        let err = load(&job(status("0".repeat(64))), None).await.unwrap_err();
        assert!(err.to_string().contains("not this job's proof"), "{err}");
    }

    #[tokio::test]
    async fn a_proof_in_the_operators_directory_says_how_to_get_it() {
        let j = job(json!({"phase": "Succeeded", "result": {
            "location": "file:///var/lib/zkfleet/artifacts/ns/plug-uid/proof.json",
        }}));
        let err = load(&j, None).await.unwrap_err().to_string();
        assert!(err.contains("artifacts.url"), "{err}");
        assert!(err.contains("--artifact"), "{err}");

        // The copy the message asks for is then used.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.json");
        std::fs::write(
            &copy,
            serde_json::to_vec(&json!({"proof": groth16_proof(), "publicSignals": ["1"]})).unwrap(),
        )
        .unwrap();
        let proof = load(&j, Some(&copy)).await.unwrap();
        assert!(proof.is_groth16());
    }
}
