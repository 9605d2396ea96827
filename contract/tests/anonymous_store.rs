//! A tenant's URL is fetched without the process's credentials, even when the environment
//! holds some.
#![cfg(feature = "object-store")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;

use object_store::ObjectStoreExt as _;
use zkfleet_contract::store::{Credentials, store_at};

/// Serves one request per connection with a 404 and sends each request's header names back.
fn recording_server() -> (String, mpsc::Receiver<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut names = Vec::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((name, _)) = line.split_once(':') {
                    names.push(name.trim().to_ascii_lowercase());
                }
                line.clear();
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            let _ = tx.send(names);
        }
    });
    (address, rx)
}

/// Set in the child process that holds the platform's credentials in its environment.
const CHILD: &str = "ZKFLEET_ANONYMOUS_STORE_CHILD";

#[test]
fn tenant_urls_are_read_unsigned_whatever_credentials_the_pod_holds() {
    if std::env::var_os(CHILD).is_some() {
        return reads_in_a_credentialed_environment();
    }
    // The environment is set on a child process (this same test binary): setting it here
    // would race the other tests' threads.
    let (endpoint, requests) = recording_server();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--nocapture",
            "tenant_urls_are_read_unsigned_whatever_credentials_the_pod_holds",
        ])
        .env(CHILD, "1")
        .env("AWS_ACCESS_KEY_ID", "AKIAPLATFORMKEY")
        .env("AWS_SECRET_ACCESS_KEY", "platform-secret")
        .env("AWS_ENDPOINT", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .status()
        .unwrap();
    assert!(status.success());
    let ambient = requests
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert!(
        ambient.iter().any(|h| h == "authorization"),
        "the platform's own reads are signed: {ambient:?}"
    );
    let anonymous = requests
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert!(
        !anonymous
            .iter()
            .any(|h| h == "authorization" || h.starts_with("x-amz-security")),
        "a tenant's URL is read unsigned: {anonymous:?}"
    );
}

/// One read of `s3://bucket/inputs/in.json` with the platform's credentials, then one
/// anonymous, against the endpoint the environment names.
fn reads_in_a_credentialed_environment() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for credentials in [Credentials::Ambient, Credentials::Anonymous] {
        let retry = object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        };
        let (store, prefix) = store_at(
            "s3://bucket/inputs",
            // The recording server speaks plain HTTP.
            object_store::ClientOptions::new().with_allow_http(true),
            retry,
            credentials,
        )
        .unwrap();
        let _ = runtime.block_on(store.get(&prefix.clone().join("in.json")));
    }
}
