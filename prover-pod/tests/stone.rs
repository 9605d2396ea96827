//! The `stone` exec profile through the router. Stone's `cpu_air_prover` is
//! not available here, so a shell script standing in for it checks the flags
//! and files the pod passes (the FRI equation of the parameter file
//! included) and writes a proof file.

use std::path::Path;
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
use zkfleet_prover::backend::stone::StoneBackend;
use zkfleet_prover::exec;
use zkfleet_prover::server::{AppState, router};

/// Stands in for Stone's cpu_air_prover: fails unless it gets every flag,
/// the parameter file satisfies log2(last_layer_degree_bound) +
/// Σ fri_step_list = log2(n_steps) + 4, and the private input points at the
/// trace and memory the request sent.
const STAND_IN_CPU_AIR_PROVER: &str = r#"#!/bin/sh
set -eu
out= priv= pub= conf= params=
for a in "$@"; do
  case "$a" in
    --out_file=*) out=${a#*=} ;;
    --private_input_file=*) priv=${a#*=} ;;
    --public_input_file=*) pub=${a#*=} ;;
    --prover_config_file=*) conf=${a#*=} ;;
    --parameter_file=*) params=${a#*=} ;;
    *) echo "unexpected argument $a" >&2; exit 64 ;;
  esac
done
for f in "$out" "$priv" "$pub" "$conf" "$params"; do
  [ -n "$f" ] || { echo "a flag is missing: $*" >&2; exit 65; }
done
flat() { tr -d ' \n' < "$1"; }
field() { flat "$1" | sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p"; }
log2() { n=$1; l=0; while [ "$n" -gt 1 ]; do n=$((n / 2)); l=$((l + 1)); done; echo $l; }
n_steps=$(field "$pub" n_steps)
bound=$(field "$params" last_layer_degree_bound)
steps=$(flat "$params" | sed -n 's/.*"fri_step_list":\[\([0-9,]*\)\].*/\1/p')
sum=0
for s in $(echo "$steps" | tr , ' '); do sum=$((sum + s)); done
[ $(( $(log2 "$bound") + sum )) -eq $(( $(log2 "$n_steps") + 4 )) ] || {
  echo "FRI equation fails: bound $bound steps $steps n_steps $n_steps" >&2; exit 66; }
trace=$(field "$priv" trace_path | tr -d '"')
memory=$(field "$priv" memory_path | tr -d '"')
[ "$(cat "$trace")" = "TRACE" ] && [ "$(cat "$memory")" = "MEMORY" ] || {
  echo "trace or memory not where the private input says" >&2; exit 67; }
grep -q store_full_lde "$conf" || { echo "no prover config" >&2; exit 68; }
printf '{"stand_in": true, "n_steps": %s, "fri_step_list": [%s], "public_input": %s}' "$n_steps" "$steps" "$(cat "$pub")" > "$out"
"#;

/// Stands in for Stone's cpu_air_verifier: checks its one flag and accepts the stand-in
/// prover's proofs, unless they were tampered with.
const STAND_IN_CPU_AIR_VERIFIER: &str = r#"#!/bin/sh
set -eu
case "${1:-}" in --in_file=*) in=${1#*=} ;; *) echo "usage: --in_file=PROOF" >&2; exit 64 ;; esac
[ $# -eq 1 ] || { echo "unexpected arguments: $*" >&2; exit 64; }
grep -q '"stand_in": *true' "$in" || { echo "Invalid proof" >&2; exit 1; }
grep -q tampered "$in" && { echo "Proof verification failed" >&2; exit 1; }
echo "Proof verified successfully."
"#;

/// Stands in for a cpu_air_prover that fails on its input.
const FAILING_CPU_AIR_PROVER: &str = "#!/bin/sh\necho 'reading trace' >&2\necho 'Invalid trace: segment out of bounds' >&2\nexit 7\n";

fn stone_app(dir: &Path, script: &str) -> Router {
    let path = dir.join("cpu_air_prover.sh");
    std::fs::write(&path, script).unwrap();
    let verifier = dir.join("cpu_air_verifier.sh");
    std::fs::write(&verifier, STAND_IN_CPU_AIR_VERIFIER).unwrap();
    // Run through sh, as a ProverPool command without placeholders would be:
    // the profile appends Stone's flags.
    let template = exec::command("stone", None, Some(&format!("sh {}", path.display())))
        .unwrap()
        .unwrap();
    let verify_template = vec![
        "sh".to_string(),
        verifier.display().to_string(),
        "--in_file={proof}".into(),
    ];
    let state = AppState::new("exec", "v1".into(), 1, Duration::from_secs(60), 1 << 20).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(StoneBackend {
        template,
        verify_template: Some(verify_template),
        work_root: Some(dir.to_path_buf()),
        timeout: Duration::from_secs(60),
    });
    state.set_params(Ok((backend, String::new())), 0.0);
    router(state)
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

fn cairo_run(n_steps: Value) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "backend": "exec",
        "stone": {
            "publicInput": {
                "layout": "recursive", "n_steps": n_steps,
                "memory_segments": {"output": {"begin_addr": 10, "stop_ptr": 12}},
                "public_memory": [
                    {"address": 1, "value": "0x7", "page": 0},
                    {"address": 11, "value": "0x37", "page": 0},
                    {"address": 10, "value": "0xa", "page": 0},
                ],
            },
            "privateInput": {"trace_path": "/elsewhere/trace.bin", "memory_path": "/elsewhere/memory.bin", "pedersen": []},
            "trace": b64("TRACE"),
            "memory": b64("MEMORY"),
        }
    })
}

#[tokio::test]
async fn stone_proves_with_fri_parameters_from_n_steps() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path(), STAND_IN_CPU_AIR_PROVER);
    for (n, steps) in [
        (512, json!([0, 4, 3])),
        (1 << 20, json!([0, 4, 4, 4, 4, 2])),
    ] {
        let (s, v) = post(&app, "/v1/prove", cairo_run(json!(n))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["backend"], "exec");
        assert_eq!(v["proof"]["stand_in"], true, "{v}");
        assert_eq!(v["proof"]["n_steps"], n);
        assert_eq!(v["proof"]["fri_step_list"], steps);
        assert_eq!(v["public_signals"], json!([]));
        // The program output is read from the output segment of the public memory, in
        // address order.
        assert_eq!(v["public_outputs"]["output"], json!(["0xa", "0x37"]), "{v}");
        assert_eq!(v["public_outputs"]["nSteps"], n);
    }
}

#[tokio::test]
async fn stone_proofs_are_checked_by_the_verifier_command_and_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path(), STAND_IN_CPU_AIR_PROVER);
    let (s, proved) = post(&app, "/v1/prove", cairo_run(json!(1024))).await;
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

    // A tampered proof: the verifier command says no, and its words are the reason.
    let mut tampered = proved["proof"].clone();
    tampered["tampered"] = json!(true);
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
            .contains("Proof verification failed"),
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
    let app = stone_app(dir.path(), STAND_IN_CPU_AIR_PROVER);
    for n in [json!(1000), json!(256), json!(-4), json!("1024")] {
        let (s, v) = post(&app, "/v1/prove", cairo_run(n.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{n}: {v}");
        assert_eq!(v["code"], "invalid_n_steps", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("power of two") && msg.contains("512"), "{msg}");
    }
    let mut missing = cairo_run(json!(1024));
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

    let mut bad = cairo_run(json!(1024));
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
    let (s, v) = post(&app, "/v1/prove", cairo_run(json!(1024))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn stone_failure_reports_exit_code_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path(), FAILING_CPU_AIR_PROVER);
    let (s, v) = post(&app, "/v1/prove", cairo_run(json!(2048))).await;
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
