//! Monitoring as the chart ships it: the ServiceMonitor, PodMonitor, PrometheusRule and Grafana
//! dashboard render where asked (and the Prometheus Operator's kinds only where its CRDs exist),
//! `promtool check rules` accepts the alerting rules, and every metric the dashboard and the
//! rules name is exported by the operator or a prover pod, read from their real `/metrics` on
//! the cluster, where the pool's NetworkPolicy lets the configured scraper reach the prover's
//! metrics port and nothing else.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use serde::Deserialize as _;
use serde_json::json;
use zkfleet_crds::v1alpha1::ProofJob;
use zkfleet_e2e::fleet::{
    Parameters, create_pool_with, http_get, leader_ip, prove_mulchain_job, setup, wait_serving,
};
use zkfleet_e2e::helm::{chart_dir, helm, run};

/// The operator container's admin port and the prover pods' metrics port.
const ADMIN_PORT: u16 = 8080;
const PROVER_METRICS_PORT: u16 = 9090;

fn rules_file() -> PathBuf {
    chart_dir().join("files/prometheus-rules.yaml")
}

fn dashboard() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(chart_dir().join("files/dashboard.json")).unwrap())
        .unwrap()
}

/// Every PromQL expression of the dashboard's panels and of the rules.
fn expressions() -> Vec<String> {
    let mut exprs: Vec<String> = dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

/// The metric names an expression reads: words starting `zkfleet_` or `process_`, with a
/// histogram's `_bucket`/`_sum`/`_count` kept (the exposition shows them so).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("zkfleet_") || w.starts_with("process_"))
        .map(String::from)
        .collect()
}

/// The metric names a `/metrics` page exposes.
fn exposed(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

fn render(api_versions: &[&str]) -> Vec<serde_yaml::Value> {
    let mut cmd = helm().unwrap();
    cmd.args(["template", "zkfleet"])
        .arg(chart_dir())
        .args(["--namespace", "zkfleet-system", "--values"])
        .arg(chart_dir().join("ci/monitoring-values.yaml"));
    for version in api_versions {
        cmd.args(["--api-versions", version]);
    }
    let text = run(cmd, "").unwrap_or_else(|e| panic!("{e:#}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(docs: &[serde_yaml::Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect()
}

#[test]
fn monitoring_renders_where_asked_and_the_operators_kinds_only_where_their_crds_exist() {
    let with_crds = render(&[
        "monitoring.coreos.com/v1/ServiceMonitor",
        "monitoring.coreos.com/v1/PodMonitor",
        "monitoring.coreos.com/v1/PrometheusRule",
    ]);
    let kinds_with = kinds(&with_crds);
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(kinds_with.contains(kind), "{kind} missing: {kinds_with:?}");
    }
    let rule = with_crds
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap();
    let embedded: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    assert_eq!(
        rule["spec"]["groups"], embedded["groups"],
        "the PrometheusRule is the rules file"
    );
    let dashboard_map = with_crds.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"], "1",
        "Grafana's sidecar finds it"
    );
    let embedded: serde_json::Value =
        serde_json::from_str(dashboard_map["data"]["zkfleet.json"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, dashboard());

    let without_crds = kinds(&render(&[]));
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert!(
            !without_crds.contains(kind),
            "{kind} rendered on a cluster without the Prometheus Operator"
        );
    }
    assert!(without_crds.contains("ConfigMap"));
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    let promtool = std::env::var_os("ZKFLEET_PROMTOOL")
        .map(PathBuf::from)
        .expect(
            "ZKFLEET_PROMTOOL names promtool: `make e2e` builds it (e2e/scripts/build-bins.sh)",
        );
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<String> =
        serde_yaml::from_str::<serde_yaml::Value>(&std::fs::read_to_string(rules_file()).unwrap())
            .unwrap()["groups"][0]["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r["alert"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(alerts.len(), 8, "{alerts:?}");
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let setup = setup(
        "monitoring",
        "monitoring:\n  scraper:\n    namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: monitoring\n",
    )
    .await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    // Priced, so the cost series the dashboard reads exist too.
    create_pool_with(
        ns,
        "alpha",
        1,
        &params,
        json!({"pricing": {"cpuHour": "0.04"}}),
    )
    .await;
    wait_serving(ns, "alpha", 1).await;
    prove_mulchain_job(ns, "measured", "alpha").await;

    // The pool's NetworkPolicy lets the scraper in to the metrics port, not the API port.
    let policy: NetworkPolicy = ns.api().get("alpha-prover").await.unwrap();
    let rules = policy.spec.unwrap().ingress.unwrap();
    let scraper_ports: Vec<_> = rules
        .iter()
        .filter(|r| {
            r.from.iter().flatten().any(|peer| {
                peer.namespace_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|l| {
                        l.get("kubernetes.io/metadata.name").map(String::as_str)
                            == Some("monitoring")
                    })
            })
        })
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .collect();
    assert_eq!(scraper_ports.len(), 1, "{scraper_ports:?}");
    assert_eq!(
        scraper_ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );

    let leader_ip = leader_ip(&setup).await;
    let prover_ip = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("zkfleet.dev/pool=alpha"))
        .await
        .unwrap()
        .items
        .remove(0)
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    let prover_metrics = format!("{prover_ip}:{PROVER_METRICS_PORT}");
    let (code, prover_page) = http_get(&prover_metrics, "/metrics").await;
    assert_eq!(code, 200);
    let (code, _) = http_get(&prover_metrics, "/v1/info").await;
    assert_eq!(code, 404, "the metrics port serves /metrics alone");
    let (code, operator_page) = http_get(&format!("{leader_ip}:{ADMIN_PORT}"), "/metrics").await;
    assert_eq!(code, 200);

    let mut exported = exposed(&operator_page);
    exported.extend(exposed(&prover_page));
    let named: BTreeSet<String> = expressions().iter().flat_map(|e| metric_names(e)).collect();
    assert!(named.len() >= 15, "{named:?}");
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts name metrics nobody exports: {missing:?}"
    );
}

/// The value of the series of `metric` whose labels include every one of `labels`.
fn sample(page: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_proofs_gpu_and_cpu_time_and_cost_are_on_its_job_and_in_the_metrics() {
    let setup = setup("cost", "").await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    // One (fake) GPU per pod and two slots: each attempt holds half a GPU while it proves.
    let pricing = json!({"gpuHour": "3.6", "cpuHour": "0.36", "currency": "EUR"});
    create_pool_with(
        ns,
        "priced",
        1,
        &params,
        json!({"gpu": {"count": 1}, "slotsPerReplica": 2, "pricing": pricing}),
    )
    .await;
    wait_serving(ns, "priced", 1).await;
    let status = prove_mulchain_job(ns, "costed", "priced").await;

    let usage = status
        .usage
        .clone()
        .expect("a succeeded job shows its usage");
    eprintln!("status.usage: {}", serde_json::to_string(&usage).unwrap());
    let (cpu, gpu) = (usage.cpu_millis.unwrap(), usage.gpu_millis.unwrap());
    assert!(cpu > 0, "the prover measured no CPU time: {usage:?}");
    assert!(gpu > 0, "the attempt held no GPU time: {usage:?}");
    let attempt = &status.attempts[0];
    let held = attempt
        .end_time
        .as_ref()
        .unwrap()
        .0
        .duration_since(attempt.start_time.as_ref().unwrap().0);
    // Half of one GPU, for no longer than the lease was held (status times have whole seconds).
    assert!(
        gpu <= (held.as_millis() as i64 + 1_000) / 2,
        "{gpu} GPU-ms in an attempt of {held:?}"
    );
    assert_eq!(
        (attempt.cpu_millis, attempt.gpu_millis),
        (Some(cpu), Some(gpu))
    );
    assert_eq!((usage.total_cpu_millis, usage.total_gpu_millis), (cpu, gpu));
    let expected = gpu as f64 / 3_600_000.0 * 3.6 + cpu as f64 / 3_600_000.0 * 0.36;
    let cost: f64 = usage.cost.as_deref().unwrap().parse().unwrap();
    assert!(
        (cost - expected).abs() < 2e-6,
        "cost {cost}, expected {expected}"
    );
    assert_eq!(usage.total_cost, usage.cost);
    assert_eq!(usage.currency.as_deref(), Some("EUR"));

    // The same figures, summed per pool and namespace, on the operator's /metrics.
    let (code, page) = http_get(
        &format!("{}:{ADMIN_PORT}", leader_ip(&setup).await),
        "/metrics",
    )
    .await;
    assert_eq!(code, 200);
    let ns_label = format!("namespace=\"{}\"", ns.name);
    let labels = [ns_label.as_str(), "pool=\"priced\""];
    let gpu_seconds = sample(&page, "zkfleet_proof_gpu_seconds_total", &labels).unwrap();
    let cpu_seconds = sample(&page, "zkfleet_proof_cpu_seconds_total", &labels).unwrap();
    let cost_total = sample(
        &page,
        "zkfleet_proof_cost_total",
        &[labels[0], labels[1], "currency=\"EUR\""],
    )
    .unwrap();
    assert!(
        (gpu_seconds - gpu as f64 / 1000.0).abs() < 1e-9,
        "{gpu_seconds}"
    );
    assert!(
        (cpu_seconds - cpu as f64 / 1000.0).abs() < 1e-9,
        "{cpu_seconds}"
    );
    assert!(
        (cost_total - expected).abs() < 1e-9,
        "{cost_total} vs {expected}"
    );

    // `kubectl get proofjobs -o wide` shows the cost.
    let job: ProofJob = ns.api().get("costed").await.unwrap();
    assert_eq!(
        job.status.unwrap().usage.unwrap().total_cost,
        usage.total_cost
    );
}
