//! A job's input as the lease hands it over, turned into what a backend proves (inline,
//! from a ConfigMap or Secret the operator resolved, or downloaded and checked against its
//! sha256), and the failure of an attempt as the dispatcher hears it. The agent proves from
//! it and the verifier derives its statement from it, the same way.

use base64::Engine as _;
use serde_json::Value;

use crate::backend::{BackendError, ProofInput};
use crate::lease::{FileContent, InputFormat, JobInput};
use crate::params::{self, Digest, FetchError};
use crate::runner::RunError;

/// A failed attempt as reported to the dispatcher.
#[derive(Debug)]
pub(crate) struct JobFailure {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) retryable: bool,
    /// Whether the runner already counted it in the proofs metric.
    pub(crate) counted: bool,
}

impl JobFailure {
    pub(crate) fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        JobFailure {
            code: code.into(),
            message: message.into(),
            retryable,
            counted: false,
        }
    }
}

impl From<BackendError> for JobFailure {
    fn from(e: BackendError) -> Self {
        // Bad input cannot be fixed by a retry; the pod's own failures might be.
        JobFailure::new(e.code(), e.to_string(), !e.is_client_error())
    }
}

impl From<RunError> for JobFailure {
    fn from(e: RunError) -> Self {
        let mut failure = match e {
            RunError::Backend(e) => JobFailure::from(e),
            e => JobFailure::new(e.code(), e.to_string(), true),
        };
        failure.counted = true;
        failure
    }
}

/// Turns the lease's input into what the backend proves (the verifier derives its statement
/// from the same input, resolved the same way).
pub(crate) async fn resolve(input: JobInput) -> Result<ProofInput, JobFailure> {
    match input {
        JobInput::CircuitInputs { inputs } => Ok(ProofInput::Inputs(inputs)),
        JobInput::Witness { witness_base64 } => base64::engine::general_purpose::STANDARD
            .decode(witness_base64.trim())
            .map(ProofInput::Wtns)
            .map_err(|e| {
                JobFailure::new(
                    "invalid_witness",
                    format!("witness is not base64: {e}"),
                    false,
                )
            }),
        JobInput::Url {
            url,
            sha256,
            format,
        } => {
            let bytes = download(&url, &sha256).await?;
            match format {
                InputFormat::Witness => Ok(ProofInput::Wtns(bytes)),
                InputFormat::CircuitInputs => serde_json::from_slice::<Value>(&bytes)
                    .map(ProofInput::Inputs)
                    .map_err(|e| {
                        JobFailure::new(
                            "invalid_input",
                            format!("{url} is not circuit inputs JSON: {e}"),
                            false,
                        )
                    }),
            }
        }
        JobInput::Files { files } => {
            let mut out = std::collections::BTreeMap::new();
            for file in files {
                let bytes = match file.content {
                    FileContent::Inline { base64 } => base64::engine::general_purpose::STANDARD
                        .decode(base64.trim())
                        .map_err(|e| {
                            JobFailure::new(
                                "invalid_input_file",
                                format!("input file {} is not base64: {e}", file.name),
                                false,
                            )
                        })?,
                    FileContent::Url { url, sha256 } => download(&url, &sha256).await?,
                };
                out.insert(file.name, bytes);
            }
            Ok(ProofInput::Files(out))
        }
    }
}

/// Most bytes of one input a job names by URL. A witness of a circuit with tens of millions
/// of constraints is around a gigabyte; larger inputs belong in the pool's parameters.
pub(crate) const MAX_URL_INPUT_BYTES: u64 = 1 << 30;

/// Longest one input download may take: a gigabyte at a modest 20 MB/s is under a minute.
pub(crate) const URL_INPUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Downloads an input file into a temporary directory and checks its sha256, then reads it
/// (at most [`MAX_URL_INPUT_BYTES`]) into memory.
async fn download(url: &str, sha256: &str) -> Result<Vec<u8>, JobFailure> {
    let digest: Digest = sha256
        .parse()
        .map_err(|e: String| JobFailure::new("invalid_input_url", e, false))?;
    let dir = tempfile::tempdir().map_err(|e| {
        JobFailure::new(
            "internal",
            format!("cannot make a directory for the input: {e}"),
            true,
        )
    })?;
    let limits = params::InputLimits {
        max_bytes: MAX_URL_INPUT_BYTES,
        timeout: URL_INPUT_TIMEOUT,
    };
    let path = params::download_input(url, digest, dir.path(), limits)
        .await
        .map_err(|e| match e {
            FetchError::InputMismatch { .. } | FetchError::DigestMismatch { .. } => {
                JobFailure::new("input_digest_mismatch", e.to_string(), false)
            }
            FetchError::TooLarge { .. } => JobFailure::new(
                "input_too_large",
                format!("input {}: {e}", zkfleet_contract::store::redacted(url)),
                false,
            ),
            // Retryable, and not the pod's fault: a store that is down or slow.
            FetchError::Unavailable { message, .. } => {
                JobFailure::new("input_unavailable", format!("input {message}"), true)
            }
            FetchError::Config(m) => JobFailure::new("invalid_input_url", m, false),
        })?;
    tokio::fs::read(&path).await.map_err(|e| {
        JobFailure::new(
            "input_unavailable",
            format!("cannot read the downloaded input: {e}"),
            true,
        )
    })
}
