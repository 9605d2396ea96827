//! Properties of the generated CRDs that the API server and `kubectl` rely on.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;
use zkfleet_crds::crdgen;
use zkfleet_crds::v1alpha1::SPEC_IMMUTABLE_MESSAGE;

fn crd(name: &str) -> CustomResourceDefinition {
    crdgen::crds()
        .into_iter()
        .find(|crd| crd.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

fn pool() -> CustomResourceDefinition {
    crd("proverpools.zkfleet.dev")
}

fn job() -> CustomResourceDefinition {
    crd("proofjobs.zkfleet.dev")
}

fn version(crd: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
    assert_eq!(crd.spec.versions.len(), 1);
    &crd.spec.versions[0]
}

fn schema(crd: &CustomResourceDefinition) -> Value {
    let schema = version(crd)
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref();
    serde_json::to_value(schema.unwrap()).unwrap()
}

/// Every schema node in the tree, with its path (`spec.parameters.files[]`).
fn nodes(schema: &Value) -> Vec<(String, Value)> {
    fn walk(path: String, node: &Value, out: &mut Vec<(String, Value)>) {
        out.push((path.clone(), node.clone()));
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(child_path, child, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(format!("{path}[]"), items, out);
        }
        if let Some(additional) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(format!("{path}{{}}"), additional, out);
        }
    }
    let mut out = Vec::new();
    walk(String::new(), schema, &mut out);
    out
}

/// Every (path, rule, message) of the CEL rules in a schema.
fn rules(schema: &Value) -> Vec<(String, String, Option<String>)> {
    nodes(schema)
        .into_iter()
        .flat_map(|(path, node)| {
            node.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |rule| {
                    (
                        path.clone(),
                        rule["rule"].as_str().unwrap().to_string(),
                        rule.get("message")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    )
                })
        })
        .collect()
}

fn node_at(schema: &Value, json_path: &str) -> Option<Value> {
    let mut node = schema.clone();
    for part in json_path.trim_start_matches('.').split('.') {
        node = node.get("properties")?.get(part)?.clone();
    }
    Some(node)
}

#[test]
fn both_kinds_are_namespaced_zkfleet_resources() {
    for (crd, kind, short) in [(pool(), "ProverPool", "pp"), (job(), "ProofJob", "pj")] {
        assert_eq!(crd.spec.group, "zkfleet.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["zkfleet".to_string()][..])
        );
        let version = version(&crd);
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let subresources = version.subresources.as_ref().unwrap();
        assert!(
            subresources.status.is_some(),
            "{kind} has a status subresource"
        );
    }
}

#[test]
fn pool_has_the_scale_subresource() {
    let pool = pool();
    let scale = version(&pool)
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );

    let schema = schema(&pool);
    assert_eq!(
        node_at(&schema, ".spec.replicas").unwrap()["type"],
        "integer"
    );
    assert_eq!(
        node_at(&schema, ".status.replicas").unwrap()["type"],
        "integer"
    );
    assert_eq!(
        node_at(&schema, ".status.selector").unwrap()["type"],
        "string"
    );
    assert!(
        version(&job())
            .subresources
            .as_ref()
            .unwrap()
            .scale
            .is_none()
    );
}

#[test]
fn printer_columns_name_existing_fields() {
    for (crd, expected) in [
        (
            pool(),
            vec![
                "Backend",
                "Replicas",
                "Ready",
                "Parameters",
                "Queued",
                "Age",
            ],
        ),
        (
            job(),
            vec![
                "Pool",
                "Phase",
                "Attempts",
                "Proving ms",
                "Verified",
                "Cost",
                "Age",
            ],
        ),
    ] {
        let schema = schema(&crd);
        let columns = version(&crd).additional_printer_columns.clone().unwrap();
        let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, expected);
        for column in columns {
            if column.json_path == ".metadata.creationTimestamp" {
                assert_eq!(column.type_, "date");
                continue;
            }
            let node = node_at(&schema, &column.json_path)
                .unwrap_or_else(|| panic!("column {} points at {}", column.name, column.json_path));
            assert_eq!(node["type"], column.type_, "type of column {}", column.name);
        }
    }
}

#[test]
fn schemas_are_structural() {
    for crd in [pool(), job()] {
        for (path, node) in nodes(&schema(&crd)) {
            for forbidden in [
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "$ref",
                "definitions",
                "$defs",
            ] {
                assert!(node.get(forbidden).is_none(), "{path} uses {forbidden}");
            }
            let free_form = node.get("x-kubernetes-int-or-string").is_some()
                || node.get("x-kubernetes-preserve-unknown-fields").is_some();
            assert!(
                node.get("type").is_some() || free_form,
                "{path} has no type: {node}"
            );
            if node["type"] == "object" && !free_form {
                assert!(
                    node.get("properties").is_some() || node.get("additionalProperties").is_some(),
                    "{path} is an object without properties"
                );
            }
            if node.get("enum").is_some() {
                assert_eq!(node["type"], "string", "{path} enum");
            }
        }
    }
}

#[test]
fn every_field_has_a_description() {
    for crd in [pool(), job()] {
        for (path, node) in nodes(&schema(&crd)) {
            let is_field = !path.is_empty() && !path.ends_with("[]") && !path.ends_with("{}");
            if !is_field || path == "apiVersion" || path == "kind" || path == "metadata" {
                continue;
            }
            let description = node
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            assert!(!description.trim().is_empty(), "{path} has no description");
            assert!(!description.contains("\n\n\n"), "{path} description");
        }
    }
}

#[test]
fn every_cel_rule_has_a_message() {
    for crd in [pool(), job()] {
        let rules = rules(&schema(&crd));
        assert!(!rules.is_empty());
        for (path, rule, message) in rules {
            let message = message.unwrap_or_else(|| panic!("rule {rule} at {path} has no message"));
            assert!(
                message.len() > 20,
                "message of {rule} at {path} is too terse"
            );
        }
    }
}

fn has_rule(crd: &CustomResourceDefinition, at: &str, rule_part: &str, message_part: &str) {
    let rules = rules(&schema(crd));
    assert!(
        rules.iter().any(|(path, rule, message)| path == at
            && rule.contains(rule_part)
            && message.as_deref().unwrap_or("").contains(message_part)),
        "no rule like {rule_part:?} at {at}: {rules:#?}"
    );
}

#[test]
fn job_spec_is_immutable() {
    has_rule(&job(), "spec", "self == oldSelf", SPEC_IMMUTABLE_MESSAGE);
}

#[test]
fn job_rules_are_present() {
    let job = job();
    has_rule(
        &job,
        "spec.input",
        "has(self.secretKeyRef)",
        "exactly one of inline",
    );
    has_rule(
        &job,
        "spec.input",
        "has(self.sha256)",
        "input.sha256 is required",
    );
    has_rule(
        &job,
        "spec.input.inline",
        "has(self.base64)",
        "exactly one of json or base64",
    );
    has_rule(&job, "spec.input.sha256", "[0-9a-f]{64}", "64 lowercase");
    has_rule(&job, "spec.poolRef.name", "size() > 0", "poolRef.name");
}

#[test]
fn pool_rules_are_present() {
    let pool = pool();
    has_rule(
        &pool,
        "spec.parameters.source",
        "has(self.pvc)",
        "exactly one of url",
    );
    has_rule(
        &pool,
        "spec.parameters.files[].sha256",
        "[0-9a-f]{64}",
        "64 lowercase",
    );
    has_rule(
        &pool,
        "spec.autoscaling",
        "self.minReplicas <= self.maxReplicas",
        "minReplicas",
    );
    has_rule(&pool, "spec.backend", "has(self.exec)", "backend.exec");
}

#[test]
fn numeric_bounds_are_in_the_schema() {
    let pool = schema(&pool());
    let job = schema(&job());
    for (schema, path, min, max) in [
        (&pool, ".spec.slotsPerReplica", 1.0, 64.0),
        (&pool, ".spec.gpu.count", 0.0, 16.0),
        (&pool, ".spec.jobDefaults.timeoutSeconds", 1.0, 86400.0),
        (&pool, ".spec.jobDefaults.maxRetries", 0.0, 10.0),
        (&pool, ".spec.backend.exec.timeoutSeconds", 1.0, 86400.0),
        (&pool, ".spec.autoscaling.minReplicas", 0.0, 1000.0),
        (&job, ".spec.timeoutSeconds", 1.0, 86400.0),
        (&job, ".spec.maxRetries", 0.0, 10.0),
        (&job, ".spec.ttlSecondsAfterFinished", 0.0, 2_592_000.0),
    ] {
        let node = node_at(schema, path).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(node["minimum"].as_f64(), Some(min), "{path} minimum");
        assert_eq!(node["maximum"].as_f64(), Some(max), "{path} maximum");
    }
}

#[test]
fn conditions_merge_by_type() {
    for crd in [pool(), job()] {
        let conditions = node_at(&schema(&crd), ".status.conditions").unwrap();
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let required = &conditions["items"]["required"];
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(
                required.as_array().unwrap().iter().any(|f| f == field),
                "{field}"
            );
        }
    }
}

#[test]
fn strings_checked_by_cel_are_bounded() {
    // The API server estimates the cost of each rule from the largest value it can see; an
    // unbounded string or list under a rule can make it refuse the whole CRD.
    for crd in [pool(), job()] {
        let schema = schema(&crd);
        for (path, rule, _) in rules(&schema) {
            if !rule.contains("matches(") && !rule.contains("size()") {
                continue;
            }
            let node = nodes(&schema)
                .into_iter()
                .find(|(p, _)| *p == path)
                .unwrap()
                .1;
            assert!(
                node.get("maxLength").is_some(),
                "{path} ({rule}) needs maxLength"
            );
        }
    }
}
