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
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(bad)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(bad)?,
        ),
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
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
