//! The admin HTTP router: `/healthz` (the process runs), `/readyz` (this replica is the leader,
//! so the operator's Service routes to it) and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Whether this replica holds the leader Lease.
    pub leader: Arc<AtomicBool>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.leader.load(Ordering::Acquire) {
        (StatusCode::OK, "leader\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: another replica holds the lease\n",
        )
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_while_leading() {
        let state = AdminState {
            leader: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::new()),
        };
        let app = router(state.clone());
        assert_eq!(get_status(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_status(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.leader.store(true, Ordering::Release);
        assert_eq!(get_status(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, body) = get_status(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("zkfleet_build_info"));
    }
}
