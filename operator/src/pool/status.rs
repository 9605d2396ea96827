//! The pool's status, computed purely from the pool, its Deployment, its pods and the rollout
//! decision, and written (server-side apply on the status subresource) only when it changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use zkfleet_crds::v1alpha1::{
    CapacityStatus, FlaggedPod, NamespaceQueue, ProverPool, ProverPoolStatus, QueueStatus,
    RolloutState, SharingSpec, new_condition, pool_condition, set_condition, status as cond,
};

use super::rollout::{Decision, deployment_complete};
use super::validate::Invalid;
use crate::FIELD_MANAGER;
use crate::build::selector_string;

/// What the dispatcher holds for a pool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    pub queued: usize,
    pub running: usize,
    /// Pods whose proofs failed verification, newest last.
    pub flagged: Vec<FlaggedPod>,
    /// Each namespace's jobs, for a shared pool (empty otherwise).
    pub namespaces: Vec<NamespaceQueue>,
}

/// Most namespaces listed in `status.queue.namespaces`.
pub const MAX_LISTED_NAMESPACES: usize = 50;

/// The per-namespace queue of a pool with `spec.sharing`, from each namespace's (queued,
/// running) jobs: weight, counts and the share of slots due to it among the namespaces with
/// jobs; the busiest first, at most [`MAX_LISTED_NAMESPACES`].
pub fn namespace_queues(
    sharing: &SharingSpec,
    loads: &BTreeMap<String, (usize, usize)>,
) -> Vec<NamespaceQueue> {
    let busy: Vec<_> = loads.iter().filter(|(_, (q, r))| q + r > 0).collect();
    let total_weight: u64 = busy
        .iter()
        .map(|(ns, _)| u64::from(sharing.share_of(ns).0))
        .sum();
    let mut listed: Vec<NamespaceQueue> = busy
        .into_iter()
        .map(|(namespace, (queued, running))| {
            let weight = sharing.share_of(namespace).0;
            NamespaceQueue {
                namespace: namespace.clone(),
                weight: weight as i32,
                queued: *queued as i32,
                running: *running as i32,
                share_percent: (u64::from(weight) * 100)
                    .checked_div(total_weight)
                    .unwrap_or(0) as i32,
            }
        })
        .collect();
    listed.sort_by(|a, b| {
        (b.queued + b.running)
            .cmp(&(a.queued + a.running))
            .then_with(|| a.namespace.cmp(&b.namespace))
    });
    listed.truncate(MAX_LISTED_NAMESPACES);
    listed
}

/// Most pods listed in `status.flaggedPods`.
pub const MAX_FLAGGED_PODS: usize = 16;

/// Adds the dispatcher's view to a computed status: queue counts, free slots, flagged pods
/// (merged with those already listed, one entry per pod, the newest kept).
pub fn apply_load(status: &mut ProverPoolStatus, load: &Load) {
    status.queue = Some(QueueStatus {
        queued: load.queued as i32,
        running: load.running as i32,
        namespaces: load.namespaces.clone(),
    });
    if let Some(capacity) = status.capacity.as_mut() {
        capacity.free_slots = (capacity.slots - load.running as i32).max(0);
    }
    for pod in &load.flagged {
        if status.flagged_pods.iter().any(|f| f == pod) {
            continue;
        }
        status.flagged_pods.retain(|f| f.pod != pod.pod);
        status.flagged_pods.push(pod.clone());
    }
    let excess = status.flagged_pods.len().saturating_sub(MAX_FLAGGED_PODS);
    status.flagged_pods.drain(..excess);
}

/// `reason` of the `Ready` condition when no pod is ready and a running prover said why.
pub const PROVERS_NOT_READY: &str = "ProversNotReady";

/// Quotes the provers' own reasons (by pod name, from their `/readyz`) on a `Ready` condition
/// that says no pod is ready for no reason the scheduler gave: the pod knows what is wrong (a
/// GPU pool on a node without a GPU, a proving key that does not load), the kubelet only that
/// its probe failed. Two pods at most are quoted.
pub fn quote_not_ready(status: &mut ProverPoolStatus, not_ready: &BTreeMap<String, String>) {
    if not_ready.is_empty() {
        return;
    }
    let Some(ready) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == pool_condition::READY)
    else {
        return;
    };
    // Only "0/N ready" with nothing said yet: an unschedulable pod's reason comes first.
    if ready.reason != "NoPodsReady" || ready.message.contains(':') {
        return;
    }
    let quoted: Vec<String> = not_ready
        .iter()
        .take(2)
        .map(|(pod, reason)| format!("pod {pod}: {reason}"))
        .collect();
    ready.reason = PROVERS_NOT_READY.into();
    ready.message = format!("{}: {}", ready.message, quoted.join("; "));
}

/// How long a quarantined pod keeps the pool's `ProversHealthy` condition `False`.
pub const QUARANTINE_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sets `ProversHealthy` (pools with a known-answer check or quarantine): `False` while a pod
/// was quarantined within [`QUARANTINE_SHOWN_FOR`], naming the latest and why.
pub fn set_provers_healthy(status: &mut ProverPoolStatus, now: &Time) {
    let recent: Vec<&FlaggedPod> = status
        .flagged_pods
        .iter()
        .filter(|f| f.reason == QUARANTINED_REASON)
        .filter(|f| {
            f.time.as_ref().is_some_and(|t| {
                now.0.duration_since(t.0).as_secs() < QUARANTINE_SHOWN_FOR.as_secs() as i64
            })
        })
        .collect();
    let condition = match recent.last() {
        Some(latest) => new_condition(
            pool_condition::PROVERS_HEALTHY,
            cond::FALSE,
            "PodQuarantined",
            format!(
                "{} pod(s) quarantined in the last hour; the latest: {}",
                recent.len(),
                latest.message.clone().unwrap_or_else(|| latest.pod.clone())
            ),
            status.observed_generation,
            now.clone(),
        ),
        None => new_condition(
            pool_condition::PROVERS_HEALTHY,
            cond::TRUE,
            "NoneQuarantined",
            "no pod was quarantined in the last hour",
            status.observed_generation,
            now.clone(),
        ),
    };
    set_condition(&mut status.conditions, condition);
}

/// `reason` of a quarantined pod in `status.flaggedPods`.
pub use zkfleet_crds::v1alpha1::QUARANTINED as QUARANTINED_REASON;

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The API server refused the status patch.
    #[error("writing the status of {name}: {source}")]
    PatchStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl StatusError {
    /// Variant name, for the failures metric and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PatchStatus { .. } => "PatchStatus",
        }
    }
}

/// Pods the scheduler could not place, and its reason for the first of them.
pub fn unschedulable(pods: &[Pod]) -> (i32, Option<String>) {
    let mut reasons: Vec<(&str, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let c = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            (c.reason.as_deref() == Some("Unschedulable")).then(|| {
                (
                    p.metadata.name.as_deref().unwrap_or_default(),
                    c.message.clone().unwrap_or_else(|| "Unschedulable".into()),
                )
            })
        })
        .collect();
    reasons.sort();
    let count = i32::try_from(reasons.len()).unwrap_or(i32::MAX);
    (count, reasons.into_iter().next().map(|(_, m)| m))
}

/// Why the Deployment cannot create pods (admission refused them, quota, a missing
/// RuntimeClass), from its `ReplicaFailure` condition.
/// Only while no pod of the current template exists: the Deployment keeps surfacing the
/// condition of an old ReplicaSet after its cause is gone.
pub fn replica_failure(deployment: &Deployment) -> Option<String> {
    let status = deployment.status.as_ref()?;
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if desired == 0 || status.updated_replicas.unwrap_or(0) > 0 {
        return None;
    }
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| {
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "ReplicaFailure".into())
        })
}

/// Status of a valid pool after a pass. Starts from the current status so that fields other
/// writers own (queue, flagged pods) and condition transition times are kept.
pub fn compute(
    pool: &ProverPool,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    rollout: &Decision,
    now: Time,
) -> ProverPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    let generation = pool.metadata.generation;
    let desired = pool.spec.replicas;
    let observed = deployment.and_then(|d| d.status.as_ref());
    let replicas = observed.and_then(|s| s.replicas).unwrap_or(0);
    let ready = observed.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = observed.and_then(|s| s.updated_replicas).unwrap_or(0);
    let (unschedulable_replicas, unschedulable_reason) = unschedulable(pods);
    let slots = ready.saturating_mul(pool.spec.slots_per_replica);

    status.observed_generation = generation;
    status.replicas = Some(replicas);
    status.ready_replicas = Some(ready);
    status.updated_replicas = Some(updated);
    status.selector = Some(selector_string(pool));
    status.parameters = Some(rollout.status.clone());
    status.capacity = Some(CapacityStatus {
        slots,
        // The dispatcher will subtract the slots holding jobs; until then every slot is free.
        free_slots: slots,
        unschedulable_replicas,
        unschedulable_reason: unschedulable_reason.clone(),
    });

    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let s = if ok { cond::TRUE } else { cond::FALSE };
        new_condition(type_, s, reason, message, generation, now.clone())
    };
    let conditions = &mut status.conditions;

    let ready_condition = if desired == 0 {
        condition(
            pool_condition::READY,
            false,
            "ScaledToZero",
            "spec.replicas is 0".into(),
        )
    } else if ready > 0 {
        condition(
            pool_condition::READY,
            true,
            "PodsReady",
            format!("{ready}/{desired} prover pods ready"),
        )
    } else {
        let mut message = format!("0/{desired} prover pods ready");
        if let Some(reason) = &unschedulable_reason {
            message.push_str(&format!(": {reason}"));
        }
        condition(pool_condition::READY, false, "NoPodsReady", message)
    };
    set_condition(conditions, ready_condition);

    let params = &rollout.status;
    let version = params
        .current
        .as_ref()
        .map(|c| c.version.as_str())
        .unwrap_or("");
    let digest = params
        .current
        .as_ref()
        .map(|c| c.digest.as_str())
        .unwrap_or("");
    let params_condition = match params.rollout.unwrap_or_default() {
        RolloutState::Complete => condition(
            pool_condition::PARAMETERS_READY,
            true,
            "Loaded",
            format!("parameters {version} ({digest}) are loaded"),
        ),
        RolloutState::Progressing => condition(
            pool_condition::PARAMETERS_READY,
            false,
            if params.previous.is_some() {
                "Rotating"
            } else {
                "Loading"
            },
            format!("{updated}/{desired} prover pods run parameters {version} ({digest})"),
        ),
        RolloutState::RolledBack => condition(
            pool_condition::PARAMETERS_READY,
            false,
            "RolledBack",
            params.message.clone().unwrap_or_default(),
        ),
        RolloutState::Failed => condition(
            pool_condition::PARAMETERS_READY,
            false,
            "Failed",
            params.message.clone().unwrap_or_default(),
        ),
    };
    set_condition(conditions, params_condition);

    let settled = deployment.is_some_and(deployment_complete);
    let progressing = if settled {
        condition(
            pool_condition::PROGRESSING,
            false,
            "Complete",
            format!("all {desired} prover pods run the current template"),
        )
    } else {
        condition(
            pool_condition::PROGRESSING,
            true,
            "RollingUpdate",
            format!("{updated}/{desired} prover pods updated, {ready} ready, {replicas} in total"),
        )
    };
    set_condition(conditions, progressing);

    let capacity = if let Some(failure) = deployment.and_then(replica_failure) {
        condition(
            pool_condition::CAPACITY_AVAILABLE,
            false,
            "FailedCreate",
            format!("prover pods cannot be created: {failure}"),
        )
    } else if unschedulable_replicas > 0 {
        condition(
            pool_condition::CAPACITY_AVAILABLE,
            false,
            "Unschedulable",
            format!(
                "{unschedulable_replicas} prover pod(s) cannot be scheduled: {}",
                unschedulable_reason.unwrap_or_default()
            ),
        )
    } else {
        condition(
            pool_condition::CAPACITY_AVAILABLE,
            true,
            "Schedulable",
            "every prover pod is scheduled".into(),
        )
    };
    set_condition(conditions, capacity);
    status
}

/// Status of a pool that cannot be built: `Ready=False` with what to fix. Everything else is
/// left as it was; the pool waits for a change.
pub fn invalid(pool: &ProverPool, problem: &Invalid, now: Time) -> ProverPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    status.observed_generation = pool.metadata.generation;
    set_condition(
        &mut status.conditions,
        new_condition(
            pool_condition::READY,
            cond::FALSE,
            problem.reason(),
            problem.to_string(),
            pool.metadata.generation,
            now,
        ),
    );
    status
}

/// Writes `status` unless it equals the pool's current status. Conditions keep their transition
/// times (see `set_condition`), so an unchanged world compares equal and nothing is written.
pub async fn write(
    client: &Client,
    pool: &ProverPool,
    status: &ProverPoolStatus,
) -> Result<bool, StatusError> {
    if pool.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let api: Api<ProverPool> =
        Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": zkfleet_crds::v1alpha1::API_VERSION,
        "kind": "ProverPool",
        "status": status,
    });
    api.patch_status(
        &pool.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| StatusError::PatchStatus {
        name: pool.name_any(),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;
    use crate::params::{self, Serving};
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::jiff::Timestamp;
    use zkfleet_crds::v1alpha1::{ParametersStatus, find_condition};

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn decision(pool: &ProverPool, rollout: RolloutState) -> Decision {
        Decision {
            serving: Serving::fresh(&pool.spec.parameters),
            status: ParametersStatus {
                current: Some(params::revision(&pool.spec.parameters)),
                rollout: Some(rollout),
                ..ParametersStatus::default()
            },
            event: None,
        }
    }

    fn deployment(replicas: i32, ready: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(1);
        d.spec = Some(Default::default());
        d.spec.as_mut().unwrap().replicas = Some(replicas);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            ready_replicas: Some(ready),
            updated_replicas: Some(replicas),
            ..DeploymentStatus::default()
        });
        d
    }

    fn pending_pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}]}
        }))
        .unwrap()
    }

    fn cond<'a>(s: &'a ProverPoolStatus, t: &str) -> (&'a str, &'a str) {
        let c = find_condition(&s.conditions, t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn ready_pool_reports_replicas_slots_and_true_conditions() {
        let pool = pool(GPU_POOL);
        let d = deployment(2, 2);
        let s = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(0),
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.updated_replicas),
            (Some(2), Some(2), Some(2))
        );
        assert_eq!(s.selector.as_deref(), Some(selector_string(&pool).as_str()));
        let capacity = s.capacity.clone().unwrap();
        assert_eq!((capacity.slots, capacity.free_slots), (4, 4));
        assert_eq!(capacity.unschedulable_replicas, 0);
        assert_eq!(cond(&s, "Ready"), ("True", "PodsReady"));
        assert_eq!(cond(&s, "ParametersReady"), ("True", "Loaded"));
        assert_eq!(cond(&s, "Progressing"), ("False", "Complete"));
        assert_eq!(cond(&s, "CapacityAvailable"), ("True", "Schedulable"));
    }

    #[test]
    fn unschedulable_pods_report_the_schedulers_reason() {
        let pool = pool(GPU_POOL);
        let d = deployment(2, 0);
        let pods = [pending_pod("b"), pending_pod("a")];
        let s = compute(
            &pool,
            Some(&d),
            &pods,
            &decision(&pool, RolloutState::Progressing),
            at(0),
        );
        let capacity = s.capacity.clone().unwrap();
        assert_eq!(capacity.unschedulable_replicas, 2);
        assert!(
            capacity
                .unschedulable_reason
                .unwrap()
                .contains("1 Insufficient nvidia.com/gpu")
        );
        assert_eq!(cond(&s, "CapacityAvailable"), ("False", "Unschedulable"));
        let message = &find_condition(&s.conditions, "CapacityAvailable")
            .unwrap()
            .message;
        assert!(
            message.starts_with("2 prover pod(s) cannot be scheduled: 0/1 nodes"),
            "{message}"
        );
        assert_eq!(cond(&s, "Ready"), ("False", "NoPodsReady"));
        assert_eq!(cond(&s, "ParametersReady"), ("False", "Loading"));
        // The scheduler's reason stands: a prover's is not quoted over it.
        let mut quoted = s.clone();
        quote_not_ready(
            &mut quoted,
            &BTreeMap::from([("a".into(), "no GPU".into())]),
        );
        assert_eq!(quoted, s);
    }

    /// A GPU pool on a node without a GPU: the pods run and say why they are not ready, and the
    /// pool's `Ready` condition quotes them.
    #[test]
    fn the_ready_condition_quotes_why_the_provers_are_not_ready() {
        let pool = pool(GPU_POOL);
        let mut s = compute(
            &pool,
            Some(&deployment(2, 0)),
            &[],
            &decision(&pool, RolloutState::Progressing),
            at(0),
        );
        assert_eq!(cond(&s, "Ready"), ("False", "NoPodsReady"));
        let reason = "acceleration gpu: this zkfleet-prover has no GPU code yet; set spec.backend.groth16.acceleration to auto or cpu";
        let not_ready = BTreeMap::from([
            ("gpu-pool-prover-b".to_string(), reason.to_string()),
            ("gpu-pool-prover-a".to_string(), reason.to_string()),
            ("gpu-pool-prover-c".to_string(), reason.to_string()),
        ]);
        quote_not_ready(&mut s, &not_ready);
        assert_eq!(cond(&s, "Ready"), ("False", PROVERS_NOT_READY));
        let message = &find_condition(&s.conditions, "Ready").unwrap().message;
        assert_eq!(
            message,
            &format!(
                "0/2 prover pods ready: pod gpu-pool-prover-a: {reason}; pod gpu-pool-prover-b: {reason}"
            )
        );
        // Nothing to quote, or pods ready: the condition is left as it is.
        let before = s.clone();
        quote_not_ready(&mut s, &BTreeMap::new());
        assert_eq!(s, before);
        let mut ready = compute(
            &pool,
            Some(&deployment(2, 2)),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(0),
        );
        let unchanged = ready.clone();
        quote_not_ready(&mut ready, &not_ready);
        assert_eq!(ready, unchanged);
    }

    #[test]
    fn same_world_computes_an_equal_status_so_nothing_is_written() {
        let mut pool = pool(GPU_POOL);
        let d = deployment(2, 1);
        let first = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(0),
        );
        pool.status = Some(first.clone());
        let again = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(60),
        );
        assert_eq!(again, first);

        // A change moves only the conditions that flipped.
        let d = deployment(2, 0);
        let changed = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(90),
        );
        assert_ne!(changed, first);
        let t = |s: &ProverPoolStatus, c: &str| {
            find_condition(&s.conditions, c)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(t(&changed, "Ready"), at(90));
        assert_eq!(t(&changed, "CapacityAvailable"), at(0));
    }

    #[test]
    fn pods_that_cannot_be_created_are_reported() {
        let pool = pool(GPU_POOL);
        let mut d = deployment(2, 0);
        d.status.as_mut().unwrap().updated_replicas = Some(0);
        d.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(serde_json::json!({
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"gpu-pool-prover-1\" is forbidden: pod rejected: RuntimeClass \"nvidia\" not found"
        })).unwrap()]);
        let s = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Progressing),
            at(0),
        );
        assert_eq!(cond(&s, "CapacityAvailable"), ("False", "FailedCreate"));
        let message = &find_condition(&s.conditions, "CapacityAvailable")
            .unwrap()
            .message;
        assert!(message.contains("RuntimeClass"), "{message}");

        // Once pods of the current template exist, a condition left on an old ReplicaSet is
        // stale.
        d.status.as_mut().unwrap().updated_replicas = Some(1);
        let s = compute(
            &pool,
            Some(&d),
            &[],
            &decision(&pool, RolloutState::Progressing),
            at(0),
        );
        assert_eq!(cond(&s, "CapacityAvailable"), ("True", "Schedulable"));
    }

    #[test]
    fn rolled_back_parameters_explain_themselves() {
        let pool = pool(GPU_POOL);
        let mut rolled = decision(&pool, RolloutState::RolledBack);
        rolled.status.message = Some(
            "parameters v2 were not ready within 300s: pod x: CrashLoopBackOff; rolled back to v1"
                .into(),
        );
        let s = compute(&pool, Some(&deployment(2, 2)), &[], &rolled, at(0));
        assert_eq!(cond(&s, "ParametersReady"), ("False", "RolledBack"));
        let message = &find_condition(&s.conditions, "ParametersReady")
            .unwrap()
            .message;
        assert!(message.contains("CrashLoopBackOff"));
        assert_eq!(cond(&s, "Ready"), ("True", "PodsReady"));
    }

    #[test]
    fn scaled_to_zero_and_invalid_pools() {
        let mut pool = pool(GPU_POOL);
        pool.spec.replicas = 0;
        let s = compute(
            &pool,
            Some(&deployment(0, 0)),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(0),
        );
        assert_eq!(cond(&s, "Ready"), ("False", "ScaledToZero"));
        assert_eq!(s.capacity.unwrap().slots, 0);

        let s = invalid(&pool, &Invalid::NoParametersSource, at(0));
        assert_eq!(cond(&s, "Ready"), ("False", "NoParametersSource"));
        assert!(
            find_condition(&s.conditions, "Ready")
                .unwrap()
                .message
                .contains("configMap")
        );
    }

    #[test]
    fn keeps_fields_other_writers_own() {
        let mut pool = pool(GPU_POOL);
        pool.status = Some(ProverPoolStatus {
            queue: Some(zkfleet_crds::v1alpha1::QueueStatus {
                queued: 3,
                running: 1,
                ..QueueStatus::default()
            }),
            ..ProverPoolStatus::default()
        });
        let s = compute(
            &pool,
            None,
            &[],
            &decision(&pool, RolloutState::Progressing),
            at(0),
        );
        assert_eq!(s.queue.unwrap().queued, 3);
        assert_eq!(s.replicas, Some(0));
    }

    #[test]
    fn the_dispatchers_load_sets_queue_free_slots_and_flagged_pods() {
        let pool = pool(GPU_POOL);
        let mut s = compute(
            &pool,
            Some(&deployment(2, 2)),
            &[],
            &decision(&pool, RolloutState::Complete),
            at(0),
        );
        let slots = s.capacity.as_ref().unwrap().slots;
        let flag = |pod: &str, t: i64| FlaggedPod {
            pod: pod.into(),
            node: None,
            reason: "VerificationFailed".into(),
            message: None,
            time: Some(at(t)),
        };
        s.flagged_pods = vec![flag("a", 0)];
        let load = Load {
            queued: 5,
            running: 1,
            flagged: vec![flag("a", 9), flag("b", 9)],
            namespaces: Vec::new(),
        };
        apply_load(&mut s, &load);
        assert_eq!(
            s.queue,
            Some(QueueStatus {
                queued: 5,
                running: 1,
                namespaces: Vec::new(),
            })
        );
        assert_eq!(s.capacity.as_ref().unwrap().free_slots, slots - 1);
        let pods: Vec<_> = s
            .flagged_pods
            .iter()
            .map(|f| (f.pod.as_str(), f.time.clone()))
            .collect();
        assert_eq!(pods, [("a", Some(at(9))), ("b", Some(at(9)))]);
        let before = s.clone();
        apply_load(&mut s, &load);
        assert_eq!(s, before, "applying the same load again changes nothing");
    }

    #[test]
    fn a_shared_pool_lists_each_busy_namespace_with_its_due_share() {
        let sharing: SharingSpec = serde_json::from_value(serde_json::json!({
            "namespaces": [{"namespace": "team-a", "weight": 3}]
        }))
        .unwrap();
        let loads = BTreeMap::from([
            ("team-a".to_string(), (10, 6)),
            ("team-b".to_string(), (4, 2)),
            ("idle".to_string(), (0, 0)),
        ]);
        let listed = namespace_queues(&sharing, &loads);
        let rows: Vec<_> = listed
            .iter()
            .map(|n| {
                (
                    n.namespace.as_str(),
                    n.weight,
                    n.queued,
                    n.running,
                    n.share_percent,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [("team-a", 3, 10, 6, 75), ("team-b", 1, 4, 2, 25)],
            "namespaces without jobs are not listed and take no share"
        );
        let alone = BTreeMap::from([("team-b".to_string(), (4, 2))]);
        assert_eq!(namespace_queues(&sharing, &alone)[0].share_percent, 100);
    }

    #[test]
    fn provers_are_unhealthy_for_an_hour_after_a_quarantine() {
        let mut s = ProverPoolStatus::default();
        set_provers_healthy(&mut s, &at(0));
        assert_eq!(
            cond(&s, "ProversHealthy"),
            ("True", "NoneQuarantined"),
            "no quarantine yet"
        );
        s.flagged_pods.push(FlaggedPod {
            pod: "gpu-7".into(),
            node: None,
            reason: "VerificationFailed".into(),
            message: None,
            time: Some(at(10)),
        });
        set_provers_healthy(&mut s, &at(20));
        assert_eq!(
            cond(&s, "ProversHealthy").0,
            "True",
            "flagged is not quarantined"
        );
        s.flagged_pods.push(FlaggedPod {
            pod: "gpu-8".into(),
            node: None,
            reason: QUARANTINED_REASON.into(),
            message: Some("pod gpu-8 was quarantined: its known-answer proof was rejected".into()),
            time: Some(at(30)),
        });
        set_provers_healthy(&mut s, &at(40));
        assert_eq!(cond(&s, "ProversHealthy"), ("False", "PodQuarantined"));
        let message = &s
            .conditions
            .iter()
            .find(|c| c.type_ == "ProversHealthy")
            .unwrap()
            .message;
        assert!(
            message.contains("gpu-8") && message.contains("known-answer"),
            "{message}"
        );
        set_provers_healthy(&mut s, &at(30 + 3600));
        assert_eq!(cond(&s, "ProversHealthy").0, "True", "an hour later");
    }
}
