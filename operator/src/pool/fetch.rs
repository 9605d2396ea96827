//! Reads what a pass needs from the cluster: the pool's Deployment, its pods, the stored
//! dispatcher token, and what unready provers say about themselves.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use zkfleet_crds::v1alpha1::ProverPool;

use crate::build::token_secret::DispatcherToken;
use crate::build::{prover_name, selector_string, token_secret_name};

/// The part of the world one pass of a pool looks at.
#[derive(Debug, Default)]
pub struct World {
    /// The pool's Deployment, if it exists.
    pub deployment: Option<Deployment>,
    /// The pool's prover pods.
    pub pods: Vec<Pod>,
    /// The token already stored in the pool's Secret.
    pub token: Option<DispatcherToken>,
    /// Why running prover pods are not ready, by pod name, as their provers say.
    pub not_ready: BTreeMap<String, String>,
}

/// Why reading the world failed. All transient: the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading Deployment {name}: {source}")]
    GetDeployment {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods of pool {pool}: {source}")]
    ListPods {
        pool: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading Secret {name}: {source}")]
    GetTokenSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl FetchError {
    /// Variant name, for the failures metric and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::GetDeployment { .. } => "GetDeployment",
            Self::ListPods { .. } => "ListPods",
            Self::GetTokenSecret { .. } => "GetTokenSecret",
        }
    }
}

/// Reads the pool's Deployment, pods and token.
pub async fn fetch(client: &Client, pool: &ProverPool) -> Result<World, FetchError> {
    let ns = pool.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    let name = prover_name(pool);
    let deployment = deployments
        .get_opt(&name)
        .await
        .map_err(|source| FetchError::GetDeployment { name, source })?;
    let pods = pods
        .list(&ListParams::default().labels(&selector_string(pool)))
        .await
        .map_err(|source| FetchError::ListPods {
            pool: pool.name_any(),
            source,
        })?
        .items;
    let name = token_secret_name(pool);
    let token = secrets
        .get_opt(&name)
        .await
        .map_err(|source| FetchError::GetTokenSecret { name, source })?
        .as_ref()
        .and_then(DispatcherToken::from_secret);
    let not_ready = super::readiness::not_ready_reasons(&pods).await;
    Ok(World {
        deployment,
        pods,
        token,
        not_ready,
    })
}
