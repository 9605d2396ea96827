//! The HTTP API through the router: every bad input gets its own error code
//! and the server keeps serving afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use common::{circuit, snarkjs_verifies};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use zkfleet_prover::backend::{Backend, ExecGroth16Backend, Groth16Backend, Groth16Files};
use zkfleet_prover::groth16::preprocessed::sha256_hex;
use zkfleet_prover::server::{AppState, router};

const LIMIT: usize = 1 << 20;

fn files(name: &str) -> Groth16Files {
    let dir = circuit(name);
    Groth16Files {
        zkey: dir.join("circuit.zkey"),
        zkey_sha256: None,
        wasm: Some(dir.join("circuit.wasm")),
        wasm_sha256: None,
        r1cs: Some(dir.join("circuit.r1cs")),
        r1cs_sha256: None,
        cache_dir: None,
    }
}

fn state_with(files: &Groth16Files, slots: usize) -> Arc<AppState> {
    let state = AppState::new(
        "groth16-bn254",
        "v1".into(),
        slots,
        Duration::from_secs(600),
        LIMIT,
    )
    .unwrap();
    let loaded = Groth16Backend::load(files).map(|b| {
        let d = format!("sha256:{}", b.report.digest);
        (b as Arc<dyn Backend>, d)
    });
    state.set_params(loaded, 0.0);
    state
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Body,
    content_type: &str,
) -> (StatusCode, Value, Option<String>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v, retry)
}

async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = call(
        app,
        "POST",
        uri,
        Body::from(body.to_string()),
        "application/json",
    )
    .await;
    (s, v)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (s, v, _) = call(app, "GET", uri, Body::empty(), "application/json").await;
    (s, v)
}

fn inputs(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(circuit(name).join("input.json")).unwrap()).unwrap()
}

/// The server still proves after an error: returns the proof response.
async fn still_serving(app: &Router) -> Value {
    let (s, v) = post(app, "/v1/prove", json!({"inputs": inputs("mulchain")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn prove_and_verify_round_trip() {
    let app = router(state_with(&files("mulchain"), 2));
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let (s, info) = get(&app, "/v1/info").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["backend"], "groth16-bn254");
    assert_eq!(info["slots"], 2);
    let digest = sha256_hex(&std::fs::read(circuit("mulchain").join("circuit.zkey")).unwrap());
    assert_eq!(info["parameters"]["digest"], format!("sha256:{digest}"));

    // From circuit inputs, from a base64 .wtns, and from a raw .wtns body.
    let from_inputs = still_serving(&app).await;
    let wtns = std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wtns);
    let (s, from_wtns) = post(
        &app,
        "/v1/prove",
        json!({"witness": b64, "backend": "groth16-bn254"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{from_wtns}");
    let (s, from_raw, _) = call(
        &app,
        "POST",
        "/v1/prove",
        Body::from(wtns),
        "application/octet-stream",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{from_raw}");
    assert_eq!(from_inputs["public_signals"], from_wtns["public_signals"]);
    assert_eq!(from_inputs["public_signals"], from_raw["public_signals"]);

    // snarkjs accepts what the server returned.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("proof.json"),
        from_inputs["proof"].to_string(),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("public.json"),
        from_inputs["public_signals"].to_string(),
    )
    .unwrap();
    let (s, vk) = get(&app, "/v1/verification-key").await;
    assert_eq!(s, StatusCode::OK);
    std::fs::write(tmp.path().join("vk.json"), vk.to_string()).unwrap();
    assert!(snarkjs_verifies(
        &tmp.path().join("vk.json"),
        &tmp.path().join("public.json"),
        &tmp.path().join("proof.json")
    ));

    let body =
        json!({"proof": from_inputs["proof"], "public_signals": from_inputs["public_signals"]});
    let (s, v) = post(&app, "/v1/verify", body).await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(true)), "{v}");
    let mut wrong = from_inputs["public_signals"].clone();
    wrong[0] = json!("4");
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": from_inputs["proof"], "public_signals": wrong}),
    )
    .await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");

    let (s, m, _) = call(&app, "GET", "/metrics", Body::empty(), "text/plain").await;
    assert_eq!(s, StatusCode::OK);
    let m = m.as_str().unwrap().to_string();
    assert!(
        m.contains(r#"zkfleet_prover_proofs_total{backend="groth16-bn254",outcome="ok"} 3"#),
        "{m}"
    );
    assert!(m.contains("zkfleet_prover_proving_seconds_bucket"));
    assert!(m.contains("zkfleet_prover_free_slots 2"));
    assert!(m.contains("zkfleet_prover_build_info"));
}

#[tokio::test]
async fn bad_requests_get_their_own_codes() {
    let app = router(state_with(&files("mulchain"), 1));
    let wtns = std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap();
    let other_wtns = std::fs::read(circuit("merkle").join("witness.wtns")).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Of the right length and shape, with one internal value changed: it breaks a constraint.
    let mut unsatisfiable = wtns.clone();
    let last = unsatisfiable.len() - 32;
    unsatisfiable[last..].copy_from_slice(&[7; 32][..]);
    unsatisfiable[last + 31] = 0;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"inputs": {"a": 3}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_signal",
        ),
        (
            json!({"inputs": {"a": 3, "b": "0x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_signal_value",
        ),
        (
            json!({"inputs": {"a": 3, "b": "21888242871839275222246405745257275088548364400416034343698204186575808495617"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_signal_value",
        ),
        (
            json!({"inputs": {"a": 3, "b": 1.5}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_signal_value",
        ),
        (
            json!({"inputs": {"a": 3, "b": 5, "zz": 1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_signal",
        ),
        (
            json!({"inputs": {"a": 3, "b": [5, 6]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_signal_size",
        ),
        (
            json!({"inputs": [1, 2]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            json!({"witness": b64(&other_wtns)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_witness_length",
        ),
        (
            json!({"witness": b64(&unsatisfiable)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "input_rejected",
        ),
        (
            json!({"witness": b64(&wtns[..wtns.len() - 7])}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_witness",
        ),
        (
            json!({"witness": b64(b"garbage")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_witness",
        ),
        (
            json!({"witness": "***"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_witness",
        ),
        (
            json!({"inputs": {"a": 3, "b": 5}, "backend": "plonk"}),
            StatusCode::BAD_REQUEST,
            "unknown_backend",
        ),
        (
            json!({"inputs": {"a": 3, "b": 5}, "witness": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({"nothing": true}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = post(&app, "/v1/prove", body.clone()).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/prove",
        Body::from("{not json"),
        "application/json",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );

    // Oversized body: 413 whether or not the length is announced.
    let big = vec![b' '; LIMIT + 10];
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/prove",
        Body::from(big.clone()),
        "application/json",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")),
        "{v}"
    );
    let stream = Body::from_stream(futures_stream(big));
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/prove",
        stream,
        "application/octet-stream",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")),
        "{v}"
    );

    // Verify: malformed proofs and signals.
    let good = still_serving(&app).await;
    let mut off_curve = good["proof"].clone();
    off_curve["pi_a"][0] = json!("1");
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": off_curve, "public_signals": good["public_signals"]}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_proof")),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": good["proof"], "public_signals": ["1"]}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_public_count")),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": good["proof"], "public_signals": ["x", "1"]}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_public_signal")
        ),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": {"pi_a": []}, "public_signals": []}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json")),
        "{v}"
    );

    still_serving(&app).await;
    let (_, m, _) = call(&app, "GET", "/metrics", Body::empty(), "text/plain").await;
    assert!(
        m.as_str()
            .unwrap()
            .contains(r#"outcome="missing_signal"} 1"#)
    );
}

fn futures_stream(
    data: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(
        data.chunks(64 << 10)
            .map(|c| Ok(c.to_vec()))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn bad_parameter_files_leave_the_pod_up_and_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let zkey = std::fs::read(circuit("mulchain").join("circuit.zkey")).unwrap();
    let truncated = tmp.path().join("truncated.zkey");
    std::fs::write(&truncated, &zkey[..zkey.len() / 2]).unwrap();
    let foreign = tmp.path().join("foreign.zkey");
    std::fs::write(&foreign, b"{\"this\": \"is json\"}").unwrap();

    let mut cases = vec![];
    let mut f = files("mulchain");
    f.zkey = truncated;
    cases.push((f, "invalid_parameters"));
    let mut f = files("mulchain");
    f.zkey = foreign;
    cases.push((f, "invalid_parameters"));
    let mut f = files("mulchain");
    f.zkey_sha256 = Some("00".repeat(32));
    cases.push((f, "digest_mismatch"));
    let mut f = files("mulchain");
    f.wasm_sha256 = Some("11".repeat(32));
    cases.push((f, "digest_mismatch"));
    let mut f = files("mulchain");
    f.wasm = Some(circuit("merkle").join("circuit.wasm"));
    cases.push((f, "invalid_parameters"));
    let mut f = files("mulchain");
    f.zkey = tmp.path().join("absent.zkey");
    cases.push((f, "parameters_unavailable"));

    for (f, code) in cases {
        let app = router(state_with(&f, 1));
        let (s, v) = get(&app, "/readyz").await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some(code)),
            "{f:?}: {v}"
        );
        let (s, v) = post(&app, "/v1/prove", json!({"inputs": inputs("mulchain")})).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some(code)),
            "{v}"
        );
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/v1/info").await.1["parameters"]["error"]["code"],
            code
        );
    }

    // The right digest is accepted.
    let mut f = files("mulchain");
    f.zkey_sha256 = Some(sha256_hex(&zkey).to_uppercase());
    let app = router(state_with(&f, 1));
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_full_pod_answers_429_and_a_draining_pod_refuses_work() {
    let state = state_with(&files("mulchain"), 1);
    let app = router(state.clone());
    // Hold the only slot, as a running proof does.
    let permit = state.slots.clone().try_acquire_owned().unwrap();
    let (s, v, retry) = call(
        &app,
        "POST",
        "/v1/prove",
        Body::from(json!({"inputs": inputs("mulchain")}).to_string()),
        "application/json",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("busy")),
        "{v}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    drop(permit);
    still_serving(&app).await;

    state.start_draining();
    let (s, v) = get(&app, "/readyz").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("draining"))
    );
    let (s, v) = post(&app, "/v1/prove", json!({"inputs": inputs("mulchain")})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("draining"))
    );
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_proof_past_its_timeout_is_stopped_and_gives_its_slot_back() {
    // An exec prover that would run for five minutes; the request allows one second.
    let files = files("mulchain");
    let state = AppState::new("exec", "v1".into(), 1, Duration::from_secs(1), LIMIT).unwrap();
    let backend = ExecGroth16Backend {
        system: "snarkjs",
        inner: Groth16Backend::load(&files).unwrap(),
        zkey: files.zkey.clone(),
        template: vec!["sh".into(), "-c".into(), "sleep 300".into()],
        work_root: None,
        timeout: Duration::from_secs(600),
    };
    state.set_params(
        Ok((Arc::new(backend) as Arc<dyn Backend>, "sha256:x".into())),
        0.0,
    );
    let app = router(state.clone());

    let (s, v) = post(&app, "/v1/prove", json!({"inputs": inputs("mulchain")})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("timeout")),
        "{v}"
    );
    // The slot stays taken until the prover has really stopped, which cancellation makes
    // happen now rather than after the five minutes.
    for _ in 0..3000 {
        if state.slots.available_permits() == 1 {
            let (s, info) = get(&app, "/v1/info").await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(info["free_slots"], 1, "{info}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the timed-out proof still holds the pod's only slot");
}

/// The pool's verifier derives a job's public signals from the job's own input: a valid proof
/// of another input is refused with its claims untold, the proof of the job's own input passes
/// with the statement on the answer, and an input that gives no statement is the input's fault.
#[tokio::test]
async fn a_valid_proof_of_another_input_is_refused_against_the_jobs_own_statement() {
    let app = router(state_with(&files("mulchain"), 2));
    let proved = |inputs: Value| {
        let app = app.clone();
        async move {
            let (s, v) = post(&app, "/v1/prove", json!({"inputs": inputs})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        }
    };
    let own = proved(json!({"a": "3", "b": "5"})).await;
    let other = proved(json!({"a": "7", "b": "11"})).await;
    assert_ne!(own["public_signals"], other["public_signals"]);
    let job_input = json!({"type": "circuit-inputs", "inputs": {"a": "3", "b": "5"}});
    let ask = |proved: &Value, input: Value| json!({"proof": proved["proof"], "public_signals": proved["public_signals"], "input": input});

    // The other input's proof is valid for its own claims (a plain verify accepts it) ...
    let (s, v) = post(
        &app,
        "/v1/verify",
        json!({"proof": other["proof"], "public_signals": other["public_signals"]}),
    )
    .await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(true)), "{v}");
    // ... but not for this job.
    let (s, v) = post(&app, "/v1/verify", ask(&other, job_input.clone())).await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("another statement"), "{reason}");
    let theirs = other["public_signals"][0].as_str().unwrap();
    assert!(
        !reason.contains(theirs),
        "{reason} names the other proof's signals"
    );
    assert_eq!(v["statement"]["publicSignals"], own["public_signals"]);
    assert_eq!(v.get("input_rejected"), None, "{v}");
    // Claims copied from the job's statement do not make the other proof pass either.
    let forged = json!({"proof": other["proof"], "public_signals": own["public_signals"], "input": job_input});
    let (_, v) = post(&app, "/v1/verify", forged).await;
    assert_eq!(v["valid"], json!(false), "{v}");

    // The job's own proof passes, from circuit inputs and from its witness alike.
    let (s, v) = post(&app, "/v1/verify", ask(&own, job_input)).await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(v["statement"]["publicSignals"], own["public_signals"]);
    let wtns = std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap();
    let witness = json!({"type": "witness",
        "witnessBase64": base64::engine::general_purpose::STANDARD.encode(&wtns)});
    let (_, v) = post(&app, "/v1/verify", ask(&own, witness)).await;
    assert_eq!(v["valid"], json!(true), "{v}");

    // An input the circuit does not take gives no statement: refused as the input's fault.
    let bad = json!({"type": "circuit-inputs", "inputs": {"a": "3", "nope": "5"}});
    let (s, v) = post(&app, "/v1/verify", ask(&own, bad)).await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(false)), "{v}");
    assert_eq!(v["input_rejected"], json!(true), "{v}");
}

/// Every answer, an error or a route that does not exist included, names the pod that gave
/// it, so a client that cannot use an answer can say where it came from.
#[tokio::test]
async fn every_answer_names_the_pod_that_gave_it() {
    use zkfleet_contract::verify::ANSWERED_BY_HEADER;
    let state = state_with(&files("mulchain"), 1);
    let app = router(state.clone());
    let answered_by = |uri: &'static str, method: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let pod = resp
                .headers()
                .get(ANSWERED_BY_HEADER)
                .map(|v| v.to_str().unwrap().to_string());
            (resp.status(), pod)
        }
    };
    // Before the pod knows its name, nothing is claimed.
    assert_eq!(answered_by("/healthz", "GET").await, (StatusCode::OK, None));
    state.set_pod_name("pool-verifier-5d9c7-x2x4q");
    let pod = Some("pool-verifier-5d9c7-x2x4q".to_string());
    assert_eq!(
        answered_by("/healthz", "GET").await,
        (StatusCode::OK, pod.clone())
    );
    assert_eq!(
        answered_by("/v1/verify", "POST").await,
        (StatusCode::BAD_REQUEST, pod.clone())
    );
    assert_eq!(
        answered_by("/v1/no-such-route", "GET").await,
        (StatusCode::NOT_FOUND, pod)
    );
}
