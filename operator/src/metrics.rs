//! Prometheus metrics of the operator: reconcile runs, failures by error, durations, the
//! dispatcher's queues, dispatch latency, job outcomes and durations, lapsed leases and
//! rejected proofs, each pool's readiness, replicas, slots and flagged pods, parameter
//! rotations, leadership, and the build version.
//!
//! Series whose labels are known in advance (a pool's, an outcome's) start at zero, so a
//! dashboard or an alert on `increase()` sees them before the first event.

use std::time::Duration;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use zkfleet_crds::v1alpha1::{ProverPoolStatus, find_condition, pool_condition, status as cond};

use kube::ResourceExt as _;
use zkfleet_crds::v1alpha1::ProofJob;

use crate::dispatcher::status::Charge;

/// Removes every series of `vec` whose `namespace` and `pool` labels are these, whatever its
/// third label, `other`, says.
fn remove_pool_series<T: prometheus::core::Atomic + 'static>(
    vec: &prometheus::core::GenericCounterVec<T>,
    namespace: &str,
    pool: &str,
    other: &str,
) {
    use prometheus::core::Collector as _;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            if label("namespace") == namespace && label("pool") == pool {
                let _ = vec.remove_label_values(&[namespace, pool, label(other).as_str()]);
            }
        }
    }
}

/// Outcomes of `zkfleet_jobs_finished_total` that exist from the start.
const KNOWN_OUTCOMES: [&str; 5] = [
    "Succeeded",
    "InvalidInput",
    "ProofRejected",
    "LeaseExpired",
    "TimedOut",
];
/// Reasons of `zkfleet_dispatch_lease_lapses_total`.
const LAPSE_REASONS: [&str; 3] = ["LeaseExpired", "PodLost", "TimedOut"];
/// Results of `zkfleet_parameters_rotations_total`.
pub const ROTATION_RESULTS: [&str; 3] = ["started", "rolled_back", "failed"];

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    queue: IntGaugeVec,
    namespace_queue: IntGaugeVec,
    reused: IntCounterVec,
    known_answer: IntCounterVec,
    dispatch_latency: Histogram,
    outcomes: IntCounterVec,
    lapsed: IntCounterVec,
    rejected: IntCounterVec,
    scaling: IntCounterVec,
    refused: IntCounterVec,
    job_duration: HistogramVec,
    oldest_queued: GaugeVec,
    pool_ready: IntGaugeVec,
    pool_replicas: IntGaugeVec,
    pool_slots: IntGaugeVec,
    pool_flagged: IntGaugeVec,
    rotations: IntCounterVec,
    leader: IntGauge,
    cpu_seconds: CounterVec,
    gpu_seconds: CounterVec,
    cost: CounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric; `zkfleet_build_info{version}` is set to 1.
    pub fn new() -> Self {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new("zkfleet_reconcile_runs_total", "Reconcile passes started"),
            &["controller"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "zkfleet_reconcile_failures_total",
                "Reconcile passes that failed, by error",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "zkfleet_reconcile_duration_seconds",
                "Time one reconcile pass took",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "zkfleet_build_info",
                "Version of the running operator; always 1",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let queue = IntGaugeVec::new(
            Opts::new(
                "zkfleet_dispatch_jobs",
                "ProofJobs of each pool in the dispatcher, by state (queued, running)",
            ),
            &["namespace", "pool", "state"],
        )
        .expect("valid metric");
        let namespace_queue = IntGaugeVec::new(
            Opts::new(
                "zkfleet_dispatch_namespace_jobs",
                "ProofJobs of each namespace on each shared pool (spec.sharing), by state \
                 (queued, running); `namespace` and `pool` name the pool, `job_namespace` the jobs'",
            ),
            &["namespace", "pool", "job_namespace", "state"],
        )
        .expect("valid metric");
        let reused = IntCounterVec::new(
            Opts::new(
                "zkfleet_jobs_reused_total",
                "ProofJobs answered with an earlier job's verified proof instead of being proved \
                 (spec.resultReuse of the pool)",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let known_answer = IntCounterVec::new(
            Opts::new(
                "zkfleet_known_answer_checks_total",
                "Known-answer checks of prover pods answered, by result (passed, failed)",
            ),
            &["namespace", "pool", "result"],
        )
        .expect("valid metric");
        let dispatch_latency = Histogram::with_opts(
            HistogramOpts::new(
                "zkfleet_dispatch_latency_seconds",
                "Time from a job entering the queue to its lease being granted",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )
        .expect("valid metric");
        let outcomes = IntCounterVec::new(
            Opts::new(
                "zkfleet_jobs_finished_total",
                "ProofJobs that finished, by namespace, pool and outcome (Succeeded or the failure reason); jobs refused at admission have pool=\"\"",
            ),
            &["namespace", "pool", "outcome"],
        )
        .expect("valid metric");
        let lapsed = IntCounterVec::new(
            Opts::new(
                "zkfleet_dispatch_lease_lapses_total",
                "Leases that ended without a result, by reason (LeaseExpired, PodLost, TimedOut)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "zkfleet_dispatch_rejected_proofs_total",
                "Proofs that failed verification, by pool",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let scaling = IntCounterVec::new(
            Opts::new(
                "zkfleet_scaling_decisions_total",
                "Resizes the operator made itself, by decision (ScaledToZero, WokeUp)",
            ),
            &["decision"],
        )
        .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "zkfleet_dispatch_refused_requests_total",
                "Requests to the dispatcher answered with an error, by error code (unauthorized, forbidden, too_large, busy, ...)",
            ),
            &["code"],
        )
        .expect("valid metric");
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "zkfleet_job_duration_seconds",
                "Time from a ProofJob's creation to its verified proof on the status: queueing, \
                 proving, verification and status writes, retries included",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                3600.0,
            ]),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let oldest_queued = GaugeVec::new(
            Opts::new(
                "zkfleet_queue_oldest_job_age_seconds",
                "Age of the oldest queued ProofJob of each pool (0 when none is queued)",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let pool_ready = IntGaugeVec::new(
            Opts::new(
                "zkfleet_pool_ready",
                "1 when the ProverPool's Ready condition is True, else 0",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let pool_replicas = IntGaugeVec::new(
            Opts::new(
                "zkfleet_pool_replicas",
                "Prover pods of each pool, by state (desired, ready, unschedulable)",
            ),
            &["namespace", "pool", "state"],
        )
        .expect("valid metric");
        let pool_slots = IntGaugeVec::new(
            Opts::new(
                "zkfleet_pool_slots",
                "Proof slots of each pool's ready pods, by state (total, free)",
            ),
            &["namespace", "pool", "state"],
        )
        .expect("valid metric");
        let pool_flagged = IntGaugeVec::new(
            Opts::new(
                "zkfleet_pool_flagged_pods",
                "Pods of each pool whose proofs failed verification recently (status.flaggedPods)",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let rotations = IntCounterVec::new(
            Opts::new(
                "zkfleet_parameters_rotations_total",
                "Parameter rotations of each pool, by result (started, rolled_back, failed)",
            ),
            &["namespace", "pool", "result"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "zkfleet_leader",
            "1 while this operator process holds the leader Lease (only the leader serves metrics)",
        )
        .expect("valid metric");
        let cpu_seconds = CounterVec::new(
            Opts::new(
                "zkfleet_proof_cpu_seconds_total",
                "CPU-seconds prover pods measured for the attempts of each pool's jobs, retries included",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let gpu_seconds = CounterVec::new(
            Opts::new(
                "zkfleet_proof_gpu_seconds_total",
                "GPU-seconds the attempts of each pool's jobs held, retries and lost pods included",
            ),
            &["namespace", "pool"],
        )
        .expect("valid metric");
        let cost = CounterVec::new(
            Opts::new(
                "zkfleet_proof_cost_total",
                "What the attempts of each pool's jobs cost at the pool's spec.pricing, retries included",
            ),
            &["namespace", "pool", "currency"],
        )
        .expect("valid metric");
        for reason in LAPSE_REASONS {
            lapsed.with_label_values(&[reason]);
        }
        for collector in [
            Box::new(runs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(build_info),
            Box::new(queue.clone()),
            Box::new(namespace_queue.clone()),
            Box::new(reused.clone()),
            Box::new(known_answer.clone()),
            Box::new(dispatch_latency.clone()),
            Box::new(outcomes.clone()),
            Box::new(lapsed.clone()),
            Box::new(rejected.clone()),
            Box::new(scaling.clone()),
            Box::new(refused.clone()),
            Box::new(job_duration.clone()),
            Box::new(oldest_queued.clone()),
            Box::new(pool_ready.clone()),
            Box::new(pool_replicas.clone()),
            Box::new(pool_slots.clone()),
            Box::new(pool_flagged.clone()),
            Box::new(rotations.clone()),
            Box::new(leader.clone()),
            Box::new(cpu_seconds.clone()),
            Box::new(gpu_seconds.clone()),
            Box::new(cost.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        // The operator's own memory, CPU and file descriptors
        // (`process_resident_memory_bytes`, ...), read from /proc at each scrape: what a
        // platform team watches to size it, and what the tests read to bound it under load.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once");
        Self {
            registry,
            runs,
            failures,
            duration,
            queue,
            namespace_queue,
            reused,
            known_answer,
            dispatch_latency,
            outcomes,
            lapsed,
            rejected,
            scaling,
            refused,
            job_duration,
            oldest_queued,
            pool_ready,
            pool_replicas,
            pool_slots,
            pool_flagged,
            rotations,
            leader,
            cpu_seconds,
            gpu_seconds,
            cost,
        }
    }

    /// Counts what one ended attempt used and cost.
    pub fn attempt_charged(&self, namespace: &str, pool: &str, charge: &Charge) {
        let labels = [namespace, pool];
        self.cpu_seconds
            .with_label_values(&labels)
            .inc_by(charge.cpu_millis.unwrap_or(0).max(0) as f64 / 1000.0);
        self.gpu_seconds
            .with_label_values(&labels)
            .inc_by(charge.gpu_millis.max(0) as f64 / 1000.0);
        if let (Some(cost), Some(currency)) = (charge.cost(), charge.currency()) {
            self.cost
                .with_label_values(&[namespace, pool, currency])
                .inc_by(cost.max(0.0));
        }
    }

    /// Sets whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records how long a job took from its creation to its verified proof.
    pub fn job_succeeded_after(&self, namespace: &str, pool: &str, took: Duration) {
        self.job_duration
            .with_label_values(&[namespace, pool])
            .observe(took.as_secs_f64());
    }

    /// Counts a parameter rotation event of a pool (one of [`ROTATION_RESULTS`]).
    pub fn rotation(&self, namespace: &str, pool: &str, result: &str) {
        self.rotations
            .with_label_values(&[namespace, pool, result])
            .inc();
    }

    /// Sets a pool's gauges from its status (and its oldest queued job's age), creating its
    /// per-pool series at zero the first time.
    pub fn set_pool(
        &self,
        namespace: &str,
        pool: &str,
        desired: i32,
        status: Option<&ProverPoolStatus>,
        oldest_queued: Duration,
    ) {
        let status = status.cloned().unwrap_or_default();
        let ready = find_condition(&status.conditions, pool_condition::READY)
            .is_some_and(|c| c.status == cond::TRUE);
        self.pool_ready
            .with_label_values(&[namespace, pool])
            .set(i64::from(ready));
        let capacity = status.capacity.unwrap_or_default();
        for (state, n) in [
            ("desired", desired),
            ("ready", status.ready_replicas.unwrap_or(0)),
            ("unschedulable", capacity.unschedulable_replicas),
        ] {
            self.pool_replicas
                .with_label_values(&[namespace, pool, state])
                .set(i64::from(n));
        }
        for (state, n) in [("total", capacity.slots), ("free", capacity.free_slots)] {
            self.pool_slots
                .with_label_values(&[namespace, pool, state])
                .set(i64::from(n));
        }
        self.pool_flagged
            .with_label_values(&[namespace, pool])
            .set(status.flagged_pods.len() as i64);
        self.oldest_queued
            .with_label_values(&[namespace, pool])
            .set(oldest_queued.as_secs_f64());
        self.rejected.with_label_values(&[namespace, pool]);
        for outcome in KNOWN_OUTCOMES {
            self.outcomes.with_label_values(&[namespace, pool, outcome]);
        }
        self.cpu_seconds.with_label_values(&[namespace, pool]);
        self.gpu_seconds.with_label_values(&[namespace, pool]);
        for result in ROTATION_RESULTS {
            self.rotations.with_label_values(&[namespace, pool, result]);
        }
    }

    /// Drops every per-pool series of a pool that no longer exists.
    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        let _ = self.pool_ready.remove_label_values(&[namespace, pool]);
        let _ = self.pool_flagged.remove_label_values(&[namespace, pool]);
        let _ = self.oldest_queued.remove_label_values(&[namespace, pool]);
        let _ = self.rejected.remove_label_values(&[namespace, pool]);
        let _ = self.job_duration.remove_label_values(&[namespace, pool]);
        let _ = self.cpu_seconds.remove_label_values(&[namespace, pool]);
        let _ = self.gpu_seconds.remove_label_values(&[namespace, pool]);
        // Outcomes and currencies vary: drop whichever series of the pool exist.
        remove_pool_series(&self.outcomes, namespace, pool, "outcome");
        remove_pool_series(&self.cost, namespace, pool, "currency");
        for state in ["desired", "ready", "unschedulable"] {
            let _ = self
                .pool_replicas
                .remove_label_values(&[namespace, pool, state]);
        }
        for state in ["total", "free"] {
            let _ = self
                .pool_slots
                .remove_label_values(&[namespace, pool, state]);
        }
        for result in ROTATION_RESULTS {
            let _ = self
                .rotations
                .remove_label_values(&[namespace, pool, result]);
        }
    }

    /// Counts a dispatcher request answered with an error; `code` is the error body's code.
    pub fn dispatcher_refused(&self, code: &str) {
        self.refused.with_label_values(&[code]).inc();
    }

    /// Counts a resize the operator made (scale to zero, wake).
    pub fn scaling_decision(&self, decision: &str) {
        self.scaling.with_label_values(&[decision]).inc();
    }

    /// Sets a pool's queued and running job counts.
    pub fn set_queue(&self, namespace: &str, pool: &str, queued: usize, running: usize) {
        for (state, n) in [("queued", queued), ("running", running)] {
            self.queue
                .with_label_values(&[namespace, pool, state])
                .set(n as i64);
        }
    }

    /// Drops the series of a pool that has no queued or running jobs any more.
    pub fn forget_queue(&self, namespace: &str, pool: &str) {
        for state in ["queued", "running"] {
            let _ = self.queue.remove_label_values(&[namespace, pool, state]);
        }
    }

    /// Sets the queued and running jobs of one namespace on a shared pool.
    pub fn set_namespace_queue(
        &self,
        (namespace, pool): (&str, &str),
        job_namespace: &str,
        queued: usize,
        running: usize,
    ) {
        for (state, n) in [("queued", queued), ("running", running)] {
            self.namespace_queue
                .with_label_values(&[namespace, pool, job_namespace, state])
                .set(n as i64);
        }
    }

    /// Drops the series of a namespace with no jobs left on a shared pool.
    pub fn forget_namespace_queue(&self, (namespace, pool): (&str, &str), job_namespace: &str) {
        for state in ["queued", "running"] {
            let _ =
                self.namespace_queue
                    .remove_label_values(&[namespace, pool, job_namespace, state]);
        }
    }

    /// Records how long a job waited in the queue before its lease.
    pub fn dispatched(&self, waited: Duration) {
        self.dispatch_latency.observe(waited.as_secs_f64());
    }

    /// Counts a finished job: `Succeeded` or its failure reason.
    pub fn job_finished(&self, job: &ProofJob, outcome: &str) {
        let namespace = job.namespace().unwrap_or_default();
        self.outcomes
            .with_label_values(&[namespace.as_str(), &job.spec.pool_ref.name, outcome])
            .inc();
    }

    /// Counts a job refused at admission. Its pool is left out (`pool=""`): a refused job may
    /// name any pool, one that does not exist included, and each name would be a series kept
    /// for good.
    pub fn job_refused(&self, job: &ProofJob, reason: &str) {
        let namespace = job.namespace().unwrap_or_default();
        self.outcomes
            .with_label_values(&[namespace.as_str(), "", reason])
            .inc();
    }

    /// Counts a job answered by result reuse (also counted as `Succeeded` in
    /// `zkfleet_jobs_finished_total`).
    pub fn result_reused(&self, job: &ProofJob) {
        let namespace = job.namespace().unwrap_or_default();
        self.reused
            .with_label_values(&[namespace.as_str(), &job.spec.pool_ref.name])
            .inc();
    }

    /// Counts a known-answer check a pod answered: `passed` or `failed`.
    pub fn known_answer_checked(&self, namespace: &str, pool: &str, result: &str) {
        self.known_answer
            .with_label_values(&[namespace, pool, result])
            .inc();
    }

    /// Counts a lease that ended without a result.
    pub fn lease_lapsed(&self, reason: &str) {
        self.lapsed.with_label_values(&[reason]).inc();
    }

    /// Counts a proof that failed verification.
    pub fn proof_rejected(&self, namespace: &str, pool: &str) {
        self.rejected.with_label_values(&[namespace, pool]).inc();
    }

    /// Counts a pass of `controller`.
    pub fn reconcile_started(&self, controller: &str) {
        self.runs.with_label_values(&[controller]).inc();
    }

    /// Records how long a pass took.
    pub fn reconcile_finished(&self, controller: &str, took: Duration) {
        self.duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
    }

    /// Counts a failed pass; `error` is the error's variant name.
    pub fn reconcile_failed(&self, controller: &str, error: &str) {
        self.failures.with_label_values(&[controller, error]).inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_runs_failures_duration_and_build_info() {
        let m = Metrics::new();
        m.reconcile_started("proverpool");
        m.reconcile_failed("proverpool", "Apply");
        m.reconcile_finished("proverpool", Duration::from_millis(20));
        m.set_queue("team", "cpu", 3, 1);
        let job: ProofJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"},
            "spec": {"poolRef": {"name": "cpu"}, "input": {"inline": {"json": "{}"}}},
        }))
        .unwrap();
        m.job_finished(&job, "Succeeded");
        // Refused jobs naming made-up pools add no series per name.
        for made_up in ["no-such-pool-1", "no-such-pool-2"] {
            let mut refused = job.clone();
            refused.spec.pool_ref.name = made_up.into();
            m.job_refused(&refused, "PoolNotFound");
        }
        m.lease_lapsed("PodLost");
        m.proof_rejected("team", "cpu");
        m.dispatched(Duration::from_millis(30));
        m.scaling_decision("WokeUp");
        let text = m.render();
        assert!(
            text.contains(r#"zkfleet_dispatch_jobs{namespace="team",pool="cpu",state="queued"} 3"#)
        );
        assert!(text.contains(
            r#"zkfleet_jobs_finished_total{namespace="team",outcome="Succeeded",pool="cpu"} 1"#
        ));
        assert!(text.contains(
            r#"zkfleet_jobs_finished_total{namespace="team",outcome="PoolNotFound",pool=""} 2"#
        ));
        assert!(!text.contains("no-such-pool"), "{text}");
        assert!(text.contains(r#"zkfleet_dispatch_lease_lapses_total{reason="PodLost"} 1"#));
        assert!(
            text.contains(
                r#"zkfleet_dispatch_rejected_proofs_total{namespace="team",pool="cpu"} 1"#
            )
        );
        assert!(text.contains("zkfleet_dispatch_latency_seconds_count 1"));
        assert!(text.contains(r#"zkfleet_scaling_decisions_total{decision="WokeUp"} 1"#));
        assert!(
            text.contains(r#"zkfleet_reconcile_runs_total{controller="proverpool"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"zkfleet_reconcile_failures_total{controller="proverpool",error="Apply"} 1"#
        ));
        assert!(text.contains("zkfleet_reconcile_duration_seconds_bucket"));
        assert!(text.contains(&format!(
            r#"zkfleet_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn a_deleted_pools_series_go_with_it_whatever_their_outcome_or_currency() {
        let m = Metrics::new();
        m.set_pool("team", "gpu", 1, None, Duration::ZERO);
        m.set_pool("team", "cpu", 1, None, Duration::ZERO);
        let job: ProofJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"},
            "spec": {"poolRef": {"name": "gpu"}, "input": {"inline": {"json": "{}"}}},
        }))
        .unwrap();
        m.job_finished(&job, "VerifyingKeyUnavailable");
        let charge = Charge {
            gpu_millis: 3_600_000,
            pricing: Some(
                serde_json::from_value(serde_json::json!({"gpuHour": "2", "currency": "EUR"}))
                    .unwrap(),
            ),
            ..Charge::default()
        };
        m.attempt_charged("team", "gpu", &charge);
        let text = m.render();
        assert!(
            text.contains(
                r#"zkfleet_proof_cost_total{currency="EUR",namespace="team",pool="gpu"} 2"#
            )
        );
        assert!(
            text.contains(r#"zkfleet_proof_gpu_seconds_total{namespace="team",pool="gpu"} 3600"#)
        );
        assert!(text.contains(
            r#"zkfleet_jobs_finished_total{namespace="team",outcome="VerifyingKeyUnavailable",pool="gpu"} 1"#
        ));
        m.forget_pool("team", "gpu");
        let text = m.render();
        assert!(!text.contains(r#"pool="gpu""#), "{text}");
        assert!(text.contains(
            r#"zkfleet_jobs_finished_total{namespace="team",outcome="Succeeded",pool="cpu"} 0"#
        ));
    }
}
