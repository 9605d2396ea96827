//! Moving a job to a fallback pool when its pool cannot serve it: after it waited there
//! `afterSeconds` without starting, or once its retries there are used up. The job moves only
//! to a pool that runs the same backend with the same parameters digest (so the proof is the
//! same proof) and, in another namespace, admits the job's namespace. The move is a status
//! write (`status.pool`) at the job's `resourceVersion`, like every other.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
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
pub fn later_pools(job: &ProofJob, fallback: &Fallback, current: &PoolKey) -> Vec<PoolKey> {
    let namespace = job.namespace().unwrap_or_default();
    let chain: Vec<PoolKey> = std::iter::once(&job.spec.pool_ref)
        .chain(fallback.pools.iter())
        .map(|r| PoolKey::new(r.namespace_for(&namespace), &r.name))
        .collect();
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

    /// The next pool of the job's fallback chain that can take it, if any.
    pub(super) async fn next_pool(&self, job: &ProofJob) -> Option<PoolKey> {
        let fallback = self.fallback_of(job)?;
        let current_key = PoolKey::of(job);
        let current = self.pool(&current_key)?;
        let namespace = job.namespace().unwrap_or_default();
        // Read once, and only when a pool of another namespace is considered.
        let mut labels: Option<Option<BTreeMap<String, String>>> = None;
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
                if labels.is_none() {
                    labels = Some(
                        Api::<Namespace>::all(self.client.clone())
                            .get_opt(&namespace)
                            .await
                            .ok()
                            .flatten()
                            .map(|ns| ns.labels().clone()),
                    );
                }
                if !validate::selects(&candidate, labels.as_ref().and_then(Option::as_ref)) {
                    debug!(pool = %key.name, "fallback pool does not admit the job's namespace; skipped");
                    continue;
                }
            }
            return Some(key);
        }
        None
    }

    /// Moves queued jobs that waited their fallback's `afterSeconds` on a pool without starting
    /// there. Called by the reaper every second.
    pub(super) async fn move_waiting_jobs(&self) {
        let queued = self.state.lock().expect("lock").queued();
        let now = Timestamp::now();
        for job in queued {
            let Some(after) = self.fallback_of(&job).and_then(|f| f.after_seconds) else {
                continue;
            };
            let status = job.status.clone().unwrap_or_default();
            let since = status
                .pool
                .as_ref()
                .map_or(0, |p| p.since_attempt.max(0) as u32);
            if job_status::current_attempt(&status) > since {
                // It has started on this pool: it had capacity; its retries decide.
                continue;
            }
            let waited = status
                .queued_at
                .as_ref()
                .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
                .unwrap_or_default();
            if waited < Duration::from_secs(after.max(1) as u64) {
                continue;
            }
            let Some(next) = self.next_pool(&job).await else {
                continue;
            };
            let why = format!(
                "waited {}s on ProverPool {}/{} without starting; moved to its fallback pool {}/{}",
                waited.as_secs(),
                PoolKey::of(&job).namespace,
                PoolKey::of(&job).name,
                next.namespace,
                next.name
            );
            let moved = job_status::moved(
                &job,
                (&next.namespace, &next.name),
                job_status::current_attempt(&status),
                why,
                &Time(now),
            );
            let api: Api<ProofJob> =
                Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
            match job_status::write(&api, &job, moved).await {
                Ok(stored) => {
                    info!(job = %job.name_any(), pool = %next.name, "moved to a fallback pool after waiting");
                    self.observe(stored);
                }
                // A lease or another write won the race; the newer copy decides next time.
                Err(e) => debug!(error = %e, "could not move a waiting job"),
            }
        }
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
}
