//! The parameters loader against real sources on loopback: a directory, an
//! HTTP server that counts requests, and a server that breaks off downloads;
//! then the real binary fetching its parameters before it becomes ready.

mod common;

use common::wait_for;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use zkfleet_prover::params::{self, Digest, FetchError, FileSpec, Origin, Source, Spec};

/// Files served by name, and how many GETs arrived.
#[derive(Clone, Default)]
struct Files {
    files: Arc<HashMap<String, Vec<u8>>>,
    requests: Arc<AtomicUsize>,
}

async fn serve_file(State(s): State<Files>, UrlPath(name): UrlPath<String>) -> impl IntoResponse {
    s.requests.fetch_add(1, Ordering::SeqCst);
    match s.files.get(&name) {
        Some(b) => (StatusCode::OK, b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// An HTTP server on 127.0.0.1 serving `files` under `/params/<name>`;
/// returns its base URL and the request counter.
async fn file_server(files: &[(&str, &[u8])]) -> (String, Arc<AtomicUsize>) {
    let state = Files {
        files: Arc::new(
            files
                .iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect(),
        ),
        requests: Arc::default(),
    };
    let requests = state.requests.clone();
    let app = axum::Router::new()
        .route("/params/{name}", axum::routing::get(serve_file))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/params"), requests)
}

fn spec(source: Source, files: &[(&str, &[u8])]) -> Spec {
    Spec {
        source,
        files: files
            .iter()
            .map(|(n, b)| FileSpec::new(n, Digest::of(b)).unwrap())
            .collect(),
    }
}

/// Every entry of `<cache>/files`, temporary files included.
fn cache_entries(cache: &Path) -> Vec<String> {
    match std::fs::read_dir(cache.join("files")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

const ZKEY: &[u8] = b"zkey: not a real one, the loader only cares about bytes";
const WASM: &[u8] = b"\0asm and some more bytes";

#[tokio::test]
async fn a_directory_source_is_checked_in_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("circuit.zkey"), ZKEY).unwrap();
    std::fs::write(dir.path().join("circuit.wasm"), WASM).unwrap();
    let good = spec(
        Source::Dir(dir.path().into()),
        &[("circuit.zkey", ZKEY), ("circuit.wasm", WASM)],
    );
    let fetched = params::fetch(&good, None).await.unwrap();
    let zkey = fetched.get("circuit.zkey").unwrap();
    assert_eq!(zkey.path, dir.path().join("circuit.zkey"));
    assert_eq!(zkey.origin, Origin::Dir);
    assert_eq!(zkey.bytes, ZKEY.len() as u64);

    // The mounted file changed: refused, naming the file and both digests.
    let stale = spec(Source::Dir(dir.path().into()), &[("circuit.zkey", WASM)]);
    let err = params::fetch(&stale, None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
    assert!(
        text.starts_with(&format!(
            "parameters digest {} does not match file circuit.zkey",
            Digest::of(WASM)
        )),
        "{text}"
    );
    assert!(text.contains(&Digest::of(ZKEY).hex()), "{text}");

    let missing = spec(Source::Dir(dir.path().into()), &[("other.zkey", ZKEY)]);
    let err = params::fetch(&missing, None).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("other.zkey"), "{err}");
}

#[tokio::test]
async fn downloads_are_checked_cached_by_digest_and_reused() {
    let (url, requests) = file_server(&[("circuit.zkey", ZKEY), ("circuit.wasm", WASM)]).await;
    let cache = tempfile::tempdir().unwrap();
    let want = spec(
        Source::Url(url),
        &[("circuit.zkey", ZKEY), ("circuit.wasm", WASM)],
    );

    let first = params::fetch(&want, Some(cache.path())).await.unwrap();
    let zkey = first.get("circuit.zkey").unwrap();
    assert_eq!(zkey.origin, Origin::Download);
    assert_eq!(
        zkey.path,
        cache.path().join("files").join(Digest::of(ZKEY).hex())
    );
    assert_eq!(std::fs::read(&zkey.path).unwrap(), ZKEY);
    assert_eq!(first.downloaded_bytes(), (ZKEY.len() + WASM.len()) as u64);
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    // A restart, or a second pod on the node: nothing is downloaded.
    let second = params::fetch(&want, Some(cache.path())).await.unwrap();
    assert!(second.files.iter().all(|f| f.origin == Origin::Cache));
    assert_eq!(second.downloaded_bytes(), 0);
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    // A damaged cache entry is noticed and downloaded again.
    std::fs::write(&zkey.path, b"bit rot").unwrap();
    let third = params::fetch(&want, Some(cache.path())).await.unwrap();
    assert_eq!(third.get("circuit.zkey").unwrap().origin, Origin::Download);
    assert_eq!(std::fs::read(&zkey.path).unwrap(), ZKEY);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_download_with_the_wrong_digest_is_never_kept() {
    let (url, _) = file_server(&[("circuit.zkey", WASM)]).await;
    let cache = tempfile::tempdir().unwrap();
    let want = spec(Source::Url(url), &[("circuit.zkey", ZKEY)]);
    let err = params::fetch(&want, Some(cache.path())).await.unwrap_err();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "parameters digest {} does not match file circuit.zkey",
            Digest::of(ZKEY)
        )),
        "{err}"
    );
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_remote_file_is_unavailable() {
    let (url, _) = file_server(&[]).await;
    let cache = tempfile::tempdir().unwrap();
    let want = spec(Source::Url(url), &[("circuit.zkey", ZKEY)]);
    let err = params::fetch(&want, Some(cache.path())).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("circuit.zkey"), "{err}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_truncated_download_is_never_used() {
    // Announces the whole file, sends half of it, and hangs up: every time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                ZKEY.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&ZKEY[..ZKEY.len() / 2]).await;
            let _ = conn.shutdown().await;
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let want = spec(
        Source::Url(format!("http://{addr}/params")),
        &[("circuit.zkey", ZKEY)],
    );
    let err = params::fetch(&want, Some(cache.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Unavailable { .. } | FetchError::DigestMismatch { .. }
        ),
        "{err}"
    );
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

fn http(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn json_of(addr: &str, path: &str) -> Value {
    // Null until the server answers.
    http(addr, path)
        .ok()
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or(Value::Null)
}

struct Pod {
    child: Child,
    addr: String,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_pod(url: &str, cache: &Path, links: &Path, zkey_sha: &str, wasm_sha: &str) -> Pod {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_zkfleet-prover"))
        .args(["serve", "--listen", &addr, "--parameters-url", url])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--parameters-dir")
        .arg(links)
        .args(["--zkey-sha256", zkey_sha, "--wasm", "circuit.wasm"])
        .arg("--parameter-file")
        .arg(format!("circuit.wasm={wasm_sha}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Pod { child, addr }
}

#[test]
fn the_pod_is_ready_only_once_its_downloaded_parameters_check_out() {
    let dir = common::circuit("mulchain");
    let zkey = std::fs::read(dir.join("circuit.zkey")).unwrap();
    let wasm = std::fs::read(dir.join("circuit.wasm")).unwrap();
    let (zkey_sha, wasm_sha) = (Digest::of(&zkey).hex(), Digest::of(&wasm).hex());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, requests) = rt.block_on(file_server(&[
        ("circuit.zkey", &zkey),
        ("circuit.wasm", &wasm),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let (cache, links) = (tmp.path().join("cache"), tmp.path().join("params"));

    // First pod on the node: downloads, checks, loads, becomes ready.
    let pod = start_pod(&url, &cache, &links, &zkey_sha, &wasm_sha);
    wait_for("readiness", || {
        http(&pod.addr, "/readyz").is_ok_and(|(s, _)| s == 200)
    });
    let info = json_of(&pod.addr, "/v1/info");
    let files = info["parameters"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(files.len(), 2, "{info}");
    assert!(files.iter().all(|f| f["origin"] == "download"), "{info}");
    assert!(info["parameters"]["load_seconds"].is_number(), "{info}");
    assert_eq!(info["parameters"]["digest"], format!("sha256:{zkey_sha}"));
    let (_, metrics) = http(&pod.addr, "/metrics").unwrap();
    assert!(metrics.contains("zkfleet_prover_parameters_load_seconds"));
    assert!(metrics.contains(&format!(
        "zkfleet_prover_parameters_downloaded_bytes_total {}",
        zkey.len() + wasm.len()
    )));
    // The files are also under their names, for exec templates.
    assert_eq!(std::fs::read(links.join("circuit.zkey")).unwrap(), zkey);
    drop(pod);
    let downloads = requests.load(Ordering::SeqCst);
    assert_eq!(downloads, 2);

    // A restart: ready again without a single request.
    let pod = start_pod(&url, &cache, &links, &zkey_sha, &wasm_sha);
    wait_for("readiness after restart", || {
        http(&pod.addr, "/readyz").is_ok_and(|(s, _)| s == 200)
    });
    let info = json_of(&pod.addr, "/v1/info");
    assert!(
        info["parameters"]["files"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["origin"] == "cache")),
        "{info}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), downloads);
    drop(pod);

    // The pool names a digest the server's file does not have: the pod stays
    // up, not ready, and says why.
    let wrong = "0".repeat(64);
    let pod = start_pod(&url, &tmp.path().join("cache2"), &links, &wrong, &wasm_sha);
    wait_for("the digest mismatch to be reported", || {
        json_of(&pod.addr, "/v1/info")["parameters"]["error"]["code"] == "digest_mismatch"
    });
    let (status, body) = http(&pod.addr, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains(&format!(
            "parameters digest sha256:{wrong} does not match file circuit.zkey"
        )),
        "{body}"
    );
    assert_eq!(http(&pod.addr, "/healthz").unwrap().0, 200);
    rt.shutdown_background();
}

#[tokio::test]
async fn an_unwritable_cache_falls_back_to_a_pod_local_directory() {
    let (url, _) = file_server(&[("circuit.zkey", ZKEY)]).await;
    // A plain file where the cache directory should be: nothing can be created
    // under it, whoever runs the test (root ignores permission bits).
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let want = spec(Source::Url(url), &[("circuit.zkey", ZKEY)]);
    let fetched = params::fetch(&want, Some(blocker.path())).await.unwrap();
    let file = fetched.get("circuit.zkey").unwrap();
    assert!(
        file.path
            .starts_with(std::env::temp_dir().join("zkfleet-parameters")),
        "downloaded to {}",
        file.path.display()
    );
    assert_eq!(std::fs::read(&file.path).unwrap(), ZKEY);
}

/// A tenant's input URL: a mismatch says so without the object's digest, a presigned URL's
/// query never appears in an error, and an object past the size limit is refused.
#[tokio::test]
async fn input_downloads_reveal_no_digest_and_stop_at_their_size_limit() {
    let object = b"an object some other tenant stored".to_vec();
    let (base, _) = file_server(&[("input.json", &object)]).await;
    let dir = tempfile::tempdir().unwrap();
    let limits = params::InputLimits {
        max_bytes: 1 << 20,
        timeout: std::time::Duration::from_secs(30),
    };
    let presigned = format!("{base}/input.json?X-Amz-Signature=tenant-secret");
    let guess = Digest::of(b"a guess");
    let err = params::download_input(&presigned, guess, dir.path(), limits)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, FetchError::InputMismatch { .. }), "{err:?}");
    assert!(message.contains("does not match"), "{message}");
    assert!(
        !message.contains(&Digest::of(&object).hex()),
        "the object's digest is not an oracle: {message}"
    );
    assert!(!message.contains("tenant-secret"), "{message}");

    let right = Digest::of(&object);
    let small = params::InputLimits {
        max_bytes: 8,
        ..limits
    };
    let err = params::download_input(&format!("{base}/input.json"), right, dir.path(), small)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 8, .. }),
        "{err:?}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing kept"
    );

    let missing = params::download_input(
        &format!("{base}/gone.json?sig=tenant-secret"),
        right,
        dir.path(),
        limits,
    )
    .await
    .unwrap_err();
    assert!(!missing.to_string().contains("tenant-secret"), "{missing}");

    let path = params::download_input(&format!("{base}/input.json"), right, dir.path(), limits)
        .await
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), object);
}
