//! The objects the fake holds and the rules for writing them, as the API server applies them:
//! one resource version counter, conflicts on stale versions, `.status` written only through
//! the status subresource, deletion held by finalizers, and a bounded history of the changes
//! that watches replay.

use std::collections::{BTreeMap, HashMap, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::patch::{PatchError, PatchFormat};
use crate::route::ResourceType;
use crate::selector::Selector;

/// Changes kept for watches that resume from an older resource version; a watch from before
/// the oldest kept change is answered 410 Expired, as by a real API server after compaction.
const HISTORY_LIMIT: usize = 4096;

/// Metadata only the server writes: an update's values for these are ignored.
const SERVER_OWNED_METADATA: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Where one object is stored. Cluster-scoped objects have the namespace `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub(crate) resource: ResourceType,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches replay it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) resource_version: u64,
    pub(crate) change_type: ChangeType,
    pub(crate) key: ObjectKey,
    /// The object after the write; for a deletion, its last state at the deletion's version.
    pub(crate) object: Value,
    /// The object before the write, so that a watch with a label selector can tell an object
    /// that stopped matching (DELETED for that watch) from one that never did.
    pub(crate) previous: Option<Value>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Everything but `.status`, as for a resource with a status subresource.
    Main,
    /// Only `.status`.
    Status,
}

/// Who creates an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A POST or an apply: the server assigns every server-owned field and drops `.status`.
    Api,
    /// A test seeding the store: server-owned fields it set are kept, and so is `.status`.
    Seed,
}

/// What a DELETE did.
#[derive(Debug)]
pub(crate) enum Deletion {
    /// Finalizers hold the object: it now has a deletionTimestamp.
    Pending(Value),
    /// The object is gone; its last state.
    Removed(Value),
}

/// The `preconditions` of a DeleteOptions body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{plural} \"{name}\" not found")]
    NotFound { plural: String, name: String },
    #[error("{plural} \"{name}\" already exists")]
    AlreadyExists { plural: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    )]
    Conflict { plural: String, name: String },
    #[error("Operation cannot be fulfilled on {plural} \"{name}\": precondition failed: {detail}")]
    PreconditionFailed {
        plural: String,
        name: String,
        detail: String,
    },
    #[error(
        "the {field} of the object ({in_body}) does not match the {field} on the URL ({in_path})"
    )]
    Mismatch {
        field: &'static str,
        in_body: String,
        in_path: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error("too old resource version: {requested} (the oldest change kept is after {oldest})")]
    Expired { requested: u64, oldest: u64 },
}

impl StoreError {
    /// The object the error is about, for the `details` of a Status: (name, plural).
    pub(crate) fn subject(&self) -> Option<(&str, &str)> {
        match self {
            Self::NotFound { plural, name }
            | Self::AlreadyExists { plural, name }
            | Self::Conflict { plural, name }
            | Self::PreconditionFailed { plural, name, .. } => Some((name, plural)),
            _ => None,
        }
    }
}

pub(crate) struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    /// The kind of each collection, learnt from the objects written to it, to name lists.
    kinds: HashMap<ResourceType, String>,
    resource_version: u64,
    history: VecDeque<Change>,
    /// The resource version of the newest change dropped from `history`.
    forgotten_through: u64,
    names_generated: u64,
    uids_assigned: u64,
    /// The latest resource version, for watch streams to wait on.
    latest: watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            kinds: HashMap::new(),
            // Not 0: a list of an empty store hands out its version for a watch to start from,
            // and "0" asks a watch for the current objects instead of the changes after it.
            resource_version: 1,
            history: VecDeque::new(),
            forgotten_through: 0,
            names_generated: 0,
            uids_assigned: 0,
            latest: watch::Sender::new(1),
        }
    }
}

impl Store {
    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// A receiver that wakes on every write after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub(crate) fn kind(&self, resource: &ResourceType) -> Option<&str> {
        self.kinds.get(resource).map(String::as_str)
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Result<&Value, StoreError> {
        self.objects.get(key).ok_or_else(|| not_found(key))
    }

    /// Objects of a collection in one namespace (or all, for `None`), ordered by namespace and
    /// name as the API server lists them.
    pub(crate) fn list<'a>(
        &'a self,
        resource: &'a ResourceType,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |(key, _)| {
                key.resource == *resource && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, object)| object)
            .filter(|object| selector.matches(object))
    }

    /// Every change after `resource_version`, oldest first.
    pub(crate) fn changes_after(
        &self,
        resource_version: u64,
    ) -> Result<impl Iterator<Item = &Change>, StoreError> {
        if resource_version < self.forgotten_through {
            return Err(StoreError::Expired {
                requested: resource_version,
                oldest: self.forgotten_through,
            });
        }
        let first = self
            .history
            .partition_point(|change| change.resource_version <= resource_version);
        Ok(self.history.range(first..))
    }

    pub(crate) fn create(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        mut object: Value,
        origin: Origin,
    ) -> Result<Value, StoreError> {
        let kind = match object.get("kind").and_then(Value::as_str) {
            Some(kind) => kind.to_owned(),
            None => self
                .kinds
                .get(resource)
                .cloned()
                .ok_or_else(|| StoreError::Invalid("kind: Required value".into()))?,
        };
        let fields = object
            .as_object_mut()
            .ok_or_else(|| StoreError::Invalid("the object must be a JSON object".into()))?;
        fields
            .entry("apiVersion")
            .or_insert_with(|| Value::from(resource.api_version.clone()));
        fields.insert("kind".into(), Value::from(kind.clone()));
        if origin == Origin::Api {
            // As for a resource with a status subresource: status is written through it only.
            fields.remove("status");
        }
        let metadata = fields
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| StoreError::Invalid("metadata must be a JSON object".into()))?;

        if let Some(in_body) = non_empty_str(metadata, "namespace")
            && in_body != namespace
        {
            return Err(StoreError::Mismatch {
                field: "namespace",
                in_body: in_body.to_owned(),
                in_path: namespace.to_owned(),
            });
        }
        if namespace.is_empty() {
            metadata.remove("namespace");
        } else {
            metadata.insert("namespace".into(), Value::from(namespace));
        }
        let name = match non_empty_str(metadata, "name") {
            Some(name) => name.to_owned(),
            None => {
                let prefix = non_empty_str(metadata, "generateName")
                    .ok_or_else(|| {
                        StoreError::Invalid(
                            "metadata.name: Required value: name or generateName is required"
                                .into(),
                        )
                    })?
                    .to_owned();
                self.generate_name(resource, namespace, &prefix)
            }
        };
        metadata.insert("name".into(), Value::from(name.clone()));

        let key = ObjectKey {
            resource: resource.clone(),
            namespace: namespace.to_owned(),
            name,
        };
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                plural: resource.plural.clone(),
                name: key.name,
            });
        }

        self.uids_assigned += 1;
        let assigned = [
            (
                "uid",
                Value::from(format!(
                    "00000000-0000-4000-8000-{:012x}",
                    self.uids_assigned
                )),
            ),
            ("creationTimestamp", now()),
            ("generation", Value::from(1)),
        ];
        match origin {
            Origin::Api => {
                for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                    metadata.remove(field);
                }
                metadata.extend(assigned.map(|(field, value)| (field.to_owned(), value)));
            }
            Origin::Seed => {
                for (field, value) in assigned {
                    metadata.entry(field).or_insert(value);
                }
            }
        }
        self.kinds.insert(resource.clone(), kind);
        Ok(self.commit(key, ChangeType::Added, object, None))
    }

    /// A PUT: the whole object, or its status.
    pub(crate) fn replace(
        &mut self,
        key: &ObjectKey,
        object: Value,
        part: Part,
    ) -> Result<Value, StoreError> {
        let stored = self.get(key)?.clone();
        self.update(key, stored, object, part)
    }

    /// A PATCH; an apply to an absent object creates it.
    pub(crate) fn patch(
        &mut self,
        key: &ObjectKey,
        format: PatchFormat,
        patch: &Value,
        part: Part,
    ) -> Result<Value, StoreError> {
        let stored = match self.objects.get(key) {
            Some(stored) => stored.clone(),
            None if format == PatchFormat::Apply && part == Part::Main => {
                let mut object = patch.clone();
                if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata
                        .entry("name")
                        .or_insert_with(|| Value::from(key.name.clone()));
                }
                check_identity(key, &object)?;
                return self.create(&key.resource, &key.namespace, object, Origin::Api);
            }
            None => return Err(not_found(key)),
        };
        let candidate = format.apply(&stored, patch)?;
        self.update(key, stored, candidate, part)
    }

    pub(crate) fn delete(
        &mut self,
        key: &ObjectKey,
        preconditions: &Preconditions,
    ) -> Result<Deletion, StoreError> {
        let stored = self.get(key)?.clone();
        preconditions
            .check(&stored)
            .map_err(|detail| StoreError::PreconditionFailed {
                plural: key.resource.plural.clone(),
                name: key.name.clone(),
                detail,
            })?;
        if is_being_deleted(&stored) {
            return Ok(Deletion::Pending(stored));
        }
        if has_finalizers(&stored) {
            let mut marked = stored.clone();
            if let Some(metadata) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("deletionTimestamp".into(), now());
                metadata.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            }
            let marked = self.commit(key.clone(), ChangeType::Modified, marked, Some(stored));
            return Ok(Deletion::Pending(marked));
        }
        let last = stored.clone();
        Ok(Deletion::Removed(self.commit(
            key.clone(),
            ChangeType::Deleted,
            last,
            Some(stored),
        )))
    }

    /// Writes `candidate` (the object as the client wants it) over `stored`, keeping what the
    /// client may not change through `part`.
    fn update(
        &mut self,
        key: &ObjectKey,
        stored: Value,
        candidate: Value,
        part: Part,
    ) -> Result<Value, StoreError> {
        if !candidate.is_object() {
            return Err(StoreError::Invalid(
                "the object must be a JSON object".into(),
            ));
        }
        check_identity(key, &candidate)?;
        let stored_version = metadata_str(&stored, "resourceVersion");
        if let Some(wanted) = metadata_str(&candidate, "resourceVersion")
            && !wanted.is_empty()
            && Some(wanted) != stored_version
        {
            return Err(StoreError::Conflict {
                plural: key.resource.plural.clone(),
                name: key.name.clone(),
            });
        }

        let next = match part {
            Part::Status => {
                let mut next = stored.clone();
                set_or_remove(&mut next, "status", candidate.get("status").cloned());
                next
            }
            Part::Main => {
                let mut next = candidate;
                for field in ["apiVersion", "kind", "status"] {
                    set_or_remove(&mut next, field, stored.get(field).cloned());
                }
                let spec_changed =
                    without_metadata_and_status(&next) != without_metadata_and_status(&stored);
                let stored_metadata = stored.get("metadata").and_then(Value::as_object);
                let metadata = next
                    .as_object_mut()
                    .map(|fields| fields.entry("metadata").or_insert_with(|| json!({})))
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| StoreError::Invalid("metadata must be a JSON object".into()))?;
                for field in SERVER_OWNED_METADATA {
                    match stored_metadata.and_then(|stored| stored.get(field)) {
                        Some(value) => metadata.insert(field.to_owned(), value.clone()),
                        None => metadata.remove(field),
                    };
                }
                if spec_changed {
                    let generation = metadata.get("generation").and_then(Value::as_i64);
                    metadata.insert(
                        "generation".into(),
                        Value::from(generation.unwrap_or(0) + 1),
                    );
                }
                next
            }
        };

        // A write that changes nothing gets no new version and no watch event, as in Kubernetes.
        if next == stored {
            return Ok(stored);
        }
        let change_type = if is_being_deleted(&next) && !has_finalizers(&next) {
            ChangeType::Deleted
        } else {
            ChangeType::Modified
        };
        Ok(self.commit(key.clone(), change_type, next, Some(stored)))
    }

    /// Stores (or removes) an object under a new resource version and tells watches.
    fn commit(
        &mut self,
        key: ObjectKey,
        change_type: ChangeType,
        mut object: Value,
        previous: Option<Value>,
    ) -> Value {
        self.resource_version += 1;
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "resourceVersion".into(),
                Value::from(self.resource_version.to_string()),
            );
        }
        match change_type {
            ChangeType::Deleted => {
                self.objects.remove(&key);
            }
            ChangeType::Added | ChangeType::Modified => {
                self.objects.insert(key.clone(), object.clone());
            }
        }
        if self.history.len() == HISTORY_LIMIT
            && let Some(forgotten) = self.history.pop_front()
        {
            self.forgotten_through = forgotten.resource_version;
        }
        self.history.push_back(Change {
            resource_version: self.resource_version,
            change_type,
            key,
            object: object.clone(),
            previous,
        });
        self.latest.send_replace(self.resource_version);
        object
    }

    /// `prefix` and five characters, like the API server's names for `generateName`, but
    /// counted rather than random so tests see the same names on every run.
    fn generate_name(&mut self, resource: &ResourceType, namespace: &str, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        loop {
            self.names_generated += 1;
            let mut counter = self.names_generated;
            let suffix: String = (0..5)
                .map(|_| {
                    let character = ALPHABET[(counter % ALPHABET.len() as u64) as usize];
                    counter /= ALPHABET.len() as u64;
                    char::from(character)
                })
                .collect();
            let name = format!("{prefix}{suffix}");
            let key = ObjectKey {
                resource: resource.clone(),
                namespace: namespace.to_owned(),
                name: name.clone(),
            };
            if !self.objects.contains_key(&key) {
                return name;
            }
        }
    }
}

impl Preconditions {
    /// From a DeleteOptions body (`{"preconditions": {"uid": .., "resourceVersion": ..}}`).
    pub(crate) fn from_delete_options(options: &Value) -> Self {
        let field = |name: &str| {
            options
                .pointer(&format!("/preconditions/{name}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            uid: field("uid"),
            resource_version: field("resourceVersion"),
        }
    }

    fn check(&self, stored: &Value) -> Result<(), String> {
        let expectations = [
            ("UID", &self.uid, "uid"),
            ("ResourceVersion", &self.resource_version, "resourceVersion"),
        ];
        for (label, expected, field) in expectations {
            let found = metadata_str(stored, field).unwrap_or("");
            if let Some(expected) = expected
                && expected != found
            {
                return Err(format!(
                    "{label} in precondition: {expected}, {label} in object meta: {found}"
                ));
            }
        }
        Ok(())
    }
}

fn not_found(key: &ObjectKey) -> StoreError {
    StoreError::NotFound {
        plural: key.resource.plural.clone(),
        name: key.name.clone(),
    }
}

/// Refuses a body whose name or namespace differs from the path's.
fn check_identity(key: &ObjectKey, object: &Value) -> Result<(), StoreError> {
    let expected = [
        ("name", key.name.as_str()),
        ("namespace", key.namespace.as_str()),
    ];
    for (field, in_path) in expected {
        if let Some(in_body) = metadata_str(object, field)
            && !in_body.is_empty()
            && in_body != in_path
        {
            return Err(StoreError::Mismatch {
                field,
                in_body: in_body.to_owned(),
                in_path: in_path.to_owned(),
            });
        }
    }
    Ok(())
}

fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

fn non_empty_str<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    map.get(field)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(fields) = object.as_object_mut() {
        match value {
            Some(value) => fields.insert(field.to_owned(), value),
            None => fields.remove(field),
        };
    }
}

/// The part of an object whose changes bump `metadata.generation`: all but metadata and status.
fn without_metadata_and_status(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(fields) = rest.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    rest
}

fn is_being_deleted(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|stamp| !stamp.is_null())
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|finalizers| !finalizers.is_empty())
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}
