//! The pool's NetworkPolicy: only the operator may reach the prover pods' API.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{
    BuildContext, COMPONENT_PROVER, OPERATOR_APP_NAME, PROVER_PORT, metadata, prover_name,
    selector_labels,
};

/// Admits traffic to the prover port only from pods labelled
/// `app.kubernetes.io/name: zkfleet-operator` in the operator's namespace; everything else
/// (other tenants, Prometheus) is refused. Egress is left open: pods fetch parameters and call
/// the dispatcher.
pub fn network_policy(pool: &ProverPool, ctx: &BuildContext) -> NetworkPolicy {
    let match_labels = |k: &str, v: &str| LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        ..LabelSelector::default()
    };
    NetworkPolicy {
        metadata: metadata(pool, prover_name(pool), COMPONENT_PROVER),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(pool)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(match_labels(
                        "kubernetes.io/metadata.name",
                        &ctx.operator_namespace,
                    )),
                    pod_selector: Some(match_labels("app.kubernetes.io/name", OPERATOR_APP_NAME)),
                    ip_block: None,
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(PROVER_PORT)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn admits_only_operator_pods_from_the_operator_namespace() {
        let pool = pool(GPU_POOL);
        let spec = network_policy(&pool, &ctx()).spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap(),
            selector_labels(&pool)
        );
        assert_eq!(spec.policy_types.unwrap(), vec!["Ingress".to_string()]);
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let peers = rules[0].from.as_ref().unwrap();
        assert_eq!(
            peers.len(),
            1,
            "namespace and pod selector in one peer mean AND"
        );
        let ns = peers[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(ns["kubernetes.io/metadata.name"], "zkfleet-system");
        let pods = peers[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(pods["app.kubernetes.io/name"], "zkfleet-operator");
        assert_eq!(
            rules[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(8080))
        );
    }
}
