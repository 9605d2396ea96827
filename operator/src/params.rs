//! Identity of a parameters set: the content digest shown in status, the short fingerprint
//! pods are labelled with, and which sets a Deployment template serves during a rotation.

use k8s_openapi::api::apps::v1::Deployment;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zkfleet_crds::v1alpha1::{ParametersRevision, ParametersSpec};

/// Deployment annotation: the parameters the pod template was built from (JSON).
pub const SERVING_ANNOTATION: &str = "zkfleet.dev/parameters";
/// Deployment annotation: the parameters served before the current rotation (JSON), the
/// rollback target.
pub const PREVIOUS_ANNOTATION: &str = "zkfleet.dev/previous-parameters";
/// Deployment annotation: fingerprint of `spec.parameters` that was rolled back, so the same
/// broken set is not retried until the pool's parameters change again.
pub const ROLLED_BACK_ANNOTATION: &str = "zkfleet.dev/rolled-back-parameters";

/// Content digest of a parameters set, `sha256:<hex>` over the sorted file names and
/// checksums. Two sets with the same files have the same digest wherever they are fetched from.
pub fn digest(spec: &ParametersSpec) -> String {
    let mut files: Vec<_> = spec.files.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.name.as_bytes());
        hasher.update(b"\0");
        hasher.update(file.sha256.to_ascii_lowercase().as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Hex part of [`digest`], used as the node-local cache directory name.
pub fn digest_hex(spec: &ParametersSpec) -> String {
    digest(spec).trim_start_matches("sha256:").to_string()
}

/// Short stable hash of the whole `spec.parameters` (version, source and files), 16 hex
/// characters: a valid label value that changes whenever the pods must be rolled.
pub fn fingerprint(spec: &ParametersSpec) -> String {
    let mut canonical = spec.clone();
    canonical.files.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = serde_json::to_vec(&canonical).expect("ParametersSpec serializes");
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// The version and digest shown in `status.parameters`.
pub fn revision(spec: &ParametersSpec) -> ParametersRevision {
    ParametersRevision {
        version: spec.version.clone(),
        digest: digest(spec),
    }
}

/// Which parameters a Deployment template serves, and what it can go back to. Recorded on the
/// Deployment as annotations, so a restarted operator picks a rotation up where it was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Serving {
    /// Parameters the pod template is built from.
    pub target: ParametersSpec,
    /// Parameters served before the current rotation; the rollback target.
    pub previous: Option<ParametersSpec>,
    /// Fingerprint of the `spec.parameters` that did not become ready and was rolled back.
    pub rolled_back: Option<String>,
}

impl Serving {
    /// A pool's first template: its own parameters, nothing to go back to.
    pub fn fresh(target: &ParametersSpec) -> Self {
        Self {
            target: target.clone(),
            previous: None,
            rolled_back: None,
        }
    }

    /// What an existing Deployment serves, from its annotations. `None` when the annotations
    /// are missing or unreadable (a Deployment this operator did not finish writing).
    pub fn observed(deployment: &Deployment) -> Option<Self> {
        let annotations = deployment.metadata.annotations.as_ref()?;
        let parse = |key: &str| {
            annotations
                .get(key)
                .and_then(|json| serde_json::from_str::<ParametersSpec>(json).ok())
        };
        Some(Self {
            target: parse(SERVING_ANNOTATION)?,
            previous: parse(PREVIOUS_ANNOTATION),
            rolled_back: annotations.get(ROLLED_BACK_ANNOTATION).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfleet_crds::v1alpha1::{ParameterFile, ParametersSource};

    fn spec(version: &str, files: &[(&str, char)]) -> ParametersSpec {
        ParametersSpec {
            version: version.into(),
            source: ParametersSource {
                url: Some("https://params.example/v1".into()),
                ..ParametersSource::default()
            },
            files: files
                .iter()
                .map(|(name, c)| ParameterFile {
                    name: (*name).into(),
                    sha256: c.to_string().repeat(64),
                })
                .collect(),
        }
    }

    #[test]
    fn digest_ignores_file_order_version_and_source() {
        let a = spec("v1", &[("circuit.zkey", 'a'), ("circuit.wasm", 'b')]);
        let mut b = spec("v2", &[("circuit.wasm", 'b'), ("circuit.zkey", 'a')]);
        b.source.url = Some("s3://elsewhere/v1".into());
        assert_eq!(digest(&a), digest(&b));
        assert!(digest(&a).starts_with("sha256:"));
        assert_eq!(digest_hex(&a).len(), 64);
        assert_ne!(
            digest(&a),
            digest(&spec("v1", &[("circuit.zkey", 'c'), ("circuit.wasm", 'b')]))
        );
    }

    #[test]
    fn fingerprint_changes_with_any_part_of_the_spec_but_not_file_order() {
        let a = spec("v1", &[("circuit.zkey", 'a'), ("circuit.wasm", 'b')]);
        let reordered = spec("v1", &[("circuit.wasm", 'b'), ("circuit.zkey", 'a')]);
        assert_eq!(fingerprint(&a), fingerprint(&reordered));
        assert_eq!(fingerprint(&a).len(), 16);
        let mut moved = a.clone();
        moved.source.url = Some("https://params.example/v1-mirror".into());
        assert_ne!(fingerprint(&a), fingerprint(&moved));
        assert_ne!(
            fingerprint(&a),
            fingerprint(&spec("v2", &[("circuit.zkey", 'a'), ("circuit.wasm", 'b')]))
        );
    }

    #[test]
    fn serving_round_trips_through_annotations() {
        let target = spec("v2", &[("circuit.zkey", 'a')]);
        let previous = spec("v1", &[("circuit.zkey", 'b')]);
        let mut deployment = Deployment::default();
        deployment.metadata.annotations = Some(
            [
                (
                    SERVING_ANNOTATION.to_string(),
                    serde_json::to_string(&target).unwrap(),
                ),
                (
                    PREVIOUS_ANNOTATION.to_string(),
                    serde_json::to_string(&previous).unwrap(),
                ),
            ]
            .into(),
        );
        let serving = Serving::observed(&deployment).unwrap();
        assert_eq!(serving.target, target);
        assert_eq!(serving.previous, Some(previous));
        assert_eq!(serving.rolled_back, None);
        assert_eq!(Serving::observed(&Deployment::default()), None);
    }
}
