//! Agent mode: the pod leases jobs from the operator's dispatcher, proves them in
//! the same slots as `POST /v1/prove`, keeps the leases alive from a thread of its own and
//! reports every result until the dispatcher acknowledges it.
//!
//! The lease loop runs on the server's runtime. Heartbeats run on a dedicated OS thread with
//! a current-thread runtime, so a pod whose cores are busy proving on rayon and blocking
//! threads still renews its leases on time. A lease the dispatcher revokes is abandoned at
//! once: its slot is freed and no result is sent for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::backend::ProofOutput;
use crate::config::{AgentConfig, Faults};
use crate::input::{JobFailure, resolve};
use crate::lease::{
    CALLER_HEADER, COMPLETE_PATH, Caller, CompleteRequest, CompleteResponse, HEARTBEAT_PATH,
    HeartbeatRequest, HeartbeatResponse, JobInput, LEASE_PATH, LeaseRef, LeaseRequest,
    LeaseResponse, LeasedJob, Outcome,
};
use crate::runner::{self, Slot};
use crate::state::AppState;
use crate::usage::CpuMeter;
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status};
use opentelemetry::{KeyValue, global};
use zkfleet_contract::ErrorBody;
use zkfleet_contract::trace;

/// Extra time a lease request may take beyond the wait the dispatcher is allowed.
const LEASE_HTTP_MARGIN: Duration = Duration::from_secs(10);
/// How long a draining pod still waits for its pending lease request: long enough for a
/// grant already under way to arrive.
const DRAIN_LEASE_GRACE: Duration = Duration::from_secs(2);
/// Longest one result upload may take before it is retried.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Retry delays: from the first up to the cap, doubling, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How often the lease loop looks whether the parameters are ready yet.
const READY_POLL: Duration = Duration::from_millis(200);

/// Why agent mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "cannot read the dispatcher token file {path} (--dispatcher-token-file, ZKFLEET_DISPATCHER_TOKEN_FILE): {message}"
    )]
    Token { path: String, message: String },
    #[error("cannot build the dispatcher HTTP client: {0}")]
    Client(String),
    #[error("cannot start the heartbeat thread: {0}")]
    Thread(String),
}

/// The bearer token, re-read from its file when the dispatcher answers 401 (the Secret may
/// have been rotated; the kubelet updates the mounted file in place).
struct Token {
    path: PathBuf,
    value: Mutex<String>,
}

impl Token {
    fn read(path: &std::path::Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let token = text.trim();
        if token.is_empty() {
            return Err("the file is empty".into());
        }
        Ok(token.to_string())
    }

    fn load(path: PathBuf) -> Result<Self, AgentError> {
        let value = Self::read(&path).map_err(|message| AgentError::Token {
            path: path.display().to_string(),
            message,
        })?;
        Ok(Token {
            path,
            value: Mutex::new(value),
        })
    }

    fn header(&self) -> String {
        let value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        format!("Bearer {value}")
    }

    fn reload(&self) {
        match Self::read(&self.path) {
            Ok(v) => *self.value.lock().unwrap_or_else(|e| e.into_inner()) = v,
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                "cannot re-read the dispatcher token; keeping the old one: {e}"
            ),
        }
    }
}

/// A lease the pod holds: heartbeated from when it is received until its result is
/// acknowledged (or it is revoked).
struct HeldLease {
    job: String,
    lease_seconds: u32,
    revoke: watch::Sender<bool>,
}

/// The leases the pod holds, shared with the heartbeat thread.
#[derive(Default)]
struct Held {
    leases: Mutex<HashMap<LeaseRef, HeldLease>>,
    /// Wakes the heartbeat thread when a lease is added.
    added: Notify,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseRef, HeldLease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts holding `job`; the receiver turns true if the dispatcher revokes it.
    fn insert(&self, job: &LeasedJob) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        self.lock().insert(
            job.lease.clone(),
            HeldLease {
                job: job.job.clone(),
                lease_seconds: job.lease_seconds,
                revoke: tx,
            },
        );
        self.added.notify_one();
        rx
    }

    fn remove(&self, lease: &LeaseRef) {
        self.lock().remove(lease);
    }

    /// Stops holding `lease` and tells its work to stop; the job's name if it was held.
    fn revoke(&self, lease: &LeaseRef) -> Option<String> {
        let held = self.lock().remove(lease)?;
        held.revoke.send_replace(true);
        Some(held.job)
    }

    /// The held leases and the shortest lease duration among them.
    fn snapshot(&self) -> (Vec<LeaseRef>, u32) {
        let leases = self.lock();
        let min = leases.values().map(|l| l.lease_seconds).min().unwrap_or(0);
        (leases.keys().cloned().collect(), min)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Resolves when the lease behind `rx` is revoked; never if it is only released.
async fn revoked(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|r| *r).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Doubling retry delays with jitter, capped.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// A delay between half and all of the current step; the step then doubles.
    fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(BACKOFF_CAP);
        let half = step.as_millis() as u64 / 2;
        Duration::from_millis(half + rand::thread_rng().gen_range(0..=half))
    }
}

/// Why a call to the dispatcher got no usable answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("dispatcher answered {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        /// The `code` of the dispatcher's JSON error. None when the answer has none, which
        /// means something other than the dispatcher answered: a proxy, or a Service address
        /// that kube-proxy has not yet programmed.
        code: Option<String>,
        body: String,
    },
    #[error("dispatcher unreachable: {0}")]
    Network(String),
    #[error("dispatcher answer is not the expected JSON: {0}")]
    Decode(String),
}

/// Talks to the dispatcher: base URL, caller and token.
struct Dispatcher {
    base: String,
    caller: Caller,
    token: Token,
}

impl Dispatcher {
    /// POSTs `body` to `path` and decodes a 2xx answer. A 401 re-reads the token for the
    /// next call.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let resp = client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, self.token.header())
            .header(CALLER_HEADER, self.caller.header_value())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Network(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            if status == reqwest::StatusCode::UNAUTHORIZED {
                self.token.reload();
            }
            let mut body = resp.text().await.unwrap_or_default();
            let code = serde_json::from_str::<ErrorBody>(&body)
                .ok()
                .map(|e| e.code);
            body.truncate(500);
            return Err(CallError::Status { status, code, body });
        }
        resp.json()
            .await
            .map_err(|e| CallError::Decode(error_chain(&e)))
    }
}

/// An error with its sources, which is where reqwest keeps the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Everything the lease loop, the jobs and the heartbeat thread share.
struct Shared {
    dispatcher: Dispatcher,
    /// HTTP client of the lease loop and the uploads (the heartbeat thread has its own,
    /// whose connections live on its runtime).
    client: reqwest::Client,
    held: Held,
    state: Arc<AppState>,
    lease_wait_seconds: u32,
    faults: Faults,
    /// CPU time of each attempt, for its job's usage.
    cpu: CpuMeter,
    /// The first proof made, for the `wrong-statement` fault.
    first_proof: std::sync::Mutex<Option<ProofOutput>>,
}

/// Stops the heartbeat thread when dropped.
struct HeartbeatThread {
    stop: watch::Sender<bool>,
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A prover pod's agent: see the module documentation.
pub struct Agent {
    shared: Arc<Shared>,
    heartbeat: HeartbeatThread,
}

impl Agent {
    /// Reads the token and starts the heartbeat thread; [`Agent::run`] starts leasing.
    pub fn new(config: AgentConfig, state: Arc<AppState>) -> Result<Self, AgentError> {
        // No exec prover this pod runs may read the token (see crate::sandbox).
        if let Some(dir) = config.token_file.parent() {
            crate::sandbox::protect(vec![dir.to_path_buf()]);
        }
        let token = Token::load(config.token_file)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AgentError::Client(error_chain(&e)))?;
        let shared = Arc::new(Shared {
            dispatcher: Dispatcher {
                base: config.dispatcher_url.trim_end_matches('/').to_string(),
                caller: config.caller,
                token,
            },
            client,
            held: Held::default(),
            state,
            lease_wait_seconds: config.lease_wait_seconds.max(1),
            faults: config.faults,
            cpu: CpuMeter::default(),
            first_proof: std::sync::Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AgentError::Thread(e.to_string()))?;
        let hb = shared.clone();
        std::thread::Builder::new()
            .name("zkfleet-heartbeat".into())
            .spawn(move || runtime.block_on(heartbeat_loop(hb, stop_rx)))
            .map_err(|e| AgentError::Thread(e.to_string()))?;
        Ok(Agent {
            shared,
            heartbeat: HeartbeatThread { stop },
        })
    }

    /// Leases and proves until the pod drains, then finishes the jobs it holds, reports
    /// their results and returns.
    pub async fn run(self) {
        let shared = &self.shared;
        if !shared.faults.is_empty() {
            tracing::warn!(
                faults = ?shared.faults,
                "fault injection is on: this pod misbehaves on purpose (tests only)"
            );
        }
        let mut jobs = JoinSet::new();
        self.lease_loop(&mut jobs).await;
        let held = shared.held.len();
        if held > 0 {
            tracing::info!(
                jobs = held,
                "draining: finishing the leased jobs and reporting their results"
            );
        }
        while jobs.join_next().await.is_some() {}
        tracing::info!("agent stopped");
        drop(self.heartbeat);
    }

    async fn lease_loop(&self, jobs: &mut JoinSet<()>) {
        let shared = &self.shared;
        let state = &shared.state;
        let digest = loop {
            if state.is_draining() {
                return;
            }
            if let Some((_, digest)) = state.ready_backend() {
                break digest;
            }
            tokio::select! {
                _ = tokio::time::sleep(READY_POLL) => {}
                _ = state.drained() => return,
            }
        };
        tracing::info!(
            dispatcher = shared.dispatcher.base,
            pool = shared.dispatcher.caller.pool,
            "parameters ready; leasing jobs from the dispatcher"
        );
        let mut backoff = Backoff::new();
        loop {
            while jobs.try_join_next().is_some() {}
            // Lease only for slots that are free now; a permit held for a moment says one is.
            tokio::select! {
                biased;
                _ = state.drained() => return,
                permit = state.slots.acquire() => drop(permit),
            }
            // A released slot may have been handed straight to this probe, past the metric.
            state.update_free_slots();
            let free = state.slots.available_permits();
            if free == 0 {
                continue;
            }
            let request = LeaseRequest {
                caller: shared.dispatcher.caller.clone(),
                parameters_version: state.parameters_version.clone(),
                parameters_digest: digest.clone(),
                free_slots: free as u32,
                wait_seconds: shared.lease_wait_seconds,
            };
            let timeout = Duration::from_secs(shared.lease_wait_seconds.into()) + LEASE_HTTP_MARGIN;
            let call = shared
                .dispatcher
                .call(&shared.client, LEASE_PATH, &request, timeout);
            tokio::pin!(call);
            let answer: Result<LeaseResponse, CallError> = tokio::select! {
                biased;
                _ = state.drained() => {
                    // The dispatcher may be writing a lease for this request right now; one
                    // dropped here would be held by a pod that never heard of it until the lease
                    // ran out. A grant under way answers within moments, and once the
                    // connection is gone the dispatcher puts back what it took: so wait a
                    // little, and prove whatever comes.
                    match tokio::time::timeout(DRAIN_LEASE_GRACE, &mut call).await {
                        Ok(answer) => answer,
                        Err(_) => {
                            tracing::info!("draining: abandoning the pending lease request");
                            return;
                        }
                    }
                }
                r = &mut call => r,
            };
            match answer {
                Ok(LeaseResponse { jobs: leased }) => {
                    backoff.reset();
                    if state.is_draining() && !leased.is_empty() {
                        tracing::info!(
                            jobs = leased.len(),
                            "draining: proving the jobs leased just as it began"
                        );
                    }
                    // Every lease is heartbeated from now on, also while it waits for a slot.
                    let held: Vec<_> = leased
                        .into_iter()
                        .map(|job| {
                            state.metrics.leases_received.inc();
                            tracing::info!(
                                job = job.job,
                                uid = job.lease.uid,
                                attempt = job.lease.attempt,
                                "job leased"
                            );
                            let revoke = shared.held.insert(&job);
                            (job, revoke)
                        })
                        .collect();
                    for (job, revoke) in held {
                        self.start(job, revoke, jobs).await;
                    }
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    // 503 is normal while the operator has no leader or restarts.
                    tracing::warn!(
                        retry_in_ms = delay.as_millis() as u64,
                        "lease request failed: {e}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = state.drained() => return,
                    }
                }
            }
        }
    }

    /// Takes a slot for a held job (waiting if `/v1/prove` took the one it was leased for)
    /// and starts it.
    async fn start(
        &self,
        job: LeasedJob,
        mut revoke: watch::Receiver<bool>,
        jobs: &mut JoinSet<()>,
    ) {
        let shared = &self.shared;
        let state = &shared.state;
        let slot = match Slot::try_take(state) {
            Some(slot) => slot,
            None => {
                tracing::info!(job = job.job, "waiting for a proof slot");
                tokio::select! {
                    biased;
                    _ = revoked(&mut revoke) => return,
                    slot = Slot::take(state) => match slot {
                        Some(slot) => slot,
                        // The slots are never closed; if they were, the lease just expires.
                        None => {
                            shared.held.remove(&job.lease);
                            return;
                        }
                    },
                }
            }
        };
        jobs.spawn(run_job(shared.clone(), job, slot, revoke));
    }
}

/// One leased job, from its slot to the acknowledged result.
async fn run_job(
    shared: Arc<Shared>,
    job: LeasedJob,
    slot: Slot,
    mut revoke: watch::Receiver<bool>,
) {
    let state = &shared.state;
    let lease = job.lease.clone();
    let _release = Release {
        shared: shared.clone(),
        lease: lease.clone(),
    };
    let started = Instant::now();
    let metered = shared.cpu.start();
    let slot = slot.paid_by(metered.attribution());
    // The attempt's span in the job's trace, handed over by the lease; the pod's spans hang
    // under it. (No-ops while tracing is off.)
    let attempt_span = job
        .traceparent
        .as_deref()
        .map(trace::context_from_traceparent)
        .unwrap_or_default();
    let attributes = vec![
        KeyValue::new("k8s.pod.name", shared.dispatcher.caller.pod.clone()),
        KeyValue::new("zkfleet.job", job.job.clone()),
        KeyValue::new("zkfleet.attempt", i64::from(lease.attempt)),
        KeyValue::new("zkfleet.backend", state.backend_name),
    ];
    let mut prove_span = SpanBuilder::from_name("prove")
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes.clone())
        .start_with_context(&global::tracer(trace::TRACER), &attempt_span);
    let timeout = Duration::from_secs(job.timeout_seconds.max(1).into());
    let result = tokio::select! {
        biased;
        _ = revoked(&mut revoke) => {
            tracing::warn!(job = job.job, uid = lease.uid, attempt = lease.attempt,
                "lease revoked by the dispatcher: work abandoned, slot freed, no result sent");
            return;
        }
        // The runner has its own timeout for the proof; this one also bounds the input's
        // download and the fault delay.
        r = tokio::time::timeout(timeout, prove(&shared, job.input, slot, started + timeout)) => r,
    };
    let result = result.unwrap_or_else(|_| {
        Err(JobFailure::new(
            "timeout",
            format!("proof took longer than the job's {} s", timeout.as_secs()),
            true,
        ))
    });
    if let Err(f) = &result
        && !f.counted
    {
        state
            .metrics
            .proofs
            .with_label_values(&[state.backend_name, f.code.as_str()])
            .inc();
    }
    let usage = metered.finish();
    prove_span.set_attribute(KeyValue::new("zkfleet.cpu_millis", usage.cpu_millis as i64));
    match &result {
        Ok(_) => prove_span.set_attribute(KeyValue::new("zkfleet.outcome", "proved")),
        Err(f) => {
            prove_span.set_attribute(KeyValue::new("zkfleet.outcome", f.code.clone()));
            prove_span.set_status(Status::error(f.code.clone()));
        }
    }
    prove_span.end();
    let usage = Some(usage);
    let outcome = match result {
        Ok((mut out, digest)) => {
            if shared.faults.wrong_statement {
                let mut first = shared.first_proof.lock().expect("lock");
                match first.as_ref() {
                    Some(kept) => {
                        tracing::warn!(
                            job = job.job,
                            "fault injection: uploading the proof of another job"
                        );
                        out = kept.clone();
                    }
                    None => *first = Some(out.clone()),
                }
            }
            // Witness and proof only: the fault delay and input download are not proving.
            let proving_millis = (out.timings.witness_ms + out.timings.prove_ms).round() as u64;
            let mut proof = out.proof;
            if shared.faults.corrupt_proofs {
                tracing::warn!(
                    job = job.job,
                    "fault injection: uploading a corrupted proof"
                );
                if let Some((backend, _)) = state.ready_backend() {
                    backend.tamper(&mut proof);
                }
            }
            tracing::info!(job = job.job, proving_millis, "proved");
            Outcome::Proved {
                proof,
                public_signals: out.public_signals,
                public_outputs: out.public_outputs,
                proving_millis,
                parameters_digest: digest,
                usage,
            }
        }
        Err(f) => {
            tracing::warn!(
                job = job.job,
                code = f.code,
                retryable = f.retryable,
                "proof failed: {}",
                f.message
            );
            Outcome::Failed {
                code: f.code,
                message: f.message,
                retryable: f.retryable,
                usage,
            }
        }
    };
    let kind = match outcome {
        Outcome::Proved { .. } => "proved",
        Outcome::Failed { .. } => "failed",
    };
    let request = CompleteRequest {
        caller: shared.dispatcher.caller.clone(),
        lease: lease.clone(),
        outcome,
    };
    let mut report_span = SpanBuilder::from_name("report")
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(&global::tracer(trace::TRACER), &attempt_span);
    let uploaded = tokio::select! {
        biased;
        _ = revoked(&mut revoke) => "revoked",
        o = upload(&shared, &job.job, &request) => o,
    };
    report_span.set_attribute(KeyValue::new("zkfleet.upload", uploaded));
    report_span.end();
    if uploaded == "revoked" {
        tracing::warn!(
            job = job.job,
            uid = lease.uid,
            attempt = lease.attempt,
            "lease revoked while its result was being reported; result dropped"
        );
    }
    state
        .metrics
        .result_uploads
        .with_label_values(&[kind, uploaded])
        .inc();
}

/// Stops heartbeating a lease when its job ends, however it ends.
struct Release {
    shared: Arc<Shared>,
    lease: LeaseRef,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.shared.held.remove(&self.lease);
    }
}

/// Reports a result until the dispatcher takes it (2xx) or says the lease is gone
/// (404, 409) or the request is unacceptable (other 4xx); everything else is retried.
/// Only the dispatcher's own JSON errors end the retries: a result is dropped on the word of
/// the dispatcher, never on a bare 404 from whatever else answered on the way.
/// Returns the outcome label of the uploads metric.
async fn upload(shared: &Shared, job: &str, request: &CompleteRequest) -> &'static str {
    let mut backoff = Backoff::new();
    loop {
        let answer: Result<CompleteResponse, CallError> = shared
            .dispatcher
            .call(&shared.client, COMPLETE_PATH, request, UPLOAD_TIMEOUT)
            .await;
        match answer {
            Ok(r) => {
                tracing::info!(
                    job,
                    phase = r.phase,
                    duplicate = r.duplicate,
                    "result acknowledged"
                );
                return "acknowledged";
            }
            Err(CallError::Status {
                status,
                code: Some(_),
                body,
            }) if status == reqwest::StatusCode::NOT_FOUND
                || status == reqwest::StatusCode::CONFLICT =>
            {
                tracing::warn!(job, %status, "result refused as stale, dropped: {body}");
                return "stale";
            }
            Err(CallError::Status {
                status,
                code: Some(_),
                body,
            }) if status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 408 | 429) => {
                tracing::error!(job, %status, "result refused, dropped: {body}");
                return "refused";
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    job,
                    retry_in_ms = delay.as_millis() as u64,
                    "result upload failed: {e}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The proof of one job: its input resolved, then the proof through the runner, in the slot
/// the job was given (freed when the proof ends, so the upload holds no slot).
async fn prove(
    shared: &Shared,
    input: JobInput,
    slot: Slot,
    deadline: Instant,
) -> Result<(ProofOutput, String), JobFailure> {
    if let Some(delay) = shared.faults.delay {
        tokio::time::sleep(delay).await;
    }
    let state = &shared.state;
    let (backend, digest) = state
        .ready_backend()
        .ok_or_else(|| JobFailure::new("not_ready", "parameters are not loaded", true))?;
    if shared.faults.skip_proving {
        let placeholder = ProofOutput {
            proof: serde_json::json!({"protocol": "none", "note": "fault injection: skip-proving"}),
            public_signals: Vec::new(),
            public_outputs: None,
            timings: Default::default(),
        };
        return Ok((placeholder, digest));
    }
    let input = resolve(input).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    let out = runner::run(state, backend, input, slot, left).await?;
    Ok((out, digest))
}

/// Renews the held leases every third of the shortest lease (at least every second) and
/// abandons the ones the dispatcher revokes. Runs on its own thread and runtime.
async fn heartbeat_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "cannot build the heartbeat HTTP client: {}",
                error_chain(&e)
            );
            return;
        }
    };
    let metrics = &shared.state.metrics;
    let mut last = tokio::time::Instant::now();
    let mut idle = true;
    loop {
        let (leases, shortest) = shared.held.snapshot();
        if leases.is_empty() {
            idle = true;
            tokio::select! {
                _ = shared.held.added.notified() => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        if idle {
            // The leases were just granted: the first renewal is due an interval from now.
            last = tokio::time::Instant::now();
            idle = false;
        }
        let interval =
            Duration::from_millis(u64::from(shortest) * 1000 / 3).max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(last + interval) => {}
            // A new lease may be shorter than the others: work the interval out again.
            _ = shared.held.added.notified() => continue,
            _ = stop.wait_for(|s| *s) => return,
        }
        last = tokio::time::Instant::now();
        // Leases released while the request was being made are simply not renewed again.
        let request = HeartbeatRequest {
            caller: shared.dispatcher.caller.clone(),
            leases,
        };
        let answer: Result<HeartbeatResponse, CallError> = tokio::select! {
            r = shared.dispatcher.call(&client, HEARTBEAT_PATH, &request, interval) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match answer {
            Ok(r) => {
                for lease in r.revoked {
                    if let Some(job) = shared.held.revoke(&lease) {
                        metrics.lease_revocations.inc();
                        tracing::warn!(
                            job,
                            uid = lease.uid,
                            attempt = lease.attempt,
                            "dispatcher revoked the lease"
                        );
                    }
                }
            }
            Err(e) => {
                metrics.heartbeat_failures.inc();
                tracing::warn!(leases = request.leases.len(), "heartbeat failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fault;

    #[test]
    fn faults_parse() {
        let list: Vec<Fault> = ["corrupt-proofs", " delay-ms=250", "skip-proving"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let f = Faults::from_list(&list);
        assert!(f.corrupt_proofs);
        assert_eq!(f.delay, Some(Duration::from_millis(250)));
        assert!(f.skip_proving);
        assert!(Faults::from_list(&[]).is_empty());
        assert!("delay-ms=soon".parse::<Fault>().is_err());
        assert!("crash".parse::<Fault>().is_err());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= BACKOFF_FIRST / 2 && first <= BACKOFF_FIRST);
        for _ in 0..20 {
            assert!(b.next_delay() <= BACKOFF_CAP);
        }
        assert!(b.next_delay() >= BACKOFF_CAP / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_FIRST);
    }

    #[test]
    fn held_leases_are_revoked_once() {
        let held = Held::default();
        let job = LeasedJob {
            lease: LeaseRef {
                uid: "u".into(),
                attempt: 1,
            },
            job: "ns/j".into(),
            lease_seconds: 9,
            timeout_seconds: 60,
            input: JobInput::CircuitInputs {
                inputs: serde_json::json!({}),
            },
            traceparent: None,
        };
        let rx = held.insert(&job);
        assert_eq!(held.snapshot(), (vec![job.lease.clone()], 9));
        assert_eq!(held.revoke(&job.lease).as_deref(), Some("ns/j"));
        assert!(*rx.borrow());
        assert_eq!(held.revoke(&job.lease), None);
        assert_eq!(held.len(), 0);
    }
}
