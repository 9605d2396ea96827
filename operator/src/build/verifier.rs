//! The pool's verifier: a small Deployment of the pool's image that proves nothing and answers
//! `POST /v1/verify`, behind a Service and a NetworkPolicy that admits only the operator. It
//! derives each job's statement from the job's input and the pool's parameters (Groth16 public
//! signals with the circuit's wasm, Miden's input stack, Stone's public input) and checks the
//! proof against it with the proof system's own verifier (`cpu_air_verifier`,
//! `miden-vm verify`, the circuit's key). So a proof's verdict, and what it was checked to
//! prove, always come from a process other than the pod that made it; the operator links no
//! prover and runs no circuit wasm.
//!
//! Built from the prover Deployment: same image, parameters and security settings, but no GPU,
//! no scheduling constraints of GPU nodes, no dispatcher token, no agent mode, small requests,
//! and pods without the pool label, so the dispatcher never takes them for provers.
//!
//! Two replicas, with a PodDisruptionBudget, for every pool that may run more than one prover:
//! while no verifier answers, results wait on their pods. A pool of one prover pod gets one
//! verifier: it has no availability a second verifier would protect, and a second pod per
//! small pool is what a cluster of many small pools cannot spare.
//!
//! The operator does not go through the Service: it asks a Ready pod of the verifier's own
//! ReplicaSets at its address and takes the verdict only when the answer names that pod (see
//! [`crate::dispatcher`]'s `ask_verifier`), so a pod someone made with the verifier's labels
//! is never asked.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ResourceRequirements, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use zkfleet_crds::v1alpha1::ProverPool;

use super::deployment::TOKEN_DIR;
use super::{PROVER_APP_NAME, PROVER_PORT, metadata};

/// The `app.kubernetes.io/component` of the verifier and its network objects.
pub const COMPONENT_VERIFIER: &str = "verifier";

/// Name of the verifier Deployment, Service and NetworkPolicy.
pub fn verifier_name(pool: &ProverPool) -> String {
    format!("{}-verifier", pool.name_any())
}

/// Whether the pool needs a verifier: whenever verification is on, whatever the proof system.
pub fn needed(pool: &ProverPool) -> bool {
    pool.spec.job_defaults.as_ref().is_none_or(|d| d.verify)
}

/// Base URL of the pool's verifier, as the operator reaches it through the Service.
pub fn url(pool: &ProverPool) -> String {
    format!(
        "http://{}.{}.svc:{PROVER_PORT}",
        verifier_name(pool),
        pool.namespace().unwrap_or_default()
    )
}

fn selector(pool: &ProverPool) -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", PROVER_APP_NAME.to_string()),
        ("app.kubernetes.io/instance", pool.name_any()),
        (
            "app.kubernetes.io/component",
            COMPONENT_VERIFIER.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Verifier replicas: two where the pool may run more than one prover (see the module doc).
pub fn replicas(pool: &ProverPool) -> i32 {
    let most = pool
        .spec
        .autoscaling
        .as_ref()
        .map_or(pool.spec.replicas, |a| {
            a.max_replicas.max(pool.spec.replicas)
        });
    if most > 1 { 2 } else { 1 }
}

/// What a verifier pod asks of its node: verifying takes milliseconds of one core and the
/// memory of one proof. A request (no limit), so it is not the first evicted under pressure,
/// and a small one, so a verifier always fits beside the provers it serves: a verifier left
/// Pending holds every result of its pool.
fn requests() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ]
            .into(),
        ),
        ..ResourceRequirements::default()
    }
}

/// Environment variables that make a prover pod prove: the verifier gets none of them.
const PROVING_ONLY_ENV: &[&str] = &[
    "ZKFLEET_DISPATCHER_URL",
    "ZKFLEET_DISPATCHER_TOKEN_FILE",
    "ZKFLEET_POOL",
    "ZKFLEET_FAULT_INJECTION",
    // The verifier runs on any node, GPU or not: it takes the prover's default (`auto`).
    "ZKFLEET_ACCELERATION",
];

/// The verifier Deployment, from the prover Deployment `prover` built for the same serving
/// parameters.
pub fn deployment(pool: &ProverPool, prover: &Deployment) -> Deployment {
    let mut d = prover.clone();
    d.metadata = metadata(pool, verifier_name(pool), COMPONENT_VERIFIER);
    d.metadata.annotations = prover.metadata.annotations.clone();
    let spec = d.spec.as_mut().expect("the prover Deployment has a spec");
    spec.replicas = Some(replicas(pool));
    spec.selector = LabelSelector {
        match_labels: Some(selector(pool)),
        ..LabelSelector::default()
    };
    let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
    let mut labels = selector(pool);
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        super::MANAGED_BY.into(),
    );
    template_meta.labels = Some(labels);
    if let Some(pod) = spec.template.spec.as_mut() {
        // Verification is cheap and needs no GPU: run anywhere, at default priority.
        pod.node_selector = None;
        pod.affinity = None;
        pod.tolerations = None;
        pod.topology_spread_constraints = None;
        pod.priority_class_name = None;
        pod.runtime_class_name = None;
        pod.termination_grace_period_seconds = Some(30);
        if let Some(volumes) = pod.volumes.as_mut() {
            volumes.retain(|v| v.secret.is_none());
        }
        for c in &mut pod.containers {
            c.resources = Some(requests());
            if let Some(env) = c.env.as_mut() {
                env.retain(|e| !PROVING_ONLY_ENV.contains(&e.name.as_str()));
            }
            if let Some(mounts) = c.volume_mounts.as_mut() {
                mounts.retain(|m| m.mount_path != TOKEN_DIR);
            }
            c.lifecycle = None;
        }
    }
    d
}

/// The Service the operator asks: the prover Service `prover_service` (the API port), over the
/// verifier pods instead.
pub fn service(pool: &ProverPool, prover_service: &Service) -> Service {
    let mut service = prover_service.clone();
    service.metadata = metadata(pool, verifier_name(pool), COMPONENT_VERIFIER);
    if let Some(spec) = service.spec.as_mut() {
        spec.selector = Some(selector(pool));
    }
    service
}

/// The prover NetworkPolicy `prover_policy`, applied to the verifier pods instead.
pub fn network_policy(pool: &ProverPool, prover_policy: &NetworkPolicy) -> NetworkPolicy {
    let mut policy = prover_policy.clone();
    policy.metadata = metadata(pool, verifier_name(pool), COMPONENT_VERIFIER);
    if let Some(spec) = policy.spec.as_mut() {
        spec.pod_selector = Some(LabelSelector {
            match_labels: Some(selector(pool)),
            ..LabelSelector::default()
        });
    }
    policy
}

/// At most one verifier pod evicted at a time, when there are two.
pub fn pdb(pool: &ProverPool) -> Option<PodDisruptionBudget> {
    (replicas(pool) > 1).then(|| {
        super::pdb::one_at_a_time(
            metadata(pool, verifier_name(pool), COMPONENT_VERIFIER),
            selector(pool),
        )
    })
}

/// The objects of a pool's verifier.
#[derive(Debug)]
pub struct VerifierChildren {
    pub deployment: Deployment,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub pdb: Option<PodDisruptionBudget>,
}

/// The verifier's children when the pool needs one, from the prover's.
pub fn children(
    pool: &ProverPool,
    prover: &Deployment,
    prover_service: &Service,
    prover_policy: &NetworkPolicy,
) -> Option<VerifierChildren> {
    needed(pool).then(|| VerifierChildren {
        deployment: deployment(pool, prover),
        service: service(pool, prover_service),
        network_policy: network_policy(pool, prover_policy),
        pdb: pdb(pool),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::POOL_LABEL;
    use crate::build::fixtures::*;
    use crate::params::Serving;

    fn stone_pool() -> ProverPool {
        let mut p = pool(GPU_POOL);
        p.spec.backend = serde_json::from_value(serde_json::json!({
            "type": "exec", "exec": {"profile": "stone", "command": ["cpu_air_prover"]}
        }))
        .unwrap();
        p
    }

    #[test]
    fn every_pool_with_verification_on_gets_a_verifier() {
        assert!(needed(&pool(GPU_POOL)));
        let mut p = stone_pool();
        assert!(needed(&p));
        p.spec.job_defaults =
            Some(serde_json::from_value(serde_json::json!({"verify": false})).unwrap());
        assert!(!needed(&p));
    }

    #[test]
    fn the_verifier_proves_nothing_holds_no_token_and_needs_no_gpu() {
        let p = stone_pool();
        let prover =
            crate::build::deployment::deployment(&p, &Serving::fresh(&p.spec.parameters), &ctx());
        let d = deployment(&p, &prover);
        assert_eq!(d.metadata.name.as_deref(), Some("gpu-pool-verifier"));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2), "the GPU pool runs several provers");
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert!(
            !labels.contains_key(POOL_LABEL),
            "the dispatcher must not see it as a prover"
        );
        assert_eq!(
            spec.selector.match_labels.unwrap()["app.kubernetes.io/component"],
            "verifier"
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        assert!(pod.volumes.unwrap().iter().all(|v| v.secret.is_none()));
        let c = &pod.containers[0];
        let resources = c.resources.as_ref().unwrap();
        assert!(
            resources.limits.is_none(),
            "no GPU request, no limit to be killed at"
        );
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "64Mi");
        let env = c.env.as_ref().unwrap();
        for name in PROVING_ONLY_ENV {
            assert!(env.iter().all(|e| e.name != *name), "{name} is set");
        }
        // The same parameters and image as the provers.
        assert_eq!(
            c.image,
            prover.spec.unwrap().template.spec.unwrap().containers[0].image
        );
    }

    #[test]
    fn a_pool_that_may_run_several_provers_gets_two_verifiers_and_a_budget() {
        let mut p = stone_pool();
        p.spec.replicas = 1;
        p.spec.autoscaling = None;
        assert_eq!(replicas(&p), 1);
        assert!(
            pdb(&p).is_none(),
            "a budget over one pod would only block drains"
        );
        p.spec.autoscaling =
            Some(serde_json::from_value(serde_json::json!({"maxReplicas": 4})).unwrap());
        assert_eq!(replicas(&p), 2);
        let budget = pdb(&p).unwrap().spec.unwrap();
        assert_eq!(
            budget.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        assert_eq!(
            budget.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            "verifier"
        );
    }
}
