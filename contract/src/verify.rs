//! The verifier protocol: `POST /v1/verify` on a prover pod or on a pool's verifier, which
//! answers whether a proof is valid under the pod's parameters. The operator asks the pool's
//! verifier (never the pod that made the proof) about every proof, and sends the job's own
//! input with it: the verifier derives the statement (Groth16 public signals, Miden's input
//! stack, Stone's public input) from that input and its own parameters, checks the proof
//! against the derived statement, and refuses a proof whose claims differ from it. So a valid
//! proof of some other statement is refused.
//!
//! Field names are snake_case, as in the rest of the prover's HTTP API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lease::JobInput;

/// `POST`: body [`VerifyRequest`], answer [`VerifyResponse`] (200 whether or not the proof is
/// valid); a request that cannot be checked at all gets an [`crate::ErrorBody`].
pub const VERIFY_PATH: &str = "/v1/verify";

/// Response header in which a prover or verifier pod names itself (its `POD_NAME`), on every
/// answer: a client that gets an answer it cannot use can say which pod gave it, and an answer
/// without it came from something that is not a zkfleet pod.
pub const ANSWERED_BY_HEADER: &str = "x-zkfleet-pod";

/// A proof to check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Backend the caller expects the verifier to run; refused if it runs another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The proof as the prover reported it (see [`crate::lease::Outcome::Proved`]).
    pub proof: Value,
    /// Groth16 public signals (snarkjs `public.json`); empty for other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_signals: Vec<String>,
    /// Public outputs of other proof systems, as the prover reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_outputs: Option<Value>,
    /// The job's input, exactly as it was leased to the prover. When given, the verifier
    /// derives the statement from it and checks the proof against that; without it (a user's
    /// standalone call) the proof is checked against its own claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<JobInput>,
}

/// The verdict.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyResponse {
    /// True only when the proof verified.
    pub valid: bool,
    /// Milliseconds the verifier took.
    pub verifier_ms: f64,
    /// Why the proof was refused, in the verifier's words (absent when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The pod that verified, when it knows its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// The statement the verifier derived from the request's `input` (absent without one):
    /// `{"publicSignals": [...]}` for Groth16, `{"programHash", "operandStack"}` for Miden,
    /// `{"output", "nSteps", "layout"}` of the job's public input for Stone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<Value>,
    /// True when the verifier could not derive a statement from the job's input at all (the
    /// input is the tenant's fault, not the prover's): the proof is refused and no pod is
    /// blamed for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_rejected: bool,
}
