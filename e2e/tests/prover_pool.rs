//! ProverPools end to end: the chart installed with helm into the test's own namespace, the
//! real operator and prover images (`e2e/scripts/build-images.sh`), and the mulchain circuit
//! from the prover fixtures (`eval "$(prover-pod/fixtures/make-fixtures.sh)"` sets
//! ZKFLEET_FIXTURES). Each test has its own operator that watches only its namespace, so
//! tests run side by side. Only the GPU test asks for GPUs that exist, so the node's four fake
//! GPUs are never what a test waits for.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, LogParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zkfleet_crds::v1alpha1::{ProverPool, RolloutState};
use zkfleet_e2e::{TestNamespace, poll_until};

use zkfleet_e2e::fleet::*;

#[tokio::test]
async fn gpu_pool_pods_get_a_gpu_and_become_ready_once_parameters_load() {
    let Setup { release: _r, ns } = setup("pool-gpu", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "gpu", 2, Some(1), &params).await;

    let pool = wait_serving(&ns, "gpu", 2).await;
    let status = pool.status.clone().unwrap();
    assert_eq!(status.updated_replicas, Some(2));
    let parameters = status.parameters.unwrap();
    assert_eq!(parameters.rollout, Some(RolloutState::Complete));
    assert_eq!(parameters.current.unwrap().version, "v1");
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity.unschedulable_replicas, 0);
    assert_eq!(capacity.slots, 2, "2 ready pods × 1 slot");
    assert!(
        status
            .selector
            .as_deref()
            .is_some_and(|s| s.contains("app.kubernetes.io/instance=gpu")),
        "{:?}",
        status.selector
    );

    let pods = wait_for_pods(&ns, "gpu", "2 ready pods on v1", MINUTE, |pods| {
        all_ready_on(pods, "v1", 2)
    })
    .await;
    for pod in &pods {
        let name = pod.name_any();
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running"),
            "{name}"
        );
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let limits = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        assert_eq!(
            limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
            Some("1"),
            "{name}: {limits:?}"
        );
        // Readiness is the prover's own /readyz, which turns ready only after the parameter
        // files matched their sha256 and the proving key loaded; the log says it did.
        let probe = container.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.http_get.as_ref().and_then(|h| h.path.as_deref()),
            Some("/readyz")
        );
        let logs = ns
            .api::<Pod>()
            .logs(&name, &LogParams::default())
            .await
            .unwrap();
        assert!(
            logs.contains("loaded") && !logs.contains("not loaded"),
            "{name} is ready but its log does not say the parameters loaded:\n{logs}"
        );
    }
}

#[tokio::test]
async fn pool_asking_for_more_gpus_than_the_node_has_reports_missing_capacity() {
    let Setup { release: _r, ns } = setup("pool-capacity", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "huge", 2, Some(8), &params).await;

    let pool = ns
        .wait_for::<ProverPool>(
            "huge",
            "CapacityAvailable=False for 2 unschedulable replicas",
            2 * MINUTE,
            |p| {
                condition_is(p, "CapacityAvailable", "False")
                    && p.status
                        .as_ref()
                        .and_then(|s| s.capacity.as_ref())
                        .is_some_and(|c| c.unschedulable_replicas == 2)
            },
        )
        .await
        .unwrap();
    let (_, reason, message) = condition(&pool, "CapacityAvailable").unwrap();
    assert_eq!(reason, "Unschedulable");
    assert!(
        message.contains("Insufficient nvidia.com/gpu"),
        "condition message: {message}"
    );
    let capacity = pool.status.as_ref().unwrap().capacity.clone().unwrap();
    assert!(
        capacity
            .unschedulable_reason
            .as_deref()
            .is_some_and(|r| r.contains("Insufficient nvidia.com/gpu")),
        "{capacity:?}"
    );
    assert_eq!(capacity.slots, 0);
    assert_eq!(ready_replicas(&pool), 0);
    let (ready, ready_reason, _) = condition(&pool, "Ready").unwrap();
    assert_eq!(
        (ready.as_str(), ready_reason.as_str()),
        ("False", "NoPodsReady")
    );
}

/// A pool whose pods run but cannot serve says why, in the prover's words, on its `Ready`
/// condition and in an Event: here `acceleration: gpu`, which this prover has no code for.
#[tokio::test]
async fn a_pool_whose_provers_are_not_ready_quotes_their_reason() {
    let Setup { release: _r, ns } = setup("pool-not-ready", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        &ns,
        "gpu-only",
        1,
        &params,
        serde_json::json!({"backend": {"type": "groth16-bn254", "groth16": {"acceleration": "gpu"}}}),
    )
    .await;
    let pool = ns
        .wait_for::<ProverPool>(
            "gpu-only",
            "Ready=False quoting the prover",
            3 * MINUTE,
            |p| {
                condition(p, "Ready").is_some_and(|(status, reason, _)| {
                    status == "False" && reason == "ProversNotReady"
                })
            },
        )
        .await
        .unwrap();
    let (_, _, message) = condition(&pool, "Ready").unwrap();
    assert!(
        message.starts_with("0/1 prover pods ready: pod gpu-only-prover-")
            && message.contains("no GPU code")
            && message.contains("set spec.backend.groth16.acceleration to auto or cpu"),
        "{message}"
    );
    let events = poll_until(MINUTE, || {
        let ns = &ns;
        async move {
            let events = pool_events(ns, "gpu-only").await;
            events
                .iter()
                .any(|(kind, reason, note)| {
                    kind == "Warning" && reason == "ProversNotReady" && note.contains("no GPU code")
                })
                .then_some(events)
        }
    })
    .await;
    assert!(
        events.is_some(),
        "a ProversNotReady Event quotes the prover"
    );
}

#[tokio::test]
async fn scale_subresource_resizes_the_pool() {
    let Setup { release: _r, ns } = setup("pool-scale", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "elastic", 1, None, &params).await;
    wait_serving(&ns, "elastic", 1).await;

    // What `kubectl scale proverpool/elastic --replicas=3` does.
    scale(&ns, "elastic", 3).await;
    let deployment = deployment_name("elastic");
    ns.wait_for::<Deployment>(&deployment, "3 ready replicas", 3 * MINUTE, |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
            && d.status.as_ref().and_then(|s| s.ready_replicas) == Some(3)
    })
    .await
    .unwrap();
    wait_serving(&ns, "elastic", 3).await;
    let scale3 = ns.api::<ProverPool>().get_scale("elastic").await.unwrap();
    assert_eq!(scale3.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(scale3.status.map(|s| s.replicas), Some(3));

    scale(&ns, "elastic", 1).await;
    wait_serving(&ns, "elastic", 1).await;
    wait_for_pods(&ns, "elastic", "one pod left", 2 * MINUTE, |pods| {
        all_ready_on(pods, "v1", 1)
    })
    .await;
    let d = ns.api::<Deployment>().get(&deployment).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1));
}

#[tokio::test]
async fn rotation_rolls_every_pod_to_the_new_parameters() {
    let Setup { release: _r, ns } = setup("pool-rotate", "").await;
    let v1 = Parameters::create(&ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "rotating", 2, None, &v1).await;
    let before = wait_serving(&ns, "rotating", 2).await;
    let v1_digest = before
        .status
        .unwrap()
        .parameters
        .unwrap()
        .current
        .unwrap()
        .digest;

    // v2 comes from another ConfigMap and has one more file, so both the pods' parameters
    // volume and the set's digest change.
    let v2 = Parameters::create(
        &ns,
        "v2",
        "mulchain-v2",
        &["circuit.zkey", "circuit.wasm", "verification_key.json"],
    )
    .await;
    set_parameters(&ns, "rotating", &v2).await;

    let pool = ns
        .wait_for::<ProverPool>(
            "rotating",
            "rotation to v2 complete with 2 ready replicas",
            4 * MINUTE,
            |p| {
                serving(p, 2)
                    && p.status
                        .as_ref()
                        .and_then(|s| s.parameters.as_ref())
                        .and_then(|s| s.current.as_ref())
                        .is_some_and(|c| c.version == "v2")
            },
        )
        .await
        .unwrap();
    let parameters = pool.status.unwrap().parameters.unwrap();
    assert_eq!(parameters.rollout, Some(RolloutState::Complete));
    let current = parameters.current.unwrap();
    let previous = parameters
        .previous
        .expect("status.parameters.previous is set");
    assert_eq!(previous.version, "v1");
    assert_eq!(previous.digest, v1_digest);
    assert_ne!(
        current.digest, v1_digest,
        "v2 has another file, so another digest"
    );

    // New pods ready, old ones gone.
    let pods = wait_for_pods(
        &ns,
        "rotating",
        "exactly 2 pods, ready, on v2",
        2 * MINUTE,
        |pods| all_ready_on(pods, "v2", 2),
    )
    .await;
    for pod in pods {
        let volumes = pod.spec.unwrap().volumes.unwrap_or_default();
        let cm = volumes
            .iter()
            .find(|v| v.name == "parameters")
            .and_then(|v| v.config_map.as_ref())
            .map(|c| c.name.clone());
        assert_eq!(
            cm.as_deref(),
            Some("mulchain-v2"),
            "{}",
            pod.metadata.name.unwrap()
        );
    }
    let events = pool_events(&ns, "rotating").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, _)| reason == "RolloutStarted"),
        "{events:?}"
    );
}

/// (type, reason, message) of the Events about a pool.
async fn pool_events(ns: &TestNamespace, pool: &str) -> Vec<(String, String, String)> {
    ns.api::<Event>()
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=ProverPool,involvedObject.name={pool}"
        )))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rotation_to_a_wrong_checksum_is_rolled_back_and_the_pool_keeps_serving() {
    // The deadline is short so the rollback comes quickly; v1 still loads well within it.
    let Setup { release: _r, ns } = setup("pool-rollback", "rolloutDeadlineSeconds: 30\n").await;
    let v1 = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "steady", 2, None, &v1).await;
    wait_serving(&ns, "steady", 2).await;

    // The same files, but the pool claims another sha256 for the proving key: the prover
    // refuses the file and the new pod never becomes ready.
    let bad = Parameters {
        version: "v2-bad".into(),
        config_map: v1.config_map.clone(),
        files: v1
            .files
            .iter()
            .map(|(name, sha)| {
                let sha = if name == "circuit.zkey" {
                    "0".repeat(64)
                } else {
                    sha.clone()
                };
                (name.clone(), sha)
            })
            .collect(),
    };
    set_parameters(&ns, "steady", &bad).await;

    let pool = ns
        .wait_for::<ProverPool>(
            "steady",
            "ParametersReady=False reason RolledBack",
            4 * MINUTE,
            |p| {
                condition(p, "ParametersReady")
                    .is_some_and(|(s, reason, _)| s == "False" && reason == "RolledBack")
            },
        )
        .await
        .unwrap();
    let (_, _, message) = condition(&pool, "ParametersReady").unwrap();
    // It says why in the prover's words: the file whose sha256 does not match.
    assert!(
        message.contains("v2-bad")
            && message.contains("circuit.zkey")
            && message.contains("rolled back to v1"),
        "ParametersReady message: {message}"
    );
    let parameters = pool.status.clone().unwrap().parameters.unwrap();
    assert_eq!(parameters.rollout, Some(RolloutState::RolledBack));
    assert_eq!(parameters.current.unwrap().version, "v1");

    // The pool keeps serving v1: the surge pod of the bad set goes, both v1 pods stay ready.
    wait_for_pods(
        &ns,
        "steady",
        "the 2 v1 pods ready and no v2-bad pod left",
        2 * MINUTE,
        |pods| all_ready_on(pods, "v1", 2),
    )
    .await;
    let pool = ns
        .wait_for::<ProverPool>(
            "steady",
            "2 ready replicas after the rollback",
            MINUTE,
            |p| ready_replicas(p) == 2 && condition_is(p, "Ready", "True"),
        )
        .await
        .unwrap();
    assert!(
        condition(&pool, "ParametersReady").is_some_and(|(_, r, _)| r == "RolledBack"),
        "the failed set is not retried: {:?}",
        condition(&pool, "ParametersReady")
    );

    // Events are published after the status write the wait above saw.
    let rolled_back = poll_until(MINUTE, || async {
        let events = pool_events(&ns, "steady").await;
        events
            .into_iter()
            .find(|(type_, reason, _)| type_ == "Warning" && reason == "RolledBack")
            .map(|(_, _, message)| message)
    })
    .await;
    let Some(message) = rolled_back else {
        panic!(
            "no Warning Event RolledBack about the pool: {:?}",
            pool_events(&ns, "steady").await
        );
    };
    assert!(
        message.contains("circuit.zkey") && message.contains("rolled back to v1"),
        "Event message: {message}"
    );
}

#[tokio::test]
async fn deleting_the_pool_removes_every_child() {
    let Setup { release: _r, ns } = setup("pool-delete", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    // Two replicas, so that the pool has a PodDisruptionBudget too.
    create_pool(&ns, "doomed", 2, None, &params).await;
    wait_serving(&ns, "doomed", 2).await;

    let prover = deployment_name("doomed");
    let token = "doomed-dispatcher-token".to_string();
    let deployment = ns.api::<Deployment>().get(&prover).await.unwrap();
    let service = ns.api::<Service>().get(&prover).await.unwrap();
    let account = ns.api::<ServiceAccount>().get(&prover).await.unwrap();
    let secret = ns.api::<Secret>().get(&token).await.unwrap();
    let pdb = ns.api::<PodDisruptionBudget>().get(&prover).await.unwrap();
    let policy = ns.api::<NetworkPolicy>().get(&prover).await.unwrap();

    ns.api::<ProverPool>()
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&ns, &deployment).await;
    wait_gone(&ns, &service).await;
    wait_gone(&ns, &account).await;
    wait_gone(&ns, &secret).await;
    wait_gone(&ns, &pdb).await;
    wait_gone(&ns, &policy).await;
    wait_for_pods(&ns, "doomed", "no pods left", 2 * MINUTE, |pods| {
        pods.is_empty()
    })
    .await;
    let leftovers: BTreeSet<String> = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=doomed"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Waits until this very object (by uid) is deleted.
async fn wait_gone<K>(ns: &TestNamespace, obj: &K)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + 'static,
    <K as Resource>::DynamicType: Default,
{
    let name = obj.name_any();
    let uid = obj.meta().uid.clone().unwrap();
    let waited = tokio::time::timeout(
        2 * MINUTE,
        kube::runtime::wait::await_condition(
            ns.api::<K>(),
            &name,
            kube::runtime::conditions::is_deleted(&uid),
        ),
    )
    .await;
    if !matches!(waited, Ok(Ok(_))) {
        let current = ns.api::<K>().get_opt(&name).await.ok().flatten();
        panic!(
            "{} {name} still exists 2 minutes after its pool was deleted\n{}",
            K::kind(&Default::default()),
            ns.report(current.as_ref()).await
        );
    }
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test]
async fn killing_the_leader_hands_the_pool_to_the_standby() {
    let Setup { release, ns } = setup("pool-leader", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "ha", 1, None, &params).await;
    wait_serving(&ns, "ha", 1).await;

    // The chart names the Lease after the release's objects.
    let lease_name = release.operator.clone();
    let lease = ns
        .wait_for::<Lease>(&lease_name, "a holder", MINUTE, |l| holder(l).is_some())
        .await
        .unwrap();
    let leader = holder(&lease).unwrap();
    // The leader's readiness probe may pass a moment after it takes the Lease.
    let operator_pods = || async {
        ns.api::<Pod>()
            .list(&ListParams::default().labels("app.kubernetes.io/name=zkfleet-operator"))
            .await
            .unwrap()
            .items
    };
    let settled = poll_until(MINUTE, || async {
        let pods = operator_pods().await;
        (pods.len() == 2 && pods.iter().any(|p| p.name_any() == leader && pod_ready(p)))
            .then_some(pods)
    })
    .await;
    let Some(operator_pods) = settled else {
        panic!(
            "expected two operator replicas with the leader {leader} Ready: {:?}",
            operator_pods()
                .await
                .iter()
                .map(|p| (p.name_any(), pod_ready(p)))
                .collect::<Vec<_>>()
        );
    };
    let standby = operator_pods
        .iter()
        .map(|p| p.name_any())
        .find(|n| *n != leader)
        .expect("a standby pod");

    // Killed, not stopped: no graceful release of the Lease.
    ns.api::<Pod>()
        .delete(&leader, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let lease = ns
        .wait_for::<Lease>(&lease_name, "a new holder", MINUTE, |l| {
            holder(l).is_some_and(|h| h != leader)
        })
        .await
        .unwrap();
    // Usually the standby; the replacement pod the Deployment starts may win the race for the
    // expired Lease instead, which is a takeover just as good.
    let new_leader = holder(&lease).unwrap();
    println!("leader {leader} killed; standby {standby}; new leader {new_leader}");
    ns.wait_for::<Pod>(&new_leader, "the new leader to be Ready", MINUTE, pod_ready)
        .await
        .unwrap();

    // The new leader reconciles: a scale change made after the kill is honoured.
    scale(&ns, "ha", 2).await;
    wait_serving(&ns, "ha", 2).await;
    let d = ns
        .api::<Deployment>()
        .get(&deployment_name("ha"))
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
}

#[tokio::test]
async fn an_operator_watching_one_namespace_leaves_the_others_alone() {
    let Setup { release: _r, ns } = setup("pool-watched", "").await;
    let elsewhere = TestNamespace::new("pool-unwatched").await.unwrap();
    // The pool outside the watched namespace comes first: an operator that watched it would
    // have reconciled it by the time it has reconciled the watched one.
    let other = Parameters::create(&elsewhere, "v1", "mulchain", &["circuit.zkey"]).await;
    create_pool(&elsewhere, "ignored", 1, None, &other).await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "watched", 1, None, &params).await;
    wait_serving(&ns, "watched", 1).await;

    let ignored = elsewhere.api::<ProverPool>().get("ignored").await.unwrap();
    assert!(ignored.status.is_none(), "{:?}", ignored.status);
    let deployments = elsewhere
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(deployments.items.is_empty(), "{:?}", deployments.items);
}
