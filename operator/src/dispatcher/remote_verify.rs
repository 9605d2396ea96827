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

/// The verifier's verdict on a proof, or why no verdict could be had. With `pod`, only an
/// answer naming that pod (in its `x-zkfleet-pod` header) counts: whatever else answers at
/// the address is not the verifier the operator chose.
pub async fn verify(
    base_url: &str,
    pod: Option<&str>,
    question: &Question<'_>,
) -> Result<VerifyResponse, String> {
    let request = VerifyRequest {
        backend: None,
        proof: question.proof.clone(),
        public_signals: question.public_signals.to_vec(),
        public_outputs: question.public_outputs.cloned(),
        input: question.input.cloned(),
    };
    let url = format!("{}{VERIFY_PATH}", base_url.trim_end_matches('/'));
    let mut response = client()
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status();
    // Which pod answered: a refusal is only worth reading with it (a Service briefly routing
    // to an address another pod now has answers without it).
    let answered_by = response
        .headers()
        .get(ANSWERED_BY_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let by = match &answered_by {
        Some(name) => format!("pod {name}"),
        None => "something that is not a zkfleet pod (no x-zkfleet-pod header)".to_string(),
    };
    if let Some(asked) = pod
        && answered_by.as_deref() != Some(asked)
    {
        return Err(format!(
            "{url} answered {status}, by {by}, not by pod {asked}"
        ));
    }
    // Read up to the cap, never more: the answer's length is the answerer's word.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer of {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "{url} answered with more than {MAX_ANSWER_BYTES} bytes, by {by}"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| format!("{url} answered {status} without a verdict, by {by}: {e}"));
    }
    Err(match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => format!(
            "{url} answered {status}, by {by}: {} ({})",
            e.message, e.code
        ),
        Err(_) => format!("{url} answered {status}, by {by}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use serde_json::json;

    /// A verifier on loopback answering every request with `headers` and `body`.
    async fn answering(headers: &[(&'static str, String)], body: Vec<u8>) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let app = axum::Router::new().route(
            VERIFY_PATH,
            axum::routing::post(move || {
                let (map, body) = (map.clone(), body.clone());
                async move { (map, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn question<'a>(proof: &'a Value, signals: &'a [String]) -> Question<'a> {
        Question {
            proof,
            public_signals: signals,
            public_outputs: None,
            input: None,
        }
    }

    #[tokio::test]
    async fn only_the_pod_asked_gives_a_verdict() {
        let valid = serde_json::to_vec(&json!({"valid": true, "verifier_ms": 1.0})).unwrap();
        let (proof, signals) = (json!({"proof": 1}), vec!["1".to_string()]);
        let q = question(&proof, &signals);
        let impostor = answering(
            &[
                ("content-type", "application/json".into()),
                (ANSWERED_BY_HEADER, "alpha-hostile".into()),
            ],
            valid.clone(),
        )
        .await;
        let refused = verify(&impostor, Some("alpha-verifier-7d9f-x2"), &q)
            .await
            .unwrap_err();
        assert!(
            refused.contains("not by pod alpha-verifier-7d9f-x2"),
            "{refused}"
        );
        assert!(
            refused.contains("alpha-hostile"),
            "it records who answered: {refused}"
        );
        let anonymous = answering(
            &[("content-type", "application/json".into())],
            valid.clone(),
        )
        .await;
        assert!(
            verify(&anonymous, Some("alpha-verifier-7d9f-x2"), &q)
                .await
                .is_err()
        );

        let honest = answering(
            &[
                ("content-type", "application/json".into()),
                (ANSWERED_BY_HEADER, "alpha-verifier-7d9f-x2".into()),
            ],
            valid,
        )
        .await;
        assert!(
            verify(&honest, Some("alpha-verifier-7d9f-x2"), &q)
                .await
                .unwrap()
                .valid
        );
    }

    #[tokio::test]
    async fn an_answer_past_the_cap_is_refused() {
        let (proof, signals) = (json!({"proof": 1}), vec!["1".to_string()]);
        let q = question(&proof, &signals);
        let mut huge = br#"{"valid": true, "verifier_ms": 1.0, "reason": ""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', 4 * MAX_ANSWER_BYTES));
        huge.extend(br#""}"#);
        let flood = answering(&[(ANSWERED_BY_HEADER, "v".into())], huge).await;
        let refused = verify(&flood, Some("v"), &q).await.unwrap_err();
        assert!(refused.contains("more than"), "{refused}");
    }
}
