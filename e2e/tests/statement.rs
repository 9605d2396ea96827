//! What was proved comes from the job, on the real cluster: a pod that answers a job with a
//! valid proof of another statement (the prover's test-only `wrong-statement` fault) is
//! refused by the pool's verifier, which derives the job's public signals from the job's own
//! input; the job succeeds on an honest pod with its own statement, and result reuse never
//! serves the lie. A tenant's witness that breaks the circuit fails `InputRejected` without
//! flagging or quarantining the honest pods that proved it.

use base64::Engine as _;
use kube::api::PostParams;
use serde_json::json;
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::TestNamespace;
use zkfleet_e2e::fleet::*;

const POOL: &str = "pool";

/// A job of the pool for the mulchain circuit's inputs `a`, `b`.
async fn submit_ab(ns: &TestNamespace, name: &str, a: u32, b: u32) {
    let inputs = json!({"a": a.to_string(), "b": b.to_string()}).to_string();
    let job = mulchain_job(
        name,
        json!({"poolRef": {"name": POOL}, "input": {"inline": {"json": inputs}}}),
    );
    ns.api::<ProofJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pod_that_answers_with_another_statements_proof_is_caught_and_reuse_serves_the_truth() {
    let Setup { release: _r, ns } = setup("statement-liar", "").await;
    let v1 = Parameters::create(&ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(&ns, POOL, 0, &v1, json!({"resultReuse": {}})).await;
    let liar = start_faulty_pod(&ns, POOL, "wrong-statement").await;

    // The liar's first proof is honest ...
    submit_ab(&ns, "first", 3, 5).await;
    let first = wait_job_finished(&ns, "first", 3 * MINUTE).await;
    let first = first.status.unwrap();
    assert_eq!(first.phase, Some(JobPhase::Succeeded), "{first:#?}");
    let first_signals = first.result.unwrap().public_signals.unwrap();

    // ... and it answers the next job, for other inputs, with that same valid proof.
    submit_ab(&ns, "second", 7, 11).await;
    wait_rejected_as_another_statement(&ns, "second").await;

    // An honest pod joins: the job succeeds there with its own statement, and the liar is
    // flagged, now that another pod proved what it had answered wrongly.
    scale(&ns, POOL, 1).await;
    let second = wait_job_finished(&ns, "second", 3 * MINUTE).await;
    assert!(!attempts_with(&second, AttemptOutcome::Succeeded).contains(&liar));
    let status = second.status.unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    let result = status.result.unwrap();
    let own = result.public_signals.unwrap();
    assert_ne!(own, first_signals);
    // `a` is the circuit's public input: 7 is this job's own.
    assert_eq!(own.last().map(String::as_str), Some("7"));
    let verification = status.verification.unwrap();
    eprintln!(
        "groth16 mulchain: proving on the pod {} ms; verification, the statement derived by the pool's verifier included, {} ms",
        status.proving_millis.unwrap_or(-1),
        verification.verifier_millis.unwrap_or(-1)
    );
    let statement = verification.statement.expect("the derived statement");
    assert_eq!(statement["publicSignals"], json!(own));
    if let Err(why) = snarkjs_verifies(&json!(result.proof), &own) {
        panic!("snarkjs refused the proof: {why}");
    }
    ns.wait_for::<ProverPool>(POOL, "the liar flagged", 2 * MINUTE, |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.flagged_pods.iter().any(|f| f.pod == liar))
    })
    .await
    .unwrap();

    // A later job with the same input is answered from the verified proof: its own statement.
    submit_ab(&ns, "third", 7, 11).await;
    let third = wait_job_finished(&ns, "third", 3 * MINUTE).await;
    let status = third.status.unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    let result = status.result.unwrap();
    assert!(
        result.reused_from.is_some(),
        "answered by reuse: {result:#?}"
    );
    assert_eq!(result.public_signals.as_ref(), Some(&own));
}

/// Ten jobs whose `.wtns` has the circuit's length and `w[0] = 1` but breaks a constraint. On a
/// pool whose parameters carry the circuit's r1cs, the pod refuses each before proving it; on
/// one without, each proof fails verification on two pods. Either way every job fails
/// `InputRejected` and no pod pays.
#[tokio::test]
async fn ten_jobs_whose_witness_breaks_the_circuit_fail_input_rejected_and_no_pod_pays() {
    const CHECKED: &str = "checked";
    let Setup { release: _r, ns } = setup("statement-input", "").await;
    let v1 = Parameters::create(&ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    let with_r1cs = Parameters::create(
        &ns,
        "v1",
        "mulchain-v1-r1cs",
        &["circuit.zkey", "circuit.wasm", "circuit.r1cs"],
    )
    .await;
    create_pool_with(
        &ns,
        POOL,
        2,
        &v1,
        json!({"quarantine": {"afterRejectedProofs": 2}, "slotsPerReplica": 2}),
    )
    .await;
    create_pool_with(
        &ns,
        CHECKED,
        1,
        &with_r1cs,
        json!({"quarantine": {"afterRejectedProofs": 2}, "slotsPerReplica": 2}),
    )
    .await;
    wait_serving(&ns, POOL, 2).await;
    wait_serving(&ns, CHECKED, 1).await;

    // The fixture's witness, of the right length and with w[0] = 1, its last (internal) value
    // changed.
    let mut wtns = std::fs::read(fixtures().join("witness.wtns")).unwrap();
    let at = wtns.len() - 32;
    wtns[at] ^= 1;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wtns);
    let names =
        |pool: &str| -> Vec<String> { (0..10).map(|i| format!("{pool}-broken-{i}")).collect() };
    for pool in [POOL, CHECKED] {
        for name in names(pool) {
            let job = mulchain_job(
                &name,
                json!({"poolRef": {"name": pool},
                       "input": {"format": "witness", "inline": {"base64": b64}}}),
            );
            ns.api::<ProofJob>()
                .create(&PostParams::default(), &job)
                .await
                .unwrap();
        }
    }
    for pool in [POOL, CHECKED] {
        for name in names(pool) {
            let job = wait_job_finished(&ns, &name, 3 * MINUTE).await;
            let status = job.status.clone().unwrap();
            assert_eq!(status.phase, Some(JobPhase::Failed), "{name}: {status:#?}");
            assert_eq!(status.reason.as_deref(), Some("InputRejected"), "{name}");
            assert_eq!(status.retryable, Some(false), "{name}");
            if pool == CHECKED {
                // Refused by the first pod before a proof was spent on it.
                assert_eq!(status.attempts.len(), 1, "{name}: {:?}", status.attempts);
                assert_eq!(status.attempts[0].outcome, Some(AttemptOutcome::Failed));
                let message = status.message.clone().unwrap_or_default();
                assert!(
                    message.contains("does not satisfy the circuit"),
                    "{name}: {message}"
                );
            } else {
                let pods = attempts_with(&job, AttemptOutcome::VerificationFailed);
                assert_eq!(pods.len(), 2, "{name}: rejected on two pods: {pods:?}");
                assert_ne!(pods[0], pods[1], "{name}");
            }
        }
    }
    // No pod flagged, quarantined or replaced, and the pools still prove.
    for pool in [POOL, CHECKED] {
        let stored = ns.api::<ProverPool>().get(pool).await.unwrap();
        assert_eq!(stored.status.unwrap().flagged_pods, [], "{pool}");
        let status = prove_mulchain_job(&ns, &format!("{pool}-after"), pool).await;
        assert_eq!(status.phase, Some(JobPhase::Succeeded), "{pool}");
    }
}
