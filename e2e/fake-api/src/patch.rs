//! The patch formats a PATCH request can carry, each applied to a whole stored object. Strategic
//! merge and server-side apply are read as JSON merge patches: close enough for a controller
//! that applies the objects it owns, not for field ownership.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchFormat {
    /// RFC 6902, `application/json-patch+json`.
    Json,
    /// RFC 7386, `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`, read as a merge patch: lists are replaced, not
    /// merged by key.
    StrategicMerge,
    /// Server-side apply, `application/apply-patch+yaml`, read as a merge patch that creates
    /// the object when it is absent. Only JSON bodies (valid YAML, and what kube sends).
    Apply,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PatchError {
    #[error("the body of the request was in an unknown format: {0:?}")]
    UnsupportedContentType(String),
    #[error("the patch could not be decoded as JSON: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("a {0:?} patch must be a JSON object")]
    NotAnObject(PatchFormat),
    #[error("the JSON patch could not be applied: {0}")]
    Refused(#[source] json_patch::PatchError),
}

impl PatchFormat {
    pub(crate) fn from_content_type(content_type: &str) -> Result<Self, PatchError> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        match media_type {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(PatchError::UnsupportedContentType(content_type.to_owned())),
        }
    }

    /// The patch body as a JSON value, checked for the shape this format needs.
    pub(crate) fn read(self, body: &[u8]) -> Result<Value, PatchError> {
        let patch: Value = serde_json::from_slice(body).map_err(PatchError::Malformed)?;
        if self != Self::Json && !patch.is_object() {
            return Err(PatchError::NotAnObject(self));
        }
        Ok(patch)
    }

    /// `object` with `patch` applied; `object` is left as it was when the patch is refused (a
    /// failed `test` operation, a path that does not exist).
    pub(crate) fn apply(self, object: &Value, patch: &Value) -> Result<Value, PatchError> {
        let mut patched = object.clone();
        match self {
            Self::Json => {
                let operations: json_patch::Patch =
                    serde_json::from_value(patch.clone()).map_err(PatchError::Malformed)?;
                json_patch::patch(&mut patched, &operations).map_err(PatchError::Refused)?;
            }
            Self::Merge | Self::StrategicMerge | Self::Apply => {
                json_patch::merge(&mut patched, patch)
            }
        }
        Ok(patched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_content_types_with_parameters() {
        let format = PatchFormat::from_content_type("application/merge-patch+json; charset=utf-8");
        assert_eq!(format.ok(), Some(PatchFormat::Merge));
        assert!(PatchFormat::from_content_type("application/json").is_err());
    }

    #[test]
    fn merge_patch_removes_nulls_and_keeps_the_rest() {
        let object = json!({"data": {"a": "1", "b": "2"}});
        let patch = PatchFormat::Merge
            .read(br#"{"data": {"a": null, "c": "3"}}"#)
            .expect("reads");
        let patched = PatchFormat::Merge.apply(&object, &patch).expect("applies");
        assert_eq!(patched, json!({"data": {"b": "2", "c": "3"}}));
    }

    #[test]
    fn json_patch_with_failing_test_is_refused() {
        let object = json!({"data": {"a": "1"}});
        let patch = PatchFormat::Json
            .read(br#"[{"op": "test", "path": "/data/a", "value": "2"}, {"op": "remove", "path": "/data/a"}]"#)
            .expect("reads");
        assert!(matches!(
            PatchFormat::Json.apply(&object, &patch),
            Err(PatchError::Refused(_))
        ));
    }
}
