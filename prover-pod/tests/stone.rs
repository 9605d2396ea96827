//! The `stone` exec profile through the router, with StarkWare's real `cpu_air_prover` and
//! `cpu_air_verifier` (built from source by e2e/scripts/build-stone.sh; `make unit` sets
//! ZKFLEET_STONE) proving real Cairo runs of `cairo/programs/fib_output.json`, made by
//! cairo-vm through `zkfleet-cairo run` (ZKFLEET_CAIRO, from e2e/scripts/build-cairo.sh).
//! One stand-in stays, for fault injection: a prover that exits with an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use zkfleet_prover::backend::Backend;
use zkfleet_prover::backend::stone::{STONE_MAX_FRI_STEP, StoneBackend, fri_parameters};
use zkfleet_prover::exec;
use zkfleet_prover::server::{AppState, router};

/// Fault injection: stands in for a cpu_air_prover that fails on its input.
const FAILING_CPU_AIR_PROVER: &str = "#!/bin/sh\necho 'reading trace' >&2\necho 'Invalid trace: segment out of bounds' >&2\nexit 7\n";

/// Stone's build directory (bin/, lib/).
fn stone() -> PathBuf {
    PathBuf::from(std::env::var_os("ZKFLEET_STONE").expect(
        "ZKFLEET_STONE is not set: `make unit` sets it to the directory e2e/scripts/build-stone.sh prints",
    ))
}

/// Runs one of Stone's binaries through the loader and libraries built beside it, as the
/// image does.
fn stone_command(binary: &str) -> Vec<String> {
    let dir = stone();
    vec![
        dir.join("lib/ld-linux-x86-64.so.2").display().to_string(),
        "--library-path".into(),
        dir.join("lib").display().to_string(),
        dir.join("bin").join(binary).display().to_string(),
    ]
}

/// A router over a Stone backend whose prover is `prover` (a command without placeholders:
/// the profile appends Stone's flags, as for a ProverPool command).
fn stone_app_with(dir: &Path, prover: Vec<String>) -> Router {
    let template = exec::command(
        "stone",
        None,
        Some(&serde_json::to_string(&prover).unwrap()),
    )
    .unwrap()
    .unwrap();
    let mut verify_template = stone_command("cpu_air_verifier");
    verify_template.push("--in_file={proof}".into());
    let state = AppState::new("exec", "v1".into(), 1, Duration::from_secs(60), 1 << 20).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(StoneBackend {
        template,
        verify_template: Some(verify_template),
        work_root: Some(dir.to_path_buf()),
        timeout: Duration::from_secs(300),
    });
    state.set_params(Ok((backend, String::new())), 0.0);
    router(state)
}

/// A router over the real Stone.
fn stone_app(dir: &Path) -> Router {
    stone_app_with(dir, stone_command("cpu_air_prover"))
}

async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// A real Cairo run of `fib_output.json` on `n` (layout `small`), as a /v1/prove request.
fn cairo_run(dir: &Path, n: u64) -> Value {
    let cairo = std::env::var_os("ZKFLEET_CAIRO").expect(
        "ZKFLEET_CAIRO is not set: `make unit` sets it to the directory e2e/scripts/build-cairo.sh prints",
    );
    let run = dir.join(format!("run-{n}"));
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("input.json"), json!({"n": n}).to_string()).unwrap();
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairo/programs/fib_output.json");
    let out = std::process::Command::new(PathBuf::from(cairo).join("bin/zkfleet-cairo"))
        .arg("run")
        .arg("--program")
        .arg(program)
        .arg("--program-input")
        .arg(run.join("input.json"))
        .arg("--air-public-input")
        .arg(run.join("public.json"))
        .arg("--air-private-input")
        .arg(run.join("private.json"))
        .arg("--trace-file")
        .arg(run.join("trace.bin"))
        .arg("--memory-file")
        .arg(run.join("memory.bin"))
        .output()
        .expect("zkfleet-cairo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_json = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(run.join(name)).unwrap()).unwrap()
    };
    let b64 = |name: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(run.join(name)).unwrap())
    };
    json!({
        "backend": "exec",
        "stone": {
            "publicInput": read_json("public.json"),
            "privateInput": read_json("private.json"),
            "trace": b64("trace.bin"),
            "memory": b64("memory.bin"),
        }
    })
}

/// The programs' Fibonacci numbers (fib(0) = 1), hex as Stone's public memory writes them.
fn fib_hex(n: u64) -> String {
    let (mut a, mut b) = (1u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    format!("{b:#x}")
}

#[tokio::test]
async fn stone_proves_real_runs_with_fri_parameters_from_n_steps() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path());
    let mut seen = Vec::new();
    for n in [10u64, 150] {
        let request = cairo_run(dir.path(), n);
        let n_steps = request["stone"]["publicInput"]["n_steps"].as_u64().unwrap();
        let (s, v) = post(&app, "/v1/prove", request).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["backend"], "exec");
        // Stone's proof records the parameters it proved with: the pod's choice for n_steps.
        let fri = fri_parameters(n_steps, None, STONE_MAX_FRI_STEP).unwrap();
        assert_eq!(
            v["proof"]["proof_parameters"]["stark"]["fri"]["fri_step_list"],
            json!(fri.fri_step_list),
            "{}",
            v["proof"]["proof_parameters"]
        );
        assert_eq!(v["public_signals"], json!([]));
        // The program output is read from the output segment of the public memory.
        assert_eq!(
            v["public_outputs"]["output"],
            json!([format!("{n:#x}"), fib_hex(n)]),
            "{v}"
        );
        assert_eq!(v["public_outputs"]["nSteps"], n_steps);
        seen.push(n_steps);
    }
    assert_ne!(seen[0], seen[1], "two trace lengths: {seen:?}");
}

#[tokio::test]
async fn stone_proofs_are_checked_by_the_verifier_command_and_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path());
    let (s, proved) = post(&app, "/v1/prove", cairo_run(dir.path(), 10)).await;
    assert_eq!(s, StatusCode::OK, "{proved}");
    let verify =
        |proof: &Value, outputs: &Value| json!({"proof": proof, "public_outputs": outputs});
    let (s, v) = post(
        &app,
        "/v1/verify",
        verify(&proved["proof"], &proved["public_outputs"]),
    )
    .await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(true)), "{v}");

    // A tampered proof (the last digit of its proof changed): cpu_air_verifier says no, and
    // its exit status is the reason.
    let mut tampered = proved["proof"].clone();
    let hex = tampered["proof_hex"].as_str().unwrap().to_string();
    let last = if hex.ends_with('0') { "1" } else { "0" };
    tampered["proof_hex"] = json!(format!("{}{last}", &hex[..hex.len() - 1]));
    let (s, v) = post(
        &app,
        "/v1/verify",
        verify(&tampered, &proved["public_outputs"]),
    )
    .await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("the verify command exited with code"),
        "{v}"
    );

    // A valid proof reported with another program output is refused without running the
    // verifier: the output must be the proof's.
    let mut lie = proved["public_outputs"].clone();
    lie["output"] = json!(["0x1"]);
    let (s, v) = post(&app, "/v1/verify", verify(&proved["proof"], &lie)).await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("program output"),
        "{v}"
    );
}

#[tokio::test]
async fn stone_refuses_trace_lengths_without_a_fri_layout() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path());
    let run = cairo_run(dir.path(), 10);
    let with_steps = |n: Value| {
        let mut r = run.clone();
        r["stone"]["publicInput"]["n_steps"] = n;
        r
    };
    for n in [json!(1000), json!(256), json!(-4), json!("1024")] {
        let (s, v) = post(&app, "/v1/prove", with_steps(n.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{n}: {v}");
        assert_eq!(v["code"], "invalid_n_steps", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("power of two") && msg.contains("512"), "{msg}");
    }
    let mut missing = run.clone();
    missing["stone"]["publicInput"]
        .as_object_mut()
        .unwrap()
        .remove("n_steps");
    let (s, v) = post(&app, "/v1/prove", missing).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_n_steps")),
        "{v}"
    );

    let mut bad = run.clone();
    bad["stone"]["trace"] = json!("not base64!");
    let (s, v) = post(&app, "/v1/prove", bad).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_stone_input")),
        "{v}"
    );

    // Groth16 input to a Stone pod says what this pod takes; so does a missing file.
    let (s, v) = post(&app, "/v1/prove", json!({"inputs": {"a": "1"}})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong_input_kind")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("trace.bin"), "{v}");
    let (s, v) = post(
        &app,
        "/v1/prove",
        json!({"files": {"public_input.json": "e30=", "trace.bin": "AA=="}}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_input_file")),
        "{v}"
    );

    // And it still proves.
    let (s, v) = post(&app, "/v1/prove", run).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn stone_failure_reports_exit_code_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // Not in the work root (`dir`): a prover may read neither the other attempts' files nor
    // anything else there.
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("failing_cpu_air_prover.sh");
    std::fs::write(&script, FAILING_CPU_AIR_PROVER).unwrap();
    let app = stone_app_with(dir.path(), vec!["sh".into(), script.display().to_string()]);
    let (s, v) = post(&app, "/v1/prove", cairo_run(dir.path(), 10)).await;
    // A prover that exits with a status refused the input: a client error, not retried.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "input_rejected");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("code 7"), "{msg}");
    assert!(
        msg.ends_with("Invalid trace: segment out of bounds"),
        "{msg}"
    );
}
