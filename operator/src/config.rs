//! Command-line flags, each also settable through a `ZKFLEET_*` (or downward-API) variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines.
    Text,
}

/// zkfleet operator: turns ProverPools into GPU-scheduled prover pods and keeps their status.
#[derive(Clone, Debug, Parser)]
#[command(name = "zkfleet-operator", version, long_about = None)]
pub struct Cli {
    /// Address of the admin HTTP server: /healthz (process alive), /readyz (200 only on the
    /// replica that holds the leader Lease) and /metrics (Prometheus).
    #[arg(long, env = "ZKFLEET_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,

    /// Prover image for pools that do not set spec.image, for example
    /// zkfleet.local/zkfleet-prover:0.1.0. Its entrypoint must be the zkfleet-prover binary.
    #[arg(long, env = "ZKFLEET_PROVER_IMAGE")]
    pub prover_image: String,

    /// The operator's own namespace: where the leader Lease lives, and the namespace whose
    /// zkfleet-operator pods the prover NetworkPolicies admit.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,

    /// Name this replica uses in the leader Lease; must differ between replicas. Defaults to
    /// the pod name (POD_NAME), else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Name of the coordination.k8s.io Lease the replicas elect a leader with.
    #[arg(long, env = "ZKFLEET_LEASE_NAME", default_value = "zkfleet-operator")]
    pub lease_name: String,

    /// Only namespace whose ProverPools (with their children and pods) this operator watches,
    /// lists and reconciles; unset or empty: every namespace. Lets several operators share a
    /// cluster, each with its own namespace. The leader Lease stays in --namespace.
    #[arg(long, env = "ZKFLEET_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Directory on each node where prover pods cache downloaded parameter files and
    /// preprocessed proving keys, named by sha256 (a hostPath, created by the kubelet if
    /// missing). The kubelet creates it owned by root: prepare it owned by uid 65532 on the
    /// nodes. Unwritable, it costs ConfigMap and PVC pools only the reuse, but URL pools cannot
    /// download. Empty: no node cache, each pod caches in its own emptyDir.
    #[arg(
        long,
        env = "ZKFLEET_PARAMETERS_CACHE_PATH",
        default_value = "/var/lib/zkfleet/parameters"
    )]
    pub parameters_cache_path: String,

    /// Seconds a parameters rotation may take to become ready before the pool is rolled back
    /// to its previous parameters.
    #[arg(long, env = "ZKFLEET_ROLLOUT_DEADLINE_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub rollout_deadline_seconds: u64,

    /// Address the dispatcher listens on for prover pods (POST /v1/lease, /v1/heartbeat,
    /// /v1/complete). Only the leader serves it, so the operator's Service reaches the leader.
    #[arg(long, env = "ZKFLEET_DISPATCHER_ADDR", default_value = "0.0.0.0:8081")]
    pub dispatcher_addr: SocketAddr,

    /// URL prover pods reach the dispatcher at, through the operator's Service. Default:
    /// http://<lease name>.<namespace>.svc:<dispatcher port>.
    #[arg(long, env = "ZKFLEET_DISPATCHER_URL")]
    pub dispatcher_url: Option<String>,

    /// Seconds a lease lasts without a heartbeat before its job is given to another pod.
    #[arg(long, env = "ZKFLEET_LEASE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=600))]
    pub lease_seconds: u64,

    /// Proofs up to this many bytes (as JSON, with the public signals) are written on the
    /// ProofJob's status; larger ones go to --artifacts-url and the status points to them.
    #[arg(long, env = "ZKFLEET_INLINE_RESULT_MAX_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub inline_result_max_bytes: u64,

    /// Where proofs too large for the status are stored: file:///dir (a volume the chart
    /// mounts: a PVC, or an emptyDir where that is allowed), s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix (credentials from the standard environment
    /// variables). Empty: no store, and a job whose proof is too large for its status fails
    /// with `ResultTooLarge` rather than being stored where it would be lost.
    #[arg(long, env = "ZKFLEET_ARTIFACTS_URL", default_value = "")]
    pub artifacts_url: String,

    /// Extra environment variables for every prover container, as a JSON list of pod-spec
    /// env entries, for example [{"name":"RUST_LOG","value":"debug"}].
    #[arg(long, env = "ZKFLEET_PROVER_ENV", default_value = "[]",
          value_parser = parse_prover_env)]
    pub prover_env: ProverEnv,

    /// Who may scrape the prover pods' metrics port (9090, `/metrics` alone), as a JSON
    /// NetworkPolicy peer, for example
    /// {"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}},
    ///  "podSelector":{"matchLabels":{"app.kubernetes.io/name":"prometheus"}}}.
    /// Empty: the pools' NetworkPolicies let nobody but the operator in.
    #[arg(long, env = "ZKFLEET_METRICS_SCRAPER", default_value = "",
          value_parser = parse_metrics_scraper)]
    pub metrics_scraper: MetricsScraper,

    /// Address of the aggregated API external.metrics.k8s.io (HTTPS), from which the
    /// HorizontalPodAutoscaler of each autoscaled ProverPool reads the pool's queued and running
    /// jobs (zkfleet_pool_queued_jobs, zkfleet_pool_running_jobs, label pool=<name>). Only the
    /// leader serves it. Unset: not served. Needs an APIService pointing at the operator's
    /// Service and RBAC to read kube-system/extension-apiserver-authentication and create
    /// SubjectAccessReviews; the chart's externalMetrics.enabled sets all of it up.
    #[arg(long, env = "ZKFLEET_EXTERNAL_METRICS_ADDR")]
    pub external_metrics_addr: Option<SocketAddr>,

    /// Address of KEDA's external scaler gRPC interface (each pool's queued and running jobs,
    /// for a ScaledObject trigger of type `external`), for example 0.0.0.0:9090; only the
    /// leader serves it. Unset: not served. For clusters where KEDA already serves
    /// external.metrics.k8s.io.
    #[arg(long, env = "ZKFLEET_KEDA_SCALER_ADDR")]
    pub keda_scaler_addr: Option<SocketAddr>,

    /// PEM certificate (chain) the external metrics API serves; read again when it changes.
    #[arg(
        long,
        env = "ZKFLEET_EXTERNAL_METRICS_CERT",
        default_value = "/var/run/zkfleet/metrics-tls/tls.crt"
    )]
    pub external_metrics_cert: PathBuf,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --external-metrics-cert.
    #[arg(
        long,
        env = "ZKFLEET_EXTERNAL_METRICS_KEY",
        default_value = "/var/run/zkfleet/metrics-tls/tls.key"
    )]
    pub external_metrics_key: PathBuf,

    /// Log format: json for log pipelines, text for people.
    #[arg(long, env = "ZKFLEET_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// The parsed `--prover-env` list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProverEnv(pub Vec<k8s_openapi::api::core::v1::EnvVar>);

fn parse_prover_env(s: &str) -> Result<ProverEnv, String> {
    if s.trim().is_empty() {
        return Ok(ProverEnv::default());
    }
    serde_json::from_str(s).map(ProverEnv).map_err(|e| {
        format!("not a JSON list of env entries like [{{\"name\":\"A\",\"value\":\"1\"}}]: {e}")
    })
}

/// The parsed `--metrics-scraper` peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsScraper(pub Option<k8s_openapi::api::networking::v1::NetworkPolicyPeer>);

fn parse_metrics_scraper(s: &str) -> Result<MetricsScraper, String> {
    if s.trim().is_empty() {
        return Ok(MetricsScraper::default());
    }
    let peer: k8s_openapi::api::networking::v1::NetworkPolicyPeer = serde_json::from_str(s)
        .map_err(|e| {
            format!("not a JSON NetworkPolicy peer like {{\"namespaceSelector\":{{\"matchLabels\":{{\"kubernetes.io/metadata.name\":\"monitoring\"}}}}}}: {e}")
        })?;
    if peer.namespace_selector.is_none() && peer.pod_selector.is_none() && peer.ip_block.is_none() {
        return Err(
            "the peer selects nothing: set namespaceSelector, podSelector or ipBlock".into(),
        );
    }
    Ok(MetricsScraper(Some(peer)))
}

impl Cli {
    /// The namespace to restrict every watch and list to, `None` for the whole cluster.
    pub fn watch_namespace(&self) -> Option<String> {
        self.watch_namespace.clone().filter(|ns| !ns.is_empty())
    }

    /// `--dispatcher-url`, else the Service address the chart creates.
    pub fn dispatcher_url(&self) -> String {
        self.dispatcher_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "http://{}.{}.svc:{}",
                    self.lease_name,
                    self.namespace,
                    self.dispatcher_addr.port()
                )
            })
    }

    /// `--identity`, else the host name, else a fixed name (single-replica use only).
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
            .unwrap_or_else(|| "zkfleet-operator".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent_and_documented() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if arg.get_id() != "help" && arg.get_id() != "version" {
                assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
            }
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from([
            "zkfleet-operator",
            "--prover-image",
            "img:1",
            "--namespace",
            "zkfleet-system",
        ])
        .unwrap();
        assert_eq!(cli.admin_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.lease_name, "zkfleet-operator");
        assert_eq!(cli.parameters_cache_path, "/var/lib/zkfleet/parameters");
        assert_eq!(cli.rollout_deadline_seconds, 300);
        assert!(!cli.identity().is_empty());
        assert_eq!(cli.watch_namespace(), None, "every namespace by default");
        assert_eq!(
            cli.dispatcher_url(),
            "http://zkfleet-operator.zkfleet-system.svc:8081"
        );
        assert_eq!(cli.lease_seconds, 30);
        assert!(cli.prover_env.0.is_empty());
        assert_eq!(cli.external_metrics_addr, None);
        assert_eq!(cli.keda_scaler_addr, None);
        assert!(
            Cli::try_parse_from(["zkfleet-operator", "--namespace", "x"]).is_err(),
            "--prover-image is required"
        );
    }

    #[test]
    fn watch_namespace_restricts_only_when_not_empty() {
        let parse = |extra: &[&str]| {
            let base = [
                "zkfleet-operator",
                "--prover-image",
                "i:1",
                "--namespace",
                "ops",
            ];
            Cli::try_parse_from(base.iter().chain(extra)).unwrap()
        };
        assert_eq!(
            parse(&["--watch-namespace", "team-a"]).watch_namespace(),
            Some("team-a".into())
        );
        assert_eq!(parse(&["--watch-namespace", ""]).watch_namespace(), None);
    }

    #[test]
    fn the_metrics_scraper_is_a_network_policy_peer_or_nothing() {
        assert_eq!(parse_metrics_scraper(""), Ok(MetricsScraper(None)));
        let peer = parse_metrics_scraper(
            r#"{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}"#,
        )
        .unwrap()
        .0
        .unwrap();
        assert!(peer.namespace_selector.is_some());
        let refused = parse_metrics_scraper("{}").unwrap_err();
        assert!(refused.contains("selects nothing"), "{refused}");
        let refused = parse_metrics_scraper("monitoring").unwrap_err();
        assert!(
            refused.contains("not a JSON NetworkPolicy peer"),
            "{refused}"
        );
    }
}
