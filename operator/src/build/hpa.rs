//! The pool's HorizontalPodAutoscaler (`spec.autoscaling`): it scales the ProverPool itself,
//! through its scale subresource, on the queue the operator serves as external metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt as _;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{BuildContext, COMPONENT_PROVER, metadata, prover_name};

/// External metrics the HPA reads: jobs waiting in a pool's queue and jobs its pods are proving
/// (label `pool`), served by [`crate::external_metrics`].
pub use crate::external_metrics::{QUEUED_JOBS as QUEUED_METRIC, RUNNING_JOBS as RUNNING_METRIC};

/// Queued jobs and running jobs one replica should have: `targetQueuePerReplica` (default
/// the pool's slots per replica) and `slotsPerReplica`. Every scaler of a pool (this HPA,
/// KEDA's external scaler) divides by these.
pub fn targets_per_replica(pool: &ProverPool) -> (i32, i32) {
    let slots = pool.spec.slots_per_replica.max(1);
    let queue = pool
        .spec
        .autoscaling
        .as_ref()
        .and_then(|a| a.target_queue_per_replica)
        .unwrap_or(slots)
        .max(1);
    (queue, slots)
}

/// The HPA, or `None` when the pool does not autoscale (the operator then prunes it).
///
/// Two targets, the HPA taking the larger answer: queued jobs per pod
/// (`targetQueuePerReplica`, default one full pod) grows the pool with its queue, and running
/// jobs per pod (at most `slotsPerReplica`) keeps the pods that are still proving, so a drained
/// queue never asks for fewer pods than the work in flight needs.
///
/// `minReplicas` is at least 1: an HPA only scales to zero behind a feature gate. A pool with
/// `minReplicas: 0` is taken to zero by the operator when idle; the HPA stands still at zero
/// replicas and takes over again once the operator wakes the pool to one.
pub fn hpa(pool: &ProverPool, _ctx: &BuildContext) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = pool.spec.autoscaling.as_ref()?;
    let (per_replica, slots) = targets_per_replica(pool);
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            crate::external_metrics::POOL_LABEL.to_string(),
            pool.name_any(),
        )])),
        ..LabelSelector::default()
    };
    let external = |name: &str, average: i32| MetricSpec {
        type_: "External".into(),
        external: Some(ExternalMetricSource {
            metric: MetricIdentifier {
                name: name.into(),
                selector: Some(selector.clone()),
            },
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity(average.to_string())),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    };
    Some(HorizontalPodAutoscaler {
        metadata: metadata(pool, prover_name(pool), COMPONENT_PROVER),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("zkfleet.dev/v1alpha1".into()),
                kind: "ProverPool".into(),
                name: pool.name_any(),
            },
            min_replicas: Some(autoscaling.min_replicas.max(1)),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![
                external(QUEUED_METRIC, per_replica),
                external(RUNNING_METRIC, slots),
            ]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(
                        autoscaling.scale_down_stabilization_seconds,
                    ),
                    ..HPAScalingRules::default()
                }),
                scale_up: None,
            }),
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;
    use serde_json::json;

    fn autoscaled(autoscaling: serde_json::Value) -> ProverPool {
        let mut pool = pool(GPU_POOL);
        pool.spec.autoscaling = Some(serde_json::from_value(autoscaling).unwrap());
        pool
    }

    #[test]
    fn scales_the_pool_itself_on_its_queue() {
        let pool = autoscaled(json!({"minReplicas": 1, "maxReplicas": 4,
                                     "targetQueuePerReplica": 3,
                                     "scaleDownStabilizationSeconds": 30}));
        let hpa = hpa(&pool, &ctx()).expect("autoscaling gets an HPA");
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.scale_target_ref.kind, "ProverPool");
        assert_eq!(spec.scale_target_ref.name, "gpu-pool");
        assert_eq!(
            spec.scale_target_ref.api_version.as_deref(),
            Some("zkfleet.dev/v1alpha1")
        );
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 4));
        let metrics = spec.metrics.unwrap();
        let queued = metrics[0].external.as_ref().unwrap();
        assert_eq!(queued.metric.name, QUEUED_METRIC);
        assert_eq!(
            queued.metric.selector.as_ref().unwrap().match_labels,
            Some(BTreeMap::from([("pool".into(), "gpu-pool".into())]))
        );
        assert_eq!(queued.target.type_, "AverageValue");
        assert_eq!(queued.target.average_value, Some(Quantity("3".into())));
        let running = metrics[1].external.as_ref().unwrap();
        assert_eq!(running.metric.name, RUNNING_METRIC);
        assert_eq!(
            running.target.average_value,
            Some(Quantity(pool.spec.slots_per_replica.to_string()))
        );
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(30));
        assert_eq!(hpa.metadata.owner_references.unwrap()[0].kind, "ProverPool");
    }

    #[test]
    fn minimum_zero_leaves_the_hpa_at_one_and_the_target_defaults_to_a_full_pod() {
        let pool = autoscaled(json!({"minReplicas": 0, "maxReplicas": 2}));
        let spec = hpa(&pool, &ctx()).unwrap().spec.unwrap();
        assert_eq!(spec.min_replicas, Some(1));
        let queued = spec.metrics.unwrap()[0].external.clone().unwrap();
        assert_eq!(
            queued.target.average_value,
            Some(Quantity(pool.spec.slots_per_replica.to_string()))
        );
    }

    #[test]
    fn pools_without_autoscaling_get_none() {
        assert!(hpa(&pool(GPU_POOL), &ctx()).is_none());
    }
}
