//! zkfleet-prover: the prover pod binary (see `zkfleet-prover --help`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use zkfleet_prover::agent::Agent;
use zkfleet_prover::backend::{
    self, Backend, Groth16Backend, Groth16Files, LoadContext, ParamsError, ProofInput,
};
use zkfleet_prover::config::{Cli, Command, LogFormat, ProveArgs, ResolvedFiles, ServeArgs};
use zkfleet_prover::groth16::{json, preprocessed};
use zkfleet_prover::params;
use zkfleet_prover::server::{AppState, router};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Prove(args) => prove(args),
        Command::ExportVk { zkey, out } => {
            let (z, _) = preprocessed::load(&zkey, None, None)?;
            let text = serde_json::to_string_pretty(&json::verification_key_json(&z.pk.vk))?;
            if out == "-" {
                println!("{text}");
            } else {
                std::fs::write(&out, text).with_context(|| format!("writing {out}"))?;
            }
            Ok(())
        }
    }
}

fn prove(args: ProveArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let files = Groth16Files {
        zkey: args.zkey,
        zkey_sha256: None,
        wasm: args.wasm,
        wasm_sha256: None,
        r1cs: None,
        r1cs_sha256: None,
        cache_dir: args.cache_dir,
    };
    let backend = Groth16Backend::load(&files)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let input = match (args.wtns, args.input) {
        (Some(w), _) => {
            ProofInput::Wtns(std::fs::read(&w).with_context(|| format!("reading {}", w.display()))?)
        }
        (None, Some(i)) => ProofInput::Inputs(serde_json::from_slice(
            &std::fs::read(&i).with_context(|| format!("reading {}", i.display()))?,
        )?),
        (None, None) => anyhow::bail!("give --wtns or --input"),
    };
    let out = backend.prove(input, &zkfleet_prover::cancel::Cancel::new())?;
    std::fs::write(&args.proof, serde_json::to_string_pretty(&out.proof)?)?;
    std::fs::write(
        &args.public,
        serde_json::to_string_pretty(&out.public_signals)?,
    )?;
    eprintln!(
        "zkfleet-prover: load {load_ms:.1} ms ({}), witness {:.1} ms, prove {:.1} ms",
        if backend.report.from_cache {
            "preprocessed"
        } else {
            "parsed"
        },
        out.timings.witness_ms,
        out.timings.prove_ms
    );
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Traces are optional: a bad OTLP setting costs the traces, not the pod.
        let traces =
            zkfleet_contract::trace::Telemetry::from_env("zkfleet-prover").unwrap_or_else(|e| {
                tracing::error!(error = %e, "tracing is off");
                None
            });
        let outcome = run(args).await;
        if let Some(traces) = traces {
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        outcome
    })
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let state = AppState::new(
        args.backend.name(),
        args.parameters_version.clone(),
        args.slots as usize,
        Duration::from_secs(args.proof_timeout_seconds),
        args.max_body_bytes,
    )?;
    if let Some(pod) = &args.pod_name {
        state.set_pod_name(pod);
    }
    let agent = match args.agent().map_err(anyhow::Error::msg)? {
        Some(config) => {
            tracing::info!(
                dispatcher = config.dispatcher_url,
                pool = config.caller.pool,
                "agent mode: jobs are leased from the dispatcher"
            );
            Some(Agent::new(config, state.clone()).context("agent mode")?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, system = args.system(), "serving");

    // Flag mistakes stop the process; anything found while fetching or
    // loading leaves the pod up, not ready, with the reason on /readyz.
    let parameters = args
        .parameters()
        .map_err(anyhow::Error::msg)
        .context("parameters flags")?;
    let template = zkfleet_prover::exec::command(
        args.exec_profile.name(),
        args.exec_program.as_deref(),
        args.exec_template.as_deref(),
    )
    .map_err(anyhow::Error::msg)
    .context("--exec-template")?
    .context("exec profile has no template")?;
    args.exec_verify_template().map_err(anyhow::Error::msg)?;
    let loader = state.clone();
    let load = Load {
        args: args.clone(),
        parameters,
        template,
    };
    tokio::spawn(async move {
        let start = Instant::now();
        let loaded = load.run(&loader).await;
        match &loaded {
            Ok((_, digest)) => tracing::info!(
                digest,
                seconds = start.elapsed().as_secs_f64(),
                "parameters ready"
            ),
            Err(e) => tracing::error!(code = e.code(), "parameters not loaded: {e}"),
        }
        loader.set_params(loaded, start.elapsed().as_secs_f64());
    });

    let drain_state = state.clone();
    let drain_timeout = Duration::from_secs(args.drain_timeout_seconds);
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("SIGTERM: draining, no new proofs accepted");
        drain_state.start_draining();
    };
    if let Some(address) = args.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        tracing::info!(listen = %address, "serving metrics");
        // Lives as long as the process: Prometheus may scrape a draining pod.
        let app = zkfleet_prover::server::metrics_router(state.clone());
        tokio::spawn(async move { axum::serve(metrics_listener, app).await });
    }
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(shutdown);
    let server = tokio::spawn(async move { server.await });
    // The agent stops leasing when draining starts and returns once the jobs it holds are
    // proved and reported.
    let agent = agent.map(|a| tokio::spawn(a.run()));
    let work = async move {
        server.await??;
        if let Some(agent) = agent {
            agent.await?;
        }
        anyhow::Ok(())
    };
    // After the signal, in-flight requests and leased jobs get drain_timeout to finish.
    tokio::select! {
        r = work => { r?; }
        _ = async {
            state.drained().await;
            tokio::time::sleep(drain_timeout).await;
        } => { tracing::warn!("drain timeout reached; exiting with proofs still running"); }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Everything the background parameters load needs.
struct Load {
    args: ServeArgs,
    parameters: Option<(params::Spec, ResolvedFiles)>,
    template: Vec<String>,
}

impl Load {
    /// Fetches and checks the parameter files (when a source is configured), then loads the
    /// pod's proof system from them (see `backend::REGISTRY`).
    async fn run(self, state: &AppState) -> Result<(Arc<dyn Backend>, String), ParamsError> {
        let args = self.args;
        let fetched = match &self.parameters {
            None => None,
            Some((spec, _)) => {
                let fetched = params::fetch(spec, args.cache_dir.as_deref()).await?;
                state.set_parameter_files(fetched.clone());
                if let (params::Source::Url(_), Some(dir)) = (&spec.source, &args.parameters_dir) {
                    params::link_into(&fetched, dir)?;
                }
                Some(fetched)
            }
        };
        let system = args.system();
        let proof_timeout = args.proof_timeout_seconds;
        let ctx = LoadContext {
            timeout: Duration::from_secs(
                args.exec_timeout_seconds
                    .map_or(proof_timeout, |exec| exec.min(proof_timeout)),
            ),
            args,
            fetched,
            template: self.template,
        };
        tokio::task::spawn_blocking(move || backend::load(system, &ctx))
            .await
            .map_err(|e| ParamsError::Invalid(format!("loading task failed: {e}")))?
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
