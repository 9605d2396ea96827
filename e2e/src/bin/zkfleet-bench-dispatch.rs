//! `make bench-dispatch`: the dispatcher measured on the local cluster, with the chart installed
//! as in the e2e tests. Not a test: it prints numbers.
//!
//! 1. Throughput: N prover pods in agent mode that prove nothing (`skip-proving`, verification
//!    off for the pool) and M jobs applied at once. Reports jobs/s through the dispatcher, the
//!    Queued → Running latency p50/p99 (seen through a watch), API writes per job (the API
//!    server's own request counters) and the operator's peak memory (kubelet stats).
//! 2. Fleet overhead: K real proofs, one at a time, on a warm pool, as apply → Succeeded minus
//!    the proving time on the status, against the same proof asked of a pod directly
//!    (`POST /v1/prove`) in the same run.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob};
use zkfleet_e2e::TestNamespace;
use zkfleet_e2e::fleet::{Parameters, Setup, create_pool_with, fixtures, setup, wait_serving};

const PODS: i32 = 4;
const SLOTS: i32 = 8;
const JOBS: usize = 400;
const SEQUENTIAL: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let inputs = std::fs::read_to_string(fixtures().join("input.json"))?;
    throughput(&inputs).await?;
    overhead(&inputs).await?;
    Ok(())
}

fn job(name: &str, inputs: &str) -> ProofJob {
    serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": "pool"}, "input": {"inline": {"json": inputs}}},
    }))
    .expect("a valid job")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Sum of the API server's write requests (POST, PUT, PATCH, DELETE) on ProofJobs and pods.
async fn api_writes(ns: &TestNamespace) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = ns.client.request_text(request).await?;
    let mut total = 0.0;
    for line in text.lines() {
        if !line.starts_with("apiserver_request_total{") {
            continue;
        }
        let write = ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .any(|v| line.contains(&format!("verb=\"{v}\"")));
        let ours = line.contains("resource=\"proofjobs\"") || line.contains("resource=\"pods\"");
        if write && ours {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// Working-set bytes of the operator's pods, from the kubelet's summary.
async fn operator_memory(ns: &TestNamespace) -> anyhow::Result<u64> {
    let nodes = Api::<Node>::all(ns.client.clone())
        .list(&ListParams::default())
        .await?;
    let mut bytes = 0;
    for node in nodes.items {
        let url = format!("/api/v1/nodes/{}/proxy/stats/summary", node.name_any());
        let request = http::Request::get(url).body(Vec::new())?;
        let summary: Value = serde_json::from_str(&ns.client.request_text(request).await?)?;
        for pod in summary["pods"].as_array().into_iter().flatten() {
            let name = pod["podRef"]["name"].as_str().unwrap_or_default();
            if pod["podRef"]["namespace"] == ns.name.as_str() && name.contains("operator") {
                bytes += pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(bytes)
}

async fn throughput(inputs: &str) -> anyhow::Result<()> {
    let values =
        "prover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: skip-proving\n";
    let Setup { release: _r, ns } = setup("bench-dispatch", values).await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        &ns,
        "pool",
        PODS,
        &params,
        json!({"slotsPerReplica": SLOTS, "jobDefaults": {"verify": false}}),
    )
    .await;
    wait_serving(&ns, "pool", PODS).await;

    let api: Api<ProofJob> = ns.api();
    let mut events = Box::pin(watcher(api.clone(), watcher::Config::default()));
    let writes_before = api_writes(&ns).await?;
    let started = Instant::now();
    let creator = {
        let api = api.clone();
        let inputs = inputs.to_string();
        tokio::spawn(async move {
            for i in 0..JOBS {
                api.create(&PostParams::default(), &job(&format!("j-{i:04}"), &inputs))
                    .await
                    .context("creating a job")?;
            }
            anyhow::Ok(())
        })
    };
    let mut queued_at: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut done = 0;
    let mut peak_memory = 0;
    let mut last_sample = Instant::now() - Duration::from_secs(5);
    let deadline = started + Duration::from_secs(600);
    while done < JOBS {
        if Instant::now() > deadline {
            bail!("only {done} of {JOBS} jobs finished in 10 minutes");
        }
        if last_sample.elapsed() > Duration::from_secs(1) {
            peak_memory = peak_memory.max(operator_memory(&ns).await.unwrap_or(0));
            last_sample = Instant::now();
        }
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), events.next()).await
        else {
            continue;
        };
        let job = match event {
            Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => j,
            _ => continue,
        };
        let name = job.name_any();
        match job.status.as_ref().and_then(|s| s.phase) {
            Some(JobPhase::Queued) => {
                queued_at.entry(name).or_insert_with(Instant::now);
            }
            Some(JobPhase::Running) => {
                if let Some(q) = queued_at.remove(&name) {
                    latencies.push(q.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Some(JobPhase::Succeeded) => done += 1,
            Some(JobPhase::Failed) => bail!("job {name} failed: {:?}", job.status),
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    creator.await??;
    // The kubelet refreshes its stats every few seconds; new pods appear after a while.
    for _ in 0..30 {
        let now = operator_memory(&ns).await.unwrap_or(0);
        peak_memory = peak_memory.max(now);
        if now > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let writes = api_writes(&ns).await? - writes_before;
    latencies.sort_by(f64::total_cmp);
    println!("== dispatcher throughput: {PODS} pods x {SLOTS} slots, {JOBS} jobs, proving skipped");
    println!(
        "jobs/s through the dispatcher      {:>10.1}",
        JOBS as f64 / elapsed
    );
    println!(
        "Queued -> Running latency p50/p99  {:>7.0} ms / {:.0} ms  ({} samples)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    println!(
        "API writes per job                 {:>10.2}  (ProofJob and pod writes, job creation included)",
        writes / JOBS as f64
    );
    println!(
        "operator memory (working set, both replicas, largest sample) {:.1} MiB",
        peak_memory as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

async fn overhead(inputs: &str) -> anyhow::Result<()> {
    let Setup { release: _r, ns } = setup("bench-overhead", "").await;
    let params = Parameters::create(&ns, "v1", "mulchain", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(&ns, "pool", 1, &params, json!({})).await;
    wait_serving(&ns, "pool", 1).await;

    // Baseline: the same proof asked of the pod directly.
    let pods: Api<Pod> = ns.api();
    let pod = pods
        .list(&ListParams::default().labels("zkfleet.dev/pool=pool"))
        .await?
        .items
        .into_iter()
        .next()
        .context("a prover pod")?;
    let ip = pod.status.and_then(|s| s.pod_ip).context("a pod IP")?;
    let body = format!("{{\"inputs\": {inputs}}}");
    let mut direct = Vec::new();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json"])
            .args(["--data", &body, &format!("http://{ip}:8080/v1/prove")])
            .output()?;
        if !out.status.success() {
            bail!(
                "direct prove failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let api: Api<ProofJob> = ns.api();
    let mut fleet = Vec::new();
    let mut overheads = Vec::new();
    for i in 0..SEQUENTIAL {
        let name = format!("seq-{i:02}");
        let t = Instant::now();
        api.create(&PostParams::default(), &job(&name, inputs))
            .await?;
        let finished = ns
            .wait_for::<ProofJob>(&name, "Succeeded", Duration::from_secs(120), |j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(JobPhase::is_finished)
            })
            .await?;
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        let status = finished.status.context("a status")?;
        if status.phase != Some(JobPhase::Succeeded) {
            bail!("{name} failed: {:?}", status.message);
        }
        fleet.push(wall);
        overheads.push(wall - status.proving_millis.unwrap_or(0) as f64);
    }
    for v in [&mut direct, &mut fleet, &mut overheads] {
        v.sort_by(f64::total_cmp);
    }
    println!("== fleet overhead: {SEQUENTIAL} real proofs one at a time (mulchain, 2^10)");
    println!(
        "direct POST /v1/prove (baseline)   p50 {:>7.0} ms  p99 {:>7.0} ms",
        percentile(&direct, 0.5),
        percentile(&direct, 0.99)
    );
    println!(
        "apply -> Succeeded                 p50 {:>7.0} ms  p99 {:>7.0} ms  ({:.1}x the baseline at p50)",
        percentile(&fleet, 0.5),
        percentile(&fleet, 0.99),
        percentile(&fleet, 0.5) / percentile(&direct, 0.5)
    );
    println!(
        "overhead (minus provingMillis)     p50 {:>7.0} ms  p99 {:>7.0} ms",
        percentile(&overheads, 0.5),
        percentile(&overheads, 0.99)
    );
    Ok(())
}
