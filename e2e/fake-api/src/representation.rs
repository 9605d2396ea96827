//! How objects are written into responses: whole, or as the PartialObjectMetadata a client asks
//! for with `Accept: application/json;as=PartialObjectMetadata...` (kube's metadata API and
//! `metadata_watcher`).

use http::HeaderMap;
use serde_json::{Value, json};

use crate::route::ResourceType;

const METADATA_API_VERSION: &str = "meta.k8s.io/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Representation {
    Whole,
    MetadataOnly,
}

impl Representation {
    pub(crate) fn requested(headers: &HeaderMap) -> Self {
        let wants_metadata = headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|accept| accept.to_str().ok())
            .any(|accept| accept.contains("as=PartialObjectMetadata"));
        if wants_metadata {
            Self::MetadataOnly
        } else {
            Self::Whole
        }
    }

    pub(crate) fn object(self, object: &Value) -> Value {
        match self {
            Self::Whole => object.clone(),
            Self::MetadataOnly => json!({
                "apiVersion": METADATA_API_VERSION,
                "kind": "PartialObjectMetadata",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        }
    }

    /// A list response; `kind` is the items' kind when the collection has had any object.
    pub(crate) fn list(
        self,
        resource: &ResourceType,
        kind: Option<&str>,
        resource_version: u64,
        items: impl IntoIterator<Item = Value>,
    ) -> Value {
        let (api_version, kind) = match self {
            Self::Whole => (
                resource.api_version.as_str(),
                kind.map_or_else(|| "List".to_owned(), |kind| format!("{kind}List")),
            ),
            Self::MetadataOnly => (METADATA_API_VERSION, "PartialObjectMetadataList".to_owned()),
        };
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": resource_version.to_string()},
            "items": items.into_iter().map(|item| self.object(&item)).collect::<Vec<_>>(),
        })
    }

    /// The object of a BOOKMARK watch event: only a resource version, and the annotation that
    /// ends the initial events of a streaming list.
    pub(crate) fn bookmark(
        self,
        resource: &ResourceType,
        kind: Option<&str>,
        resource_version: u64,
    ) -> Value {
        let (api_version, kind) = match self {
            Self::Whole => (resource.api_version.as_str(), kind.unwrap_or_default()),
            Self::MetadataOnly => (METADATA_API_VERSION, "PartialObjectMetadata"),
        };
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "resourceVersion": resource_version.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        })
    }
}
