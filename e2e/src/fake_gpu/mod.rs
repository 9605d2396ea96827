//! Fake GPU device plugin: advertises healthy fake devices of an extended
//! resource (default `nvidia.com/gpu`) to the kubelet through the device-plugin
//! gRPC API, so GPU pods are scheduled and accounted as on a real GPU node.
//!
//! Lifecycle: bind our socket in the plugin directory, serve DevicePlugin on
//! it, register with the kubelet, then watch the directory. A restarted
//! kubelet deletes the plugin sockets and recreates kubelet.sock; when either
//! happens we start over, so the node keeps its capacity.

pub mod api {
    //! Generated from e2e/proto/deviceplugin.proto.
    tonic::include_proto!("v1beta1");
}
mod kubelet;
mod plugin;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

pub use kubelet::{API_VERSION, FileIdentity, RegisterError, register, unix_channel};
pub use plugin::{
    FakeGpuPlugin, HEALTHY, NVIDIA_VISIBLE_DEVICES, ZKFLEET_FAKE_GPU_DEVICES, device_ids, options,
};

use api::RegisterRequest;
use api::device_plugin_server::DevicePluginServer;

/// Where the kubelet expects device plugins (and its own kubelet.sock).
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// Resource name a real NVIDIA plugin advertises.
pub const DEFAULT_RESOURCE_NAME: &str = "nvidia.com/gpu";
/// Name of the kubelet's registration socket inside the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// How long a stopping server may take to close its connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// Number of devices, named `fake-gpu-0` .. `fake-gpu-<count-1>`.
    pub count: u32,
    /// Extended resource name, `<domain>/<name>`.
    pub resource_name: String,
    /// Directory holding kubelet.sock and the plugin sockets.
    pub plugin_dir: PathBuf,
    /// The kubelet's registration socket; `<plugin_dir>/kubelet.sock` normally.
    pub kubelet_socket: PathBuf,
    /// How often to look for a kubelet restart.
    pub poll_interval: Duration,
    /// Longest wait between registration attempts while the kubelet is away.
    pub max_retry_delay: Duration,
}

impl Config {
    pub fn new(
        count: u32,
        resource_name: impl Into<String>,
        plugin_dir: impl Into<PathBuf>,
    ) -> Self {
        let plugin_dir = plugin_dir.into();
        Self {
            count,
            resource_name: resource_name.into(),
            kubelet_socket: plugin_dir.join(KUBELET_SOCKET),
            plugin_dir,
            poll_interval: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(5),
        }
    }

    /// Socket file name, one per resource so several plugins can share the directory.
    pub fn socket_name(&self) -> String {
        let resource: String = self
            .resource_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("zkfleet-fake-gpu-{resource}.sock")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.plugin_dir.join(self.socket_name())
    }

    fn register_request(&self) -> RegisterRequest {
        RegisterRequest {
            version: API_VERSION.to_owned(),
            endpoint: self.socket_name(),
            resource_name: self.resource_name.clone(),
            options: Some(options()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "resource name {0:?} is not an extended resource name like nvidia.com/gpu \
         (<domain>/<name>, outside kubernetes.io)"
    )]
    InvalidResourceName(String),
    #[error("cannot create the plugin directory {path}: {source}")]
    PluginDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the device plugin server on {path} stopped: {reason}")]
    ServerStopped { path: PathBuf, reason: String },
}

fn validate_resource_name(name: &str) -> Result<(), Error> {
    let valid = match name.split_once('/') {
        Some((domain, resource)) => {
            !domain.is_empty()
                && !resource.is_empty()
                && !resource.contains('/')
                && domain.contains('.')
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidResourceName(name.to_owned()))
    }
}

/// Runs the plugin until `shutdown` completes, then removes its socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    validate_resource_name(&config.resource_name)?;
    tracing::info!(
        count = config.count,
        resource = %config.resource_name,
        socket = %config.socket_path().display(),
        kubelet = %config.kubelet_socket.display(),
        "starting fake GPU device plugin"
    );
    tokio::pin!(shutdown);
    loop {
        let server = PluginServer::start(&config)?;
        let outcome = tokio::select! {
            () = &mut shutdown => Restart::Shutdown,
            outcome = register_and_watch(&config, &server) => outcome,
        };
        server.stop().await;
        match outcome {
            Restart::Shutdown => {
                tracing::info!("stopped");
                return Ok(());
            }
            Restart::KubeletRestarted(why) => {
                tracing::info!(why, "kubelet restarted; serving again and re-registering");
            }
            Restart::ServerStopped(reason) => {
                return Err(Error::ServerStopped {
                    path: config.socket_path(),
                    reason,
                });
            }
        }
    }
}

enum Restart {
    Shutdown,
    KubeletRestarted(&'static str),
    ServerStopped(String),
}

/// Registers (retrying until the kubelet answers), then waits for a sign
/// that the kubelet restarted or that our server died.
async fn register_and_watch(config: &Config, server: &PluginServer) -> Restart {
    let mut delay = config.poll_interval.min(Duration::from_millis(200));
    let mut waiting = false;
    let kubelet = loop {
        if let Some(restart) = server.check() {
            return restart;
        }
        let kubelet = FileIdentity::of(&config.kubelet_socket);
        if kubelet.is_some() {
            match register(&config.kubelet_socket, config.register_request()).await {
                Ok(()) => {
                    tracing::info!(
                        resource = %config.resource_name,
                        devices = config.count,
                        "registered with the kubelet"
                    );
                    break kubelet;
                }
                Err(error) => tracing::warn!(%error, retry_in = ?delay, "registration failed"),
            }
        } else if !waiting {
            waiting = true;
            tracing::info!(
                kubelet = %config.kubelet_socket.display(),
                "waiting for the kubelet socket to appear"
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(config.max_retry_delay);
    };
    loop {
        tokio::time::sleep(config.poll_interval).await;
        if let Some(restart) = server.check() {
            return restart;
        }
        if FileIdentity::of(&config.kubelet_socket) != kubelet {
            return Restart::KubeletRestarted("kubelet socket replaced");
        }
    }
}

/// One generation of the DevicePlugin gRPC server on our socket.
struct PluginServer {
    path: PathBuf,
    identity: FileIdentity,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl PluginServer {
    fn start(config: &Config) -> Result<Self, Error> {
        // The kubelet creates the directory too; whoever starts first makes it.
        std::fs::create_dir_all(&config.plugin_dir).map_err(|source| Error::PluginDir {
            path: config.plugin_dir.clone(),
            source,
        })?;
        let path = config.socket_path();
        remove_socket(&path);
        let listener = UnixListener::bind(&path).map_err(|source| Error::Bind {
            path: path.clone(),
            source,
        })?;
        let identity = FileIdentity::of(&path).ok_or_else(|| Error::Bind {
            path: path.clone(),
            source: std::io::Error::other("the socket vanished right after it was created"),
        })?;
        let (stop, stopped) = watch::channel(false);
        let plugin = FakeGpuPlugin::new(device_ids(config.count), stopped.clone());
        let mut signal = stopped;
        let task = tokio::spawn(
            Server::builder()
                .add_service(DevicePluginServer::new(plugin))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    // An error means the sender is gone, which also means stop.
                    let _ = signal.wait_for(|stopped| *stopped).await;
                }),
        );
        Ok(Self {
            path,
            identity,
            stop,
            task,
        })
    }

    /// Whether this generation has to end: our socket was deleted or
    /// replaced (a restarting kubelet clears the directory), or the server died.
    fn check(&self) -> Option<Restart> {
        if self.task.is_finished() {
            return Some(Restart::ServerStopped("the gRPC server exited".to_owned()));
        }
        if FileIdentity::of(&self.path) != Some(self.identity) {
            return Some(Restart::KubeletRestarted("plugin socket removed"));
        }
        None
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let mut task = self.task;
        match tokio::time::timeout(STOP_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "device plugin server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "device plugin server task failed"),
            Err(_) => {
                tracing::warn!("device plugin server did not stop in time; aborting it");
                task.abort();
            }
        }
        // Only remove the socket if it is still ours, not a newer plugin's.
        if FileIdentity::of(&self.path) == Some(self.identity) {
            remove_socket(&self.path);
        }
    }
}

fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, path = %path.display(), "cannot remove socket"),
    }
}

#[cfg(test)]
mod tests;
