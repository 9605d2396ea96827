//! Why a running prover pod is not ready, in the prover's own words: the body of its `/readyz`
//! answer (for example "parameters digest sha256:… does not match file circuit.zkey"). The
//! kubelet only records the status code of a failed probe, and a rotation rolled back for "not
//! ready" alone tells a user nothing to act on.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::build::PROVER_PORT;
use crate::build::deployment::CONTAINER;

/// How long one pod may take to answer; an operator outside the cluster cannot reach pod IPs at
/// all, and must not stall its passes on them.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Pods asked per pass: the messages quote two at most.
const MAX_PODS: usize = 3;
/// Bytes of an answer read at most.
const MAX_ANSWER: u64 = 16 * 1024;
/// Characters of a reason kept.
const MAX_REASON: usize = 400;

/// Running prover pods that are not ready, by name, with the reason their prover gives. Pods
/// that do not answer are left out.
pub async fn not_ready_reasons(pods: &[Pod]) -> BTreeMap<String, String> {
    let mut asked: Vec<&Pod> = pods.iter().filter(|p| worth_asking(p)).collect();
    asked.sort_by_key(|p| p.name_any());
    asked.truncate(MAX_PODS);
    let answers = futures::future::join_all(asked.iter().map(|pod| async move {
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        Some((pod.name_any(), ask(&ip, PROVER_PORT).await?))
    }))
    .await;
    answers.into_iter().flatten().collect()
}

/// A pod whose prover runs but is not ready: it can say why.
fn worth_asking(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.pod_ip.is_some()
        && status.container_statuses.iter().flatten().any(|cs| {
            cs.name == CONTAINER
                && !cs.ready
                && cs.state.as_ref().is_some_and(|s| s.running.is_some())
        })
}

/// `GET /readyz` on `ip:port`; the reason when the answer is not 200, `None` when the pod is
/// ready after all or does not answer in time.
pub async fn ask(ip: &str, port: i32) -> Option<String> {
    let port = u16::try_from(port).ok()?;
    let exchange = async {
        let mut stream = TcpStream::connect((ip, port)).await.ok()?;
        // HTTP/1.0: the server closes the connection after its answer, which ends the read.
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nAccept: application/json\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
            .ok()?;
        Some(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange).await.ok()??;
    reason(&answer)
}

/// The reason in a raw HTTP answer of `/readyz`: `None` for 200, else the `message` of the
/// prover's JSON error body, else the body as text, else the status line.
pub fn reason(answer: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next()?;
    let code = status_line.split_whitespace().nth(1)?;
    if !status_line.starts_with("HTTP/") || code == "200" {
        return None;
    }
    let body = body.trim();
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    let message = if message.is_empty() {
        format!("/readyz answered {}", status_line.trim())
    } else {
        message
    };
    Some(message.chars().take(MAX_REASON).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStatus};

    #[test]
    fn reason_is_the_message_of_a_failed_answer() {
        let failed = b"HTTP/1.0 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n\
            {\"code\":\"digest_mismatch\",\"message\":\"parameters could not be loaded: digest does not match file circuit.zkey\"}";
        assert_eq!(
            reason(failed).as_deref(),
            Some("parameters could not be loaded: digest does not match file circuit.zkey")
        );
        assert_eq!(
            reason(b"HTTP/1.1 503 Service Unavailable\r\n\r\ndraining").as_deref(),
            Some("draining")
        );
        assert_eq!(
            reason(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").as_deref(),
            Some("/readyz answered HTTP/1.1 500 Internal Server Error")
        );
        assert_eq!(
            reason(b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"ready\"}"),
            None
        );
        assert_eq!(reason(b""), None);
        assert_eq!(reason(b"garbage"), None);
        let long = format!("HTTP/1.0 503 x\r\n\r\n{}", "a".repeat(5000));
        assert_eq!(reason(long.as_bytes()).unwrap().len(), MAX_REASON);
    }

    #[tokio::test]
    async fn asks_a_prover_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = i32::from(listener.local_addr().unwrap().port());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 1024];
            let n = conn.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).to_string();
            conn.write_all(
                b"HTTP/1.0 503 Service Unavailable\r\n\r\n{\"code\":\"x\",\"message\":\"still loading\"}",
            )
            .await
            .unwrap();
            request
        });
        assert_eq!(
            ask("127.0.0.1", port).await.as_deref(),
            Some("still loading")
        );
        assert!(
            server
                .await
                .unwrap()
                .starts_with("GET /readyz HTTP/1.0\r\n")
        );
        // Nothing listening: no reason, and no error either.
        assert_eq!(ask("127.0.0.1", port).await, None);
    }

    #[test]
    fn only_running_unready_provers_are_asked() {
        let pod = |ready: bool, running: bool, ip: bool| {
            let mut p = Pod::default();
            p.metadata.name = Some("p".into());
            p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                pod_ip: ip.then(|| "10.0.0.1".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER.into(),
                    ready,
                    state: Some(ContainerState {
                        running: running.then(ContainerStateRunning::default),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..Default::default()
            });
            p
        };
        assert!(worth_asking(&pod(false, true, true)));
        assert!(!worth_asking(&pod(true, true, true)), "ready");
        assert!(!worth_asking(&pod(false, false, true)), "not running");
        assert!(!worth_asking(&pod(false, true, false)), "no IP yet");
        assert!(!worth_asking(&Pod::default()));
    }
}
