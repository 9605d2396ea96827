//! The dispatcher attacked on the real cluster: requests from outside the pool (a wrong token,
//! another pool's token, a body announced and never sent, a body far over its cap) and a job
//! pointing at a Secret its author may not read, a flood of such requests with connections left
//! hanging mid-request, a hand-made pod wearing the pool's labels. Each is refused with the answer a user expects, the operator's memory
//! stays bounded, and the pool's own work is not harmed: a job submitted after the attack
//! succeeds.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::{
    MINUTE, Parameters, Setup, create_pool_with, fixtures, http_answer, http_get, leader,
    leader_ip, prove_mulchain_job, setup, start_impostor_pod, wait_job_finished, wait_serving,
};

/// The dispatcher port of the chart (`dispatcher.port`).
const DISPATCHER_PORT: u16 = 8081;
/// The operator container's admin port (`/metrics`).
const ADMIN_PORT: u16 = 8080;

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
    http_answer(&answer)
}

fn head(address: &str, path: &str, caller: &str, token: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nzkfleet-caller: {caller}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    )
}

/// The operator's resident memory, from `process_resident_memory_bytes` on its `/metrics`.
async fn resident_bytes(admin: &str) -> f64 {
    let (_, page) = http_get(admin, "/metrics").await;
    page.lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("the operator exports process_resident_memory_bytes: {page}"))
}

/// The prover pod of pool `alpha`, and the `zkfleet-caller` header value naming it.
async fn alpha_prover(setup: &Setup) -> (Pod, String) {
    let pod = setup
        .ns
        .api::<Pod>()
        .list(&ListParams::default().labels("zkfleet.dev/pool=alpha"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    let caller = format!(
        "{}/alpha/{}",
        setup.ns.name,
        kube::ResourceExt::name_any(&pod)
    );
    (pod, caller)
}

/// The leader's dispatcher address, `ip:port`.
async fn dispatcher_address(setup: &Setup) -> String {
    let ns = &setup.ns;
    let leader_pod = ns
        .api::<Pod>()
        .get(&leader(ns, &setup.release.operator).await)
        .await
        .unwrap();
    format!(
        "{}:{DISPATCHER_PORT}",
        leader_pod.status.unwrap().pod_ip.unwrap()
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
    let address = dispatcher_address(&setup).await;
    let (alpha_pod, alpha_caller) = alpha_prover(&setup).await;
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
    prove_mulchain_job(ns, "after-attack", "alpha").await;
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

#[tokio::test]
async fn a_flood_of_refused_requests_leaves_the_operator_bounded_and_its_pool_working() {
    const REQUESTS: usize = 2_000;
    const AT_ONCE: usize = 100;
    const HANGING: usize = 400;
    const SENT_OF_EACH: usize = 64 * 1024;
    // Far above what the flood should cost (a few buffers per connection at most), far below
    // what reading the announced bodies would (16 MiB each, 100 at a time).
    const GROWTH_BOUND: f64 = 64.0 * 1024.0 * 1024.0;

    let setup = setup("flood", "").await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(ns, "alpha", 1, &params, json!({})).await;
    wait_serving(ns, "alpha", 1).await;
    let leader_ip = leader_ip(&setup).await;
    let address = format!("{leader_ip}:{DISPATCHER_PORT}");
    let admin = format!("{leader_ip}:{ADMIN_PORT}");
    let (_, caller) = alpha_prover(&setup).await;
    let before = resident_bytes(&admin).await;

    // Connections that send half a request head and then nothing, held open for the whole
    // flood and the job after it.
    let mut hanging = Vec::new();
    for _ in 0..HANGING {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"POST /v1/complete HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        hanging.push(socket);
    }
    // Requests announcing 16 MiB with a wrong token, each sending its first 64 KiB.
    let mut peak = before;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..AT_ONCE {
        let address = address.clone();
        let caller = caller.clone();
        workers.spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..REQUESTS / AT_ONCE {
                let head = head(&address, "/v1/complete", &caller, &"0".repeat(64), 16 << 20);
                let (code, _) = raw_request(&address, &head, &vec![b' '; SENT_OF_EACH]).await;
                codes.push(code);
            }
            codes
        });
    }
    // A request is refused with a 401, or, when the dispatcher closed the connection on the
    // announced body it never read, the kernel resets it before the 401 can be read (code 0:
    // no answer). Either way nothing of it was processed; any other answer is a failure.
    let (mut refused, mut reset, mut other) = (0, 0, Vec::new());
    loop {
        tokio::select! {
            done = workers.join_next() => match done {
                Some(codes) => {
                    for code in codes.unwrap() {
                        match code {
                            401 => refused += 1,
                            0 => reset += 1,
                            code => other.push(code),
                        }
                    }
                }
                None => break,
            },
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                peak = peak.max(resident_bytes(&admin).await);
            }
        }
    }
    assert_eq!(
        (refused + reset, other),
        (REQUESTS, vec![]),
        "every request without the right token is refused ({refused} answered 401, {reset} reset)"
    );
    assert!(refused > 0, "the dispatcher answers refusals with 401");
    peak = peak.max(resident_bytes(&admin).await);
    let growth = peak - before;
    eprintln!(
        "operator resident memory: {:.1} MiB before, {:.1} MiB at the peak of {REQUESTS} refused requests and {HANGING} hanging connections",
        before / 1048576.0,
        peak / 1048576.0
    );
    assert!(
        growth < GROWTH_BOUND,
        "the flood grew the operator by {:.1} MiB",
        growth / 1048576.0
    );

    // The pool works on, the hanging connections still open.
    prove_mulchain_job(ns, "after-flood", "alpha").await;
    drop(hanging);
}

#[tokio::test]
async fn a_hand_made_pod_with_the_pools_labels_is_not_trusted_for_its_verifying_key() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::api::{Api, DeleteParams};
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt as _;

    let setup = setup("hostile-key", "").await;
    let ns = &setup.ns;
    // Parameters on a volume the operator cannot read, so the verifying key has to come from
    // the pool's pods: a hostPath volume on this one node, bound to a claim by name.
    let dir = std::env::temp_dir().join(format!("zkfleet-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut files = Vec::new();
    for name in ["circuit.zkey", "circuit.wasm"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        std::fs::write(dir.join(name), &bytes).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
        files.push(
            json!({"name": name, "sha256": zkfleet_e2e::fleet::hex(&sha2::Sha256::digest(&bytes))}),
        );
    }
    let volume_name = format!("{}-params", ns.name);
    let volumes: Api<PersistentVolume> = Api::all(ns.client.clone());
    volumes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": volume_name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
                         "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                         "hostPath": {"path": dir, "type": "Directory"},
                         "claimRef": {"namespace": ns.name, "name": "params"}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    ns.api::<PersistentVolumeClaim>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "params"},
                "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                         "volumeName": volume_name,
                         "resources": {"requests": {"storage": "1Gi"}}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pool: ProverPool = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
        "metadata": {"name": "alpha"},
        "spec": {"replicas": 1, "backend": {"type": "groth16-bn254"},
                 "parameters": {"version": "v1", "source": {"pvc": {"claimName": "params"}},
                                "files": files},
                 "jobDefaults": {"timeoutSeconds": 30}},
    }))
    .unwrap();
    ns.api::<ProverPool>()
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
    wait_serving(ns, "alpha", 1).await;

    // A pod made by hand with every label and annotation of the pool's own pod (but not its
    // ReplicaSet's hash, which would have the ReplicaSet adopt it), Ready, answering every
    // request, key requests included, with the verification key of another circuit: asked,
    // it would make every honest proof of the pool fail.
    let other_key = std::fs::read_to_string(
        fixtures()
            .parent()
            .unwrap()
            .join("merkle")
            .join("verification_key.json"),
    )
    .unwrap();
    let real = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("zkfleet.dev/pool=alpha"))
        .await
        .unwrap()
        .items
        .remove(0);
    let mut labels = real.metadata.labels.clone().unwrap_or_default();
    labels.remove("pod-template-hash");
    start_impostor_pod(
        ns,
        "alpha-hostile",
        labels,
        real.metadata.annotations.clone().unwrap_or_default(),
        &other_key,
    )
    .await;

    // Holding the pool's token (a tenant who may read the namespace's Secrets can mount it),
    // the hand-made pod still gets no lease: only the pool's own ReplicaSet pods take work.
    let address = dispatcher_address(&setup).await;
    let lease = json!({"namespace": ns.name, "pool": "alpha", "pod": "alpha-hostile",
        "parametersVersion": "v1", "parametersDigest": "sha256:00",
        "freeSlots": 1, "waitSeconds": 0})
    .to_string();
    let caller = format!("{}/alpha/alpha-hostile", ns.name);
    let token = token_of(&setup, "alpha").await;
    let (code, body) = raw_request(
        &address,
        &head(&address, "/v1/lease", &caller, &token, lease.len()),
        lease.as_bytes(),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is not a prover pod of pool alpha"), "{body}");

    // Jobs proved by the pool's own pod verify against the key it gives, whatever the
    // hand-made pod answers.
    for name in ["first", "second", "third"] {
        zkfleet_e2e::fleet::submit_mulchain_job(ns, name, "alpha").await;
    }
    for name in ["first", "second", "third"] {
        let done = wait_job_finished(ns, name, 3 * MINUTE).await;
        let status = done.status.unwrap();
        assert_eq!(
            status.phase,
            Some(JobPhase::Succeeded),
            "{name}: {:?}",
            status.message
        );
        assert_eq!(status.attempts.len(), 1, "{name}: {:?}", status.attempts);
    }
    let pool: ProverPool = ns.api().get("alpha").await.unwrap();
    assert!(pool.status.unwrap().flagged_pods.is_empty());
    let _ = volumes.delete(&volume_name, &DeleteParams::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
