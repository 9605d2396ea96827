//! A job's input, read from where the spec says and checked: the operator reads ConfigMaps and
//! Secrets for the pods (which hold no Kubernetes credentials) and hands URLs on for the pod to
//! download and check.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use sha2::{Digest as _, Sha256};
use zkfleet_contract::lease::{self, FileContent, JobInput};
use zkfleet_crds::v1alpha1::{InputFile, InputFormat, InputSource, ProofJob};

use hex::encode as hex;

/// Label a Secret must carry, set to `"true"`, before ProofJobs may read it as input: whoever
/// may create ProofJobs in a namespace need not be allowed to read its Secrets, and must not
/// learn their contents, size or digest through a job.
pub const PROOF_INPUT_LABEL: &str = "zkfleet.dev/proof-input";

/// Largest input read from a ConfigMap or Secret (both are capped near 1 MiB by the API server;
/// this bounds what one lease carries).
pub const MAX_INPUT_BYTES: usize = 4 << 20;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input is missing or malformed: the job fails with `InvalidInput`.
    #[error("{0}")]
    Invalid(String),
    /// The API server could not be asked: try again later.
    #[error("reading the job's input: {0}")]
    Api(#[from] kube::Error),
}

/// Reads and checks the job's input.
pub async fn resolve(client: &Client, job: &ProofJob) -> Result<JobInput, InputError> {
    let namespace = job.namespace().unwrap_or_default();
    let input = &job.spec.input;
    if let Some(files) = &input.files {
        return resolve_files(client, &namespace, files).await;
    }
    let expected = input.sha256.as_deref();
    let source = input.source().ok_or_else(|| {
        InputError::Invalid(
            "input must set exactly one of inline, configMapKeyRef, secretKeyRef, url or files"
                .into(),
        )
    })?;
    match read(client, &namespace, source, "input").await? {
        Raw::Bytes(bytes, what) => decode(input.format, &bytes, expected, &what),
        Raw::Url(url) => Ok(JobInput::Url {
            url,
            sha256: expected.unwrap_or_default().to_string(),
            format: match input.format {
                InputFormat::CircuitInputs => lease::InputFormat::CircuitInputs,
                InputFormat::Witness => lease::InputFormat::Witness,
            },
        }),
    }
}

/// A job's named input files: read from the manifest, ConfigMaps and Secrets of its namespace
/// (and checked against their sha256 when given), or handed on as URLs for the pod to fetch.
async fn resolve_files(
    client: &Client,
    namespace: &str,
    files: &[InputFile],
) -> Result<JobInput, InputError> {
    let mut total = 0;
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let field = format!("input.files[{}]", file.name);
        let source = file.source().ok_or_else(|| {
            InputError::Invalid(format!(
                "{field} must set exactly one of inline, configMapKeyRef, secretKeyRef or url"
            ))
        })?;
        let content = match read(client, namespace, source, &field).await? {
            Raw::Url(url) => FileContent::Url {
                url,
                sha256: file.sha256.clone().unwrap_or_default(),
            },
            Raw::Bytes(bytes, what) => {
                total += bytes.len();
                if total > MAX_INPUT_BYTES {
                    return Err(InputError::Invalid(format!(
                        "the input files add up to more than the {MAX_INPUT_BYTES}-byte limit at {what}; serve the large ones from a url instead"
                    )));
                }
                check_sha256(
                    &bytes,
                    file.sha256.as_deref(),
                    &what,
                    &format!("{field}.sha256"),
                )?;
                FileContent::Inline {
                    base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
                }
            }
        };
        out.push(lease::InputFile {
            name: file.name.clone(),
            content,
        });
    }
    Ok(JobInput::Files { files: out })
}

/// Input bytes and where they came from (for messages), or a URL the pod fetches.
enum Raw {
    Bytes(Vec<u8>, String),
    Url(String),
}

/// Reads one source of the job's namespace. `field` is the spec field, for messages.
async fn read(
    client: &Client,
    namespace: &str,
    source: InputSource<'_>,
    field: &str,
) -> Result<Raw, InputError> {
    match source {
        InputSource::Inline(inline) => match (&inline.json, &inline.base64) {
            (Some(json), None) => Ok(Raw::Bytes(
                json.as_bytes().to_vec(),
                format!("{field}.inline.json"),
            )),
            (None, Some(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        InputError::Invalid(format!(
                            "{field}.inline.base64 is not standard base64 ({e}); encode the file with `base64 -w0`"
                        ))
                    })?;
                Ok(Raw::Bytes(bytes, format!("{field}.inline.base64")))
            }
            _ => Err(InputError::Invalid(format!(
                "{field}.inline must set exactly one of json or base64"
            ))),
        },
        InputSource::ConfigMapKey(key) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let what = format!("key {:?} of ConfigMap {}", key.key, key.name);
            let Some(cm) = api.get_opt(&key.name).await? else {
                return Err(InputError::Invalid(format!(
                    "ConfigMap {} does not exist in namespace {namespace}: create it or fix {field}.configMapKeyRef",
                    key.name
                )));
            };
            let bytes = crate::verifying_keys::config_map_file(&cm, &key.key).ok_or_else(|| {
                InputError::Invalid(format!(
                    "ConfigMap {} has no key {:?}: add it or fix {field}.configMapKeyRef.key",
                    key.name, key.key
                ))
            })?;
            Ok(Raw::Bytes(bytes, what))
        }
        InputSource::SecretKey(key) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let what = format!("key {:?} of Secret {}", key.key, key.name);
            // One refusal for a missing and an unlabelled Secret: a job must not tell its author
            // which Secrets exist.
            let secret = api
                .get_opt(&key.name)
                .await?
                .filter(|s| s.labels().get(PROOF_INPUT_LABEL).map(String::as_str) == Some("true"));
            let Some(secret) = secret else {
                return Err(InputError::Invalid(format!(
                    "no Secret {} labelled {PROOF_INPUT_LABEL}=true in namespace {namespace}: create it with that label (its owner's consent that ProofJobs read it) or fix {field}.secretKeyRef",
                    key.name
                )));
            };
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&key.key))
                .map(|b| b.0.clone())
                .ok_or_else(|| {
                    InputError::Invalid(format!(
                        "Secret {} has no key {:?}: add it or fix {field}.secretKeyRef.key",
                        key.name, key.key
                    ))
                })?;
            Ok(Raw::Bytes(bytes, what))
        }
        InputSource::Url(url) => Ok(Raw::Url(url.to_string())),
    }
}

/// Refuses bytes whose sha256 is not `expected` (when set), naming both digests but never the
/// bytes: inputs may be private.
fn check_sha256(
    bytes: &[u8],
    expected: Option<&str>,
    what: &str,
    field: &str,
) -> Result<(), InputError> {
    if let Some(expected) = expected {
        let actual = hex(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(InputError::Invalid(format!(
                "{field} is {expected} but the sha256 of {what} is {actual}; fix {field} or the input"
            )));
        }
    }
    Ok(())
}

/// Checks input bytes against the format and the optional sha256. `what` names where they came
/// from, for the message. Never includes the bytes themselves in an error: inputs may be
/// private.
pub fn decode(
    format: InputFormat,
    bytes: &[u8],
    expected_sha256: Option<&str>,
    what: &str,
) -> Result<JobInput, InputError> {
    let invalid = |m: String| Err(InputError::Invalid(m));
    if bytes.len() > MAX_INPUT_BYTES {
        return invalid(format!(
            "{what} is {} bytes, more than the {MAX_INPUT_BYTES}-byte limit; serve it from input.url instead",
            bytes.len()
        ));
    }
    check_sha256(bytes, expected_sha256, what, "input.sha256")?;
    match format {
        InputFormat::CircuitInputs => {
            let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                InputError::Invalid(format!(
                    "{what} is not JSON ({e}); circuit-inputs input is a JSON object of signal names to values"
                ))
            })?;
            if !value.is_object() {
                return invalid(format!(
                    "{what} must be a JSON object of signal names to values, like {{\"a\": \"3\"}}"
                ));
            }
            Ok(JobInput::CircuitInputs { inputs: value })
        }
        InputFormat::Witness => {
            if !bytes.starts_with(b"wtns") {
                return invalid(format!(
                    "{what} is not a .wtns witness (it does not start with \"wtns\"); send the file snarkjs wtns calculate writes, base64-encoded, or use format circuit-inputs"
                ));
            }
            Ok(JobInput::Witness {
                witness_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
        }
    }
}

/// The digest of an input for result reuse: HMAC-SHA-256 under `key` (the pool's dispatcher
/// token) of what the prover is given, as `hmac-sha256:<hex>`. Keyed, because the digest goes
/// on the job's status and a plain hash of a low-entropy private input could be reversed by
/// trying values.
///
/// `None` for an input any part of which is named by URL: the operator never reads that
/// content, so it only knows the sha256 the tenant *declared*. Keying reuse on it would hand
/// an earlier job's proof to anyone who knows the hash of its input, without the input.
pub fn digest(key: &[u8], input: &JobInput) -> Option<String> {
    use hmac::Mac as _;
    let canonical = match input {
        JobInput::Url { .. } => return None,
        JobInput::Files { files } => {
            let mut named = Vec::with_capacity(files.len());
            for f in files {
                match &f.content {
                    FileContent::Url { .. } => return None,
                    FileContent::Inline { base64 } => {
                        named.push(serde_json::json!({"name": f.name, "base64": base64}));
                    }
                }
            }
            serde_json::to_vec(&named)
        }
        // serde_json's maps are sorted, so the same signals give the same bytes.
        other => serde_json::to_vec(other),
    };
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&canonical.unwrap_or_default());
    Some(format!("hmac-sha256:{}", hex(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(r: Result<JobInput, InputError>) -> String {
        match r {
            Err(InputError::Invalid(m)) => m,
            other => panic!("expected an invalid input, got {other:?}"),
        }
    }

    #[test]
    fn circuit_inputs_must_be_a_json_object() {
        assert_eq!(
            decode(InputFormat::CircuitInputs, br#"{"a": "3"}"#, None, "x").unwrap(),
            JobInput::CircuitInputs {
                inputs: json!({"a": "3"})
            }
        );
        assert!(
            message(decode(InputFormat::CircuitInputs, b"{a:", None, "x")).contains("not JSON")
        );
        assert!(
            message(decode(InputFormat::CircuitInputs, b"[1]", None, "x"))
                .contains("must be a JSON object")
        );
    }

    #[test]
    fn witnesses_must_be_wtns_files() {
        let JobInput::Witness { witness_base64 } =
            decode(InputFormat::Witness, b"wtns\x02\0\0\0", None, "x").unwrap()
        else {
            panic!("a witness");
        };
        assert_eq!(witness_base64, "d3RucwIAAAA=");
        assert!(message(decode(InputFormat::Witness, b"{}", None, "x")).contains(".wtns"));
    }

    #[test]
    fn a_wrong_sha256_names_both_digests_but_not_the_input() {
        let m = message(decode(
            InputFormat::CircuitInputs,
            br#"{"secret": "42"}"#,
            Some(&"0".repeat(64)),
            "key \"in\" of Secret s",
        ));
        assert!(m.contains(&"0".repeat(64)) && m.contains("Secret s"), "{m}");
        assert!(!m.contains("42"), "inputs may be private: {m}");
        let right = hex(Sha256::digest(br#"{"a": "1"}"#));
        assert!(
            decode(
                InputFormat::CircuitInputs,
                br#"{"a": "1"}"#,
                Some(&right),
                "x"
            )
            .is_ok()
        );
    }

    #[test]
    fn oversized_inputs_point_to_url() {
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(message(decode(InputFormat::CircuitInputs, &big, None, "x")).contains("input.url"));
    }

    #[test]
    fn input_digests_are_keyed_and_follow_content_not_spelling() {
        let signals = |text: &str| JobInput::CircuitInputs {
            inputs: serde_json::from_str(text).unwrap(),
        };
        let a = digest(b"token-1", &signals(r#"{"a": "3", "b": "11"}"#)).unwrap();
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 64, "{a}");
        assert_eq!(
            Some(&a),
            digest(b"token-1", &signals(r#"{ "b":"11","a":"3" }"#)).as_ref(),
            "the same signals, spaced and ordered differently"
        );
        assert_ne!(
            Some(&a),
            digest(b"token-1", &signals(r#"{"a": "4", "b": "11"}"#)).as_ref()
        );
        assert_ne!(
            Some(&a),
            digest(b"token-2", &signals(r#"{"a": "3", "b": "11"}"#)).as_ref(),
            "another pool's key gives another digest"
        );
    }

    #[test]
    fn inputs_named_by_url_are_never_keyed_for_reuse() {
        // Their sha256 is only what the tenant declared: another tenant who knows the hash of
        // a job's input would otherwise get its proof without having the input.
        let url = JobInput::Url {
            url: "s3://a/w.wtns".into(),
            sha256: "ab".repeat(32),
            format: lease::InputFormat::Witness,
        };
        assert_eq!(digest(b"k", &url), None);
        let files: JobInput = serde_json::from_value(json!({"type": "files", "files": [
            {"name": "a.json", "content": {"type": "inline", "base64": "e30="}},
            {"name": "b.json", "content": {"type": "url", "url": "https://h/b.json", "sha256": "ab".repeat(32)}},
        ]}))
        .unwrap();
        assert_eq!(digest(b"k", &files), None, "one file by URL is enough");
    }
}
