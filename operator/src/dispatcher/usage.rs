//! What an ended attempt used, for its job's `status.usage` and the cost metrics.
//!
//! GPU time is what the attempt held, not what its kernels used: its proving time times the
//! pool's GPUs per pod, divided by the pod's slots (the slots share the pod's GPUs). That is
//! what a cloud bills for the GPU, and all anyone can count for an attempt whose pod was lost.
//! CPU time is what the prover measured; a lost pod reports none.

use k8s_openapi::jiff::Timestamp;
use zkfleet_contract::lease::Usage;
use zkfleet_crds::v1alpha1::{ProofJob, ProverPool};

use crate::dispatcher::status::Charge;

/// Status times have whole seconds: a report may exceed the attempt's span by this much.
const STATUS_CLOCK_SLACK_MILLIS: i64 = 1_000;

/// The charge for attempt `attempt` of `job`, ending `now`: `reported` when its pod sent a
/// result, `None` when the lease lapsed.
pub fn charge(
    pool: Option<&ProverPool>,
    job: &ProofJob,
    attempt: u32,
    reported: Option<&Usage>,
    now: Timestamp,
) -> Charge {
    let held_millis = job
        .status
        .as_ref()
        .and_then(|s| s.attempts.iter().find(|a| a.attempt == attempt as i32))
        .and_then(|a| a.start_time.as_ref())
        .and_then(|start| now.duration_since(start.0).as_millis().try_into().ok())
        .map(|ms: i64| ms.max(0));
    // A pod's report cannot stretch the attempt past what the status saw of it, so a
    // misbehaving pod cannot bill more than the lease it held.
    let wall_millis = match (reported, held_millis) {
        (Some(r), Some(held)) => i64::try_from(r.wall_millis)
            .unwrap_or(i64::MAX)
            .min(held + STATUS_CLOCK_SLACK_MILLIS),
        // No start time on the status (it was lost): the lease's longest span at most.
        (Some(r), None) => i64::try_from(r.wall_millis)
            .unwrap_or(i64::MAX)
            .min(MAX_ATTEMPT_MILLIS),
        (None, held) => held.unwrap_or(0),
    };
    let gpus_per_slot = pool.map_or(0.0, |p| {
        let gpus = p
            .spec
            .gpu
            .as_ref()
            .filter(|g| g.required)
            .map_or(0, |g| g.count.max(0));
        f64::from(gpus) / f64::from(p.spec.slots_per_replica.max(1))
    });
    // CPU time is the pod's word too: no more than the attempt's span on every core the pod
    // may use, so a pod (or a prover it runs) cannot bill a tenant for time that never was.
    let cpu_ceiling = (wall_millis as f64
        * pool.and_then(cpu_limit_cores).unwrap_or(MAX_NODE_CORES))
    .min(i64::MAX as f64) as i64;
    Charge {
        wall_millis,
        ended_at: Some(now.into()),
        cpu_millis: reported.map(|r| {
            i64::try_from(r.cpu_millis)
                .unwrap_or(i64::MAX)
                .min(cpu_ceiling)
        }),
        gpu_millis: (wall_millis as f64 * gpus_per_slot).round() as i64,
        pricing: pool.and_then(|p| p.spec.pricing.clone()),
    }
}

/// Cores a pod may use when its pool sets no CPU limit: more than any node has.
const MAX_NODE_CORES: f64 = 512.0;

/// The longest an attempt can run: `timeoutSeconds` is at most a day.
const MAX_ATTEMPT_MILLIS: i64 = 86_400_000;

/// The CPU limit of the pool's prover container, in cores (`2`, `1.5`, `500m`).
fn cpu_limit_cores(pool: &ProverPool) -> Option<f64> {
    let quantity = &pool.spec.resources.as_ref()?.limits.as_ref()?.get("cpu")?.0;
    let cores = match quantity.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().ok()? / 1000.0,
        None => quantity.parse::<f64>().ok()?,
    };
    (cores.is_finite() && cores > 0.0).then_some(cores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(gpu: serde_json::Value, slots: i32) -> ProverPool {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": "gpu", "namespace": "team"},
            "spec": {"backend": {"type": "groth16-bn254"}, "slotsPerReplica": slots, "gpu": gpu,
                     "parameters": {"version": "v1", "source": {"configMap": {"name": "p"}}, "files": []},
                     "pricing": {"gpuHour": "2.5"}},
        }))
        .unwrap()
    }

    fn job_started_at(secs: i64) -> ProofJob {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"},
            "spec": {"poolRef": {"name": "gpu"}, "input": {"inline": {"json": "{}"}}},
            "status": {"attempts": [{"attempt": 1, "startTime": Timestamp::from_second(secs).unwrap().to_string()}]},
        }))
        .unwrap()
    }

    #[test]
    fn gpu_time_is_the_slots_share_of_the_pods_gpus() {
        let two_gpus_four_slots = pool(json!({"count": 2}), 4);
        let reported = Usage {
            wall_millis: 8_000,
            cpu_millis: 3_000,
        };
        let now = Timestamp::from_second(100).unwrap();
        let c = charge(
            Some(&two_gpus_four_slots),
            &job_started_at(90),
            1,
            Some(&reported),
            now,
        );
        assert_eq!((c.gpu_millis, c.cpu_millis), (4_000, Some(3_000)));
        assert_eq!(c.currency(), Some("USD"));
        // GPUs the pods do not request are not billed.
        let optional = pool(json!({"count": 2, "required": false}), 1);
        let c = charge(
            Some(&optional),
            &job_started_at(90),
            1,
            Some(&reported),
            now,
        );
        assert_eq!(c.gpu_millis, 0);
    }

    #[test]
    fn a_lost_attempt_holds_its_gpu_until_it_lapsed_and_reports_cannot_exceed_it() {
        let one_gpu = pool(json!({"count": 1}), 1);
        let now = Timestamp::from_second(100).unwrap();
        let lost = charge(Some(&one_gpu), &job_started_at(70), 1, None, now);
        assert_eq!((lost.gpu_millis, lost.cpu_millis), (30_000, None));
        let inflated = Usage {
            wall_millis: 3_600_000,
            cpu_millis: 1,
        };
        let c = charge(Some(&one_gpu), &job_started_at(70), 1, Some(&inflated), now);
        assert_eq!(c.gpu_millis, 31_000);
    }

    #[test]
    fn reported_cpu_time_is_bounded_by_the_span_and_the_pods_cores() {
        let mut limited = pool(json!({"count": 1}), 2);
        limited.spec.resources =
            Some(serde_json::from_value(json!({"limits": {"cpu": "1500m"}})).unwrap());
        let now = Timestamp::from_second(100).unwrap();
        let huge = Usage {
            wall_millis: 10_000,
            // Past i64::MAX: once cast to a negative number of milliseconds.
            cpu_millis: u64::MAX,
        };
        let c = charge(Some(&limited), &job_started_at(90), 1, Some(&huge), now);
        assert_eq!(c.cpu_millis, Some(15_000), "10 s on 1.5 cores at most");
        let unlimited = pool(json!({"count": 1}), 1);
        let c = charge(Some(&unlimited), &job_started_at(90), 1, Some(&huge), now);
        let cpu = c.cpu_millis.unwrap();
        assert!((0..=10_000 * 512).contains(&cpu), "{cpu}");
        assert!(c.cost().unwrap() >= 0.0);
    }
}
