//! Moving a job to a fallback pool when its pool cannot serve it: after it waited there
//! `afterSeconds` without starting, or once its retries there are used up. The job moves only
//! to a pool that runs the same backend with the same parameters digest (so the proof is the
//! same proof) and, in another namespace, admits the job's namespace. The move is a status
//! write (`status.pool`) at the job's `resourceVersion`, like every other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt as _;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use tokio::sync::Mutex as AsyncMutex;
use tracing::{debug, info};
use zkfleet_crds::v1alpha1::{Fallback, ProofJob, ProverPool};

use super::Dispatcher;
use super::state::PoolKey;
use crate::dispatcher::status::{self as job_status};
use crate::job::validate;

/// Whether `candidate` can prove what `current` proves: the same backend and the same
/// parameters digest served now.
pub fn same_proof(current: &ProverPool, candidate: &ProverPool) -> bool {
    let digest = |p: &ProverPool| {
        p.status
            .as_ref()
            .and_then(|s| s.parameters.as_ref())
            .and_then(|s| s.current.as_ref())
            .map(|r| r.digest.clone())
    };
    current.spec.backend.kind == candidate.spec.backend.kind
        && digest(current).is_some()
        && digest(current) == digest(candidate)
}

/// The pools after `current` in the job's chain (`spec.poolRef`, then the fallback pools).
///
/// A pool appears in the chain once, at its first place: the schema refuses a list that
/// repeats a pool or names `poolRef`'s, but not one that spells the job's own namespace out
/// (`{name: a}` and `{namespace: team, name: a}`), nor a pool's `jobDefaults.fallback` that
/// names it that way. So a job only ever moves forward, at most once per fallback pool, and
/// its retries (which start afresh on each pool) stay bounded.
pub fn later_pools(job: &ProofJob, fallback: &Fallback, current: &PoolKey) -> Vec<PoolKey> {
    let namespace = job.namespace().unwrap_or_default();
    let mut chain: Vec<PoolKey> = Vec::with_capacity(fallback.pools.len() + 1);
    for r in std::iter::once(&job.spec.pool_ref).chain(fallback.pools.iter()) {
        let key = PoolKey::new(r.namespace_for(&namespace), &r.name);
        if !chain.contains(&key) {
            chain.push(key);
        }
    }
    match chain.iter().position(|k| k == current) {
        Some(at) => chain[at + 1..].to_vec(),
        None => Vec::new(),
    }
}

impl Dispatcher {
    /// The job's fallback: its own, or the `jobDefaults.fallback` of the pool it names.
    pub(super) fn fallback_of(&self, job: &ProofJob) -> Option<Fallback> {
        job.spec.fallback.clone().or_else(|| {
            let namespace = job.namespace().unwrap_or_default();
            let first = PoolKey::new(
                job.spec.pool_ref.namespace_for(&namespace),
                &job.spec.pool_ref.name,
            );
            self.pool(&first)
                .and_then(|p| p.spec.job_defaults.clone())
                .and_then(|d| d.fallback)
        })
    }

    /// The next pool of the job's fallback chain that can take it, if any. `labels` caches
    /// the labels of the namespaces read so far, so that one pass over many jobs reads each
    /// job namespace at most once.
    pub(super) async fn next_pool(
        &self,
        job: &ProofJob,
        labels: &NamespaceLabels,
    ) -> Option<PoolKey> {
        let fallback = self.fallback_of(job)?;
        let current_key = PoolKey::of(job);
        let current = self.pool(&current_key)?;
        let namespace = job.namespace().unwrap_or_default();
        for key in later_pools(job, &fallback, &current_key) {
            let Some(candidate) = self.pool(&key) else {
                debug!(pool = %key.name, "fallback pool does not exist; skipped");
                continue;
            };
            if !same_proof(&current, &candidate) {
                debug!(pool = %key.name, "fallback pool proves something else; skipped");
                continue;
            }
            if key.namespace != namespace {
                let job_labels = labels.of(&self.client, &namespace).await;
                if !validate::selects(&candidate, job_labels.as_ref()) {
                    debug!(pool = %key.name, "fallback pool does not admit the job's namespace; skipped");
                    continue;
                }
            }
            return Some(key);
        }
        None
    }

    /// Runs [`Self::move_waiting_jobs`] once a second until dropped. It is a task of its own,
    /// beside the reaper, so that however many jobs wait to move, lease expiry never waits
    /// behind their writes.
    pub(super) async fn move_waiting(self: Arc<Self>) {
        let _ = self.pods.wait_until_ready().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.synced.load(Ordering::Acquire) {
                self.move_waiting_jobs().await;
            }
        }
    }

    /// Moves queued jobs that waited their fallback's `afterSeconds` on a pool without starting
    /// there. The moves are written [`CONCURRENT_MOVES`] at a time.
    pub(super) async fn move_waiting_jobs(&self) {
        let queued = self.state.lock().expect("lock").queued();
        let now = Timestamp::now();
        let labels = NamespaceLabels::default();
        let due = queued
            .into_iter()
            .filter(|job| waited_out(job, self.fallback_of(job), now));
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENT_MOVES, |job| {
                let labels = &labels;
                async move {
                    if let Some(next) = self.next_pool(&job, labels).await {
                        self.move_job(&job, &next, now).await;
                    }
                }
            })
            .await;
    }

    async fn move_job(&self, job: &ProofJob, next: &PoolKey, now: Timestamp) {
        let status = job.status.clone().unwrap_or_default();
        let waited = waited_since_queued(job, now);
        let from = PoolKey::of(job);
        let why = format!(
            "waited {}s on ProverPool {}/{} without starting; moved to its fallback pool {}/{}",
            waited.as_secs(),
            from.namespace,
            from.name,
            next.namespace,
            next.name
        );
        let moved = job_status::moved(
            job,
            (&next.namespace, &next.name),
            job_status::current_attempt(&status),
            why,
            &Time(now),
        );
        let api: Api<ProofJob> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        match job_status::write(&api, job, moved).await {
            Ok(stored) => {
                info!(job = %job.name_any(), pool = %next.name, "moved to a fallback pool after waiting");
                self.observe(stored);
            }
            // A lease or another write won the race; the newer copy decides next time.
            Err(e) => debug!(error = %e, "could not move a waiting job"),
        }
    }
}

/// Most fallback moves written at once: enough that a burst of waiting jobs moves in a few
/// round trips, few enough not to crowd the API server's other clients.
const CONCURRENT_MOVES: usize = 16;

fn waited_since_queued(job: &ProofJob, now: Timestamp) -> Duration {
    job.status
        .as_ref()
        .and_then(|s| s.queued_at.as_ref())
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default()
}

/// Whether a queued job has waited its fallback's `afterSeconds` on its current pool without
/// starting there.
fn waited_out(job: &ProofJob, fallback: Option<Fallback>, now: Timestamp) -> bool {
    let Some(after) = fallback.and_then(|f| f.after_seconds) else {
        return false;
    };
    let Some(status) = job.status.as_ref() else {
        return false;
    };
    let since = status
        .pool
        .as_ref()
        .map_or(0, |p| p.since_attempt.max(0) as u32);
    if job_status::current_attempt(status) > since {
        // It has started on this pool: it had capacity; its retries decide.
        return false;
    }
    waited_since_queued(job, now) >= Duration::from_secs(after.max(1) as u64)
}

/// Labels of job namespaces, read from the API server at most once per namespace for the life
/// of the cache (one pass of the mover, or one job's retry decision). A namespace that cannot
/// be read has no labels, so a pool that selects on labels does not admit it.
#[derive(Default)]
pub(super) struct NamespaceLabels {
    read: AsyncMutex<HashMap<String, Option<BTreeMap<String, String>>>>,
}

impl NamespaceLabels {
    async fn of(&self, client: &kube::Client, namespace: &str) -> Option<BTreeMap<String, String>> {
        // Held across the read: concurrent moves of jobs of one namespace wait for the one read.
        let mut read = self.read.lock().await;
        if let Some(labels) = read.get(namespace) {
            return labels.clone();
        }
        let labels = Api::<Namespace>::all(client.clone())
            .get_opt(namespace)
            .await
            .ok()
            .flatten()
            .map(|ns| ns.labels().clone());
        read.insert(namespace.to_string(), labels.clone());
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(name: &str, backend: &str, digest: Option<&str>) -> ProverPool {
        let mut status = json!({});
        if let Some(d) = digest {
            status = json!({"parameters": {"current": {"version": "v1", "digest": d}}});
        }
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"backend": {"type": backend},
                     "parameters": {"version": "v1", "source": {"configMap": {"name": "p"}},
                                    "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_pool_proving_the_same_thing_takes_the_job() {
        let gpu = pool("gpu", "groth16-bn254", Some("sha256:aa"));
        assert!(same_proof(
            &gpu,
            &pool("cpu", "groth16-bn254", Some("sha256:aa"))
        ));
        assert!(!same_proof(
            &gpu,
            &pool("old", "groth16-bn254", Some("sha256:bb"))
        ));
        assert!(
            !same_proof(&gpu, &pool("new", "groth16-bn254", None)),
            "not loaded yet"
        );
    }

    #[test]
    fn the_chain_goes_on_from_the_pool_the_job_is_on() {
        let job: ProofJob = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"},
            "spec": {"poolRef": {"name": "gpu"}, "input": {"inline": {"json": "{}"}},
                     "fallback": {"pools": [{"name": "cpu"}, {"namespace": "shared", "name": "hosted"}]}},
        }))
        .unwrap();
        let fallback = job.spec.fallback.clone().unwrap();
        let names = |keys: Vec<PoolKey>| -> Vec<String> {
            keys.into_iter()
                .map(|k| format!("{}/{}", k.namespace, k.name))
                .collect()
        };
        assert_eq!(
            names(later_pools(&job, &fallback, &PoolKey::new("team", "gpu"))),
            ["team/cpu", "shared/hosted"]
        );
        assert_eq!(
            names(later_pools(&job, &fallback, &PoolKey::new("team", "cpu"))),
            ["shared/hosted"]
        );
        assert!(later_pools(&job, &fallback, &PoolKey::new("shared", "hosted")).is_empty());
    }

    #[test]
    fn a_chain_that_names_a_pool_again_never_moves_the_job_back() {
        // From gpu, a list [cpu, gpu] (with the job's namespace spelled out, which the schema
        // cannot see) once moved the job cpu -> gpu -> cpu -> ... with fresh retries each time.
        let job: ProofJob = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"},
            "spec": {"poolRef": {"name": "gpu"}, "input": {"inline": {"json": "{}"}},
                     "fallback": {"pools": [{"name": "cpu"}, {"namespace": "team", "name": "gpu"},
                                            {"namespace": "team", "name": "cpu"}]}},
        }))
        .unwrap();
        let fallback = job.spec.fallback.clone().unwrap();
        assert_eq!(
            later_pools(&job, &fallback, &PoolKey::new("team", "gpu")),
            [PoolKey::new("team", "cpu")]
        );
        assert!(
            later_pools(&job, &fallback, &PoolKey::new("team", "cpu")).is_empty(),
            "cpu is the end of the chain: the job does not go back to gpu"
        );
    }
}
