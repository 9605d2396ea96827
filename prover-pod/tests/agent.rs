//! Agent mode against a stand-in dispatcher on loopback that speaks the lease protocol
//! (`zkfleet_prover::lease`), with the real Groth16 backend proving the fixture circuits:
//! leased jobs are proved and reported, reports are retried until acknowledged, revoked
//! leases free their slot without a report and stop the proof they were making, a job past
//! its timeout stops its proof and reports it, draining finishes what is held and leases
//! nothing more, and the bearer token comes from its file.

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use zkfleet_prover::agent::Agent;
use zkfleet_prover::backend::{
    Backend, BackendError, Groth16Backend, Groth16Files, Judged, ProofInput, ProofOutput, Verdict,
};
use zkfleet_prover::cancel::Cancel;
use zkfleet_prover::config::{AgentConfig, Faults};
use zkfleet_prover::groth16::json::ProofJson;
use zkfleet_prover::lease::{
    COMPLETE_PATH, Caller, CompleteRequest, CompleteResponse, HEARTBEAT_PATH, HeartbeatRequest,
    HeartbeatResponse, InputFormat, JobInput, LEASE_PATH, LeaseRef, LeaseRequest, LeaseResponse,
    LeasedJob, Outcome,
};
use zkfleet_prover::params::Digest;
use zkfleet_prover::server::AppState;

/// The mulchain backend, loaded once for every test.
fn backend() -> (Arc<dyn Backend>, String) {
    static BACKEND: OnceLock<(Arc<dyn Backend>, String)> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let dir = common::circuit("mulchain");
            let b = Groth16Backend::load(&Groth16Files {
                zkey: dir.join("circuit.zkey"),
                zkey_sha256: None,
                wasm: Some(dir.join("circuit.wasm")),
                wasm_sha256: None,
                r1cs: None,
                r1cs_sha256: None,
                cache_dir: None,
            })
            .unwrap();
            let digest = format!("sha256:{}", b.report.digest);
            (b as Arc<dyn Backend>, digest)
        })
        .clone()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::circuit("mulchain").join(name)).unwrap()
}

fn circuit_inputs() -> Value {
    serde_json::from_slice(&fixture("input.json")).unwrap()
}

fn caller() -> Caller {
    Caller {
        namespace: "team".into(),
        pool: "cpu".into(),
        pod: "cpu-abc".into(),
    }
}

fn job(uid: &str, input: JobInput) -> LeasedJob {
    LeasedJob {
        lease: LeaseRef {
            uid: uid.into(),
            attempt: 1,
        },
        job: format!("team/{uid}"),
        lease_seconds: 30,
        timeout_seconds: 300,
        input,
        traceparent: None,
    }
}

/// What the stand-in dispatcher saw and how it answers.
#[derive(Default)]
struct Dispatcher {
    /// The only token it accepts.
    token: Mutex<String>,
    queue: Mutex<VecDeque<LeasedJob>>,
    queued: Notify,
    /// Accepted lease requests with their Authorization header.
    leases: Mutex<Vec<(String, LeaseRequest)>>,
    unauthorized: AtomicUsize,
    heartbeats: Mutex<Vec<HeartbeatRequest>>,
    /// Leases to report as revoked on every heartbeat that names them.
    revoked: Mutex<Vec<LeaseRef>>,
    /// Every result upload, answered or not.
    complete_attempts: AtomicUsize,
    /// Turn away this many uploads before taking one: alternately with a bare 404, as a proxy
    /// or an unprogrammed Service address would answer, and with the dispatcher's 503.
    fail_completes: AtomicUsize,
    completes: Mutex<Vec<CompleteRequest>>,
    /// Input files under `/files/<name>`; held back until `release` turns true.
    files: Mutex<HashMap<String, Vec<u8>>>,
    file_requests: AtomicUsize,
    release: Option<watch::Sender<bool>>,
}

impl Dispatcher {
    /// The Authorization header when it carries the token; counts the refusals.
    fn authorized(&self, headers: &HeaderMap) -> Option<String> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if auth == format!("Bearer {}", self.token.lock().unwrap()) {
            Some(auth)
        } else {
            self.unauthorized.fetch_add(1, Ordering::SeqCst);
            None
        }
    }

    fn take_jobs(&self, n: u32) -> Vec<LeasedJob> {
        let mut q = self.queue.lock().unwrap();
        let n = (n as usize).min(q.len());
        q.drain(..n).collect()
    }

    fn push(&self, job: LeasedJob) {
        self.queue.lock().unwrap().push_back(job);
        self.queued.notify_waiters();
    }

    fn completes(&self) -> Vec<CompleteRequest> {
        self.completes.lock().unwrap().clone()
    }

    fn lease_count(&self) -> usize {
        self.leases.lock().unwrap().len()
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"code": "unauthorized", "message": "wrong token"})),
    )
        .into_response()
}

async fn lease(
    State(d): State<Arc<Dispatcher>>,
    headers: HeaderMap,
    Json(req): Json<LeaseRequest>,
) -> Response {
    let Some(auth) = d.authorized(&headers) else {
        return unauthorized();
    };
    let (n, wait) = (req.free_slots, req.wait_seconds);
    d.leases.lock().unwrap().push((auth, req));
    // Long-poll: hold the request until a job is queued or the wait is over.
    let jobs = tokio::time::timeout(Duration::from_secs(wait.into()), async {
        loop {
            let queued = d.queued.notified();
            let jobs = d.take_jobs(n);
            if !jobs.is_empty() {
                return jobs;
            }
            queued.await;
        }
    })
    .await
    .unwrap_or_default();
    Json(LeaseResponse { jobs }).into_response()
}

async fn heartbeat(
    State(d): State<Arc<Dispatcher>>,
    headers: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
) -> Response {
    if d.authorized(&headers).is_none() {
        return unauthorized();
    }
    let revoked = d
        .revoked
        .lock()
        .unwrap()
        .iter()
        .filter(|r| req.leases.contains(r))
        .cloned()
        .collect();
    d.heartbeats.lock().unwrap().push(req);
    Json(HeartbeatResponse { revoked }).into_response()
}

async fn complete(
    State(d): State<Arc<Dispatcher>>,
    headers: HeaderMap,
    Json(req): Json<CompleteRequest>,
) -> Response {
    if d.authorized(&headers).is_none() {
        return unauthorized();
    }
    d.complete_attempts.fetch_add(1, Ordering::SeqCst);
    let failures_left = d
        .fail_completes
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    match failures_left {
        Ok(n) if n % 2 == 0 => {
            return (StatusCode::NOT_FOUND, "404 page not found").into_response();
        }
        Ok(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"code": "no_leader", "message": "try again"})),
            )
                .into_response();
        }
        Err(_) => {}
    }
    d.completes.lock().unwrap().push(req);
    Json(CompleteResponse {
        phase: "Succeeded".into(),
        duplicate: false,
    })
    .into_response()
}

async fn file(State(d): State<Arc<Dispatcher>>, UrlPath(name): UrlPath<String>) -> Response {
    d.file_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(release) = &d.release {
        let mut rx = release.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
    let bytes = d.files.lock().unwrap().get(&name).cloned();
    match bytes {
        Some(b) => (StatusCode::OK, b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `d` on 127.0.0.1; returns its base URL.
async fn serve(d: Arc<Dispatcher>) -> String {
    let app = axum::Router::new()
        .route(LEASE_PATH, post(lease))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .route(COMPLETE_PATH, post(complete))
        .route("/files/{name}", get(file))
        .with_state(d);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A pod with the mulchain parameters loaded and its agent running against a dispatcher.
struct Pod {
    state: Arc<AppState>,
    agent: tokio::task::JoinHandle<()>,
    token_file: tempfile::NamedTempFile,
}

/// A proof that never ends by itself: it runs until it is cancelled, as a long proof on a
/// real prover would, and records that it saw the cancellation.
#[derive(Default)]
struct EndlessProof {
    started: AtomicBool,
    cancelled: AtomicBool,
}

impl Backend for EndlessProof {
    fn system(&self) -> &'static str {
        "groth16-bn254"
    }

    fn prove(&self, _: ProofInput, cancel: &Cancel) -> Result<ProofOutput, BackendError> {
        self.started.store(true, Ordering::SeqCst);
        // Bounded only so that a broken build fails instead of hanging.
        for _ in 0..60_000 {
            if cancel.is_cancelled() {
                self.cancelled.store(true, Ordering::SeqCst);
                return Err(BackendError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(BackendError::Exec("never cancelled".into()))
    }

    fn verify(&self, _: &Value, _: &[String], _: Option<&Value>) -> Result<Verdict, BackendError> {
        Ok(Err("an endless proof never ends".into()))
    }

    fn verify_input(
        &self,
        _: &Value,
        _: &[String],
        _: Option<&Value>,
        _: ProofInput,
    ) -> Result<Judged, BackendError> {
        Err(BackendError::NoVerifier("endless"))
    }
}

/// The backend's verdict on a snarkjs proof.
fn verdict(backend: &Arc<dyn Backend>, proof: &ProofJson, public: &[String]) -> Verdict {
    let proof = serde_json::to_value(proof).unwrap();
    backend.verify(&proof, public, None).unwrap()
}

/// A pod whose only backend is an [`EndlessProof`].
async fn start_endless(url: &str) -> (Pod, Arc<EndlessProof>) {
    let endless = Arc::new(EndlessProof::default());
    let backend: Arc<dyn Backend> = endless.clone();
    let pod = start_with(
        url,
        1,
        Faults::default(),
        "t",
        (backend, "sha256:endless".into()),
    )
    .await;
    (pod, endless)
}

/// Waits until the endless proof has seen its cancellation and the pod runs no proof: the
/// cores are free again, not only the slot.
async fn until_proof_stopped(pod: &Pod, proof: &EndlessProof) {
    until("the proof to see its cancellation", || {
        proof.cancelled.load(Ordering::SeqCst)
    })
    .await;
    until("no proof running", || {
        pod.metric("zkfleet_prover_active_proofs") == 0.0
    })
    .await;
}

fn new_dispatcher(token: &str) -> Dispatcher {
    Dispatcher {
        token: Mutex::new(token.into()),
        ..Dispatcher::default()
    }
}

async fn start(url: &str, slots: usize, faults: Faults, token_text: &str) -> Pod {
    start_with(url, slots, faults, token_text, backend()).await
}

async fn start_with(
    url: &str,
    slots: usize,
    faults: Faults,
    token_text: &str,
    backend: (Arc<dyn Backend>, String),
) -> Pod {
    let state = AppState::new(
        "groth16-bn254",
        "v1".into(),
        slots,
        Duration::from_secs(600),
        1 << 20,
    )
    .unwrap();
    state.set_params(Ok(backend), 0.0);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), token_text).unwrap();
    let agent = Agent::new(
        AgentConfig {
            dispatcher_url: format!("{url}/"),
            caller: caller(),
            token_file: token_file.path().into(),
            // Longer than `drain` waits: a drain that did not abandon the pending long-poll
            // would fail the test.
            lease_wait_seconds: 300,
            faults,
        },
        state.clone(),
    )
    .unwrap();
    Pod {
        state,
        agent: tokio::spawn(agent.run()),
        token_file,
    }
}

impl Pod {
    /// SIGTERM's part: drain, then wait for the agent to finish what it holds.
    async fn drain(self) -> Arc<AppState> {
        self.state.start_draining();
        tokio::time::timeout(Duration::from_secs(120), self.agent)
            .await
            .expect("the agent finishes draining")
            .unwrap();
        self.state
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&self.state, name)
    }
}

/// A sample's value in the pod's /metrics text (0 when absent).
fn metric(state: &AppState, sample: &str) -> f64 {
    state
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `ok` until it holds; the bound only keeps a broken build from hanging.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

fn proved(c: &CompleteRequest) -> (ProofJson, Vec<String>, String) {
    match &c.outcome {
        Outcome::Proved {
            proof,
            public_signals,
            parameters_digest,
            ..
        } => (
            serde_json::from_value(proof.clone()).unwrap(),
            public_signals.clone(),
            parameters_digest.clone(),
        ),
        other => panic!("expected a proof, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_jobs_are_proved_and_reported_with_proofs_that_verify() {
    let d = Arc::new(new_dispatcher("tok-1"));
    d.push(job(
        "inputs",
        JobInput::CircuitInputs {
            inputs: circuit_inputs(),
        },
    ));
    let witness = base64::engine::general_purpose::STANDARD.encode(fixture("witness.wtns"));
    d.push(job(
        "witness",
        JobInput::Witness {
            witness_base64: witness,
        },
    ));
    let url = serve(d.clone()).await;
    // Whitespace around the token in the Secret file is not part of it.
    let pod = start(&url, 2, Faults::default(), "  tok-1\n").await;
    until("both results", || d.completes().len() == 2).await;

    let (backend, digest) = backend();
    for c in d.completes() {
        assert_eq!(c.caller, caller());
        let (proof, public, used) = proved(&c);
        assert_eq!(used, digest);
        assert_eq!(
            verdict(&backend, &proof, &public),
            Ok(()),
            "{}",
            c.lease.uid
        );
    }
    let (auth, first) = d.leases.lock().unwrap()[0].clone();
    assert_eq!(auth, "Bearer tok-1");
    assert_eq!(first.caller, caller());
    assert_eq!(first.parameters_version, "v1");
    assert_eq!(first.parameters_digest, digest);
    assert_eq!(first.free_slots, 2);
    assert_eq!(first.wait_seconds, 300);
    // The slots are free again once the proofs are done.
    until("free slots", || {
        pod.state.slots.available_permits() == 2 && pod.metric("zkfleet_prover_free_slots") == 2.0
    })
    .await;
    assert_eq!(pod.metric("zkfleet_prover_leases_received_total"), 2.0);
    // Slots free when proving ends; the upload is counted once acknowledged.
    until("both uploads counted", || {
        pod.metric(
            "zkfleet_prover_result_uploads_total{outcome=\"acknowledged\",result=\"proved\"}",
        ) == 2.0
    })
    .await;
    pod.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_upload_is_retried_until_acknowledged() {
    let d = Arc::new(new_dispatcher("t"));
    // A bare 404 first: only the dispatcher's own JSON error may drop a result as stale.
    d.fail_completes.store(2, Ordering::SeqCst);
    d.push(job(
        "j",
        JobInput::CircuitInputs {
            inputs: circuit_inputs(),
        },
    ));
    let url = serve(d.clone()).await;
    let pod = start(&url, 1, Faults::default(), "t").await;
    until("the result", || d.completes().len() == 1).await;
    assert_eq!(d.complete_attempts.load(Ordering::SeqCst), 3);
    proved(&d.completes()[0]);
    pod.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_frees_its_slot_and_reports_nothing() {
    let d = Arc::new(new_dispatcher("t"));
    let mut held = job(
        "deleted",
        JobInput::CircuitInputs {
            inputs: circuit_inputs(),
        },
    );
    // Heartbeats every second.
    held.lease_seconds = 3;
    let lease = held.lease.clone();
    d.push(held);
    let url = serve(d.clone()).await;
    let faults = Faults {
        delay: Some(Duration::from_secs(600)),
        ..Faults::default()
    };
    let pod = start(&url, 1, faults, "t").await;
    until("the lease to be heartbeated", || {
        d.heartbeats
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.leases.contains(&lease))
    })
    .await;
    assert_eq!(pod.state.slots.available_permits(), 0);
    // The job is deleted: the next heartbeat answers that the lease is revoked.
    d.revoked.lock().unwrap().push(lease.clone());
    until("the slot to be freed", || {
        pod.state.slots.available_permits() == 1 && pod.metric("zkfleet_prover_free_slots") == 1.0
    })
    .await;
    assert_eq!(pod.metric("zkfleet_prover_lease_revocations_total"), 1.0);
    // With the slot free the pod asks for work again.
    until("a new lease request", || d.lease_count() == 2).await;
    let state = pod.drain().await;
    assert!(d.completes().is_empty(), "{:?}", d.completes());
    assert_eq!(d.complete_attempts.load(Ordering::SeqCst), 0);
    assert_eq!(metric(&state, "zkfleet_prover_active_proofs"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_stops_the_proof_it_was_making() {
    let d = Arc::new(new_dispatcher("t"));
    let mut held = job(
        "deleted-mid-proof",
        JobInput::CircuitInputs { inputs: json!({}) },
    );
    held.lease_seconds = 3;
    let lease = held.lease.clone();
    d.push(held);
    let url = serve(d.clone()).await;
    let (pod, proof) = start_endless(&url).await;
    until("the proof to start", || {
        proof.started.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(pod.metric("zkfleet_prover_active_proofs"), 1.0);

    d.revoked.lock().unwrap().push(lease);
    until_proof_stopped(&pod, &proof).await;
    pod.drain().await;
    assert!(d.completes().is_empty(), "{:?}", d.completes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_stops_its_proof_and_reports_the_timeout() {
    let d = Arc::new(new_dispatcher("t"));
    let mut slow = job("slow", JobInput::CircuitInputs { inputs: json!({}) });
    slow.timeout_seconds = 1;
    d.push(slow);
    let url = serve(d.clone()).await;
    let (pod, proof) = start_endless(&url).await;
    until("the result", || d.completes().len() == 1).await;
    match &d.completes()[0].outcome {
        Outcome::Failed {
            code, retryable, ..
        } => assert_eq!((code.as_str(), *retryable), ("timeout", true)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    until_proof_stopped(&pod, &proof).await;
    pod.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_reported_as_failures_not_worth_retrying() {
    let d = Arc::new(new_dispatcher("t"));
    d.push(job(
        "missing",
        JobInput::CircuitInputs {
            inputs: json!({"a": "3"}),
        },
    ));
    // An input file whose bytes are not what the job says.
    d.files
        .lock()
        .unwrap()
        .insert("input.json".into(), fixture("input.json"));
    let url = serve(d.clone()).await;
    d.push(job(
        "tampered",
        JobInput::Url {
            url: format!("{url}/files/input.json"),
            sha256: Digest::of(b"something else").to_string(),
            format: InputFormat::CircuitInputs,
        },
    ));
    let pod = start(&url, 1, Faults::default(), "t").await;
    until("both results", || d.completes().len() == 2).await;
    let by_uid: HashMap<_, _> = d
        .completes()
        .into_iter()
        .map(|c| (c.lease.uid.clone(), c.outcome))
        .collect();
    let failure = |uid: &str| match &by_uid[uid] {
        Outcome::Failed {
            code, retryable, ..
        } => (code.clone(), *retryable),
        other => panic!("{uid}: expected a failure, got {other:?}"),
    };
    assert_eq!(failure("missing"), ("missing_signal".into(), false));
    assert_eq!(failure("tampered"), ("input_digest_mismatch".into(), false));
    // The pod counts an upload once it has read the dispatcher's answer.
    until("both uploads counted", || {
        pod.metric(
            "zkfleet_prover_result_uploads_total{outcome=\"acknowledged\",result=\"failed\"}",
        ) == 2.0
    })
    .await;
    pod.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corrupt_proofs_fault_uploads_proofs_the_verifier_rejects() {
    let d = Arc::new(new_dispatcher("t"));
    d.push(job(
        "j",
        JobInput::CircuitInputs {
            inputs: circuit_inputs(),
        },
    ));
    let url = serve(d.clone()).await;
    let faults = Faults {
        corrupt_proofs: true,
        ..Faults::default()
    };
    let pod = start(&url, 1, faults, "t").await;
    until("the result", || d.completes().len() == 1).await;
    let (proof, public, _) = proved(&d.completes()[0]);
    // Still well-formed points, but not a valid proof.
    proof.to_proof().unwrap();
    assert!(verdict(&backend().0, &proof, &public).is_err());
    pod.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_the_proof_in_flight_and_leases_no_more() {
    let (release, _) = watch::channel(false);
    let d = Arc::new(Dispatcher {
        release: Some(release),
        ..new_dispatcher("t")
    });
    let input = fixture("input.json");
    d.files
        .lock()
        .unwrap()
        .insert("input.json".into(), input.clone());
    let url = serve(d.clone()).await;
    d.push(job(
        "in-flight",
        JobInput::Url {
            url: format!("{url}/files/input.json"),
            sha256: Digest::of(&input).to_string(),
            format: InputFormat::CircuitInputs,
        },
    ));
    let pod = start(&url, 2, Faults::default(), "t").await;
    // The job's input download is held back, and the pod's next lease request (for its
    // other slot) is being long-polled.
    until("the download and a second lease request", || {
        d.file_requests.load(Ordering::SeqCst) >= 1 && d.lease_count() == 2
    })
    .await;
    pod.state.start_draining();
    assert!(d.completes().is_empty());
    d.release.as_ref().unwrap().send_replace(true);
    let state = pod.drain().await;
    let completes = d.completes();
    assert_eq!(completes.len(), 1);
    let (proof, public, _) = proved(&completes[0]);
    assert_eq!(verdict(&backend().0, &proof, &public), Ok(()));
    assert_eq!(
        d.lease_count(),
        2,
        "no lease request after draining started"
    );
    assert_eq!(state.slots.available_permits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_read_from_its_file_again_after_a_401() {
    let d = Arc::new(new_dispatcher("rotated"));
    d.push(job(
        "j",
        JobInput::CircuitInputs {
            inputs: circuit_inputs(),
        },
    ));
    let url = serve(d.clone()).await;
    let pod = start(&url, 1, Faults::default(), "old\n").await;
    until("a refused request", || {
        d.unauthorized.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(d.lease_count(), 0);
    // The kubelet updates the mounted Secret.
    write_atomically(pod.token_file.path(), "rotated\n");
    until("the result", || d.completes().len() == 1).await;
    assert_eq!(d.leases.lock().unwrap()[0].0, "Bearer rotated");
    pod.drain().await;
}

/// Replaces a file as the kubelet updates a Secret volume: never half-written.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
