//! zkfleet-fake-gpu: a kubelet device plugin advertising fake GPUs, so the
//! e2e cluster schedules and accounts GPU pods as a GPU node would.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use zkfleet_e2e::fake_gpu::{self, Config, DEFAULT_PLUGIN_DIR, DEFAULT_RESOURCE_NAME};

/// Advertise fake GPUs to the kubelet through the device-plugin API (v1beta1).
/// Containers get NVIDIA_VISIBLE_DEVICES and ZKFLEET_FAKE_GPU_DEVICES naming
/// their devices. Logging is set with RUST_LOG (default info).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of healthy devices to advertise (IDs fake-gpu-0 .. fake-gpu-<count-1>).
    #[arg(long, env = "ZKFLEET_FAKE_GPU_COUNT", default_value_t = 4)]
    count: u32,
    /// Extended resource name to advertise.
    #[arg(long, env = "ZKFLEET_FAKE_GPU_RESOURCE_NAME", default_value = DEFAULT_RESOURCE_NAME)]
    resource_name: String,
    /// Directory of the kubelet's device-plugin sockets.
    #[arg(long, env = "ZKFLEET_FAKE_GPU_PLUGIN_DIR", default_value = DEFAULT_PLUGIN_DIR)]
    plugin_dir: PathBuf,
    /// The kubelet's registration socket [default: <plugin-dir>/kubelet.sock].
    #[arg(long, env = "ZKFLEET_FAKE_GPU_KUBELET_SOCKET")]
    kubelet_socket: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = Config::new(args.count, args.resource_name, args.plugin_dir);
    if let Some(kubelet_socket) = args.kubelet_socket {
        config.kubelet_socket = kubelet_socket;
    }
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    fake_gpu::run(config, shutdown).await?;
    Ok(())
}
