//! The dispatcher's HTTP API for prover pods (the lease protocol of
//! [`zkfleet_contract::lease`]). Each request is authenticated from its headers alone (the
//! pool token and the [`CALLER_HEADER`]) before a byte of its body is read; bodies are read
//! with a size cap per endpoint and a deadline, by at most [`MAX_INTAKE`] requests at a time.
//! Errors are JSON `{code, message}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Semaphore;
use zkfleet_contract::lease::{
    CALLER_HEADER, COMPLETE_PATH, Caller, CompleteRequest, HEARTBEAT_PATH, HeartbeatRequest,
    LEASE_PATH, LeaseRequest,
};

use super::{DispatchError, Dispatcher};

/// Largest result upload: one proof with its public signals.
pub const MAX_RESULT_BYTES: usize = 16 << 20;
/// Largest lease or heartbeat request (a heartbeat names every lease the pod holds).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;
/// Requests being authenticated or having their body read at one time; more are answered
/// 503 at once. Long-polls waiting for work do not count.
pub const MAX_INTAKE: usize = 64;
/// Longest a request body may take to arrive.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

impl IntoResponse for DispatchError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Stale(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (
            status,
            Json(json!({"code": self.code(), "message": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Server {
    dispatcher: Arc<Dispatcher>,
    intake: Arc<Semaphore>,
}

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// caller's address can be checked against its pod.
pub fn router(dispatcher: Arc<Dispatcher>) -> Router {
    let server = Server {
        dispatcher,
        intake: Arc::new(Semaphore::new(MAX_INTAKE)),
    };
    Router::new()
        .route(LEASE_PATH, post(lease))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .route(COMPLETE_PATH, post(complete))
        .fallback(|| async {
            DispatchError::NotFound(format!(
                "no such endpoint; the dispatcher serves POST {LEASE_PATH}, {HEARTBEAT_PATH} and {COMPLETE_PATH}"
            ))
        })
        // The handlers read bodies themselves, after authentication, with their own caps.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(server)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A request that names its calling pod.
trait FromPod: DeserializeOwned {
    /// Largest body accepted.
    const MAX_BYTES: usize;
    fn caller(&self) -> &Caller;
}

impl FromPod for LeaseRequest {
    const MAX_BYTES: usize = MAX_REQUEST_BYTES;
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl FromPod for HeartbeatRequest {
    const MAX_BYTES: usize = MAX_REQUEST_BYTES;
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl FromPod for CompleteRequest {
    const MAX_BYTES: usize = MAX_RESULT_BYTES;
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// Authenticates the caller from the headers, then reads and parses the body.
async fn authenticated<T: FromPod>(
    server: &Server,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(T, Arc<Pod>), DispatchError> {
    let _permit = server.intake.try_acquire().map_err(|_| {
        DispatchError::Unavailable("the dispatcher is busy taking in requests; retry".into())
    })?;
    let caller = headers
        .get(CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Caller::from_header_value)
        .ok_or_else(|| {
            DispatchError::BadRequest(format!(
                "missing or malformed {CALLER_HEADER} header; send <namespace>/<pool>/<pod>"
            ))
        })?;
    let pod = server
        .dispatcher
        .authenticate(&caller, bearer(headers), Some(peer.ip().to_canonical()))
        .await?;
    let bytes = tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, T::MAX_BYTES))
        .await
        .map_err(|_| {
            DispatchError::BadRequest(format!(
                "the request body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| {
            DispatchError::TooLarge(format!(
                "the request body could not be read within its {} byte limit: {e}",
                T::MAX_BYTES
            ))
        })?;
    let request: T = serde_json::from_slice(&bytes)
        .map_err(|e| DispatchError::BadRequest(format!("invalid request body: {e}")))?;
    if request.caller() != &caller {
        return Err(DispatchError::BadRequest(format!(
            "the body names caller {}, the {CALLER_HEADER} header {}",
            request.caller().header_value(),
            caller.header_value()
        )));
    }
    Ok((request, pod))
}

/// Counts an error answer before it goes out.
fn counted<T>(server: &Server, result: Result<T, DispatchError>) -> Result<T, DispatchError> {
    if let Err(e) = &result {
        server.dispatcher.metrics.dispatcher_refused(e.code());
    }
    result
}

async fn lease(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DispatchError> {
    let answer = async {
        let (request, pod) = authenticated::<LeaseRequest>(&server, peer, &headers, body).await?;
        Ok(Json(server.dispatcher.lease(&pod, &request).await?).into_response())
    };
    counted(&server, answer.await)
}

async fn heartbeat(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DispatchError> {
    let answer = async {
        let (request, _) = authenticated::<HeartbeatRequest>(&server, peer, &headers, body).await?;
        Ok(Json(server.dispatcher.heartbeat(&request).await).into_response())
    };
    counted(&server, answer.await)
}

async fn complete(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DispatchError> {
    let answer = async {
        let (request, _) = authenticated::<CompleteRequest>(&server, peer, &headers, body).await?;
        Ok(Json(server.dispatcher.complete(&request).await?).into_response())
    };
    counted(&server, answer.await)
}
