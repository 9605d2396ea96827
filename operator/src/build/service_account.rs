//! The pool's ServiceAccount: an identity for the prover pods with no API token mounted.

use k8s_openapi::api::core::v1::ServiceAccount;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{BuildContext, COMPONENT_PROVER, metadata, prover_name};

/// ServiceAccount of the prover pods. Provers get no Kubernetes credentials: only the operator
/// writes to the API server.
pub fn service_account(pool: &ProverPool, _ctx: &BuildContext) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(pool, prover_name(pool), COMPONENT_PROVER),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn never_mounts_a_token() {
        let sa = service_account(&pool(GPU_POOL), &ctx());
        assert_eq!(sa.metadata.name.as_deref(), Some("gpu-pool-prover"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
