//! Where proofs too large for a ProofJob's status are stored: a directory
//! (`file:///…`) or an object store (`s3://`, `gs://`, `az://`), one object
//! per job at `<namespace>/<job name>-<job uid>/proof.json` under the store's
//! URL. Credentials come from the standard environment variables (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), as for the prover pods' parameters.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest as _, Sha256};

/// File name of a stored proof, under the job's own prefix.
pub const PROOF_FILE: &str = "proof.json";

/// A proof as stored: what a ProofJob's `status.result` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredArtifact {
    /// Full URL of the object, for example `s3://bucket/proofs/ns/job-<uid>/proof.json`.
    pub location: String,
    /// SHA-256 of the stored bytes, 64 lowercase hex characters.
    pub sha256: String,
    pub size_bytes: i64,
}

/// Why storing or deleting a proof failed. The variant name is the Event reason and the
/// `error` label of the failures metric.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The store URL cannot be used; fixing it needs a restart with another flag value.
    #[error(
        "artifact store URL {url:?} is not usable: {message}; use file:///<absolute dir>, s3://<bucket>[/prefix], gs://<bucket>[/prefix] or az://<container>[/prefix]"
    )]
    InvalidUrl { url: String, message: String },
    /// The directory of a `file://` store could not be created.
    #[error("cannot create the artifact directory {dir}: {source}")]
    CreateDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the object failed (transient: retried).
    #[error("storing the proof at {location}: {source}")]
    Put {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// Deleting the object failed (transient: retried).
    #[error("deleting the proof at {location}: {source}")]
    Delete {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// A location outside this store: never deleted, so a job cannot point the operator at
    /// someone else's objects.
    #[error("{location} is not in the artifact store {store}; it is left alone")]
    ForeignLocation { location: String, store: String },
}

impl ArtifactError {
    /// Variant name, for the failures metric and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "InvalidUrl",
            Self::CreateDir { .. } => "CreateDir",
            Self::Put { .. } => "Put",
            Self::Delete { .. } => "Delete",
            Self::ForeignLocation { .. } => "ForeignLocation",
        }
    }
}

/// A place to store proofs, built once from the operator's `--artifacts-url`.
#[derive(Clone)]
pub struct ArtifactStore {
    /// The store's URL without a trailing `/`; every location starts with it.
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ArtifactStore {
    /// The store at `url`: `file:///dir` (created if missing), `s3://bucket/prefix`,
    /// `gs://bucket/prefix` or `az://container/prefix`. Nothing is contacted yet.
    pub fn new(url: &str) -> Result<Self, ArtifactError> {
        let url = url.trim().trim_end_matches('/');
        let invalid = |message: String| ArtifactError::InvalidUrl {
            url: url.to_string(),
            message,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("it has no scheme".into()))?;
        if scheme == "file" {
            return Self::local(url, rest);
        }
        if !matches!(scheme, "s3" | "gs" | "az") {
            return Err(invalid(format!("scheme {scheme:?} is not supported")));
        }
        let client = object_store::ClientOptions::new().with_timeout(Duration::from_secs(300));
        // Built as the prover pods' parameters loader builds its stores.
        let (store, prefix) = zkfleet_contract::store::object_store_at(
            url,
            client,
            object_store::RetryConfig::default(),
        )
        .map_err(invalid)?;
        Ok(ArtifactStore {
            url: url.to_string(),
            store,
            prefix,
        })
    }

    /// `file:///dir`: a local (or mounted) directory.
    fn local(url: &str, rest: &str) -> Result<Self, ArtifactError> {
        // `file://host/dir` names a host; only local absolute paths are accepted.
        if !rest.starts_with('/') {
            return Err(ArtifactError::InvalidUrl {
                url: url.to_string(),
                message: "a file URL needs an absolute path (three slashes: file:///dir)".into(),
            });
        }
        let dir = rest;
        std::fs::create_dir_all(dir).map_err(|source| ArtifactError::CreateDir {
            dir: dir.to_string(),
            source,
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| ArtifactError::InvalidUrl {
                url: url.to_string(),
                message: e.to_string(),
            })?
            // Deleting a job's proof also removes its now empty directories.
            .with_automatic_cleanup(true);
        Ok(ArtifactStore {
            url: url.to_string(),
            store: Arc::new(store),
            prefix: StorePath::default(),
        })
    }

    /// The store's URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Key of a job's proof relative to the store's URL: `<namespace>/<job>-<uid>/proof.json`.
    /// The uid keeps a recreated job with the same name from overwriting the old one's proof.
    pub fn key(namespace: &str, job_name: &str, job_uid: &str) -> StorePath {
        StorePath::from_iter([namespace, &format!("{job_name}-{job_uid}"), PROOF_FILE])
    }

    /// Full URL of an object with key `key`.
    fn location(&self, key: &StorePath) -> String {
        format!("{}/{key}", self.url)
    }

    /// Stores a job's proof, replacing what an earlier attempt stored there.
    pub async fn put(
        &self,
        namespace: &str,
        job_name: &str,
        job_uid: &str,
        bytes: Vec<u8>,
    ) -> Result<StoredArtifact, ArtifactError> {
        let key = Self::key(namespace, job_name, job_uid);
        let location = self.location(&key);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let path = self.path(&key);
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| ArtifactError::Put {
                location: location.clone(),
                source,
            })?;
        Ok(StoredArtifact {
            location,
            sha256,
            size_bytes,
        })
    }

    /// Where `key` lies in the store: under the URL's path prefix.
    fn path(&self, key: &StorePath) -> StorePath {
        self.prefix.parts().chain(key.parts()).collect()
    }

    /// Deletes whatever [`ArtifactStore::put`] stored for a job in this store, whether or not
    /// the job's status recorded it (an upload that lost the race to write the status still
    /// left its object). Deleting what is already gone is not an error.
    pub async fn delete_for_job(
        &self,
        namespace: &str,
        job_name: &str,
        job_uid: &str,
    ) -> Result<(), ArtifactError> {
        let key = Self::key(namespace, job_name, job_uid);
        self.delete(&self.location(&key)).await
    }

    /// Whether `location` is an object of this store.
    pub fn holds(&self, location: &str) -> bool {
        location
            .strip_prefix(self.url.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Deletes a proof [`ArtifactStore::put`] stored. Deleting what is already gone is not
    /// an error, so a finalizer can retry freely.
    pub async fn delete(&self, location: &str) -> Result<(), ArtifactError> {
        let foreign = || ArtifactError::ForeignLocation {
            location: location.to_string(),
            store: self.url.clone(),
        };
        let key = location
            .strip_prefix(self.url.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(foreign)?;
        let key = StorePath::parse(key).map_err(|_| foreign())?;
        if key.parts().count() == 0 {
            return Err(foreign());
        }
        let path = self.path(&key);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ArtifactError::Delete {
                location: location.to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_url(dir: &std::path::Path) -> String {
        format!("file://{}", dir.display())
    }

    #[tokio::test]
    async fn proofs_are_stored_under_namespace_job_and_uid() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("proofs");
        let store = ArtifactStore::new(&format!("{}/", file_url(&root))).unwrap();
        assert!(root.is_dir(), "the directory is created");
        let proof = br#"{"pi_a":["1","2","1"]}"#.to_vec();

        let stored = store
            .put("team-a", "big-proof", "1234-abcd", proof.clone())
            .await
            .unwrap();
        let path = root.join("team-a/big-proof-1234-abcd/proof.json");
        assert_eq!(stored.location, format!("file://{}", path.display()));
        assert_eq!(std::fs::read(&path).unwrap(), proof);
        assert_eq!(stored.size_bytes, proof.len() as i64);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&proof)));

        // A retry replaces the object.
        let again = store
            .put("team-a", "big-proof", "1234-abcd", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(again.location, stored.location);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");

        store.delete(&stored.location).await.unwrap();
        assert!(!path.exists());
        assert!(
            !root.join("team-a").exists(),
            "empty job and namespace directories are removed"
        );
        assert!(root.is_dir(), "the store's own directory stays");
        // Idempotent.
        store.delete(&stored.location).await.unwrap();
    }

    #[tokio::test]
    async fn locations_outside_the_store_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(&file_url(&tmp.path().join("a"))).unwrap();
        let outside = tmp.path().join("ab/x/proof.json");
        std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
        std::fs::write(&outside, b"keep").unwrap();
        for location in [
            format!("file://{}", outside.display()),
            "s3://bucket/a/x/proof.json".to_string(),
            store.url().to_string(),
        ] {
            let err = store.delete(&location).await.unwrap_err();
            assert_eq!(err.reason(), "ForeignLocation", "{location}: {err}");
        }
        assert!(outside.exists());
    }

    #[test]
    fn unusable_urls_say_what_is_accepted() {
        for url in [
            "/var/proofs",
            "file://relative/dir",
            "ftp://host/x",
            "s3://",
        ] {
            let err = ArtifactStore::new(url).unwrap_err();
            assert_eq!(err.reason(), "InvalidUrl", "{url}");
            assert!(err.to_string().contains("file:///"), "{err}");
        }
    }

    #[test]
    fn object_store_locations_keep_the_prefix() {
        let store = ArtifactStore::new("s3://bucket/zkfleet/proofs/").unwrap();
        assert_eq!(store.url(), "s3://bucket/zkfleet/proofs");
        assert_eq!(
            store.location(&ArtifactStore::key("ns", "job", "uid")),
            "s3://bucket/zkfleet/proofs/ns/job-uid/proof.json"
        );
        assert_eq!(store.prefix.as_ref(), "zkfleet/proofs");
    }
}
