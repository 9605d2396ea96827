//! The pool's Service: a stable name for the prover pods' API port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{
    BuildContext, COMPONENT_PROVER, PROVER_PORT, PROVER_PORT_NAME, metadata, prover_name,
    selector_labels,
};

/// ClusterIP Service over the pool's ready prover pods.
pub fn service(pool: &ProverPool, _ctx: &BuildContext) -> Service {
    Service {
        metadata: metadata(pool, prover_name(pool), COMPONENT_PROVER),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(pool)),
            ports: Some(vec![ServicePort {
                name: Some(PROVER_PORT_NAME.into()),
                port: PROVER_PORT,
                target_port: Some(IntOrString::String(PROVER_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn selects_the_prover_pods_on_the_api_port() {
        let pool = pool(GPU_POOL);
        let svc = service(&pool, &ctx());
        assert_eq!(svc.metadata.name.as_deref(), Some("gpu-pool-prover"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.selector.unwrap(), selector_labels(&pool));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 8080);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
}
