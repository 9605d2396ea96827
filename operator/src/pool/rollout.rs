//! Parameters rotation as a decision: from the pool, its Deployment and its pods, which
//! parameters the template serves now, whether a rotation finished, and when one that did not
//! become ready in time goes back to the previous parameters. Pure, so every branch is tested.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use zkfleet_crds::v1alpha1::{ParametersRevision, ParametersStatus, ProverPool, RolloutState};

use crate::build::PARAMETERS_LABEL;
use crate::params::{self, Serving};

/// Longest rollout message kept (Events carry at most 1 kB).
const MAX_MESSAGE: usize = 900;

/// What a pass does about parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// What the Deployment template must serve after this pass.
    pub serving: Serving,
    /// `status.parameters` after this pass.
    pub status: ParametersStatus,
    /// What happened in this pass that a user should hear about.
    pub event: Option<RolloutEvent>,
}

/// Rotation transitions, published as Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutEvent {
    /// A rotation to new parameters began.
    Started { from: String, to: String },
    /// A rotation missed its deadline and the previous parameters were restored.
    RolledBack { message: String },
    /// Parameters never became ready and there is nothing to go back to.
    Failed { message: String },
}

/// Whether the Deployment finished rolling out its current template: every desired pod exists,
/// runs that template, and is ready, and no old pod is left.
pub fn deployment_complete(deployment: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&deployment.spec, &deployment.status) else {
        return false;
    };
    let desired = spec.replicas.unwrap_or(1);
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas.unwrap_or(0) == desired
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) == desired
}

/// Decides the parameters side of a pass. `deployment` is the Deployment as found before this
/// pass applied anything; `not_ready` says, by pod name, why running provers are not ready
/// (their `/readyz` answer); `deadline` is how long a rotation may take to become ready.
pub fn decide(
    pool: &ProverPool,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    not_ready: &BTreeMap<String, String>,
    now: Timestamp,
    deadline: Duration,
) -> Decision {
    let desired = &pool.spec.parameters;
    let desired_fp = params::fingerprint(desired);
    let prior = pool
        .status
        .as_ref()
        .and_then(|s| s.parameters.clone())
        .unwrap_or_default();
    let complete = deployment.is_some_and(deployment_complete);
    let observed = deployment.and_then(Serving::observed);

    let Some(observed) = observed else {
        // No template yet: the pool's first parameters, with nothing to go back to.
        return settle(
            pool,
            deployment,
            Serving::fresh(desired),
            &prior,
            complete,
            pods,
            not_ready,
            now,
            deadline,
        );
    };

    if observed.rolled_back.as_deref() == Some(desired_fp.as_str()) {
        // These parameters already failed; keep serving what was restored until they change.
        let message = prior.message.clone().unwrap_or_else(|| {
            format!(
                "parameters {} did not become ready and were rolled back to {}",
                desired.version, observed.target.version
            )
        });
        return Decision {
            status: ParametersStatus {
                current: Some(params::revision(&observed.target)),
                previous: None,
                rollout: Some(RolloutState::RolledBack),
                message: Some(message),
                rollout_start_time: prior.rollout_start_time.clone(),
            },
            serving: observed,
            event: None,
        };
    }

    if params::fingerprint(&observed.target) != desired_fp {
        // spec.parameters changed: roll to it. The template served so far is the rollback
        // target if it was good; during an unfinished rotation the last good set stays it.
        let previous = match prior.rollout {
            Some(RolloutState::Progressing) | Some(RolloutState::Failed) => observed.previous,
            _ => Some(observed.target.clone()),
        };
        let serving = Serving {
            target: desired.clone(),
            previous,
            rolled_back: None,
        };
        return Decision {
            status: ParametersStatus {
                current: Some(params::revision(desired)),
                previous: serving.previous.as_ref().map(params::revision),
                rollout: Some(RolloutState::Progressing),
                message: Some(format!(
                    "rolling out parameters {} ({})",
                    desired.version,
                    params::digest(desired)
                )),
                rollout_start_time: Some(Time(now)),
            },
            event: Some(RolloutEvent::Started {
                from: observed.target.version.clone(),
                to: desired.version.clone(),
            }),
            serving,
        };
    }

    let serving = Serving {
        rolled_back: None,
        ..observed
    };
    settle(
        pool, deployment, serving, &prior, complete, pods, not_ready, now, deadline,
    )
}

/// The template already serves `spec.parameters`: finished, still rolling, or out of time.
#[allow(clippy::too_many_arguments)]
fn settle(
    pool: &ProverPool,
    deployment: Option<&Deployment>,
    serving: Serving,
    prior: &ParametersStatus,
    complete: bool,
    pods: &[Pod],
    not_ready: &BTreeMap<String, String>,
    now: Timestamp,
    deadline: Duration,
) -> Decision {
    let target = params::revision(&serving.target);
    let previous = serving.previous.as_ref().map(params::revision);
    let already_complete =
        prior.rollout == Some(RolloutState::Complete) && prior.current.as_ref() == Some(&target);
    if already_complete || complete {
        // Once complete, later pod failures are the pods' problem, not the rotation's.
        return Decision {
            status: ParametersStatus {
                current: Some(target),
                previous,
                rollout: Some(RolloutState::Complete),
                message: None,
                rollout_start_time: prior.rollout_start_time.clone(),
            },
            serving,
            event: None,
        };
    }

    let started = match (&prior.rollout, &prior.rollout_start_time, &prior.current) {
        (Some(RolloutState::Progressing | RolloutState::Failed), Some(t), Some(c))
            if *c == target =>
        {
            t.0
        }
        _ => now,
    };
    let overdue = now.duration_since(started).unsigned_abs() > deadline && now > started;

    if !overdue {
        return Decision {
            status: ParametersStatus {
                current: Some(target.clone()),
                previous,
                rollout: Some(RolloutState::Progressing),
                message: Some(format!(
                    "rolling out parameters {} ({})",
                    target.version, target.digest
                )),
                rollout_start_time: Some(Time(started)),
            },
            serving,
            event: None,
        };
    }

    let mut why = failure_message(&serving, &target, pods, not_ready, deadline);
    if let Some(failure) = deployment.and_then(super::status::replica_failure) {
        why.push_str(&format!("; pods cannot be created: {failure}"));
    }
    match serving.previous.clone() {
        Some(previous_spec) => {
            let restored = params::revision(&previous_spec);
            let message = truncate(format!("{why}; rolled back to {}", restored.version));
            Decision {
                status: ParametersStatus {
                    current: Some(restored),
                    previous: None,
                    rollout: Some(RolloutState::RolledBack),
                    message: Some(message.clone()),
                    rollout_start_time: Some(Time(started)),
                },
                serving: Serving {
                    target: previous_spec,
                    previous: None,
                    rolled_back: Some(params::fingerprint(&pool.spec.parameters)),
                },
                event: Some(RolloutEvent::RolledBack { message }),
            }
        }
        None => {
            // The first words found stay: rewriting them as the kubelet alternates between
            // back-off reasons would rewrite the status every pass.
            let message = match (&prior.rollout, &prior.message) {
                (Some(RolloutState::Failed), Some(m)) => m.clone(),
                _ => truncate(format!(
                    "{why}; there are no previous parameters to go back to"
                )),
            };
            let event =
                (prior.rollout != Some(RolloutState::Failed)).then(|| RolloutEvent::Failed {
                    message: message.clone(),
                });
            Decision {
                status: ParametersStatus {
                    current: Some(target),
                    previous: None,
                    rollout: Some(RolloutState::Failed),
                    message: Some(message),
                    rollout_start_time: Some(Time(started)),
                },
                serving,
                event,
            }
        }
    }
}

/// Why the pods of `target` are not ready, in the words the kubelet and scheduler used.
fn failure_message(
    serving: &Serving,
    target: &ParametersRevision,
    pods: &[Pod],
    not_ready: &BTreeMap<String, String>,
    deadline: Duration,
) -> String {
    let fp = params::fingerprint(&serving.target);
    let mut new_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PARAMETERS_LABEL))
                == Some(&fp)
        })
        .collect();
    new_pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let details: Vec<String> = new_pods
        .iter()
        .filter_map(|p| {
            // A prover that runs says best why it is not ready; the kubelet only knows that.
            let name = p.metadata.name.as_deref().unwrap_or("<pod>");
            match not_ready.get(name) {
                Some(reason) => Some(format!("pod {name}: prover not ready: {reason}")),
                None => pod_problem(p),
            }
        })
        .take(2)
        .collect();
    let mut message = format!(
        "parameters {} ({}) were not ready within {}s",
        target.version,
        target.digest,
        deadline.as_secs()
    );
    if details.is_empty() {
        if new_pods.is_empty() {
            message.push_str(": no pod with these parameters was created");
        }
    } else {
        message.push_str(": ");
        message.push_str(&details.join("; "));
    }
    message
}

/// The most telling problem of one pod: a waiting or failed container, a failed readiness
/// check, or the scheduler's reason.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("<pod>");
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        let mut parts = Vec::new();
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or("Waiting");
            match waiting.message.as_deref() {
                Some(m) if !m.is_empty() => parts.push(format!("{reason}: {m}")),
                _ => parts.push(reason.to_string()),
            }
        }
        if let Some(term) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            let mut last = format!(
                "last exit {} ({})",
                term.exit_code,
                term.reason.as_deref().unwrap_or("Terminated")
            );
            if let Some(m) = term.message.as_deref().filter(|m| !m.is_empty()) {
                last.push_str(&format!(": {}", m.trim()));
            }
            parts.push(last);
        }
        if !parts.is_empty() {
            return Some(format!(
                "pod {name}: container {}: {}",
                cs.name,
                parts.join(", ")
            ));
        }
    }
    for condition in status.conditions.iter().flatten() {
        if condition.status == "False"
            && (condition.type_ == "PodScheduled" || condition.type_ == "Ready")
        {
            let text = condition
                .message
                .clone()
                .or_else(|| condition.reason.clone())
                .unwrap_or_else(|| format!("{} is False", condition.type_));
            let what = if condition.type_ == "PodScheduled" {
                "not scheduled"
            } else {
                "not ready"
            };
            return Some(format!("pod {name}: {what}: {text}"));
        }
    }
    None
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::deployment::deployment;
    use crate::build::fixtures::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use zkfleet_crds::v1alpha1::ProverPoolStatus;

    const DEADLINE: Duration = Duration::from_secs(300);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn with_version(pool: &ProverPool, version: &str, sha: char) -> ProverPool {
        let mut pool = pool.clone();
        pool.spec.parameters.version = version.into();
        pool.spec.parameters.files[0].sha256 = sha.to_string().repeat(64);
        pool
    }

    /// The Deployment a previous pass applied for `serving`, with a rollout state.
    fn applied(pool: &ProverPool, serving: &Serving, complete: bool) -> Deployment {
        let mut d = deployment(pool, serving, &ctx());
        d.metadata.generation = Some(2);
        let replicas = pool.spec.replicas;
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(if complete { replicas } else { replicas + 1 }),
            updated_replicas: Some(if complete { replicas } else { 1 }),
            ready_replicas: Some(if complete { replicas } else { replicas - 1 }),
            ..DeploymentStatus::default()
        });
        d
    }

    fn with_status(mut pool: ProverPool, parameters: ParametersStatus) -> ProverPool {
        pool.status = Some(ProverPoolStatus {
            parameters: Some(parameters),
            ..ProverPoolStatus::default()
        });
        pool
    }

    fn crashing_pod(fp: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gpu-pool-prover-abc", "labels": {PARAMETERS_LABEL: fp}},
            "status": {"containerStatuses": [{
                "name": "prover", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "message": "circuit.zkey: sha256 mismatch"}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn first_template_progresses_then_completes() {
        let pool = pool(GPU_POOL);
        let first = decide(&pool, None, &[], &BTreeMap::new(), at(0), DEADLINE);
        assert_eq!(first.serving, Serving::fresh(&pool.spec.parameters));
        assert_eq!(first.status.rollout, Some(RolloutState::Progressing));
        assert_eq!(
            first.status.current,
            Some(params::revision(&pool.spec.parameters))
        );
        assert_eq!(first.event, None);

        let pool = with_status(pool, first.status);
        let d = applied(&pool, &first.serving, true);
        let done = decide(&pool, Some(&d), &[], &BTreeMap::new(), at(30), DEADLINE);
        assert_eq!(done.status.rollout, Some(RolloutState::Complete));
        assert_eq!(done.status.previous, None);
    }

    #[test]
    fn first_template_that_never_loads_fails_without_rollback() {
        let pool = pool(GPU_POOL);
        let first = decide(&pool, None, &[], &BTreeMap::new(), at(0), DEADLINE);
        let pool = with_status(pool, first.status);
        let d = applied(&pool, &first.serving, false);
        let fp = params::fingerprint(&pool.spec.parameters);
        let late = decide(
            &pool,
            Some(&d),
            &[crashing_pod(&fp)],
            &BTreeMap::new(),
            at(301),
            DEADLINE,
        );
        assert_eq!(late.status.rollout, Some(RolloutState::Failed));
        assert_eq!(late.serving.target, pool.spec.parameters);
        assert!(matches!(late.event, Some(RolloutEvent::Failed { .. })));
        // Failing again is not news.
        let pool = with_status(pool, late.status);
        let later = decide(&pool, Some(&d), &[], &BTreeMap::new(), at(400), DEADLINE);
        assert_eq!(later.status.rollout, Some(RolloutState::Failed));
        assert_eq!(
            later.status,
            pool.status.as_ref().unwrap().parameters.clone().unwrap()
        );
        assert_eq!(later.event, None);
    }

    #[test]
    fn changed_parameters_start_a_rotation_from_the_good_set() {
        let v1 = with_version(&pool(GPU_POOL), "v1", 'a');
        let serving_v1 = Serving::fresh(&v1.spec.parameters);
        let v1_done = ParametersStatus {
            current: Some(params::revision(&v1.spec.parameters)),
            rollout: Some(RolloutState::Complete),
            ..ParametersStatus::default()
        };
        let d = applied(&v1, &serving_v1, true);
        let v2 = with_status(with_version(&v1, "v2", 'b'), v1_done);

        let started = decide(&v2, Some(&d), &[], &BTreeMap::new(), at(0), DEADLINE);
        assert_eq!(started.serving.target, v2.spec.parameters);
        assert_eq!(started.serving.previous, Some(v1.spec.parameters.clone()));
        assert_eq!(started.status.rollout, Some(RolloutState::Progressing));
        assert_eq!(started.status.current.as_ref().unwrap().version, "v2");
        assert_eq!(started.status.previous.as_ref().unwrap().version, "v1");
        assert_eq!(started.status.rollout_start_time, Some(Time(at(0))));
        assert_eq!(
            started.event,
            Some(RolloutEvent::Started {
                from: "v1".into(),
                to: "v2".into()
            })
        );

        // Still rolling within the deadline: nothing new happens.
        let v2 = with_status(v2, started.status.clone());
        let d2 = applied(&v2, &started.serving, false);
        let rolling = decide(&v2, Some(&d2), &[], &BTreeMap::new(), at(200), DEADLINE);
        assert_eq!(rolling.status, started.status);
        assert_eq!(rolling.serving, started.serving);
        assert_eq!(rolling.event, None);

        // Ready: complete, previous still shown.
        let d2 = applied(&v2, &started.serving, true);
        let done = decide(&v2, Some(&d2), &[], &BTreeMap::new(), at(250), DEADLINE);
        assert_eq!(done.status.rollout, Some(RolloutState::Complete));
        assert_eq!(done.status.current.as_ref().unwrap().version, "v2");
        assert_eq!(done.status.previous.as_ref().unwrap().version, "v1");
        assert_eq!(done.event, None);
    }

    #[test]
    fn rollback_message_quotes_the_prover_of_a_running_unready_pod() {
        let v1 = with_version(&pool(GPU_POOL), "v1", 'a');
        let v2 = with_version(&v1, "v2", 'b');
        let serving = Serving {
            target: v2.spec.parameters.clone(),
            previous: Some(v1.spec.parameters.clone()),
            rolled_back: None,
        };
        let v2 = with_status(
            v2,
            ParametersStatus {
                current: Some(params::revision(&serving.target)),
                previous: Some(params::revision(&v1.spec.parameters)),
                rollout: Some(RolloutState::Progressing),
                rollout_start_time: Some(Time(at(0))),
                message: None,
            },
        );
        let d = applied(&v2, &serving, false);
        let fp = params::fingerprint(&v2.spec.parameters);
        let unready: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gpu-pool-prover-new", "labels": {PARAMETERS_LABEL: fp}},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "message": "containers with unready status: [prover]"}]}
        }))
        .unwrap();
        let said = BTreeMap::from([(
            "gpu-pool-prover-new".to_string(),
            "parameters digest sha256:bbbb does not match file circuit.zkey".to_string(),
        )]);
        let decision = decide(
            &v2,
            Some(&d),
            std::slice::from_ref(&unready),
            &said,
            at(301),
            DEADLINE,
        );
        let message = decision.status.message.unwrap();
        assert!(
            message.contains(
                "pod gpu-pool-prover-new: prover not ready: parameters digest sha256:bbbb does not match file circuit.zkey"
            ),
            "{message}"
        );
        // Without the prover's answer, the kubelet's words are all there is.
        let decision = decide(
            &v2,
            Some(&d),
            &[unready],
            &BTreeMap::new(),
            at(301),
            DEADLINE,
        );
        let message = decision.status.message.unwrap();
        assert!(
            message.contains("not ready: containers with unready status"),
            "{message}"
        );
    }

    #[test]
    fn overdue_rotation_rolls_back_and_says_why() {
        let v1 = with_version(&pool(GPU_POOL), "v1", 'a');
        let v2 = with_version(&v1, "v2", 'b');
        let serving = Serving {
            target: v2.spec.parameters.clone(),
            previous: Some(v1.spec.parameters.clone()),
            rolled_back: None,
        };
        let v2 = with_status(
            v2,
            ParametersStatus {
                current: Some(params::revision(&serving.target)),
                previous: Some(params::revision(&v1.spec.parameters)),
                rollout: Some(RolloutState::Progressing),
                rollout_start_time: Some(Time(at(0))),
                message: None,
            },
        );
        let d = applied(&v2, &serving, false);
        let fp = params::fingerprint(&v2.spec.parameters);
        let decision = decide(
            &v2,
            Some(&d),
            &[crashing_pod(&fp)],
            &BTreeMap::new(),
            at(301),
            DEADLINE,
        );

        assert_eq!(decision.serving.target, v1.spec.parameters);
        assert_eq!(decision.serving.rolled_back, Some(fp));
        assert_eq!(decision.status.rollout, Some(RolloutState::RolledBack));
        assert_eq!(decision.status.current.as_ref().unwrap().version, "v1");
        let message = decision.status.message.clone().unwrap();
        assert!(message.contains("were not ready within 300s"), "{message}");
        assert!(message.contains("CrashLoopBackOff"), "{message}");
        assert!(message.contains("sha256 mismatch"), "{message}");
        assert!(message.ends_with("rolled back to v1"), "{message}");
        assert!(matches!(
            decision.event,
            Some(RolloutEvent::RolledBack { .. })
        ));

        // Next pass: the rolled-back parameters are not retried while the spec is unchanged.
        let v2 = with_status(v2, decision.status.clone());
        let d = applied(&v2, &decision.serving, true);
        let after = decide(&v2, Some(&d), &[], &BTreeMap::new(), at(400), DEADLINE);
        assert_eq!(after.serving, decision.serving);
        assert_eq!(after.status.rollout, Some(RolloutState::RolledBack));
        assert_eq!(after.status.message, Some(message));
        assert_eq!(after.event, None);

        // A fixed spec rotates again, from the restored set.
        let v3 = with_version(&v2, "v3", 'c');
        let next = decide(&v3, Some(&d), &[], &BTreeMap::new(), at(500), DEADLINE);
        assert_eq!(next.serving.target, v3.spec.parameters);
        assert_eq!(next.serving.previous, Some(v1.spec.parameters.clone()));
        assert_eq!(next.status.rollout, Some(RolloutState::Progressing));

        // Reverting the spec to the restored set completes without a rotation.
        let back = with_version(&v2, "v1", 'a');
        let reverted = decide(&back, Some(&d), &[], &BTreeMap::new(), at(500), DEADLINE);
        assert_eq!(reverted.serving.target, v1.spec.parameters);
        assert_eq!(reverted.serving.rolled_back, None);
        assert_eq!(reverted.status.rollout, Some(RolloutState::Complete));
    }

    #[test]
    fn a_complete_rollout_is_not_rolled_back_when_pods_fail_later() {
        let pool = pool(GPU_POOL);
        let serving = Serving::fresh(&pool.spec.parameters);
        let pool = with_status(
            pool.clone(),
            ParametersStatus {
                current: Some(params::revision(&pool.spec.parameters)),
                rollout: Some(RolloutState::Complete),
                rollout_start_time: Some(Time(at(0))),
                ..ParametersStatus::default()
            },
        );
        let d = applied(&pool, &serving, false);
        let decision = decide(&pool, Some(&d), &[], &BTreeMap::new(), at(10_000), DEADLINE);
        assert_eq!(decision.status.rollout, Some(RolloutState::Complete));
        assert_eq!(decision.event, None);
    }

    #[test]
    fn describes_unscheduled_and_unready_pods() {
        let pending: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}
        }))
        .unwrap();
        assert_eq!(
            pod_problem(&pending).unwrap(),
            "pod p: not scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
        );
        assert!(pod_problem(&Pod::default()).is_none());
    }
}
