//! Condition types used on zkfleet statuses, and the one rule for updating a condition list.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition status strings of `metav1.Condition`.
pub mod status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
}

/// Condition types of a `ProverPool`.
pub mod pool_condition {
    /// The pool has at least one ready pod serving the current parameters and takes jobs.
    pub const READY: &str = "Ready";
    /// Every file of `spec.parameters` was fetched and matched its sha256 on the serving pods.
    pub const PARAMETERS_READY: &str = "ParametersReady";
    /// A rollout (new parameters or pod template) is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// All desired pods could be scheduled (false when, for example, GPUs are short).
    pub const CAPACITY_AVAILABLE: &str = "CapacityAvailable";
    /// The autoscaler is active and able to scale the pool.
    pub const SCALING_ACTIVE: &str = "ScalingActive";
    /// `False` while a pod was quarantined in the last hour (a failed known-answer check or
    /// too many rejected proofs).
    pub const PROVERS_HEALTHY: &str = "ProversHealthy";
}

/// Sets `new` in `conditions`, replacing the condition of the same type. The
/// `lastTransitionTime` of the existing condition is kept when its status did not change, so a
/// status computed twice from the same world compares equal and is not written again.
/// Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            if *existing == new {
                return false;
            }
            *existing = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == status::TRUE)
}

/// Builds a condition. `now` becomes `lastTransitionTime` unless `set_condition` keeps an
/// older one.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![new_condition("Ready", "True", "Up", "ok", Some(1), at(10))];
        let changed = set_condition(
            &mut conditions,
            new_condition("Ready", "True", "Up", "ok", Some(1), at(20)),
        );
        assert!(!changed);
        assert_eq!(conditions[0].last_transition_time, at(10));

        let changed = set_condition(
            &mut conditions,
            new_condition("Ready", "True", "Up", "2 pods", Some(2), at(30)),
        );
        assert!(changed);
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "2 pods");
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let mut conditions = vec![new_condition("Ready", "True", "Up", "ok", None, at(10))];
        assert!(set_condition(
            &mut conditions,
            new_condition("Ready", "False", "NoPods", "no ready pods", None, at(20)),
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(20));
        assert!(!is_condition_true(&conditions, "Ready"));
    }

    #[test]
    fn appends_new_types() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            new_condition("Ready", "True", "Up", "ok", None, at(1))
        ));
        assert!(set_condition(
            &mut conditions,
            new_condition("Progressing", "False", "Done", "", None, at(1))
        ));
        assert_eq!(conditions.len(), 2);
        assert!(is_condition_true(&conditions, "Ready"));
    }
}
