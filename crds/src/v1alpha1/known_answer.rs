//! Pods that prove they still prove right: a pool's known-answer check, and quarantine of pods
//! that fail it or whose proofs keep being rejected.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProofInput, schema};

/// `reason` of a quarantined pod in a pool's `status.flaggedPods`.
pub const QUARANTINED: &str = "Quarantined";

/// Proofs whose right answers are known, which every pod of the pool must get right before it
/// takes jobs, and again from time to time. Each check hands the pod one known input, picked at
/// random among `input` and `alternatives`, as an ordinary lease: it cannot tell the check from
/// a user's job, nor learn one answer and replay it.
///
/// The right answer is the statement the pool's verifier derives from the known input with the
/// pool's own parameters (as for every job), so no answer has to be written down; one that is
/// given (`publicSignals`, `publicOutputs`) is compared as well.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KnownAnswer {
    /// A known input, as in a ProofJob's `spec.input`: inline, a ConfigMap or Secret of the
    /// pool's namespace, a URL, or `files` for STARK and VM pools.
    pub input: ProofInput,

    /// The public signals a right proof of `input` has, as decimal strings (Groth16 pools).
    /// Optional: checked on top of the statement the verifier derives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub public_signals: Option<Vec<String>>,

    /// What a right proof of `input` commits to (STARK and VM pools): every key given here
    /// must have this value in the proof's public outputs. Optional, as `publicSignals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub public_outputs: Option<serde_json::Map<String, serde_json::Value>>,

    /// More known inputs (up to 16), each with its optional answer. Every check picks one of
    /// `input` and these at random.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub alternatives: Vec<KnownInput>,

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

/// One more known input of a pool's known-answer check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KnownInput {
    /// The input, as `knownAnswer.input`.
    pub input: ProofInput,

    /// The public signals a right proof of it has (Groth16 pools); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub public_signals: Option<Vec<String>>,

    /// Values its proof's public outputs must have (STARK and VM pools); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub public_outputs: Option<serde_json::Map<String, serde_json::Value>>,
}

impl KnownAnswer {
    /// Every known input with its answer: `input` first, then the alternatives.
    pub fn inputs(&self) -> Vec<KnownInput> {
        let first = KnownInput {
            input: self.input.clone(),
            public_signals: self.public_signals.clone(),
            public_outputs: self.public_outputs.clone(),
        };
        std::iter::once(first)
            .chain(self.alternatives.iter().cloned())
            .collect()
    }
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
