//! The one proof runner. `POST /v1/prove` and agent mode both prove through [`run`]: a slot
//! of the pod's semaphore, the input checked by the proof system, the proof on a blocking
//! thread, a timeout, cancellation when the waiting side goes away, and the proofs metrics.
//! They differ only in how they get a slot (HTTP answers 429 at once; a leased job waits for
//! one) and in how they report the result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{Backend, BackendError, ProofInput, ProofOutput};
use crate::cancel::Cancel;
use crate::state::AppState;

/// A proof slot taken from the pod's semaphore; giving it back updates the free slots metric.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    state: Arc<AppState>,
    /// The attempt that pays for the exec provers the proof runs (agent mode).
    payer: Option<crate::usage::Attribution>,
}

impl Slot {
    /// A free slot now, or `None` when every slot is busy.
    pub fn try_take(state: &Arc<AppState>) -> Option<Self> {
        let permit = state.slots.clone().try_acquire_owned().ok()?;
        Some(Self::from_permit(permit, state))
    }

    /// Waits for a slot. `None` only if the slots were closed (they never are).
    pub async fn take(state: &Arc<AppState>) -> Option<Self> {
        let permit = state.slots.clone().acquire_owned().await.ok()?;
        Some(Self::from_permit(permit, state))
    }

    fn from_permit(permit: OwnedSemaphorePermit, state: &Arc<AppState>) -> Self {
        state.update_free_slots();
        Slot {
            permit: Some(permit),
            state: state.clone(),
            payer: None,
        }
    }

    /// The slot, with the exec provers of its proof charged to `payer` alone.
    pub fn paid_by(mut self, payer: crate::usage::Attribution) -> Self {
        self.payer = Some(payer);
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.state.update_free_slots();
    }
}

/// Why a run produced no proof.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("proof took longer than {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("prover task failed: {0}")]
    Task(String),
}

impl RunError {
    /// Stable code, the `outcome` label of the proofs metric and the `code` of errors.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Backend(e) => e.code(),
            RunError::Timeout(_) => "timeout",
            RunError::Task(_) => "internal",
        }
    }
}

/// Proves `input` with `system` in `slot`, for at most `timeout`.
///
/// The slot moves into the blocking task: a proof that outlives its timeout still holds its
/// slot until the CPU work really ends, which is soon, because returning (timeout) or being
/// dropped (a revoked lease, a client that hung up) raises the proof's cancel flag.
pub async fn run(
    state: &Arc<AppState>,
    system: Arc<dyn Backend>,
    input: ProofInput,
    slot: Slot,
    timeout: Duration,
) -> Result<ProofOutput, RunError> {
    let started = Instant::now();
    let result = run_inner(state, system, input, slot, timeout).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    state
        .metrics
        .proofs
        .with_label_values(&[state.backend_name, outcome])
        .inc();
    if result.is_ok() {
        state
            .metrics
            .proving_seconds
            .with_label_values(&[state.backend_name])
            .observe(started.elapsed().as_secs_f64());
    }
    result
}

async fn run_inner(
    state: &Arc<AppState>,
    system: Arc<dyn Backend>,
    input: ProofInput,
    slot: Slot,
    timeout: Duration,
) -> Result<ProofOutput, RunError> {
    system.check(&input)?;
    state.metrics.active_proofs.inc();
    let st = state.clone();
    let cancel = Cancel::new();
    let _cancel_on_drop = cancel.on_drop();
    let job = tokio::task::spawn_blocking(move || {
        let _payer = slot
            .payer
            .as_ref()
            .map(crate::usage::Attribution::on_this_thread);
        let out = system.prove(input, &cancel);
        st.metrics.active_proofs.dec();
        drop(slot);
        out
    });
    match tokio::time::timeout(timeout, job).await {
        Err(_) => Err(RunError::Timeout(timeout)),
        Ok(Err(e)) => Err(RunError::Task(e.to_string())),
        Ok(Ok(out)) => Ok(out?),
    }
}
