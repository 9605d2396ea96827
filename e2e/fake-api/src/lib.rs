//! An in-memory Kubernetes API server at the HTTP level, for testing code that takes a
//! `kube::Client` without a cluster: status writes, conflicts, slow or failing writes, watches.
//!
//! [`FakeApi::client`] hands out a real `kube::Client` whose requests are answered in-process
//! (as kube-rs's controller-rs tests do with a mocked tower service, but stateful), so the code
//! under test and kube's own request building, error parsing and `watcher` are all exercised.
//! The real cluster stays the judge of behaviour: this covers what a controller leans on, not
//! all of Kubernetes.
//!
//! # What it emulates
//!
//! - Paths of the core group (`/api/v1/...`) and named groups (`/apis/{group}/{version}/...`),
//!   namespaced, all-namespaces and cluster-scoped; objects of any kind, stored as JSON. No
//!   discovery, and no check that a kind or a namespace exists.
//! - One resource version counter bumped on every write; `uid`, `creationTimestamp` and
//!   `generation` assigned on create (`generateName` too); `generation` bumped when anything
//!   but metadata and status changes; a write that changes nothing gets no new version.
//! - GET; LIST with `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (..)`,
//!   `k notin (..)`) and `fieldSelector` on `metadata.name` / `metadata.namespace`.
//! - POST (409 AlreadyExists); PUT (409 Conflict on a stale `resourceVersion`); PATCH as JSON
//!   patch (a failed `test` is 422 Invalid), merge patch, strategic merge patch (as a merge
//!   patch) and server-side apply (as a merge patch that creates the object); a patch that
//!   sets another `resourceVersion` is 409. Every kind behaves as if it had a status
//!   subresource: `/status` writes change only `.status`, other writes never change it, and a
//!   create through the API drops it.
//! - DELETE: objects with finalizers get a `deletionTimestamp` and stay until an update
//!   empties their finalizers; others go at once (answered with a `Status`). DeleteOptions
//!   preconditions (uid, resourceVersion) are checked. DELETE on a collection deletes what its
//!   selectors match.
//! - WATCH from a resource version (replayed from the last 4096 changes; older is a 410 ERROR
//!   event), from "0"/none (current objects first), or as a streaming list
//!   (`sendInitialEvents`, ended by a BOOKMARK); label selectors turn objects entering or
//!   leaving them into ADDED/DELETED; `timeoutSeconds` ends the stream. Enough for
//!   `kube::runtime::watcher` and `reflector`, both list-watch and streaming lists.
//! - Metadata-only reads (`Accept: ...;as=PartialObjectMetadata`), for kube's metadata API.
//! - Errors as Kubernetes `Status` bodies, which kube reads into `kube::Error::Api`.
//!
//! # What it does not
//!
//! Field ownership and conflicts of server-side apply (fields an apply leaves out are kept, not
//! removed), list merging by key in strategic merge patches, `limit`/`continue` paging (a list
//! returns everything), `resourceVersion` semantics on GET and LIST (always the latest),
//! periodic watch bookmarks, the refusal of updates without a `resourceVersion` (the API
//! server refuses them for custom resources; this fake accepts them for every kind), admission, validation against schemas, defaulting, `dryRun`,
//! propagation policies and garbage collection by owner references, graceful pod deletion,
//! namespace lifecycle, and any subresource but `status`.
//!
//! ```
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! use zkfleet_fake_api::{FakeApi, Rule};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kube::Error> {
//! let fake = FakeApi::new();
//! let configmaps: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
//! let mut map = ConfigMap::default();
//! map.metadata.name = Some("settings".into());
//! configmaps.create(&PostParams::default(), &map).await?;
//!
//! fake.fail(Rule::new("GET", "/configmaps/settings"), 503, 1);
//! let refused = configmaps.get("settings").await;
//! assert!(matches!(refused, Err(kube::Error::Api(status)) if status.code == 503));
//! assert!(configmaps.get("settings").await.is_ok());
//! # Ok(())
//! # }
//! ```

mod fault;
mod patch;
mod representation;
mod route;
mod selector;
mod server;
mod store;
mod watch;

use std::sync::Arc;

use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use fault::{Gate, Rule};
pub use server::Recorded;

use route::ResourceType;
use server::Shared;
use store::{ObjectKey, Origin};

/// The namespace of the clients this fake hands out, and of objects created without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// An in-memory API server. Clones share the same objects, faults and request log.
#[derive(Clone, Default)]
pub struct FakeApi {
    shared: Arc<Shared>,
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose requests this fake answers in-process; its default namespace is
    /// [`DEFAULT_NAMESPACE`]. Every client shares this fake's state.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime: the client's request buffer is a spawned task.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(server::router(Arc::clone(&self.shared)), DEFAULT_NAMESPACE)
    }

    /// Stores an object as if it had been created through the API, and returns the stored copy.
    ///
    /// Assigns `metadata.uid`, `resourceVersion`, `creationTimestamp` and `generation` (1)
    /// where the object has none, and takes the namespace [`DEFAULT_NAMESPACE`] when it names
    /// none. Unlike a create through the API, `.status` and a `deletionTimestamp` are kept, so a
    /// test can seed an object in any state. Watches see it as ADDED.
    ///
    /// # Panics
    ///
    /// If an object of that kind, namespace and name exists, or the object has neither a name
    /// nor a `generateName`: fixtures that cannot be set up are a broken test.
    pub fn create<K>(&self, object: &K) -> K
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Serialize
            + DeserializeOwned,
    {
        let resource = resource_type::<K>();
        let namespace = object
            .meta()
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE);
        let mut value = to_json(object);
        if let Some(fields) = value.as_object_mut() {
            fields
                .entry("apiVersion")
                .or_insert_with(|| Value::from(resource.api_version.clone()));
            fields
                .entry("kind")
                .or_insert_with(|| Value::from(K::kind(&()).into_owned()));
        }
        let stored = self
            .shared
            .store()
            .create(&resource, namespace, value, Origin::Seed)
            .unwrap_or_else(|error| panic!("FakeApi::create: {error}"));
        from_json(stored)
    }

    /// The stored object, as a GET would return it, or `None` if there is none.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned,
    {
        let key = ObjectKey {
            resource: resource_type::<K>(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let stored = self.shared.store().get(&key).ok().cloned()?;
        Some(from_json(stored))
    }

    /// Every request answered so far, in the order they were answered (a held request is
    /// recorded when it is let through and answered).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.answered().clone()
    }

    /// Holds every request matching `rule`, before it is served, until the returned gate is
    /// opened (or dropped): an API server that is slow to answer. A held write has not been
    /// applied, so a test can act, or check what the code under test does, meanwhile;
    /// [`Gate::reached`] tells when a request is being held.
    pub fn hold(&self, rule: Rule) -> Gate {
        self.shared.faults().hold(rule)
    }

    /// Answers the next `times` requests matching `rule` with `code` and a Kubernetes `Status`
    /// body (reason `Conflict` for 409, `NotFound` for 404, `InternalError` for 500, ...),
    /// without serving them. Rules added earlier are used up first.
    ///
    /// # Panics
    ///
    /// If `code` is not an HTTP error status (400 to 599).
    pub fn fail(&self, rule: Rule, code: u16, times: usize) {
        let status = http::StatusCode::from_u16(code)
            .ok()
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or_else(|| panic!("FakeApi::fail: {code} is not an HTTP error status"));
        self.shared.faults().fail(rule, status, times);
    }
}

fn resource_type<K: Resource<DynamicType = ()>>() -> ResourceType {
    ResourceType {
        api_version: K::api_version(&()).into_owned(),
        plural: K::plural(&()).into_owned(),
    }
}

fn to_json<K: Serialize>(object: &K) -> Value {
    serde_json::to_value(object)
        .unwrap_or_else(|error| panic!("FakeApi: the object does not serialize to JSON: {error}"))
}

fn from_json<K: DeserializeOwned>(stored: Value) -> K {
    serde_json::from_value(stored)
        .unwrap_or_else(|error| panic!("FakeApi: the stored object does not read back: {error}"))
}
