//! ProofJobs end to end: the chart installed with helm into the test's own namespace, the real
//! operator and prover images, the mulchain circuit of the prover fixtures, and every proof
//! that reaches a job's status checked by `snarkjs groth16 verify`.
//!
//! Slow provers and corrupt provers come from the prover's test-only
//! `ZKFLEET_FAULT_INJECTION` (`delay-ms=N`, `corrupt-proofs`), given to a whole pool through
//! the chart's `prover.extraEnv`, or to one extra pod a test starts from the pool's own pod
//! template.

use std::collections::BTreeSet;
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::{TestNamespace, poll_until};

/// The circuit's input signals (`input.json` of the fixture).
fn circuit_inputs() -> String {
    std::fs::read_to_string(fixtures().join("input.json")).expect("fixture input.json")
}

fn job_manifest(name: &str, pool: &str, extra: Value) -> ProofJob {
    let mut spec = json!({
        "poolRef": {"name": pool},
        "input": {"inline": {"json": circuit_inputs()}},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

async fn submit(ns: &TestNamespace, name: &str, pool: &str, extra: Value) -> ProofJob {
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &job_manifest(name, pool, extra))
        .await
        .unwrap()
}

fn phase(job: &ProofJob) -> Option<JobPhase> {
    job.status.as_ref()?.phase
}

async fn wait_phase(ns: &TestNamespace, name: &str, phases: &[JobPhase]) -> ProofJob {
    let wanted = phases.to_vec();
    ns.wait_for::<ProofJob>(
        name,
        &format!("phase in {phases:?}"),
        3 * MINUTE,
        move |j| phase(j).is_some_and(|p| wanted.contains(&p)),
    )
    .await
    .unwrap()
}

async fn wait_finished(ns: &TestNamespace, name: &str) -> ProofJob {
    wait_phase(ns, name, &[JobPhase::Succeeded, JobPhase::Failed]).await
}

/// The job succeeded, and snarkjs accepts the proof on its status.
fn assert_verified_by_snarkjs(job: &ProofJob) {
    let status = job.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    let result = status.result.as_ref().expect("a result");
    let signals = result.public_signals.clone().unwrap_or_default();
    if let Err(why) = snarkjs_verifies(&serde_json::json!(result.proof), &signals) {
        panic!("snarkjs refused the proof of {}: {why}", job.name_any());
    }
}

/// Pods that ran a Succeeded attempt of the job.
fn succeeded_on(job: &ProofJob) -> Vec<String> {
    job.status
        .iter()
        .flat_map(|s| &s.attempts)
        .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
        .filter_map(|a| a.pod.clone())
        .collect()
}

/// The prover's `/v1/info`, asked from the node.
fn pod_info(pod: &Pod) -> Value {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "5",
            &format!("http://{ip}:8080/v1/info"),
        ])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Whether the prover's `/v1/info` comes to show `free` free slots within a minute.
async fn free_slots_become(pod: &Pod, free: u64) -> bool {
    poll_until(MINUTE, || async {
        (pod_info(pod)["free_slots"] == free).then_some(())
    })
    .await
    .is_some()
}

/// Values for a chart whose prover pods all run with `fault` injected.
fn with_fault(fault: &str) -> String {
    format!("prover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"{fault}\"\n")
}

async fn pool_setup(prefix: &str, values: &str, replicas: i32, extra: Value) -> Setup {
    let setup = setup(prefix, values).await;
    let params = Parameters::create(
        &setup.ns,
        "v1",
        "mulchain-v1",
        &["circuit.zkey", "circuit.wasm"],
    )
    .await;
    create_pool_with(&setup.ns, "pool", replicas, &params, extra).await;
    if replicas > 0 {
        wait_serving(&setup.ns, "pool", replicas).await;
    }
    setup
}

#[tokio::test]
async fn a_job_with_circuit_inputs_succeeds_with_a_proof_snarkjs_accepts() {
    let Setup { release: _r, ns } = pool_setup("job-one", "", 1, json!({})).await;
    submit(&ns, "one", "pool", json!({})).await;
    let job = wait_finished(&ns, "one").await;
    assert_verified_by_snarkjs(&job);

    let status = job.status.clone().unwrap();
    assert_eq!(status.attempt_count, Some(1));
    assert_eq!(status.parameters_version.as_deref(), Some("v1"));
    assert!(
        status
            .parameters_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(status.verification.as_ref().is_some_and(|v| v.verified));
    assert!(status.proving_millis.is_some_and(|ms| ms > 0));
    assert!(status.queued_at.is_some() && status.start_time.is_some());
    assert!(status.completion_time.is_some());
    let complete = status.conditions.iter().find(|c| c.type_ == "Complete");
    assert_eq!(complete.map(|c| c.status.as_str()), Some("True"));

    // The pool counts it as neither queued nor running any more.
    let pool = ns
        .wait_for::<ProverPool>("pool", "an empty queue", MINUTE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.queue.as_ref())
                .is_some_and(|q| q.queued == 0 && q.running == 0)
        })
        .await
        .unwrap();
    assert!(pool.status.unwrap().flagged_pods.is_empty());
}

#[tokio::test]
async fn fifty_jobs_on_two_replicas_each_succeed_exactly_once() {
    let Setup { release: _r, ns } =
        pool_setup("job-fifty", "", 2, json!({"slotsPerReplica": 2})).await;
    let names: Vec<String> = (0..50).map(|i| format!("job-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        submit(&ns, name, "pool", json!({"priority": (i % 3) as i32})).await;
    }
    let mut pods = BTreeSet::new();
    for name in &names {
        let job = wait_finished(&ns, name).await;
        let status = job.status.clone().unwrap();
        assert_eq!(
            status.phase,
            Some(JobPhase::Succeeded),
            "{name}: {status:#?}"
        );
        assert_eq!(status.attempt_count, Some(1), "{name} ran more than once");
        let on = succeeded_on(&job);
        assert_eq!(on.len(), 1, "{name} completed {} times", on.len());
        pods.extend(on);
    }
    assert_verified_by_snarkjs(&ns.api::<ProofJob>().get("job-49").await.unwrap());
    assert_eq!(pods.len(), 2, "both replicas proved jobs: {pods:?}");
}

#[tokio::test]
async fn bad_input_fails_with_a_reason_and_is_not_retried() {
    let Setup { release: _r, ns } = pool_setup("job-bad", "", 1, json!({})).await;
    // Valid JSON, but not the circuit's signals: only the prover can tell.
    submit(
        &ns,
        "wrong-signals",
        "pool",
        json!({"input": {"inline": {"json": "{\"x\": \"1\"}"}}}),
    )
    .await;
    // Input the operator itself cannot read.
    submit(
        &ns,
        "missing-configmap",
        "pool",
        json!({"input": {"configMapKeyRef": {"name": "nope", "key": "input.json"}}}),
    )
    .await;
    submit(&ns, "no-such-pool", "absent", json!({})).await;

    let job = wait_finished(&ns, "wrong-signals").await;
    let s = job.status.unwrap();
    assert_eq!(s.phase, Some(JobPhase::Failed));
    assert_eq!(s.reason.as_deref(), Some("InvalidInput"));
    assert_eq!(s.retryable, Some(false));
    assert_eq!(s.attempt_count, Some(1), "bad input is not retried");
    assert!(s.message.as_deref().unwrap().contains("signal"), "{s:#?}");
    let failed = s.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.status, "True");

    let s = wait_finished(&ns, "missing-configmap")
        .await
        .status
        .unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidInput"));
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("ConfigMap nope does not exist")
    );
    assert_eq!(s.attempt_count, None, "never leased");

    let s = wait_finished(&ns, "no-such-pool").await.status.unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("ProverPool absent does not exist")
    );
}

#[tokio::test]
async fn a_prover_pod_deleted_mid_proof_is_replaced_and_the_job_succeeds_elsewhere() {
    let Setup { release: _r, ns } =
        pool_setup("job-podloss", &with_fault("delay-ms=20000"), 2, json!({})).await;
    // The proof takes 20 s (within the job's 60 s timeout) so the pod is surely killed holding it.
    submit(&ns, "survivor", "pool", json!({"timeoutSeconds": 60})).await;
    let running = wait_phase(&ns, "survivor", &[JobPhase::Running]).await;
    let first_pod = running.status.unwrap().attempts[0].pod.clone().unwrap();
    // Killed, not drained: the pod cannot finish the proof it holds.
    ns.api::<Pod>()
        .delete(
            &first_pod,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();

    let job = wait_finished(&ns, "survivor").await;
    assert_verified_by_snarkjs(&job);
    let s = job.status.unwrap();
    assert_eq!(s.attempts[0].pod.as_deref(), Some(first_pod.as_str()));
    assert_eq!(s.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    let on = succeeded_on(&ns.api::<ProofJob>().get("survivor").await.unwrap());
    assert_eq!(on.len(), 1);
    assert_ne!(on[0], first_pod, "retried on another pod");
}

#[tokio::test]
async fn deleting_a_running_job_revokes_its_lease_and_frees_the_slot() {
    let Setup { release: _r, ns } =
        pool_setup("job-cancel", &with_fault("delay-ms=600000"), 1, json!({})).await;
    submit(&ns, "doomed", "pool", json!({})).await;
    let running = wait_phase(&ns, "doomed", &[JobPhase::Running]).await;
    let pod_name = running.status.unwrap().attempts[0].pod.clone().unwrap();
    let pod = ns.api::<Pod>().get(&pod_name).await.unwrap();
    // The status says Running before the lease reaches the pod, so the slot is taken a moment later.
    assert!(
        free_slots_become(&pod, 0).await,
        "the job never took the pod's only slot: {}",
        pod_info(&pod)
    );

    ns.api::<ProofJob>()
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        free_slots_become(&pod, 1).await,
        "the pod never freed the slot: {}",
        pod_info(&pod)
    );
}

#[tokio::test]
async fn a_pod_that_corrupts_proofs_never_completes_a_job_and_is_flagged() {
    let Setup { release: _r, ns } = pool_setup("job-corrupt", "", 0, json!({})).await;
    let faulty = start_faulty_pod(&ns, "pool", "corrupt-proofs").await;
    submit(&ns, "first", "pool", json!({})).await;
    // Only the faulty pod exists: its proof is rejected, but one rejection cannot tell the pod
    // from the input, so nobody is flagged yet.
    ns.wait_for::<ProofJob>("first", "its first proof rejected", 2 * MINUTE, |j| {
        j.status.as_ref().is_some_and(|s| {
            s.attempts
                .iter()
                .any(|a| a.outcome == Some(AttemptOutcome::VerificationFailed))
        })
    })
    .await
    .unwrap();
    let pool = ns.api::<ProverPool>().get("pool").await.unwrap();
    assert_eq!(pool.status.unwrap().flagged_pods, []);

    // A healthy pod joins; more jobs arrive.
    scale(&ns, "pool", 1).await;
    for i in 0..4 {
        submit(&ns, &format!("more-{i}"), "pool", json!({})).await;
    }
    let mut rejected = 0;
    for name in ["first", "more-0", "more-1", "more-2", "more-3"] {
        let job = wait_finished(&ns, name).await;
        assert_verified_by_snarkjs(&job);
        assert!(
            !succeeded_on(&job).contains(&faulty),
            "{name} succeeded on the faulty pod"
        );
        rejected += job
            .status
            .unwrap()
            .attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::VerificationFailed))
            .inspect(|a| assert_eq!(a.pod.as_deref(), Some(faulty.as_str())))
            .count();
    }
    assert!(rejected >= 1, "the faulty pod's proofs were rejected");
    // A healthy pod proved the jobs the faulty one had failed: that isolates it.
    let pool = ns
        .wait_for::<ProverPool>("pool", "the faulty pod flagged", 2 * MINUTE, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.flagged_pods.iter().any(|f| f.pod == faulty))
        })
        .await
        .unwrap();
    let flagged = pool.status.unwrap().flagged_pods;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].reason, "VerificationFailed");
}

#[tokio::test]
async fn restarting_the_operator_mid_flight_loses_nothing_and_completes_nothing_twice() {
    let Setup { release, ns } =
        pool_setup("job-restart", &with_fault("delay-ms=1500"), 2, json!({})).await;
    let names: Vec<String> = (0..12).map(|i| format!("job-{i:02}")).collect();
    for name in &names {
        submit(&ns, name, "pool", json!({})).await;
    }
    // Some done, the rest queued or running: now the leader goes.
    wait_phase(&ns, "job-01", &[JobPhase::Succeeded]).await;
    let old = leader(&ns, &release.operator).await;
    ns.api::<Pod>()
        .delete(&old, &DeleteParams::default())
        .await
        .unwrap();

    for name in &names {
        let job = wait_finished(&ns, name).await;
        assert_eq!(phase(&job), Some(JobPhase::Succeeded), "{name}");
        assert_eq!(succeeded_on(&job).len(), 1, "{name} completed twice");
    }
    assert_ne!(leader(&ns, &release.operator).await, old);
    let listed = ns
        .api::<ProofJob>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), names.len(), "nothing lost");
}

#[tokio::test]
async fn rotation_while_jobs_run_fails_no_job_and_pinned_jobs_use_their_version() {
    let Setup { release: _r, ns } =
        pool_setup("job-rotate", &with_fault("delay-ms=1000"), 2, json!({})).await;
    // First in line, so it runs before the v1 pods are gone.
    submit(
        &ns,
        "pinned-v1",
        "pool",
        json!({"parametersVersion": "v1", "priority": 100}),
    )
    .await;
    for i in 0..6 {
        submit(&ns, &format!("any-{i}"), "pool", json!({})).await;
    }
    let v2 = Parameters::create(&ns, "v2", "mulchain-v2", &["circuit.zkey", "circuit.wasm"]).await;
    set_parameters(&ns, "pool", &v2).await;
    for i in 0..3 {
        submit(
            &ns,
            &format!("pinned-v2-{i}"),
            "pool",
            json!({"parametersVersion": "v2"}),
        )
        .await;
    }
    for i in 0..6 {
        let job = wait_finished(&ns, &format!("any-{i}")).await;
        assert_eq!(phase(&job), Some(JobPhase::Succeeded), "any-{i}");
    }
    let v1 = wait_finished(&ns, "pinned-v1").await;
    assert_eq!(phase(&v1), Some(JobPhase::Succeeded));
    assert_eq!(v1.status.unwrap().parameters_version.as_deref(), Some("v1"));
    for i in 0..3 {
        let job = wait_finished(&ns, &format!("pinned-v2-{i}")).await;
        assert_verified_by_snarkjs(&job);
        assert_eq!(
            job.status.unwrap().parameters_version.as_deref(),
            Some("v2")
        );
    }

    // Once the rotation is over, a job pinned to v1 can never run: it fails with a reason
    // rather than waiting forever.
    wait_serving(&ns, "pool", 2).await;
    wait_for_pods(&ns, "pool", "every v1 pod gone", 2 * MINUTE, |pods| {
        pods.iter()
            .all(|p| pod_env(p, "ZKFLEET_PARAMETERS_VERSION").as_deref() == Some("v2"))
    })
    .await;
    submit(&ns, "late-v1", "pool", json!({"parametersVersion": "v1"})).await;
    let late = wait_finished(&ns, "late-v1").await.status.unwrap();
    assert_eq!(late.phase, Some(JobPhase::Failed));
    assert_eq!(late.reason.as_deref(), Some("ParametersVersionUnavailable"));
    assert!(late.message.unwrap().contains("v2"));
}

#[tokio::test]
async fn large_proofs_go_to_the_artifact_store_and_leave_with_their_job() {
    // Every proof counts as large; the store is the operator's emptyDir (file://).
    let values = "artifacts:\n  inlineResultMaxBytes: 0\n";
    let Setup { release, ns } = pool_setup("job-artifact", values, 1, json!({})).await;
    // Long enough for the checks below to read the stored proof before the job goes.
    submit(
        &ns,
        "stored",
        "pool",
        json!({"ttlSecondsAfterFinished": 20}),
    )
    .await;
    let job = wait_finished(&ns, "stored").await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(
        job.finalizers()
            .contains(&"zkfleet.dev/proof-artifact".to_string())
    );
    let result = status.result.unwrap();
    assert!(result.proof.is_none(), "the proof is not on the status");
    let location = result.location.expect("a location");
    // The leader wrote it into its emptyDir, on this node.
    let file = stored_artifact(&ns, &release, &location).await;
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(result.size_bytes, Some(bytes.len() as i64));
    assert_eq!(
        result.sha256.as_deref(),
        Some(hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)).as_str())
    );
    let stored: Value = serde_json::from_slice(&bytes).unwrap();
    let mut with_proof = job.clone();
    let s = with_proof.status.as_mut().unwrap();
    s.result.as_mut().unwrap().proof = stored["proof"].as_object().cloned();
    assert_verified_by_snarkjs(&with_proof);

    // ttlSecondsAfterFinished deletes the job; the finalizer deletes the stored proof first.
    let gone = poll_until(2 * MINUTE, || async {
        let job = ns.api::<ProofJob>().get_opt("stored").await.unwrap();
        job.is_none().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the job outlived its ttlSecondsAfterFinished"
    );
    assert!(!file.exists(), "{} outlived its job", file.display());
}
