//! Asks a pool's verifier (see [`crate::build::verifier`]) whether a STARK or VM proof is
//! valid: `POST /v1/verify` of the verifier protocol in [`zkfleet_contract::verify`].
//!
//! Only a verdict from the verifier itself counts: a proof is rejected only on a 200 answer
//! that says so. Anything else (the verifier not yet up, a proxy's 404, a timeout) leaves the
//! result with the pod, which uploads it again later.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use zkfleet_contract::ErrorBody;
use zkfleet_contract::lease::JobInput;
use zkfleet_contract::verify::{ANSWERED_BY_HEADER, VERIFY_PATH, VerifyRequest, VerifyResponse};

/// Longest one verification may take; STARK verifiers take milliseconds to a few seconds.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read from a verifier.
const MAX_ANSWER_BYTES: usize = 64 << 10;

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(VERIFY_TIMEOUT)
            .build()
            .expect("a client with timeouts only builds")
    })
}

/// What the verifier is asked about: a proof with the prover's claims and, for a job, the
/// job's input, from which the verifier derives the statement itself.
pub struct Question<'a> {
    pub proof: &'a Value,
    pub public_signals: &'a [String],
    pub public_outputs: Option<&'a Value>,
    pub input: Option<&'a JobInput>,
}

/// The verifier's verdict on a proof, or why no verdict could be had.
pub async fn verify(base_url: &str, question: Question<'_>) -> Result<VerifyResponse, String> {
    let request = VerifyRequest {
        backend: None,
        proof: question.proof.clone(),
        public_signals: question.public_signals.to_vec(),
        public_outputs: question.public_outputs.cloned(),
        input: question.input.cloned(),
    };
    let url = format!("{}{VERIFY_PATH}", base_url.trim_end_matches('/'));
    let response = client()
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status();
    // Which pod answered: a refusal is only worth reading with it (a Service briefly routing
    // to an address another pod now has answers without it).
    let by = match response.headers().get(ANSWERED_BY_HEADER) {
        Some(pod) => format!("pod {}", String::from_utf8_lossy(pod.as_bytes())),
        None => "something that is not a zkfleet pod (no x-zkfleet-pod header)".to_string(),
    };
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer of {url}: {e}"))?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(format!("{url} answered with {} bytes", body.len()));
    }
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| format!("{url} answered {status} without a verdict: {e}"));
    }
    Err(match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => format!(
            "{url} answered {status}, by {by}: {} ({})",
            e.message, e.code
        ),
        Err(_) => format!("{url} answered {status}, by {by}"),
    })
}
