//! Helm for the e2e tests: the pinned helm binary that `e2e/scripts/build-bins.sh`
//! builds, and `charts/zkfleet` installed into a test namespace the way a user
//! installs it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, ResourceExt};

use crate::{TestNamespace, cluster_dir};

/// The root of the zkfleet repository.
pub fn repo_dir() -> PathBuf {
    // Read when the tests run, not baked in when they are compiled: the shared target directory
    // can hold these binaries compiled in another checkout of the same sources, and the chart
    // under test must be this checkout's.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir
        .parent()
        .expect("e2e/ lives in the repository")
        .to_path_buf()
}

/// `charts/zkfleet`.
pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/zkfleet")
}

/// The helm binary: `$HELM` when set, else the one `e2e/scripts/build-bins.sh`
/// builds into `$ZKFLEET_CACHE/tools-helm-<ver>-coredns-<ver>/bin` at the
/// versions pinned in `e2e/scripts/versions.sh`, so every machine renders the
/// same bytes.
pub fn helm_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HELM") {
        return Ok(PathBuf::from(path));
    }
    let versions_file = repo_dir().join("e2e/scripts/versions.sh");
    let versions = std::fs::read_to_string(&versions_file)
        .with_context(|| format!("reading {}", versions_file.display()))?;
    let pinned = |key: &str| {
        versions
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| anyhow!("{} does not set {key}", versions_file.display()))
    };
    let cache = match std::env::var_os("ZKFLEET_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/zkfleet"),
    };
    let path = cache
        .join(format!(
            "tools-helm-{}-coredns-{}",
            pinned("HELM_VERSION")?,
            pinned("COREDNS_VERSION")?
        ))
        .join("bin/helm");
    if !path.is_file() {
        bail!(
            "no helm at {}: build it with e2e/scripts/build-bins.sh (`make e2e` does), or set HELM",
            path.display()
        );
    }
    Ok(path)
}

/// A `helm` command pointed at the e2e cluster (`$KUBECONFIG`, else the
/// cluster's admin kubeconfig), run from the repository root.
pub fn helm() -> anyhow::Result<Command> {
    let mut cmd = Command::new(helm_path()?);
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("admin.kubeconfig"));
    cmd.env("KUBECONFIG", kubeconfig).current_dir(repo_dir());
    Ok(cmd)
}

/// Runs a helm command, with `stdin` as its standard input (for `-f -`).
/// Returns stdout; a failure carries the command line and helm's stderr.
pub fn run(mut cmd: Command, stdin: &str) -> anyhow::Result<String> {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {line}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .with_context(|| format!("writing values to {line}"))?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{line} printed non-UTF-8"))
}

/// A release of `charts/zkfleet` in a test namespace. Dropping it uninstalls
/// it, so the cluster-wide ClusterRole and ClusterRoleBinding do not outlive
/// the test; declare it after the [`TestNamespace`] so it is dropped first.
pub struct Release {
    /// The Helm release name (the namespace's name, unique in the cluster).
    pub name: String,
    pub namespace: String,
    /// Name of the operator Deployment, Service, ServiceAccount and ClusterRole.
    pub operator: String,
    /// The objects Helm created, as rendered (`helm get manifest`).
    pub manifest: String,
    uninstalled: bool,
}

/// Installs `charts/zkfleet` into `ns` with `values` (YAML; `""` for the
/// defaults) as `helm install` does for a user, without waiting for the
/// operator pods. The chart's CRDs are applied server-side first: Helm
/// installs CRDs only when they are missing and never upgrades them, and the
/// e2e cluster outlives changes to the Rust types.
pub async fn install_chart(ns: &TestNamespace, values: &str) -> anyhow::Result<Release> {
    install(ns, values, &[]).await
}

/// Installs `charts/zkfleet` into `ns` with an operator that watches only `ns`
/// (`watchNamespace`), so tests running side by side each have their own
/// operator and never reconcile each other's pools; `values` (YAML) come on
/// top. Waits until the operator leads: one of its pods holds the Lease and is
/// Ready.
pub async fn install_operator(ns: &TestNamespace, values: &str) -> anyhow::Result<Release> {
    let release = install(ns, values, &[format!("watchNamespace={}", ns.name)]).await?;
    wait_leading(ns, release).await
}

/// Installs `charts/zkfleet` into `ns` with an operator that watches every namespace, as a
/// shared pool needs; waits until it leads. Only one such operator may run at a time, and no
/// namespaced test operator beside it (both would reconcile the same pools): a test that
/// uses it is alone in its test binary, and cargo runs test binaries one after another.
pub async fn install_cluster_operator(ns: &TestNamespace, values: &str) -> anyhow::Result<Release> {
    let release = install(ns, values, &[]).await?;
    wait_leading(ns, release).await
}

async fn wait_leading(ns: &TestNamespace, release: Release) -> anyhow::Result<Release> {
    ns.wait_for::<Deployment>(
        &release.operator,
        "an operator pod to become the Ready leader",
        Duration::from_secs(180),
        |d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        },
    )
    .await?;
    Ok(release)
}

/// `helm install` with `values` on stdin and each of `set_strings` as a
/// `--set-string KEY=VALUE`.
async fn install(
    ns: &TestNamespace,
    values: &str,
    set_strings: &[String],
) -> anyhow::Result<Release> {
    apply_crds(ns).await?;
    let name = ns.name.clone();
    let mut install = helm()?;
    install.args(["install", &name]).arg(chart_dir()).args([
        "--namespace",
        &ns.name,
        "--values",
        "-",
    ]);
    for set in set_strings {
        install.args(["--set-string", set]);
    }
    // A cluster has one external.metrics.k8s.io APIService, so test releases leave it off
    // unless a test asks for it (and that test then runs alone in its binary).
    let values = if values.contains("externalMetrics:") {
        values.to_string()
    } else {
        format!("externalMetrics:\n  enabled: false\n{values}")
    };
    // Test operators keep large proofs in their emptyDir (the tests read them from there);
    // a test that configures artifacts itself says so.
    let values = if values.contains("artifacts:") {
        values.replace("artifacts:\n", "artifacts:\n  allowEphemeral: true\n")
    } else {
        format!("artifacts:\n  allowEphemeral: true\n{values}")
    };
    tokio::task::spawn_blocking(move || run(install, &values))
        .await?
        .context("helm install of charts/zkfleet")?;
    let mut release = Release {
        name,
        namespace: ns.name.clone(),
        operator: String::new(),
        manifest: String::new(),
        uninstalled: false,
    };
    let mut get = helm()?;
    get.args(["get", "manifest", &release.name, "--namespace", &ns.name]);
    release.manifest = tokio::task::spawn_blocking(move || run(get, ""))
        .await?
        .context("helm get manifest")?;
    release.operator = deployment_name(&release.manifest)?;
    Ok(release)
}

fn deployment_name(manifest: &str) -> anyhow::Result<String> {
    for doc in manifest.split("\n---") {
        let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(doc) else {
            continue;
        };
        if value["kind"].as_str() == Some("Deployment")
            && let Some(name) = value["metadata"]["name"].as_str()
        {
            return Ok(name.to_string());
        }
    }
    bail!("the release manifest has no Deployment:\n{manifest}")
}

impl Release {
    /// `helm uninstall`, waiting until Helm has deleted every object.
    pub async fn uninstall(mut self) -> anyhow::Result<()> {
        self.uninstalled = true;
        let mut cmd = helm()?;
        cmd.args([
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait",
            "--timeout",
            "120s",
        ]);
        tokio::task::spawn_blocking(move || run(cmd, ""))
            .await?
            .map(drop)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        if let Ok(mut cmd) = helm() {
            let _ = cmd
                .args(["uninstall", &self.name, "--namespace", &self.namespace])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Applies `charts/zkfleet/crds/*.yaml` server-side, exactly as the chart
/// ships them, and waits until each is established.
pub async fn apply_crds(ns: &TestNamespace) -> anyhow::Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(ns.client.clone());
    let dir = chart_dir().join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
    {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(path)?)
                .with_context(|| format!("{} is not a CRD", path.display()))?;
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("zkfleet-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("the API server refused {}", path.display()))?;
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| anyhow!("CRD {name} not established after 60s"))??;
    }
    Ok(())
}
