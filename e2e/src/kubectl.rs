//! The command-line tools a user drives the cluster with, run as a user runs them: `kubectl
//! apply` and the `kubectl zkfleet` plugin built from this checkout, with the harness's
//! kubeconfig.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::helm::repo_dir;
use crate::{TestNamespace, cluster_dir};

/// What one run of the plugin did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The plugin binary, built from this checkout for this test run (the shared target directory
/// may hold one built from another checkout). `make e2e` builds it first, so this is quick.
pub fn plugin() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(repo_dir())
            .args([
                "build",
                "-p",
                "kubectl-zkfleet",
                "--bin",
                "kubectl-zkfleet",
                "--message-format=json",
            ])
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build -p kubectl-zkfleet failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Cargo names the binary it built, wherever the target directory is.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "kubectl-zkfleet"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the kubectl-zkfleet executable")
    })
}

/// The kubeconfig the harness uses, passed on as kubectl would find it.
fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("admin.kubeconfig"))
}

/// Runs `kubectl-zkfleet -n <ns> <args>`.
pub async fn kubectl_zkfleet(ns: &TestNamespace, args: &[&str]) -> Ran {
    let out = tokio::process::Command::new(plugin())
        .env("KUBECONFIG", kubeconfig())
        .arg("-n")
        .arg(&ns.name)
        .args(args)
        .output()
        .await
        .expect("the plugin runs");
    let ran = Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ kubectl zkfleet -n {} {}\n{ran:#?}",
        ns.name,
        args.join(" ")
    );
    ran
}

/// `kubectl apply -f -` of `yaml` in the test's namespace.
pub fn kubectl_apply(ns: &TestNamespace, yaml: &str) {
    let mut child = Command::new("kubectl")
        .args(["apply", "-n", &ns.name, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
