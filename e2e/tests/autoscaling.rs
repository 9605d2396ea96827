//! Autoscaling end to end, with the real HorizontalPodAutoscaler controller of the local
//! cluster (sync period 2 s): the operator's external metrics API read through the API
//! server's aggregation layer, pools growing with their queue and shrinking without retrying a
//! proof, and scale to zero and back.
//!
//! Only one release per cluster may own the `external.metrics.k8s.io` APIService, so only one
//! test here enables it.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::{TestNamespace, poll_until};

fn job(name: &str) -> ProofJob {
    let inputs = std::fs::read_to_string(fixtures().join("input.json")).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": "pool"}, "input": {"inline": {"json": inputs}}},
    }))
    .unwrap()
}

async fn submit(ns: &TestNamespace, name: &str) {
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &job(name))
        .await
        .unwrap();
}

fn spec_replicas(pool: &ProverPool) -> i32 {
    pool.spec.replicas
}

fn scaling_active(pool: &ProverPool) -> Option<(String, String)> {
    let c = pool
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "ScalingActive")?;
    Some((c.status.clone(), c.reason.clone()))
}

/// One external metric of the pool, read through the API server.
async fn external_metric(ns: &TestNamespace, metric: &str) -> Option<String> {
    let url = format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{metric}?labelSelector=pool%3Dpool",
        ns.name
    );
    let request = http::Request::get(url).body(Vec::new()).ok()?;
    let text = ns.client.request_text(request).await.ok()?;
    let list: Value = serde_json::from_str(&text).ok()?;
    list["items"][0]["value"].as_str().map(str::to_string)
}

/// The metric's value once it is at least `min`.
async fn metric_at_least(ns: &TestNamespace, metric: &str, min: u32) -> Option<String> {
    external_metric(ns, metric)
        .await
        .filter(|v| v.parse::<u32>().is_ok_and(|n| n >= min))
}

#[tokio::test]
async fn a_queue_grows_the_pool_through_the_hpa_and_a_drained_queue_shrinks_it_without_retries() {
    let values = "externalMetrics:\n  enabled: true\nprover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"delay-ms=2500\"\n";
    let Setup { release: _r, ns } = setup("scale-hpa", values).await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        &ns,
        "pool",
        1,
        &params,
        json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 4,
                               "targetQueuePerReplica": 2,
                               "scaleDownStabilizationSeconds": 5}}),
    )
    .await;
    wait_serving(&ns, "pool", 1).await;
    let hpa = ns
        .wait_for::<HorizontalPodAutoscaler>(
            &deployment_name("pool"),
            "the pool's HPA",
            MINUTE,
            |_| true,
        )
        .await
        .unwrap();
    assert_eq!(hpa.spec.unwrap().scale_target_ref.kind, "ProverPool");

    let names: Vec<String> = (0..40).map(|i| format!("job-{i:02}")).collect();
    for name in &names {
        submit(&ns, name).await;
    }
    // The API server answers with the operator's numbers: most jobs wait, one runs.
    let queued = poll_until(MINUTE, || {
        metric_at_least(&ns, "zkfleet_pool_queued_jobs", 10)
    })
    .await
    .expect("the external metrics API answers through the API server");
    assert!(queued.parse::<u32>().unwrap() <= 40);
    // Between two leases the one pod briefly holds nothing, so a single read of the running
    // count may see zero; what matters is that the proof in progress shows up.
    let running = poll_until(MINUTE, || {
        metric_at_least(&ns, "zkfleet_pool_running_jobs", 1)
    })
    .await
    .expect("the running proof shows in zkfleet_pool_running_jobs");
    assert!(running.parse::<u32>().unwrap() <= 4, "{running}");

    let grown = ns
        .wait_for::<ProverPool>("pool", "more than one replica", 2 * MINUTE, |p| {
            spec_replicas(p) > 1
        })
        .await
        .unwrap();
    assert!(spec_replicas(&grown) <= 4);
    assert_eq!(scaling_active(&grown).unwrap().0, "True");
    // Pods holding leases are the expensive ones to delete, so a scale-down takes idle ones.
    let busy = poll_until(MINUTE, || async {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("{POOL_LABEL}=pool")))
            .await
            .unwrap();
        pods.items
            .iter()
            .any(|p| {
                p.annotations()
                    .get("controller.kubernetes.io/pod-deletion-cost")
                    .is_some_and(|c| c == "10000")
            })
            .then_some(())
    })
    .await;
    assert!(
        busy.is_some(),
        "no busy pod carries a high pod-deletion-cost"
    );

    for name in &names {
        let job = wait_job_finished(&ns, name, 5 * MINUTE).await;
        let status = job.status.unwrap();
        assert_eq!(status.phase, Some(JobPhase::Succeeded), "{name}");
        assert_eq!(status.attempt_count, Some(1), "{name} was retried");
    }
    ns.wait_for::<ProverPool>("pool", "back to one replica", 3 * MINUTE, |p| {
        spec_replicas(p) == 1 && p.status.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await
    .unwrap();
    // Shrinking retried nothing: every job still has its one attempt.
    for name in &names {
        let job = ns.api::<ProofJob>().get(name).await.unwrap();
        assert_eq!(job.status.unwrap().attempt_count, Some(1), "{name}");
    }
}

#[tokio::test]
async fn a_pool_with_min_zero_sleeps_at_zero_until_a_job_arrives() {
    let Setup { release: _r, ns } = setup("scale-zero", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        &ns,
        "pool",
        1,
        &params,
        json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 2,
                               "idleSecondsBeforeZero": 3}}),
    )
    .await;
    let asleep = |p: &ProverPool| {
        spec_replicas(p) == 0
            && p.status.as_ref().and_then(|s| s.replicas) == Some(0)
            && scaling_active(p) == Some(("False".into(), "ScaledToZero".into()))
    };
    ns.wait_for::<ProverPool>("pool", "zero replicas while idle", 2 * MINUTE, asleep)
        .await
        .unwrap();

    submit(&ns, "wake").await;
    let job = wait_job_finished(&ns, "wake", 3 * MINUTE).await;
    assert_eq!(job.status.unwrap().phase, Some(JobPhase::Succeeded));

    ns.wait_for::<ProverPool>("pool", "back at zero once idle", 2 * MINUTE, asleep)
        .await
        .unwrap();
}
