//! zkfleet e2e harness: a client for the local cluster that `e2e/cluster up`
//! starts, a temporary namespace per test, and waits that explain themselves
//! when they time out.

pub mod chaos;
pub mod fake_gpu;
pub mod fleet;
pub mod helm;
pub mod kubectl;

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Calls `probe` every 250 ms until it returns `Some`, for at most `timeout`; `None` if it
/// never did. For state that settles after the change a test made and has no object to
/// watch: a metric, an annotation on one of several pods, an Event, a prover's `/v1/info`.
pub async fn poll_until<T, Fut>(timeout: Duration, mut probe: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(timeout, async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .ok()
}

/// Where `e2e/cluster` keeps its state, certificates and component logs.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("ZKFLEET_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/zkfleet-e2e"))
}

/// The directory with one log file per cluster component.
pub fn logs_dir() -> PathBuf {
    cluster_dir().join("logs")
}

fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("admin.kubeconfig"))
}

/// A client for the harness cluster, from `$KUBECONFIG` or the admin
/// kubeconfig that `e2e/cluster up` writes.
pub async fn client() -> anyhow::Result<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "cannot read kubeconfig {}: start the cluster with `e2e/cluster up` (or `make e2e`)",
            path.display()
        )
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    client
        .apiserver_version()
        .await
        .with_context(|| format!("the API server in {} does not answer: is the cluster up? (`e2e/cluster status`; logs in {})", path.display(), logs_dir().display()))?;
    Ok(client)
}

/// The image tag of a zkfleet image built by `e2e/scripts/build-images.sh`.
pub fn image(name: &str) -> String {
    format!("zkfleet.local/{name}:{}", env!("CARGO_PKG_VERSION"))
}

/// A namespace that lives as long as one test. It is deleted when dropped,
/// including when the test panics, so tests never see each other's objects.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    /// Creates `zkfleet-e2e-<prefix>-<unique>`.
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        let client = client().await?;
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or_default();
        let name = format!("e2e-{prefix}-{:x}", unique & 0xffffff);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("zkfleet.dev/e2e".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        // Pods are refused until the namespace's default ServiceAccount exists.
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &name);
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(accounts, "default", |sa: Option<&ServiceAccount>| sa.is_some()),
        )
        .await
        .map_err(|_| anyhow!("namespace {name} got no default ServiceAccount in 60s: is kube-controller-manager running? (logs in {})", logs_dir().display()))??;
        Ok(Self { name, client })
    }

    /// A namespaced API in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates an object from YAML in this namespace.
    pub async fn create<K>(&self, yaml: &str) -> anyhow::Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let obj: K = serde_yaml::from_str(yaml).context("test manifest does not parse")?;
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {} in {}", obj.name_any(), self.name))
    }

    /// Waits until `condition` holds for the named object; on timeout the error
    /// shows the object, the namespace's recent Events and where the
    /// component logs are.
    pub async fn wait_for<K>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&K) -> bool,
    ) -> anyhow::Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug
            + Send
            + 'static,
        <K as Resource>::DynamicType: Default,
    {
        let api = self.api::<K>();
        let waited = tokio::time::timeout(
            timeout,
            await_condition(api.clone(), name, move |obj: Option<&K>| {
                obj.is_some_and(&condition)
            }),
        )
        .await;
        match waited {
            Ok(Ok(Some(obj))) => Ok(obj),
            Ok(Ok(None)) => Err(anyhow!("{name} was deleted while waiting for {what}")),
            Ok(Err(e)) => Err(anyhow!("watching {name} for {what}: {e}")),
            Err(_) => {
                let current = api.get_opt(name).await.ok().flatten();
                Err(anyhow!(
                    "timed out after {timeout:?} waiting for {kind}/{name} in {ns}: {what}\n{report}",
                    kind = K::kind(&Default::default()),
                    ns = self.name,
                    report = self.report(current.as_ref()).await
                ))
            }
        }
    }

    /// What a person debugging a failed wait wants to see.
    pub async fn report<K: Serialize>(&self, obj: Option<&K>) -> String {
        let mut out = String::new();
        match obj.map(serde_yaml::to_string) {
            Some(Ok(yaml)) => out.push_str(&format!("--- object:\n{yaml}")),
            _ => out.push_str("--- object: not found\n"),
        }
        out.push_str(&format!("--- recent events in {}:\n", self.name));
        match self.api::<Event>().list(&ListParams::default()).await {
            Ok(list) => {
                let mut events = list.items;
                events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
                for e in events.iter().rev().take(20).rev() {
                    out.push_str(&format!(
                        "{} {}/{}: {} {}\n",
                        e.type_.as_deref().unwrap_or("?"),
                        e.involved_object.kind.as_deref().unwrap_or("?"),
                        e.involved_object.name.as_deref().unwrap_or("?"),
                        e.reason.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    ));
                }
            }
            Err(e) => out.push_str(&format!("(cannot list events: {e})\n")),
        }
        out.push_str(&format!(
            "--- component logs: {} (e2e/cluster status)\n",
            logs_dir().display()
        ));
        out
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await; kubectl is on PATH when tests run through
        // `make e2e`. Deletion is asynchronous so test time is not spent on it.
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .env("KUBECONFIG", kubeconfig_path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
