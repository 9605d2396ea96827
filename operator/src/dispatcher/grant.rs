//! Handing out work: a pod's lease request waits (long-polls) until its pool has a job it may
//! run, and each job's lease is written to the job's status before the pod gets it.
//!
//! Jobs taken off the queue are marked as being granted while their lease is written. If the
//! request is dropped meanwhile (the pod gave up waiting, or is draining), [`Granting`] puts
//! every job not yet granted back in the queue, so none is stranded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;
use kube::api::Api;
use tracing::{debug, info, warn};
use zkfleet_contract::lease::{LeaseRef, LeaseRequest, LeaseResponse, LeasedJob};
use zkfleet_crds::v1alpha1::ProofJob;

use super::auth::serving;
use super::known_answer::Gate;
use super::state::{Held, InputCopy, PoolKey, State};
use super::{DispatchError, Dispatcher, served_version};
use crate::dispatcher::status::{self as job_status, Grant};
use crate::job::input;
use crate::job_trace;

/// How often a lease request of a pod whose known-answer check is out looks again.
const CHECK_POLL: Duration = Duration::from_secs(1);

/// Jobs a lease request took off the queue. Dropping it puts back the ones whose grant did not
/// finish, whether the request ended normally or was cancelled mid-write.
pub struct Granting<'a> {
    state: &'a Mutex<State>,
    uids: Vec<String>,
    lease_duration: Duration,
}

impl<'a> Granting<'a> {
    pub fn new(
        state: &'a Mutex<State>,
        jobs: &[std::sync::Arc<ProofJob>],
        lease_duration: Duration,
    ) -> Self {
        Self {
            state,
            uids: jobs.iter().filter_map(|j| j.uid()).collect(),
            lease_duration,
        }
    }
}

impl Drop for Granting<'_> {
    fn drop(&mut self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        for uid in &self.uids {
            // A no-op for jobs already granted or already put back.
            state.grant_abandoned(uid, now, self.lease_duration);
        }
    }
}

impl Dispatcher {
    /// Answers a lease request: up to `free_slots` jobs (at most the pool's slots per pod,
    /// less what the pod already holds), waiting up to `wait_seconds` for one.
    pub async fn lease(
        &self,
        pod: &Pod,
        request: &LeaseRequest,
    ) -> Result<LeaseResponse, DispatchError> {
        if !serving(pod) {
            return Err(DispatchError::Forbidden(format!(
                "pod {} is not Ready or is terminating, so it gets no new work",
                request.caller.pod
            )));
        }
        let key = PoolKey::new(&request.caller.namespace, &request.caller.pool);
        // The version the operator put in the pod's template, not what the pod says.
        let version = served_version(pod).unwrap_or_else(|| request.parameters_version.clone());
        let wait = Duration::from_secs(request.wait_seconds.into()).min(self.settings.max_wait);
        let until = Instant::now() + wait;
        let notify = self.wakeup(&key);
        loop {
            let notified = notify.notified();
            // A long poll outlives the check at its start: a pod that began terminating (or
            // stopped being Ready) meanwhile gets no more work.
            let still_serving = self
                .pod(&request.caller.namespace, &request.caller.pod)
                .is_some_and(|p| serving(&p));
            if !still_serving {
                return Ok(LeaseResponse::default());
            }
            // A pod of a pool with a known-answer check answers it before it gets jobs.
            let pool = self.pool(&key);
            let check = self.check_for(pool.as_deref(), &version);
            let gate = self.verification.checks.gate(
                &request.caller.namespace,
                &request.caller.pod,
                check,
                Instant::now(),
            );
            match (gate, check) {
                (Gate::Quarantined, _) => {
                    return Err(DispatchError::Forbidden(format!(
                        "pod {} is quarantined: it gets no more work",
                        request.caller.pod
                    )));
                }
                (Gate::Check, Some(check)) => {
                    if let Some(leased) = self.issue_check(check, &request.caller).await {
                        return Ok(LeaseResponse { jobs: vec![leased] });
                    }
                }
                _ => {}
            }
            let slots = if gate == Gate::Open {
                self.free_slots(&key, &request.caller.pod, request.free_slots)
            } else {
                0
            };
            let sharing = self.sharing(&key);
            let taken = if slots == 0 {
                Vec::new()
            } else {
                self.state.lock().expect("lock").take(
                    &key,
                    &request.caller.pod,
                    &version,
                    slots,
                    &sharing,
                    Instant::now(),
                )
            };
            let granting = Granting::new(&self.state, &taken, self.settings.lease_duration);
            // Each lease is its own status write, on its own job: write them together, so a
            // pod asking for many slots waits for one round trip, not one per job.
            let jobs: Vec<LeasedJob> = futures::future::join_all(
                taken
                    .iter()
                    .map(|job| self.grant(job, pod, &version, request)),
            )
            .await
            .into_iter()
            .flatten()
            .collect();
            drop(granting);
            if !jobs.is_empty() {
                return Ok(LeaseResponse { jobs });
            }
            let now = Instant::now();
            if now >= until {
                return Ok(LeaseResponse::default());
            }
            let backoff = if gate == Gate::Open {
                self.state
                    .lock()
                    .expect("lock")
                    .next_ready_in(&key, &version, &sharing, now)
                    .map(|d| d.max(Duration::from_millis(50)))
            } else {
                // Its check is out: nothing is taken until it is answered.
                Some(CHECK_POLL)
            };
            let sleep = backoff.unwrap_or(until - now).min(until - now);
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// How many jobs the pod may take now: what it asks for, but never more than its pool's
    /// `slotsPerReplica` less the leases it already holds, so one pod cannot drain a queue.
    fn free_slots(&self, key: &PoolKey, pod: &str, asked: u32) -> usize {
        let per_pod = self
            .pool(key)
            .map(|p| p.spec.slots_per_replica.max(1) as usize)
            .unwrap_or(1);
        let held = self.state.lock().expect("lock").held_by(key, pod);
        (asked.max(1) as usize).min(per_pod.saturating_sub(held))
    }

    /// Writes the lease of `job` to its status, then returns it for the pod. A job whose input
    /// cannot be read fails here with `InvalidInput`.
    async fn grant(
        &self,
        job: &ProofJob,
        pod: &Pod,
        version: &str,
        request: &LeaseRequest,
    ) -> Option<LeasedJob> {
        let uid = job.uid()?;
        // The job's own namespace, which is the pool's unless the pool is shared.
        let job_namespace = job.namespace().unwrap_or_default();
        let api: Api<ProofJob> = Api::namespaced(self.client.clone(), &job_namespace);
        let now = Time(Timestamp::now());
        // Read again (admission only checked it): inputs, Secrets included, are not kept in
        // memory while jobs wait, and a job may wait long.
        let input = match input::resolve(&self.client, job).await {
            Ok(input) => input,
            Err(input::InputError::Invalid(message)) => {
                let s = job_status::invalid(job, job_status::INVALID_INPUT, message, &now);
                match job_status::write(&api, job, s).await {
                    Ok(stored) => {
                        self.metrics
                            .job_finished(&stored, job_status::INVALID_INPUT);
                        job_trace::finished(&stored, job_status::INVALID_INPUT);
                        self.state.lock().expect("lock").attempt_recorded(
                            stored,
                            Duration::ZERO,
                            None,
                            Instant::now(),
                        );
                    }
                    Err(e) => debug!(error = %e, "could not fail the job; it is retried"),
                }
                return None;
            }
            Err(e) => {
                warn!(error = %e, "could not read a job's input; leaving it queued");
                self.state.lock().expect("lock").grant_abandoned(
                    &uid,
                    Instant::now() + Duration::from_secs(1),
                    self.settings.lease_duration,
                );
                return None;
            }
        };
        let limits = self.limits(job);
        let status = job.status.clone().unwrap_or_default();
        let attempt = job_status::current_attempt(&status) + 1;
        let key = PoolKey::of(job);
        // What was actually handed out, so a later job may reuse this proof (the input read at
        // admission may have changed since).
        let input_digest = self
            .pool_token(&key)
            .await
            .and_then(|token| input::digest(token.expose().as_bytes(), &input));
        let revision = self
            .pool(&key)
            .and_then(|p| p.status.clone())
            .and_then(|s| s.parameters)
            .and_then(|p| {
                [p.current, p.previous]
                    .into_iter()
                    .flatten()
                    .find(|r| r.version == version)
            });
        let lease_deadline = Timestamp::now()
            + SignedDuration::try_from(self.settings.lease_duration).unwrap_or_default();
        let grant = Grant {
            attempt,
            pod: request.caller.pod.clone(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            deadline: Time(lease_deadline),
            parameters_version: Some(version.to_string()),
            parameters_digest: revision
                .map(|r| r.digest)
                .or_else(|| Some(request.parameters_digest.clone())),
            input_digest,
        };
        let written = job_status::write(&api, job, job_status::leased(job, &grant, &now)).await;
        match written {
            Ok(stored) => {
                let granted_at = Instant::now();
                let queued_at = status.queued_at.as_ref().map(|t| t.0);
                if let Some(q) = queued_at
                    && let Ok(waited) = Duration::try_from(Timestamp::now().duration_since(q))
                {
                    self.metrics.dispatched(waited);
                }
                self.state.lock().expect("lock").granted(
                    stored,
                    Held {
                        pod: request.caller.pod.clone(),
                        attempt,
                        deadline: granted_at + self.settings.lease_duration,
                        timeout_at: granted_at + limits.timeout,
                        input: Some(InputCopy(Arc::new(input.clone()))),
                    },
                );
                info!(job = %job.name_any(), pod = %request.caller.pod, attempt, "leased");
                job_trace::leased(job, attempt, &request.caller.pod);
                let traceparent = Some(zkfleet_contract::trace::traceparent(&uid, attempt));
                Some(LeasedJob {
                    lease: LeaseRef { uid, attempt },
                    job: format!("{job_namespace}/{}", job.name_any()),
                    lease_seconds: self.settings.lease_duration.as_secs() as u32,
                    timeout_seconds: limits.timeout.as_secs() as u32,
                    input,
                    traceparent,
                })
            }
            Err(e) => {
                if job_status::is_conflict(&e) {
                    debug!(job = %job.name_any(), "lease lost a write race; re-reading the job");
                    // Put back first: the fresh copy then moves it wherever it now belongs.
                    self.state.lock().expect("lock").grant_abandoned(
                        &uid,
                        Instant::now(),
                        self.settings.lease_duration,
                    );
                    if let Ok(fresh) = api.get(&job.name_any()).await {
                        self.observe(fresh);
                    }
                } else if !job_status::is_not_found(&e) {
                    warn!(error = %e, "could not write a lease");
                }
                None
            }
        }
    }
}
