//! Verifying keys of pools, loaded by parameters digest and cached, so the operator checks each
//! proof without trusting the pod that made it.
//!
//! The key is the snarkjs `verification_key.json` among the pool's parameter files (named by
//! `spec.backend.groth16.verificationKey`, default `verification_key.json`), or, when the
//! files have none, the verifying-key sections of the zkey. The operator reads it from the
//! same source the pods fetch from (a ConfigMap, or `<url>/<name>`) and checks its sha256
//! against `spec.parameters.files`, as the pods do. List the small `verification_key.json` in
//! the files: without it, the operator streams the whole zkey past it once to check the
//! digest. Keys on a PVC or in an image are out of the operator's reach
//! ([`VkError::Unreadable`]); for those it asks one of the pool's pods.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};
use object_store::ObjectStoreExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use zkfleet_contract::Digest;
use zkfleet_crds::v1alpha1::{ParameterFile, ParametersLocation, ParametersSpec, ProverPool};
use zkfleet_groth16_verifier::Verifier;

use crate::build::deployment::zkey_name;

/// File name of the verifying key when `spec.backend.groth16.verificationKey` is not set.
pub const DEFAULT_VERIFICATION_KEY: &str = "verification_key.json";

/// How long a prover pod may take to hand out its verifying key.
const POD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a pool's verifying key could not be had. The variant name is the Event reason and the
/// `error` label of the failures metric.
#[derive(Debug, thiserror::Error)]
pub enum VkError {
    /// The pool proves with something that has no Groth16 verifying key.
    #[error(
        "pool {pool} proves STARKs (exec profile stone or miden): its proofs are checked by the pool's verifier, not with a Groth16 key"
    )]
    NoVerifier { pool: String },
    /// Neither a verification key nor a zkey among the files.
    #[error(
        "spec.parameters.files has neither {verification_key} nor {zkey}: add the snarkjs verification key (or the zkey) with its sha256, or name them in spec.backend.groth16"
    )]
    NoKeyFile {
        verification_key: String,
        zkey: String,
    },
    /// Not exactly one parameters source (the object bypassed validation).
    #[error("spec.parameters.source must set exactly one of url, configMap, pvc or image")]
    NoParametersSource,
    /// The files are on a volume the operator does not mount: ask a pod ([`VerifyingKeys::from_pod`]).
    #[error(
        "the operator cannot read parameters from spec.parameters.source.{kind}; the verifying key has to come from the pool's prover pods"
    )]
    Unreadable { kind: &'static str },
    /// The ConfigMap named by `source.configMap` does not exist.
    #[error(
        "ConfigMap {namespace}/{name} named by spec.parameters.source.configMap does not exist: create it with the parameter files as keys"
    )]
    ConfigMapNotFound { namespace: String, name: String },
    /// The ConfigMap lacks the key file.
    #[error(
        "ConfigMap {namespace}/{name} has no key {file} in data or binaryData: add the file, or fix spec.parameters.files"
    )]
    FileNotInConfigMap {
        namespace: String,
        name: String,
        file: String,
    },
    /// Reading the ConfigMap failed (transient).
    #[error("reading ConfigMap {namespace}/{name}: {source}")]
    ReadConfigMap {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The file's sha256 in `spec.parameters.files` is not a sha256.
    #[error(
        "spec.parameters.files lists {name} with sha256 {sha256:?}, which is not 64 hex characters"
    )]
    InvalidChecksum { name: String, sha256: String },
    /// The bytes are not the ones `spec.parameters.files` names.
    #[error(
        "parameters digest {expected} does not match file {name} (its sha256 is {actual}); fix the file or its sha256 in spec.parameters.files"
    )]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    /// `source.url` cannot be fetched from at all.
    #[error("spec.parameters.source.url {url:?} is not usable: {message}")]
    InvalidUrl { url: String, message: String },
    /// Downloading the file failed (transient).
    #[error("downloading {name} from {url}: {message}")]
    Download {
        url: String,
        name: String,
        message: String,
    },
    /// The file is not a Groth16 BN254 verifying key (or zkey).
    #[error(
        "{name} is not a usable Groth16 BN254 verifying key: {message}; it must be the snarkjs verification_key.json (or the .zkey) of the pool's circuit"
    )]
    InvalidKey { name: String, message: String },
    /// A prover pod did not hand out its key (transient).
    #[error("asking prover pod {url} for its verification key: {message}")]
    Pod { url: String, message: String },
}

impl VkError {
    /// Variant name, for the failures metric and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoVerifier { .. } => "NoVerifier",
            Self::NoKeyFile { .. } => "NoKeyFile",
            Self::NoParametersSource => "NoParametersSource",
            Self::Unreadable { .. } => "Unreadable",
            Self::ConfigMapNotFound { .. } => "ConfigMapNotFound",
            Self::FileNotInConfigMap { .. } => "FileNotInConfigMap",
            Self::ReadConfigMap { .. } => "ReadConfigMap",
            Self::InvalidChecksum { .. } => "InvalidChecksum",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::InvalidUrl { .. } => "InvalidUrl",
            Self::Download { .. } => "Download",
            Self::InvalidKey { .. } => "InvalidKey",
            Self::Pod { .. } => "Pod",
        }
    }

    /// The operator cannot read the parameters' source itself: ask a pod
    /// ([`VerifyingKeys::from_pod`], [`VerifyingKeys::get_or_ask_pod`]).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Unreadable { .. })
    }

    /// Worth retrying with backoff as is: the API server, the network or a pod may answer
    /// next time, and a missing ConfigMap may be created. The other errors wait for the pool
    /// (or its files) to change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ReadConfigMap { .. }
                | Self::Download { .. }
                | Self::Pod { .. }
                | Self::ConfigMapNotFound { .. }
                | Self::FileNotInConfigMap { .. }
        )
    }
}

/// The file a pool's verifying key is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFile {
    /// A snarkjs `verification_key.json`.
    Json(ParameterFile),
    /// A zkey, of which only the verifying-key sections are read.
    Zkey(ParameterFile),
}

impl KeyFile {
    pub fn file(&self) -> &ParameterFile {
        match self {
            KeyFile::Json(f) | KeyFile::Zkey(f) => f,
        }
    }

    pub fn name(&self) -> &str {
        &self.file().name
    }
}

/// Name of the verifying key in `parameters.files`.
pub fn verification_key_name(pool: &ProverPool) -> &str {
    pool.spec
        .backend
        .groth16
        .as_ref()
        .and_then(|g| g.verification_key.as_deref())
        .unwrap_or(DEFAULT_VERIFICATION_KEY)
}

/// Which of `parameters.files` holds the pool's verifying key: the verification key file when
/// listed (small), else the zkey.
pub fn key_file(pool: &ProverPool, parameters: &ParametersSpec) -> Result<KeyFile, VkError> {
    // STARK and VM proofs are checked by the pool's verifier, not with a Groth16 key.
    if !pool.spec.backend.proves_groth16() {
        return Err(VkError::NoVerifier {
            pool: pool.name_any(),
        });
    }
    let find = |name: &str| parameters.files.iter().find(|f| f.name == name).cloned();
    let (vk, zkey) = (verification_key_name(pool), zkey_name(pool));
    find(vk)
        .map(KeyFile::Json)
        .or_else(|| find(zkey).map(KeyFile::Zkey))
        .ok_or_else(|| VkError::NoKeyFile {
            verification_key: vk.into(),
            zkey: zkey.into(),
        })
}

/// Checks `bytes` against the file's sha256 in `spec.parameters.files`.
pub fn check_sha256(file: &ParameterFile, bytes: &[u8]) -> Result<(), VkError> {
    let expected = expected_digest(file)?;
    let actual = Digest::of(bytes);
    if actual != expected {
        return Err(VkError::DigestMismatch {
            name: file.name.clone(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

fn expected_digest(file: &ParameterFile) -> Result<Digest, VkError> {
    file.sha256.parse().map_err(|_| VkError::InvalidChecksum {
        name: file.name.clone(),
        sha256: file.sha256.clone(),
    })
}

/// Reads a verifying key from the bytes of its (already checked) file.
pub fn parse(file: &KeyFile, bytes: &[u8]) -> Result<Verifier, VkError> {
    let invalid = |message: String| VkError::InvalidKey {
        name: file.name().to_string(),
        message,
    };
    match file {
        KeyFile::Json(_) => {
            let json: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
            Verifier::from_json(&json).map_err(|e| invalid(e.to_string()))
        }
        KeyFile::Zkey(_) => Verifier::from_zkey_bytes(bytes).map_err(|e| invalid(e.to_string())),
    }
}

/// A file's bytes in a ConfigMap: `data` (text) first, then `binaryData`.
pub fn config_map_file(config_map: &ConfigMap, name: &str) -> Option<Vec<u8>> {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(name))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            config_map
                .binary_data
                .as_ref()
                .and_then(|d| d.get(name))
                .map(|b| b.0.clone())
        })
}

/// The verifying key in a ConfigMap: the key file taken out, checked against its sha256, and
/// parsed.
pub fn from_config_map(config_map: &ConfigMap, file: &KeyFile) -> Result<Verifier, VkError> {
    let bytes =
        config_map_file(config_map, file.name()).ok_or_else(|| VkError::FileNotInConfigMap {
            namespace: config_map.namespace().unwrap_or_default(),
            name: config_map.name_any(),
            file: file.name().to_string(),
        })?;
    check_sha256(file.file(), &bytes)?;
    parse(file, &bytes)
}

/// Cache key: the parameters digest, plus the file the key comes from (two pools may pick
/// different files out of the same set).
fn cache_key(parameters: &ParametersSpec, file: &KeyFile) -> String {
    format!("{}/{}", crate::params::digest(parameters), file.name())
}

/// Verifiers by cache key. Each key is loaded once even when asked for concurrently; a
/// failed load is not remembered, so the next call tries again.
#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<String, Arc<OnceCell<Arc<Verifier>>>>>,
}

impl Cache {
    async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Arc<Verifier>, VkError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Verifier>, VkError>>,
    {
        let cell = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(load).await.cloned()
    }

    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|c| c.initialized())
            .count()
    }
}

/// The pools' verifying keys, cached by parameters digest. Cheap to clone.
#[derive(Clone)]
pub struct VerifyingKeys {
    client: Client,
    cache: Arc<Cache>,
}

impl VerifyingKeys {
    pub fn new(client: Client) -> Self {
        VerifyingKeys {
            client,
            cache: Arc::default(),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verifying key of `parameters` (the pool's current or previous set), loaded from
    /// their source the first time. [`VkError::Unreadable`] for PVC and image sources: use
    /// [`VerifyingKeys::get_or_ask_pod`] there.
    pub async fn get(
        &self,
        pool: &ProverPool,
        parameters: &ParametersSpec,
    ) -> Result<Arc<Verifier>, VkError> {
        let file = key_file(pool, parameters)?;
        let key = cache_key(parameters, &file);
        let namespace = pool.namespace().unwrap_or_default();
        let (namespace, file) = (&namespace, &file);
        self.cache
            .get_or_load(&key, move || async move {
                let verifier = self.load(namespace, parameters, file).await?;
                tracing::info!(
                    pool = %pool.name_any(),
                    %namespace,
                    file = file.name(),
                    n_public = verifier.n_public(),
                    "verifying key loaded"
                );
                Ok(Arc::new(verifier))
            })
            .await
    }

    /// [`VerifyingKeys::get`], falling back to the key a prover pod serving these parameters
    /// hands out when the operator cannot read their source. A key from a pod is trusted for
    /// that pool only: it is cached under the pool's namespace and name as well as the
    /// parameters digest, so no other pool (in another namespace least of all) is ever checked
    /// against it.
    pub async fn get_or_ask_pod(
        &self,
        pool: &ProverPool,
        parameters: &ParametersSpec,
        pod_ip: &str,
        port: u16,
    ) -> Result<Arc<Verifier>, VkError> {
        match self.get(pool, parameters).await {
            Err(VkError::Unreadable { .. }) => {
                let file = key_file(pool, parameters)?;
                let key = format!(
                    "pod:{}/{}/{}",
                    pool.namespace().unwrap_or_default(),
                    pool.name_any(),
                    cache_key(parameters, &file)
                );
                self.cache
                    .get_or_load(&key, move || self.from_pod(pod_ip, port))
                    .await
            }
            other => other,
        }
    }

    async fn load(
        &self,
        namespace: &str,
        parameters: &ParametersSpec,
        file: &KeyFile,
    ) -> Result<Verifier, VkError> {
        match parameters.source.location() {
            None => Err(VkError::NoParametersSource),
            Some(ParametersLocation::ConfigMap(source)) => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                let config_map = api
                    .get_opt(&source.name)
                    .await
                    .map_err(|source_err| VkError::ReadConfigMap {
                        namespace: namespace.to_string(),
                        name: source.name.clone(),
                        source: source_err,
                    })?
                    .ok_or_else(|| VkError::ConfigMapNotFound {
                        namespace: namespace.to_string(),
                        name: source.name.clone(),
                    })?;
                let file = file.clone();
                let name = file.name().to_string();
                // A zkey of up to 1 MiB: parsing it is quick, but still CPU work.
                tokio::task::spawn_blocking(move || from_config_map(&config_map, &file))
                    .await
                    .map_err(|e| VkError::InvalidKey {
                        name,
                        message: format!("parsing task failed: {e}"),
                    })?
            }
            Some(ParametersLocation::Url(url)) => from_url(url, file).await,
            Some(ParametersLocation::Pvc(_)) => Err(VkError::Unreadable { kind: "pvc" }),
        }
    }

    /// The key a prover pod serves at `GET http://<ip>:<port>/v1/verification-key` (snarkjs
    /// `verification_key.json`, exported from the zkey it loaded and checked). This trusts the
    /// pool's pods for the key: a pod could hand out a key that accepts its own wrong proofs.
    /// Only for sources the operator cannot read itself; ask a pod of the pool's own
    /// Deployment that serves the parameters in question.
    pub async fn from_pod(&self, pod_ip: &str, port: u16) -> Result<Arc<Verifier>, VkError> {
        let host = if pod_ip.contains(':') {
            format!("[{pod_ip}]")
        } else {
            pod_ip.to_string()
        };
        let base = format!("http://{host}:{port}/v1");
        let url = format!("{base}/verification-key");
        let failed = |message: String| VkError::Pod {
            url: url.clone(),
            message,
        };
        let (store, _) = zkfleet_contract::store::object_store_at(
            &base,
            object_store::ClientOptions::new().with_timeout(POD_TIMEOUT),
            object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: POD_TIMEOUT,
                ..Default::default()
            },
        )
        .map_err(failed)?;
        let path = object_store::path::Path::from("verification-key");
        // Read with a cap: the answer comes from a pod, which may send without end.
        let mut stream = store
            .get(&path)
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(e.to_string()))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_KEY_JSON {
                return Err(failed(format!(
                    "the answer is larger than {MAX_KEY_JSON} bytes, too large for a verification key"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
        let verifier = Verifier::from_json(&json)
            .map_err(|e| failed(format!("the answer is not a verification key: {e}")))?;
        Ok(Arc::new(verifier))
    }
}

/// Largest `verification_key.json` read: the key of about 100 000 public signals.
const MAX_KEY_JSON: u64 = 16 << 20;

/// Downloads the key file from `<url>/<name>` (the pods' rule), hashing it on the way, and
/// reads the key from the stream: nothing goes to disk (the operator's only writable
/// directory is a small `/tmp`), and of a zkey only the verifying-key sections are kept in
/// memory. The key is used only once the whole file matched its sha256.
async fn from_url(url: &str, file: &KeyFile) -> Result<Verifier, VkError> {
    let expected = expected_digest(file.file())?;
    let name = file.name().to_string();
    let download = |message: String| VkError::Download {
        url: url.to_string(),
        name: name.clone(),
        message,
    };
    // Generous: zkeys of large circuits are gigabytes.
    let client = object_store::ClientOptions::new().with_timeout(Duration::from_secs(3600));
    let (store, prefix) =
        zkfleet_contract::store::object_store_at(url, client, object_store::RetryConfig::default())
            .map_err(|message| VkError::InvalidUrl {
                url: url.to_string(),
                message,
            })?;
    let location = prefix.clone().join(name.as_str());
    let mut stream = store
        .get(&location)
        .await
        .map_err(|e| download(format!("GET {}/{name}: {e}", url.trim_end_matches('/'))))?
        .into_stream();

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let key_file = file.clone();
    let reader = tokio::task::spawn_blocking(move || read_key(&key_file, ChunkReader::new(rx)));
    let mut hasher = Sha256::new();
    let mut tx = Some(tx);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| download(format!("the download broke off: {e}")))?;
        hasher.update(&chunk);
        // The reader stops early on a file that is not a key; the hash still needs every byte.
        if let Some(sender) = &tx
            && sender.send(chunk).await.is_err()
        {
            tx = None;
        }
    }
    drop(tx);
    let actual = hex::encode(hasher.finalize());
    if actual != expected.hex() {
        return Err(VkError::DigestMismatch {
            name,
            expected: expected.to_string(),
            actual: format!("sha256:{actual}"),
        });
    }
    reader.await.map_err(|e| VkError::InvalidKey {
        name: name.clone(),
        message: format!("reading task failed: {e}"),
    })?
}

/// Reads a verifying key from a stream of the file's bytes.
fn read_key(file: &KeyFile, mut bytes: impl Read) -> Result<Verifier, VkError> {
    let invalid = |message: String| VkError::InvalidKey {
        name: file.name().to_string(),
        message,
    };
    match file {
        KeyFile::Json(_) => {
            let mut json = Vec::new();
            (&mut bytes)
                .take(MAX_KEY_JSON + 1)
                .read_to_end(&mut json)
                .map_err(|e| invalid(e.to_string()))?;
            if json.len() as u64 > MAX_KEY_JSON {
                return Err(invalid(format!(
                    "it is larger than {} MiB",
                    MAX_KEY_JSON >> 20
                )));
            }
            parse(file, &json)
        }
        KeyFile::Zkey(_) => Verifier::from_zkey_reader(bytes).map_err(|e| invalid(e.to_string())),
    }
}

/// Blocking reads from chunks sent by an async task; the end of the channel is the end of
/// the stream.
struct ChunkReader<T> {
    rx: tokio::sync::mpsc::Receiver<T>,
    chunk: Option<T>,
    pos: usize,
}

impl<T: AsRef<[u8]>> ChunkReader<T> {
    fn new(rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        ChunkReader {
            rx,
            chunk: None,
            pos: 0,
        }
    }
}

impl<T: AsRef<[u8]>> Read for ChunkReader<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(chunk) = &self.chunk {
                let rest = &chunk.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = Some(chunk);
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A verification key made of the BN254 generators (snarkjs' gamma is the G2 generator),
    /// with one public signal: valid points, no circuit needed.
    const VK_JSON: &str = r#"{
      "protocol": "groth16", "curve": "bn128", "nPublic": 1,
      "vk_alpha_1": ["1", "2", "1"],
      "vk_beta_2": [
        ["10857046999023057135944570762232829481370756359578518086990519993285655852781",
         "11559732032986387107991004021392285783925812861821192530917403151452391805634"],
        ["8495653923123431417604973247489272438418190587263600148770280649306958101930",
         "4082367875863433681332203403145435568316851327593401208105741076214120093531"],
        ["1", "0"]],
      "vk_gamma_2": [
        ["10857046999023057135944570762232829481370756359578518086990519993285655852781",
         "11559732032986387107991004021392285783925812861821192530917403151452391805634"],
        ["8495653923123431417604973247489272438418190587263600148770280649306958101930",
         "4082367875863433681332203403145435568316851327593401208105741076214120093531"],
        ["1", "0"]],
      "vk_delta_2": [
        ["10857046999023057135944570762232829481370756359578518086990519993285655852781",
         "11559732032986387107991004021392285783925812861821192530917403151452391805634"],
        ["8495653923123431417604973247489272438418190587263600148770280649306958101930",
         "4082367875863433681332203403145435568316851327593401208105741076214120093531"],
        ["1", "0"]],
      "vk_alphabeta_12": [],
      "IC": [["1", "2", "1"], ["1", "2", "1"]]
    }"#;

    fn sha(bytes: &[u8]) -> String {
        Digest::of(bytes).hex()
    }

    fn pool(yaml: &str) -> ProverPool {
        serde_yaml::from_str(yaml).unwrap()
    }

    const POOL: &str = "
apiVersion: zkfleet.dev/v1alpha1
kind: ProverPool
metadata: {name: p, namespace: team-a}
spec:
  backend: {type: groth16-bn254}
  parameters:
    version: v1
    source: {configMap: {name: params}}
    files: []
";

    fn files(pool: &mut ProverPool, files: &[(&str, String)]) {
        pool.spec.parameters.files = files
            .iter()
            .map(|(name, sha256)| ParameterFile {
                name: (*name).into(),
                sha256: sha256.clone(),
            })
            .collect();
    }

    #[test]
    fn the_verification_key_file_is_preferred_over_the_zkey() {
        let mut p = pool(POOL);
        files(
            &mut p,
            &[
                ("circuit.zkey", "a".repeat(64)),
                ("verification_key.json", "b".repeat(64)),
            ],
        );
        let params = p.spec.parameters.clone();
        assert!(matches!(key_file(&p, &params).unwrap(),
            KeyFile::Json(f) if f.name == "verification_key.json"));

        files(&mut p, &[("circuit.zkey", "a".repeat(64))]);
        let params = p.spec.parameters.clone();
        assert!(matches!(key_file(&p, &params).unwrap(),
            KeyFile::Zkey(f) if f.name == "circuit.zkey"));

        // Names from spec.backend.groth16.
        let mut named = pool(&POOL.replace(
            "{type: groth16-bn254}",
            "{type: groth16-bn254, groth16: {zkey: main.zkey, verificationKey: vk.json}}",
        ));
        files(
            &mut named,
            &[
                ("main.zkey", "a".repeat(64)),
                ("verification_key.json", "b".repeat(64)),
            ],
        );
        let params = named.spec.parameters.clone();
        assert!(matches!(key_file(&named, &params).unwrap(),
            KeyFile::Zkey(f) if f.name == "main.zkey"));

        files(&mut named, &[("circuit.wasm", "c".repeat(64))]);
        let params = named.spec.parameters.clone();
        let err = key_file(&named, &params).unwrap_err();
        assert_eq!(err.reason(), "NoKeyFile");
        assert!(
            err.to_string().contains("neither vk.json nor main.zkey"),
            "{err}"
        );
    }

    #[test]
    fn stone_pools_have_no_key() {
        let p = pool(&POOL.replace(
            "{type: groth16-bn254}",
            "{type: exec, exec: {profile: stone, command: [cpu_air_prover]}}",
        ));
        let err = key_file(&p, &p.spec.parameters).unwrap_err();
        assert_eq!(err.reason(), "NoVerifier");
        // snarkjs-compatible exec pools verify like groth16 ones.
        let mut p = pool(&POOL.replace(
            "{type: groth16-bn254}",
            "{type: exec, exec: {profile: rapidsnark, command: [rapidsnark]}}",
        ));
        files(&mut p, &[("circuit.zkey", "a".repeat(64))]);
        assert!(key_file(&p, &p.spec.parameters).is_ok());
    }

    fn config_map(data: &[(&str, &str)], binary: &[(&str, &[u8])]) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("params".into());
        cm.metadata.namespace = Some("team-a".into());
        cm.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        cm.binary_data = Some(
            binary
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        cm
    }

    #[test]
    fn keys_are_read_from_config_maps_after_their_checksum() {
        let vk = KeyFile::Json(ParameterFile {
            name: "verification_key.json".into(),
            sha256: sha(VK_JSON.as_bytes()),
        });
        let from_data = from_config_map(&config_map(&[(vk.name(), VK_JSON)], &[]), &vk).unwrap();
        assert_eq!(from_data.n_public(), 1);
        let from_binary =
            from_config_map(&config_map(&[], &[(vk.name(), VK_JSON.as_bytes())]), &vk).unwrap();
        assert_eq!(from_binary.verifying_key(), from_data.verifying_key());

        let changed = VK_JSON.replace("\"nPublic\": 1", "\"nPublic\": 1 ");
        let err = from_config_map(&config_map(&[(vk.name(), &changed)], &[]), &vk).unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch");
        assert_eq!(
            err.to_string(),
            format!(
                "parameters digest sha256:{} does not match file verification_key.json (its sha256 is sha256:{}); fix the file or its sha256 in spec.parameters.files",
                sha(VK_JSON.as_bytes()),
                sha(changed.as_bytes())
            )
        );

        let err = from_config_map(&config_map(&[("other", VK_JSON)], &[]), &vk).unwrap_err();
        assert_eq!(err.reason(), "FileNotInConfigMap");
        assert!(
            err.to_string()
                .contains("ConfigMap team-a/params has no key verification_key.json"),
            "{err}"
        );
    }

    #[test]
    fn files_that_are_not_keys_say_so() {
        let not_a_key = br#"{"protocol": "groth16", "curve": "bn128"}"#;
        let vk = KeyFile::Json(ParameterFile {
            name: "verification_key.json".into(),
            sha256: sha(not_a_key),
        });
        let err = parse(&vk, not_a_key).unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(err.to_string().contains("nPublic"), "{err}");

        let zkey = KeyFile::Zkey(ParameterFile {
            name: "circuit.zkey".into(),
            sha256: sha(b"nope"),
        });
        let err =
            from_config_map(&config_map(&[], &[("circuit.zkey", b"nope")]), &zkey).unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(err.to_string().contains("not a zkey file"), "{err}");

        let bad_sum = ParameterFile {
            name: "verification_key.json".into(),
            sha256: "xyz".into(),
        };
        assert_eq!(
            check_sha256(&bad_sum, b"").unwrap_err().reason(),
            "InvalidChecksum"
        );
    }

    #[tokio::test]
    async fn keys_are_loaded_once_per_digest_and_file() {
        let cache = Cache::default();
        let counter = AtomicUsize::new(0);
        let loads = &counter;
        let load = move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            let json: serde_json::Value = serde_json::from_str(VK_JSON).unwrap();
            Ok(Arc::new(Verifier::from_json(&json).unwrap()))
        };
        let mut p = pool(POOL);
        files(&mut p, &[("verification_key.json", "b".repeat(64))]);
        let v1 = p.spec.parameters.clone();
        let mut v1_renamed = v1.clone();
        v1_renamed.version = "v1-again".into();
        v1_renamed.source.config_map = None;
        v1_renamed.source.url = Some("https://mirror.example/params".into());
        let mut v2 = v1.clone();
        v2.files[0].sha256 = "c".repeat(64);
        let key = |params: &ParametersSpec| cache_key(params, &key_file(&p, params).unwrap());

        let a = cache.get_or_load(&key(&v1), load).await.unwrap();
        // Same files elsewhere and under another version label: same digest, no new load.
        let b = cache.get_or_load(&key(&v1_renamed), load).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.get_or_load(&key(&v2), load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.len(), 2);

        // Failures are not remembered.
        let v3 = {
            let mut v = v1.clone();
            v.files[0].sha256 = "d".repeat(64);
            v
        };
        let err = cache
            .get_or_load(&key(&v3), || async {
                Err(VkError::Unreadable { kind: "pvc" })
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the operator cannot read parameters from spec.parameters.source.pvc; the verifying key has to come from the pool's prover pods"
        );
        cache.get_or_load(&key(&v3), load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn chunks_read_back_as_one_stream() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            ChunkReader::new(rx).read_to_end(&mut out).unwrap();
            out
        });
        for chunk in [&b"ab"[..], b"", b"cde", b"f"] {
            tx.send(chunk.to_vec()).await.unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), b"abcdef");
    }

    /// A client for an API server that is not there: for sources that never call it.
    fn offline_keys() -> VerifyingKeys {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        VerifyingKeys::new(Client::try_from(config).unwrap())
    }

    /// Serves `body` at `http://127.0.0.1:<port><path>`; returns the port.
    async fn serve(path: &'static str, body: &'static str) -> u16 {
        let app = axum::Router::new().route(
            path,
            axum::routing::get(
                move || async move { ([("content-type", "application/json")], body) },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn url_sources_are_downloaded_and_checked() {
        let port = serve("/params/verification_key.json", VK_JSON).await;
        let keys = offline_keys();
        let mut p = pool(&POOL.replace(
            "{configMap: {name: params}}",
            &format!("{{url: 'http://127.0.0.1:{port}/params/'}}"),
        ));
        files(
            &mut p,
            &[
                ("circuit.zkey", "a".repeat(64)),
                ("verification_key.json", sha(VK_JSON.as_bytes())),
            ],
        );
        let params = p.spec.parameters.clone();
        let verifier = keys.get(&p, &params).await.unwrap();
        assert_eq!(verifier.n_public(), 1);

        let mut wrong = params.clone();
        wrong.files[1].sha256 = "e".repeat(64);
        let err = keys.get(&p, &wrong).await.unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch");
        assert!(
            err.to_string().starts_with(&format!(
                "parameters digest sha256:{} does not match file verification_key.json",
                "e".repeat(64)
            )),
            "{err}"
        );

        // The source is not part of the cache key (the same files are the same key wherever
        // they come from), so this one needs other files to be fetched at all.
        let mut missing = params.clone();
        missing.source.url = Some(format!("http://127.0.0.1:{port}/elsewhere"));
        missing.files[1].sha256 = "f".repeat(64);
        let err = keys.get(&p, &missing).await.unwrap_err();
        assert_eq!(err.reason(), "Download");
        assert!(err.is_transient());
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn pvc_sources_fall_back_to_a_pod() {
        // A prover pod's answer, served on loopback.
        let port = serve("/v1/verification-key", VK_JSON).await;
        let keys = offline_keys();
        let mut p =
            pool(&POOL.replace("{configMap: {name: params}}", "{pvc: {claimName: params}}"));
        files(&mut p, &[("circuit.zkey", "a".repeat(64))]);
        let params = p.spec.parameters.clone();

        let err = keys.get(&p, &params).await.unwrap_err();
        assert_eq!(err.reason(), "Unreadable");
        assert!(keys.is_empty());

        let verifier = keys
            .get_or_ask_pod(&p, &params, "127.0.0.1", port)
            .await
            .unwrap();
        assert_eq!(verifier.n_public(), 1);
        assert_eq!(keys.len(), 1);
        // Cached: a pod that is gone is not asked again.
        let again = keys
            .get_or_ask_pod(&p, &params, "127.0.0.1", 9)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&verifier, &again));

        let err = keys.from_pod("127.0.0.1", 9).await.unwrap_err();
        assert_eq!(err.reason(), "Pod");
        assert!(
            err.to_string()
                .starts_with("asking prover pod http://127.0.0.1:9/v1/verification-key"),
            "{err}"
        );
    }
}
