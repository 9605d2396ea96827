//! Hand-written schema fragments for fields whose derived schema is not what the API server
//! should enforce (checksums, merge-keyed condition lists, free-form JSON).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, generate::SchemaGenerator, json_schema};

/// Message shown by the API server for a malformed checksum.
pub(crate) const SHA256_MESSAGE: &str =
    "sha256 must be 64 lowercase hexadecimal characters, as printed by `sha256sum`";

/// A SHA-256 digest in lowercase hex. `maxLength` bounds the CEL cost estimate; the rule carries
/// the message, because a bare `pattern` failure does not tell the user what a digest looks like.
pub(crate) fn sha256(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 64,
        "x-kubernetes-validations": [{
            "rule": "self.matches('^[0-9a-f]{64}$')",
            "message": SHA256_MESSAGE,
        }],
    })
}

/// `metav1.Condition` list, merged by `type` under server-side apply.
pub(crate) fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema.insert("maxItems".into(), 16.into());
    schema
}

/// An arbitrary JSON object kept verbatim (a snarkjs `proof.json`).
pub(crate) fn json_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Removes a type's own description, so that the field's doc comment describes an optional
/// enum field. (The optional-enum rewrite otherwise replaces the field's description with the
/// type's.)
pub(crate) fn drop_description(schema: &mut Schema) {
    schema.remove("description");
}
