//! Which Kubernetes Events a pass publishes: only transitions a user would want to see
//! (rotation started, rolled back or failed, capacity went short), never the steady state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};
use zkfleet_crds::v1alpha1::{ProverPoolStatus, find_condition, pool_condition, status as cond};

use super::rollout::{Decision, RolloutEvent};
use super::status::{PROVERS_NOT_READY, QUARANTINED_REASON};

/// Events for what changed between `prior` and `next`.
pub fn transitions(
    prior: Option<&ProverPoolStatus>,
    next: &ProverPoolStatus,
    decision: &Decision,
) -> Vec<Event> {
    let mut events = Vec::new();
    match &decision.event {
        Some(RolloutEvent::Started { from, to }) => events.push(event(
            EventType::Normal,
            "RolloutStarted",
            "RotateParameters",
            format!("rotating parameters from {from} to {to}, one pod at a time"),
        )),
        Some(RolloutEvent::RolledBack { message }) => events.push(event(
            EventType::Warning,
            "RolledBack",
            "RotateParameters",
            message.clone(),
        )),
        Some(RolloutEvent::Failed { message }) => events.push(event(
            EventType::Warning,
            "ParametersFailed",
            "LoadParameters",
            message.clone(),
        )),
        None => {}
    }
    for quarantined in next
        .flagged_pods
        .iter()
        .filter(|f| f.reason == QUARANTINED_REASON)
    {
        let known = prior.is_some_and(|p| p.flagged_pods.iter().any(|f| f == quarantined));
        if !known {
            events.push(event(
                EventType::Warning,
                "PodQuarantined",
                "CheckProvers",
                quarantined
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("pod {} was quarantined", quarantined.pod)),
            ));
        }
    }
    if let (None, Some(not_ready)) = (provers_not_ready(prior), provers_not_ready(Some(next))) {
        events.push(event(
            EventType::Warning,
            PROVERS_NOT_READY,
            "CheckProvers",
            not_ready.message.clone(),
        ));
    }
    if let (None, Some(now_short)) = (capacity_short(prior), capacity_short(Some(next))) {
        events.push(event(
            EventType::Warning,
            "CapacityShort",
            "SchedulePods",
            now_short.message.clone(),
        ));
    }
    events
}

fn capacity_short(status: Option<&ProverPoolStatus>) -> Option<&Condition> {
    status
        .and_then(|s| find_condition(&s.conditions, pool_condition::CAPACITY_AVAILABLE))
        .filter(|c| c.status == cond::FALSE)
}

fn provers_not_ready(status: Option<&ProverPoolStatus>) -> Option<&Condition> {
    status
        .and_then(|s| find_condition(&s.conditions, pool_condition::READY))
        .filter(|c| c.reason == PROVERS_NOT_READY)
}

/// An Event about the pool.
pub fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Serving;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use zkfleet_crds::v1alpha1::{ParametersSpec, ParametersStatus, new_condition};

    fn decision(event: Option<RolloutEvent>) -> Decision {
        Decision {
            serving: Serving::fresh(&ParametersSpec::default()),
            status: ParametersStatus::default(),
            event,
        }
    }

    fn capacity(ok: bool) -> ProverPoolStatus {
        let now = Time(Timestamp::from_second(0).unwrap());
        ProverPoolStatus {
            conditions: vec![new_condition(
                pool_condition::CAPACITY_AVAILABLE,
                if ok { cond::TRUE } else { cond::FALSE },
                if ok { "Schedulable" } else { "Unschedulable" },
                if ok {
                    "ok".to_string()
                } else {
                    "1 prover pod(s) cannot be scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".to_string()
                },
                None,
                now,
            )],
            ..ProverPoolStatus::default()
        }
    }

    fn ready(reason: &str, message: &str) -> ProverPoolStatus {
        let now = Time(Timestamp::from_second(0).unwrap());
        ProverPoolStatus {
            conditions: vec![new_condition(
                pool_condition::READY,
                cond::FALSE,
                reason,
                message.to_string(),
                None,
                now,
            )],
            ..ProverPoolStatus::default()
        }
    }

    #[test]
    fn provers_not_ready_is_announced_on_the_transition_with_their_reason() {
        let quoted = "0/1 prover pods ready: pod p: acceleration gpu: no GPU code yet";
        let not_ready = ready(PROVERS_NOT_READY, quoted);
        let events = transitions(
            Some(&ready("NoPodsReady", "0/1 prover pods ready")),
            &not_ready,
            &decision(None),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, PROVERS_NOT_READY);
        assert_eq!(events[0].type_, EventType::Warning);
        assert_eq!(events[0].note.as_deref(), Some(quoted));
        assert!(transitions(Some(&not_ready), &not_ready, &decision(None)).is_empty());
    }

    #[test]
    fn capacity_short_only_on_the_transition() {
        let events = transitions(Some(&capacity(true)), &capacity(false), &decision(None));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "CapacityShort");
        assert_eq!(events[0].type_, EventType::Warning);
        assert!(
            events[0]
                .note
                .as_ref()
                .unwrap()
                .contains("Insufficient nvidia.com/gpu")
        );
        assert!(transitions(None, &capacity(false), &decision(None)).len() == 1);
        assert!(transitions(Some(&capacity(false)), &capacity(false), &decision(None)).is_empty());
        assert!(transitions(Some(&capacity(false)), &capacity(true), &decision(None)).is_empty());
    }

    #[test]
    fn a_quarantined_pod_is_announced_once() {
        let ok = capacity(true);
        let mut quarantined = ok.clone();
        quarantined
            .flagged_pods
            .push(zkfleet_crds::v1alpha1::FlaggedPod {
                pod: "gpu-7".into(),
                node: None,
                reason: QUARANTINED_REASON.into(),
                message: Some(
                    "pod gpu-7 was quarantined: its known-answer proof was rejected".into(),
                ),
                time: Some(Time(Timestamp::from_second(5).unwrap())),
            });
        let events = transitions(Some(&ok), &quarantined, &decision(None));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "PodQuarantined");
        assert_eq!(events[0].type_, EventType::Warning);
        assert!(events[0].note.as_ref().unwrap().contains("gpu-7"));
        assert!(
            transitions(Some(&quarantined), &quarantined, &decision(None)).is_empty(),
            "not again at the next pass"
        );
    }

    #[test]
    fn rollout_transitions_become_events() {
        let ok = capacity(true);
        let started = transitions(
            Some(&ok),
            &ok,
            &decision(Some(RolloutEvent::Started {
                from: "v1".into(),
                to: "v2".into(),
            })),
        );
        assert_eq!(started[0].reason, "RolloutStarted");
        assert_eq!(started[0].type_, EventType::Normal);
        let rolled = transitions(
            Some(&ok),
            &ok,
            &decision(Some(RolloutEvent::RolledBack {
                message: "why".into(),
            })),
        );
        assert_eq!(rolled[0].reason, "RolledBack");
        assert_eq!(rolled[0].type_, EventType::Warning);
        assert_eq!(rolled[0].note.as_deref(), Some("why"));
    }
}
