//! Which cluster and namespace a command talks to, chosen the way kubectl chooses them: the
//! kubeconfig (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`), its current context
//! or `--context`, and that context's namespace unless `--namespace` names one.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use zkfleet_crds::v1alpha1::{ProofJob, ProverPool};

/// Flags every command takes, named as kubectl names them.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Namespace of the jobs and pools. Default: the kubeconfig context's namespace.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use. Default: the current context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// A client and the namespace the command works in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    pub fn jobs(&self) -> Api<ProofJob> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn pools(&self) -> Api<ProverPool> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The job, or an error that says it is not in this namespace.
    pub async fn job(&self, name: &str) -> anyhow::Result<ProofJob> {
        self.jobs()
            .get_opt(name)
            .await
            .with_context(|| format!("reading ProofJob {name} in namespace {}", self.namespace))?
            .with_context(|| {
                format!(
                    "ProofJob {name} not found in namespace {}: check the name (`kubectl get proofjobs -n {0}`) or pass -n",
                    self.namespace
                )
            })
    }
}

/// Connects as kubectl would with the same flags. Nothing is sent to the API server yet.
pub async fn connect(target: &Target) -> anyhow::Result<Cluster> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&target.kubeconfig, &target.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(anyhow::Error::from)
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(anyhow::Error::from),
        // In a pod without a kubeconfig, the pod's own service account.
        (None, None) => Config::infer().await.map_err(anyhow::Error::from),
    }
    .context("no usable kubeconfig: set KUBECONFIG or pass --kubeconfig (and --context)")?;
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    Ok(Cluster { client, namespace })
}
