//! Scale to zero and back, as KEDA does: with `autoscaling.minReplicas: 0` the operator takes
//! an idle pool to zero replicas and wakes it to one when a job is queued; in between the
//! HorizontalPodAutoscaler scales it. The `ScalingActive` condition says which state the pool
//! is in and why. Pure: the caller applies the decision.

use std::time::Duration;

use zkfleet_crds::v1alpha1::ProverPool;

use crate::build::hpa::QUEUED_METRIC;

/// What the operator itself does to `spec.replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Nothing: the HPA (or the user) owns the size.
    Keep,
    /// Idle long enough: to zero replicas.
    ToZero,
    /// Jobs are waiting on a pool at zero: to one replica, the HPA takes over from there.
    Wake,
}

/// The decision and the condition that explains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scaling {
    pub resize: Resize,
    /// `ScalingActive` status: `True` while the HPA scales the pool.
    pub active: bool,
    pub reason: &'static str,
    pub message: String,
    /// Look again after this long (the idle timer running out).
    pub recheck: Option<Duration>,
}

/// Decides from the pool, its jobs and how long it has had none.
pub fn decide(pool: &ProverPool, queued: usize, running: usize, idle_for: Duration) -> Scaling {
    let Some(autoscaling) = pool.spec.autoscaling.as_ref() else {
        return Scaling {
            resize: Resize::Keep,
            active: false,
            reason: "AutoscalingDisabled",
            message: "spec.autoscaling is not set: spec.replicas is the pool's size".into(),
            recheck: None,
        };
    };
    let busy = queued + running > 0;
    let to_zero_allowed = autoscaling.min_replicas == 0;
    let idle_limit = Duration::from_secs(autoscaling.idle_seconds_before_zero.max(0) as u64);
    let hpa_message = format!(
        "the HorizontalPodAutoscaler scales the pool between {} and {} replicas on {QUEUED_METRIC}",
        autoscaling.min_replicas.max(1),
        autoscaling.max_replicas,
    );
    if pool.spec.replicas == 0 {
        if busy && to_zero_allowed {
            return Scaling {
                resize: Resize::Wake,
                active: true,
                reason: "WokeUp",
                message: format!(
                    "{queued} queued job(s) woke the pool from zero to one replica; {hpa_message}"
                ),
                recheck: None,
            };
        }
        return Scaling {
            resize: Resize::Keep,
            active: false,
            reason: "ScaledToZero",
            message: if to_zero_allowed {
                "no jobs queued or running: the pool is at zero replicas and the first queued job wakes it".into()
            } else {
                "spec.replicas is 0 and autoscaling.minReplicas is not 0: the HorizontalPodAutoscaler does not scale a pool at zero; set spec.replicas to wake it".into()
            },
            recheck: None,
        };
    }
    if to_zero_allowed && !busy {
        if idle_for >= idle_limit {
            return Scaling {
                resize: Resize::ToZero,
                active: false,
                reason: "ScaledToZero",
                message: format!(
                    "no jobs queued or running for {} s (idleSecondsBeforeZero {}): scaled to zero; the first queued job wakes the pool",
                    idle_for.as_secs(),
                    idle_limit.as_secs()
                ),
                recheck: None,
            };
        }
        return Scaling {
            resize: Resize::Keep,
            active: true,
            reason: "HorizontalPodAutoscaler",
            message: hpa_message,
            recheck: Some(idle_limit - idle_for + Duration::from_millis(200)),
        };
    }
    Scaling {
        resize: Resize::Keep,
        active: true,
        reason: "HorizontalPodAutoscaler",
        message: hpa_message,
        recheck: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;
    use serde_json::json;

    fn pool_with(replicas: i32, min: i32, idle: i32) -> ProverPool {
        let mut p = pool(GPU_POOL);
        p.spec.replicas = replicas;
        p.spec.autoscaling = Some(
            serde_json::from_value(json!({"minReplicas": min, "maxReplicas": 4,
                                          "idleSecondsBeforeZero": idle}))
            .unwrap(),
        );
        p
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_idle_pool_waits_out_its_idle_time_then_goes_to_zero() {
        let p = pool_with(2, 0, 60);
        let waiting = decide(&p, 0, 0, 20 * SECOND);
        assert_eq!(waiting.resize, Resize::Keep);
        assert!(waiting.active);
        assert!(waiting.recheck.unwrap() >= 40 * SECOND);
        let zero = decide(&p, 0, 0, 60 * SECOND);
        assert_eq!(zero.resize, Resize::ToZero);
        assert_eq!((zero.active, zero.reason), (false, "ScaledToZero"));
    }

    #[test]
    fn a_busy_pool_never_goes_to_zero() {
        let p = pool_with(1, 0, 0);
        assert_eq!(decide(&p, 0, 1, 999 * SECOND).resize, Resize::Keep);
        assert_eq!(decide(&p, 3, 0, 999 * SECOND).resize, Resize::Keep);
    }

    #[test]
    fn a_queued_job_wakes_a_pool_at_zero() {
        let p = pool_with(0, 0, 60);
        let woke = decide(&p, 1, 0, Duration::ZERO);
        assert_eq!(woke.resize, Resize::Wake);
        assert_eq!((woke.active, woke.reason), (true, "WokeUp"));
        let asleep = decide(&p, 0, 0, Duration::ZERO);
        assert_eq!(asleep.resize, Resize::Keep);
        assert_eq!((asleep.active, asleep.reason), (false, "ScaledToZero"));
    }

    #[test]
    fn pools_with_a_minimum_stay_with_the_hpa() {
        let p = pool_with(2, 1, 0);
        let s = decide(&p, 0, 0, 999 * SECOND);
        assert_eq!((s.resize, s.active), (Resize::Keep, true));
        assert!(s.message.contains("between 1 and 4"), "{}", s.message);
        let manual_zero = decide(&pool_with(0, 1, 0), 5, 0, Duration::ZERO);
        assert_eq!(manual_zero.resize, Resize::Keep, "only minReplicas 0 wakes");
    }

    #[test]
    fn pools_without_autoscaling_say_so() {
        let s = decide(&pool(GPU_POOL), 5, 0, Duration::ZERO);
        assert_eq!((s.resize, s.active), (Resize::Keep, false));
        assert_eq!(s.reason, "AutoscalingDisabled");
    }
}
