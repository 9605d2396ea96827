//! The aggregated API `external.metrics.k8s.io/v1beta1`: each pool's queued and running jobs, so
//! a HorizontalPodAutoscaler scales a ProverPool on its queue with no metrics adapter installed.
//!
//! The API server proxies `/apis/external.metrics.k8s.io/...` here (the chart's APIService). As
//! every aggregated API server does, this one trusts the proxy rather than the caller: a request
//! comes over TLS with a client certificate signed by the front-proxy CA that the API server
//! publishes in `kube-system/extension-apiserver-authentication` ("requestheader"), and names the
//! caller in `X-Remote-User`/`X-Remote-Group` headers; each metric read is then authorized with a
//! SubjectAccessReview. [`router`] is the HTTP side, testable without TLS; [`serve`] adds TLS and
//! reads the cluster's requestheader configuration.
//!
//! ```text
//! kubectl get --raw "/apis/external.metrics.k8s.io/v1beta1/namespaces/NS/zkfleet_pool_queued_jobs?labelSelector=pool=NAME"
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use axum_server::tls::TlsInfo;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, Status, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

/// The API group served.
pub const GROUP: &str = "external.metrics.k8s.io";
/// The API version served.
pub const VERSION: &str = "v1beta1";
const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";

/// Jobs of a pool waiting for a prover pod.
pub const QUEUED_JOBS: &str = "zkfleet_pool_queued_jobs";
/// Jobs of a pool leased to a prover pod.
pub const RUNNING_JOBS: &str = "zkfleet_pool_running_jobs";
/// The one label of every metric, and the only one a label selector may name.
pub const POOL_LABEL: &str = "pool";

/// Namespace and name of the ConfigMap where the API server publishes how it proxies requests.
pub const AUTHENTICATION_CONFIG_MAP: (&str, &str) =
    ("kube-system", "extension-apiserver-authentication");

/// How long an allowed SubjectAccessReview is reused: the HPA asks every 15 s per metric.
const ALLOWED_DECISION_TTL: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to finish their requests once the server stops.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);
/// How often the serving certificate files are checked for a new version (a Secret volume is
/// updated in place when the chart's Secret changes).
const CERTIFICATE_RECHECK: Duration = Duration::from_secs(10);

/// Queued and running jobs of one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolLoad {
    /// The ProverPool's name.
    pub pool: String,
    /// Jobs waiting for a prover pod.
    pub queued: u64,
    /// Jobs leased to a prover pod.
    pub running: u64,
}

/// Where the metrics come from: the dispatcher, which knows every pool that has jobs.
pub trait PoolLoads: Send + Sync + 'static {
    /// The pools of `namespace` that have queued or running jobs; a pool not listed has none.
    fn loads(&self, namespace: &str) -> Vec<PoolLoad>;
}

/// One metric this API serves.
struct Metric {
    name: &'static str,
    value: fn(&PoolLoad) -> u64,
}

const METRICS: [Metric; 2] = [
    Metric {
        name: QUEUED_JOBS,
        value: |load| load.queued,
    },
    Metric {
        name: RUNNING_JOBS,
        value: |load| load.running,
    },
];

fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// `ExternalMetricValueList` of `external.metrics.k8s.io/v1beta1`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    pub api_version: String,
    pub kind: String,
    pub metadata: ListMeta,
    pub items: Vec<ExternalMetricValue>,
}

/// One value of an external metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    pub timestamp: Time,
    /// A Kubernetes quantity, here always a whole number such as "3".
    pub value: String,
}

/// The pools a label selector names.
#[derive(Debug, PartialEq, Eq)]
enum PoolSelector {
    /// No selector: every pool of the namespace that has jobs.
    All,
    /// These pools, each with 0 when it has no jobs.
    Pools(BTreeSet<String>),
}

/// Parses the label selectors an HPA sends for `selector.matchLabels: {pool: NAME}` or
/// `matchExpressions: [{key: pool, operator: In, values: [...]}]`: `pool=NAME`, `pool==NAME`,
/// `pool in (A,B)`, several of them separated by commas (all must hold), or nothing.
fn parse_selector(selector: &str) -> Result<PoolSelector, String> {
    let unsupported = || {
        format!(
            "label selector {selector:?} is not supported: use {POOL_LABEL}=NAME, \
             {POOL_LABEL} in (NAME,...) or none (every pool of the namespace that has jobs)"
        )
    };
    if selector.trim().is_empty() {
        return Ok(PoolSelector::All);
    }
    let mut pools: Option<BTreeSet<String>> = None;
    for requirement in split_requirements(selector) {
        let named = parse_requirement(requirement.trim()).ok_or_else(unsupported)?;
        pools = Some(match pools {
            None => named,
            Some(before) => before.intersection(&named).cloned().collect(),
        });
    }
    Ok(PoolSelector::Pools(pools.unwrap_or_default()))
}

/// Splits a selector at the commas outside parentheses.
fn split_requirements(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

fn parse_requirement(requirement: &str) -> Option<BTreeSet<String>> {
    if let Some((key, value)) = requirement
        .split_once("==")
        .or_else(|| requirement.split_once('='))
    {
        // `pool!=x` splits into the key `pool!`, which is refused here.
        let value = value.trim();
        return (key.trim() == POOL_LABEL && is_label_value(value))
            .then(|| BTreeSet::from([value.to_string()]));
    }
    let rest = requirement.strip_prefix(POOL_LABEL)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let list = rest
        .trim_start()
        .strip_prefix("in")?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let values: BTreeSet<String> = list.split(',').map(|v| v.trim().to_string()).collect();
    values.iter().all(|v| is_label_value(v)).then_some(values)
}

/// A non-empty Kubernetes label value.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Who a request is from, as the API server's front proxy says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// How the API server proxies requests to aggregated APIs: the `requestheader-*` keys of
/// `kube-system/extension-apiserver-authentication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// PEM certificates of the CA that signs the front proxy's client certificate.
    pub client_ca_pem: String,
    /// Common names the front proxy's certificate may have; empty: any that CA signed.
    pub allowed_names: Vec<String>,
    /// Headers naming the user; the first one present is used.
    pub username_headers: Vec<String>,
    /// Headers naming the user's UID (Kubernetes 1.32 and later); the first one present is used.
    pub uid_headers: Vec<String>,
    /// Headers naming the user's groups, each value one group.
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying the user's extra attributes.
    pub extra_headers_prefixes: Vec<String>,
}

impl RequestHeaderConfig {
    /// Parses the ConfigMap's data.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, String> {
        let client_ca_pem = data
            .get("requestheader-client-ca-file")
            .map(|pem| pem.trim())
            .filter(|pem| !pem.is_empty())
            .ok_or(
                "it has no requestheader-client-ca-file: the API server runs without the \
                 aggregation layer; start kube-apiserver with --requestheader-client-ca-file, \
                 --requestheader-allowed-names, --requestheader-username-headers, \
                 --requestheader-group-headers, --requestheader-extra-headers-prefix, \
                 --proxy-client-cert-file and --proxy-client-key-file",
            )?
            .to_string();
        let list = |key: &str| -> Result<Vec<String>, String> {
            let Some(json) = data.get(key).filter(|v| !v.trim().is_empty()) else {
                return Ok(Vec::new());
            };
            let values: Vec<String> = serde_json::from_str(json)
                .map_err(|e| format!("{key} is not a JSON list of strings ({e}): {json}"))?;
            Ok(values.into_iter().filter(|v| !v.is_empty()).collect())
        };
        let config = Self {
            client_ca_pem,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: list("requestheader-username-headers")?,
            uid_headers: list("requestheader-uid-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_headers_prefixes: list("requestheader-extra-headers-prefix")?,
        };
        if config.username_headers.is_empty() {
            return Err(
                "it has no requestheader-username-headers: start kube-apiserver with \
                        --requestheader-username-headers=X-Remote-User"
                    .into(),
            );
        }
        Ok(config)
    }

    /// Reads the API server's ConfigMap.
    pub async fn fetch(client: &Client) -> Result<Self, Error> {
        let (namespace, name) = AUTHENTICATION_CONFIG_MAP;
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(Error::ReadAuthenticationConfig)?
            .ok_or(Error::NoAuthenticationConfig)?;
        Self::from_config_map(&config_map.data.unwrap_or_default())
            .map_err(Error::InvalidAuthenticationConfig)
    }

    /// The user a request is from, when it came through the front proxy: over a connection
    /// whose client certificate the front-proxy CA signed (`client_cn` is that certificate's
    /// common name) and with a user header.
    pub fn authenticate(
        &self,
        client_cn: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, String> {
        let Some(cn) = client_cn else {
            return Err(format!(
                "this API is served through the Kubernetes API server: use kubectl get --raw \
                 /apis/{GROUP_VERSION}/namespaces/NAMESPACE/{QUEUED_JOBS} (a direct request \
                 needs a client certificate signed by the API server's requestheader client CA)"
            ));
        };
        if !self.allowed_names.is_empty() && !self.allowed_names.iter().any(|n| n == cn) {
            return Err(format!(
                "the client certificate's common name {cn:?} is not one of the API server's \
                 requestheader-allowed-names {:?}",
                self.allowed_names
            ));
        }
        let first = |names: &[String]| {
            names.iter().find_map(|name| {
                headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(String::from)
            })
        };
        let name = first(&self.username_headers).ok_or_else(|| {
            format!(
                "the request names no user in {}",
                self.username_headers.join(" or ")
            )
        })?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|header| headers.get_all(header.as_str()))
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (header, value) in headers {
            // HeaderName is lowercase.
            let Some(key) = self.extra_headers_prefixes.iter().find_map(|prefix| {
                header
                    .as_str()
                    .strip_prefix(prefix.to_ascii_lowercase().as_str())
            }) else {
                continue;
            };
            if let Ok(value) = value.to_str() {
                extra
                    .entry(percent_decode(key).to_lowercase())
                    .or_default()
                    .push(value.to_string());
            }
        }
        Ok(UserInfo {
            name,
            uid: first(&self.uid_headers),
            groups,
            extra,
        })
    }
}

/// Decodes `%XX` escapes (extra keys are escaped by the API server); others stay as they are.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One authorization question: may `user` read `metric` in `namespace`?
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReviewRequest {
    pub user: UserInfo,
    pub namespace: String,
    pub metric: String,
}

/// An authorization answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Denied, with the authorizer's reason (possibly empty).
    Denied(String),
}

/// Answers authorization questions; [`SubjectAccessReviewer`] asks the API server.
pub trait AccessReview: Send + Sync + 'static {
    /// Whether the request is allowed; an error when no answer could be had.
    fn review<'a>(&'a self, request: &'a ReviewRequest) -> BoxFuture<'a, Result<Decision, String>>;
}

/// Authorizes with SubjectAccessReviews, reusing allowed decisions for a few seconds.
pub struct SubjectAccessReviewer {
    client: Client,
    cache: DecisionCache,
}

impl SubjectAccessReviewer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: DecisionCache::new(ALLOWED_DECISION_TTL),
        }
    }
}

impl AccessReview for SubjectAccessReviewer {
    fn review<'a>(&'a self, request: &'a ReviewRequest) -> BoxFuture<'a, Result<Decision, String>> {
        Box::pin(async move {
            if self.cache.allows(request, Instant::now()) {
                return Ok(Decision::Allowed);
            }
            let review = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &subject_access_review(request))
                .await
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
            let status = review.status.unwrap_or_default();
            if status.allowed {
                self.cache.remember(request.clone(), Instant::now());
                Ok(Decision::Allowed)
            } else {
                Ok(Decision::Denied(status.reason.unwrap_or_default()))
            }
        })
    }
}

/// The SubjectAccessReview for a metric read. The verb is `list`, as the API server's own check
/// before proxying: a GET of `/namespaces/NS/METRIC` names a resource but no object.
fn subject_access_review(request: &ReviewRequest) -> SubjectAccessReview {
    let user = &request.user;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                version: Some(VERSION.into()),
                resource: Some(request.metric.clone()),
                namespace: Some(request.namespace.clone()),
                verb: Some("list".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Allowed decisions with their expiry. Denials are not kept, so a new RoleBinding takes effect
/// at the next request.
struct DecisionCache {
    ttl: Duration,
    allowed: Mutex<HashMap<ReviewRequest, Instant>>,
}

impl DecisionCache {
    /// Bounds memory when many users or namespaces ask; expired entries go first.
    const MAX_ENTRIES: usize = 4096;

    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            allowed: Mutex::new(HashMap::new()),
        }
    }

    fn allows(&self, request: &ReviewRequest, now: Instant) -> bool {
        let allowed = self.allowed.lock().unwrap_or_else(PoisonError::into_inner);
        allowed.get(request).is_some_and(|until| now < *until)
    }

    fn remember(&self, request: ReviewRequest, now: Instant) {
        let mut allowed = self.allowed.lock().unwrap_or_else(PoisonError::into_inner);
        if allowed.len() >= Self::MAX_ENTRIES {
            allowed.retain(|_, until| now < *until);
            if allowed.len() >= Self::MAX_ENTRIES {
                allowed.clear();
            }
        }
        allowed.insert(request, now + self.ttl);
    }
}

/// Who may call the API.
#[derive(Clone)]
pub enum Access {
    /// Anyone: for tests of the router without TLS.
    Open,
    /// Callers the API server's front proxy authenticated, authorized by `review`.
    Delegated {
        requestheader: Arc<RequestHeaderConfig>,
        review: Arc<dyn AccessReview>,
    },
}

#[derive(Clone)]
struct ApiState {
    loads: Arc<dyn PoolLoads>,
    access: Access,
}

/// The API's router. `/apis/...` needs the front proxy's authentication when `access` is
/// [`Access::Delegated`] (the client certificate comes from an `Arc<TlsInfo>` extension); the OpenAPI
/// documents and the health endpoints answer anyone.
pub fn router(loads: Arc<dyn PoolLoads>, access: Access) -> Router {
    let state = ApiState { loads, access };
    let apis = Router::new()
        .route(&format!("/apis/{GROUP}"), get(api_group))
        .route(&format!("/apis/{GROUP_VERSION}"), get(api_resources))
        .route(
            &format!("/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}"),
            get(metric_values),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(apis)
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .fallback(|| async { status(StatusCode::NOT_FOUND, "NotFound", "not found".into()) })
        .with_state(state)
}

async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    if let Access::Delegated { requestheader, .. } = &state.access {
        // axum-server's rustls has verified any certificate the client presented.
        let client_cn = request
            .extensions()
            .get::<Arc<TlsInfo>>()
            .and_then(|tls| tls.peer_certificates.first())
            .and_then(|cert| common_name(cert));
        match requestheader.authenticate(client_cn.as_deref(), request.headers()) {
            Ok(user) => {
                request.extensions_mut().insert(user);
            }
            Err(message) => {
                debug!(path = %request.uri().path(), %message, "unauthenticated request");
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", message);
            }
        }
    }
    next.run(request).await
}

/// A Kubernetes `Status` error response.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Default::default()
    };
    (code, Json(body)).into_response()
}

async fn api_group() -> Json<APIGroup> {
    let version = GroupVersionForDiscovery {
        group_version: GROUP_VERSION.into(),
        version: VERSION.into(),
    };
    Json(APIGroup {
        name: GROUP.into(),
        preferred_version: Some(version.clone()),
        versions: vec![version],
        ..Default::default()
    })
}

async fn api_resources() -> Json<APIResourceList> {
    Json(APIResourceList {
        group_version: GROUP_VERSION.into(),
        resources: METRICS
            .iter()
            .map(|m| APIResource {
                name: m.name.into(),
                singular_name: String::new(),
                namespaced: true,
                kind: "ExternalMetricValueList".into(),
                verbs: vec!["get".into()],
                ..Default::default()
            })
            .collect(),
    })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "labelSelector", default)]
    label_selector: String,
}

async fn metric_values(
    State(state): State<ApiState>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    Query(query): Query<ListQuery>,
    user: Option<Extension<UserInfo>>,
) -> Response {
    let Some(metric) = metric(&name) else {
        let served: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "no external metric {name:?}: this server serves {}",
                served.join(", ")
            ),
        );
    };
    let selector = match parse_selector(&query.label_selector) {
        Ok(selector) => selector,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    if let Access::Delegated { review, .. } = &state.access {
        let Some(Extension(user)) = user else {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "no authenticated user".into(),
            );
        };
        let request = ReviewRequest {
            user,
            namespace: namespace.clone(),
            metric: metric.name.into(),
        };
        match review.review(&request).await {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Denied(reason)) => {
                info!(user = %request.user.name, %namespace, metric = metric.name, %reason, "metric read denied");
                let mut message = format!(
                    "{}.{GROUP} is forbidden: User {:?} cannot list resource {:?} in API group \
                     {GROUP:?} in the namespace {namespace:?}",
                    metric.name, request.user.name, metric.name
                );
                if !reason.is_empty() {
                    message.push_str(&format!(": {reason}"));
                }
                return status(StatusCode::FORBIDDEN, "Forbidden", message);
            }
            Err(e) => {
                warn!(error = %e, "could not authorize a metric read");
                return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e);
            }
        }
    }

    let mut loads: BTreeMap<String, PoolLoad> = state
        .loads
        .loads(&namespace)
        .into_iter()
        .map(|load| (load.pool.clone(), load))
        .collect();
    let selected: Vec<PoolLoad> = match selector {
        PoolSelector::All => loads.into_values().collect(),
        PoolSelector::Pools(pools) => pools
            .into_iter()
            .map(|pool| {
                loads.remove(&pool).unwrap_or(PoolLoad {
                    pool,
                    ..Default::default()
                })
            })
            .collect(),
    };
    let timestamp = Time(Timestamp::now());
    Json(ExternalMetricValueList {
        api_version: GROUP_VERSION.into(),
        kind: "ExternalMetricValueList".into(),
        metadata: ListMeta::default(),
        items: selected
            .iter()
            .map(|load| ExternalMetricValue {
                metric_name: metric.name.into(),
                metric_labels: BTreeMap::from([(POOL_LABEL.into(), load.pool.clone())]),
                timestamp: timestamp.clone(),
                value: (metric.value)(load).to_string(),
            })
            .collect(),
    })
    .into_response()
}

/// The API server's aggregator downloads these; the metrics API has no schema of its own to add.
async fn openapi_v2() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "swagger": "2.0",
        "info": {"title": "zkfleet external metrics", "version": VERSION},
        "paths": {},
    }))
}

async fn openapi_v3() -> Json<serde_json::Value> {
    Json(serde_json::json!({"paths": {}}))
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the external metrics TLS {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} holds no PEM {what}: {message}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error(
        "the external metrics TLS certificate {} and key {} are unusable together: {source}",
        cert.display(), key.display()
    )]
    CertificateKey {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "cannot read ConfigMap kube-system/extension-apiserver-authentication ({0}): the \
         operator's ServiceAccount needs the Role extension-apiserver-authentication-reader in \
         kube-system, which the chart binds when externalMetrics.enabled is true"
    )]
    ReadAuthenticationConfig(#[source] kube::Error),
    #[error(
        "ConfigMap kube-system/extension-apiserver-authentication does not exist: the API \
         server runs without the aggregation layer (--requestheader-client-ca-file and \
         --proxy-client-cert-file), so it cannot proxy to aggregated APIs"
    )]
    NoAuthenticationConfig,
    #[error("ConfigMap kube-system/extension-apiserver-authentication: {0}")]
    InvalidAuthenticationConfig(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("serving the external metrics API: {0}")]
    Serve(#[source] io::Error),
}

/// Serves the API on `addr` over HTTPS until `shutdown` resolves: the certificate and key are
/// PEM files (served anew when they change), callers are authenticated by the cluster's
/// front-proxy configuration and authorized with SubjectAccessReviews.
pub async fn serve(
    addr: SocketAddr,
    cert_path: PathBuf,
    key_path: PathBuf,
    client: Client,
    loads: Arc<dyn PoolLoads>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let requestheader = RequestHeaderConfig::fetch(&client).await?;
    let tls = ServingTls::load(cert_path, key_path, &requestheader.client_ca_pem)?;
    let tcp = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    info!(%addr, allowed_names = ?requestheader.allowed_names, "external metrics API listening");
    let access = Access::Delegated {
        requestheader: Arc::new(requestheader),
        review: Arc::new(SubjectAccessReviewer::new(client)),
    };
    let config = tls.config.clone();
    let reload = tokio::spawn(reload_when_changed(tls));
    let served = serve_tls(tcp, config, router(loads, access), shutdown).await;
    reload.abort();
    served.map_err(Error::Serve)
}

/// Serves `app` on `tcp` with TLS until `shutdown` resolves. axum-server runs each handshake in
/// the connection's own task with a timeout, so a slow or silent client holds up no other, and
/// hands handlers the verified client certificate as an `Arc<TlsInfo>` extension.
async fn serve_tls(
    tcp: std::net::TcpListener,
    config: RustlsConfig,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tcp.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.graceful_shutdown(Some(GRACEFUL_SHUTDOWN));
    });
    let acceptor = RustlsAcceptor::new(config).handshake_timeout(HANDSHAKE_TIMEOUT);
    axum_server::from_tcp(tcp)?
        .acceptor(acceptor)
        .handle(handle)
        // A client that finished its handshake but never sends a request is let go too.
        .first_request_timeout(HANDSHAKE_TIMEOUT)
        .serve(app.into_make_service())
        .await
}

/// The server's TLS: the certificate read from PEM files, and client certificates requested and
/// verified against the front-proxy CA but not required, so that health probes work without
/// one. axum-server serves `config`; a renewed certificate is swapped into it.
struct ServingTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    config: RustlsConfig,
    /// The files' version that `config` was built from.
    version: FilesVersion,
}

/// Modification time and length of the certificate and key files.
type FilesVersion = [Option<(SystemTime, u64)>; 2];

impl ServingTls {
    fn load(cert_path: PathBuf, key_path: PathBuf, client_ca_pem: &str) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_verifier = client_verifier(client_ca_pem, provider.clone())?;
        let version = files_version(&cert_path, &key_path);
        let config = server_config(&cert_path, &key_path, &provider, client_verifier.clone())?;
        Ok(Self {
            config: RustlsConfig::from_config(Arc::new(config)),
            cert_path,
            key_path,
            provider,
            client_verifier,
            version,
        })
    }

    /// Serves the files' certificate from now on if they changed since it was read. A pair
    /// that does not load (half-updated files, for example) leaves the old one served, and is
    /// looked at again next time.
    fn reload_if_changed(&mut self) {
        let version = files_version(&self.cert_path, &self.key_path);
        if version == self.version {
            return;
        }
        match server_config(
            &self.cert_path,
            &self.key_path,
            &self.provider,
            self.client_verifier.clone(),
        ) {
            Ok(config) => {
                info!(cert = %self.cert_path.display(), "external metrics API: serving a new certificate");
                self.config.reload_from_config(Arc::new(config));
                self.version = version;
            }
            Err(e) => warn!(error = %e, "external metrics API: keeping the previous certificate"),
        }
    }
}

/// Looks at the certificate files every [`CERTIFICATE_RECHECK`], so that a renewed Secret is
/// served without a restart (the kubelet updates a mounted Secret's files in place).
async fn reload_when_changed(mut tls: ServingTls) {
    let mut every = tokio::time::interval(CERTIFICATE_RECHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tls.reload_if_changed();
    }
}

fn client_verifier(
    client_ca_pem: &str,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let invalid = |e: &dyn std::fmt::Display| {
        Error::InvalidAuthenticationConfig(format!("requestheader-client-ca-file: {e}"))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| invalid(&e))?;
        roots.add(cert).map_err(|e| invalid(&e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(&e))
}

/// HTTP/1.1 only, as the aggregator and probes speak it.
fn server_config(
    cert_path: &Path,
    key_path: &Path,
    provider: &Arc<CryptoProvider>,
    client_verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, Error> {
    let certificate = read_certified_key(cert_path, key_path, provider)?;
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certificate)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn files_version(cert_path: &Path, key_path: &Path) -> FilesVersion {
    [cert_path, key_path].map(|path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

fn read_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Error> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| Error::ReadFile {
            what,
            path: path.into(),
            source,
        })
    };
    let cert_pem = read("certificate", cert_path)?;
    let key_pem = read("key", key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what: "certificate",
            path: cert_path.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::Pem {
            what: "certificate",
            path: cert_path.into(),
            message: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::Pem {
        what: "private key",
        path: key_path.into(),
        message: format!("{e} (expected a PKCS#8, PKCS#1 or SEC1 PRIVATE KEY block)"),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| Error::CertificateKey {
        cert: cert_path.into(),
        key: key_path.into(),
        source,
    })
}

/// The subject common name of a DER certificate, the last one if several, as Go's crypto/x509
/// (and so the API server) reads it.
fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let name = parsed.subject().iter_common_name().last()?;
    name.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    // Test-only PKI (ECDSA P-256, valid 2000 to 2100): a CA that signs both the server's
    // certificate (localhost, 127.0.0.1) and a front-proxy client certificate.
    const CA_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBcDCCARagAwIBAgICEAIwCgYIKoZIzj0EAwIwHjEcMBoGA1UEAwwTdGVzdC1m
cm9udC1wcm94eS1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFow
HjEcMBoGA1UEAwwTdGVzdC1mcm9udC1wcm94eS1jYTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABAoMO4wv5SFGnpFklZLdtrdPTBOQoWFx0TGfaKF0usJQKSU8opMN
BWO9HhmKDVZIK1ptTwM3BoNpnFwGx5vBKp2jQjBAMA8GA1UdEwEB/wQFMAMBAf8w
DgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBSjfI38/uBf34oHdCjmH1z3TFAOQDAK
BggqhkjOPQQDAgNIADBFAiEA1MFAn0tYLwpJxf/WbzBbE3Na1cQxrg8J8zkpDdrc
zLECIGdW9aAkxH8eX3RgfXdwLW72V55HHJW/8fTpfHcUmt2N
-----END CERTIFICATE-----
";
    const SERVER_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBtzCCAV2gAwIBAgICEAMwCgYIKoZIzj0EAwIwHjEcMBoGA1UEAwwTdGVzdC1m
cm9udC1wcm94eS1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFow
FDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
n9tnSilsQYOqyfQlgBCx53GXx3N/uVwj13bb8WQQMqlgpLxQZT+fYLuwfgZrewgz
DR6+dMORPWAmPXw3v6R+hqOBkjCBjzAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE
AwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAaBgNVHREEEzARgglsb2NhbGhvc3SH
BH8AAAEwHQYDVR0OBBYEFI53GDy9G8Q8JmsekbEmnMpNo7NuMB8GA1UdIwQYMBaA
FKN8jfz+4F/figd0KOYfXPdMUA5AMAoGCCqGSM49BAMCA0gAMEUCIQD/M/jQCgUo
q9Rhdv9ukhzRKP9SNNKyXpXDz/ry7aAUZwIgCZvSssv/PRK0+Ge0K8c9u8S78wqp
iaBRXdmHQNAPyRU=
-----END CERTIFICATE-----
";
    const SERVER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXZEe/b/RNu9XIeC6
aOCQ8q4fnqQo43APnpO47DjKBauhRANCAASf22dKKWxBg6rJ9CWAELHncZfHc3+5
XCPXdtvxZBAyqWCkvFBlP59gu7B+Bmt7CDMNHr50w5E9YCY9fDe/pH6G
-----END PRIVATE KEY-----
";
    const CLIENT_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBsDCCAVegAwIBAgICEAQwCgYIKoZIzj0EAwIwHjEcMBoGA1UEAwwTdGVzdC1m
cm9udC1wcm94eS1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFow
LDEbMBkGA1UEAwwSZnJvbnQtcHJveHktY2xpZW50MQ0wCwYDVQQKDAR0ZXN0MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsAwr+cp8s1/myiG4rpQ/l/NNiM70+v9o
IOvm/qxGyXAvxaNMJmYbI9LGj+rof8siyMnqEUB2tlBpVAGFKc/5FKN1MHMwDAYD
VR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIw
HQYDVR0OBBYEFEqTO/l3r1qlEVJYjLbICBoV3T4kMB8GA1UdIwQYMBaAFKN8jfz+
4F/figd0KOYfXPdMUA5AMAoGCCqGSM49BAMCA0cAMEQCIFT8MmRwN2jLugniwhiQ
UC7x4Q2lrmZcRNIFLqXhjyCGAiAgsZ9K//EmSdtoubbfMXj23Ipfk+QgXrd/LNvv
m7AEvw==
-----END CERTIFICATE-----
";
    const CLIENT_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9oMmH6tWpqe+DcpX
GUfuyJrV63EwTPuaBAQoX9g1qmShRANCAASwDCv5ynyzX+bKIbiulD+X802IzvT6
/2gg6+b+rEbJcC/Fo0wmZhsj0saP6uh/yyLIyeoRQHa2UGlUAYUpz/kU
-----END PRIVATE KEY-----
";

    struct FakeLoads;

    impl PoolLoads for FakeLoads {
        fn loads(&self, namespace: &str) -> Vec<PoolLoad> {
            let load = |pool: &str, queued, running| PoolLoad {
                pool: pool.into(),
                queued,
                running,
            };
            match namespace {
                "team-a" => vec![load("small", 3, 1), load("big", 0, 2)],
                "team-b" => vec![load("small", 7, 0)],
                _ => vec![],
            }
        }
    }

    /// Allows the user "alice" and anyone in "metrics-readers"; records every question.
    #[derive(Default)]
    struct FakeReview {
        asked: Mutex<Vec<ReviewRequest>>,
    }

    impl AccessReview for FakeReview {
        fn review<'a>(
            &'a self,
            request: &'a ReviewRequest,
        ) -> BoxFuture<'a, Result<Decision, String>> {
            self.asked.lock().unwrap().push(request.clone());
            let allowed = request.user.name == "alice"
                || request.user.groups.iter().any(|g| g == "metrics-readers");
            Box::pin(async move {
                Ok(if allowed {
                    Decision::Allowed
                } else {
                    Decision::Denied("no RBAC rule".into())
                })
            })
        }
    }

    fn requestheader() -> RequestHeaderConfig {
        RequestHeaderConfig::from_config_map(&BTreeMap::from(
            [
                ("requestheader-client-ca-file", CA_CRT),
                ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
                ("requestheader-username-headers", r#"["X-Remote-User"]"#),
                ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
                (
                    "requestheader-extra-headers-prefix",
                    r#"["X-Remote-Extra-"]"#,
                ),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        ))
        .unwrap()
    }

    fn delegated(review: Arc<FakeReview>) -> Router {
        router(
            Arc::new(FakeLoads),
            Access::Delegated {
                requestheader: Arc::new(requestheader()),
                review,
            },
        )
    }

    async fn call(app: Router, request: axum::http::Request<Body>) -> (StatusCode, Value) {
        let response = app.oneshot(request).await.unwrap();
        let code = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        (code, json)
    }

    async fn get_open(path: &str) -> (StatusCode, Value) {
        let app = router(Arc::new(FakeLoads), Access::Open);
        call(
            app,
            axum::http::Request::get(path).body(Body::empty()).unwrap(),
        )
        .await
    }

    /// (pool, value) of each item, checking the rest of the list's shape.
    fn values(list: &Value, metric: &str) -> Vec<(String, String)> {
        assert_eq!(list["kind"], "ExternalMetricValueList");
        assert_eq!(list["apiVersion"], "external.metrics.k8s.io/v1beta1");
        assert!(list["metadata"].is_object());
        let parsed: ExternalMetricValueList = serde_json::from_value(list.clone()).unwrap();
        parsed
            .items
            .iter()
            .map(|item| {
                assert_eq!(item.metric_name, metric);
                assert_eq!(item.metric_labels.len(), 1);
                (item.metric_labels["pool"].clone(), item.value.clone())
            })
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const QUEUED_PATH: &str =
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/zkfleet_pool_queued_jobs";

    #[tokio::test]
    async fn discovery_lists_every_metric_as_namespaced() {
        let (code, list) = get_open("/apis/external.metrics.k8s.io/v1beta1").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["groupVersion"], "external.metrics.k8s.io/v1beta1");
        let resources = list["resources"].as_array().unwrap();
        let names: Vec<_> = resources.iter().map(|r| r["name"].clone()).collect();
        assert_eq!(
            names,
            ["zkfleet_pool_queued_jobs", "zkfleet_pool_running_jobs"]
        );
        for resource in resources {
            assert_eq!(resource["singularName"], "");
            assert_eq!(resource["namespaced"], true);
            assert_eq!(resource["kind"], "ExternalMetricValueList");
            assert_eq!(resource["verbs"], serde_json::json!(["get"]));
        }

        let (code, group) = get_open("/apis/external.metrics.k8s.io").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["name"], "external.metrics.k8s.io");
        assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    }

    #[tokio::test]
    async fn a_named_pool_reports_its_jobs_and_an_idle_pool_zero() {
        let (code, list) = get_open(&format!("{QUEUED_PATH}?labelSelector=pool%3Dsmall")).await;
        assert_eq!(code, StatusCode::OK, "{list}");
        assert_eq!(
            values(&list, "zkfleet_pool_queued_jobs"),
            pairs(&[("small", "3")])
        );
        let timestamp = list["items"][0]["timestamp"].as_str().unwrap();
        assert!(timestamp.parse::<Timestamp>().is_ok(), "{timestamp}");

        // A pool the dispatcher has never seen a job for is idle, not unknown.
        let (code, list) = get_open(&format!("{QUEUED_PATH}?labelSelector=pool%3Didle")).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            values(&list, "zkfleet_pool_queued_jobs"),
            pairs(&[("idle", "0")])
        );

        let running = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/\
                       zkfleet_pool_running_jobs?labelSelector=pool+in+%28big%2C+small%2C+idle%29";
        let (code, list) = get_open(running).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            values(&list, "zkfleet_pool_running_jobs"),
            pairs(&[("big", "2"), ("idle", "0"), ("small", "1")])
        );

        let (_, list) = get_open(&format!("{QUEUED_PATH}?labelSelector=pool%3D%3Dsmall")).await;
        assert_eq!(
            values(&list, "zkfleet_pool_queued_jobs"),
            pairs(&[("small", "3")])
        );
    }

    #[tokio::test]
    async fn no_selector_lists_the_pools_of_that_namespace_only() {
        let (code, list) = get_open(QUEUED_PATH).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            values(&list, "zkfleet_pool_queued_jobs"),
            pairs(&[("big", "0"), ("small", "3")])
        );
        let (_, list) = get_open(&QUEUED_PATH.replace("team-a", "team-b")).await;
        assert_eq!(
            values(&list, "zkfleet_pool_queued_jobs"),
            pairs(&[("small", "7")])
        );
        let (_, list) = get_open(&QUEUED_PATH.replace("team-a", "empty")).await;
        assert!(list["items"].as_array().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unknown_metrics_and_unsupported_selectors_get_a_status() {
        let (code, body) =
            get_open("/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/cpu_usage").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("cpu_usage") && message.contains("zkfleet_pool_queued_jobs"),
            "{message}"
        );

        let (code, body) = get_open(&format!("{QUEUED_PATH}?labelSelector=app%3Dweb")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(body["reason"], "BadRequest");
        assert_eq!(body["code"], 400);
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("app=web") && message.contains("pool=NAME"),
            "{message}"
        );

        let (code, body) = get_open("/apis/metrics.k8s.io/v1beta1/nodes").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(body["kind"], "Status");
    }

    #[test]
    fn selectors_the_hpa_sends_are_understood() {
        let pools = |names: &[&str]| {
            Ok(PoolSelector::Pools(
                names.iter().map(|n| n.to_string()).collect(),
            ))
        };
        assert_eq!(parse_selector(""), Ok(PoolSelector::All));
        assert_eq!(parse_selector("  "), Ok(PoolSelector::All));
        assert_eq!(parse_selector("pool=small"), pools(&["small"]));
        assert_eq!(parse_selector(" pool == small "), pools(&["small"]));
        assert_eq!(parse_selector("pool in (b,a)"), pools(&["a", "b"]));
        assert_eq!(parse_selector("pool in ( a , b )"), pools(&["a", "b"]));
        assert_eq!(
            parse_selector("pool in (a,b),pool=b"),
            pools(&["b"]),
            "requirements all hold"
        );
        assert_eq!(parse_selector("pool=a,pool=b"), pools(&[]));
        for bad in [
            "app=web",
            "pool!=a",
            "pool notin (a)",
            "pool",
            "!pool",
            "pool in a",
            "pool in ()",
            "poolx in (a)",
            "pool=",
            "pool=a b",
            "pool=a,",
            "pool=-a",
        ] {
            let error = parse_selector(bad).unwrap_err();
            assert!(
                error.contains("pool=NAME") && error.contains("pool in (NAME,...)"),
                "{bad}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn openapi_and_health_answer_without_credentials() {
        let app = delegated(Arc::default());
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let (code, v2) = call(app.clone(), get("/openapi/v2")).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["paths"].is_object());
        let (code, v3) = call(app.clone(), get("/openapi/v3")).await;
        assert_eq!(code, StatusCode::OK);
        assert!(v3["paths"].is_object());
        for path in ["/healthz", "/livez", "/readyz"] {
            assert_eq!(
                call(app.clone(), get(path)).await.0,
                StatusCode::OK,
                "{path}"
            );
        }
    }

    /// A request as the TLS layer hands it on: `client_cert` is the PEM certificate the caller
    /// presented, if any.
    fn from_proxy(
        path: &str,
        client_cert: Option<&str>,
        headers: &[(&str, &str)],
    ) -> axum::http::Request<Body> {
        let mut request = axum::http::Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        let mut tls = TlsInfo::default();
        if let Some(pem) = client_cert {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            tls.peer_certificates.push(der.to_vec());
        }
        request.extensions_mut().insert(Arc::new(tls));
        request
    }

    #[tokio::test]
    async fn only_the_front_proxy_may_call_and_only_for_authorized_users() {
        let review = Arc::new(FakeReview::default());
        let app = delegated(review.clone());
        let path = format!("{QUEUED_PATH}?labelSelector=pool%3Dsmall");
        let alice = [("X-Remote-User", "alice")];

        for (cn, why) in [
            (None, "no client certificate"),
            (Some(SERVER_CRT), "a CN not in requestheader-allowed-names"),
        ] {
            let (code, body) = call(app.clone(), from_proxy(&path, cn, &alice)).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{why}");
            assert_eq!(body["reason"], "Unauthorized", "{why}");
            assert_eq!(body["code"], 401, "{why}");
        }
        let (code, body) = call(app.clone(), from_proxy(&path, Some(CLIENT_CRT), &[])).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("X-Remote-User"));
        // Discovery is authenticated too.
        let (code, _) = call(
            app.clone(),
            from_proxy("/apis/external.metrics.k8s.io/v1beta1", None, &[]),
        )
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(
            review.asked.lock().unwrap().is_empty(),
            "no review before authentication"
        );

        let (code, list) = call(
            app.clone(),
            from_proxy(
                &path,
                Some(CLIENT_CRT),
                &[
                    (
                        "X-Remote-User",
                        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                    ),
                    ("X-Remote-Group", "system:serviceaccounts"),
                    ("X-Remote-Group", "metrics-readers"),
                    (
                        "X-Remote-Extra-Authentication.kubernetes.io%2fpod-name",
                        "hpa-0",
                    ),
                ],
            ),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{list}");
        assert_eq!(values(&list, QUEUED_JOBS), pairs(&[("small", "3")]));
        let asked = review.asked.lock().unwrap().pop().unwrap();
        assert_eq!(
            asked,
            ReviewRequest {
                user: UserInfo {
                    name: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into(),
                    uid: None,
                    groups: vec!["system:serviceaccounts".into(), "metrics-readers".into()],
                    extra: BTreeMap::from([(
                        "authentication.kubernetes.io/pod-name".into(),
                        vec!["hpa-0".into()]
                    )]),
                },
                namespace: "team-a".into(),
                metric: QUEUED_JOBS.into(),
            }
        );

        let (code, body) = call(
            app.clone(),
            from_proxy(&path, Some(CLIENT_CRT), &[("X-Remote-User", "bob")]),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(body["code"], 403);
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("\"bob\"")
                && message.contains("team-a")
                && message.contains("no RBAC rule"),
            "{message}"
        );

        // Discovery needs no authorization beyond authentication, as for system:discovery.
        let asked_before = review.asked.lock().unwrap().len();
        let (code, _) = call(
            app.clone(),
            from_proxy(
                "/apis/external.metrics.k8s.io/v1beta1",
                Some(CLIENT_CRT),
                &[("X-Remote-User", "system:kube-aggregator")],
            ),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(review.asked.lock().unwrap().len(), asked_before);
    }

    #[test]
    fn requestheader_configuration_is_read_from_the_config_map() {
        let config = requestheader();
        assert_eq!(config.allowed_names, ["front-proxy-client"]);
        assert_eq!(config.username_headers, ["X-Remote-User"]);
        assert_eq!(config.group_headers, ["X-Remote-Group"]);
        assert_eq!(config.extra_headers_prefixes, ["X-Remote-Extra-"]);
        assert!(config.uid_headers.is_empty());
        assert!(
            config
                .client_ca_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );

        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // Only the CA and the user header are required; an empty allowed list means any CN.
        let minimal = RequestHeaderConfig::from_config_map(&data(&[
            ("requestheader-client-ca-file", CA_CRT),
            ("requestheader-allowed-names", "[]"),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-uid-headers", r#"["X-Remote-Uid"]"#),
        ]))
        .unwrap();
        assert!(minimal.allowed_names.is_empty());
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", "carol".parse().unwrap());
        headers.insert("x-remote-uid", "42".parse().unwrap());
        let user = minimal.authenticate(Some("any-cn"), &headers).unwrap();
        assert_eq!(
            (user.name.as_str(), user.uid.as_deref()),
            ("carol", Some("42"))
        );

        let error =
            RequestHeaderConfig::from_config_map(&data(&[("client-ca-file", CA_CRT)])).unwrap_err();
        assert!(error.contains("--requestheader-client-ca-file"), "{error}");
        let error = RequestHeaderConfig::from_config_map(&data(&[
            ("requestheader-client-ca-file", CA_CRT),
            ("requestheader-username-headers", "X-Remote-User"),
        ]))
        .unwrap_err();
        assert!(
            error.contains("requestheader-username-headers is not a JSON list"),
            "{error}"
        );
        let error = RequestHeaderConfig::from_config_map(&data(&[(
            "requestheader-client-ca-file",
            CA_CRT,
        )]))
        .unwrap_err();
        assert!(
            error.contains("no requestheader-username-headers"),
            "{error}"
        );
    }

    #[test]
    fn the_subject_access_review_asks_what_the_api_server_asked() {
        let review = subject_access_review(&ReviewRequest {
            user: UserInfo {
                name: "alice".into(),
                uid: Some("u-1".into()),
                groups: vec!["devs".into()],
                extra: BTreeMap::new(),
            },
            namespace: "team-a".into(),
            metric: QUEUED_JOBS.into(),
        });
        let spec = review.spec;
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(spec.uid.as_deref(), Some("u-1"));
        assert_eq!(spec.groups, Some(vec!["devs".to_string()]));
        assert_eq!(spec.extra, None);
        let attributes = spec.resource_attributes.unwrap();
        assert_eq!(attributes.group.as_deref(), Some("external.metrics.k8s.io"));
        assert_eq!(attributes.version.as_deref(), Some("v1beta1"));
        assert_eq!(attributes.resource.as_deref(), Some(QUEUED_JOBS));
        assert_eq!(attributes.namespace.as_deref(), Some("team-a"));
        assert_eq!(attributes.verb.as_deref(), Some("list"));
    }

    #[test]
    fn allowed_decisions_are_reused_until_they_expire() {
        let cache = DecisionCache::new(Duration::from_secs(10));
        let request = |user: &str, ns: &str| ReviewRequest {
            user: UserInfo {
                name: user.into(),
                ..Default::default()
            },
            namespace: ns.into(),
            metric: QUEUED_JOBS.into(),
        };
        let start = Instant::now();
        assert!(!cache.allows(&request("alice", "a"), start));
        cache.remember(request("alice", "a"), start);
        assert!(cache.allows(&request("alice", "a"), start + Duration::from_secs(9)));
        assert!(!cache.allows(&request("alice", "a"), start + Duration::from_secs(10)));
        assert!(
            !cache.allows(&request("alice", "b"), start),
            "per namespace"
        );
        assert!(!cache.allows(&request("bob", "a"), start), "per user");
        let mut in_group = request("alice", "a");
        in_group.user.groups.push("admins".into());
        assert!(!cache.allows(&in_group, start), "per groups");

        for i in 0..DecisionCache::MAX_ENTRIES + 10 {
            cache.remember(request(&format!("user-{i}"), "a"), start);
        }
        assert!(cache.allowed.lock().unwrap().len() <= DecisionCache::MAX_ENTRIES);
    }

    #[test]
    fn common_names_are_read_from_certificates() {
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(
            common_name(&der(CLIENT_CRT)).as_deref(),
            Some("front-proxy-client")
        );
        assert_eq!(common_name(&der(SERVER_CRT)).as_deref(), Some("localhost"));
        assert_eq!(
            common_name(&der(CA_CRT)).as_deref(),
            Some("test-front-proxy-ca")
        );
        assert_eq!(common_name(b"not a certificate"), None);
        let client = der(CLIENT_CRT);
        assert_eq!(common_name(&client[..client.len() / 2]), None);
    }

    fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    /// Accepts whatever certificate the server shows: the reload test looks at which one.
    #[derive(Debug)]
    struct AnyServerCertificate(Arc<CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &rustls::pki_types::ServerName<'_>,
            _ocsp_response: &[u8],
            _now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The common name of the certificate the server at `addr` shows a new connection.
    async fn served_common_name(addr: SocketAddr) -> Option<String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        common_name(tls.get_ref().1.peer_certificates()?.first()?)
    }

    /// Serves `app` with `tls` on a free local port until the sender is dropped or sent to.
    fn start_server(
        tls: &ServingTls,
        app: Router,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_tls(tcp, tls.config.clone(), app, async {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_to_new_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(dir.path(), SERVER_CRT, SERVER_KEY);
        let mut tls = ServingTls::load(cert_path, key_path, CA_CRT).unwrap();
        let (addr, stop, server) = start_server(&tls, router(Arc::new(FakeLoads), Access::Open));
        assert_eq!(served_common_name(addr).await.as_deref(), Some("localhost"));

        // A half-written update (new certificate, old key) keeps the old pair.
        std::fs::write(dir.path().join("tls.crt"), CLIENT_CRT).unwrap();
        tls.reload_if_changed();
        assert_eq!(served_common_name(addr).await.as_deref(), Some("localhost"));
        // Once both files are written, the next look serves the new pair.
        write_pair(dir.path(), CLIENT_CRT, CLIENT_KEY);
        tls.reload_if_changed();
        assert_eq!(
            served_common_name(addr).await.as_deref(),
            Some("front-proxy-client")
        );

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn unusable_certificate_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), SERVER_CRT, SERVER_KEY);
        let missing = ServingTls::load(
            dir.path().join("nope.crt"),
            dir.path().join("tls.key"),
            CA_CRT,
        )
        .err()
        .unwrap();
        assert!(
            missing.to_string().contains("certificate") && missing.to_string().contains("nope.crt"),
            "{missing}"
        );
        let (cert_path, key_path) = write_pair(dir.path(), SERVER_CRT, CLIENT_KEY);
        let mismatch = ServingTls::load(cert_path, key_path, CA_CRT).err().unwrap();
        assert!(
            matches!(mismatch, Error::CertificateKey { .. }),
            "{mismatch}"
        );
        let (cert_path, key_path) = write_pair(dir.path(), SERVER_CRT, "");
        let no_key = ServingTls::load(cert_path, key_path, CA_CRT).err().unwrap();
        assert!(no_key.to_string().contains("PRIVATE KEY"), "{no_key}");
        let (cert_path, key_path) = write_pair(dir.path(), SERVER_CRT, SERVER_KEY);
        let bad_ca = ServingTls::load(cert_path, key_path, "not a CA")
            .err()
            .unwrap();
        assert!(
            bad_ca.to_string().contains("requestheader-client-ca-file"),
            "{bad_ca}"
        );
    }

    /// GET over TLS as the front proxy would (with `client` as its certificate) or as a probe.
    async fn https_get(
        addr: SocketAddr,
        client: Option<(&str, &str)>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CA_CRT.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // The server may close without close_notify once it has answered.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let code = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (code, body)
    }

    #[tokio::test]
    async fn https_passes_the_verified_client_certificate_to_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(dir.path(), SERVER_CRT, SERVER_KEY);
        let tls = ServingTls::load(cert_path, key_path, CA_CRT).unwrap();
        let (addr, stop, server) = start_server(&tls, delegated(Arc::default()));

        let path = format!("{QUEUED_PATH}?labelSelector=pool%3Dsmall");
        let proxy = Some((CLIENT_CRT, CLIENT_KEY));
        let (code, body) = https_get(addr, proxy, &path, &[("X-Remote-User", "alice")]).await;
        assert_eq!(code, 200, "{body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(values(&list, QUEUED_JOBS), pairs(&[("small", "3")]));

        // The same headers without the proxy's certificate prove nothing.
        let (code, body) = https_get(addr, None, &path, &[("X-Remote-User", "alice")]).await;
        assert_eq!(code, 401, "{body}");
        // Probes need no certificate.
        let (code, body) = https_get(addr, None, "/healthz", &[]).await;
        assert_eq!((code, body.as_str()), (200, "ok"));

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
