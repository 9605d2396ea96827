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
use zkfleet_prover::backend::{Backend, StoneBackend};
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
printf '{"stand_in": true, "n_steps": %s, "fri_step_list": [%s]}' "$n_steps" "$steps" > "$out"
"#;

/// Stands in for a cpu_air_prover that fails on its input.
const FAILING_CPU_AIR_PROVER: &str = "#!/bin/sh\necho 'reading trace' >&2\necho 'Invalid trace: segment out of bounds' >&2\nexit 7\n";

fn stone_app(dir: &Path, script: &str) -> Router {
    let path = dir.join("cpu_air_prover.sh");
    std::fs::write(&path, script).unwrap();
    // Run through sh, as a ProverPool command without placeholders would be:
    // the profile appends Stone's flags.
    let template = exec::command("stone", None, Some(&format!("sh {}", path.display()))).unwrap();
    let state = AppState::new("exec", "v1".into(), 1, Duration::from_secs(60), 1 << 20).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(StoneBackend {
        template,
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
            "publicInput": {"layout": "recursive", "n_steps": n_steps, "memory_segments": {}},
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
    }
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

    // Groth16 input to a Stone pod, and verification, say what this pod does.
    let (s, v) = post(&app, "/v1/prove", json!({"inputs": {"a": "1"}})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong_input_kind")),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": {}, "public_signals": []}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert_eq!(v["code"], "verification_unsupported");

    // And it still proves.
    let (s, v) = post(&app, "/v1/prove", cairo_run(json!(1024))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn stone_failure_reports_exit_code_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let app = stone_app(dir.path(), FAILING_CPU_AIR_PROVER);
    let (s, v) = post(&app, "/v1/prove", cairo_run(json!(2048))).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["code"], "prover_failed");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("code 7"), "{msg}");
    assert!(
        msg.ends_with("Invalid trace: segment out of bounds"),
        "{msg}"
    );
}
