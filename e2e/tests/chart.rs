//! The Helm chart `charts/zkfleet`: rendered with each values file in
//! `charts/zkfleet/ci/` and checked object by object, its values schema
//! refusing bad values, `helm lint --strict`, `manifests/install.yaml` in step
//! with the chart, and one `helm install` on the e2e cluster. Only the last
//! test needs the cluster; the others need just the pinned helm binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, ResourceExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zkfleet_e2e::TestNamespace;
use zkfleet_e2e::helm::{chart_dir, helm, helm_path, install_chart, repo_dir, run};

const RELEASE: &str = "zkfleet";
const NAMESPACE: &str = "zkfleet-system";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The documents `helm template` printed, as YAML values.
struct Rendered {
    source: String,
    docs: Vec<serde_yaml::Value>,
}

impl Rendered {
    /// Every object of kind `K`, parsed into its k8s-openapi type.
    fn all<K: k8s_openapi::Resource + DeserializeOwned>(&self) -> Vec<K> {
        self.docs
            .iter()
            .filter(|d| {
                d["kind"].as_str() == Some(K::KIND)
                    && d["apiVersion"].as_str() == Some(K::API_VERSION)
            })
            .map(|d| {
                serde_yaml::from_value(d.clone()).unwrap_or_else(|e| {
                    panic!("{}: a {} does not parse: {e}\n{d:?}", self.source, K::KIND)
                })
            })
            .collect()
    }

    /// The one object of kind `K`.
    fn one<K: k8s_openapi::Resource + DeserializeOwned>(&self) -> K {
        let mut all = self.all::<K>();
        assert_eq!(all.len(), 1, "{}: expected one {}", self.source, K::KIND);
        all.pop().unwrap()
    }
}

fn ci_file(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

fn ci_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "charts/zkfleet/ci has {files:?}");
    files
}

/// `helm template zkfleet charts/zkfleet -n zkfleet-system -f <values>`.
fn render(values: &Path) -> Rendered {
    let mut cmd = helm().unwrap();
    cmd.args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE, "--values"])
        .arg(values);
    let text = run(cmd, "").unwrap_or_else(|e| panic!("{e:#}"));
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    Rendered {
        source: values.display().to_string(),
        docs,
    }
}

/// `helm template` with `values` on stdin; the error text when it fails.
fn template_error(values: &str) -> String {
    let mut cmd = helm().unwrap();
    cmd.args(["template", RELEASE]).arg(chart_dir()).args([
        "--namespace",
        NAMESPACE,
        "--values",
        "-",
    ]);
    match run(cmd, values) {
        Ok(_) => panic!("helm template accepted values it should refuse:\n{values}"),
        Err(e) => format!("{e:#}"),
    }
}

fn operator_container(deploy: &Deployment) -> Container {
    let pod = deploy
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn env_field_ref(env: &[EnvVar], name: &str) -> Option<String> {
    env.iter()
        .find(|e| e.name == name)?
        .value_from
        .as_ref()?
        .field_ref
        .as_ref()
        .map(|f| f.field_path.clone())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector_labels() -> BTreeMap<String, String> {
    labels(&[
        ("app.kubernetes.io/name", "zkfleet-operator"),
        ("app.kubernetes.io/instance", RELEASE),
        ("app.kubernetes.io/component", "operator"),
    ])
}

#[test]
fn chart_versions_follow_the_workspace() {
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("zkfleet"));
    assert_eq!(chart["version"].as_str(), Some(VERSION));
    // The default images are tagged with appVersion, and build-images.sh tags
    // them with the workspace version.
    assert_eq!(chart["appVersion"].as_str(), Some(VERSION));
}

#[test]
fn defaults_render_two_hardened_operator_replicas() {
    let out = render(&ci_file("default-values.yaml"));
    let deploy = out.one::<Deployment>();
    assert_eq!(deploy.name_any(), "zkfleet-operator");
    assert_eq!(deploy.namespace().as_deref(), Some(NAMESPACE));
    let spec = deploy.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.selector.match_labels.as_ref(),
        Some(&selector_labels())
    );
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in selector_labels() {
        assert_eq!(pod_labels.get(&k), Some(&v), "pod label {k}");
    }
    assert_eq!(
        pod_labels
            .get("app.kubernetes.io/version")
            .map(String::as_str),
        Some(VERSION)
    );

    // Only the leader is Ready: a surge-first rolling update would wait forever.
    let rolling = spec
        .strategy
        .as_ref()
        .unwrap()
        .rolling_update
        .as_ref()
        .unwrap();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
    assert_eq!(
        rolling.max_unavailable,
        Some(IntOrString::String("100%".into()))
    );

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("zkfleet-operator")
    );
    let pod_security = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .expect("default pod anti-affinity");
    assert_eq!(anti.len(), 1);
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref(),
        Some(&selector_labels())
    );

    let c = operator_container(&deploy);
    assert_eq!(
        c.image.as_deref(),
        Some(format!("zkfleet.local/zkfleet-operator:{VERSION}").as_str())
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");

    // The operator's configuration contract.
    let env = c.env.clone().unwrap();
    assert_eq!(
        env_field_ref(&env, "POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        env_field_ref(&env, "POD_NAME").as_deref(),
        Some("metadata.name")
    );
    for (name, value) in [
        (
            "ZKFLEET_PROVER_IMAGE",
            format!("zkfleet.local/zkfleet-prover:{VERSION}"),
        ),
        ("ZKFLEET_ADMIN_ADDR", "0.0.0.0:8080".into()),
        ("ZKFLEET_LOG_FORMAT", "json".into()),
        (
            "ZKFLEET_PARAMETERS_CACHE_PATH",
            "/var/lib/zkfleet/parameters".into(),
        ),
        ("ZKFLEET_LEASE_NAME", "zkfleet-operator".into()),
        ("ZKFLEET_ROLLOUT_DEADLINE_SECONDS", "300".into()),
        // Empty: every namespace.
        ("ZKFLEET_WATCH_NAMESPACE", String::new()),
    ] {
        assert_eq!(env_value(&c, name), Some(value), "env {name}");
    }

    let ports = c.ports.clone().unwrap();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(ports[0].name.as_deref(), Some("admin"));
    assert_eq!(ports[0].container_port, 8080);
    assert_eq!(ports[1].name.as_deref(), Some("dispatcher"));
    assert_eq!(ports[1].container_port, 8081);
    assert_eq!(
        env_value(&c, "ZKFLEET_DISPATCHER_URL").as_deref(),
        Some("http://zkfleet-operator.zkfleet-system.svc:8081"),
        "prover pods reach the dispatcher through the operator's Service"
    );
    let readiness = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(readiness.port, IntOrString::String("admin".into()));
    let liveness = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert!(c.resources.as_ref().unwrap().requests.is_some());

    // The Service reaches the admin port of the operator pods.
    let svc = out.one::<Service>();
    let svc_spec = svc.spec.unwrap();
    assert_eq!(svc_spec.selector.as_ref(), Some(&selector_labels()));
    let svc_ports = svc_spec.ports.unwrap();
    assert_eq!(svc_ports[0].port, 8080);
    assert_eq!(
        svc_ports[0].target_port,
        Some(IntOrString::String("admin".into()))
    );

    assert_eq!(out.one::<ServiceAccount>().name_any(), "zkfleet-operator");

    let pdb = out.one::<PodDisruptionBudget>().spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.unwrap().match_labels.as_ref(),
        Some(&selector_labels())
    );
    // CRDs are installed from crds/, not templated.
    assert!(out.all::<CustomResourceDefinition>().is_empty());
}

#[test]
fn custom_values_set_images_replicas_and_resources() {
    let out = render(&ci_file("custom-image-values.yaml"));
    let deploy = out.one::<Deployment>();
    assert_eq!(deploy.spec.as_ref().unwrap().replicas, Some(3));
    let pod = deploy.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(
        pod.image_pull_secrets.unwrap()[0].name,
        "example-registry".to_string()
    );
    let c = operator_container(&deploy);
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/zk/zkfleet-operator:0.1.0-rc.1")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        env_value(&c, "ZKFLEET_PROVER_IMAGE").as_deref(),
        Some("registry.example.com/zk/zkfleet-prover:0.1.0-rc.1")
    );
    assert_eq!(
        env_value(&c, "ZKFLEET_PARAMETERS_CACHE_PATH").as_deref(),
        Some("/mnt/nvme/zkfleet-parameters")
    );
    assert_eq!(
        env_value(&c, "ZKFLEET_ROLLOUT_DEADLINE_SECONDS").as_deref(),
        Some("120")
    );
    assert_eq!(
        env_value(&c, "ZKFLEET_WATCH_NAMESPACE").as_deref(),
        Some("provers")
    );
    let resources = c.resources.unwrap();
    let q = |s: &str| Quantity(s.to_string());
    assert_eq!(
        resources.requests.unwrap(),
        [
            ("cpu".to_string(), q("250m")),
            ("memory".to_string(), q("256Mi"))
        ]
        .into()
    );
    assert_eq!(
        resources.limits.unwrap(),
        [
            ("cpu".to_string(), q("1")),
            ("memory".to_string(), q("1Gi"))
        ]
        .into()
    );
    assert!(out.all::<PodDisruptionBudget>().len() == 1);
}

#[test]
fn scheduling_values_pass_through_and_one_replica_has_no_disruption_budget() {
    let out = render(&ci_file("scheduling-values.yaml"));
    let deploy = out.one::<Deployment>();
    assert_eq!(deploy.spec.as_ref().unwrap().replicas, Some(1));
    // Empty: each prover pod caches in its own emptyDir.
    assert_eq!(
        env_value(
            &operator_container(&deploy),
            "ZKFLEET_PARAMETERS_CACHE_PATH"
        )
        .as_deref(),
        Some("")
    );
    let pod = deploy.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.node_selector,
        Some(labels(&[("node-role.example.com/control", "true")]))
    );
    let tolerations = pod.tolerations.unwrap();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(
        tolerations[0].key.as_deref(),
        Some("node-role.example.com/control")
    );
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
    assert_eq!(tolerations[0].effect.as_deref(), Some("NoSchedule"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("zkfleet-control-plane")
    );
    // minAvailable 1 of 1 would block every node drain.
    assert!(
        out.all::<PodDisruptionBudget>().is_empty(),
        "a single replica must not get a PodDisruptionBudget"
    );
}

/// The operator's rules (a ClusterRole, or a Role in `watchNamespace`) are the contract with
/// the operator: exactly these, each verb one the operator uses.
fn expected_cluster_rules() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    // Children: applied server-side (create + patch), pruned (delete), watched.
    let own = vec!["get", "list", "watch", "create", "patch", "delete"];
    vec![
        (
            "zkfleet.dev",
            vec!["proverpools"],
            vec!["get", "list", "watch", "patch"],
        ),
        // Finished jobs past their ttlSecondsAfterFinished are deleted; the artifact
        // finalizer is added and removed with patches.
        (
            "zkfleet.dev",
            vec!["proofjobs"],
            vec!["get", "list", "watch", "patch", "delete"],
        ),
        (
            "zkfleet.dev",
            vec!["proverpools/status", "proofjobs/status"],
            vec!["get", "patch", "update"],
        ),
        (
            "zkfleet.dev",
            vec!["proverpools/finalizers", "proofjobs/finalizers"],
            vec!["update"],
        ),
        ("zkfleet.dev", vec!["proverpools/scale"], vec!["patch"]),
        ("apps", vec!["deployments"], own.clone()),
        (
            "",
            vec!["services", "serviceaccounts", "secrets"],
            own.clone(),
        ),
        ("policy", vec!["poddisruptionbudgets"], own.clone()),
        ("networking.k8s.io", vec!["networkpolicies"], own.clone()),
        ("autoscaling", vec!["horizontalpodautoscalers"], own),
        // ProofJob inputs and pool parameters held in ConfigMaps.
        ("", vec!["configmaps"], vec!["get"]),
        // pod-deletion-cost annotations (patch); quarantined pods are deleted.
        (
            "",
            vec!["pods"],
            vec!["get", "list", "watch", "patch", "delete"],
        ),
        ("events.k8s.io", vec!["events"], vec!["create", "patch"]),
        ("", vec!["events"], vec!["create", "patch"]),
    ]
}

fn rule_tuple(rule: &PolicyRule) -> (String, Vec<String>, Vec<String>) {
    let groups = rule.api_groups.clone().unwrap_or_default();
    assert_eq!(groups.len(), 1, "one API group per rule: {rule:?}");
    (
        groups[0].clone(),
        rule.resources.clone().unwrap_or_default(),
        rule.verbs.clone(),
    )
}

fn assert_least_privilege(source: &str, rules: &[PolicyRule]) {
    assert!(!rules.is_empty(), "{source}: no rules");
    for rule in rules {
        assert!(
            !rule.verbs.is_empty(),
            "{source}: a rule without verbs: {rule:?}"
        );
        let names = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten())
            .chain(rule.resource_names.iter().flatten())
            .chain(rule.non_resource_urls.iter().flatten());
        for name in names {
            assert!(
                !name.contains('*'),
                "{source}: wildcard {name:?} in {rule:?}"
            );
        }
    }
}

#[test]
fn every_values_file_renders_least_privilege_rbac() {
    for file in ci_files() {
        let out = render(&file);
        let source = out.source.clone();
        let account = out
            .one::<Deployment>()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .service_account_name
            .unwrap();

        let watched = out
            .docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_sequence()?
                    .iter()
                    .find(|e| e["name"] == "ZKFLEET_WATCH_NAMESPACE")?["value"]
                    .as_str()
                    .map(String::from)
            })
            .filter(|ns| !ns.is_empty());
        let operator_roles: Vec<Role> = out.all::<Role>();
        let (rules, role_name) = match &watched {
            // Confined to one namespace: a Role there, and no cluster-wide rights at all.
            Some(ns) => {
                assert!(
                    out.all::<ClusterRole>().is_empty(),
                    "{source}: watchNamespace is set, yet a ClusterRole is rendered"
                );
                let role = operator_roles
                    .iter()
                    .find(|r| !r.name_any().ends_with("-leader-election"))
                    .expect("the operator's Role");
                assert_eq!(role.namespace().as_deref(), Some(ns.as_str()), "{source}");
                let binding = out
                    .all::<RoleBinding>()
                    .into_iter()
                    .find(|b| b.role_ref.name == role.name_any())
                    .expect("the operator's RoleBinding");
                assert_eq!(binding.namespace().as_deref(), Some(ns.as_str()));
                assert_eq!(binding.role_ref.kind, "Role");
                let subjects = binding.subjects.unwrap();
                assert_eq!(subjects[0].name, account);
                assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
                (role.rules.clone().unwrap_or_default(), role.name_any())
            }
            None => {
                let cluster_role = out.one::<ClusterRole>();
                (
                    cluster_role.rules.clone().unwrap_or_default(),
                    cluster_role.name_any(),
                )
            }
        };
        assert_least_privilege(&source, &rules);
        let got: Vec<_> = rules.iter().map(rule_tuple).collect();
        let mut expected = expected_cluster_rules();
        if watched.is_none() {
            // A shared pool admits jobs by the labels of their namespace.
            expected.push(("", vec!["namespaces"], vec!["get"]));
        }
        let want: Vec<_> = expected
            .into_iter()
            .map(|(g, r, v)| {
                (
                    g.to_string(),
                    r.into_iter().map(String::from).collect::<Vec<_>>(),
                    v.into_iter().map(String::from).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "{source}: the operator's rules differ from its contract"
        );

        if watched.is_none() {
            let binding = out.one::<ClusterRoleBinding>();
            assert_eq!(binding.role_ref.kind, "ClusterRole");
            assert_eq!(binding.role_ref.name, role_name);
            let subjects = binding.subjects.unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, account);
            assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
        }

        // Leader election needs only Leases, and only in the release namespace.
        let role = operator_roles
            .iter()
            .find(|r| r.name_any().ends_with("-leader-election"))
            .expect("the leader-election Role")
            .clone();
        assert_eq!(
            role.namespace().as_deref(),
            Some(NAMESPACE),
            "{source}: the Role is namespaced"
        );
        let role_rules = role.rules.clone().unwrap();
        assert_least_privilege(&source, &role_rules);
        assert_eq!(
            role_rules.iter().map(rule_tuple).collect::<Vec<_>>(),
            vec![(
                "coordination.k8s.io".to_string(),
                vec!["leases".to_string()],
                ["get", "create", "update"].map(String::from).to_vec()
            )]
        );
        let role_binding = out
            .all::<RoleBinding>()
            .into_iter()
            .find(|b| b.role_ref.name == role.name_any())
            .expect("the leader-election RoleBinding");
        assert_eq!(role_binding.namespace().as_deref(), Some(NAMESPACE));
        assert_eq!(role_binding.role_ref.kind, "Role");
        assert_eq!(role_binding.role_ref.name, role.name_any());
        assert_eq!(role_binding.subjects.unwrap()[0].name, account);

        // Every object carries the standard labels.
        for doc in &out.docs {
            let kind = doc["kind"].as_str().unwrap_or("?");
            for key in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/component",
                "app.kubernetes.io/version",
                "helm.sh/chart",
            ] {
                assert!(
                    doc["metadata"]["labels"][key].as_str().is_some(),
                    "{source}: {kind} has no label {key}"
                );
            }
        }
    }
}

#[test]
fn values_schema_refuses_bad_values_with_a_clear_message() {
    for (values, expect) in [
        (
            "replicas: \"two\"\n",
            "at '/replicas': got string, want integer",
        ),
        ("replicas: 0\n", "/replicas"),
        (
            "replicaCount: 3\n",
            "additional properties 'replicaCount' not allowed",
        ),
        (
            "image:\n  pullPolicy: Sometimes\n",
            "value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "prover:\n  parametersCachePath: relative/dir\n",
            "/prover/parametersCachePath",
        ),
        ("watchNamespace: Team_A\n", "/watchNamespace"),
        (
            "rolloutDeadlineSeconds: \"600\"\n",
            "/rolloutDeadlineSeconds",
        ),
        ("rolloutDeadlineSeconds: 5\n", "/rolloutDeadlineSeconds"),
        (
            "nameOverride: prover\n",
            "additional properties 'nameOverride' not allowed",
        ),
    ] {
        let error = template_error(values);
        assert!(
            error.contains("values don't meet the specifications of the schema")
                && error.contains(expect),
            "values {values:?}: expected a schema error containing {expect:?}, got:\n{error}"
        );
    }
}

#[test]
fn helm_lint_strict_passes_with_every_values_file() {
    for file in std::iter::once(None).chain(ci_files().into_iter().map(Some)) {
        let mut cmd = helm().unwrap();
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(file) = &file {
            cmd.arg("--values").arg(file);
        }
        let out = run(cmd, "").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            out.contains("0 chart(s) failed")
                && !out.contains("[WARNING]")
                && !out.contains("[ERROR]"),
            "helm lint --strict {file:?}:\n{out}"
        );
    }
}

#[test]
fn install_yaml_is_rendered_from_the_chart() {
    let script = repo_dir().join("charts/render-install.sh");
    let out = std::process::Command::new(&script)
        .arg("--stdout")
        .env("HELM", helm_path().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(repo_dir().join("manifests/install.yaml")).unwrap_or_default();
    if fresh != committed {
        let line = fresh
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| fresh.lines().count().min(committed.lines().count()));
        panic!(
            "manifests/install.yaml is out of date with charts/zkfleet (first difference at line {}): run `make manifests` (charts/render-install.sh) and commit the result\n  rendered:  {:?}\n  committed: {:?}",
            line + 1,
            fresh.lines().nth(line),
            committed.lines().nth(line)
        );
    }
    // The bundle is usable on its own: the namespace and the CRDs come first.
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&fresh)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter_map(|v| v["kind"].as_str().map(String::from))
        .collect();
    assert_eq!(
        kinds[..3],
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition"
        ]
    );
    assert!(kinds.contains(&"Deployment".to_string()), "{kinds:?}");
}

#[tokio::test]
async fn helm_install_creates_the_operator_objects_on_the_cluster() {
    let ns = TestNamespace::new("chart").await.unwrap();
    // The operator pods must pass the restricted Pod Security Standard.
    Api::<Namespace>::all(ns.client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted"
            }}})),
        )
        .await
        .unwrap();
    // Only this namespace: the operator must not touch other tests' pools.
    let release = install_chart(&ns, &format!("watchNamespace: {}\n", ns.name))
        .await
        .unwrap();
    let client = ns.client.clone();
    let name = release.operator.clone();
    assert_eq!(name, format!("{}-zkfleet-operator", ns.name));

    for crd in ["proverpools.zkfleet.dev", "proofjobs.zkfleet.dev"] {
        let established = tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(
                Api::<CustomResourceDefinition>::all(client.clone()),
                crd,
                conditions::is_crd_established(),
            ),
        )
        .await;
        assert!(
            matches!(established, Ok(Ok(Some(_)))),
            "{crd}: {established:?}"
        );
    }

    let deploy: Deployment = ns.api().get(&name).await.unwrap();
    assert_eq!(deploy.spec.as_ref().unwrap().replicas, Some(2));
    // The operator image is not needed for this: the ReplicaSet creating both
    // pods shows they pass admission (restricted Pod Security included).
    ns.wait_for::<Deployment>(
        &name,
        "both operator pods created",
        Duration::from_secs(60),
        |d| d.status.as_ref().and_then(|s| s.replicas) == Some(2),
    )
    .await
    .unwrap();

    ns.api::<ServiceAccount>().get(&name).await.unwrap();
    ns.api::<Service>().get(&name).await.unwrap();
    ns.api::<PodDisruptionBudget>().get(&name).await.unwrap();
    let leader_election = format!("{name}-leader-election");
    ns.api::<Role>().get(&leader_election).await.unwrap();
    ns.api::<RoleBinding>().get(&leader_election).await.unwrap();
    // Confined to its namespace, the operator's rights are a Role there and nothing else.
    let operator_role = ns.api::<Role>().get(&name).await.unwrap();
    assert_least_privilege(&name, &operator_role.rules.unwrap_or_default());
    ns.api::<RoleBinding>().get(&name).await.unwrap();
    let cluster_roles = Api::<ClusterRole>::all(client.clone());
    let cluster_bindings = Api::<ClusterRoleBinding>::all(client.clone());
    assert!(cluster_roles.get_opt(&name).await.unwrap().is_none());
    assert!(cluster_bindings.get_opt(&name).await.unwrap().is_none());
    let account = format!("system:serviceaccount:{}:{name}", ns.name);
    let can = |verb: &str, resource: &str, namespace: &str| {
        let out = std::process::Command::new("kubectl")
            .args([
                "auth", "can-i", verb, resource, "-n", namespace, "--as", &account,
            ])
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(
        can("patch", "proofjobs.zkfleet.dev/status", &ns.name)
            || can("update", "proofjobs.zkfleet.dev/status", &ns.name)
    );
    assert!(can("get", "secrets", &ns.name));
    for other in ["default", "kube-system"] {
        for (verb, resource) in [
            ("get", "secrets"),
            ("list", "secrets"),
            ("create", "secrets"),
            ("patch", "pods"),
            ("list", "pods"),
            ("create", "deployments.apps"),
            ("delete", "deployments.apps"),
            ("get", "configmaps"),
            ("list", "proofjobs.zkfleet.dev"),
            ("update", "proofjobs.zkfleet.dev/status"),
            ("create", "serviceaccounts"),
            ("create", "leases.coordination.k8s.io"),
        ] {
            assert!(
                !can(verb, resource, other),
                "the operator confined to {} may {verb} {resource} in {other}",
                ns.name
            );
        }
        // And the complete list of what it may do there holds nothing namespaced.
        let listed = std::process::Command::new("kubectl")
            .args(["auth", "can-i", "--list", "-n", other, "--as", &account])
            .output()
            .expect("kubectl runs");
        let listed = String::from_utf8_lossy(&listed.stdout);
        for line in listed.lines().skip(1) {
            let resource = line.split_whitespace().next().unwrap_or("");
            // What every authenticated user may do (discovery, self reviews) is cluster-wide
            // and names no object of the namespace.
            assert!(
                resource.starts_with("selfsubject")
                    || resource.is_empty()
                    || line.contains("[/")
                    || line.trim_start().starts_with('['),
                "the operator holds a right in {other}: {line}"
            );
        }
    }

    release.uninstall().await.unwrap();
    // The release's objects go with it; the CRDs stay (Helm never deletes CRDs, which would
    // delete every pool and job).
    assert!(ns.api::<Role>().get_opt(&name).await.unwrap().is_none());
    assert!(
        ns.api::<Deployment>()
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
    Api::<CustomResourceDefinition>::all(client)
        .get("proverpools.zkfleet.dev")
        .await
        .unwrap();
}

#[test]
fn an_emptydir_artifact_store_is_used_only_when_allowed() {
    let url_for = |values: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), values).unwrap();
        let out = render(file.path());
        env_value(
            &operator_container(&out.one::<Deployment>()),
            "ZKFLEET_ARTIFACTS_URL",
        )
        .unwrap_or_default()
    };
    // By default proofs would land in an emptyDir that dies with the leader: no store at all,
    // so such jobs fail with ResultTooLarge rather than lose their proofs.
    assert_eq!(url_for(""), "");
    let local = "file:///var/lib/zkfleet/artifacts";
    assert_eq!(
        url_for("artifacts:\n  existingClaim: proofs\n"),
        local,
        "a PVC keeps them"
    );
    assert_eq!(url_for("artifacts:\n  allowEphemeral: true\n"), local);
    assert_eq!(
        url_for("artifacts:\n  url: s3://bucket/proofs\n"),
        "s3://bucket/proofs"
    );
}

#[test]
fn tracing_is_off_by_default_and_one_endpoint_reaches_the_operator_and_every_prover() {
    let env_for = |values: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), values).unwrap();
        let container = operator_container(&render(file.path()).one::<Deployment>());
        let prover_env: Vec<EnvVar> =
            serde_json::from_str(&env_value(&container, "ZKFLEET_PROVER_ENV").unwrap()).unwrap();
        (
            env_value(&container, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            prover_env
                .into_iter()
                .map(|e| (e.name, e.value.unwrap_or_default()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(env_for(""), (None, vec![]));
    let endpoint = "http://otel-collector.observability:4318";
    let (operator, provers) = env_for(&format!(
        "tracing:\n  otlpEndpoint: {endpoint}\nprover:\n  extraEnv: [{{name: RUST_LOG, value: debug}}]\n"
    ));
    assert_eq!(operator.as_deref(), Some(endpoint));
    assert_eq!(
        provers,
        [
            ("RUST_LOG".to_string(), "debug".to_string()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                endpoint.to_string()
            ),
        ]
    );
    let refused = template_error("tracing:\n  otlpEndpoint: collector:4318\n");
    assert!(refused.contains("otlpEndpoint"), "{refused}");
}

/// The admin ports of a NetworkPolicy's rules that admit anyone (no `from`).
fn ports_open_to_all(policy: &NetworkPolicy) -> Vec<String> {
    let ingress = policy
        .spec
        .as_ref()
        .unwrap()
        .ingress
        .clone()
        .unwrap_or_default();
    ingress
        .iter()
        .filter(|rule| rule.from.as_ref().is_none_or(Vec::is_empty))
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| match p.port {
            Some(IntOrString::String(name)) => Some(name),
            _ => None,
        })
        .collect()
}

#[test]
fn the_operators_metrics_are_open_only_to_the_scraper() {
    // /metrics shows every tenant's queues and costs: no pod may read it by default.
    let out = render(&ci_file("default-values.yaml"));
    let policy = out.one::<NetworkPolicy>();
    assert!(
        !ports_open_to_all(&policy).contains(&"admin".to_string()),
        "{policy:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("scraper.yaml");
    std::fs::write(
        &values,
        "monitoring:\n  scraper:\n    namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: monitoring\n",
    )
    .unwrap();
    let policy = render(&values).one::<NetworkPolicy>();
    let ingress = policy.spec.unwrap().ingress.unwrap();
    let admin = ingress
        .iter()
        .find(|r| {
            r.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(IntOrString::String("admin".into())))
        })
        .expect("a rule for the admin port");
    let from = admin.from.as_ref().unwrap();
    assert_eq!(
        from[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "monitoring"
    );
}
