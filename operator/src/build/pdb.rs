//! The pool's PodDisruptionBudget: voluntary disruptions (node drains) take at most one prover
//! pod at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{BuildContext, COMPONENT_PROVER, metadata, prover_name, selector_labels};

/// `maxUnavailable: 1` rather than `minAvailable`: drains make progress one pod at a time
/// whatever the pool's size, each evicted pod drains its proofs (see the Deployment's grace
/// period), and a scaled-down pool never blocks a drain forever. Pods that are not ready (for
/// example stuck on bad parameters) may always be evicted, so they cannot block drains either.
///
/// Pools with fewer than two replicas get none: `maxUnavailable: 1` over one pod allows every
/// eviction anyway, and anything stricter would make the node impossible to drain.
pub fn pdb(pool: &ProverPool, _ctx: &BuildContext) -> Option<PodDisruptionBudget> {
    (pool.spec.replicas > 1).then(|| {
        one_at_a_time(
            metadata(pool, prover_name(pool), COMPONENT_PROVER),
            selector_labels(pool),
        )
    })
}

/// A budget of `maxUnavailable: 1` over the pods `selector` selects, unhealthy ones always
/// evictable: the prover's and the verifier's.
pub fn one_at_a_time(meta: ObjectMeta, selector: BTreeMap<String, String>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn allows_one_voluntary_disruption_at_a_time() {
        let pool = pool(GPU_POOL);
        let pdb = pdb(&pool, &ctx()).expect("two replicas get a PDB");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            selector_labels(&pool)
        );
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }

    #[test]
    fn single_replica_pools_get_none() {
        assert!(pdb(&pool(CPU_POOL), &ctx()).is_none());
    }
}
