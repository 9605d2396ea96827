//! Parameters loader: fetches the pod's parameter files from an https URL, an
//! object store (`s3://`, `gs://`, `az://`) or a mounted directory, checks
//! each against its sha256 before use, and caches downloads by digest in a
//! node-local directory so a restart or a second pod on the node downloads
//! nothing.
//!
//! Cache layout: `<cache>/files/<sha256 hex>`. A download streams into a
//! temporary file in that directory while it is hashed, and is renamed to its
//! final name only once the digest matches, so a partial or wrong download is
//! never used and never shadows a good one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

pub use zkfleet_contract::Digest;

/// One parameter file: its name (no directories) and expected sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSpec {
    pub name: String,
    pub sha256: Digest,
}

impl FileSpec {
    pub fn new(name: &str, sha256: Digest) -> Result<Self, String> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain {
            return Err(format!(
                "parameter file name {name:?} must be a plain file name (letters, digits, '.', '_', '-')"
            ));
        }
        Ok(FileSpec {
            name: name.to_string(),
            sha256,
        })
    }
}

impl FromStr for FileSpec {
    type Err = String;
    /// `NAME=SHA256`, as in `circuit.zkey=3b1f…`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, digest) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=SHA256"))?;
        FileSpec::new(name.trim(), digest.trim().parse()?)
    }
}

/// Where the files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A local or mounted directory (ConfigMap, PVC or image volume); files are
    /// used in place after their digest is checked.
    Dir(PathBuf),
    /// A base URL (`https://`, `http://`, `s3://`, `gs://`, `az://`); each
    /// file is fetched from `<url>/<name>` into the cache.
    Url(String),
}

/// What to load: a source and the files with their digests.
#[derive(Clone, Debug)]
pub struct Spec {
    pub source: Source,
    pub files: Vec<FileSpec>,
}

/// How one file was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Read from the mounted directory.
    Dir,
    /// Found in the node-local cache, nothing downloaded.
    Cache,
    /// Downloaded now.
    Download,
}

/// A parameter file on local disk whose digest has been checked.
#[derive(Clone, Debug, Serialize)]
pub struct LocalFile {
    pub name: String,
    pub sha256: Digest,
    pub path: PathBuf,
    pub origin: Origin,
    pub bytes: u64,
    pub seconds: f64,
}

/// Every file of a [`Spec`], checked.
#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    pub files: Vec<LocalFile>,
    pub seconds: f64,
}

impl Fetched {
    pub fn get(&self, name: &str) -> Option<&LocalFile> {
        self.files.iter().find(|f| f.name == name)
    }
    pub fn downloaded_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.origin == Origin::Download)
            .map(|f| f.bytes)
            .sum()
    }
}

/// Why the parameters could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "parameters digest {expected} does not match file {name} (its sha256 is {actual}); fix the file or its sha256 in the parameters"
    )]
    DigestMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("input {url}: its sha256 does not match the job's sha256; fix the file or the sha256")]
    InputMismatch { url: String },
    #[error("{name} is larger than the {limit} bytes allowed")]
    TooLarge { name: String, limit: u64 },
    #[error("parameter file {name} is unavailable: {message}")]
    Unavailable { name: String, message: String },
    #[error("parameters are misconfigured: {0}")]
    Config(String),
}

/// The cached copy of a file with this digest.
pub fn cache_path(cache_dir: &Path, digest: &Digest) -> PathBuf {
    cache_dir.join("files").join(digest.hex())
}

/// Where downloads are cached: `cache_dir` when this process can write there,
/// else a pod-local directory under the temp dir. The node-local cache is
/// usually a hostPath, which the kubelet creates owned by root when the node
/// has not prepared it; the non-root prover must still become ready, only
/// without sharing its downloads with other pods on the node.
pub fn writable_cache_dir(cache_dir: &Path) -> Result<PathBuf, FetchError> {
    let probe = |dir: &Path| -> std::io::Result<()> {
        let files = dir.join("files");
        std::fs::create_dir_all(&files)?;
        tempfile::NamedTempFile::new_in(&files).map(drop)
    };
    match probe(cache_dir) {
        Ok(()) => Ok(cache_dir.to_path_buf()),
        Err(e) => {
            let fallback = std::env::temp_dir().join("zkfleet-parameters");
            tracing::warn!(
                cache = %cache_dir.display(),
                fallback = %fallback.display(),
                error = %e,
                "parameters cache is not writable; downloading into a pod-local directory"
            );
            probe(&fallback).map_err(|e2| {
                FetchError::Config(format!(
                    "cannot write the parameters cache {} ({e}) nor {} ({e2})",
                    cache_dir.display(),
                    fallback.display()
                ))
            })?;
            Ok(fallback)
        }
    }
}

/// Fetches and checks every file of `spec`. Downloads need `cache_dir`.
pub async fn fetch(spec: &Spec, cache_dir: Option<&Path>) -> Result<Fetched, FetchError> {
    let start = Instant::now();
    let mut files = Vec::with_capacity(spec.files.len());
    match &spec.source {
        Source::Dir(dir) => {
            for f in &spec.files {
                let t = Instant::now();
                let path = dir.join(&f.name);
                let bytes =
                    check_file(path.clone(), f)
                        .await?
                        .ok_or_else(|| FetchError::Unavailable {
                            name: f.name.clone(),
                            message: format!("{} does not exist", path.display()),
                        })?;
                files.push(LocalFile {
                    name: f.name.clone(),
                    sha256: f.sha256,
                    path,
                    origin: Origin::Dir,
                    bytes,
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
        }
        Source::Url(url) => {
            let cache_dir = cache_dir.ok_or_else(|| {
                FetchError::Config(
                    "fetching from a URL needs a cache directory (--cache-dir)".into(),
                )
            })?;
            let remote = Remote::new(url, Credentials::Ambient)?;
            let cache_dir = writable_cache_dir(cache_dir)?;
            for f in &spec.files {
                files.push(remote.fetch(f, &cache_dir).await?);
            }
        }
    }
    Ok(Fetched {
        files,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Limits on downloading an input a tenant named by URL.
#[derive(Clone, Copy, Debug)]
pub struct InputLimits {
    /// Most bytes: a larger object is refused before its body is read, or as soon as the
    /// stream passes this size.
    pub max_bytes: u64,
    /// Longest the whole download may take, retries included.
    pub timeout: Duration,
}

/// Downloads a job's input from the URL its tenant chose: unsigned (see
/// [`Credentials::Anonymous`]), within `limits`, streamed into `dir` and hashed on the way.
/// Errors name the URL without its query (a presigned URL's signature), and a digest
/// mismatch does not say what the object's digest is.
pub async fn download_input(
    url: &str,
    sha256: Digest,
    dir: &Path,
    limits: InputLimits,
) -> Result<PathBuf, FetchError> {
    let shown = zkfleet_contract::store::redacted(url);
    let fetch = download_unsigned(url, sha256, dir, limits.max_bytes);
    match tokio::time::timeout(limits.timeout, fetch).await {
        Err(_) => Err(FetchError::Unavailable {
            name: shown.clone(),
            message: format!(
                "download of {shown} took longer than {}s",
                limits.timeout.as_secs()
            ),
        }),
        Ok(Err(FetchError::DigestMismatch { .. })) => Err(FetchError::InputMismatch { url: shown }),
        Ok(Err(FetchError::Unavailable { name, .. })) => Err(FetchError::Unavailable {
            name,
            // The store's message can repeat the whole URL, query included.
            message: format!("{shown} could not be read"),
        }),
        Ok(Err(FetchError::Config(_))) => Err(FetchError::Config(format!(
            "{shown} is not a URL an input can be read from: use https:// (a presigned URL for a private object), or s3:// or gs:// for a public one"
        ))),
        Ok(other) => other,
    }
}

/// Downloads one file by its full URL into `dir` and checks it against `sha256`: the same
/// client, retries and streaming digest check as the parameter files, without credentials.
async fn download_unsigned(
    url: &str,
    sha256: Digest,
    dir: &Path,
    max_bytes: u64,
) -> Result<PathBuf, FetchError> {
    check_url(url).map_err(FetchError::Config)?;
    // A presigned URL's query (its signature) goes with every request: the HTTP store keeps
    // its base URL's query when it appends the file name.
    let (url, query) = match url.split_once('?') {
        Some((path, query)) if url.starts_with("https://") || url.starts_with("http://") => {
            (path, Some(query))
        }
        Some(_) => return Err(FetchError::Config(format!("{url:?} has a query"))),
        None => (url, None),
    };
    let url = url.trim_end_matches('/');
    let (base, name) = url
        .rsplit_once('/')
        .filter(|(base, _)| base.split_once("://").is_some_and(|(_, r)| !r.is_empty()))
        .ok_or_else(|| FetchError::Config(format!("{url:?} names no file")))?;
    let file = FileSpec::new(name, sha256)
        .map_err(|e| FetchError::Config(format!("{url:?} must end in a plain file name: {e}")))?;
    let dest = dir.join(name);
    let base = match query {
        Some(query) => format!("{base}?{query}"),
        None => base.to_string(),
    };
    Remote::new(&base, Credentials::Anonymous)?
        .download(&file, &dest, max_bytes)
        .await?;
    Ok(dest)
}

/// Hashes a local file and compares it with `f.sha256`: `Ok(None)` when the
/// file does not exist, its size when it matches.
async fn check_file(path: PathBuf, f: &FileSpec) -> Result<Option<u64>, FetchError> {
    let name = f.name.clone();
    let hashed = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .map_err(|e| FetchError::Unavailable {
            name: name.clone(),
            message: format!("hashing task failed: {e}"),
        })?;
    match hashed {
        Ok((actual, bytes)) if actual == f.sha256 => Ok(Some(bytes)),
        Ok((actual, _)) => Err(FetchError::DigestMismatch {
            name,
            expected: f.sha256,
            actual,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FetchError::Unavailable {
            name,
            message: e.to_string(),
        }),
    }
}

fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
}

/// Refuses a parameters URL whose scheme this loader cannot fetch from.
pub fn check_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("https" | "http" | "s3" | "gs" | "az", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "unsupported parameters URL {url:?}: use https://, s3://, gs:// or az:// followed by a host or bucket"
        )),
    }
}

pub use zkfleet_contract::store::{Credentials, object_store_at, store_at};

/// An object store and the prefix the files live under.
struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
}

impl Remote {
    fn new(url: &str, credentials: Credentials) -> Result<Self, FetchError> {
        let url = url.trim_end_matches('/');
        // Generous overall timeout: zkeys of large circuits are gigabytes.
        let client = object_store::ClientOptions::new().with_timeout(Duration::from_secs(3600));
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: 5,
            retry_timeout: Duration::from_secs(120),
        };
        let (store, prefix) = store_at(url, client, retry, credentials)
            .map_err(|e| FetchError::Config(format!("{url}: {e}")))?;
        Ok(Remote {
            url: url.to_string(),
            store,
            prefix,
        })
    }

    /// The file from the cache, or downloaded into it.
    async fn fetch(&self, f: &FileSpec, cache_dir: &Path) -> Result<LocalFile, FetchError> {
        let start = Instant::now();
        let path = cache_path(cache_dir, &f.sha256);
        let local = |origin, bytes| LocalFile {
            name: f.name.clone(),
            sha256: f.sha256,
            path: path.clone(),
            origin,
            bytes,
            seconds: start.elapsed().as_secs_f64(),
        };
        // A cached file was checked before it got its name; hashing it again
        // costs little next to parsing and catches a damaged disk.
        match check_file(path.clone(), f).await {
            Ok(Some(bytes)) => return Ok(local(Origin::Cache, bytes)),
            Ok(None) => {}
            Err(FetchError::DigestMismatch { actual, .. }) => {
                tracing::warn!(file = f.name, %actual, "cached parameter file is damaged; downloading it again");
                let _ = tokio::fs::remove_file(&path).await;
            }
            Err(e) => return Err(e),
        }
        let bytes = self.download(f, &path, u64::MAX).await?;
        tracing::info!(
            file = f.name,
            bytes,
            seconds = start.elapsed().as_secs_f64(),
            "parameter file downloaded"
        );
        Ok(local(Origin::Download, bytes))
    }

    /// Streams the file into a temporary file beside `dest`, hashing it on the way, and
    /// renames it into place once its digest matches. More than `max_bytes` ends it.
    async fn download(&self, f: &FileSpec, dest: &Path, max_bytes: u64) -> Result<u64, FetchError> {
        let unavailable = |message: String| FetchError::Unavailable {
            name: f.name.clone(),
            message,
        };
        let location = self.prefix.clone().join(f.name.as_str());
        let dir = dest.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(dir)
            .map_err(|e| unavailable(format!("cannot create a file in {}: {e}", dir.display())))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| unavailable(e.to_string()))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| unavailable(format!("GET {}/{}: {e}", self.url, f.name)))?;
        let too_large = || FetchError::TooLarge {
            name: f.name.clone(),
            limit: max_bytes,
        };
        if result.meta.size > max_bytes {
            return Err(too_large());
        }
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                unavailable(format!(
                    "download of {}/{} broke off: {e}",
                    self.url, f.name
                ))
            })?;
            hasher.update(&chunk);
            total = total.saturating_add(chunk.len() as u64);
            if total > max_bytes {
                // The object grew, or the store's size was wrong: stop before the disk fills.
                return Err(too_large());
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| unavailable(format!("writing {}: {e}", dir.display())))?;
        }
        let actual = Digest::from_bytes(hasher.finalize().into());
        if actual != f.sha256 {
            // Dropping `tmp` deletes the partial file.
            return Err(FetchError::DigestMismatch {
                name: f.name.clone(),
                expected: f.sha256,
                actual,
            });
        }
        out.flush()
            .await
            .map_err(|e| unavailable(format!("writing {}: {e}", dir.display())))?;
        out.into_inner()
            .sync_all()
            .await
            .map_err(|e| unavailable(format!("writing {}: {e}", dir.display())))?;
        // Another pod may have renamed the same bytes into place meanwhile;
        // replacing them is harmless.
        tmp.persist(dest)
            .map_err(|e| unavailable(format!("cannot store {}: {e}", dest.display())))?;
        Ok(total)
    }
}

/// Makes `<dir>/<name>` point at each fetched file, so tools that expect the
/// files under their names (exec templates' `{params}`) find them.
pub fn link_into(fetched: &Fetched, dir: &Path) -> Result<(), FetchError> {
    for f in &fetched.files {
        let target = dir.join(&f.name);
        if target == f.path {
            continue;
        }
        let err = |e: std::io::Error| FetchError::Unavailable {
            name: f.name.clone(),
            message: format!("cannot link {} into {}: {e}", f.name, dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join(format!(".{}.link", f.name));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&f.path, &tmp).map_err(err)?;
        #[cfg(not(unix))]
        std::fs::copy(&f.path, &tmp).map_err(err)?;
        std::fs::rename(&tmp, &target).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_with_or_without_prefix() {
        let hex = "ab".repeat(32);
        let a: Digest = hex.parse().unwrap();
        let b: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), format!("sha256:{hex}"));
        assert!("abc".parse::<Digest>().is_err());
        assert!("zz".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn file_specs_are_plain_names_with_digests() {
        let f: FileSpec = format!("circuit.zkey={}", "01".repeat(32)).parse().unwrap();
        assert_eq!(f.name, "circuit.zkey");
        assert!(
            format!("../x={}", "01".repeat(32))
                .parse::<FileSpec>()
                .is_err()
        );
        assert!(
            format!("a/b={}", "01".repeat(32))
                .parse::<FileSpec>()
                .is_err()
        );
        assert!("circuit.zkey".parse::<FileSpec>().is_err());
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(
            Remote::new("ftp://example/x", Credentials::Ambient).map(|_| ()),
            Err(FetchError::Config(_))
        ));
    }
}
