//! STARK and VM provers in the fleet, end to end on the real cluster: a Miden VM pool (the real
//! `miden-vm`, built from crates.io by `e2e/scripts/build-miden.sh` and packed with the prover
//! into `zkfleet.local/zkfleet-prover-miden`) takes ProofJobs applied with `kubectl apply`;
//! every proof is verified by the pool's verifier before the job succeeds, and the test checks
//! each proof again with its own `miden-vm verify` against the program hash it computes itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob, ProverPool};
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::helm::{Release, repo_dir};
use zkfleet_e2e::{TestNamespace, image};

/// The Miden fixtures: `fib.masm` and its inputs.
fn miden_fixtures() -> PathBuf {
    repo_dir().join("prover-pod/fixtures/miden")
}

/// The `miden-vm` the image carries, for the test's own checks.
fn miden_vm() -> PathBuf {
    let Some(path) = std::env::var_os("ZKFLEET_MIDEN_VM") else {
        panic!(
            "ZKFLEET_MIDEN_VM is not set: `make e2e` sets it to the binary e2e/scripts/build-miden.sh builds"
        );
    };
    PathBuf::from(path)
}

/// The program hash of `fib.masm`, computed here with `miden-vm compile`, not read from any
/// status: the test trusts nothing the fleet reports about what was proved.
fn program_hash() -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(miden_vm())
        .args(["compile", "-a"])
        .arg(miden_fixtures().join("fib.masm"))
        .arg("-o")
        .arg(dir.path().join("fib.masp"))
        .output()
        .expect("miden-vm runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "miden-vm compile failed: {text}");
    let at = text.find("program hash is ").expect("a program hash") + 16;
    text[at..at + 64].to_string()
}

/// Creates the program ConfigMap and a Miden pool of `replicas` pods.
async fn miden_pool(ns: &TestNamespace, replicas: i32) -> ProverPool {
    let program = std::fs::read(miden_fixtures().join("fib.masm")).unwrap();
    let sha256 = hex(&<sha2::Sha256 as sha2::Digest>::digest(&program));
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fib-program"},
        "data": {"fib.masm": String::from_utf8(program).unwrap()},
    }))
    .unwrap();
    ns.api().create(&Default::default(), &cm).await.unwrap();
    let pool: ProverPool = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
        "metadata": {"name": "miden"},
        "spec": {
            "replicas": replicas,
            "image": image("zkfleet-prover-miden"),
            "backend": {"type": "exec", "exec": {"profile": "miden", "command": ["miden-vm"]}},
            "parameters": {
                "version": "fib-v1",
                "source": {"configMap": {"name": "fib-program"}},
                "files": [{"name": "fib.masm", "sha256": sha256}],
            },
            "jobDefaults": {"timeoutSeconds": 60},
        },
    }))
    .unwrap();
    ns.api().create(&Default::default(), &pool).await.unwrap()
}

/// A ProofJob of the Miden pool for fib(`n`), as a user writes it.
fn miden_job_yaml(name: &str, inputs: &str) -> String {
    let inputs = serde_json::to_string(inputs).unwrap();
    format!(
        "apiVersion: zkfleet.dev/v1alpha1
kind: ProofJob
metadata:
  name: {name}
spec:
  poolRef:
    name: miden
  input:
    files:
      - name: inputs.json
        inline:
          json: {inputs}
"
    )
}

fn fib_inputs(n: u64) -> String {
    json!({"operand_stack": [n.to_string()]}).to_string()
}

/// `kubectl apply -f -` in the test's namespace.
fn kubectl_apply(ns: &TestNamespace, yaml: &str) {
    let mut child = Command::new("kubectl")
        .args(["apply", "-n", &ns.name, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_finished(ns: &TestNamespace, name: &str) -> ProofJob {
    wait_job_finished(ns, name, 3 * MINUTE).await
}

/// The proof of a Succeeded job: from its status, or from the artifact store (the leader's
/// emptyDir on this node) when it was too large for the status.
async fn proof_of(ns: &TestNamespace, release: &Release, job: &ProofJob) -> Value {
    let result = job
        .status
        .as_ref()
        .unwrap()
        .result
        .clone()
        .expect("a result");
    if let Some(proof) = result.proof {
        return Value::Object(proof);
    }
    let location = result
        .location
        .expect("a proof on the status or in the store");
    let bytes = std::fs::read(stored_artifact(ns, release, &location).await).unwrap();
    let stored: Value = serde_json::from_slice(&bytes).unwrap();
    stored["proof"].clone()
}

/// Whether the test's own `miden-vm verify` accepts `proof` for the stack `input` → `output`
/// of the program with hash `hash`.
fn miden_verify(dir: &Path, proof: &Value, input: &Value, output: &Value, hash: &str) -> bool {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(proof["base64"].as_str().expect("a binary proof"))
        .unwrap();
    let (proof_file, input_file, output_file) = (
        dir.join("fib.proof"),
        dir.join("inputs.json"),
        dir.join("outputs.json"),
    );
    std::fs::write(&proof_file, bytes).unwrap();
    std::fs::write(&input_file, json!({"operand_stack": input}).to_string()).unwrap();
    std::fs::write(&output_file, json!({"stack": output}).to_string()).unwrap();
    Command::new(miden_vm())
        .arg("verify")
        .arg("-p")
        .arg(&proof_file)
        .arg("-i")
        .arg(&input_file)
        .arg("-o")
        .arg(&output_file)
        .args(["-x", hash])
        .output()
        .expect("miden-vm runs")
        .status
        .success()
}

#[tokio::test]
async fn miden_jobs_applied_with_kubectl_succeed_with_proofs_miden_vm_accepts() {
    let Setup { release, ns } = setup("stark-miden", "").await;
    miden_pool(&ns, 1).await;
    wait_serving(&ns, "miden", 1).await;
    // The pool runs a verifier apart from its provers.
    ns.wait_for::<k8s_openapi::api::apps::v1::Deployment>(
        "miden-verifier",
        "the verifier ready",
        2 * MINUTE,
        |d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1),
    )
    .await
    .unwrap();

    let hash = program_hash();
    let cases = [
        ("fib-ten", 10u64, "55"),
        ("fib-ninety", 90, "2880067194370816120"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, n, fib) in cases {
        // One at a time, so the time from apply to Succeeded is this job's alone.
        let applied = Instant::now();
        kubectl_apply(&ns, &miden_job_yaml(name, &fib_inputs(n)));
        let job = wait_finished(&ns, name).await;
        let end_to_end = applied.elapsed();
        let status = job.status.clone().unwrap();
        assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
        let verification = status.verification.clone().unwrap();
        assert!(verification.verified && !verification.skipped);
        let verifier = verification.verifier.unwrap();
        assert!(
            verifier.starts_with("verifier/miden-verifier-"),
            "{verifier}"
        );
        // The verdict came from a process apart from the pod that proved.
        let provers = attempts_with(&job, AttemptOutcome::Succeeded);
        assert!(!provers.iter().any(|p| verifier.ends_with(p.as_str())));

        let outputs = Value::Object(status.result.clone().unwrap().public_outputs.unwrap());
        assert_eq!(outputs["programHash"], hash);
        assert_eq!(outputs["operandStack"], json!([n.to_string()]));
        assert_eq!(outputs["stackOutputs"][0], fib, "fib({n})");

        let proof = proof_of(&ns, &release, &job).await;
        assert!(
            miden_verify(
                dir.path(),
                &proof,
                &outputs["operandStack"],
                &outputs["stackOutputs"],
                &hash
            ),
            "miden-vm verify refused the proof of {name}"
        );
        // And it is a real check: the same proof for another output is refused.
        let mut wrong = outputs["stackOutputs"].clone();
        wrong[0] = json!("56");
        assert!(!miden_verify(
            dir.path(),
            &proof,
            &outputs["operandStack"],
            &wrong,
            &hash
        ));
        // The fleet overhead: the same proof by hand with the same binary, on this node.
        let input = dir.path().join("by-hand.json");
        std::fs::write(&input, fib_inputs(n)).unwrap();
        let started = Instant::now();
        let out = Command::new(miden_vm())
            .arg("prove")
            .arg(miden_fixtures().join("fib.masm"))
            .arg("-i")
            .arg(&input)
            .arg("-p")
            .arg(dir.path().join("by-hand.proof"))
            .arg("-o")
            .arg(dir.path().join("by-hand.outputs"))
            .arg("--release")
            .output()
            .unwrap();
        assert!(out.status.success());
        eprintln!(
            "{name}: kubectl apply to Succeeded {} ms; proving on the pod {} ms; verified in {} ms by {verifier}; miden-vm prove by hand {} ms",
            end_to_end.as_millis(),
            status.proving_millis.unwrap_or(-1),
            verification.verifier_millis.unwrap_or(-1),
            started.elapsed().as_millis()
        );
    }
}

#[tokio::test]
async fn a_pod_that_tampers_with_stark_proofs_never_completes_a_job_and_is_flagged() {
    let Setup { release: _r, ns } = setup("stark-corrupt", "").await;
    miden_pool(&ns, 0).await;
    let faulty = start_faulty_pod(&ns, "miden", "corrupt-proofs").await;
    kubectl_apply(&ns, &miden_job_yaml("first", &fib_inputs(20)));
    // Only the faulty pod proves: the verifier rejects its proof, but one rejection cannot
    // tell the pod from the input, so nobody is flagged yet.
    ns.wait_for::<ProofJob>("first", "its first proof rejected", 3 * MINUTE, |j| {
        !attempts_with(j, AttemptOutcome::VerificationFailed).is_empty()
    })
    .await
    .unwrap();
    let pool = ns.api::<ProverPool>().get("miden").await.unwrap();
    assert_eq!(pool.status.unwrap().flagged_pods, []);

    // An honest pod joins: the job succeeds there, never on the faulty pod.
    scale(&ns, "miden", 1).await;
    let job = wait_finished(&ns, "first").await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(!attempts_with(&job, AttemptOutcome::Succeeded).contains(&faulty));
    let rejected = attempts_with(&job, AttemptOutcome::VerificationFailed);
    assert!(!rejected.is_empty(), "{status:#?}");
    assert!(rejected.iter().all(|p| *p == faulty));
    let message = job
        .status
        .unwrap()
        .attempts
        .iter()
        .find(|a| a.outcome == Some(AttemptOutcome::VerificationFailed))
        .and_then(|a| a.message.clone())
        .unwrap_or_default();
    assert!(message.contains("miden-vm verify"), "{message}");
    // The honest pod proved the job the faulty one failed: that isolates it.
    let pool = ns
        .wait_for::<ProverPool>("miden", "the faulty pod flagged", 3 * MINUTE, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.flagged_pods.iter().any(|f| f.pod == faulty))
        })
        .await
        .unwrap();
    assert_eq!(
        pool.status.unwrap().flagged_pods[0].reason,
        "VerificationFailed"
    );
}

#[tokio::test]
async fn bad_stark_input_fails_the_job_with_a_reason_and_no_retry() {
    let Setup { release: _r, ns } = setup("stark-bad", "").await;
    miden_pool(&ns, 1).await;
    wait_serving(&ns, "miden", 1).await;

    // The VM refuses the run (n = 0 fails the program's assertion): not retried.
    // Ten of them: the input's fault each time, so no pod pays for any.
    let bad = std::fs::read_to_string(miden_fixtures().join("fib-bad-input.json")).unwrap();
    let refused: Vec<String> = (0..10).map(|i| format!("refused-{i}")).collect();
    for name in &refused {
        kubectl_apply(&ns, &miden_job_yaml(name, &bad));
    }
    // A file the prover does not take, and a wrong sha256: refused before any pod sees them.
    kubectl_apply(
        &ns,
        &miden_job_yaml("misnamed", &fib_inputs(5))
            .replace("name: inputs.json", "name: input.json"),
    );
    kubectl_apply(
        &ns,
        &miden_job_yaml("wrong-digest", &fib_inputs(5)).replace(
            "        inline:",
            // Quoted: an all-digit digest would be a YAML number.
            &format!("        sha256: \"{}\"\n        inline:", "0".repeat(64)),
        ),
    );
    let expect = refused
        .iter()
        .map(|name| (name.as_str(), "InputRejected", "input_rejected"))
        .chain([
            ("misnamed", "InvalidSpec", "which miden does not take"),
            ("wrong-digest", "InvalidInput", "sha256"),
        ]);
    for (name, reason, says) in expect {
        let job = wait_finished(&ns, name).await;
        let status = job.status.unwrap();
        assert_eq!(status.phase, Some(JobPhase::Failed), "{name}: {status:#?}");
        assert_eq!(
            status.reason.as_deref(),
            Some(reason),
            "{name}: {status:#?}"
        );
        assert_eq!(status.retryable, Some(false), "{name}");
        let message = status.message.unwrap_or_default();
        assert!(message.contains(says), "{name}: {message}");
        assert!(status.attempt_count.unwrap_or(0) <= 1, "{name} was retried");
    }
    // The pool still proves, and no pod was flagged or quarantined for the tenant's input.
    kubectl_apply(&ns, &miden_job_yaml("after", &fib_inputs(3)));
    let job = wait_finished(&ns, "after").await;
    assert_eq!(job.status.unwrap().phase, Some(JobPhase::Succeeded));
    let pool = ns.api::<ProverPool>().get("miden").await.unwrap();
    assert_eq!(pool.status.unwrap().flagged_pods, []);
}

#[tokio::test]
async fn a_pod_that_answers_with_another_jobs_stark_proof_is_caught() {
    let Setup { release: _r, ns } = setup("stark-liar", "").await;
    miden_pool(&ns, 0).await;
    let liar = start_faulty_pod(&ns, "miden", "wrong-statement").await;
    // Its first proof is honest; the next job gets that same valid proof of fib(20).
    kubectl_apply(&ns, &miden_job_yaml("first", &fib_inputs(20)));
    let first = wait_finished(&ns, "first").await;
    assert_eq!(first.status.unwrap().phase, Some(JobPhase::Succeeded));
    kubectl_apply(&ns, &miden_job_yaml("second", &fib_inputs(30)));
    wait_rejected_as_another_statement(&ns, "second").await;
    // An honest pod proves the job's own statement, and the liar is flagged for it.
    scale(&ns, "miden", 1).await;
    let job = wait_finished(&ns, "second").await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(!attempts_with(&job, AttemptOutcome::Succeeded).contains(&liar));
    let verification = status.verification.unwrap();
    eprintln!(
        "miden fib(30): proving on the pod {} ms; verification, the statement derived included, {} ms",
        status.proving_millis.unwrap_or(-1),
        verification.verifier_millis.unwrap_or(-1)
    );
    let statement = verification.statement.unwrap();
    let expected: Value = serde_json::from_str(&fib_inputs(30)).unwrap();
    assert_eq!(statement["operandStack"], expected["operand_stack"]);
    assert_eq!(statement["programHash"], json!(program_hash()));
    ns.wait_for::<ProverPool>("miden", "the liar flagged", 3 * MINUTE, |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.flagged_pods.iter().any(|f| f.pod == liar))
    })
    .await
    .unwrap();
}

/// A Cairo run as `cairo-run --proof_mode` writes it: public input with an output segment of two
/// cells, private input, trace and memory.
fn cairo_run_files() -> Value {
    cairo_run_files_with_output("0x2a")
}

/// [`cairo_run_files`] whose first output cell holds `first`: another statement.
fn cairo_run_files_with_output(first: &str) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let public = json!({
        "layout": "small", "n_steps": 1024, "rc_min": 0, "rc_max": 100,
        "memory_segments": {
            "program": {"begin_addr": 1, "stop_ptr": 5},
            "output": {"begin_addr": 20, "stop_ptr": 22},
        },
        "public_memory": [
            {"address": 1, "value": "0x40780017fff7fff", "page": 0},
            {"address": 21, "value": "0x90", "page": 0},
            {"address": 20, "value": first, "page": 0},
        ],
    });
    let private = json!({"trace_path": "/cairo/trace.bin", "memory_path": "/cairo/memory.bin"});
    json!([
        {"name": "public_input.json", "inline": {"json": public.to_string()}},
        {"name": "private_input.json", "inline": {"json": private.to_string()}},
        {"name": "trace.bin", "inline": {"base64": b64("trace bytes")}},
        {"name": "memory.bin", "inline": {"base64": b64("memory bytes")}},
    ])
}

/// The Stone pool (the stand-in's image) of `replicas` pods, and its program ConfigMap.
async fn stone_pool(ns: &TestNamespace, replicas: i32) {
    let program = r#"{"prime": "0x800000000000011000000000000000000000000000000000000000000000001", "data": []}"#;
    let program_sha256 = hex(&<sha2::Sha256 as sha2::Digest>::digest(program.as_bytes()));
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cairo-program"},
        "data": {"program.json": program},
    }))
    .unwrap();
    ns.api::<k8s_openapi::api::core::v1::ConfigMap>()
        .create(&Default::default(), &cm)
        .await
        .unwrap();
    let pool: ProverPool = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
        "metadata": {"name": "stone"},
        "spec": {
            "replicas": replicas,
            "image": image("zkfleet-prover-stone-standin"),
            "backend": {"type": "exec", "exec": {
                "profile": "stone",
                // The stand-in takes Stone's flags after its mode, as cpu_air_prover takes them.
                "command": ["stone-standin", "prove"],
                "verifyCommand": ["stone-standin", "verify", "--in_file={proof}"],
            }},
            // Stone reads no parameter file of ours; the pool still pins what it serves (here
            // the compiled Cairo program the jobs run), checked by every pod.
            "parameters": {
                "version": "cairo-v1",
                "source": {"configMap": {"name": "cairo-program"}},
                "files": [{"name": "program.json", "sha256": program_sha256}],
            },
            "jobDefaults": {"timeoutSeconds": 60},
        },
    }))
    .unwrap();
    ns.api().create(&Default::default(), &pool).await.unwrap();
}

/// Submits a Stone job of `files` (a Cairo run's four files).
async fn submit_stone_job(ns: &TestNamespace, name: &str, files: Value) {
    let job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": "stone"}, "input": {"files": files}},
    }))
    .unwrap();
    ns.api().create(&Default::default(), &job).await.unwrap();
}

#[tokio::test]
async fn a_stone_pool_completes_proof_jobs_through_its_verifier() {
    let Setup { release: _r, ns } = setup("stark-stone", "").await;
    stone_pool(&ns, 1).await;
    wait_serving(&ns, "stone", 1).await;
    submit_stone_job(&ns, "cairo", cairo_run_files()).await;
    let job = wait_finished(&ns, "cairo").await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    // The verifier step was taken, by the verifier Deployment.
    let verification = status.verification.unwrap();
    assert!(verification.verified, "{verification:?}");
    assert!(
        verification
            .verifier
            .as_deref()
            .is_some_and(|v| v.starts_with("verifier/stone-verifier-")),
        "{verification:?}"
    );
    // The program output is read from the output segment, in address order.
    let outputs = status.result.unwrap().public_outputs.unwrap();
    assert_eq!(outputs["output"], json!(["0x2a", "0x90"]));
    assert_eq!(outputs["nSteps"], 1024);
}

#[tokio::test]
async fn a_stone_pod_that_answers_with_another_runs_proof_is_caught() {
    let Setup { release: _r, ns } = setup("stark-stone-liar", "").await;
    stone_pool(&ns, 0).await;
    let liar = start_faulty_pod(&ns, "stone", "wrong-statement").await;
    submit_stone_job(&ns, "first", cairo_run_files()).await;
    let first = wait_finished(&ns, "first").await;
    assert_eq!(first.status.unwrap().phase, Some(JobPhase::Succeeded));
    // Another run: its output differs, so its public input does.
    submit_stone_job(&ns, "second", cairo_run_files_with_output("0x2b")).await;
    wait_rejected_as_another_statement(&ns, "second").await;
    scale(&ns, "stone", 1).await;
    let job = wait_finished(&ns, "second").await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(!attempts_with(&job, AttemptOutcome::Succeeded).contains(&liar));
    let statement = status.verification.unwrap().statement.unwrap();
    assert_eq!(statement["output"], json!(["0x2b", "0x90"]));
    assert_eq!(
        status.result.unwrap().public_outputs.unwrap()["output"],
        statement["output"]
    );
}
