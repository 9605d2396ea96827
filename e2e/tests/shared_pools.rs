//! One ProverPool shared by namespaces: consent by namespace selector, slots shared by weight,
//! each tenant's inputs and results kept in its own namespace, and results reused.
//!
//! A shared pool needs an operator that watches every namespace, and no namespaced test
//! operator may run beside it (both would reconcile the same pools). So this binary holds one
//! test, which installs that operator; cargo runs test binaries one after another.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool, ReusedFrom};
use zkfleet_e2e::TestNamespace;
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::helm::install_cluster_operator;

const POOL: &str = "shared-gpu";
const PODS: i32 = 2;
const SLOTS: i32 = 4;
/// Jobs each tenant floods the pool with: team-a (weight 3) runs out first, after which
/// team-b (weight 1) has the pool to itself for a while.
const A_JOBS: usize = 96;
const B_JOBS: usize = 80;

/// Labels a namespace so the pool's selector admits it.
async fn admit(ns: &TestNamespace, key: &str, value: &str) {
    Api::<Namespace>::all(ns.client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await
        .unwrap();
}

/// A ProofJob for the shared pool in `pool_namespace`, with `input`.
fn shared_job(name: &str, pool_namespace: &str, input: serde_json::Value) -> ProofJob {
    mulchain_job(
        name,
        json!({"poolRef": {"namespace": pool_namespace, "name": POOL}, "input": input}),
    )
}

/// Creates `count` jobs in `ns`, from 4 clients at once.
async fn flood(ns: &TestNamespace, prefix: &str, pool_namespace: &str, count: usize) {
    let api: Api<ProofJob> = ns.api();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let api = api.clone();
            let (prefix, pool_namespace) = (prefix.to_string(), pool_namespace.to_string());
            tokio::spawn(async move {
                for i in (client..count).step_by(4) {
                    let job =
                        shared_job(&format!("{prefix}-{i}"), &pool_namespace, mulchain_input());
                    api.create(&PostParams::default(), &job).await.unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
}

async fn jobs_of(ns: &TestNamespace) -> Vec<ProofJob> {
    ns.api::<ProofJob>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// When each successful attempt of these jobs started.
fn starts(jobs: &[ProofJob]) -> Vec<Timestamp> {
    jobs.iter()
        .filter_map(|j| j.status.as_ref())
        .flat_map(|s| s.attempts.iter())
        .filter_map(|a| a.start_time.as_ref().map(|t| t.0))
        .collect()
}

fn namespace_row(pool: &ProverPool, namespace: &str) -> Option<(i32, i32, i32)> {
    let queue = pool.status.as_ref()?.queue.as_ref()?;
    queue
        .namespaces
        .iter()
        .find(|n| n.namespace == namespace)
        .map(|n| (n.queued, n.running, n.share_percent))
}

#[tokio::test]
async fn namespaces_share_a_pool_by_weight_and_only_with_its_consent() {
    let platform = TestNamespace::new("platform").await.unwrap();
    // Provers hold each job 1.5 s, so the queue stays full while the slots are shared.
    let _release = install_cluster_operator(
        &platform,
        "prover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"delay-ms=1500\"\n",
    )
    .await
    .unwrap();
    let team_a = TestNamespace::new("team-a").await.unwrap();
    let team_b = TestNamespace::new("team-b").await.unwrap();
    let team_c = TestNamespace::new("team-c").await.unwrap();
    let team_d = TestNamespace::new("team-d").await.unwrap();
    let outsider = TestNamespace::new("outsider").await.unwrap();
    // The selector names this run's platform namespace, so namespaces of other runs are not
    // admitted by accident.
    let consent_key = "zkfleet.dev/shares-pool-of";
    admit(&team_a, consent_key, &platform.name).await;
    admit(&team_b, consent_key, &platform.name).await;
    admit(&team_c, consent_key, &platform.name).await;
    admit(&team_d, consent_key, &platform.name).await;

    let v1 = Parameters::create(
        &platform,
        "v1",
        "mulchain-v1",
        &["circuit.zkey", "circuit.wasm"],
    )
    .await;
    // No pods yet: both tenants' jobs are queued before the first slot opens, so the slots are
    // shared from the start.
    create_pool_with(
        &platform,
        POOL,
        0,
        &v1,
        json!({
            "slotsPerReplica": SLOTS,
            "jobDefaults": {"timeoutSeconds": 60},
            "sharing": {
                "namespaceSelector": {"matchLabels": {consent_key: platform.name}},
                "namespaces": [{"namespace": team_a.name, "weight": 3}],
            },
        }),
    )
    .await;

    // A namespace the pool does not select is refused at once, with what to do about it.
    outsider
        .api::<ProofJob>()
        .create(
            &PostParams::default(),
            &shared_job("uninvited", &platform.name, mulchain_input()),
        )
        .await
        .unwrap();
    let refused = wait_job_finished(&outsider, "uninvited", 2 * MINUTE).await;
    let status = refused.status.unwrap();
    assert_eq!(status.phase, Some(JobPhase::Failed));
    assert_eq!(status.reason.as_deref(), Some("NamespaceNotAdmitted"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains(&outsider.name) && message.contains("namespaceSelector"),
        "{message}"
    );

    // Inputs are read in the job's namespace only: team-b cannot name team-a's Secret, even
    // one team-a marked as a proof input.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "inputs", "labels": {"zkfleet.dev/proof-input": "true"}},
        "stringData": {"input.json": std::fs::read_to_string(fixtures().join("input.json")).unwrap()},
    }))
    .unwrap();
    team_a
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    team_b
        .api::<ProofJob>()
        .create(
            &PostParams::default(),
            &shared_job(
                "borrowed-secret",
                &platform.name,
                json!({"secretKeyRef": {"name": "inputs", "key": "input.json"}}),
            ),
        )
        .await
        .unwrap();
    let borrowed = wait_job_finished(&team_b, "borrowed-secret", 2 * MINUTE).await;
    let status = borrowed.status.unwrap();
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (Some(JobPhase::Failed), Some("InvalidInput")),
        "{:?}",
        status.message
    );

    // Both tenants flood the pool; then it gets its pods.
    tokio::join!(
        flood(&team_a, "a", &platform.name, A_JOBS),
        flood(&team_b, "b", &platform.name, B_JOBS),
    );
    scale(&platform, POOL, PODS).await;

    // The pool's status shows the two tenants and the share each is due.
    let (team_a_name, team_b_name) = (team_a.name.clone(), team_b.name.clone());
    platform
        .wait_for::<ProverPool>(
            POOL,
            "both tenants running, at 75% and 25%",
            3 * MINUTE,
            move |p| {
                matches!(namespace_row(p, &team_a_name), Some((_, r, 75)) if r > 0)
                    && matches!(namespace_row(p, &team_b_name), Some((_, r, 25)) if r > 0)
            },
        )
        .await
        .unwrap();
    // Once team-a's jobs are done, team-b has every slot.
    let team_b_name = team_b.name.clone();
    let whole_pool = platform
        .wait_for::<ProverPool>(POOL, "team-b alone on every slot", 5 * MINUTE, move |p| {
            let queue = p.status.as_ref().and_then(|s| s.queue.as_ref());
            queue.is_some_and(|q| q.namespaces.len() == 1)
                && matches!(namespace_row(p, &team_b_name), Some((_, r, 100)) if r == PODS * SLOTS)
        })
        .await
        .unwrap();
    println!(
        "team-b alone: {:?}",
        whole_pool.status.and_then(|s| s.queue)
    );

    for (ns, prefix, count) in [(&team_a, "a", A_JOBS), (&team_b, "b", B_JOBS)] {
        for i in 0..count {
            let job = wait_job_finished(ns, &format!("{prefix}-{i}"), 5 * MINUTE).await;
            let status = job.status.unwrap_or_default();
            assert_eq!(
                status.phase,
                Some(JobPhase::Succeeded),
                "{prefix}-{i}: {:?}",
                status.message
            );
            assert!(status.verification.is_some_and(|v| v.verified));
        }
    }

    // While both had jobs queued (until team-a's last job started), slots went 3:1. Attempt
    // starts are counted: every job takes the same time, so starts are slot-time.
    let a_starts = starts(&jobs_of(&team_a).await);
    let b_starts = starts(&jobs_of(&team_b).await);
    let a_last = *a_starts.iter().max().unwrap();
    let b_while_both = b_starts.iter().filter(|t| **t < a_last).count();
    let ratio = a_starts.len() as f64 / b_while_both.max(1) as f64;
    println!(
        "share: team-a {} starts, team-b {b_while_both} while both queued: {ratio:.2} (weights 3:1)",
        a_starts.len()
    );
    assert!(
        (2.55..=3.45).contains(&ratio),
        "slots went {ratio:.2}:1 between weights 3:1 (±15% allowed); starts per tenant: {:?}",
        BTreeMap::from([("team-a", a_starts.len()), ("team-b", b_while_both)])
    );

    // Result reuse, turned on now: a repeated input is answered from a verified proof of the
    // same namespace, with no attempt; another namespace's proofs only once the pool allows it.
    set_result_reuse(&platform, json!({})).await;
    let again = submit_and_finish(&team_b, "b-again", &platform.name).await;
    let from = reused_from(&again).expect("team-b's repeated input is answered by reuse");
    assert!(
        from.name.is_some_and(|n| n.starts_with("b-")),
        "named within team-b"
    );
    let own = submit_and_finish(&team_c, "c-first", &platform.name).await;
    assert_eq!(
        reused_from(&own),
        None,
        "team-c has no proof of its own to reuse, and may not take team-b's"
    );
    assert_eq!(own.status.unwrap().attempts.len(), 1, "so it was proved");
    set_result_reuse(&platform, json!({"acrossNamespaces": true})).await;
    let across = submit_and_finish(&team_d, "d-first", &platform.name).await;
    let from = reused_from(&across).expect("reused across namespaces once the pool allows it");
    assert_eq!(from.name, None, "a job of another namespace is not named");
}

async fn set_result_reuse(platform: &TestNamespace, reuse: serde_json::Value) {
    platform
        .api::<ProverPool>()
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resultReuse": reuse}})),
        )
        .await
        .unwrap();
    // The job controller reads the pool at each admission; the dispatcher's copy of it, which
    // lists the results, comes through its watch. Wait until the operator has seen the change.
    platform
        .wait_for::<ProverPool>(POOL, "the operator to see resultReuse", MINUTE, |p| {
            p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
        })
        .await
        .unwrap();
}

/// Submits a mulchain job of `ns` to the shared pool and waits until it succeeds.
async fn submit_and_finish(ns: &TestNamespace, name: &str, pool_namespace: &str) -> ProofJob {
    ns.api::<ProofJob>()
        .create(
            &PostParams::default(),
            &shared_job(name, pool_namespace, mulchain_input()),
        )
        .await
        .unwrap();
    wait_verified(ns, name).await
}

fn reused_from(job: &ProofJob) -> Option<ReusedFrom> {
    let status = job.status.as_ref()?;
    let from = status.result.as_ref()?.reused_from.clone()?;
    assert!(
        status.attempts.is_empty() && status.attempt_count.is_none(),
        "a reused result comes with no attempt: {:?}",
        status.attempts
    );
    Some(from)
}
