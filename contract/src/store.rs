//! Which object store a URL names: `https://` (and `http://` for in-cluster mirrors), `s3://`,
//! `gs://` and `az://`, with credentials from the standard `AWS_*`, `GOOGLE_*` and `AZURE_*`
//! variables. The operator (artifacts, verifying keys) and the prover (parameters, inputs) read
//! the same URLs the same way.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;

/// The object store at `url` (`https://`, `http://`, `s3://`, `gs://`, `az://`) and the prefix
/// the files live under. Object stores take the bucket (container) from the URL and credentials
/// from the standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`); the rest of the
/// path is the prefix. An HTTP store's base is the whole URL. Shared with the operator, which
/// reads verifying keys and stores proofs the same way.
pub fn object_store_at(
    url: &str,
    client: object_store::ClientOptions,
    retry: object_store::RetryConfig,
) -> Result<(Arc<dyn ObjectStore>, StorePath), String> {
    store_at(url, client, retry, Credentials::Ambient)
}

/// Whose credentials a request to an object store carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// The process's own, from the standard environment variables and the cloud's metadata
    /// service: for URLs the platform chose (parameters, artifacts, verifying keys).
    Ambient,
    /// None: requests are unsigned, so only public objects can be read. For URLs a tenant
    /// chose (job inputs); otherwise a tenant could have the pool's pods read any object
    /// their service account can (a confused deputy). A tenant with a private object hands
    /// over a presigned `https://` URL: its own credential, for that object alone.
    Anonymous,
}

/// [`object_store_at`] with the credentials chosen.
pub fn store_at(
    url: &str,
    client: object_store::ClientOptions,
    retry: object_store::RetryConfig,
    credentials: Credentials,
) -> Result<(Arc<dyn ObjectStore>, StorePath), String> {
    let ambient = credentials == Credentials::Ambient;
    let url = url.trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "it is not a URL (no scheme)".to_string())?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("it names no host or bucket".into());
    }
    let bad = |e: object_store::Error| e.to_string();
    let store: Arc<dyn ObjectStore> = match scheme {
        "https" | "http" => {
            let store = object_store::http::HttpBuilder::new()
                .with_url(url)
                .with_client_options(client.with_allow_http(scheme == "http"))
                .with_retry(retry)
                .build()
                .map_err(bad)?;
            return Ok((Arc::new(store), StorePath::default()));
        }
        "s3" => Arc::new(
            if ambient {
                object_store::aws::AmazonS3Builder::from_env()
            } else {
                anonymous_s3().with_skip_signature(true)
            }
            .with_url(url)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(bad)?,
        ),
        "gs" => Arc::new(
            if ambient {
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
            } else {
                object_store::gcp::GoogleCloudStorageBuilder::new().with_skip_signature(true)
            }
            .with_url(url)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(bad)?,
        ),
        "az" => Arc::new(
            if ambient {
                object_store::azure::MicrosoftAzureBuilder::from_env()
            } else {
                // The account name is no credential; the pod's environment names it, as
                // `az://container/...` URLs do not.
                let account = std::env::var("AZURE_STORAGE_ACCOUNT_NAME").unwrap_or_default();
                object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(account)
                    .with_skip_signature(true)
            }
            .with_url(url)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(bad)?,
        ),
        other => {
            return Err(format!(
                "unsupported URL scheme {other:?}: use https://, s3://, gs:// or az://"
            ));
        }
    };
    let prefix = StorePath::parse(prefix).map_err(|e| format!("bad path: {e}"))?;
    Ok((store, prefix))
}

/// An S3 builder with the endpoint, region and transport settings of the environment (a
/// MinIO or regional endpoint) but none of its credentials, session tokens or roles.
fn anonymous_s3() -> object_store::aws::AmazonS3Builder {
    const NOT_CREDENTIALS: &[&str] = &[
        "AWS_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ALLOW_HTTP",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    ];
    let mut builder = object_store::aws::AmazonS3Builder::new();
    for key in NOT_CREDENTIALS {
        if let (Ok(value), Ok(config_key)) = (std::env::var(key), key.to_ascii_lowercase().parse())
        {
            builder = builder.with_config(config_key, value);
        }
    }
    builder
}

/// `url` without its query and fragment, for messages, logs and status: a presigned URL
/// carries its signature (a credential) in the query.
pub fn redacted(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(at) => format!("{}?…", &url[..at]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presigned_urls_signature_is_not_repeated() {
        assert_eq!(
            redacted("https://b.s3.amazonaws.com/in.json?X-Amz-Signature=abc&X-Amz-Credential=k"),
            "https://b.s3.amazonaws.com/in.json?…"
        );
        assert_eq!(redacted("https://h/in.json#frag"), "https://h/in.json?…");
        assert_eq!(redacted("s3://bucket/in.json"), "s3://bucket/in.json");
    }
}
