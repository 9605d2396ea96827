//! Cooperative cancellation of a proof that is already running.
//!
//! Proofs run on blocking threads that no async runtime can interrupt. When the
//! dispatcher revokes a lease (its job was deleted), a job's timeout passes, or an HTTP
//! client goes away, the waiting side drops its future; the [`CancelOnDrop`] guard it held
//! then raises the flag, and the prover stops at its next checkpoint: between proving
//! phases and MSM windows for Groth16, or by killing the child process for `exec`.
//! Without this, a cancelled proof keeps burning the cores (or the GPU) that the freed
//! slot has already promised to the next job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag shared by the side that waits for a proof and the thread that makes it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the proof to stop at its next checkpoint.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels when dropped. Dropped after the proof has ended, it changes
    /// nothing: no one reads the flag any more.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped: held by the future that awaits a proof, so
/// dropping that future (revocation, timeout, disconnect) stops the proof.
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_cancels_when_dropped() {
        let cancel = Cancel::new();
        let guard = cancel.on_drop();
        assert!(!cancel.is_cancelled());
        drop(guard);
        assert!(cancel.is_cancelled());
    }
}
