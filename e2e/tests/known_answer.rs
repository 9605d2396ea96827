//! Pods that prove they still prove right, on the real cluster: a pool with a known-answer
//! check hands it to each pod before any job, and a pod that proves wrong (the prover's
//! test-only `corrupt-proofs` fault) is quarantined before it takes a user's job: reported on
//! the pool (flaggedPods, the ProversHealthy condition, a PodQuarantined Event) and deleted.
//! The pool keeps three known inputs, one with its answer written down and two whose answer the
//! pool's verifier derives, and each check picks one at random.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use zkfleet_crds::v1alpha1::{JobPhase, ProverPool};
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::poll_until;

const POOL: &str = "checked";
const JOBS: usize = 6;

#[tokio::test]
async fn a_pod_that_proves_wrong_is_quarantined_by_the_known_answer_check_before_any_job() {
    // The pool's own pod holds each job 1 s, so jobs are still queued when the bad pod comes.
    let setup = setup(
        "known-answer",
        "prover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"delay-ms=1000\"\n",
    )
    .await;
    let ns = &setup.ns;
    let v1 = Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(ns, POOL, 1, &v1, json!({"slotsPerReplica": 1})).await;
    wait_serving(ns, POOL, 1).await;

    // The known answer is what the pool proves, verified, for the fixture's input: how a
    // platform team would take it.
    let reference = prove_mulchain_job(ns, "reference", POOL).await;
    let known = reference.result.unwrap().public_signals.unwrap();
    let inputs = std::fs::read_to_string(fixtures().join("input.json")).unwrap();
    ns.api::<ProverPool>()
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "knownAnswer": {
                    "input": {"inline": {"json": inputs}},
                    "publicSignals": known,
                    // Two more, with no answer written down: the pool's verifier derives it.
                    // Each check picks one of the three at random.
                    "alternatives": [
                        {"input": {"inline": {"json": "{\"a\": \"5\", \"b\": \"7\"}"}}},
                        {"input": {"inline": {"json": "{\"a\": \"9\", \"b\": \"2\"}"}}},
                    ],
                    "everySeconds": 0,
                },
                "quarantine": {"afterRejectedProofs": 2},
            }})),
        )
        .await
        .unwrap();
    ns.wait_for::<ProverPool>(POOL, "the operator to see the check", MINUTE, |p| {
        p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
            && condition_is(p, "ProversHealthy", "True")
    })
    .await
    .unwrap();

    for i in 0..JOBS {
        submit_mulchain_job(ns, &format!("job-{i}"), POOL).await;
    }
    let faulty = start_faulty_pod(ns, POOL, "corrupt-proofs").await;

    let expected = faulty.clone();
    let pool = ns
        .wait_for::<ProverPool>(POOL, "the corrupt pod quarantined", 3 * MINUTE, move |p| {
            let listed = p.status.as_ref().is_some_and(|s| {
                s.flagged_pods
                    .iter()
                    .any(|f| f.pod == expected && f.reason == "Quarantined")
            });
            listed
                && condition(p, "ProversHealthy")
                    .is_some_and(|(s, r, _)| s == "False" && r == "PodQuarantined")
        })
        .await
        .unwrap();
    let (_, _, message) = condition(&pool, "ProversHealthy").unwrap();
    assert!(
        message.contains(&faulty) && message.contains("known-answer"),
        "{message}"
    );
    let events: Vec<Event> = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("PodQuarantined")
                && e.note.as_deref().is_some_and(|n| n.contains(&faulty))),
        "a PodQuarantined Event names the pod"
    );
    let pods = ns.api::<Pod>();
    let gone = poll_until(2 * MINUTE, || {
        let pods = pods.clone();
        let faulty = faulty.clone();
        async move {
            match pods.get_opt(&faulty).await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert!(gone.is_some(), "the quarantined pod {faulty} is deleted");

    for i in 0..JOBS {
        let name = format!("job-{i}");
        let job = wait_job_finished(ns, &name, 3 * MINUTE).await;
        let status = job.status.unwrap_or_default();
        assert_eq!(
            status.phase,
            Some(JobPhase::Succeeded),
            "{name}: {:?}",
            status.message
        );
        assert!(
            status
                .attempts
                .iter()
                .all(|a| a.pod.as_deref() != Some(faulty.as_str())),
            "{name} never ran on the quarantined pod: {:?}",
            status.attempts
        );
    }
    // A job submitted now still runs: the pool's own pod passed its check.
    let after = submit_mulchain_job(ns, "after", POOL).await;
    let done = wait_job_finished(ns, &after.metadata.name.unwrap(), 3 * MINUTE).await;
    assert_eq!(done.status.unwrap().phase, Some(JobPhase::Succeeded));
}
