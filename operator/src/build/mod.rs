//! Desired children of a ProverPool, built by pure functions from the pool and a
//! [`BuildContext`]: no client, no clock, no randomness, so the same pool always builds the
//! same objects and each builder is unit-tested from a YAML fixture.

pub mod deployment;
pub mod hpa;
pub mod network_policy;
pub mod pdb;
pub mod service;
pub mod service_account;
pub mod token_secret;
pub mod verifier;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use zkfleet_crds::v1alpha1::ProverPool;

/// `app.kubernetes.io/name` of the operator's own pods; the NetworkPolicy admits only them.
pub const OPERATOR_APP_NAME: &str = "zkfleet-operator";
/// `app.kubernetes.io/name` of every child of a pool.
pub const PROVER_APP_NAME: &str = "zkfleet-prover";
/// `app.kubernetes.io/managed-by` of every child of a pool.
pub const MANAGED_BY: &str = "zkfleet-operator";
/// Pod label naming the pool (the dispatcher and the pod watch use it).
pub const POOL_LABEL: &str = "zkfleet.dev/pool";
/// Pod label carrying [`crate::params::fingerprint`] of the parameters the pod loads.
pub const PARAMETERS_LABEL: &str = "zkfleet.dev/parameters";
/// Port of the prover API, health and metrics in every prover pod (`ZKFLEET_LISTEN`).
pub const PROVER_PORT: i32 = 8080;
/// Name of the prover port on the container and the Service.
pub const PROVER_PORT_NAME: &str = "http";
/// Port of the prover pods' metrics-only listener: Prometheus may be let in here without
/// reaching the prover's API.
pub const PROVER_METRICS_PORT: i32 = 9090;
/// Name of [`PROVER_METRICS_PORT`] in the pod spec (what a PodMonitor names).
pub const PROVER_METRICS_PORT_NAME: &str = "metrics";

/// The `app.kubernetes.io/component` of the prover workload and its network objects.
pub const COMPONENT_PROVER: &str = "prover";
/// The `app.kubernetes.io/component` of the dispatcher token Secret.
pub const COMPONENT_DISPATCHER_TOKEN: &str = "dispatcher-token";

/// Operator-wide settings the builders need.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildContext {
    /// Prover image for pools that do not set `spec.image`.
    pub prover_image: String,
    /// Namespace the operator runs in; only its pods may reach the prover pods.
    pub operator_namespace: String,
    /// Node directory under which each parameters digest gets its cache directory.
    pub parameters_cache_path: String,
    /// URL of the operator's dispatcher that prover pods lease jobs from.
    pub dispatcher_url: String,
    /// Extra environment of every prover container (after zkfleet's own variables).
    pub prover_env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// Who the pools' NetworkPolicies let in to the prover pods' metrics port.
    pub metrics_scraper: Option<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// Name of the Deployment, Service, ServiceAccount, PodDisruptionBudget and NetworkPolicy.
pub fn prover_name(pool: &ProverPool) -> String {
    format!("{}-prover", pool.name_any())
}

/// Name of the dispatcher token Secret.
pub fn token_secret_name(pool: &ProverPool) -> String {
    format!("{}-dispatcher-token", pool.name_any())
}

/// Labels every child of the pool carries; `component` tells the children apart.
pub fn labels(pool: &ProverPool, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", PROVER_APP_NAME),
        ("app.kubernetes.io/instance", pool.name_any().as_str()),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
        ("app.kubernetes.io/component", component),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Label selector of every child of a pool, used to find orphans.
pub fn children_selector(pool: &ProverPool) -> String {
    format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGED_BY}",
        pool.name_any()
    )
}

/// Labels that select the pool's prover pods. Kept to labels that never change, because a
/// Deployment's selector is immutable.
pub fn selector_labels(pool: &ProverPool) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", PROVER_APP_NAME.to_string()),
        ("app.kubernetes.io/instance", pool.name_any()),
        ("app.kubernetes.io/component", COMPONENT_PROVER.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// [`selector_labels`] in `kubectl get -l` form, for `status.selector`.
pub fn selector_string(pool: &ProverPool) -> String {
    selector_labels(pool)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of a child: name, the pool's namespace, labels, and the pool as controlling owner
/// so that deleting the pool deletes the child.
pub fn metadata(pool: &ProverPool, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pool.namespace(),
        labels: Some(labels(pool, component)),
        owner_references: pool.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::BuildContext;
    use zkfleet_crds::v1alpha1::ProverPool;

    /// A GPU pool with a ConfigMap source, as a user would write it.
    pub const GPU_POOL: &str = r#"
apiVersion: zkfleet.dev/v1alpha1
kind: ProverPool
metadata:
  name: gpu-pool
  namespace: provers
  uid: 6d1f7c1e-0000-4000-8000-000000000001
  generation: 3
spec:
  replicas: 2
  slotsPerReplica: 2
  backend:
    type: groth16-bn254
  gpu:
    count: 1
  parameters:
    version: v1
    source:
      configMap:
        name: multiplier-params
    files:
      - name: circuit.zkey
        sha256: 1111111111111111111111111111111111111111111111111111111111111111
      - name: circuit.wasm
        sha256: 2222222222222222222222222222222222222222222222222222222222222222
  jobDefaults:
    timeoutSeconds: 120
  resources:
    requests:
      cpu: "2"
      memory: 4Gi
  nodeSelector:
    gpu: "true"
  tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: zone
                operator: In
                values: [a]
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
  priorityClassName: provers
  runtimeClassName: nvidia
"#;

    /// A CPU pool with a URL source and defaults everywhere else.
    pub const CPU_POOL: &str = r#"
apiVersion: zkfleet.dev/v1alpha1
kind: ProverPool
metadata:
  name: cpu-pool
  namespace: provers
  uid: 6d1f7c1e-0000-4000-8000-000000000002
spec:
  backend:
    type: groth16-bn254
  image: registry.example/prover:custom
  parameters:
    version: v7
    source:
      url: https://params.example/multiplier/v7
    files:
      - name: circuit.zkey
        sha256: 3333333333333333333333333333333333333333333333333333333333333333
"#;

    pub fn pool(yaml: &str) -> ProverPool {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    pub fn ctx() -> BuildContext {
        BuildContext {
            prover_image: "zkfleet.local/zkfleet-prover:0.1.0".into(),
            operator_namespace: "zkfleet-system".into(),
            parameters_cache_path: "/var/lib/zkfleet/parameters".into(),
            dispatcher_url: "http://zkfleet-operator.zkfleet-system.svc:8081".into(),
            prover_env: Vec::new(),
            metrics_scraper: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn children_are_labelled_named_and_owned_by_the_pool() {
        let pool = pool(GPU_POOL);
        let meta = metadata(&pool, prover_name(&pool), COMPONENT_PROVER);
        assert_eq!(meta.name.as_deref(), Some("gpu-pool-prover"));
        assert_eq!(meta.namespace.as_deref(), Some("provers"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "gpu-pool");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "zkfleet-operator");
        assert_eq!(labels["app.kubernetes.io/component"], "prover");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "ProverPool");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.uid, "6d1f7c1e-0000-4000-8000-000000000001");
        assert_eq!(token_secret_name(&pool), "gpu-pool-dispatcher-token");
    }

    #[test]
    fn selector_string_matches_selector_labels() {
        let pool = pool(GPU_POOL);
        assert_eq!(
            selector_string(&pool),
            "app.kubernetes.io/component=prover,app.kubernetes.io/instance=gpu-pool,app.kubernetes.io/name=zkfleet-prover"
        );
        assert_eq!(
            children_selector(&pool),
            "app.kubernetes.io/instance=gpu-pool,app.kubernetes.io/managed-by=zkfleet-operator"
        );
    }
}
