//! Applies a pool's children with server-side apply and deletes the children it labelled
//! earlier that the current build no longer produces.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zkfleet_crds::v1alpha1::ProverPool;

use crate::FIELD_MANAGER;
use crate::build::children_selector;

/// Everything a pool should own after this pass.
#[derive(Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub token_secret: Secret,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub pdb: Option<PodDisruptionBudget>,
    pub hpa: Option<HorizontalPodAutoscaler>,
    pub deployment: Deployment,
    /// The pool's verifier, when verification is on (see [`crate::build::verifier`]).
    pub verifier: Option<crate::build::verifier::VerifierChildren>,
}

/// Why applying or pruning failed. All transient: the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing {kind} objects to prune: {source}")]
    ListOrphans {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("deleting orphaned {kind} {name}: {source}")]
    DeleteOrphan {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// Variant name, for the failures metric and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "Apply",
            Self::ListOrphans { .. } => "ListOrphans",
            Self::DeleteOrphan { .. } => "DeleteOrphan",
        }
    }
}

/// Applies every child, the token and identity first so pods never start without them, and
/// returns the Deployment as the API server stored it.
pub async fn apply(
    client: &Client,
    pool: &ProverPool,
    children: &Children,
) -> Result<Deployment, ApplyError> {
    let ns = pool.namespace().unwrap_or_default();
    ssa(client, &ns, &children.service_account).await?;
    ssa(client, &ns, &children.token_secret).await?;
    ssa(client, &ns, &children.service).await?;
    ssa(client, &ns, &children.network_policy).await?;
    if let Some(pdb) = &children.pdb {
        ssa(client, &ns, pdb).await?;
    }
    let deployment = ssa(client, &ns, &children.deployment).await?;
    if let Some(hpa) = &children.hpa {
        ssa(client, &ns, hpa).await?;
    }
    if let Some(verifier) = &children.verifier {
        ssa(client, &ns, &verifier.network_policy).await?;
        ssa(client, &ns, &verifier.service).await?;
        if let Some(pdb) = &verifier.pdb {
            ssa(client, &ns, pdb).await?;
        }
        ssa(client, &ns, &verifier.deployment).await?;
    }
    Ok(deployment)
}

/// Deletes children labelled for this pool and controlled by it that `children` does not
/// contain. Returns `kind/name` of what was deleted.
pub async fn prune(
    client: &Client,
    pool: &ProverPool,
    children: &Children,
) -> Result<Vec<String>, ApplyError> {
    let names = |name: &Option<String>| name.iter().cloned().collect::<BTreeSet<_>>();
    // Each kind keeps the prover's object and, when verification is on, the verifier's.
    let with_verifier = |name: &Option<String>, verifier: Option<&Option<String>>| {
        let mut keep = names(name);
        keep.extend(verifier.into_iter().flatten().cloned());
        keep
    };
    let verifier = children.verifier.as_ref();
    let mut pruned = Vec::new();
    pruned.extend(
        prune_kind::<ServiceAccount>(client, pool, names(&children.service_account.metadata.name))
            .await?,
    );
    pruned.extend(
        prune_kind::<Secret>(client, pool, names(&children.token_secret.metadata.name)).await?,
    );
    let keep = with_verifier(
        &children.service.metadata.name,
        verifier.map(|v| &v.service.metadata.name),
    );
    pruned.extend(prune_kind::<Service>(client, pool, keep).await?);
    let keep = with_verifier(
        &children.network_policy.metadata.name,
        verifier.map(|v| &v.network_policy.metadata.name),
    );
    pruned.extend(prune_kind::<NetworkPolicy>(client, pool, keep).await?);
    let pdb_names = with_verifier(
        &children.pdb.as_ref().and_then(|p| p.metadata.name.clone()),
        verifier
            .and_then(|v| v.pdb.as_ref())
            .map(|p| &p.metadata.name),
    );
    pruned.extend(prune_kind::<PodDisruptionBudget>(client, pool, pdb_names).await?);
    let keep = with_verifier(
        &children.deployment.metadata.name,
        verifier.map(|v| &v.deployment.metadata.name),
    );
    pruned.extend(prune_kind::<Deployment>(client, pool, keep).await?);
    let hpa_names = children
        .hpa
        .as_ref()
        .map(|h| names(&h.metadata.name))
        .unwrap_or_default();
    pruned.extend(prune_kind::<HorizontalPodAutoscaler>(client, pool, hpa_names).await?);
    Ok(pruned)
}

async fn ssa<K>(client: &Client, ns: &str, obj: &K) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| ApplyError::Apply {
        kind: kind_of::<K>(),
        name,
        source,
    })
}

async fn prune_kind<K>(
    client: &Client,
    pool: &ProverPool,
    keep: BTreeSet<String>,
) -> Result<Vec<String>, ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
    let kind = kind_of::<K>();
    let listed = api
        .list_metadata(&ListParams::default().labels(&children_selector(pool)))
        .await
        .map_err(|source| ApplyError::ListOrphans { kind, source })?;
    let uid = pool.uid();
    let mut deleted = Vec::new();
    for obj in listed.items {
        let name = obj.name_any();
        let controlled = obj
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref());
        if keep.contains(&name) || !controlled || obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{kind}/{name}")),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => return Err(ApplyError::DeleteOrphan { kind, name, source }),
        }
    }
    Ok(deleted)
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "ServiceAccount" => "ServiceAccount",
        "Secret" => "Secret",
        "NetworkPolicy" => "NetworkPolicy",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler",
        _ => "object",
    }
}
