//! The prover's shared state: the loaded proof system, the proving slots, the metrics and
//! the drain signal, read by the HTTP server, the runner and agent mode alike.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use tokio::sync::Semaphore;

use crate::backend::{Backend, ParamsError};
use crate::metrics::Metrics;
use crate::params::Fetched;

/// Where parameter loading stands.
pub enum Params {
    Loading,
    Ready {
        backend: Arc<dyn Backend>,
        digest: String,
    },
    Failed(ParamsError),
}

/// Shared state of the server.
pub struct AppState {
    pub backend_name: &'static str,
    pub parameters_version: String,
    pub params: RwLock<Params>,
    pub slots: Arc<Semaphore>,
    pub total_slots: usize,
    pub proof_timeout: Duration,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
    /// The parameter files as fetched and checked (when a source is configured).
    pub parameter_files: RwLock<Option<Fetched>>,
    /// How long the last parameters load took, fetching included.
    pub load_seconds: RwLock<Option<f64>>,
    /// Flips to true once, when draining starts; read by request handlers and awaited by
    /// the tasks that stop on it.
    pub(crate) drain_signal: tokio::sync::watch::Sender<bool>,
    /// Orders updates of the free slots metric, so the last one written is the latest count.
    pub(crate) free_slots_update: std::sync::Mutex<()>,
    /// This pod's name, sent with every answer ([`ANSWERED_BY_HEADER`]); set once at start.
    pub(crate) answered_by: std::sync::OnceLock<HeaderValue>,
}

impl AppState {
    pub fn new(
        backend_name: &'static str,
        parameters_version: String,
        slots: usize,
        proof_timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<Arc<Self>, prometheus::Error> {
        let metrics = Metrics::new()?;
        metrics.free_slots.set(slots as i64);
        Ok(Arc::new(AppState {
            backend_name,
            parameters_version,
            params: RwLock::new(Params::Loading),
            slots: Arc::new(Semaphore::new(slots)),
            total_slots: slots,
            proof_timeout,
            max_body_bytes,
            metrics,
            parameter_files: RwLock::new(None),
            load_seconds: RwLock::new(None),
            drain_signal: tokio::sync::watch::Sender::new(false),
            free_slots_update: std::sync::Mutex::new(()),
            answered_by: std::sync::OnceLock::new(),
        }))
    }

    /// Names the pod in every answer from now on (`POD_NAME`, from the Downward API). A name
    /// that is no valid header value is left out.
    pub fn set_pod_name(&self, pod: &str) {
        if let Ok(value) = HeaderValue::from_str(pod) {
            let _ = self.answered_by.set(value);
        }
    }

    /// Records the outcome of loading parameters.
    pub fn set_params(
        &self,
        loaded: Result<(Arc<dyn Backend>, String), ParamsError>,
        seconds: f64,
    ) {
        self.metrics.parameters_load_seconds.set(seconds);
        if let Ok(mut s) = self.load_seconds.write() {
            *s = Some(seconds);
        }
        let next = match loaded {
            Ok((backend, digest)) => Params::Ready { backend, digest },
            Err(e) => Params::Failed(e),
        };
        if let Ok(mut p) = self.params.write() {
            *p = next;
        }
    }

    /// Records the parameter files once they are fetched and checked.
    pub fn set_parameter_files(&self, fetched: Fetched) {
        self.metrics.parameters_fetch_seconds.set(fetched.seconds);
        self.metrics
            .parameters_downloaded_bytes
            .inc_by(fetched.downloaded_bytes());
        if let Ok(mut f) = self.parameter_files.write() {
            *f = Some(fetched);
        }
    }

    pub fn start_draining(&self) {
        self.drain_signal.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain_signal.borrow()
    }

    /// Resolves once draining has started (at once if it already has).
    pub async fn drained(&self) {
        let mut rx = self.drain_signal.subscribe();
        // The sender lives as long as `self`, so this cannot fail while borrowed.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// The loaded backend and the proving key digest, once parameters are ready.
    pub fn ready_backend(&self) -> Option<(Arc<dyn Backend>, String)> {
        match self.params.read().as_deref() {
            Ok(Params::Ready { backend, digest }) => Some((backend.clone(), digest.clone())),
            _ => None,
        }
    }

    /// Publishes the number of free slots after a slot was taken or given back.
    pub fn update_free_slots(&self) {
        let _order = self
            .free_slots_update
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.metrics
            .free_slots
            .set(self.slots.available_permits() as i64);
    }
}
