//! Once a second: ends leases whose pod went away, stopped heartbeating or ran past its
//! timeout; fails queued jobs pinned to a parameters version no pod will serve again;
//! publishes queue depths; marks busy pods expensive to delete; and forgets pools and pods
//! that are gone, so memory and metric series follow the cluster rather than its history.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{debug, info, warn};
use zkfleet_crds::v1alpha1::{AttemptOutcome, ProofJob, ProverPool, RolloutState};

use super::state::{Lapse, Lapsed, PoolKey};
use super::{DispatchError, Dispatcher, is_ready, served_version};
use crate::build::POOL_LABEL;
use crate::dispatcher::status::{self as job_status, AttemptFailure};
use crate::job_trace;

/// Annotation the ReplicaSet controller reads to pick which pods to remove first (lowest
/// first) when a pool scales down.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Deletion cost of a pod holding leases; idle pods get 0, so they go first.
pub const BUSY_DELETION_COST: i32 = 10_000;
/// How long a pinned job may wait for a version no pod serves before it fails.
pub const PIN_GRACE: Duration = Duration::from_secs(30);

impl Dispatcher {
    /// Runs the reaper every second until dropped.
    pub(super) async fn reap(self: Arc<Self>) {
        let _ = self.pods.wait_until_ready().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published = HashMap::new();
        let mut published_namespaces = HashMap::new();
        loop {
            tick.tick().await;
            if !self.synced.load(Ordering::Acquire) {
                continue;
            }
            self.end_lapsed_leases().await;
            self.fail_stranded_pins().await;
            self.publish_loads(&mut published);
            self.publish_namespace_loads(&mut published_namespaces);
            self.update_deletion_costs().await;
            self.forget_gone();
        }
    }

    async fn end_lapsed_leases(&self) {
        let gone = |namespace: &str, pod: &str| {
            self.pod(namespace, pod).is_none_or(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
            })
        };
        let lapsed = self
            .state
            .lock()
            .expect("lock")
            .lapsed(Instant::now(), &gone);
        for l in lapsed {
            self.end_lapsed(l).await;
        }
    }

    /// Sets the queue gauges of every pool that exists or has jobs (zero when idle) and the
    /// gauges of every pool, and drops the series of pools that have neither any more.
    /// Pools whose counts differ from what was last published are named to the pool
    /// controller, which writes them to the pool's status.
    fn publish_loads(&self, published: &mut HashMap<PoolKey, (usize, usize)>) {
        let (mut loads, oldest) = {
            let mut state = self.state.lock().expect("lock");
            (state.loads(), state.oldest_queued())
        };
        let now_seconds = Timestamp::now().as_second();
        for pool in self.pools.state() {
            let key = PoolKey::new(&pool.namespace().unwrap_or_default(), &pool.name_any());
            let age = oldest
                .get(&key)
                .map(|created| {
                    Duration::from_secs(now_seconds.saturating_sub(*created).max(0) as u64)
                })
                .unwrap_or_default();
            self.metrics.set_pool(
                &key.namespace,
                &key.name,
                pool.spec.replicas,
                pool.status.as_ref(),
                age,
            );
            loads.entry(key).or_default();
        }
        let now = Instant::now();
        for (pool, (queued, running)) in &loads {
            self.metrics
                .set_queue(&pool.namespace, &pool.name, *queued, *running);
            if queued + running > 0 {
                self.last_busy
                    .lock()
                    .expect("lock")
                    .insert(pool.clone(), now);
            }
        }
        for pool in published.keys().filter(|p| !loads.contains_key(*p)) {
            self.metrics.forget_queue(&pool.namespace, &pool.name);
            self.metrics.forget_pool(&pool.namespace, &pool.name);
        }
        for (pool, counts) in &loads {
            if published.get(pool) != Some(counts) {
                self.load_changed(pool);
            }
        }
        *published = loads;
    }

    /// Sets the per-namespace queue gauges of every shared pool (one with `spec.sharing`) and
    /// drops the series of namespaces that no longer have jobs there.
    fn publish_namespace_loads(&self, published: &mut HashMap<(PoolKey, String), (usize, usize)>) {
        let mut now_published = HashMap::new();
        for pool in self.pools.state() {
            if pool.spec.sharing.is_none() {
                continue;
            }
            let key = PoolKey::new(&pool.namespace().unwrap_or_default(), &pool.name_any());
            let loads = self.state.lock().expect("lock").tenant_loads(&key);
            for (job_namespace, (queued, running)) in loads {
                self.metrics.set_namespace_queue(
                    (&key.namespace, &key.name),
                    &job_namespace,
                    queued,
                    running,
                );
                let series = (key.clone(), job_namespace);
                if published.get(&series) != Some(&(queued, running)) {
                    self.load_changed(&key);
                }
                now_published.insert(series, (queued, running));
            }
        }
        for (pool, job_namespace) in published.keys() {
            if !now_published.contains_key(&(pool.clone(), job_namespace.clone())) {
                self.metrics
                    .forget_namespace_queue((&pool.namespace, &pool.name), job_namespace);
                self.load_changed(pool);
            }
        }
        *published = now_published;
    }

    /// Forgets what the dispatcher remembers about pools and pods that no longer exist.
    fn forget_gone(&self) {
        let pools: HashSet<PoolKey> = self
            .pools
            .state()
            .iter()
            .map(|p| PoolKey::new(&p.namespace().unwrap_or_default(), &p.name_any()))
            .collect();
        let exists = |k: &PoolKey| pools.contains(k);
        self.last_busy
            .lock()
            .expect("lock")
            .retain(|k, _| exists(k));
        self.wakeups
            .lock()
            .expect("lock")
            .retain(|k, n| exists(k) || Arc::strong_count(n) > 1);
        self.tokens.retain(exists);
        self.deletion_costs
            .lock()
            .expect("lock")
            .retain(|(namespace, pod), _| self.pod(namespace, pod).is_some());
        self.verification
            .retain(exists, |namespace, pod| self.pod(namespace, pod).is_some());
    }

    /// Marks busy pods expensive to delete and idle ones cheap, so a scale-down removes idle
    /// pods first. Only pods whose cost changed are patched.
    async fn update_deletion_costs(&self) {
        let busy = self.state.lock().expect("lock").busy_pods();
        let mut changes = Vec::new();
        for pod in self.pods.state() {
            let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = (namespace, name);
            let cost = if busy.contains(&key) {
                BUSY_DELETION_COST
            } else {
                0
            };
            let current = pod
                .annotations()
                .get(DELETION_COST_ANNOTATION)
                .and_then(|v| v.parse::<i32>().ok());
            let written = self.deletion_costs.lock().expect("lock").get(&key).copied();
            if current != Some(cost) && written != Some(cost) {
                changes.push((key, cost));
            }
        }
        for ((namespace, name), cost) in changes {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let patch =
                json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: cost.to_string()}}});
            match pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.deletion_costs
                        .lock()
                        .expect("lock")
                        .insert((namespace, name), cost);
                }
                Err(e) => debug!(error = %e, pod = %name, "could not set the pod deletion cost"),
            }
        }
    }

    /// Fails queued jobs pinned to a version their pool no longer serves, once they have
    /// waited [`PIN_GRACE`]: they could never run.
    async fn fail_stranded_pins(&self) {
        let pinned = self.state.lock().expect("lock").queued_pinned();
        for job in pinned {
            let Some(pin) = job.spec.parameters_version.clone() else {
                continue;
            };
            let key = PoolKey::of(&job);
            let Some(pool) = self.pool(&key) else {
                continue;
            };
            let waited = job
                .status
                .as_ref()
                .and_then(|s| s.queued_at.as_ref())
                .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
                .unwrap_or_default();
            // The common case, a job pinned to the version the pool asks for, needs no pod scan.
            if waited < PIN_GRACE || pool.spec.parameters.version == pin {
                continue;
            }
            let serving = self
                .pods
                .state()
                .iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(key.namespace.as_str())
                        && p.labels().get(POOL_LABEL) == Some(&key.name)
                        && p.metadata.deletion_timestamp.is_none()
                        && is_ready(p)
                        && served_version(p).as_deref() == Some(pin.as_str())
                })
                .count();
            if !pin_stranded(&pool, &pin, serving) {
                continue;
            }
            let message = format!(
                "no pod of ProverPool {} serves parameters version {pin} any more (it serves {}); submit the job again pinned to a served version or without a pin",
                key.name, pool.spec.parameters.version
            );
            let api: Api<ProofJob> =
                Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
            let now = Time(Timestamp::now());
            let status = job_status::invalid(&job, "ParametersVersionUnavailable", message, &now);
            match job_status::write(&api, &job, status).await {
                Ok(stored) => {
                    info!(job = %job.name_any(), %pin, "failed: its pinned parameters version is no longer served");
                    self.metrics
                        .job_finished(&stored, "ParametersVersionUnavailable");
                    job_trace::finished(&stored, "ParametersVersionUnavailable");
                    self.state.lock().expect("lock").attempt_recorded(
                        stored,
                        Duration::ZERO,
                        None,
                        Instant::now(),
                    );
                }
                Err(e) => debug!(error = %e, "could not fail a stranded pinned job; retrying"),
            }
        }
    }

    /// Records a lease that ended without a result as a failed attempt.
    pub(super) async fn end_lapsed(&self, lapsed: Lapsed) {
        let Lapsed {
            job,
            held,
            lapse,
            limits,
        } = lapsed;
        let (outcome, reason, message) = match lapse {
            Lapse::Expired => (
                AttemptOutcome::LeaseExpired,
                "LeaseExpired",
                format!(
                    "pod {} stopped heartbeating and its lease ran out",
                    held.pod
                ),
            ),
            Lapse::PodGone => (
                AttemptOutcome::LeaseExpired,
                "PodLost",
                format!("pod {} went away while it held the job", held.pod),
            ),
            Lapse::TimedOut => (
                AttemptOutcome::TimedOut,
                "TimedOut",
                format!(
                    "the attempt on pod {} ran past its {} s timeout",
                    held.pod,
                    limits.timeout.as_secs()
                ),
            ),
        };
        self.metrics.lease_lapsed(reason);
        let failure = AttemptFailure {
            outcome,
            reason,
            message,
            retryable: true,
        };
        let charge = super::usage::charge(
            self.pool(&PoolKey::of(&job)).as_deref(),
            &job,
            held.attempt,
            None,
            Timestamp::now(),
        );
        if let Err(e) = self
            .record_failure(&job, &held, &failure, &charge, limits, None)
            .await
        {
            match e {
                DispatchError::Stale(_) | DispatchError::NotFound(_) => {
                    // Someone else recorded the attempt (or the job is gone): take the newest
                    // copy so the lease is no longer held.
                    let api: Api<ProofJob> =
                        Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
                    match api.get_opt(&job.name_any()).await {
                        Ok(Some(fresh)) => self.observe(fresh),
                        Ok(None) => self.forget(&job),
                        Err(_) => {}
                    }
                }
                other => warn!(error = %other, "could not end a lapsed lease; retrying"),
            }
        }
    }
}

/// Whether a job pinned to `pin` can no longer run on `pool`: the pool's spec asks for another
/// version, no rotation is under way, and none of its Ready pods serves the pin.
pub fn pin_stranded(pool: &ProverPool, pin: &str, pods_serving_pin: usize) -> bool {
    let rotating = pool
        .status
        .as_ref()
        .and_then(|s| s.parameters.as_ref())
        .and_then(|p| p.rollout)
        == Some(RolloutState::Progressing);
    pool.spec.parameters.version != pin && !rotating && pods_serving_pin == 0
}

/// Seconds to wait before retrying an attempt: 1, 2, 4 … capped at 30.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_thirty_seconds() {
        let secs: Vec<_> = (1..=8).map(|a| retry_backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_pin_is_stranded_only_when_settled_and_unserved() {
        let pool = |rollout: &str| -> ProverPool {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {"backend": {"type": "groth16-bn254"},
                         "parameters": {"version": "v2", "source": {"configMap": {"name": "c"}},
                                        "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]}},
                "status": {"parameters": {"rollout": rollout}},
            }))
            .unwrap()
        };
        assert!(pin_stranded(&pool("Complete"), "v1", 0));
        assert!(
            !pin_stranded(&pool("Complete"), "v1", 1),
            "a pod still serves v1"
        );
        assert!(
            !pin_stranded(&pool("Progressing"), "v1", 0),
            "rotation under way"
        );
        assert!(
            !pin_stranded(&pool("Complete"), "v2", 0),
            "the spec's own version"
        );
    }
}
