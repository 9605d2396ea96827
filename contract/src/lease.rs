//! Wire types of the lease protocol between a prover pod in agent mode and the operator's
//! dispatcher. Both sides depend on this crate for them, so both compile
//! against the same definitions.
//!
//! Every request carries `Authorization: Bearer <pool token>` (the pool's dispatcher Secret,
//! mounted in the pod) and names the pod in the [`CALLER_HEADER`] header (and again in its
//! body); the dispatcher checks the token, and that the pod exists, is Ready and belongs to
//! the pool, from the headers alone, before it reads a byte of the body. Errors are JSON `{code, message}`
//! ([`crate::ErrorBody`]).
//!
//! **Fencing.** A lease is identified by the job's UID and the attempt number. The dispatcher
//! writes every new attempt to the job's status before it hands the lease out, so attempt
//! numbers only grow: a heartbeat or result that names an older attempt is stale and refused
//! with 409, and the pod drops that work.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST`: long-poll for work. Body [`LeaseRequest`], answer [`LeaseResponse`].
pub const LEASE_PATH: &str = "/v1/lease";
/// `POST`: keep leases alive. Body [`HeartbeatRequest`], answer [`HeartbeatResponse`].
pub const HEARTBEAT_PATH: &str = "/v1/heartbeat";
/// `POST`: report how a leased job ended. Body [`CompleteRequest`], answer
/// [`CompleteResponse`].
pub const COMPLETE_PATH: &str = "/v1/complete";

/// Header naming the caller as `<namespace>/<pool>/<pod>`, so the dispatcher can authenticate a
/// request before it reads the body.
pub const CALLER_HEADER: &str = "zkfleet-caller";

/// Who is calling: the pool and the pod, as the downward API gives them to the pod.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// Namespace of the pod and its pool.
    pub namespace: String,
    /// Name of the ProverPool.
    pub pool: String,
    /// Name of the pod.
    pub pod: String,
}

impl Caller {
    /// The value of the [`CALLER_HEADER`] header.
    pub fn header_value(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.pool, self.pod)
    }

    /// Reads a [`CALLER_HEADER`] value: three non-empty names separated by `/`.
    pub fn from_header_value(value: &str) -> Option<Self> {
        let mut parts = value.split('/');
        let (namespace, pool, pod) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [namespace, pool, pod].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            namespace: namespace.into(),
            pool: pool.into(),
            pod: pod.into(),
        })
    }
}

/// Ask for up to `free_slots` jobs, waiting up to `wait_seconds` for one to be queued.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    #[serde(flatten)]
    pub caller: Caller,
    /// `spec.parameters.version` the pod serves.
    pub parameters_version: String,
    /// Digest of the proving key the pod loaded (`sha256:<hex>`).
    pub parameters_digest: String,
    /// Slots the pod can fill now (at least 1).
    pub free_slots: u32,
    /// Longest the dispatcher may hold the request open before answering with no jobs.
    pub wait_seconds: u32,
}

/// Jobs leased to the pod; empty when none arrived within the wait.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseResponse {
    pub jobs: Vec<LeasedJob>,
}

/// One job the pod now holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeasedJob {
    #[serde(flatten)]
    pub lease: LeaseRef,
    /// `namespace/name` of the ProofJob, for logs.
    pub job: String,
    /// The lease runs out this many seconds after it was granted or last renewed; heartbeat
    /// well within it (the agent uses a third of it).
    pub lease_seconds: u32,
    /// The attempt is abandoned after this many seconds, heartbeats or not.
    pub timeout_seconds: u32,
    /// What to prove.
    pub input: JobInput,
    /// W3C trace context of the attempt, so the pod's spans join the job's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A lease: the job's UID and the attempt number (the fencing token).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRef {
    pub uid: String,
    pub attempt: u32,
}

/// The proof input, resolved by the operator where the pod has no access (ConfigMaps and
/// Secrets); URLs are fetched by the pod and checked against `sha256`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum JobInput {
    /// Circuit input signals (circom `input.json`).
    #[serde(rename_all = "camelCase")]
    CircuitInputs { inputs: Value },
    /// A `.wtns` witness, standard base64.
    #[serde(rename_all = "camelCase")]
    Witness { witness_base64: String },
    /// A file to download (https:// or an object-store URI) and check.
    #[serde(rename_all = "camelCase")]
    Url {
        url: String,
        sha256: String,
        /// `circuit-inputs` or `witness`.
        format: InputFormat,
    },
    /// Named input files, for proof systems that take several (a Stone job's public input,
    /// private input, trace and memory; a Miden job's inputs). The pod's proof system maps the
    /// names onto its prover's command line.
    #[serde(rename_all = "camelCase")]
    Files { files: Vec<InputFile> },
}

/// One named input file of a [`JobInput::Files`] job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InputFile {
    /// The name the proof system knows the file by, for example `trace.bin`.
    pub name: String,
    /// Its bytes, or where to fetch them.
    pub content: FileContent,
}

/// Where an input file's bytes are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FileContent {
    /// The bytes, standard base64 (resolved by the operator from the manifest, a ConfigMap or a
    /// Secret of the job's namespace).
    #[serde(rename_all = "camelCase")]
    Inline { base64: String },
    /// A file the pod downloads (https:// or an object-store URI) and checks against `sha256`.
    #[serde(rename_all = "camelCase")]
    Url { url: String, sha256: String },
}

/// What a downloaded input file holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    CircuitInputs,
    Witness,
}

/// Renew the leases the pod holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub leases: Vec<LeaseRef>,
}

/// Leases the dispatcher no longer honours (the job was deleted, timed out, expired or was
/// leased again). The pod aborts that work and frees the slots.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    pub revoked: Vec<LeaseRef>,
}

/// How a leased job ended on the pod.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    #[serde(flatten)]
    pub caller: Caller,
    #[serde(flatten)]
    pub lease: LeaseRef,
    pub outcome: Outcome,
}

/// The result of one attempt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Outcome {
    /// A proof. The dispatcher verifies it before the job succeeds.
    #[serde(rename_all = "camelCase")]
    Proved {
        /// snarkjs `proof.json` (Groth16), or the proof system's proof as JSON (a binary proof
        /// as `{"base64": ...}`).
        proof: Value,
        /// snarkjs `public.json` (Groth16); empty for other proof systems.
        #[serde(default)]
        public_signals: Vec<String>,
        /// What the proof commits to, for proof systems other than Groth16 (for Miden the
        /// program hash and the stack outputs; for Stone the program output), as the proof
        /// system defines it. The verifier checks the proof against these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_outputs: Option<Value>,
        /// Milliseconds spent proving, witness generation included.
        proving_millis: u64,
        /// Digest of the proving key that made the proof.
        parameters_digest: String,
        /// What the attempt used; absent from pods that predate it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// The prover could not make the proof.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// The prover's stable error code, for example `missing_signal`.
        code: String,
        message: String,
        /// False for bad input (retrying cannot help); true for everything else.
        retryable: bool,
        /// What the attempt used before it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
}

/// Compute one attempt used on the pod, from the lease's arrival to the result.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Wall-clock milliseconds the attempt held its slot (input download, witness and proof).
    pub wall_millis: u64,
    /// CPU-milliseconds of the prover process (and the prover programs it ran) while it worked
    /// on the attempt, split evenly between the attempts that ran at the same time.
    pub cpu_millis: u64,
}

/// The dispatcher's answer to a result. 200 means the pod can forget the job: the result was
/// recorded now or before (`duplicate`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResponse {
    /// What the job is now: `Succeeded`, `Failed` or `Queued` (to be retried).
    pub phase: String,
    /// True when this exact result had already been recorded.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller() -> Caller {
        Caller {
            namespace: "team".into(),
            pool: "cpu".into(),
            pod: "cpu-abc".into(),
        }
    }

    #[test]
    fn the_caller_header_round_trips_and_refuses_malformed_names() {
        let header = caller().header_value();
        assert_eq!(header, "team/cpu/cpu-abc");
        assert_eq!(Caller::from_header_value(&header), Some(caller()));
        for bad in ["", "team/cpu", "team//pod", "a/b/c/d", "/cpu/pod"] {
            assert_eq!(Caller::from_header_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_are_flat_camel_case_json() {
        let req = CompleteRequest {
            caller: caller(),
            lease: LeaseRef {
                uid: "u1".into(),
                attempt: 2,
            },
            outcome: Outcome::Proved {
                proof: json!({"protocol": "groth16"}),
                public_signals: vec!["33".into()],
                public_outputs: None,
                proving_millis: 12,
                parameters_digest: "sha256:ab".into(),
                usage: None,
            },
        };
        let value = serde_json::to_value(&req).unwrap();
        assert_eq!(
            value,
            json!({
                "namespace": "team", "pool": "cpu", "pod": "cpu-abc",
                "uid": "u1", "attempt": 2,
                "outcome": {"type": "proved", "proof": {"protocol": "groth16"},
                            "publicSignals": ["33"], "provingMillis": 12,
                            "parametersDigest": "sha256:ab"},
            })
        );
        assert_eq!(
            serde_json::from_value::<CompleteRequest>(value).unwrap(),
            req
        );
    }

    #[test]
    fn inputs_are_tagged_by_type() {
        let input: JobInput = serde_json::from_value(json!({
            "type": "url", "url": "https://x/y.wtns", "sha256": "ab", "format": "witness"
        }))
        .unwrap();
        assert_eq!(
            input,
            JobInput::Url {
                url: "https://x/y.wtns".into(),
                sha256: "ab".into(),
                format: InputFormat::Witness
            }
        );
        let inline = serde_json::to_value(JobInput::CircuitInputs {
            inputs: json!({"a": "3"}),
        })
        .unwrap();
        assert_eq!(
            inline,
            json!({"type": "circuit-inputs", "inputs": {"a": "3"}})
        );
        let files: JobInput = serde_json::from_value(json!({"type": "files", "files": [
            {"name": "input.json", "content": {"type": "inline", "base64": "e30="}},
            {"name": "trace.bin", "content": {"type": "url", "url": "s3://b/t", "sha256": "ab"}},
        ]}))
        .unwrap();
        let JobInput::Files { files } = files else {
            panic!("not files: {files:?}")
        };
        assert_eq!(files[0].name, "input.json");
        assert_eq!(
            files[1].content,
            FileContent::Url {
                url: "s3://b/t".into(),
                sha256: "ab".into()
            }
        );
    }
}
