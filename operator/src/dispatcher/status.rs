//! ProofJob status transitions, as pure functions of the current status, and the one place
//! that writes a job's status.
//!
//! Every write replaces the status at the job's `resourceVersion`, so two writers (the job
//! controller and the dispatcher) can never overwrite each other blindly: the loser gets a
//! conflict, re-reads the job and decides again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use zkfleet_crds::v1alpha1::conditions::{self, new_condition, status as condition_status};
use zkfleet_crds::v1alpha1::{
    Attempt, AttemptOutcome, CurrentPool, JobPhase, JobUsage, MAX_DISRUPTIONS, Pricing, ProofJob,
    ProofJobStatus, ProofResult, ReusedFrom, Verification,
};

/// Most attempts kept on the status (the CRD's bound); `attemptCount` keeps the total.
pub const MAX_LISTED_ATTEMPTS: usize = 16;

/// Condition that is `True` once the job succeeded (`kubectl wait --for=condition=Complete`).
pub const COMPLETE: &str = "Complete";
/// Condition that is `True` once the job failed for good.
pub const FAILED: &str = "Failed";

/// `reason` of a job whose spec cannot run (unknown pool, wrong backend, unserved version).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// `reason` of a job whose input is missing, too large or malformed.
pub const INVALID_INPUT: &str = "InvalidInput";
/// `reason` of a job whose proofs were refused for its input's sake: the verifier could derive
/// no statement from the input, or proofs of it from two different pods were rejected.
pub const INPUT_REJECTED: &str = "InputRejected";
/// Reason of a job whose pool is in another namespace that does not admit the job's own.
pub const NAMESPACE_NOT_ADMITTED: &str = "NamespaceNotAdmitted";

/// A job that entered the queue.
pub fn queued(job: &ProofJob, now: &Time) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.observed_generation = job.metadata.generation;
    status.phase = Some(JobPhase::Queued);
    status.queued_at.get_or_insert_with(|| now.clone());
    status
}

/// A job that can never run: `reason` says which part of the spec or input, `message` what to
/// change. Not retried.
pub fn invalid(job: &ProofJob, reason: &str, message: String, now: &Time) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.observed_generation = job.metadata.generation;
    finish_failed(&mut status, reason, message, false, now);
    status
}

/// Who a lease was granted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub attempt: u32,
    pub pod: String,
    pub node: Option<String>,
    pub deadline: Time,
    pub parameters_version: Option<String>,
    pub parameters_digest: Option<String>,
    /// Keyed digest of the input handed to the pod (see [`crate::job::input::digest`]).
    pub input_digest: Option<String>,
}

/// A job whose next attempt was just leased to a pod.
pub fn leased(job: &ProofJob, grant: &Grant, now: &Time) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.phase = Some(JobPhase::Running);
    status.attempt_count = Some(grant.attempt as i32);
    status.start_time.get_or_insert_with(|| now.clone());
    status.parameters_version = grant.parameters_version.clone();
    status.parameters_digest = grant.parameters_digest.clone();
    status.input_digest = grant.input_digest.clone();
    status.attempts.push(Attempt {
        attempt: grant.attempt as i32,
        pod: Some(grant.pod.clone()),
        node: grant.node.clone(),
        start_time: Some(now.clone()),
        lease_deadline: Some(grant.deadline.clone()),
        ..Attempt::default()
    });
    let excess = status.attempts.len().saturating_sub(MAX_LISTED_ATTEMPTS);
    status.attempts.drain(..excess);
    status
}

/// The attempt now running, as the status records it.
pub fn current_attempt(status: &ProofJobStatus) -> u32 {
    status.attempt_count.unwrap_or(0).max(0) as u32
}

/// A proof that verified (or was not checked, when verification is off for the pool).
#[derive(Clone, Debug, PartialEq)]
pub struct Success {
    pub result: ProofResult,
    pub verification: Verification,
    pub proving_millis: i64,
    /// What the successful attempt used.
    pub charge: Charge,
}

/// What one attempt used, and the prices of its pool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Charge {
    /// How long the attempt held its slot: the pod's report, or the lease's span when the pod
    /// was lost.
    pub wall_millis: i64,
    /// When the attempt ended: its result arrived, or its lease lapsed.
    pub ended_at: Option<std::time::SystemTime>,
    /// Measured by the prover; unknown when its pod ended without reporting.
    pub cpu_millis: Option<i64>,
    /// GPU time the attempt held.
    pub gpu_millis: i64,
    /// The pool's prices, when it has them.
    pub pricing: Option<Pricing>,
}

impl Charge {
    /// What `cpu_millis` and `gpu_millis` cost at this charge's prices; `None` without prices.
    pub fn cost_of(&self, cpu_millis: i64, gpu_millis: i64) -> Option<f64> {
        let (gpu_hour, cpu_hour) = self.pricing.as_ref()?.hourly();
        const MILLIS_PER_HOUR: f64 = 3_600_000.0;
        Some(
            gpu_millis as f64 / MILLIS_PER_HOUR * gpu_hour
                + cpu_millis as f64 / MILLIS_PER_HOUR * cpu_hour,
        )
    }

    /// What this attempt cost; `None` without prices.
    pub fn cost(&self) -> Option<f64> {
        self.cost_of(self.cpu_millis.unwrap_or(0), self.gpu_millis)
    }

    /// The pool's currency, when it has prices.
    pub fn currency(&self) -> Option<&str> {
        self.pricing.as_ref().map(|p| p.currency.as_str())
    }
}

/// A cost as the status shows it: a decimal with six places (a millionth of a dollar is well
/// below what one proof costs, and far above what float rounding adds).
pub fn format_cost(cost: f64) -> String {
    format!("{cost:.6}")
}

/// Adds an attempt's use to the job's totals (and, for the successful attempt, records it as
/// the job's own), pricing both at the attempt's prices.
fn charge_attempt(status: &mut ProofJobStatus, attempt: u32, charge: &Charge, succeeded: bool) {
    if let Some(a) = status
        .attempts
        .iter_mut()
        .find(|a| a.attempt == attempt as i32)
    {
        a.cpu_millis = charge.cpu_millis;
        a.gpu_millis = Some(charge.gpu_millis);
    }
    let usage = status.usage.get_or_insert_with(JobUsage::default);
    // Saturating: a total that wrapped would turn a job's cost negative.
    usage.total_cpu_millis = usage
        .total_cpu_millis
        .saturating_add(charge.cpu_millis.unwrap_or(0).max(0));
    usage.total_gpu_millis = usage
        .total_gpu_millis
        .saturating_add(charge.gpu_millis.max(0));
    if succeeded {
        usage.cpu_millis = charge.cpu_millis;
        usage.gpu_millis = Some(charge.gpu_millis);
        usage.cost = charge.cost().map(format_cost);
    }
    usage.total_cost = charge
        .cost_of(usage.total_cpu_millis, usage.total_gpu_millis)
        .map(format_cost);
    usage.currency = charge.currency().map(str::to_string);
}

/// The job's attempt `attempt` made a proof that verified.
pub fn succeeded(job: &ProofJob, attempt: u32, success: Success, now: &Time) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    end_attempt(&mut status, attempt, AttemptOutcome::Succeeded, None, now);
    charge_attempt(&mut status, attempt, &success.charge, true);
    status.phase = Some(JobPhase::Succeeded);
    status.result = Some(success.result);
    status.verification = Some(success.verification);
    status.proving_millis = Some(success.proving_millis);
    status.completion_time = Some(now.clone());
    status.reason = None;
    status.message = None;
    status.retryable = None;
    set_condition(
        &mut status,
        COMPLETE,
        "ProofVerified",
        "the proof was computed and verified".into(),
        now,
    );
    status
}

/// A job answered with the verified proof of `earlier` (same pool, parameters and input),
/// without an attempt. The earlier job is named only when it is in this job's namespace.
pub fn reused(job: &ProofJob, earlier: &ProofJob, now: &Time) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    let from = earlier.status.clone().unwrap_or_default();
    let same_namespace = earlier.namespace() == job.namespace();
    status.observed_generation = job.metadata.generation;
    status.phase = Some(JobPhase::Succeeded);
    status.parameters_version = from.parameters_version;
    status.parameters_digest = from.parameters_digest;
    status.input_digest = from.input_digest;
    status.result = from.result.map(|mut result| {
        result.reused_from = Some(ReusedFrom {
            uid: earlier.uid().unwrap_or_default(),
            name: same_namespace.then(|| earlier.name_any()),
        });
        result
    });
    status.verification = from.verification;
    status.completion_time = Some(now.clone());
    status.reason = None;
    status.message = None;
    status.retryable = None;
    let source = if same_namespace {
        format!("job {}", earlier.name_any())
    } else {
        "a job of another namespace".to_string()
    };
    set_condition(
        &mut status,
        COMPLETE,
        "ResultReused",
        format!(
            "answered with the verified proof of {source}, made from the same parameters and input; nothing was proved again"
        ),
        now,
    );
    status
}

/// A queued job moved to the fallback pool `to` (namespace, name), after `since_attempt`
/// attempts elsewhere: queued there afresh, with `why` as its message.
pub fn moved(
    job: &ProofJob,
    to: (&str, &str),
    since_attempt: u32,
    why: String,
    now: &Time,
) -> ProofJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.phase = Some(JobPhase::Queued);
    status.pool = Some(CurrentPool {
        namespace: to.0.to_string(),
        name: to.1.to_string(),
        since_attempt: since_attempt as i32,
    });
    // The wait on the new pool starts now.
    status.queued_at = Some(now.clone());
    status.completion_time = None;
    status.reason = Some(MOVED_TO_FALLBACK_POOL.into());
    status.message = Some(why);
    status.retryable = Some(true);
    status
        .conditions
        .retain(|c| c.type_ != COMPLETE && c.type_ != FAILED);
    status
}

/// `reason` of a job that moved to a fallback pool.
pub const MOVED_TO_FALLBACK_POOL: &str = "MovedToFallbackPool";

/// How an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptFailure {
    pub outcome: AttemptOutcome,
    /// Machine-readable cause for `status.reason`, for example `LeaseExpired`.
    pub reason: &'static str,
    pub message: String,
    /// False when retrying cannot help (bad input).
    pub retryable: bool,
}

/// The job's attempt `attempt` failed: back to `Queued` while retries remain and the failure
/// is retryable, else `Failed`. Returns the status and whether the job is queued again.
pub fn attempt_failed(
    job: &ProofJob,
    attempt: u32,
    failure: &AttemptFailure,
    charge: &Charge,
    max_retries: u32,
    now: &Time,
) -> (ProofJobStatus, bool) {
    let mut status = job.status.clone().unwrap_or_default();
    end_attempt(
        &mut status,
        attempt,
        failure.outcome,
        Some(failure.message.clone()),
        now,
    );
    charge_attempt(&mut status, attempt, charge, false);
    let disrupted = is_disruption(&status, failure);
    if disrupted {
        status.disruptions = Some(status.disruptions.unwrap_or(0) + 1);
    }
    let retries_used = retries_used(&status);
    if failure.retryable && (disrupted || retries_used < max_retries) {
        status.phase = Some(JobPhase::Queued);
        status.reason = Some(failure.reason.into());
        status.message = Some(if disrupted {
            format!(
                "attempt {attempt} was lost to a disruption ({}); retrying, not counted against maxRetries ({} of {MAX_DISRUPTIONS} disruptions)",
                failure.message,
                status.disruptions.unwrap_or(0)
            )
        } else {
            format!(
                "attempt {attempt} failed ({}); retrying, {} of {max_retries} retries left",
                failure.message,
                max_retries - retries_used
            )
        });
        status.retryable = Some(true);
        (status, true)
    } else {
        let message = if failure.retryable {
            format!(
                "attempt {attempt} failed ({}) and all {max_retries} retries are used up",
                failure.message
            )
        } else {
            failure.message.clone()
        };
        finish_failed(&mut status, failure.reason, message, false, now);
        (status, false)
    }
}

/// Whether `failure` was a disruption (the attempt lost to its pod going away or going quiet)
/// that the job, with `status` as it stood, may retry without counting it against
/// `maxRetries`.
pub fn is_disruption(status: &ProofJobStatus, failure: &AttemptFailure) -> bool {
    failure.outcome == AttemptOutcome::LeaseExpired
        && status.disruptions.unwrap_or(0) < MAX_DISRUPTIONS
}

/// Retries a job has used: its attempts after the first, less those lost to disruptions
/// (which do not count against `maxRetries`).
pub fn retries_used(status: &ProofJobStatus) -> u32 {
    current_attempt(status)
        .saturating_sub(1)
        .saturating_sub(status.disruptions.unwrap_or(0).max(0) as u32)
}

fn end_attempt(
    status: &mut ProofJobStatus,
    attempt: u32,
    outcome: AttemptOutcome,
    message: Option<String>,
    now: &Time,
) {
    if let Some(a) = status
        .attempts
        .iter_mut()
        .find(|a| a.attempt == attempt as i32 && a.outcome.is_none())
    {
        a.outcome = Some(outcome);
        a.end_time = Some(now.clone());
        a.message = message;
    }
}

fn finish_failed(
    status: &mut ProofJobStatus,
    reason: &str,
    message: String,
    retryable: bool,
    now: &Time,
) {
    status.phase = Some(JobPhase::Failed);
    status.completion_time = Some(now.clone());
    status.reason = Some(reason.into());
    status.message = Some(message.clone());
    status.retryable = Some(retryable);
    set_condition(status, FAILED, reason, message, now);
}

fn set_condition(
    status: &mut ProofJobStatus,
    type_: &str,
    reason: &str,
    message: String,
    now: &Time,
) {
    let condition = new_condition(
        type_,
        condition_status::TRUE,
        reason,
        message,
        status.observed_generation,
        now.clone(),
    );
    conditions::set_condition(&mut status.conditions, condition);
}

/// Replaces the job's status at its `resourceVersion`; returns the job as stored. A conflict
/// (someone wrote in between) comes back as the API's 409.
pub async fn write(
    api: &Api<ProofJob>,
    job: &ProofJob,
    status: ProofJobStatus,
) -> Result<ProofJob, kube::Error> {
    let mut updated = ProofJob {
        metadata: job.meta().clone(),
        spec: job.spec.clone(),
        status: Some(status),
    };
    // Only what identifies the object and its version travels; the rest is ignored anyway.
    updated.metadata.managed_fields = None;
    api.replace_status(&job.name_any(), &PostParams::default(), &updated)
        .await
}

/// Whether an API error is a write conflict (stale `resourceVersion`).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// Whether an API error says the object is gone.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn job() -> ProofJob {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team", "uid": "u1", "generation": 1},
            "spec": {"poolRef": {"name": "cpu"}, "input": {"inline": {"json": "{}"}}},
        }))
        .unwrap()
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn grant(attempt: u32, pod: &str) -> Grant {
        Grant {
            attempt,
            pod: pod.into(),
            node: Some("n1".into()),
            deadline: at(100),
            parameters_version: Some("v1".into()),
            parameters_digest: Some("sha256:aa".into()),
            input_digest: None,
        }
    }

    fn with(mut job: ProofJob, status: ProofJobStatus) -> ProofJob {
        job.status = Some(status);
        job
    }

    #[test]
    fn queued_keeps_the_first_queue_time() {
        let first = queued(&job(), &at(0));
        assert_eq!(first.phase, Some(JobPhase::Queued));
        let again = queued(&with(job(), first), &at(50));
        assert_eq!(again.queued_at, Some(at(0)));
    }

    #[test]
    fn a_lease_adds_an_attempt_and_starts_the_clock_once() {
        let running = leased(&job(), &grant(1, "p1"), &at(1));
        assert_eq!(running.phase, Some(JobPhase::Running));
        assert_eq!(running.attempt_count, Some(1));
        assert_eq!(running.start_time, Some(at(1)));
        assert_eq!(running.attempts[0].pod.as_deref(), Some("p1"));
        assert_eq!(running.attempts[0].lease_deadline, Some(at(100)));

        let second = leased(&with(job(), running), &grant(2, "p2"), &at(9));
        assert_eq!(
            second.start_time,
            Some(at(1)),
            "start time is the first attempt's"
        );
        assert_eq!(second.attempts.len(), 2);
        assert_eq!(current_attempt(&second), 2);
    }

    #[test]
    fn attempts_are_bounded_but_counted() {
        let mut j = job();
        for n in 1..=20 {
            let s = leased(&j, &grant(n, "p"), &at(n as i64));
            j = with(j, s);
        }
        let status = j.status.unwrap();
        assert_eq!(status.attempts.len(), MAX_LISTED_ATTEMPTS);
        assert_eq!(status.attempts[0].attempt, 5);
        assert_eq!(status.attempt_count, Some(20));
    }

    #[test]
    fn success_ends_the_attempt_and_sets_complete() {
        let j = with(job(), leased(&job(), &grant(1, "p1"), &at(1)));
        let s = succeeded(
            &j,
            1,
            Success {
                result: ProofResult::default(),
                verification: Verification {
                    verified: true,
                    verifier_millis: Some(3),
                    ..Verification::default()
                },
                proving_millis: 120,
                charge: Charge::default(),
            },
            &at(5),
        );
        assert_eq!(s.phase, Some(JobPhase::Succeeded));
        assert_eq!(s.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
        assert_eq!(s.attempts[0].end_time, Some(at(5)));
        assert_eq!(s.completion_time, Some(at(5)));
        let complete = s.conditions.iter().find(|c| c.type_ == COMPLETE).unwrap();
        assert_eq!(complete.status, "True");
        assert!(s.conditions.iter().all(|c| c.type_ != FAILED));
    }

    fn lost(retryable: bool) -> AttemptFailure {
        AttemptFailure {
            outcome: AttemptOutcome::LeaseExpired,
            reason: "LeaseExpired",
            message: "pod p1 stopped heartbeating".into(),
            retryable,
        }
    }

    fn prover_error() -> AttemptFailure {
        AttemptFailure {
            outcome: AttemptOutcome::Failed,
            reason: "ProverError",
            message: "out_of_memory: the prover died".into(),
            retryable: true,
        }
    }

    #[test]
    fn attempts_lost_to_disruptions_do_not_use_up_retries_up_to_their_own_bound() {
        let fail = |j: &mut ProofJob, failure: &AttemptFailure| {
            let attempt = current_attempt(&j.status.clone().unwrap_or_default()) + 1;
            *j = with(
                j.clone(),
                leased(j, &grant(attempt, "p"), &at(attempt as i64)),
            );
            let (s, requeued) =
                attempt_failed(j, attempt, failure, &Charge::default(), 1, &at(100));
            *j = with(j.clone(), s.clone());
            (s, requeued)
        };
        // Three pods lost, then one real failure: the one retry is still there.
        let mut j = job();
        for _ in 0..3 {
            let (s, requeued) = fail(&mut j, &lost(true));
            assert!(requeued);
            assert!(
                s.message
                    .unwrap()
                    .contains("not counted against maxRetries")
            );
        }
        let (s, requeued) = fail(&mut j, &prover_error());
        assert!(requeued, "{:?}", s.message);
        assert_eq!(s.disruptions, Some(3));
        let (s, requeued) = fail(&mut j, &prover_error());
        assert!(!requeued);
        assert_eq!(s.reason.as_deref(), Some("ProverError"));

        // A job that loses every pod it runs on still ends.
        let mut j = job();
        let mut ended = None;
        for n in 1..=(MAX_DISRUPTIONS + 3) {
            let (s, requeued) = fail(&mut j, &lost(true));
            if !requeued {
                ended = Some((n, s));
                break;
            }
        }
        let (n, s) = ended.expect("the job ends");
        assert_eq!(n, MAX_DISRUPTIONS + 2, "the bound, then its one retry");
        assert_eq!(s.phase, Some(JobPhase::Failed));
        assert_eq!(s.reason.as_deref(), Some("LeaseExpired"));
    }

    #[test]
    fn a_retryable_failure_requeues_until_retries_run_out() {
        let mut j = job();
        for attempt in 1..=3 {
            j = with(
                j.clone(),
                leased(&j, &grant(attempt, "p"), &at(attempt as i64)),
            );
            let (s, requeued) =
                attempt_failed(&j, attempt, &prover_error(), &Charge::default(), 2, &at(10));
            if attempt < 3 {
                assert!(requeued, "attempt {attempt} is retried");
                assert_eq!(s.phase, Some(JobPhase::Queued));
                assert_eq!(s.retryable, Some(true));
            } else {
                assert!(!requeued);
                assert_eq!(s.phase, Some(JobPhase::Failed));
                assert_eq!(s.reason.as_deref(), Some("ProverError"));
                assert!(
                    s.message
                        .as_deref()
                        .unwrap()
                        .contains("retries are used up")
                );
                assert_eq!(s.retryable, Some(false));
                assert!(s.conditions.iter().any(|c| c.type_ == FAILED));
            }
            j = with(j.clone(), s);
        }
    }

    #[test]
    fn a_final_failure_is_never_retried() {
        let j = with(job(), leased(&job(), &grant(1, "p1"), &at(1)));
        let (s, requeued) = attempt_failed(&j, 1, &lost(false), &Charge::default(), 5, &at(2));
        assert!(!requeued);
        assert_eq!(s.phase, Some(JobPhase::Failed));
        assert_eq!(s.message.as_deref(), Some("pod p1 stopped heartbeating"));
    }

    #[test]
    fn usage_adds_up_over_retries_and_prices_the_successful_attempt() {
        let pricing: Pricing =
            serde_json::from_value(json!({"gpuHour": "3.6", "cpuHour": "0.36"})).unwrap();
        let mut j = with(job(), leased(&job(), &grant(1, "p1"), &at(1)));
        // A lost pod reports nothing: its GPU time counts, its CPU time is unknown.
        let lost_charge = Charge {
            wall_millis: 30_000,
            ended_at: None,
            cpu_millis: None,
            gpu_millis: 30_000,
            pricing: Some(pricing.clone()),
        };
        let (s, _) = attempt_failed(&j, 1, &lost(true), &lost_charge, 3, &at(31));
        j = with(j.clone(), s);
        j = with(j.clone(), leased(&j, &grant(2, "p2"), &at(32)));
        let success = Success {
            result: ProofResult::default(),
            verification: Verification::default(),
            proving_millis: 900,
            charge: Charge {
                wall_millis: 1_000,
                ended_at: None,
                cpu_millis: Some(2_000),
                gpu_millis: 1_000,
                pricing: Some(pricing),
            },
        };
        let s = succeeded(&j, 2, success, &at(33));
        let usage = s.usage.expect("usage");
        assert_eq!(usage.total_gpu_millis, 31_000);
        assert_eq!(usage.total_cpu_millis, 2_000);
        assert_eq!(
            (usage.cpu_millis, usage.gpu_millis),
            (Some(2_000), Some(1_000))
        );
        // 1 s of GPU at 3.6/h is 0.001; 2 s of CPU at 0.36/h is 0.0002.
        assert_eq!(usage.cost.as_deref(), Some("0.001200"));
        assert_eq!(usage.total_cost.as_deref(), Some("0.031200"));
        assert_eq!(usage.currency.as_deref(), Some("USD"));
        assert_eq!(s.attempts[0].gpu_millis, Some(30_000));
        assert_eq!(s.attempts[0].cpu_millis, None);
        assert_eq!(s.attempts[1].cpu_millis, Some(2_000));
    }

    #[test]
    fn invalid_jobs_fail_with_reason_and_condition() {
        let s = invalid(&job(), INVALID_INPUT, "fix it".into(), &at(0));
        assert_eq!(s.phase, Some(JobPhase::Failed));
        assert_eq!(s.reason.as_deref(), Some(INVALID_INPUT));
        assert_eq!(s.retryable, Some(false));
        let failed = s.conditions.iter().find(|c| c.type_ == FAILED).unwrap();
        assert_eq!(failed.reason, INVALID_INPUT);
    }

    #[test]
    fn a_reused_result_names_its_source_only_within_the_namespace() {
        let mut earlier = job();
        earlier.metadata.name = Some("first".into());
        earlier.metadata.uid = Some("uid-first".into());
        earlier.status = serde_json::from_value(serde_json::json!({
            "phase": "Succeeded", "parametersVersion": "v1", "parametersDigest": "sha256:aa",
            "inputDigest": "hmac-sha256:in", "attemptCount": 2,
            "attempts": [{"attempt": 2, "pod": "p", "outcome": "Succeeded"}],
            "result": {"proof": {"protocol": "groth16"}, "publicSignals": ["33"]},
            "verification": {"verified": true, "verifier": "operator"},
        }))
        .unwrap();
        let s = reused(&job(), &earlier, &at(5));
        assert_eq!(s.phase, Some(JobPhase::Succeeded));
        assert!(
            s.attempts.is_empty() && s.attempt_count.is_none(),
            "nothing was proved"
        );
        let result = s.result.unwrap();
        assert_eq!(result.public_signals, Some(vec!["33".to_string()]));
        assert_eq!(
            result.reused_from,
            Some(ReusedFrom {
                uid: "uid-first".into(),
                name: Some("first".into())
            })
        );
        assert_eq!(s.parameters_digest.as_deref(), Some("sha256:aa"));
        assert!(s.verification.unwrap().verified);

        earlier.metadata.namespace = Some("elsewhere".into());
        let s = reused(&job(), &earlier, &at(5));
        assert_eq!(s.result.unwrap().reused_from.unwrap().name, None);
        let complete = s.conditions.iter().find(|c| c.type_ == COMPLETE).unwrap();
        assert_eq!(complete.reason, "ResultReused");
        assert!(!complete.message.contains("first"), "{}", complete.message);
    }

    #[test]
    fn a_moved_job_is_queued_on_its_fallback_pool_afresh() {
        let mut failed = job();
        failed.status = Some(ProofJobStatus {
            phase: Some(JobPhase::Failed),
            queued_at: Some(at(0)),
            completion_time: Some(at(9)),
            attempt_count: Some(2),
            ..ProofJobStatus::default()
        });
        let s = moved(&failed, ("team", "cpu"), 2, "moved".into(), &at(10));
        assert_eq!(s.phase, Some(JobPhase::Queued));
        assert_eq!(
            s.pool,
            Some(CurrentPool {
                namespace: "team".into(),
                name: "cpu".into(),
                since_attempt: 2
            })
        );
        assert_eq!(s.queued_at, Some(at(10)), "its wait starts again");
        assert_eq!(s.completion_time, None);
        assert_eq!(s.reason.as_deref(), Some(MOVED_TO_FALLBACK_POOL));
        assert_eq!(s.attempt_count, Some(2), "earlier attempts stay on record");
    }
}
