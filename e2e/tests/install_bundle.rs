//! zkfleet installed as a user without Helm installs it: `kubectl apply --server-side -f
//! manifests/install.yaml` (or the kustomize base around it), then a pool and a job.
//!
//! The bundle's operator watches every namespace, so this test has a binary of its own: cargo
//! runs test binaries one after another, and no other test's operator runs meanwhile. On a
//! machine where `make demo` left its release in `zkfleet-system`, the bundle takes that
//! namespace over and removes it at the end.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde::Deserialize as _;
use zkfleet_e2e::TestNamespace;
use zkfleet_e2e::fleet::{MINUTE, Parameters, create_pool, prove_mulchain_job, wait_serving};
use zkfleet_e2e::helm::repo_dir;

const NAMESPACE: &str = "zkfleet-system";

fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes what the bundle installed, but its CRDs: the other tests' releases use them, and
/// deleting a CRD deletes every object of its kind.
struct Uninstall(tempfile::NamedTempFile);

impl Uninstall {
    fn of(bundle: &Path) -> Self {
        let text = std::fs::read_to_string(bundle).unwrap();
        let kept: Vec<String> = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
            .filter(|v| {
                v["kind"]
                    .as_str()
                    .is_some_and(|k| k != "CustomResourceDefinition")
            })
            .map(|v| serde_yaml::to_string(&v).unwrap())
            .collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), kept.join("---\n")).unwrap();
        Self(file)
    }
}

impl Drop for Uninstall {
    fn drop(&mut self) {
        // The next test binary starts as soon as this one ends: its operator must not share the
        // cluster with this one. Without its RBAC the bundle's operator can do nothing, and
        // with its pods gone it is not there at all; the namespace then goes in its own time.
        let _ = Command::new("kubectl")
            .args([
                "delete",
                "--ignore-not-found",
                "clusterrolebinding/zkfleet-operator",
                "clusterrole/zkfleet-operator",
            ])
            .output();
        let _ = Command::new("kubectl")
            .args([
                "delete",
                "--ignore-not-found",
                "--cascade=foreground",
                "--timeout=120s",
                "-n",
                NAMESPACE,
                "deployment/zkfleet-operator",
            ])
            .output();
        let _ = Command::new("kubectl")
            .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
            .arg(self.0.path())
            .output();
    }
}

#[tokio::test]
async fn the_plain_yaml_bundle_and_its_kustomize_base_install_an_operator_that_proves_jobs() {
    let manifests = repo_dir().join("manifests");
    let bundle = manifests.join("install.yaml");
    // The kustomize base builds exactly the bundle's objects.
    let kinds_and_names = |yaml: &str| {
        let mut objects: Vec<(String, String)> = serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
            .filter(|v| !v.is_null())
            .map(|v| {
                (
                    v["kind"].as_str().unwrap_or_default().to_string(),
                    v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        objects.sort();
        objects
    };
    let built = kubectl(&["kustomize", manifests.to_str().unwrap()]);
    assert_eq!(
        kinds_and_names(&built),
        kinds_and_names(&std::fs::read_to_string(&bundle).unwrap()),
        "kubectl kustomize manifests/ builds the objects of manifests/install.yaml"
    );

    let _uninstall = Uninstall::of(&bundle);
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        bundle.to_str().unwrap(),
    ]);
    let client = zkfleet_e2e::client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let deadline = tokio::time::Instant::now() + 3 * MINUTE;
    loop {
        let available = deployments
            .get_opt("zkfleet-operator")
            .await
            .unwrap()
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bundle's operator never became available"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let ns = TestNamespace::new("bundle").await.unwrap();
    let params =
        Parameters::create(&ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(&ns, "alpha", 1, None, &params).await;
    wait_serving(&ns, "alpha", 1).await;
    prove_mulchain_job(&ns, "from-the-bundle", "alpha").await;
}
