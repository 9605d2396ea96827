//! Fallback pools on the real cluster: a job waiting on a full pool moves to its fallback pool
//! after its wait, a job whose retries run out on a pool of bad provers moves too, and each
//! status records the pool that proved it.

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::*;

/// Submits ProofJob `name` to `pool` with `extra` merged into its spec.
async fn submit(ns: &zkfleet_e2e::TestNamespace, name: &str, pool: &str, extra: serde_json::Value) {
    let mut spec = json!({"poolRef": {"name": pool}});
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &mulchain_job(name, spec))
        .await
        .unwrap();
}

/// Waits until the job succeeded; returns the pool its status says proved it.
async fn proved_by(ns: &zkfleet_e2e::TestNamespace, name: &str) -> (String, ProofJob) {
    let job = wait_verified(ns, name).await;
    let pool = job.status.as_ref().and_then(|s| s.pool.clone());
    (pool.map(|p| p.name).unwrap_or_default(), job)
}

#[tokio::test]
async fn jobs_move_to_their_fallback_pool_when_theirs_cannot_serve_them() {
    let setup = setup("fallback", "").await;
    let ns = &setup.ns;
    let v1 = Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    // The fallback: one pod, serving the same parameters.
    create_pool_with(ns, "cpu", 1, &v1, json!({})).await;
    wait_serving(ns, "cpu", 1).await;
    // A full pool (its one pod, with one slot, takes ten minutes per proof), and a pool whose
    // only pod proves wrong.
    create_pool_with(ns, "gpu", 0, &v1, json!({})).await;
    let busy = start_faulty_pod(ns, "gpu", "delay-ms=600000").await;
    create_pool_with(ns, "flaky", 0, &v1, json!({})).await;
    let faulty = start_faulty_pod(ns, "flaky", "corrupt-proofs").await;
    for pod in [&busy, &faulty] {
        ns.wait_for::<k8s_openapi::api::core::v1::Pod>(pod, "Ready", 2 * MINUTE, pod_ready)
            .await
            .unwrap();
    }
    // The pools' parameters digests are known once a pod loaded them; an empty pool reports
    // the digest of its spec.
    for pool in ["gpu", "flaky"] {
        ns.wait_for::<ProverPool>(pool, "its parameters digest", MINUTE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.parameters.as_ref())
                .and_then(|s| s.current.as_ref())
                .is_some()
        })
        .await
        .unwrap();
    }

    // The job that fills the pool: it runs on the busy pod for as long as the test does.
    submit(ns, "fills-the-pool", "gpu", json!({"timeoutSeconds": 3600})).await;
    ns.wait_for::<ProofJob>("fills-the-pool", "Running", 2 * MINUTE, |job| {
        job.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Running)
    })
    .await
    .unwrap();

    // Waits on the full pool 5 s, then moves.
    submit(
        ns,
        "waits",
        "gpu",
        json!({"fallback": {"pools": [{"name": "cpu"}], "afterSeconds": 5}}),
    )
    .await;
    // No fallback: stays queued on the full pool.
    submit(ns, "stays", "gpu", json!({})).await;
    // Its only attempt on the corrupt pod is rejected, and with no retry left it moves.
    submit(
        ns,
        "rejected",
        "flaky",
        json!({"maxRetries": 0, "fallback": {"pools": [{"name": "cpu"}]}}),
    )
    .await;

    let (pool, waited) = proved_by(ns, "waits").await;
    assert_eq!(pool, "cpu", "the status records the pool that proved it");
    let status = waited.status.unwrap();
    assert!(
        status
            .attempts
            .iter()
            .all(|a| a.pod.as_deref().is_some_and(|p| p.starts_with("cpu-"))),
        "{:?}",
        status.attempts
    );

    let (pool, rejected) = proved_by(ns, "rejected").await;
    assert_eq!(pool, "cpu");
    let attempts = rejected.status.unwrap().attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].pod.as_deref(), Some(faulty.as_str()));
    assert!(
        attempts[1]
            .pod
            .as_deref()
            .is_some_and(|p| p.starts_with("cpu-"))
    );

    let stays = ns.api::<ProofJob>().get("stays").await.unwrap();
    let status = stays.status.unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(JobPhase::Queued),
        "no fallback, so it waits for its pool"
    );
    assert!(status.pool.is_none());

    // A pool's jobDefaults name a fallback for every job that names none.
    ns.api::<ProverPool>()
        .patch(
            "gpu",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"jobDefaults": {"fallback": {"pools": [{"name": "cpu"}], "afterSeconds": 3}}}})),
        )
        .await
        .unwrap();
    let (pool, _) = proved_by(ns, "stays").await;
    assert_eq!(pool, "cpu", "moved by the pool's default");

    // Nothing running was moved or preempted, by its wait or by the new defaults.
    let filler = ns.api::<ProofJob>().get("fills-the-pool").await.unwrap();
    let status = filler.status.unwrap_or_default();
    assert_eq!(status.phase, Some(JobPhase::Running));
    assert_eq!(status.attempts.len(), 1, "{:?}", status.attempts);
    assert_eq!(status.attempts[0].pod.as_deref(), Some(busy.as_str()));
    assert!(status.pool.is_none(), "{:?}", status.pool);
}
