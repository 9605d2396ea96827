//! Writing how an attempt ended to the job's status: at the job's `resourceVersion`, re-read on
//! conflicts, and only while the attempt is still the job's current one, so a late or repeated
//! result never overwrites a newer attempt. Proofs too large for the status go to the artifact
//! store first, under the job's finalizer.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use serde_json::json;
use tracing::{info, warn};
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob, ProofJobStatus, ProofResult};

use super::state::{Held, Limits, PoolKey};
use super::{DispatchError, Dispatcher, phase_name, retry_backoff};
use crate::dispatcher::status::{self as job_status, AttemptFailure, Charge, Success};
use crate::job;
use crate::job_trace;

/// Most bytes of public signals and outputs kept on a status whose proof went to the artifact
/// store. An object is capped near 1.5 MiB by etcd; past this, a status write would fail for
/// ever, so they are kept in the artifact only.
pub const PUBLIC_ON_STATUS_MAX_BYTES: usize = 256 << 10;

impl Dispatcher {
    /// Writes a status built from the newest copy of the job, re-reading on conflicts, as long
    /// as `held` is still the job's current attempt.
    async fn write_attempt(
        &self,
        job: &ProofJob,
        held: &Held,
        build: impl Fn(&ProofJob) -> ProofJobStatus,
    ) -> Result<ProofJob, DispatchError> {
        let api: Api<ProofJob> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let mut current = job.clone();
        for _ in 0..5 {
            let status = current.status.clone().unwrap_or_default();
            // Current means running now: another leader may have ended this attempt (its lease
            // ran out) and queued the job again, with the attempt count unchanged.
            let ended = status
                .attempts
                .iter()
                .any(|a| a.attempt == held.attempt as i32 && a.outcome.is_some());
            let running = status.phase == Some(JobPhase::Running);
            if job_status::current_attempt(&status) != held.attempt || !running || ended {
                return Err(DispatchError::Stale(format!(
                    "attempt {} of job {} is no longer current",
                    held.attempt,
                    current.name_any()
                )));
            }
            match job_status::write(&api, &current, build(&current)).await {
                Ok(stored) => return Ok(stored),
                Err(e) if job_status::is_conflict(&e) => {
                    current = api.get(&current.name_any()).await.map_err(|e| {
                        if job_status::is_not_found(&e) {
                            DispatchError::NotFound(format!("job {} was deleted", job.name_any()))
                        } else {
                            DispatchError::Unavailable(format!("re-reading the job: {e}"))
                        }
                    })?;
                }
                Err(e) if job_status::is_not_found(&e) => {
                    return Err(DispatchError::NotFound(format!(
                        "job {} was deleted",
                        current.name_any()
                    )));
                }
                Err(e) => {
                    return Err(DispatchError::Unavailable(format!(
                        "writing the job's status: {e}"
                    )));
                }
            }
        }
        Err(DispatchError::Unavailable(
            "the job kept changing under the write; retry".into(),
        ))
    }

    /// Stores the result (on the status, or in the artifact store when large) and marks the
    /// job `Succeeded`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_success(
        &self,
        job: &ProofJob,
        held: &Held,
        limits: Limits,
        mut success: Success,
        proof: &serde_json::Value,
        public_signals: &[String],
        public_outputs: Option<&serde_json::Value>,
    ) -> Result<String, DispatchError> {
        let stored = self
            .store_result(job, proof, public_signals, public_outputs)
            .await?;
        let Some((result, stored_artifact)) = stored else {
            // Too large for the status, and nowhere durable to put it: retrying cannot help.
            let failure = AttemptFailure {
                outcome: AttemptOutcome::Failed,
                reason: "ResultTooLarge",
                message: format!(
                    "the proof and its public outputs are more than the {} bytes a status holds, and the operator has no durable artifact store: set the chart's artifacts.url (s3://, gs://, az://, or file:// with artifacts.existingClaim) or raise artifacts.inlineResultMaxBytes, then submit the job again",
                    self.settings.inline_result_max_bytes
                ),
                retryable: false,
            };
            return self
                .record_failure(
                    job,
                    held,
                    &failure,
                    &success.charge,
                    Limits {
                        max_retries: 0,
                        ..limits
                    },
                    None,
                )
                .await;
        };
        success.result = result;
        let now = Time(Timestamp::now());
        let written = self
            .write_attempt(job, held, |j| {
                job_status::succeeded(j, held.attempt, success.clone(), &now)
            })
            .await;
        let stored = match written {
            Ok(stored) => stored,
            Err(e) => {
                // The job went away while its proof was being stored: nothing will ever point at
                // the object, and the finalizer that would delete it may already have run.
                if matches!(e, DispatchError::NotFound(_)) && stored_artifact {
                    self.delete_stored(job).await;
                }
                return Err(e);
            }
        };
        self.metrics.job_finished(&stored, "Succeeded");
        job_trace::attempt_ended(
            &stored,
            held.attempt,
            &held.pod,
            "Succeeded",
            &success.charge,
            None,
        );
        job_trace::finished(&stored, "Succeeded");
        let key = PoolKey::of(job);
        self.metrics
            .attempt_charged(&key.namespace, &key.name, &success.charge);
        if let Some(created) = job.creation_timestamp()
            && let Ok(took) = Duration::try_from(Timestamp::now().duration_since(created.0))
        {
            self.metrics
                .job_succeeded_after(&key.namespace, &key.name, took);
        }
        info!(job = %job.name_any(), pod = %held.pod, attempt = held.attempt, "succeeded");
        let phase = phase_name(stored.status.as_ref().and_then(|s| s.phase));
        self.state.lock().expect("lock").attempt_recorded(
            stored,
            Duration::ZERO,
            None,
            Instant::now(),
        );
        // A namespace at its cap may now run another job; the pods waiting on the pool learn
        // it here rather than at the end of their long poll.
        if self.sharing(&key).has_caps() {
            self.wake(&key);
        }
        Ok(phase)
    }

    async fn delete_stored(&self, job: &ProofJob) {
        let (namespace, name, uid) = (
            job.namespace().unwrap_or_default(),
            job.name_any(),
            job.uid().unwrap_or_default(),
        );
        let Some(store) = &self.artifacts else { return };
        if let Err(e) = store.delete_for_job(&namespace, &name, &uid).await {
            warn!(error = %e, job = %name, "could not delete the proof of a deleted job");
        }
    }

    pub(super) async fn record_failure(
        &self,
        job: &ProofJob,
        held: &Held,
        failure: &AttemptFailure,
        charge: &Charge,
        limits: Limits,
        avoid_pod: Option<&str>,
    ) -> Result<String, DispatchError> {
        let now = Time(Timestamp::now());
        // A job about to fail for good for want of retries moves to its next fallback pool
        // instead, if it has one that can take it.
        let status = job.status.clone().unwrap_or_default();
        let used_up = failure.retryable
            && !job_status::is_disruption(&status, failure)
            && job_status::retries_used(&status) >= limits.max_retries;
        let next = if used_up {
            self.next_pool(job, &super::fallback::NamespaceLabels::default())
                .await
        } else {
            None
        };
        let stored = self
            .write_attempt(job, held, |j| {
                let (status, requeued) = job_status::attempt_failed(
                    j,
                    held.attempt,
                    failure,
                    charge,
                    limits.max_retries,
                    &now,
                );
                match &next {
                    Some(to) if !requeued && failure.retryable => {
                        let mut failed = j.clone();
                        failed.status = Some(status);
                        let from = PoolKey::of(j);
                        job_status::moved(
                            &failed,
                            (&to.namespace, &to.name),
                            held.attempt,
                            format!(
                                "attempt {} failed ({}) with the retries on ProverPool {}/{} used up; moved to its fallback pool {}/{}",
                                held.attempt, failure.message, from.namespace, from.name, to.namespace, to.name
                            ),
                            &now,
                        )
                    }
                    _ => status,
                }
            })
            .await?;
        let phase = stored.status.as_ref().and_then(|s| s.phase);
        job_trace::attempt_ended(
            &stored,
            held.attempt,
            &held.pod,
            &format!("{:?}", failure.outcome),
            charge,
            Some(failure.reason),
        );
        if phase == Some(JobPhase::Failed) {
            self.metrics.job_finished(&stored, failure.reason);
            job_trace::finished(&stored, failure.reason);
        }
        info!(job = %job.name_any(), pod = %held.pod, attempt = held.attempt, reason = failure.reason, phase = ?phase, "attempt failed");
        let backoff = retry_backoff(held.attempt);
        let key = PoolKey::of(&stored);
        self.metrics
            .attempt_charged(&key.namespace, &key.name, charge);
        if key != PoolKey::of(job) {
            // Moved to a fallback pool: the job leaves this pool's queue for that one's.
            self.observe(stored);
        } else {
            self.state.lock().expect("lock").attempt_recorded(
                stored,
                backoff,
                avoid_pod,
                Instant::now(),
            );
        }
        self.wake(&key);
        Ok(phase_name(phase))
    }

    /// The result as the status records it, and whether the proof went to the artifact store;
    /// `None` when it is too large for the status and there is no store.
    async fn store_result(
        &self,
        job: &ProofJob,
        proof: &serde_json::Value,
        public_signals: &[String],
        public_outputs: Option<&serde_json::Value>,
    ) -> Result<Option<(ProofResult, bool)>, DispatchError> {
        let public_signals = (!public_signals.is_empty() || public_outputs.is_none())
            .then(|| public_signals.to_vec());
        let public_outputs = public_outputs.and_then(|v| v.as_object().cloned());
        let public_size = json_len(&public_signals) + json_len(&public_outputs);
        let size = json_len(proof) + public_size;
        if size <= self.settings.inline_result_max_bytes {
            return Ok(Some((
                ProofResult {
                    proof: proof.as_object().cloned(),
                    public_signals,
                    public_outputs,
                    ..ProofResult::default()
                },
                false,
            )));
        }
        let Some(store) = &self.artifacts else {
            return Ok(None);
        };
        // The finalizer goes on before the artifact exists, so no stored proof outlives its job.
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<ProofJob> = Api::namespaced(self.client.clone(), &namespace);
        job::add_artifact_finalizer(&api, job)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => {
                    DispatchError::NotFound(format!("job {} was deleted", job.name_any()))
                }
                e => DispatchError::Unavailable(format!("adding the finalizer: {e}")),
            })?;
        let body = serde_json::to_vec(&json!({
            "proof": proof,
            "publicSignals": public_signals,
            "publicOutputs": public_outputs,
        }))
        .unwrap_or_default();
        let stored = store
            .put(
                &namespace,
                &job.name_any(),
                &job.uid().unwrap_or_default(),
                body,
            )
            .await
            .map_err(|e| DispatchError::Unavailable(format!("storing the proof: {e}")))?;
        // Public signals and outputs stay on the status (they are what a user reads) unless
        // they alone would make it too large to write; the artifact always has them.
        let keep_public = public_size <= PUBLIC_ON_STATUS_MAX_BYTES;
        Ok(Some((
            ProofResult {
                proof: None,
                public_signals: public_signals.filter(|_| keep_public),
                public_outputs: public_outputs.filter(|_| keep_public),
                location: Some(stored.location),
                sha256: Some(stored.sha256),
                size_bytes: Some(stored.size_bytes),
                reused_from: None,
            },
            true,
        )))
    }
}

/// Bytes of a value as JSON.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}
