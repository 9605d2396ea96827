//! Pods that prove they still prove right: a pool's known-answer check, and quarantine of pods
//! that fail it or whose proofs keep being rejected.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProofInput, schema};

/// `reason` of a quarantined pod in a pool's `status.flaggedPods`.
pub const QUARANTINED: &str = "Quarantined";

/// A proof whose right answer is known, which every pod of the pool must get right before it
/// takes jobs, and again from time to time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.publicSignals) || has(self.publicOutputs)")
    .message("knownAnswer needs the answer: set publicSignals (Groth16 pools) or publicOutputs (STARK and VM pools)"))]
pub struct KnownAnswer {
    /// The input to prove, as in a ProofJob's `spec.input`: inline, a ConfigMap or Secret of
    /// the pool's namespace, a URL, or `files` for STARK and VM pools. The pod is handed it as
    /// an ordinary lease, so it cannot tell the check from a user's job.
    pub input: ProofInput,

    /// The public signals a right proof of `input` has, as decimal strings (Groth16 pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub public_signals: Option<Vec<String>>,

    /// What a right proof of `input` commits to (STARK and VM pools): every key given here
    /// must have this value in the proof's public outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub public_outputs: Option<serde_json::Map<String, serde_json::Value>>,

    /// Check each pod again this many seconds after it last passed (0 to 86400, default 600;
    /// 0: only when it starts).
    #[serde(default = "default_every_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub every_seconds: i32,

    /// Check each pod again after this many of its proofs (0 to 100000, default 0: not by
    /// count).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100_000))]
    pub every_proofs: i32,
}

fn default_every_seconds() -> i32 {
    600
}

/// When a pod is quarantined for its proofs: it takes no more leases, the pool reports it
/// (`flaggedPods`, the `ProversHealthy` condition, a `PodQuarantined` Event) and it is deleted,
/// so its Deployment replaces it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSpec {
    /// Quarantine a pod once this many of its proofs were rejected by verification within
    /// `windowSeconds` (1 to 1000, default 3). A rejected proof counts against a pod only on
    /// evidence that isolates the pod: the same job later verified from another pod. A job
    /// whose proofs are rejected on two different pods is the input's fault (`InputRejected`)
    /// and counts against no pod. A pod that fails the known-answer check is quarantined at
    /// once.
    #[serde(default = "default_after_rejected_proofs")]
    #[schemars(range(min = 1, max = 1000))]
    pub after_rejected_proofs: i32,

    /// Rejections older than this many seconds no longer count (60 to 604800, default 3600),
    /// so rare faults spread over a long time never add up to a quarantine.
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 60, max = 604_800))]
    pub window_seconds: i32,
}

impl Default for QuarantineSpec {
    fn default() -> Self {
        Self {
            after_rejected_proofs: default_after_rejected_proofs(),
            window_seconds: default_window_seconds(),
        }
    }
}

fn default_window_seconds() -> i32 {
    3600
}

fn default_after_rejected_proofs() -> i32 {
    3
}
