//! The dispatcher under faults and attack, with no cluster: the real dispatcher over an
//! in-memory API ([`support`]). Each test is a defect a user would notice (a job stuck for
//! good, a tenant harming another, an API server flooded) and failed before its fix.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use zkfleet_contract::lease::{
    CALLER_HEADER, COMPLETE_PATH, Caller, CompleteRequest, CompleteResponse, HEARTBEAT_PATH,
    HeartbeatRequest, LEASE_PATH, LeaseRequest, Outcome,
};
use zkfleet_crds::v1alpha1::{AttemptOutcome, ProofJob};
use zkfleet_fake_api::Rule;
use zkfleet_operator::dispatcher::auth::REREAD_AFTER;
use zkfleet_operator::dispatcher::{DispatchError, Settings};
use zkfleet_pipeline_tests::{Fleet, inline_inputs, settings, token_of};
use zkfleet_prover::backend::{Backend, ProofInput};
use zkfleet_prover::cancel::Cancel;

fn lease_request(caller: &Caller, wait_seconds: u32) -> LeaseRequest {
    LeaseRequest {
        caller: caller.clone(),
        parameters_version: "v1".into(),
        parameters_digest: "sha256:00".into(),
        free_slots: 1,
        wait_seconds,
    }
}

/// The pod as the dispatcher knows it, once its watch has brought it.
async fn known_pod(fleet: &Fleet, caller: &Caller) -> Arc<Pod> {
    let token = token_of(&caller.namespace, &caller.pool);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match fleet
            .dispatcher
            .authenticate(caller, Some(&token), None)
            .await
        {
            Ok(pod) => return pod,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "pod {caller:?} never authenticated: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real proof of the mulchain fixture circuit, as the agent would upload it. The proving key
/// is loaded once for every test.
fn mulchain_proof() -> Outcome {
    let dir = zkfleet_pipeline_tests::circuit("mulchain");
    let backend = zkfleet_pipeline_tests::mulchain_backend();
    let inputs: Value =
        serde_json::from_slice(&std::fs::read(dir.join("input.json")).unwrap()).unwrap();
    let out = backend
        .prove(ProofInput::Inputs(inputs), &Cancel::new())
        .unwrap();
    Outcome::Proved {
        proof: out.proof,
        public_signals: out.public_signals,
        public_outputs: None,
        proving_millis: 1,
        parameters_digest: "sha256:00".into(),
        usage: None,
    }
}

/// Leases the pool's next job to `pod` and uploads a real proof for it, as an agent would;
/// the dispatcher's answer to the upload.
async fn prove_next_job(
    fleet: &Fleet,
    caller: &Caller,
    pod: &Pod,
) -> Result<CompleteResponse, DispatchError> {
    let leased = fleet
        .dispatcher
        .lease(pod, &lease_request(caller, 5))
        .await
        .unwrap();
    fleet
        .dispatcher
        .complete(&CompleteRequest {
            caller: caller.clone(),
            lease: leased.jobs[0].lease.clone(),
            outcome: mulchain_proof(),
        })
        .await
}

/// POSTs `body` to the dispatcher as `caller` with `token`; returns the status and JSON body.
async fn post(
    fleet: &Fleet,
    path: &str,
    caller: &Caller,
    token: &str,
    body: &impl serde::Serialize,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fleet.url))
        .header("authorization", format!("Bearer {token}"))
        .header(CALLER_HEADER, caller.header_value())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_request_dropped_mid_grant_leaves_its_job_in_the_queue() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let first = fleet.pod("team", "cpu", "prover-a");
    let second = fleet.pod("team", "cpu", "prover-b");
    // The input is read from a ConfigMap while the lease is granted: holding that read holds
    // the grant where the pod's long-poll can give up.
    let input =
        std::fs::read_to_string(zkfleet_pipeline_tests::circuit("mulchain").join("input.json"))
            .unwrap();
    fleet.api.create(
        &serde_json::from_value::<ConfigMap>(json!({
            "metadata": {"name": "inputs", "namespace": "team"},
            "data": {"input.json": input},
        }))
        .unwrap(),
    );
    let first_pod = known_pod(&fleet, &first).await;
    let second_pod = known_pod(&fleet, &second).await;
    let slow_read = fleet.api.hold(Rule::new("GET", "/configmaps/inputs"));
    fleet.job(
        "team",
        "stuck",
        "cpu",
        json!({"configMapKeyRef": {"name": "inputs", "key": "input.json"}}),
    );
    let dispatcher = fleet.dispatcher.clone();
    let request = lease_request(&first, 5);
    let gave_up = tokio::spawn(async move { dispatcher.lease(&first_pod, &request).await });
    slow_read.reached().await;
    // The pod gives up waiting (its request is dropped) while the grant is under way.
    gave_up.abort();
    let _ = gave_up.await;
    slow_read.open();

    let leased = fleet
        .dispatcher
        .lease(&second_pod, &lease_request(&second, 5))
        .await
        .unwrap();
    assert_eq!(
        leased.jobs.len(),
        1,
        "the job went back in the queue and the next pod gets it"
    );
    assert!(leased.jobs[0].job.ends_with("/stuck"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_after_its_lease_ran_out_is_refused_as_stale() {
    let fleet = Fleet::start(Settings {
        lease_duration: Duration::from_secs(1),
        ..settings()
    })
    .await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    let pod = known_pod(&fleet, &caller).await;
    fleet.job("team", "late", "cpu", inline_inputs("mulchain"));
    let leased = fleet
        .dispatcher
        .lease(&pod, &lease_request(&caller, 5))
        .await
        .unwrap();
    let lease = leased.jobs[0].lease.clone();
    // No heartbeat: the lease runs out and the attempt is recorded as expired.
    fleet
        .until("the lease expired", |f| {
            f.stored("team", "late")
                .status
                .unwrap_or_default()
                .attempts
                .first()
                .and_then(|a| a.outcome)
                == Some(AttemptOutcome::LeaseExpired)
        })
        .await;
    let answer = fleet
        .dispatcher
        .complete(&CompleteRequest {
            caller: caller.clone(),
            lease,
            outcome: mulchain_proof(),
        })
        .await;
    assert!(
        matches!(answer, Err(DispatchError::Stale(_))),
        "a late result is stale (409), not a duplicate: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_pod_of_another_namespace_cannot_fail_or_keep_anothers_job() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team-a", "cpu", "mulchain");
    fleet.pool("team-b", "cpu", "mulchain");
    let attacker = fleet.pod("team-a", "cpu", "prover-0");
    let victim = fleet.pod("team-b", "cpu", "prover-0");
    known_pod(&fleet, &attacker).await;
    let victim_pod = known_pod(&fleet, &victim).await;
    fleet.job("team-b", "payroll", "cpu", inline_inputs("mulchain"));
    let leased = fleet
        .dispatcher
        .lease(&victim_pod, &lease_request(&victim, 5))
        .await
        .unwrap();
    let lease = leased.jobs[0].lease.clone();

    // team-a's pod, with team-a's own valid token, names team-b's lease.
    let attacker_token = token_of("team-a", "cpu");
    let (status, body) = post(
        &fleet,
        COMPLETE_PATH,
        &attacker,
        &attacker_token,
        &CompleteRequest {
            caller: attacker.clone(),
            lease: lease.clone(),
            outcome: Outcome::Failed {
                code: "invalid_input".into(),
                message: "forged".into(),
                retryable: false,
                usage: None,
            },
        },
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(
        &fleet,
        HEARTBEAT_PATH,
        &attacker,
        &attacker_token,
        &HeartbeatRequest {
            caller: attacker.clone(),
            leases: vec![lease.clone()],
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["revoked"][0]["uid"],
        lease.uid.as_str(),
        "renews nothing"
    );
    let job = fleet.stored("team-b", "payroll");
    assert_eq!(fleet.phase("team-b", "payroll"), "Running");
    assert!(
        job.status.unwrap().attempts[0].outcome.is_none(),
        "team-b's attempt is untouched"
    );
    // The real holder still completes it.
    let answer = fleet
        .dispatcher
        .complete(&CompleteRequest {
            caller: victim,
            lease,
            outcome: mulchain_proof(),
        })
        .await
        .unwrap();
    assert_eq!(answer.phase, "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_read_nothing_new_from_the_api_and_reveal_no_pool() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    known_pod(&fleet, &caller).await;
    let reads_before = fleet.api_calls("GET", "/secrets/");
    let flood = std::time::Instant::now();
    let mut messages = std::collections::BTreeSet::new();
    for i in 0..100 {
        let (status, body) = post(
            &fleet,
            LEASE_PATH,
            &caller,
            &format!("wrong-token-{i:0>40}"),
            &lease_request(&caller, 0),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        messages.insert(
            body["message"]
                .as_str()
                .unwrap_or("")
                .replace("team/cpu", "<pool>"),
        );
    }
    // One re-read per interval at most (the Secret may have been replaced), however slow the
    // machine: not one per wrong token.
    let allowed = 1 + flood.elapsed().as_secs() / REREAD_AFTER.as_secs();
    let reads = (fleet.api_calls("GET", "/secrets/") - reads_before) as u64;
    assert!(
        reads <= allowed,
        "100 wrong tokens cost {reads} Secret reads, not at most {allowed}"
    );
    // A pool that does not exist is refused in the same words as a wrong token.
    let nowhere = Caller {
        pool: "no-such-pool".into(),
        ..caller.clone()
    };
    let (status, body) = post(
        &fleet,
        LEASE_PATH,
        &nowhere,
        &token_of("team", "cpu"),
        &lease_request(&nowhere, 0),
    )
    .await;
    assert_eq!(status, 401);
    messages.insert(
        body["message"]
            .as_str()
            .unwrap_or("")
            .replace("team/no-such-pool", "<pool>"),
    );
    assert_eq!(
        messages.len(),
        1,
        "one refusal for every cause: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_not_read_before_the_caller_is_authenticated() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    known_pod(&fleet, &caller).await;
    // A body announced as 100 MB of which nothing is sent: answered at once, because nothing of
    // it is read without a token.
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let address = fleet.url.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {COMPLETE_PATH} HTTP/1.1\r\nhost: {address}\r\n{CALLER_HEADER}: {}\r\nauthorization: Bearer not-the-token\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n{{",
            caller.header_value()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = socket.read(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[..n]).to_string()
    })
    .await
    .expect("the refusal comes without the body being read");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // With the token, a lease request larger than any real one is refused, not parsed.
    let (status, body) = {
        let response = reqwest::Client::new()
            .post(format!("{}{LEASE_PATH}", fleet.url))
            .header(CALLER_HEADER, caller.header_value())
            .header(
                "authorization",
                format!("Bearer {}", token_of("team", "cpu")),
            )
            .body(vec![b' '; 1 << 20])
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "too_large");

    // No caller header: a clear 400 that says what to send.
    let response = reqwest::Client::new()
        .post(format!("{}{LEASE_PATH}", fleet.url))
        .json(&lease_request(&caller, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains(CALLER_HEADER),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_proof_keeps_other_controllers_finalizers() {
    let fleet = Fleet::start(Settings {
        // Every proof goes to the artifact store.
        inline_result_max_bytes: 16,
        ..settings()
    })
    .await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    let pod = known_pod(&fleet, &caller).await;
    let mut job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": "big", "namespace": "team", "finalizers": ["backup.example.com/keep"]},
        "spec": {"poolRef": {"name": "cpu"}, "input": inline_inputs("mulchain")},
        "status": {"phase": "Queued"},
    }))
    .unwrap();
    job = fleet.api.create(&job);
    assert_eq!(job.metadata.finalizers.as_ref().unwrap().len(), 1);
    let answer = prove_next_job(&fleet, &caller, &pod).await.unwrap();
    assert_eq!(answer.phase, "Succeeded");
    let stored = fleet.stored("team", "big");
    let finalizers = stored.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers.contains(&"backup.example.com/keep".to_string())
            && finalizers.contains(&"zkfleet.dev/proof-artifact".to_string()),
        "{finalizers:?}"
    );
    let location = stored.status.unwrap().result.unwrap().location.unwrap();
    let path = location.strip_prefix("file://").unwrap();
    assert!(std::path::Path::new(path).exists(), "{location}");

    // Deleting the job before its proof is recorded leaves no stored proof behind.
    let _ = Api::<ProofJob>::namespaced(fleet.api.client(), "team")
        .delete("big", &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_takes_no_more_jobs_than_its_slots() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "greedy");
    let pod = known_pod(&fleet, &caller).await;
    for i in 0..5 {
        fleet.job("team", &format!("j{i}"), "cpu", inline_inputs("mulchain"));
    }
    fleet
        .until("every job is queued", |f| {
            f.dispatcher.load("team", "cpu").0 == 5
        })
        .await;
    let greedy = LeaseRequest {
        free_slots: 100,
        ..lease_request(&caller, 0)
    };
    let first = fleet.dispatcher.lease(&pod, &greedy).await.unwrap();
    assert_eq!(first.jobs.len(), 2, "slotsPerReplica is 2");
    let again = fleet.dispatcher.lease(&pod, &greedy).await.unwrap();
    assert!(again.jobs.is_empty(), "its slots are full");
    assert_eq!(fleet.dispatcher.load("team", "cpu"), (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_a_usable_key_fails_attempts_with_what_to_fix_not_503_forever() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    // Someone replaced the verification key in the parameters ConfigMap: it no longer matches
    // the sha256 the pool lists, so no proof can be checked until the pool is fixed.
    let other_key = std::fs::read_to_string(
        zkfleet_pipeline_tests::circuit("merkle").join("verification_key.json"),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(fleet.api.client(), "team")
        .patch(
            "cpu-params",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": {"verification_key.json": other_key}})),
        )
        .await
        .unwrap();
    let caller = fleet.pod("team", "cpu", "prover-a");
    let pod = known_pod(&fleet, &caller).await;
    fleet.job("team", "unverifiable", "cpu", inline_inputs("mulchain"));
    let answer = prove_next_job(&fleet, &caller, &pod)
        .await
        .expect("an answer the pod stops retrying on, not 503");
    assert_eq!(answer.phase, "Queued", "retried within maxRetries");
    let status = fleet.stored("team", "unverifiable").status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("VerifyingKeyUnavailable"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("does not match") && message.contains("verification_key.json"),
        "says what to fix: {message}"
    );
    assert!(
        fleet.dispatcher.flagged("team", "cpu").is_empty(),
        "the pod is not to blame"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_too_large_for_the_status_fails_its_job_where_no_store_would_keep_it() {
    let fleet = Fleet::start_with(
        Settings {
            inline_result_max_bytes: 16,
            ..settings()
        },
        false,
    )
    .await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    let pod = known_pod(&fleet, &caller).await;
    fleet.job("team", "big", "cpu", inline_inputs("mulchain"));
    let answer = prove_next_job(&fleet, &caller, &pod).await.unwrap();
    assert_eq!(
        answer.phase, "Failed",
        "not Succeeded with a proof nobody keeps"
    );
    let status = fleet.stored("team", "big").status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ResultTooLarge"));
    assert_eq!(status.retryable, Some(false));
    assert!(
        status.message.unwrap_or_default().contains("artifacts.url"),
        "says what to set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_the_former_leader_wrote_first_keeps_its_pod_proving_and_is_not_granted_twice() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use kube::ResourceExt as _;
    use kube::api::{Patch, PatchParams};
    use zkfleet_contract::lease::LeaseRef;
    use zkfleet_operator::dispatcher::status::{self as job_status, Grant};

    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let former = fleet.pod("team", "cpu", "prover-a");
    let latecomer = fleet.pod("team", "cpu", "prover-b");
    known_pod(&fleet, &former).await;
    let latecomer_pod = known_pod(&fleet, &latecomer).await;
    fleet.job("team", "contested", "cpu", inline_inputs("mulchain"));
    // This dispatcher leads now and leases the job to prover-b; its lease write is slow.
    let lease_write = fleet
        .api
        .hold(Rule::new("PUT", "/proofjobs/contested/status"));
    let dispatcher = fleet.dispatcher.clone();
    let request = lease_request(&latecomer, 1);
    let asked = tokio::spawn(async move { dispatcher.lease(&latecomer_pod, &request).await });
    lease_write.reached().await;

    // Meanwhile the former leader, serving a moment after it stopped leading, leased attempt 1
    // to prover-a, which is proving it and heartbeats to this dispatcher.
    let queued = fleet.stored("team", "contested");
    let grant = Grant {
        attempt: 1,
        pod: "prover-a".into(),
        node: None,
        deadline: Time(Timestamp::now() + SignedDuration::from_secs(30)),
        parameters_version: Some("v1".into()),
        parameters_digest: None,
        input_digest: None,
    };
    let status = job_status::leased(&queued, &grant, &Time(Timestamp::now()));
    let jobs: Api<ProofJob> = Api::namespaced(fleet.api.client(), "team");
    jobs.patch_status(
        "contested",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
    let lease = LeaseRef {
        uid: queued.uid().unwrap(),
        attempt: 1,
    };
    let beat = fleet
        .dispatcher
        .heartbeat(&HeartbeatRequest {
            caller: former.clone(),
            leases: vec![lease.clone()],
        })
        .await;
    assert!(
        beat.revoked.is_empty(),
        "prover-a keeps proving the attempt the former leader gave it"
    );

    lease_write.open();
    let answer = asked.await.unwrap().unwrap();
    assert!(
        answer.jobs.is_empty(),
        "the lease write lost to the former leader's: prover-b gets nothing"
    );
    let done = fleet
        .dispatcher
        .complete(&CompleteRequest {
            caller: former.clone(),
            lease,
            outcome: mulchain_proof(),
        })
        .await
        .unwrap();
    assert_eq!(done.phase, "Succeeded");
    let status = fleet.stored("team", "contested").status.unwrap();
    assert_eq!(
        status.attempts.len(),
        1,
        "proved once, by the pod the former leader chose: {:?}",
        status.attempts
    );
}

/// An attempt another leader already ended (its lease ran out while this one could not see it)
/// is not revived by a proof that comes in late: before the fix the success was written on
/// top of the ended attempt, and the job was `Succeeded` with no successful attempt (found by
/// `make chaos` after an etcd restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_for_an_attempt_another_leader_ended_does_not_revive_it() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::{Patch, PatchParams};
    use zkfleet_operator::dispatcher::status::{self as job_status, AttemptFailure};

    let fleet = Fleet::start(settings()).await;
    fleet.pool("team", "cpu", "mulchain");
    let caller = fleet.pod("team", "cpu", "prover-a");
    let pod = known_pod(&fleet, &caller).await;
    fleet.job("team", "late", "cpu", inline_inputs("mulchain"));
    let leased = fleet
        .dispatcher
        .lease(&pod, &lease_request(&caller, 5))
        .await
        .unwrap();
    let lease = leased.jobs[0].lease.clone();

    // The proof comes in; its status write is slow.
    let success_write = fleet.api.hold(Rule::new("PUT", "/proofjobs/late/status"));
    let dispatcher = fleet.dispatcher.clone();
    let upload = {
        let caller = caller.clone();
        let lease = lease.clone();
        tokio::spawn(async move {
            dispatcher
                .complete(&CompleteRequest {
                    caller,
                    lease,
                    outcome: mulchain_proof(),
                })
                .await
        })
    };
    success_write.reached().await;
    // Meanwhile another leader ended attempt 1 (it timed out) and queued the job again.
    let running = fleet.stored("team", "late");
    let failure = AttemptFailure {
        outcome: AttemptOutcome::TimedOut,
        reason: "TimedOut",
        message: "the attempt ran past its timeout".into(),
        retryable: true,
    };
    let (ended, queued) = job_status::attempt_failed(
        &running,
        1,
        &failure,
        &Default::default(),
        3,
        &Time(Timestamp::now()),
    );
    assert!(queued);
    let jobs: Api<ProofJob> = Api::namespaced(fleet.api.client(), "team");
    jobs.patch_status(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": ended })),
    )
    .await
    .unwrap();
    success_write.open();

    let answer = upload.await.unwrap();
    assert!(
        matches!(answer, Err(DispatchError::Stale(_))),
        "the ended attempt's proof is stale: {answer:?}"
    );
    let status = fleet.stored("team", "late").status.unwrap_or_default();
    assert_eq!(
        (status.phase, status.attempts[0].outcome),
        (
            Some(zkfleet_crds::v1alpha1::JobPhase::Queued),
            Some(AttemptOutcome::TimedOut)
        ),
        "the job waits for its next attempt: {status:?}"
    );
}
