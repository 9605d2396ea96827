//! The pool's NetworkPolicy: only the operator may reach the prover pods' API.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{
    BuildContext, COMPONENT_PROVER, OPERATOR_APP_NAME, PROVER_METRICS_PORT, PROVER_PORT, metadata,
    prover_name, selector_labels,
};

/// Admits traffic to the prover port only from pods labelled
/// `app.kubernetes.io/name: zkfleet-operator` in the operator's namespace, and to the
/// metrics-only port from the operator and the configured scraper (`--metrics-scraper`);
/// everything else (other tenants) is refused. Egress is left open: pods fetch parameters and
/// call the dispatcher.
pub fn network_policy(pool: &ProverPool, ctx: &BuildContext) -> NetworkPolicy {
    let match_labels = |k: &str, v: &str| LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        ..LabelSelector::default()
    };
    let port = |number: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(match_labels(
            "kubernetes.io/metadata.name",
            &ctx.operator_namespace,
        )),
        pod_selector: Some(match_labels("app.kubernetes.io/name", OPERATOR_APP_NAME)),
        ip_block: None,
    };
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![operator.clone()]),
        ports: Some(vec![port(PROVER_PORT)]),
    }];
    ingress.push(NetworkPolicyIngressRule {
        from: Some(
            std::iter::once(operator)
                .chain(ctx.metrics_scraper.clone())
                .collect(),
        ),
        ports: Some(vec![port(PROVER_METRICS_PORT)]),
    });
    NetworkPolicy {
        metadata: metadata(pool, prover_name(pool), COMPONENT_PROVER),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(pool)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
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
        assert_eq!(rules.len(), 2, "the API port, and the metrics port");
        assert_eq!(
            rules[1].from.as_ref().unwrap().len(),
            1,
            "no scraper configured: only the operator reaches the metrics port"
        );
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

    #[test]
    fn a_configured_scraper_reaches_the_metrics_port_and_not_the_api() {
        let pool = pool(GPU_POOL);
        let scraper: NetworkPolicyPeer = serde_json::from_value(serde_json::json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        }))
        .unwrap();
        let ctx = BuildContext {
            metrics_scraper: Some(scraper.clone()),
            ..ctx()
        };
        let rules = network_policy(&pool, &ctx).spec.unwrap().ingress.unwrap();
        let api = &rules[0];
        assert_eq!(
            api.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(8080))
        );
        assert!(!api.from.as_ref().unwrap().contains(&scraper));
        let metrics = &rules[1];
        assert_eq!(
            metrics.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(9090))
        );
        assert!(metrics.from.as_ref().unwrap().contains(&scraper));
    }
}
