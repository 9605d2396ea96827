//! The verifier protocol: `POST /v1/verify` on a prover pod or on a pool's verifier, which
//! answers whether a proof is valid for its public outputs under the pod's parameters. The
//! operator asks a pool's verifier (never the pod that made the proof) for every proof it cannot
//! check itself.
//!
//! Field names are snake_case, as in the rest of the prover's HTTP API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST`: body [`VerifyRequest`], answer [`VerifyResponse`] (200 whether or not the proof is
/// valid); a request that cannot be checked at all gets an [`crate::ErrorBody`].
pub const VERIFY_PATH: &str = "/v1/verify";

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
}
