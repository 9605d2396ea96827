//! Talking to the kubelet: gRPC over its unix socket, registration, and
//! noticing when the kubelet restarts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::api::RegisterRequest;
use super::api::registration_client::RegistrationClient;

/// Device-plugin API version we speak.
pub const API_VERSION: &str = "v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot connect to the kubelet at {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("the kubelet at {path} refused the registration: {source}")]
    Refused {
        path: PathBuf,
        source: tonic::Status,
    },
}

/// Opens a gRPC channel over a unix socket. The URI is a placeholder: the
/// connector ignores it and dials `path`.
pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Registers the plugin with the kubelet listening on `kubelet_socket`.
pub async fn register(
    kubelet_socket: &Path,
    request: RegisterRequest,
) -> Result<(), RegisterError> {
    let channel = unix_channel(kubelet_socket)
        .await
        .map_err(|error| RegisterError::Connect {
            path: kubelet_socket.to_owned(),
            reason: with_causes(&error),
        })?;
    RegistrationClient::new(channel)
        .register(request)
        .await
        .map_err(|source| RegisterError::Refused {
            path: kubelet_socket.to_owned(),
            source,
        })?;
    Ok(())
}

/// Which file a path names right now (device and inode), or `None` when it
/// does not exist. A restarted kubelet removes the plugin sockets and creates
/// a new kubelet.sock; comparing identities catches both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    pub fn of(path: &Path) -> Option<Self> {
        std::fs::symlink_metadata(path).ok().map(|meta| Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// "transport error" alone says little; the causes say what went wrong
/// (no such file, connection refused, ...).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
