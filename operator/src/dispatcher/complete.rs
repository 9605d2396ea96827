//! A pod's result: matched to the lease it holds, verified, and recorded on the job's status.
//! A proof that does not verify fails the attempt, flags the pod on its pool, and sends the job
//! to another pod.

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use tracing::{debug, info, warn};
use zkfleet_contract::lease::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, JobInput, Outcome,
};
use zkfleet_crds::v1alpha1::{AttemptOutcome, ProofJob, ProofJobStatus, Verification};

use super::state::{Held, PoolKey};
use super::verify::NoVerdict;
use super::{DispatchError, Dispatcher, phase_name, usage};
use crate::dispatcher::status::{self as job_status, AttemptFailure, Success};
use crate::job::input;
use crate::job_trace;

impl Dispatcher {
    /// Renews the pod's leases and says which it no longer holds. A lease newer than this
    /// dispatcher's copy of its job (granted by a former leader) is neither: the job is read
    /// again, and the next heartbeat renews it.
    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> HeartbeatResponse {
        let now = Instant::now();
        // Known-answer checks are held apart from the jobs.
        let (checks, leases): (Vec<_>, Vec<_>) = request
            .leases
            .iter()
            .cloned()
            .partition(|l| self.verification.checks.is_check(&request.caller, &l.uid));
        let mut revoked_checks: Vec<_> = checks
            .into_iter()
            .filter(|l| {
                !self.verification.checks.renew(
                    &request.caller,
                    l,
                    now + self.settings.lease_duration,
                )
            })
            .collect();
        let (mut revoked, lagging) = {
            let mut state = self.state.lock().expect("lock");
            let revoked =
                state.heartbeat(&request.caller, &leases, self.settings.lease_duration, now);
            (revoked, state.due_reread(&leases, &request.caller, now))
        };
        revoked.append(&mut revoked_checks);
        for lease in &revoked {
            info!(uid = %lease.uid, attempt = lease.attempt, pod = %request.caller.pod, "lease revoked");
        }
        self.reread(&lagging).await;
        HeartbeatResponse { revoked }
    }

    /// Reads jobs again whose copies here lag behind what a pod reports.
    async fn reread(&self, jobs: &[std::sync::Arc<zkfleet_crds::v1alpha1::ProofJob>]) {
        for job in jobs {
            let api: kube::Api<zkfleet_crds::v1alpha1::ProofJob> =
                kube::Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
            match api.get_opt(&job.name_any()).await {
                Ok(Some(fresh)) => self.observe(fresh),
                Ok(None) => self.forget(job),
                Err(e) => {
                    debug!(error = %e, "could not read a job again; the next heartbeat retries")
                }
            }
        }
    }

    /// Records how a leased attempt ended: verifies a proof before the job succeeds.
    pub async fn complete(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, DispatchError> {
        if self
            .verification
            .checks
            .is_check(&request.caller, &request.lease.uid)
        {
            return self.complete_check(request).await;
        }
        let pod = &request.caller.pod;
        let holder = self
            .state
            .lock()
            .expect("lock")
            .holder(&request.lease, &request.caller);
        let Some((job, held, limits)) = holder else {
            let lagging = {
                let mut state = self.state.lock().expect("lock");
                state.lags(&request.lease, &request.caller).then(|| {
                    state.due_reread(
                        std::slice::from_ref(&request.lease),
                        &request.caller,
                        Instant::now(),
                    )
                })
            };
            if let Some(due) = lagging {
                // Granted by a former leader and not seen here yet: read it, and have the pod
                // send the result again rather than drop a proof it made.
                self.reread(&due).await;
                return Err(DispatchError::Unavailable(format!(
                    "attempt {} of job {} is newer than this dispatcher has seen; send it again",
                    request.lease.attempt, request.lease.uid
                )));
            }
            return self.already_recorded(request);
        };
        let key = PoolKey::of(&job);
        let reported = match &request.outcome {
            Outcome::Proved { usage, .. } | Outcome::Failed { usage, .. } => usage.as_ref(),
        };
        let charge = usage::charge(
            self.pool(&key).as_deref(),
            &job,
            held.attempt,
            reported,
            Timestamp::now(),
        );
        let phase = match &request.outcome {
            Outcome::Proved {
                proof,
                public_signals,
                public_outputs,
                proving_millis,
                ..
            } => {
                let pool = self.pool(&key).ok_or_else(|| {
                    DispatchError::Unavailable(format!("pool {} is not known yet", key.name))
                })?;
                let verify = pool.spec.job_defaults.as_ref().is_none_or(|d| d.verify);
                let verification = if verify {
                    // The statement is derived from the job's input as it was leased.
                    let input = match self.leased_input(&job, &key, &held).await {
                        Ok(input) => input,
                        Err(LeasedInput::Unavailable(e)) => return Err(e),
                        Err(LeasedInput::Changed(failure)) => {
                            return Ok(CompleteResponse {
                                phase: self
                                    .record_failure(&job, &held, &failure, &charge, limits, None)
                                    .await?,
                                duplicate: false,
                            });
                        }
                    };
                    let started = Instant::now();
                    let checked = self
                        .verdict(
                            &pool,
                            &Self::version_of(&pool, &job),
                            &input,
                            proof,
                            public_signals,
                            public_outputs.as_ref(),
                        )
                        .await;
                    let checked = match checked {
                        Ok(c) => c,
                        Err(NoVerdict::Unavailable(e)) => return Err(e),
                        Err(NoVerdict::Misconfigured(why)) => {
                            warn!(job = %job.name_any(), %why, "no verifying key: the attempt fails");
                            let failure = AttemptFailure {
                                outcome: AttemptOutcome::Failed,
                                reason: "VerifyingKeyUnavailable",
                                message: format!(
                                    "the proof could not be checked: {why}; fix the pool's parameters, then submit the job again"
                                ),
                                retryable: true,
                            };
                            return Ok(CompleteResponse {
                                phase: self
                                    .record_failure(&job, &held, &failure, &charge, limits, None)
                                    .await?,
                                duplicate: false,
                            });
                        }
                    };
                    let took = started.elapsed();
                    let millis = took.as_millis() as i64;
                    job_trace::verified(
                        &job,
                        held.attempt,
                        &checked.verifier,
                        took,
                        checked.verdict.as_ref().err().map(|why| why.to_string()),
                    );
                    if let Err(why) = &checked.verdict {
                        self.metrics.proof_rejected(&key.namespace, &key.name);
                        let status = job.status.clone().unwrap_or_default();
                        let failure = rejection(&status, pod, why, checked.input_rejected);
                        warn!(job = %job.name_any(), %pod, verifier = %checked.verifier, reason = failure.reason, "proof rejected");
                        return Ok(CompleteResponse {
                            phase: self
                                .record_failure(&job, &held, &failure, &charge, limits, Some(pod))
                                .await?,
                            duplicate: false,
                        });
                    }
                    Verification {
                        verified: true,
                        verifier_millis: Some(millis),
                        verifier: Some(checked.verifier),
                        skipped: false,
                        statement: checked.statement,
                    }
                } else {
                    Verification {
                        verified: false,
                        skipped: true,
                        ..Verification::default()
                    }
                };
                self.verification.checks.proved(&key.namespace, pod);
                let verified = verification.verified;
                let success = Success {
                    result: Default::default(),
                    verification,
                    proving_millis: *proving_millis as i64,
                    charge,
                };
                // The verified proof is the evidence, whether or not the status write below
                // succeeds (a repeat upload blames no pod twice): so a job seen Succeeded has its
                // earlier bad provers flagged already.
                if verified {
                    self.blame_rejected_pods(&key, &job, pod).await;
                }
                self.record_success(
                    &job,
                    &held,
                    limits,
                    success,
                    proof,
                    public_signals,
                    public_outputs.as_ref(),
                )
                .await?
            }
            Outcome::Failed {
                code,
                message,
                retryable,
                ..
            } => {
                let failure = AttemptFailure {
                    outcome: AttemptOutcome::Failed,
                    reason: match (*retryable, code.as_str()) {
                        (true, _) => "ProverError",
                        // The prover ran the job's own input and it refused it (a failed MASM
                        // assertion, a trace Stone cannot prove).
                        (false, "input_rejected") => job_status::INPUT_REJECTED,
                        (false, _) => job_status::INVALID_INPUT,
                    },
                    message: format!("{code}: {message}"),
                    retryable: *retryable,
                };
                self.record_failure(&job, &held, &failure, &charge, limits, None)
                    .await?
            }
        };
        Ok(CompleteResponse {
            phase,
            duplicate: false,
        })
    }

    /// A result for a lease the dispatcher no longer holds: a repeat of one this pod's own
    /// report already recorded (200, so the pod stops retrying), or a stale one (409): another
    /// pod's lease, an older attempt, or a lease that ran out before the result came.
    fn already_recorded(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, DispatchError> {
        let job = self.state.lock().expect("lock").job(&request.lease.uid);
        let caller_pool = PoolKey::new(&request.caller.namespace, &request.caller.pool);
        let Some(job) = job.filter(|j| PoolKey::of(j) == caller_pool) else {
            return Err(DispatchError::NotFound(format!(
                "job {} does not exist (deleted?)",
                request.lease.uid
            )));
        };
        let status = job.status.clone().unwrap_or_default();
        if recorded_from_report(&status, request) {
            return Ok(CompleteResponse {
                phase: phase_name(status.phase),
                duplicate: true,
            });
        }
        Err(DispatchError::Stale(format!(
            "attempt {} of job {} is not leased to pod {} (the job is at attempt {}); the result is dropped",
            request.lease.attempt,
            job.name_any(),
            request.caller.pod,
            job_status::current_attempt(&status)
        )))
    }

    /// The job's input as it was leased for the attempt now ending: read again, and checked
    /// against the digest its lease recorded, since the statement is derived from it.
    async fn leased_input(
        &self,
        job: &ProofJob,
        key: &PoolKey,
        held: &Held,
    ) -> Result<JobInput, LeasedInput> {
        // Granted here: the input as it was handed out, with no read of the API server.
        if let Some(leased) = &held.input {
            return Ok((*leased.0).clone());
        }
        // Granted by a former leader: read again, and the input must be the one leased.
        let changed = |message: String| {
            LeasedInput::Changed(AttemptFailure {
                outcome: AttemptOutcome::Failed,
                reason: "InputChanged",
                message,
                retryable: true,
            })
        };
        let input = match input::resolve(&self.client, job).await {
            Ok(input) => input,
            Err(input::InputError::Invalid(why)) => {
                return Err(changed(format!(
                    "the job's input changed while it was proved and can no longer be read ({why}); it is proved again once it can"
                )));
            }
            Err(e) => {
                return Err(LeasedInput::Unavailable(DispatchError::Unavailable(
                    format!(
                        "cannot read the job's input to check the proof against it ({e}); the result is kept by the pod until it can"
                    ),
                )));
            }
        };
        let leased = job.status.as_ref().and_then(|s| s.input_digest.clone());
        if let (Some(leased), Some(token)) = (leased, self.pool_token(key).await)
            && input::digest(token.expose().as_bytes(), &input) != Some(leased)
        {
            return Err(changed(
                "the job's input (its ConfigMap or Secret) changed while it was proved; it is proved again with the new input".into(),
            ));
        }
        Ok(input)
    }

    /// The job just verified from `prover`: the pods whose proofs of it were rejected earlier
    /// are now isolated by evidence, so each is flagged and the rejection counted against it
    /// (once per attempt) towards the pool's quarantine.
    async fn blame_rejected_pods(&self, key: &PoolKey, job: &ProofJob, prover: &str) {
        let uid = job.uid().unwrap_or_default();
        let status = job.status.clone().unwrap_or_default();
        for attempt in &status.attempts {
            let Some(pod) = attempt.pod.as_deref().filter(|p| *p != prover) else {
                continue;
            };
            let in_pool = self
                .pod(&key.namespace, pod)
                .is_some_and(|p| p.labels().get(crate::build::POOL_LABEL) == Some(&key.name));
            if attempt.outcome != Some(AttemptOutcome::VerificationFailed) || !in_pool {
                continue;
            }
            warn!(job = %job.name_any(), %pod, %prover, "a pod's proof was rejected for a job another pod proved: the pod is flagged");
            self.flag(
                key,
                pod,
                "VerificationFailed",
                Some(format!(
                    "its proof of job {}/{} (attempt {}) was rejected, and pod {prover} then proved the same job",
                    job.namespace().unwrap_or_default(),
                    job.name_any(),
                    attempt.attempt
                )),
            );
            self.count_rejection(key, pod, &uid, attempt.attempt).await;
        }
    }

    /// Lists `pod` on its pool's `status.flaggedPods` (one entry per pod, the newest kept).
    pub(super) fn flag(&self, pool: &PoolKey, pod: &str, reason: &str, message: Option<String>) {
        let node = self
            .pod(&pool.namespace, pod)
            .and_then(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()));
        self.verification.flag(pool, pod, node, reason, message);
        // The job that was rejected may go back to Queued within the reaper's second, leaving
        // the pool's counts as they were: the flag itself asks for the pool's status.
        self.load_changed(pool);
    }
}

/// Why the job's input could not give the proof to check against.
enum LeasedInput {
    /// For now: the pod keeps the result and uploads it again.
    Unavailable(DispatchError),
    /// It changed since the lease: this attempt proved something else; no one is to blame.
    Changed(AttemptFailure),
}

/// What a rejected proof from `pod` means for its job. No pod is blamed here: a rejection
/// counts against a pod only once another pod proves the same job. The input is to blame when
/// the verifier derives no statement from it, or when a proof of the job from another pod was
/// rejected before: then the job fails `InputRejected` and is not retried.
pub fn rejection(
    status: &ProofJobStatus,
    pod: &str,
    why: &str,
    input_rejected: bool,
) -> AttemptFailure {
    let input_fault = |message: String| AttemptFailure {
        outcome: AttemptOutcome::VerificationFailed,
        reason: job_status::INPUT_REJECTED,
        message,
        retryable: false,
    };
    if input_rejected {
        return input_fault(format!(
            "{why}; fix the job's input and submit the job again"
        ));
    }
    let other = status.attempts.iter().find_map(|a| {
        a.pod
            .as_deref()
            .filter(|p| *p != pod && a.outcome == Some(AttemptOutcome::VerificationFailed))
    });
    if let Some(other) = other {
        return input_fault(format!(
            "proofs of this job from two different pods ({other} and {pod}) were rejected, so its input is the likely cause and no pod is blamed: check that the input satisfies the circuit or program (a witness of the right length whose values break a constraint proves to a proof that fails). The last rejection: {why}"
        ));
    }
    AttemptFailure {
        outcome: AttemptOutcome::VerificationFailed,
        reason: "ProofRejected",
        message: format!(
            "the proof from pod {pod} was rejected: {why}; the job is retried on another pod"
        ),
        retryable: true,
    }
}

/// Whether the attempt `request` names was recorded from a report of this same pod (a repeat
/// upload). An attempt the dispatcher ended itself (lease expired, timed out) was not: the
/// late result is stale.
pub fn recorded_from_report(status: &ProofJobStatus, request: &CompleteRequest) -> bool {
    status.attempts.iter().any(|a| {
        a.attempt == request.lease.attempt as i32
            && a.pod.as_deref() == Some(request.caller.pod.as_str())
            && matches!(
                a.outcome,
                Some(
                    AttemptOutcome::Succeeded
                        | AttemptOutcome::Failed
                        | AttemptOutcome::VerificationFailed
                )
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use zkfleet_contract::lease::{Caller, LeaseRef};

    fn request(pod: &str, attempt: u32) -> CompleteRequest {
        CompleteRequest {
            caller: Caller {
                namespace: "team".into(),
                pool: "cpu".into(),
                pod: pod.into(),
            },
            lease: LeaseRef {
                uid: "u".into(),
                attempt,
            },
            outcome: Outcome::Failed {
                code: "x".into(),
                message: "y".into(),
                retryable: true,
                usage: None,
            },
        }
    }

    fn status(outcome: &str) -> ProofJobStatus {
        serde_json::from_value(json!({
            "phase": "Queued", "attemptCount": 1,
            "attempts": [{"attempt": 1, "pod": "p1", "outcome": outcome}],
        }))
        .unwrap()
    }

    #[test]
    fn a_repeat_of_a_recorded_report_is_a_duplicate() {
        for outcome in ["Succeeded", "Failed", "VerificationFailed"] {
            assert!(recorded_from_report(&status(outcome), &request("p1", 1)));
        }
        assert!(!recorded_from_report(
            &status("Succeeded"),
            &request("p2", 1)
        ));
        assert!(!recorded_from_report(
            &status("Succeeded"),
            &request("p1", 2)
        ));
    }

    fn attempts(list: serde_json::Value) -> ProofJobStatus {
        serde_json::from_value(json!({"phase": "Running", "attemptCount": 2, "attempts": list}))
            .unwrap()
    }

    #[test]
    fn a_first_rejection_retries_the_job_elsewhere_and_blames_no_one_yet() {
        let status = attempts(json!([
            {"attempt": 1, "pod": "p1", "outcome": "LeaseExpired"},
            {"attempt": 2, "pod": "p2"},
        ]));
        let f = rejection(&status, "p2", "it did not verify", false);
        assert_eq!((f.reason, f.retryable), ("ProofRejected", true));
        // The same pod rejected again is no evidence against the input.
        let status = attempts(json!([
            {"attempt": 1, "pod": "p2", "outcome": "VerificationFailed"},
            {"attempt": 2, "pod": "p2"},
        ]));
        let f = rejection(&status, "p2", "it did not verify", false);
        assert_eq!((f.reason, f.retryable), ("ProofRejected", true));
    }

    #[test]
    fn rejections_on_two_pods_or_an_input_without_a_statement_fail_the_job_for_its_input() {
        let status = attempts(json!([
            {"attempt": 1, "pod": "p1", "outcome": "VerificationFailed"},
            {"attempt": 2, "pod": "p2"},
        ]));
        let f = rejection(&status, "p2", "it did not verify", false);
        assert_eq!((f.reason, f.retryable), (job_status::INPUT_REJECTED, false));
        assert_eq!(f.outcome, AttemptOutcome::VerificationFailed);
        assert!(f.message.contains("p1 and p2"), "{}", f.message);
        let f = rejection(&ProofJobStatus::default(), "p1", "no signal x", true);
        assert_eq!((f.reason, f.retryable), (job_status::INPUT_REJECTED, false));
        assert!(f.message.contains("fix the job's input"), "{}", f.message);
    }

    #[test]
    fn a_result_after_the_lease_ran_out_is_stale_not_a_duplicate() {
        for outcome in ["LeaseExpired", "TimedOut"] {
            assert!(
                !recorded_from_report(&status(outcome), &request("p1", 1)),
                "{outcome}"
            );
        }
    }
}
