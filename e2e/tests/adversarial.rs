//! The dispatcher attacked on the real cluster: requests from outside the pool (a wrong token,
//! another pool's token, a body announced and never sent, a body far over its cap) and a job
//! pointing at a Secret its author may not read. Each is refused with the answer a user
//! expects, and the pool's own work is not harmed: a job submitted after the attack succeeds.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::{
    MINUTE, Parameters, Setup, create_pool_with, fixtures, leader, setup, wait_job_finished,
    wait_serving,
};

/// The dispatcher port of the chart (`dispatcher.port`).
const DISPATCHER_PORT: u16 = 8081;

/// Sends `head` (an HTTP/1.1 request head) and then `body`, and returns the status code the
/// dispatcher answers with, and its body. The answer may come before the body is sent.
async fn raw_request(address: &str, head: &str, body: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        // Part of the body at most: a refusal must not wait for the rest.
        let _ = socket.write_all(body).await;
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&answer);
                    if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&answer).to_string()
    };
    let answer = tokio::time::timeout(MINUTE, exchange)
        .await
        .expect("the dispatcher answers without waiting for the rest of the body");
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn head(address: &str, path: &str, caller: &str, token: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nzkfleet-caller: {caller}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    )
}

async fn token_of(setup: &Setup, pool: &str) -> String {
    let secret = setup
        .ns
        .api::<Secret>()
        .get(&format!("{pool}-dispatcher-token"))
        .await
        .unwrap();
    String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
}

#[tokio::test]
async fn requests_from_outside_a_pool_are_refused_before_their_bodies_and_harm_nothing() {
    let setup = setup("attack", "").await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(ns, "alpha", 1, &params, json!({})).await;
    create_pool_with(ns, "beta", 0, &params, json!({})).await;
    wait_serving(ns, "alpha", 1).await;
    let leader_pod = ns
        .api::<Pod>()
        .get(&leader(ns, &setup.release.operator).await)
        .await
        .unwrap();
    let address = format!(
        "{}:{DISPATCHER_PORT}",
        leader_pod.status.unwrap().pod_ip.unwrap()
    );
    let alpha_pod = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("zkfleet.dev/pool=alpha"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    let alpha_caller = format!(
        "{}/alpha/{}",
        ns.name,
        kube::ResourceExt::name_any(&alpha_pod)
    );
    let beta_token = token_of(&setup, "beta").await;
    let alpha_token = token_of(&setup, "alpha").await;
    let lease = json!({"namespace": ns.name, "pool": "alpha",
        "pod": kube::ResourceExt::name_any(&alpha_pod),
        "parametersVersion": "v1", "parametersDigest": "sha256:00",
        "freeSlots": 1, "waitSeconds": 0})
    .to_string();

    // A wrong token, and another pool's valid token: 401, in the same words.
    let (code, wrong) = raw_request(
        &address,
        &head(
            &address,
            "/v1/lease",
            &alpha_caller,
            &"f".repeat(64),
            lease.len(),
        ),
        lease.as_bytes(),
    )
    .await;
    assert_eq!(code, 401, "{wrong}");
    let (code, other_pool) = raw_request(
        &address,
        &head(
            &address,
            "/v1/lease",
            &alpha_caller,
            &beta_token,
            lease.len(),
        ),
        lease.as_bytes(),
    )
    .await;
    assert_eq!(code, 401, "{other_pool}");
    assert_eq!(wrong, other_pool);

    // 100 MB announced, nothing sent: refused at once, the body is never read.
    let (code, body) = raw_request(
        &address,
        &head(&address, "/v1/complete", &alpha_caller, "nope", 100_000_000),
        b"{",
    )
    .await;
    assert_eq!(code, 401, "{body}");
    // The right token from the wrong address (this test runs on the node, not in the pod):
    // refused before the body too.
    let (code, body) = raw_request(
        &address,
        &head(
            &address,
            "/v1/complete",
            &alpha_caller,
            &alpha_token,
            100_000_000,
        ),
        b"{",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not from pod"), "{body}");

    // The pool works on: a job submitted now succeeds.
    let job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": "after-attack"},
        "spec": {"poolRef": {"name": "alpha"},
                 "input": {"inline": {"json": std::fs::read_to_string(fixtures().join("input.json")).unwrap()}}},
    }))
    .unwrap();
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let done = wait_job_finished(ns, "after-attack", 3 * MINUTE).await;
    assert_eq!(done.status.and_then(|s| s.phase), Some(JobPhase::Succeeded));
    let pool: ProverPool = ns.api().get("alpha").await.unwrap();
    assert!(pool.status.unwrap().flagged_pods.is_empty());
}

#[tokio::test]
async fn a_job_pointing_at_a_secret_not_labelled_for_proofs_fails_without_learning_of_it() {
    let setup = setup("secret-input", "").await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(ns, "pool", 0, &params, json!({})).await;
    let password: Secret = serde_json::from_value(json!({
        "metadata": {"name": "database-password"},
        "stringData": {"password": "{\"a\": \"hunter2\"}"},
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &password)
        .await
        .unwrap();
    let job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": "snoop"},
        "spec": {"poolRef": {"name": "pool"},
                 "input": {"secretKeyRef": {"name": "database-password", "key": "password"},
                           "sha256": "0".repeat(64)}},
    }))
    .unwrap();
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let failed = ns
        .wait_for::<ProofJob>("snoop", "the job fails", MINUTE, |j| {
            j.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Failed)
        })
        .await
        .unwrap();
    let status = failed.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("InvalidInput"));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("zkfleet.dev/proof-input"), "{message}");
    assert!(
        !message.contains("sha256 of") && !message.contains("bytes"),
        "nothing about the Secret's content: {message}"
    );
}
