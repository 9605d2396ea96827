//! `kubectl zkfleet` on the real cluster, run as a user runs it: the plugin binary, with the
//! harness's kubeconfig, against the chart's operator and a Groth16 pool of the mulchain
//! fixture. A job goes from `submit` to a proof written by `proof` that snarkjs accepts and
//! that `verify` checks with the pool's key; `status` and `logs` show the pool and the prover.

use std::path::{Path, PathBuf};

use kube::api::DeleteParams;
use serde_json::json;
use zkfleet_crds::v1alpha1::ProofJob;
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::kubectl::kubectl_zkfleet;
use zkfleet_e2e::poll_until;

fn snarkjs() -> PathBuf {
    let root = std::env::var_os("ZKFLEET_FIXTURES").expect("ZKFLEET_FIXTURES is set");
    PathBuf::from(root).join("bin").join("snarkjs")
}

/// `snarkjs groth16 verify` of the files `proof` wrote, with the fixture's own key.
async fn assert_snarkjs_accepts(dir: &Path) {
    let out = tokio::process::Command::new(snarkjs())
        .args(["groth16", "verify"])
        .arg(fixtures().join("verification_key.json"))
        .arg(dir.join("public.json"))
        .arg(dir.join("proof.json"))
        .output()
        .await
        .expect("snarkjs runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("OK"),
        "snarkjs refused the proof kubectl zkfleet wrote: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A namespace with the operator and pool `alpha` (mulchain, one replica) serving, its
/// verification key among its parameters.
async fn serving_pool(prefix: &str, values: &str) -> (Setup, Parameters) {
    let setup = setup(prefix, values).await;
    let params = Parameters::create(
        &setup.ns,
        "v1",
        "mulchain-v1",
        &["circuit.zkey", "circuit.wasm", "verification_key.json"],
    )
    .await;
    create_pool_with(&setup.ns, "alpha", 1, &params, json!({})).await;
    wait_serving(&setup.ns, "alpha", 1).await;
    (setup, params)
}

#[tokio::test]
async fn a_job_goes_from_submit_to_a_proof_snarkjs_and_verify_accept() {
    let (Setup { release: _r, ns }, params) = serving_pool("plugin", "").await;
    let input = fixtures().join("input.json");

    let submitted = kubectl_zkfleet(
        &ns,
        &[
            "submit",
            "--pool",
            "alpha",
            "--input",
            path(&input),
            "--name",
            "plug",
        ],
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:#?}");
    assert_eq!(submitted.stdout.trim(), "plug");

    let waited = kubectl_zkfleet(&ns, &["wait", "plug", "--timeout", "3m"]).await;
    assert_eq!(waited.code, Some(0), "{waited:#?}");
    assert!(waited.stdout.starts_with("plug Succeeded"), "{waited:#?}");

    let out = tempfile::tempdir().unwrap();
    let proof = kubectl_zkfleet(&ns, &["proof", "plug", "--out", path(out.path())]).await;
    assert_eq!(proof.code, Some(0), "{proof:#?}");
    assert!(proof.stdout.contains("proof.json") && proof.stdout.contains("public.json"));
    assert_snarkjs_accepts(out.path()).await;

    // The pool's key, read from its ConfigMap; the fixture's zkey; another circuit's key.
    let verified = kubectl_zkfleet(&ns, &["verify", "plug"]).await;
    assert_eq!(verified.code, Some(0), "{verified:#?}");
    assert!(
        verified.stdout.starts_with(
            "OK: the proof of ProofJob plug verifies against verification_key.json of pool alpha"
        ),
        "{verified:#?}"
    );
    let zkey = fixtures().join("circuit.zkey");
    let with_zkey = kubectl_zkfleet(&ns, &["verify", "plug", "--vk", path(&zkey)]).await;
    assert_eq!(with_zkey.code, Some(0), "{with_zkey:#?}");
    let other = fixtures()
        .parent()
        .unwrap()
        .join("merkle/verification_key.json");
    let wrong_key = kubectl_zkfleet(&ns, &["verify", "plug", "--vk", path(&other)]).await;
    assert_eq!(wrong_key.code, Some(1), "{wrong_key:#?}");
    assert!(wrong_key.stdout.starts_with("INVALID"), "{wrong_key:#?}");

    let status = kubectl_zkfleet(&ns, &["status"]).await;
    assert_eq!(status.code, Some(0), "{status:#?}");
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with("alpha "))
        .unwrap_or_else(|| panic!("status names pool alpha: {status:#?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "1/1", "one of one replica ready: {row}");
    assert!(row.contains("v1") && row.contains("True"), "{row}");

    let logs = kubectl_zkfleet(&ns, &["logs", "plug"]).await;
    assert_eq!(logs.code, Some(0), "{logs:#?}");
    assert!(
        logs.stdout.contains(&format!("{}/plug", ns.name)),
        "the prover's log mentions the job: {logs:#?}"
    );

    // A pool with no pods keeps its jobs queued: `wait` gives up with exit 2.
    create_pool_with(&ns, "idle", 0, &params, json!({})).await;
    let queued = kubectl_zkfleet(
        &ns,
        &[
            "submit",
            "--pool",
            "idle",
            "--input",
            path(&input),
            "--wait",
            "--timeout",
            "3s",
        ],
    )
    .await;
    assert_eq!(queued.code, Some(2), "{queued:#?}");
    assert!(
        queued.stdout.trim().starts_with("idle-"),
        "a generated name: {queued:#?}"
    );
    assert!(queued.stderr.contains("timed out after 3s"), "{queued:#?}");

    // A job for a pool that does not exist fails: exit 1 with the operator's reason.
    let orphan = kubectl_zkfleet(
        &ns,
        &[
            "submit",
            "--pool",
            "nopool",
            "--input",
            path(&input),
            "--name",
            "orphan",
            "--wait",
            "--timeout",
            "2m",
        ],
    )
    .await;
    assert_eq!(orphan.code, Some(1), "{orphan:#?}");
    assert!(orphan.stderr.contains("orphan Failed"), "{orphan:#?}");
}

#[tokio::test]
async fn a_proof_in_the_artifact_store_is_read_from_a_copy() {
    // Every proof counts as large; the store is the operator's emptyDir (file://).
    let values = "artifacts:\n  inlineResultMaxBytes: 0\n";
    let (Setup { release, ns }, _) = serving_pool("plugin-artifact", values).await;
    let input = fixtures().join("input.json");
    let submitted = kubectl_zkfleet(
        &ns,
        &[
            "submit",
            "--pool",
            "alpha",
            "--input",
            path(&input),
            "--name",
            "stored",
            "--wait",
            "--timeout",
            "3m",
        ],
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:#?}");

    // The store is a directory of the operator's pod: the plugin says so and what to do.
    let out = tempfile::tempdir().unwrap();
    let unreachable = kubectl_zkfleet(&ns, &["proof", "stored", "--out", path(out.path())]).await;
    assert_eq!(unreachable.code, Some(1), "{unreachable:#?}");
    assert!(
        unreachable.stderr.contains("--artifact") && unreachable.stderr.contains("artifacts.url"),
        "{unreachable:#?}"
    );

    // A copy of the stored proof (here, from the leader's emptyDir on this node) is used.
    let job = ns.api::<ProofJob>().get("stored").await.unwrap();
    let location = job.status.unwrap().result.unwrap().location.unwrap();
    let copy = stored_artifact(&ns, &release, &location).await;
    let proof = kubectl_zkfleet(
        &ns,
        &[
            "proof",
            "stored",
            "--out",
            path(out.path()),
            "--artifact",
            path(&copy),
        ],
    )
    .await;
    assert_eq!(proof.code, Some(0), "{proof:#?}");
    assert_snarkjs_accepts(out.path()).await;
    let verified = kubectl_zkfleet(&ns, &["verify", "stored", "--artifact", path(&copy)]).await;
    assert_eq!(verified.code, Some(0), "{verified:#?}");
    assert!(verified.stdout.starts_with("OK"), "{verified:#?}");

    // The job goes while its operator still runs, so its finalizer deletes the stored proof;
    // left to the namespace's deletion, the finalizer would outlive the uninstalled operator.
    ns.api::<ProofJob>()
        .delete("stored", &DeleteParams::default())
        .await
        .unwrap();
    let gone = poll_until(2 * MINUTE, || async {
        let job = ns.api::<ProofJob>().get_opt("stored").await.unwrap();
        job.is_none().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "job stored and its stored proof were not deleted within 2 minutes"
    );
}
