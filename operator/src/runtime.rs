//! Wires the operator together: admin server, leader election, the controllers, and a graceful
//! shutdown on SIGTERM/SIGINT that finishes passes in flight and releases the Lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState};
use crate::artifacts::ArtifactStore;
use crate::build::BuildContext;
use crate::config::Cli;
use crate::dispatcher::{self, Dispatcher};
use crate::leader::{Elector, Timing};
use crate::metrics::Metrics;
use crate::{external_metrics, job, keda_scaler, pool, telemetry};

/// Runs the operator until SIGTERM/SIGINT, or until it loses the leader Lease (then it exits
/// with an error so that Kubernetes restarts it as a standby).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    // Traces are optional: a bad OTLP setting costs the traces, not the operator.
    let traces =
        zkfleet_contract::trace::Telemetry::from_env("zkfleet-operator").unwrap_or_else(|e| {
            error!(error = %e, "tracing is off");
            None
        });
    if traces.is_some() {
        info!("sending traces over OTLP");
    }
    let outcome = operate(cli).await;
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    outcome
}

async fn operate(cli: Cli) -> anyhow::Result<()> {
    let identity = cli.identity();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %identity,
        namespace = %cli.namespace,
        watch_namespace = cli.watch_namespace().as_deref().unwrap_or("(all)"),
        "starting"
    );

    let client = Client::try_default()
        .await
        .context("no Kubernetes client: set KUBECONFIG or run in a pod")?;
    let metrics = Arc::new(Metrics::new());
    let leader = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });

    let admin = tokio::spawn(serve_admin(
        cli.admin_addr,
        AdminState {
            leader: leader.clone(),
            metrics: metrics.clone(),
        },
        shutdown_rx.clone(),
    ));

    let elector = Elector::new(
        client.clone(),
        &cli.namespace,
        &cli.lease_name,
        &identity,
        Timing::default(),
    );
    let mut waiting = shutdown_rx.clone();
    if !elector.acquire(&mut waiting).await {
        admin.await??;
        return Ok(());
    }
    leader.store(true, Ordering::Release);
    metrics.set_leader(true);

    let artifacts = match cli.artifacts_url.trim() {
        "" => None,
        url => Some(
            ArtifactStore::new(url).with_context(|| format!("opening the artifact store {url}"))?,
        ),
    };
    let dispatcher = Dispatcher::new(
        client.clone(),
        dispatcher::Settings {
            lease_duration: Duration::from_secs(cli.lease_seconds),
            max_wait: Duration::from_secs(25),
            inline_result_max_bytes: cli.inline_result_max_bytes as usize,
            verifier_url: None,
        },
        metrics.clone(),
        artifacts.clone(),
        cli.watch_namespace(),
    );
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "zkfleet-operator".into(),
            instance: Some(identity),
        },
    );
    let pool_ctx = Arc::new(pool::Context {
        client: client.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        build: BuildContext {
            prover_image: cli.prover_image.clone(),
            operator_namespace: cli.namespace.clone(),
            parameters_cache_path: cli.parameters_cache_path.clone(),
            dispatcher_url: cli.dispatcher_url(),
            prover_env: cli.prover_env.0.clone(),
            metrics_scraper: cli.metrics_scraper.0.clone(),
        },
        rollout_deadline: Duration::from_secs(cli.rollout_deadline_seconds),
        watch_namespace: cli.watch_namespace(),
        queues: dispatcher.clone(),
    });
    let job_ctx = Arc::new(job::Context {
        client: client.clone(),
        recorder,
        metrics: metrics.clone(),
        queue: dispatcher.clone(),
        artifacts,
        watch_namespace: cli.watch_namespace(),
    });
    let listener = tokio::net::TcpListener::bind(cli.dispatcher_addr)
        .await
        .with_context(|| format!("binding the dispatcher to {}", cli.dispatcher_addr))?;
    info!(addr = %cli.dispatcher_addr, "dispatcher listening");
    let server = axum::serve(
        listener,
        dispatcher::server::router(dispatcher.clone())
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown(shutdown_rx.clone()));
    // Only the leader serves the metrics: they live in its dispatcher, and the Service routes
    // to the leader alone. A failure costs autoscaling its metrics, not the operator.
    let metrics_api = async {
        let Some(addr) = cli.external_metrics_addr else {
            return;
        };
        let loads: Arc<dyn external_metrics::PoolLoads> = dispatcher.clone();
        if let Err(e) = external_metrics::serve(
            addr,
            cli.external_metrics_cert.clone(),
            cli.external_metrics_key.clone(),
            client.clone(),
            loads,
            shutdown(shutdown_rx.clone()),
        )
        .await
        {
            error!(error = %e, "external metrics API failed: autoscaled ProverPools get no metrics");
        }
    };
    let keda_scaler = async {
        let Some(addr) = cli.keda_scaler_addr else {
            return;
        };
        let pools: Arc<dyn keda_scaler::PoolScalings> = dispatcher.clone();
        if let Err(e) = keda_scaler::serve(addr, pools, shutdown(shutdown_rx.clone())).await {
            error!(error = %e, "KEDA external scaler failed: ScaledObjects get no metrics");
        }
    };
    let controllers = async {
        tokio::join!(
            metrics_api,
            keda_scaler,
            pool::run(pool_ctx, shutdown(shutdown_rx.clone())),
            job::run(job_ctx, shutdown(shutdown_rx.clone())),
            dispatcher.clone().run(shutdown(shutdown_rx.clone())),
            async {
                if let Err(e) = server.await {
                    error!(error = %e, "dispatcher server failed");
                }
            },
        );
    };

    let outcome = tokio::select! {
        () = controllers => Ok(()),
        lost = elector.hold() => Err(lost),
    };
    leader.store(false, Ordering::Release);
    metrics.set_leader(false);
    match outcome {
        Ok(()) => {
            if let Err(e) = elector.release().await {
                warn!(error = %e, "could not release the lease; a standby takes over when it expires");
            }
            admin.await??;
            info!("stopped");
            Ok(())
        }
        Err(lost) => {
            error!(error = %lost, "lost leadership; exiting so a standby can lead");
            Err(lost.into())
        }
    }
}

async fn serve_admin(
    addr: SocketAddr,
    state: AdminState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin server to {addr}"))?;
    info!(%addr, "admin server listening");
    axum::serve(listener, admin::router(state))
        .with_graceful_shutdown(shutdown(stop))
        .await
        .context("admin server")
}

/// Resolves once shutdown was requested.
async fn shutdown(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
