//! The dispatcher's HTTP API for prover pods (the lease protocol of
//! [`zkfleet_contract::lease`]): every request authenticated with the pool token and checked to
//! come from a pod of the pool; errors as JSON `{code, message}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use zkfleet_contract::lease::{
    COMPLETE_PATH, Caller, CompleteRequest, HEARTBEAT_PATH, HeartbeatRequest, LEASE_PATH,
    LeaseRequest,
};

use super::{DispatchError, Dispatcher};

/// Largest request body: a result carries one proof.
const MAX_BODY_BYTES: usize = 16 << 20;

impl IntoResponse for DispatchError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Stale(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
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

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// caller's address can be checked against its pod.
pub fn router(dispatcher: Arc<Dispatcher>) -> Router {
    Router::new()
        .route(LEASE_PATH, post(lease))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .route(COMPLETE_PATH, post(complete))
        .fallback(|| async {
            DispatchError::NotFound(format!(
                "no such endpoint; the dispatcher serves POST {LEASE_PATH}, {HEARTBEAT_PATH} and {COMPLETE_PATH}"
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(dispatcher)
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
trait FromPod {
    fn caller(&self) -> &Caller;
}

impl FromPod for LeaseRequest {
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl FromPod for HeartbeatRequest {
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl FromPod for CompleteRequest {
    fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// The request body and its calling pod, once the pod is authenticated as one of its pool's.
async fn authenticated<T: FromPod>(
    d: &Dispatcher,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Result<Json<T>, JsonRejection>,
) -> Result<(T, Arc<Pod>), DispatchError> {
    let Json(request) = body.map_err(|e| {
        DispatchError::BadRequest(format!("invalid request body: {}", e.body_text()))
    })?;
    let pod = d
        .authenticate(
            request.caller(),
            bearer(headers),
            Some(peer.ip().to_canonical()),
        )
        .await?;
    Ok((request, pod))
}

async fn lease(
    State(d): State<Arc<Dispatcher>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<LeaseRequest>, JsonRejection>,
) -> Result<Response, DispatchError> {
    let (request, pod) = authenticated(&d, peer, &headers, request).await?;
    Ok(Json(d.lease(&pod, &request).await?).into_response())
}

async fn heartbeat(
    State(d): State<Arc<Dispatcher>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> Result<Response, DispatchError> {
    let (request, _) = authenticated(&d, peer, &headers, request).await?;
    Ok(Json(d.heartbeat(&request)).into_response())
}

async fn complete(
    State(d): State<Arc<Dispatcher>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<Response, DispatchError> {
    let (request, _) = authenticated(&d, peer, &headers, request).await?;
    Ok(Json(d.complete(&request).await?).into_response())
}
