//! The sample manifests fit the API types and schema; each deliberately bad manifest breaks
//! exactly one rule of the generated schema and names the API server's message for it.
//!
//! The CEL rules themselves are evaluated by the API server in the real-cluster tests; here the
//! OpenAPI part of the schema (required fields, bounds, enums, lengths) is checked directly, and a
//! bad manifest aimed at a CEL rule must quote that rule's message and be otherwise valid.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use zkfleet_crds::crdgen;
use zkfleet_crds::v1alpha1::{ProofJob, ProverPool, SPEC_IMMUTABLE_MESSAGE};

fn repo() -> PathBuf {
    // Read when the test runs, not baked in when it is compiled: a shared target directory can
    // hold this binary compiled in another checkout of the same sources.
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("..")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The `openAPIV3Schema` of the CRD serving `kind`.
fn schema_for(kind: &str) -> Value {
    let crd = crdgen::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .unwrap()
        .open_api_v3_schema
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

fn number(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// Checks `value` against the OpenAPI keywords the API server enforces, returning its error
/// messages in the API server's words. CEL rules are not evaluated.
fn openapi_errors(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    let at = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields").is_some() {
                return;
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !map.contains_key(name) {
                    errors.push(format!("{}: Required value", at(name)));
                }
            }
            for (name, child) in map {
                if path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue; // checked by the API server itself, not the CRD schema
                }
                match schema["properties"]
                    .get(name)
                    .or(schema.get("additionalProperties"))
                {
                    Some(child_schema) => openapi_errors(child, child_schema, &at(name), errors),
                    None => errors.push(format!("{}: field not declared in schema", at(name))),
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                errors.push(format!(
                    "{path}: Too many: {len}: must have at most {max} items"
                ));
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                errors.push(format!("{path} in body should have at least {min} items"));
            }
            for (i, item) in items.iter().enumerate() {
                openapi_errors(item, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap();
            if let Some(min) = schema.get("minimum")
                && n < min.as_f64().unwrap()
            {
                let min = number(min);
                errors.push(format!(
                    "{path} in body should be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema.get("maximum")
                && n > max.as_f64().unwrap()
            {
                let max = number(max);
                errors.push(format!(
                    "{path} in body should be less than or equal to {max}"
                ));
            }
        }
        Value::String(s) => {
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && (s.chars().count() as u64) < min
            {
                errors.push(format!(
                    "{path} in body should be at least {min} chars long"
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && s.len() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too long: may not be more than {max} bytes"
                ));
            }
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                && !allowed.iter().any(|a| a == value)
            {
                errors.push(format!("{path}: Unsupported value: {value}"));
            }
        }
        _ => {}
    }
}

fn schema_errors(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().expect("manifest has a kind");
    let mut errors = Vec::new();
    openapi_errors(doc, &schema_for(kind), "", &mut errors);
    errors
}

/// Messages of every CEL rule in the schema of `kind`.
fn cel_messages(kind: &str) -> Vec<String> {
    fn collect(node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(rules) = map
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                {
                    out.extend(
                        rules
                            .iter()
                            .filter_map(|r| r["message"].as_str().map(String::from)),
                    );
                }
                map.values().for_each(|child| collect(child, out));
            }
            Value::Array(items) => items.iter().for_each(|child| collect(child, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(&schema_for(kind), &mut out);
    out
}

/// Parses a manifest into the Rust type of its kind and back, checking nothing is lost.
fn round_trip(doc: &Value) {
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) {
        let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
        let again = serde_json::to_value(&typed).unwrap();
        for (section, value) in doc.as_object().unwrap() {
            if section == "spec" {
                // Defaults appear on the way back; every field that was written must survive.
                assert_subset(value, &again[section.as_str()], "spec");
            }
        }
    }
    match doc["kind"].as_str() {
        Some("ProverPool") => check::<ProverPool>(doc),
        Some("ProofJob") => check::<ProofJob>(doc),
        other => panic!("unexpected kind {other:?}"),
    }
}

fn assert_subset(written: &Value, read_back: &Value, path: &str) {
    match (written, read_back) {
        (Value::Object(w), Value::Object(r)) => {
            for (k, v) in w {
                let back = r.get(k).unwrap_or_else(|| panic!("{path}.{k} was dropped"));
                assert_subset(v, back, &format!("{path}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(r)) => {
            assert_eq!(w.len(), r.len(), "{path}");
            for (i, (a, b)) in w.iter().zip(r).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(written, read_back, "{path}"),
    }
}

#[test]
fn samples_parse_into_the_api_types_and_fit_the_schema() {
    let files = yaml_files("manifests/samples");
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "pool-cpu.yaml",
        "pool-gpu.yaml",
        "job-inline.yaml",
        "job-url.yaml",
        "pool-miden.yaml",
        "job-miden.yaml",
        "pool-stone.yaml",
        "job-stone.yaml",
        "pool-stwo.yaml",
        "job-stwo.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "manifests/samples/{expected} is missing"
        );
    }
    for file in files {
        for doc in documents(&file) {
            assert_eq!(
                doc["apiVersion"],
                "zkfleet.dev/v1alpha1",
                "{}",
                file.display()
            );
            round_trip(&doc);
            let errors = schema_errors(&doc);
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        }
    }
}

#[test]
fn gpu_sample_requests_one_nvidia_gpu() {
    let doc = documents(&repo().join("manifests/samples/pool-gpu.yaml")).remove(0);
    let pool: ProverPool = serde_json::from_value(doc).unwrap();
    let gpu = pool.spec.gpu.expect("gpu sample sets spec.gpu");
    assert_eq!(
        (gpu.count, gpu.resource_name.as_str()),
        (1, "nvidia.com/gpu")
    );
}

#[test]
fn job_samples_use_inline_and_url_inputs() {
    let inline: ProofJob = serde_json::from_value(
        documents(&repo().join("manifests/samples/job-inline.yaml")).remove(0),
    )
    .unwrap();
    let json = inline
        .spec
        .input
        .inline
        .and_then(|i| i.json)
        .expect("inline json input");
    serde_json::from_str::<Value>(&json).expect("inline input is valid JSON");

    let url: ProofJob =
        serde_json::from_value(documents(&repo().join("manifests/samples/job-url.yaml")).remove(0))
            .unwrap();
    assert!(url.spec.input.url.is_some() && url.spec.input.sha256.is_some());
}

struct Bad {
    file: PathBuf,
    expect: String,
    docs: Vec<Value>,
}

fn bad_manifests() -> Vec<Bad> {
    let files = yaml_files("manifests/bad");
    assert!(
        files.len() >= 10,
        "expected one bad manifest per validation rule"
    );
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().next().unwrap_or("");
            let expect = first
                .strip_prefix("# expect: ")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: first line must be `# expect: <message>`",
                        file.display()
                    )
                })
                .trim()
                .to_string();
            assert!(!expect.is_empty(), "{}: empty expectation", file.display());
            let docs = documents(&file);
            Bad { file, expect, docs }
        })
        .collect()
}

#[test]
fn each_bad_manifest_breaks_exactly_the_rule_it_names() {
    for bad in bad_manifests() {
        let name = bad.file.display();
        if bad.docs.len() > 1 {
            continue; // update scenarios, checked below
        }
        let doc = &bad.docs[0];
        let kind = doc["kind"].as_str().unwrap();
        // Bad values still parse into the Rust types: refusing them is the API server's job.
        round_trip(doc);

        let errors = schema_errors(doc);
        if errors.is_empty() {
            let messages = cel_messages(kind);
            assert!(
                messages.iter().any(|m| m.contains(&bad.expect)),
                "{name}: passes the OpenAPI checks, so `{}` must be the message of a CEL rule of {kind}; rules say {messages:#?}",
                bad.expect
            );
        } else {
            assert!(
                errors.iter().all(|e| e.contains(&bad.expect)),
                "{name}: expected only `{}`, schema says {errors:?}",
                bad.expect
            );
        }
    }
}

#[test]
fn bad_update_changes_only_a_submitted_job_spec() {
    let updates: Vec<_> = bad_manifests()
        .into_iter()
        .filter(|b| b.docs.len() > 1)
        .collect();
    assert!(
        !updates.is_empty(),
        "an update scenario for the immutable ProofJob spec"
    );
    for bad in updates {
        let [before, after] = &bad.docs[..] else {
            panic!("{}: two documents", bad.file.display())
        };
        assert!(
            SPEC_IMMUTABLE_MESSAGE.contains(&bad.expect),
            "{}",
            bad.file.display()
        );
        assert_eq!(before["kind"], "ProofJob");
        assert_eq!(before["metadata"], after["metadata"]);
        assert_ne!(before["spec"], after["spec"]);
        for doc in [before, after] {
            round_trip(doc);
            assert!(schema_errors(doc).is_empty());
        }
    }
}

#[test]
fn every_validation_rule_has_a_bad_manifest() {
    let expectations: Vec<_> = bad_manifests().into_iter().map(|b| b.expect).collect();
    for needle in [
        "input must set exactly one of",
        "parameters.source must set exactly one of",
        "sha256 must be 64 lowercase hexadecimal characters",
        "minReplicas must be less than or equal to",
        "slotsPerReplica in body should be greater than or equal to 1",
        "gpu.count in body should be greater than or equal to 0",
        "timeoutSeconds in body should be less than or equal to 86400",
        "maxRetries in body should be less than or equal to 10",
        "poolRef.name must name a ProverPool",
        "spec of a ProofJob cannot change",
    ] {
        assert!(
            expectations.iter().any(|e| e.contains(needle)),
            "no bad manifest expects {needle:?}"
        );
    }
}
