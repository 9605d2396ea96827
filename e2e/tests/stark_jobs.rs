//! STARK and VM provers in the fleet, end to end on the real cluster, each the real third-party
//! prover: Stone (built from source by `e2e/scripts/build-stone.sh`), Stwo (through the Cairo
//! tools of `cairo/`, built by `e2e/scripts/build-cairo.sh`) and Miden VM (`miden-vm`, built
//! from crates.io by `e2e/scripts/build-miden.sh`), each packed with the prover into its own
//! image. Pools take ProofJobs applied with `kubectl apply`, the API or `kubectl zkfleet
//! submit`; every proof is verified by the pool's verifier Deployment before the job succeeds,
//! and the test checks each proof again with its own copy of that system's verifier against
//! the statement it derives itself (the program hash, the run, the output it computes).
//! Stone jobs are real Cairo runs of `cairo/programs/fib_output.json` made by cairo-vm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob, ProverPool, Verification};
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::helm::{Release, repo_dir};
use zkfleet_e2e::kubectl::{kubectl_apply, kubectl_zkfleet};
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

/// Waits until the pool's verifier Deployment has its one replica ready.
async fn wait_verifier_ready(ns: &TestNamespace, pool: &str) {
    ns.wait_for::<k8s_openapi::api::apps::v1::Deployment>(
        &format!("{pool}-verifier"),
        "the verifier ready",
        2 * MINUTE,
        |d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1),
    )
    .await
    .unwrap();
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
    wait_verifier_ready(&ns, "miden").await;

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
    // A pod wearing the verifier's labels that calls every proof valid: the operator never
    // asks it (it asks the verifier Deployment's own pods), so the tampered proof is refused.
    start_impostor_verifier(&ns, "miden").await;
    kubectl_apply(&ns, &miden_job_yaml("first", &fib_inputs(20)));
    assert_tampering_pod_caught(&ns, "miden", "first", &faulty, "miden-vm verify").await;
}

/// A Ready pod with every label of `pool`'s verifier pods, answering every request with a
/// verdict of "valid" in the verifier's protocol.
async fn start_impostor_verifier(ns: &TestNamespace, pool: &str) {
    let labels = [
        ("app.kubernetes.io/name", "zkfleet-prover"),
        ("app.kubernetes.io/instance", pool),
        ("app.kubernetes.io/component", "verifier"),
        ("app.kubernetes.io/managed-by", "zkfleet-operator"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let answer = json!({"valid": true, "verifier_ms": 1.0}).to_string();
    start_impostor_pod(
        ns,
        &format!("{pool}-verifier-impostor"),
        labels,
        Default::default(),
        &answer,
    )
    .await;
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

/// zkfleet's Cairo tool `name` (`zkfleet-cairo`, `zkfleet-stwo-prove`), as
/// e2e/scripts/build-cairo.sh builds it for the Stwo image.
fn cairo_tool(name: &str) -> PathBuf {
    let Some(dir) = std::env::var_os("ZKFLEET_CAIRO") else {
        panic!(
            "ZKFLEET_CAIRO is not set: `make e2e` sets it to the directory e2e/scripts/build-cairo.sh prints"
        );
    };
    PathBuf::from(dir).join("bin").join(name)
}

/// Runs Stone's `cpu_air_verifier`, as e2e/scripts/build-stone.sh built it for the Stone image,
/// through the loader and libraries the image carries.
fn stone_verifier() -> Command {
    let Some(dir) = std::env::var_os("ZKFLEET_STONE") else {
        panic!(
            "ZKFLEET_STONE is not set: `make e2e` sets it to the directory e2e/scripts/build-stone.sh prints"
        );
    };
    let dir = PathBuf::from(dir);
    let mut command = Command::new(dir.join("lib/ld-linux-x86-64.so.2"));
    command
        .arg("--library-path")
        .arg(dir.join("lib"))
        .arg(dir.join("bin/cpu_air_verifier"));
    command
}

/// A compiled Cairo program of `cairo/programs/` (its source beside it).
fn cairo_program(name: &str) -> PathBuf {
    repo_dir().join("cairo/programs").join(name)
}

/// The n-th number of the programs' Fibonacci sequence (1, 1, 2, 3, ...; fib(0) = 1), computed
/// here: the test trusts no output the fleet reports.
fn fib(n: u64) -> u128 {
    let (mut a, mut b) = (1u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    b
}

/// Creates a pool named after its `profile` (`stone`, `stwo`) of `replicas` pods of `image`,
/// running `command`, with the compiled Cairo `program` of `cairo/programs/` pinned in its
/// parameters (from a ConfigMap) and `spec` merged over the rest of its spec.
async fn cairo_pool(
    ns: &TestNamespace,
    profile: &str,
    replicas: i32,
    command: &str,
    program: &str,
    spec: Value,
) {
    let text = std::fs::read_to_string(cairo_program(program)).unwrap();
    let sha256 = hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    let config_map = format!("{profile}-program");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_map},
        "data": {program: text},
    }))
    .unwrap();
    ns.api::<k8s_openapi::api::core::v1::ConfigMap>()
        .create(&Default::default(), &cm)
        .await
        .unwrap();
    let mut pool = json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
        "metadata": {"name": profile},
        "spec": {
            "replicas": replicas,
            "image": image(&format!("zkfleet-prover-{profile}")),
            "backend": {"type": "exec", "exec": {"profile": profile, "command": [command]}},
            "parameters": {
                "version": "fib-v1",
                "source": {"configMap": {"name": config_map}},
                "files": [{"name": program, "sha256": sha256}],
            },
        },
    });
    for (key, value) in spec.as_object().unwrap() {
        pool["spec"][key] = value.clone();
    }
    let pool: ProverPool = serde_json::from_value(pool).unwrap();
    ns.api().create(&Default::default(), &pool).await.unwrap();
}

/// A real Cairo run of `fib_output.json` on `n`, for Stone: the four files `cairo-run
/// --proof_mode` writes, made by `zkfleet-cairo run` (cairo-vm), in a directory of their own
/// under the names the pool takes.
fn stone_run(dir: &Path, n: u64) -> PathBuf {
    let run = dir.join(format!("run-{n}"));
    std::fs::create_dir_all(&run).unwrap();
    let input = dir.join(format!("input-{n}.json"));
    std::fs::write(&input, json!({"n": n}).to_string()).unwrap();
    let out = Command::new(cairo_tool("zkfleet-cairo"))
        .arg("run")
        .arg("--program")
        .arg(cairo_program("fib_output.json"))
        .arg("--program-input")
        .arg(&input)
        .args(["--layout", "small"])
        .arg("--air-public-input")
        .arg(run.join("public_input.json"))
        .arg("--air-private-input")
        .arg(run.join("private_input.json"))
        .arg("--trace-file")
        .arg(run.join("trace.bin"))
        .arg("--memory-file")
        .arg(run.join("memory.bin"))
        .output()
        .expect("zkfleet-cairo runs");
    assert!(
        out.status.success(),
        "zkfleet-cairo run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

/// The files of `run` as a job's `input.files`: JSON inline as JSON, the rest as base64.
fn input_files(run: &Path) -> Value {
    let mut files: Vec<Value> = std::fs::read_dir(run)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let inline = if name.ends_with(".json") {
                json!({"json": String::from_utf8(bytes).unwrap()})
            } else {
                json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
            };
            json!({"name": name, "inline": inline})
        })
        .collect();
    files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(files)
}

/// The Stone pool of `replicas` pods: the image with the real `cpu_air_prover` and
/// `cpu_air_verifier`, with the profile's defaults (the pod adds Stone's flags; the verifier
/// runs `cpu_air_verifier --in_file={proof}`). Stone reads no parameter file of ours; the
/// pool still pins the compiled program its jobs run, checked by every pod.
async fn stone_pool(ns: &TestNamespace, replicas: i32) {
    let spec = json!({"jobDefaults": {"timeoutSeconds": 180}});
    cairo_pool(
        ns,
        "stone",
        replicas,
        "cpu_air_prover",
        "fib_output.json",
        spec,
    )
    .await;
}

/// Submits a job of `pool` whose input is `files`.
async fn submit_files_job(ns: &TestNamespace, pool: &str, name: &str, files: Value) {
    let job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": pool}, "input": {"files": files}},
    }))
    .unwrap();
    ns.api().create(&Default::default(), &job).await.unwrap();
}

/// Submits a job of `pool` with the files of `run` (with `kubectl zkfleet submit --input-dir`
/// when `by_plugin`, else through the API) and waits for it: it must succeed, verified by
/// the pool's verifier Deployment, not by the pod that proved. The job, the time from submit
/// to Succeeded and the verification.
async fn prove_verified(
    ns: &TestNamespace,
    pool: &str,
    name: &str,
    run: &Path,
    by_plugin: bool,
) -> (ProofJob, std::time::Duration, Verification) {
    // The plugin is built on its first use in a test run: not part of the time measured.
    if by_plugin {
        zkfleet_e2e::kubectl::plugin();
    }
    let applied = Instant::now();
    if by_plugin {
        let args = [
            "submit",
            "--pool",
            pool,
            "--input-dir",
            run.to_str().unwrap(),
            "--name",
            name,
        ];
        let submitted = kubectl_zkfleet(ns, &args).await;
        assert_eq!(submitted.code, Some(0), "{submitted:#?}");
    } else {
        submit_files_job(ns, pool, name, input_files(run)).await;
    }
    let job = wait_job_finished(ns, name, 5 * MINUTE).await;
    let end_to_end = applied.elapsed();
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    let verification = status.verification.clone().unwrap();
    assert!(
        verification.verified && !verification.skipped,
        "{verification:?}"
    );
    let verifier = verification.verifier.clone().unwrap();
    assert!(
        verifier.starts_with(&format!("verifier/{pool}-verifier-")),
        "{verifier}"
    );
    let provers = attempts_with(&job, AttemptOutcome::Succeeded);
    assert!(!provers.iter().any(|p| verifier.ends_with(p.as_str())));
    (job, end_to_end, verification)
}

/// Whether the test's own `cpu_air_verifier` accepts the Stone proof `proof`.
fn stone_verify(dir: &Path, proof: &Value) -> bool {
    let file = dir.join("stone-proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    stone_verifier()
        .arg(format!("--in_file={}", file.display()))
        .output()
        .expect("cpu_air_verifier runs")
        .status
        .success()
}

/// A Stone proof with the last digit of its proof changed, as a tampering prover would.
fn tampered_stone_proof(proof: &Value) -> Value {
    let mut tampered = proof.clone();
    let hex = proof["proof_hex"]
        .as_str()
        .expect("a Stone proof has proof_hex");
    let last = if hex.ends_with('0') { "1" } else { "0" };
    tampered["proof_hex"] = json!(format!("{}{last}", &hex[..hex.len() - 1]));
    tampered
}

#[tokio::test]
async fn stone_jobs_are_proved_by_cpu_air_prover_and_checked_by_cpu_air_verifier() {
    let Setup { release, ns } = setup("stark-stone", "").await;
    stone_pool(&ns, 1).await;
    wait_serving(&ns, "stone", 1).await;
    // The verifier too, so the time from apply to Succeeded is the fleet's alone.
    wait_verifier_ready(&ns, "stone").await;
    let dir = tempfile::tempdir().unwrap();
    let mut steps = Vec::new();
    for n in [10u64, 150] {
        let run = stone_run(dir.path(), n);
        let name = format!("fib-{n}");
        // One job as a user submits a Cairo run's directory, the other through the API.
        let (job, end_to_end, verification) =
            prove_verified(&ns, "stone", &name, &run, n == 10).await;
        let status = job.status.clone().unwrap();
        let verifier = verification.verifier.clone().unwrap();

        // The output is the run's, [n, fib(n)], read from the public memory.
        let outputs = Value::Object(status.result.clone().unwrap().public_outputs.unwrap());
        assert_eq!(
            outputs["output"],
            json!([format!("{n:#x}"), format!("{:#x}", fib(n))]),
            "{outputs}"
        );
        steps.push(outputs["nSteps"].as_u64().unwrap());

        // The test's own cpu_air_verifier accepts the proof, which is of this run's public
        // input, and refuses it tampered.
        let proof = proof_of(&ns, &release, &job).await;
        let public_input: Value =
            serde_json::from_slice(&std::fs::read(run.join("public_input.json")).unwrap()).unwrap();
        assert_eq!(proof["public_input"], public_input);
        assert!(
            stone_verify(dir.path(), &proof),
            "cpu_air_verifier refused {name}"
        );
        assert!(!stone_verify(dir.path(), &tampered_stone_proof(&proof)));
        eprintln!(
            "stone {name}: {} steps; kubectl apply to Succeeded {} ms; proving on the pod {} ms; verified in {} ms by {verifier}",
            outputs["nSteps"],
            end_to_end.as_millis(),
            status.proving_millis.unwrap_or(-1),
            verification.verifier_millis.unwrap_or(-1),
        );
    }
    assert_ne!(steps[0], steps[1], "two trace lengths: {steps:?}");
}

/// Waits until `job` of `pool` has a proof refused by the verifier and then, once an honest pod
/// joined, succeeds elsewhere; `faulty` is flagged for it, and the refusal names `verifier`.
async fn assert_tampering_pod_caught(
    ns: &TestNamespace,
    pool: &str,
    job: &str,
    faulty: &str,
    verifier: &str,
) {
    // Only the faulty pod proves: the verifier rejects its proof, but one rejection cannot
    // tell the pod from the input, so nobody is flagged yet.
    ns.wait_for::<ProofJob>(job, "its first proof rejected", 5 * MINUTE, |j| {
        !attempts_with(j, AttemptOutcome::VerificationFailed).is_empty()
    })
    .await
    .unwrap();
    let status = ns
        .api::<ProverPool>()
        .get(pool)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.flagged_pods, []);

    // An honest pod joins: the job succeeds there, never on the faulty pod.
    scale(ns, pool, 1).await;
    let done = wait_job_finished(ns, job, 5 * MINUTE).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(!attempts_with(&done, AttemptOutcome::Succeeded).contains(&faulty.to_string()));
    let rejected = attempts_with(&done, AttemptOutcome::VerificationFailed);
    assert!(!rejected.is_empty(), "{status:#?}");
    assert!(rejected.iter().all(|p| p == faulty));
    let message = status
        .attempts
        .iter()
        .find(|a| a.outcome == Some(AttemptOutcome::VerificationFailed))
        .and_then(|a| a.message.clone())
        .unwrap_or_default();
    assert!(message.contains(verifier), "{message}");
    // The honest pod proved the job the faulty one failed: that isolates it.
    let pool = ns
        .wait_for::<ProverPool>(pool, "the faulty pod flagged", 3 * MINUTE, |p| {
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
async fn a_pod_that_tampers_with_stone_proofs_is_refused_by_cpu_air_verifier_and_flagged() {
    let Setup { release: _r, ns } = setup("stark-stone-corrupt", "").await;
    stone_pool(&ns, 0).await;
    let faulty = start_faulty_pod(&ns, "stone", "corrupt-proofs").await;
    let dir = tempfile::tempdir().unwrap();
    submit_files_job(&ns, "stone", "fib", input_files(&stone_run(dir.path(), 20))).await;
    assert_tampering_pod_caught(&ns, "stone", "fib", &faulty, "exited with code").await;
}

#[tokio::test]
async fn a_stone_pod_that_answers_with_another_runs_proof_is_caught() {
    let Setup { release: _r, ns } = setup("stark-stone-liar", "").await;
    stone_pool(&ns, 0).await;
    let liar = start_faulty_pod(&ns, "stone", "wrong-statement").await;
    let dir = tempfile::tempdir().unwrap();
    submit_files_job(
        &ns,
        "stone",
        "first",
        input_files(&stone_run(dir.path(), 10)),
    )
    .await;
    let first = wait_finished(&ns, "first").await;
    assert_eq!(first.status.unwrap().phase, Some(JobPhase::Succeeded));
    // Another run: its output differs, so its public input does.
    submit_files_job(
        &ns,
        "stone",
        "second",
        input_files(&stone_run(dir.path(), 11)),
    )
    .await;
    wait_rejected_as_another_statement(&ns, "second").await;
    scale(&ns, "stone", 1).await;
    let job = wait_finished(&ns, "second").await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:#?}");
    assert!(!attempts_with(&job, AttemptOutcome::Succeeded).contains(&liar));
    let statement = status.verification.unwrap().statement.unwrap();
    assert_eq!(
        statement["output"],
        json!(["0xb", format!("{:#x}", fib(11))])
    );
    assert_eq!(
        status.result.unwrap().public_outputs.unwrap()["output"],
        statement["output"]
    );
}

/// The Stwo pool of `replicas` pods: the image with `zkfleet-stwo-prove` and
/// `zkfleet-cairo`, proving `fib_stwo.json`, its memory capped at what a proof of these runs
/// takes with the `canonical_small` preprocessed trace (see README.md, "Stwo memory").
async fn stwo_pool(ns: &TestNamespace, replicas: i32) {
    let spec = json!({
        // The limit is what a proof of these runs needs (6.3 GB peak); the request stays low
        // so the two Stwo tests' three pods fit the one test node beside the other tests (a
        // production pool requests what it uses: manifests/samples/pool-stwo.yaml).
        "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "8Gi"}},
        "jobDefaults": {"timeoutSeconds": 300},
    });
    cairo_pool(
        ns,
        "stwo",
        replicas,
        "zkfleet-stwo-prove",
        "fib_stwo.json",
        spec,
    )
    .await;
}

/// What the test's own `zkfleet-cairo stwo-verify` says of a Stwo `proof` of the pool's
/// program on `input`: the statement it printed when the proof holds.
fn stwo_verify(dir: &Path, proof: &Value, input: &Value) -> Option<Value> {
    let (proof_file, input_file) = (dir.join("stwo.proof"), dir.join("stwo-input.json"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(proof["base64"].as_str().expect("a binary proof"))
        .unwrap();
    std::fs::write(&proof_file, bytes).unwrap();
    std::fs::write(&input_file, input.to_string()).unwrap();
    let out = Command::new(cairo_tool("zkfleet-cairo"))
        .arg("stwo-verify")
        .arg("--program")
        .arg(cairo_program("fib_stwo.json"))
        .arg("--program-input")
        .arg(&input_file)
        .arg("--proof")
        .arg(&proof_file)
        .output()
        .expect("zkfleet-cairo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap())
}

#[tokio::test]
async fn stwo_jobs_of_two_inputs_are_proved_and_checked_by_the_stwo_verifier() {
    let Setup { release, ns } = setup("stark-stwo", "").await;
    stwo_pool(&ns, 1).await;
    wait_serving(&ns, "stwo", 1).await;
    wait_verifier_ready(&ns, "stwo").await;
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    for n in [10u64, 40] {
        let name = format!("fib-{n}");
        let input = json!({"n": n});
        let run = dir.path().join(&name);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("program_input.json"), input.to_string()).unwrap();
        let (job, end_to_end, verification) =
            prove_verified(&ns, "stwo", &name, &run, n == 10).await;
        let status = job.status.clone().unwrap();
        let verifier = verification.verifier.clone().unwrap();

        let outputs = Value::Object(status.result.clone().unwrap().public_outputs.unwrap());
        assert_eq!(
            outputs["output"],
            json!([n.to_string(), fib(n).to_string()]),
            "{outputs}"
        );
        // The test's own verifier accepts the proof for this input, with the same statement,
        // and refuses it for another input.
        let proof = proof_of(&ns, &release, &job).await;
        let statement =
            stwo_verify(dir.path(), &proof, &input).expect("the test's verifier accepts");
        assert_eq!(statement, outputs);
        assert!(stwo_verify(dir.path(), &proof, &json!({"n": n + 1})).is_none());
        hashes.push(statement["programHash"].clone());
        eprintln!(
            "stwo {name}: kubectl apply to Succeeded {} ms; proving on the pod {} ms; verified in {} ms by {verifier}",
            end_to_end.as_millis(),
            status.proving_millis.unwrap_or(-1),
            verification.verifier_millis.unwrap_or(-1),
        );
    }
    // One program: the same hash for both inputs.
    assert_eq!(hashes[0], hashes[1]);
}

#[tokio::test]
async fn a_pod_that_tampers_with_stwo_proofs_is_refused_by_the_stwo_verifier_and_flagged() {
    let Setup { release: _r, ns } = setup("stark-stwo-corrupt", "").await;
    stwo_pool(&ns, 0).await;
    let faulty = start_faulty_pod(&ns, "stwo", "corrupt-proofs").await;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("fib");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("program_input.json"), json!({"n": 20}).to_string()).unwrap();
    submit_files_job(&ns, "stwo", "fib", input_files(&run)).await;
    assert_tampering_pod_caught(&ns, "stwo", "fib", &faulty, "stwo-verify").await;
}
