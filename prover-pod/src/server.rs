//! The HTTP server: health, readiness, metrics, info, and synchronous
//! prove/verify with bounded concurrency, body limits, per-proof timeouts and
//! JSON errors `{code, message}`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use zkfleet_contract::verify::ANSWERED_BY_HEADER;

use crate::backend::{Backend, BackendError, ProofInput, Verdict, stone};
use crate::runner::{self, RunError, Slot};
pub use crate::state::{AppState, Params};

/// The HTTP view of the loaded proof system: a pod still loading, or that failed to load,
/// answers 503 with why.
impl AppState {
    fn backend(&self) -> Result<Arc<dyn Backend>, ApiError> {
        let p = self
            .params
            .read()
            .map_err(|_| ApiError::internal("state lock poisoned"))?;
        match &*p {
            Params::Ready { backend, .. } => Ok(backend.clone()),
            Params::Loading => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "parameters are still loading",
            )),
            Params::Failed(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                format!("parameters could not be loaded: {e}"),
            )),
        }
    }
}

/// An error answer: status plus `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

pub use zkfleet_contract::ErrorBody;

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    fn bad_json(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON of the expected shape: {e}"),
        )
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let status = if e.is_bad_request() {
            StatusCode::BAD_REQUEST
        } else if e.is_client_error() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                code: self.code.into(),
                message: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    match body {
        Ok(b) if b.len() > limit => Err(too_large()),
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            e.body_text(),
        )),
    }
}

/// `POST /v1/prove` JSON body: exactly one of `inputs`, `witness` and `stone`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProveRequest {
    /// Backend the caller expects; refused if this pod runs another.
    pub backend: Option<String>,
    /// Circuit input signals.
    pub inputs: Option<Value>,
    /// A `.wtns` witness, base64.
    pub witness: Option<String>,
    /// Named input files, base64, for proof systems that take files (Stone, Miden): the
    /// names are those the pod's proof system lists in `/v1/info`.
    pub files: Option<std::collections::BTreeMap<String, String>>,
    /// A Cairo run to prove with Stone (pods with `--exec-profile stone`); the same as `files`
    /// with Stone's four files.
    pub stone: Option<StoneRequest>,
}

/// A Cairo run as `cairo-run --proof_mode` writes it. The pod sets the
/// private input's `trace_path`/`memory_path` to where it writes the files.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoneRequest {
    /// `--air_public_input` JSON; its `n_steps` picks the FRI parameters.
    pub public_input: serde_json::Map<String, Value>,
    /// `--air_private_input` JSON.
    pub private_input: serde_json::Map<String, Value>,
    /// `--trace_file`, base64.
    pub trace: String,
    /// `--memory_file`, base64.
    pub memory: String,
}

impl StoneRequest {
    /// Stone's four input files, under the names the Stone proof system takes.
    fn into_files(self) -> Result<ProofInput, ApiError> {
        let decode = |name: &str, b64: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_stone_input",
                        format!(
                            "stone.{name} is not base64: {e}; send the file's bytes base64-encoded"
                        ),
                    )
                })
        };
        let json = |v: serde_json::Map<String, Value>| {
            serde_json::to_vec(&Value::Object(v)).map_err(|e| ApiError::internal(e.to_string()))
        };
        Ok(ProofInput::Files(
            [
                (stone::PUBLIC_INPUT, json(self.public_input)?),
                (stone::PRIVATE_INPUT, json(self.private_input)?),
                (stone::TRACE, decode("trace", &self.trace)?),
                (stone::MEMORY, decode("memory", &self.memory)?),
            ]
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), bytes))
            .collect(),
        ))
    }
}

#[derive(Serialize, Deserialize)]
pub struct ProveResponse {
    pub backend: String,
    pub parameters: ParametersInfo,
    /// snarkjs `proof.json` for Groth16; Stone's proof file for Stone.
    pub proof: Value,
    pub public_signals: Vec<String>,
    /// What a STARK or VM proof commits to (absent for Groth16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_outputs: Option<Value>,
    pub timings: Value,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ParametersInfo {
    pub version: String,
    pub digest: String,
}

pub use zkfleet_contract::verify::{VerifyRequest, VerifyResponse};

/// Refuses a request that names another backend; the backend (`groth16-bn254`, `exec`) and
/// the proof system (`stone`, `miden`, ...) are both accepted as names.
fn check_backend(state: &AppState, asked: Option<&str>) -> Result<(), ApiError> {
    let system = state.ready_backend().map(|(b, _)| b.system());
    match asked {
        Some(b) if b != state.backend_name && Some(b) != system => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_backend",
            format!("this pod runs backend {}, not {b:?}", state.backend_name),
        )),
        _ => Ok(()),
    }
}

fn digest(state: &AppState) -> String {
    match state.params.read().as_deref() {
        Ok(Params::Ready { digest, .. }) => digest.clone(),
        _ => String::new(),
    }
}

/// The router of the metrics-only port (`--metrics-listen`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Builds the router. Every answer names the pod that gave it, once it is known
/// ([`AppState::set_pod_name`]), in [`ANSWERED_BY_HEADER`].
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let named = state.clone();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/v1/verification-key", get(verification_key))
        .route("/v1/prove", post(prove))
        .route("/v1/verify", post(verify))
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let pod = named.answered_by.get().cloned();
                async move {
                    if let Some(pod) = pod {
                        response.headers_mut().insert(ANSWERED_BY_HEADER, pod);
                    }
                    response
                }
            },
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the pod is shutting down",
        ));
    }
    state.backend()?;
    Ok(Json(json!({"status": "ready"})))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let (ready, error) = match state.params.read().as_deref() {
        Ok(Params::Ready { .. }) => (true, None),
        Ok(Params::Failed(e)) => (
            false,
            Some(json!({"code": e.code(), "message": e.to_string()})),
        ),
        _ => (false, None),
    };
    let load_seconds = state.load_seconds.read().ok().and_then(|s| *s);
    let files = state
        .parameter_files
        .read()
        .ok()
        .and_then(|f| f.as_ref().map(|f| json!(f.files)));
    let system = state
        .ready_backend()
        .map(|(b, _)| (b.system(), b.input_files()));
    Json(json!({
        "backend": state.backend_name,
        "system": system.map(|(name, _)| name),
        "input_files": system.map(|(_, files)| files),
        "parameters": {
            "version": state.parameters_version,
            "digest": digest(&state),
            "ready": ready,
            "error": error,
            "load_seconds": load_seconds,
            "files": files,
        },
        "slots": state.total_slots,
        "free_slots": state.slots.available_permits(),
        "mode": "cpu",
        "threads": rayon::current_num_threads(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn verification_key(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let backend = state.backend()?;
    backend.verification_key().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_verification_key",
            "this backend has no verification key",
        )
    })
}

async fn prove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    match prove_inner(&state, &headers, raw).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn prove_inner(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<ProveResponse, ApiError> {
    // Requests refused before they reach the runner are counted here; the runner counts the
    // proofs it runs.
    let refused = |e: ApiError| {
        state
            .metrics
            .proofs
            .with_label_values(&[state.backend_name, e.code])
            .inc();
        e
    };
    if state.is_draining() {
        return Err(refused(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the pod is shutting down",
        )));
    }
    let raw = body(raw, state.max_body_bytes).map_err(refused)?;
    let backend = state.backend().map_err(refused)?;
    let input = prove_input(state, headers, &raw).map_err(refused)?;
    backend
        .check(&input)
        .map_err(|e| refused(ApiError::from(e)))?;
    let slot = Slot::try_take(state).ok_or_else(|| {
        refused(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!(
                    "all {} proof slots are in use; retry later",
                    state.total_slots
                ),
            )
        })
    })?;
    // A client that hangs up drops this future, which cancels the proof (see runner::run).
    let out = runner::run(state, backend, input, slot, state.proof_timeout)
        .await
        .map_err(|e| match e {
            RunError::Backend(e) => ApiError::from(e),
            RunError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
            }
            RunError::Task(_) => ApiError::internal(e.to_string()),
        })?;
    Ok(ProveResponse {
        backend: state.backend_name.to_string(),
        parameters: ParametersInfo {
            version: state.parameters_version.clone(),
            digest: digest(state),
        },
        proof: out.proof,
        public_signals: out.public_signals,
        public_outputs: out.public_outputs,
        timings: json!({"witness_ms": out.timings.witness_ms, "prove_ms": out.timings.prove_ms}),
    })
}

/// The input of a `POST /v1/prove`: a binary `.wtns` body, or JSON with exactly one of
/// `inputs`, `witness`, `files` and `stone`.
fn prove_input(state: &AppState, headers: &HeaderMap, raw: &Bytes) -> Result<ProofInput, ApiError> {
    let is_binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if is_binary {
        check_backend(
            state,
            headers
                .get("x-zkfleet-backend")
                .and_then(|v| v.to_str().ok()),
        )?;
        return Ok(ProofInput::Wtns(raw.to_vec()));
    }
    let req: ProveRequest = serde_json::from_slice(raw).map_err(ApiError::bad_json)?;
    check_backend(state, req.backend.as_deref())?;
    let base64 = |what: &str, b64: &str, code: &'static str, status: StatusCode| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| {
                ApiError::new(
                    status,
                    code,
                    format!("{what} is not base64: {e}; send the file's bytes base64-encoded"),
                )
            })
    };
    match (req.inputs, req.witness, req.files, req.stone) {
        (Some(inputs), None, None, None) => Ok(ProofInput::Inputs(inputs)),
        (None, Some(w), None, None) => Ok(ProofInput::Wtns(base64(
            "witness",
            &w,
            "invalid_witness",
            StatusCode::UNPROCESSABLE_ENTITY,
        )?)),
        (None, None, Some(files), None) => {
            let mut out = std::collections::BTreeMap::new();
            for (name, b64) in files {
                let bytes = base64(
                    &format!("files.{name}"),
                    &b64,
                    "invalid_files",
                    StatusCode::BAD_REQUEST,
                )?;
                out.insert(name, bytes);
            }
            Ok(ProofInput::Files(out))
        }
        (None, None, None, Some(stone)) => stone.into_files(),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "give exactly one of `inputs` (circuit input signals), `witness` (base64 .wtns), `files` (named input files, base64) and `stone` (a Cairo run)",
        )),
    }
}

async fn verify(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let raw = body(raw, state.max_body_bytes)?;
    let backend = state.backend()?;
    let req: VerifyRequest = serde_json::from_slice(&raw).map_err(ApiError::bad_json)?;
    check_backend(&state, req.backend.as_deref())?;
    let started = Instant::now();
    let answer =
        |verdict: Verdict, statement: Option<Value>, input_rejected: bool| VerifyResponse {
            valid: verdict.is_ok(),
            verifier_ms: started.elapsed().as_secs_f64() * 1e3,
            reason: verdict.err(),
            // The downward API names the pod; the operator records who verified.
            verifier: std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()),
            statement,
            input_rejected,
        };
    let VerifyRequest {
        proof,
        public_signals,
        public_outputs,
        input,
        ..
    } = req;
    let Some(input) = input else {
        let verdict = tokio::task::spawn_blocking(move || {
            backend.verify(&proof, &public_signals, public_outputs.as_ref())
        })
        .await
        .map_err(|e| ApiError::internal(format!("verifier task failed: {e}")))??;
        return Ok(Json(answer(verdict, None, false)));
    };
    // The job's input: a statement that cannot be derived from it is the input's fault, and
    // the answer says so, so that no pod is blamed for it.
    let input = match crate::input::resolve(input).await {
        Ok(input) => input,
        Err(f) if !f.retryable => {
            return Ok(Json(answer(
                Err(format!("the job's input gives no statement: {}", f.message)),
                None,
                true,
            )));
        }
        Err(f) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "input_unavailable",
                f.message,
            ));
        }
    };
    let judged = tokio::task::spawn_blocking(move || {
        backend.verify_input(&proof, &public_signals, public_outputs.as_ref(), input)
    })
    .await
    .map_err(|e| ApiError::internal(format!("verifier task failed: {e}")))?;
    match judged {
        Ok(j) => Ok(Json(answer(j.verdict, Some(j.statement), false))),
        Err(e) if e.is_client_error() => Ok(Json(answer(
            Err(format!("the job's input gives no statement: {e}")),
            None,
            true,
        ))),
        Err(e) => Err(e.into()),
    }
}
