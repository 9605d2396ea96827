//! `make bench-dispatch`: the dispatcher measured on the local cluster, with the chart installed
//! as in the e2e tests. Not a test: it prints numbers, each beside the baseline it is judged
//! against, measured in the same run.
//!
//! 1. The API server's own write ceiling on this machine: `CLIENTS` parallel clients create
//!    ProofJobs in a namespace no operator watches, then write a status to each, so the objects,
//!    their schema validation and etcd are those of real jobs, with nobody acting on them.
//! 2. Throughput: N prover pods in agent mode that prove nothing (`skip-proving`, verification
//!    off for the pool) and `JOBS` jobs created by `CLIENTS` parallel clients. Reports jobs/s
//!    through the dispatcher, that figure as a fraction of the ceiling (the ceiling's writes/s
//!    divided by the writes a job costs), the Queued -> Running latency p50/p99 (seen through a
//!    watch), API writes per job after its create (the API server's own request counters).
//! 3. Memory: jobs are added until the namespace holds `MANY_JOBS` ProofJobs, all proved, and the
//!    operator's memory is read (kubelet stats).
//!    Beside the ceiling and the throughput, the CPU time each part of the cluster used (from
//!    /proc: everything runs on this one machine), which says who the cores went to.
//! 4. Fleet overhead: K real proofs, one at a time, on a warm pool, as apply -> Succeeded minus
//!    the proving time on the status, against the same proof asked of a pod directly
//!    (`POST /v1/prove`) in the same run.

use std::collections::{BTreeMap, HashMap};
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
use zkfleet_e2e::helm::apply_crds;

const PODS: i32 = 4;
const SLOTS: i32 = 8;
const JOBS: usize = 2000;
const SEQUENTIAL: usize = 20;
/// Parallel API clients, for the ceiling and for creating jobs.
const CLIENTS: usize = 16;
/// Jobs the namespace holds when the operator's memory is read.
const MANY_JOBS: usize = 10_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let inputs = std::fs::read_to_string(fixtures().join("input.json"))?;
    let ceiling = api_ceiling(&inputs).await?;
    throughput(&inputs, &ceiling).await?;
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

/// The API server's write requests so far on ProofJobs and pods: ProofJob creates, and every
/// other write (status writes, patches, deletes; pod writes).
#[derive(Clone, Copy, Debug, Default)]
struct Writes {
    creates: f64,
    others: f64,
    /// Watch events the API server sent about ProofJobs, and their bytes: each write is
    /// delivered to every watcher (the operator's, the garbage collector's, this bench's).
    job_watch_events: f64,
    job_watch_bytes: f64,
}

async fn api_writes(ns: &TestNamespace) -> anyhow::Result<Writes> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = ns.client.request_text(request).await?;
    let mut writes = Writes::default();
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for line in text.lines() {
        if line.contains("resource=\"proofjobs\"") {
            if line.starts_with("apiserver_watch_events_total{") {
                writes.job_watch_events += value(line);
            } else if line.starts_with("apiserver_watch_events_sizes_sum{") {
                writes.job_watch_bytes += value(line);
            }
        }
        if !line.starts_with("apiserver_request_total{") {
            continue;
        }
        let verb = ["POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .find(|v| line.contains(&format!("verb=\"{v}\"")));
        let jobs = line.contains("resource=\"proofjobs\"");
        let ours = jobs || line.contains("resource=\"pods\"");
        let (Some(verb), true) = (verb, ours) else {
            continue;
        };
        let n = value(line);
        let create = verb == "POST" && jobs && line.contains("subresource=\"\"");
        if create {
            writes.creates += n;
        } else {
            writes.others += n;
        }
    }
    Ok(writes)
}

/// Runs `work(i)` for `i` in `0..n` from `CLIENTS` parallel tasks; returns the seconds it took.
async fn in_parallel<F, Fut>(n: usize, work: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            for i in (client..n).step_by(CLIENTS) {
                work(i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Creates jobs `<prefix>-00000` .. from `CLIENTS` parallel clients; returns the seconds it took.
async fn create_jobs(
    api: &Api<ProofJob>,
    prefix: &str,
    n: usize,
    inputs: &str,
) -> anyhow::Result<f64> {
    let (api, prefix, inputs) = (api.clone(), prefix.to_string(), inputs.to_string());
    in_parallel(n, move |i| {
        let (api, name, inputs) = (api.clone(), format!("{prefix}-{i:05}"), inputs.clone());
        async move {
            api.create(&PostParams::default(), &job(&name, &inputs))
                .await
                .context("creating a job")?;
            Ok(())
        }
    })
    .await
}

/// CPU seconds used so far by each part of the cluster, and by the whole machine, read from
/// /proc. Processes that end between two readings are not counted; none of the parts here do.
#[derive(Clone, Debug, Default)]
struct CpuTime {
    by_part: BTreeMap<&'static str, f64>,
    machine_busy: f64,
}

/// The part of the cluster a process (by its `comm`, cut at 15 characters) belongs to.
fn cluster_part(comm: &str) -> &'static str {
    match comm {
        "kube-apiserver" => "kube-apiserver",
        "etcd" => "etcd",
        c if c.starts_with("zkfleet-operat") => "zkfleet operator",
        c if c.starts_with("zkfleet-prover") => "prover pods",
        c if c.starts_with("zkfleet-bench") => "this bench (clients, watch)",
        "kubelet" | "kube-proxy" | "kube-controller" | "kube-scheduler" => {
            "kubelet, controllers, scheduler"
        }
        c if c.starts_with("containerd") || c == "runc" => "containerd",
        _ => "other",
    }
}

impl CpuTime {
    fn now() -> Self {
        // USER_HZ: 100 on every Linux that this cluster builds for.
        const TICKS_PER_S: f64 = 100.0;
        let mut cpu = CpuTime::default();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ... utime stime: the name may hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
                continue;
            };
            *cpu.by_part
                .entry(cluster_part(&stat[open + 1..close]))
                .or_default() += (user + system) / TICKS_PER_S;
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
        {
            let ticks: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|t| t.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0);
            cpu.machine_busy = (ticks.iter().take(8).sum::<f64>() - idle) / TICKS_PER_S;
        }
        cpu
    }

    /// Prints the CPU each part used since `before`, over `wall_s` seconds, in cores.
    fn print_since(&self, before: &CpuTime, wall_s: f64) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "CPU used, in cores of {cores} ({:.0} s): machine busy {:.2}",
            wall_s,
            (self.machine_busy - before.machine_busy) / wall_s
        );
        for (part, seconds) in &self.by_part {
            let used = seconds - before.by_part.get(part).unwrap_or(&0.0);
            println!("  {part:<34} {:>6.2}", used / wall_s);
        }
    }

    /// CPU seconds the API server and etcd used since `before`.
    fn api_server_since(&self, before: &CpuTime) -> f64 {
        ["kube-apiserver", "etcd"]
            .into_iter()
            .map(|part| {
                self.by_part.get(part).unwrap_or(&0.0) - before.by_part.get(part).unwrap_or(&0.0)
            })
            .sum()
    }
}

/// What the API server sustains on this machine with nobody acting on the objects.
struct Ceiling {
    creates_per_s: f64,
    status_writes_per_s: f64,
    /// CPU time the API server and etcd spent per write, reads and watches included.
    api_cpu_ms_per_write: f64,
}

impl Ceiling {
    /// Jobs/s the API server allows when each job costs one create and `writes` later writes.
    fn jobs_per_s(&self, writes: f64) -> f64 {
        1.0 / (1.0 / self.creates_per_s + writes / self.status_writes_per_s)
    }
}

async fn api_ceiling(inputs: &str) -> anyhow::Result<Ceiling> {
    const OBJECTS: usize = 2000;
    // No operator watches this namespace: the jobs stay as written.
    let ns = TestNamespace::new("bench-ceiling").await?;
    // On a fresh cluster nothing has installed the chart yet, and the CRDs come with it.
    apply_crds(&ns).await?;
    let api: Api<ProofJob> = ns.api();
    let cpu_before = CpuTime::now();
    let create_s = create_jobs(&api, "c", OBJECTS, inputs).await?;
    let status_s = in_parallel(OBJECTS, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move {
                let patch = json!({"status": {"phase": "Queued", "attemptCount": 0}});
                api.patch_status(
                    &format!("c-{i:05}"),
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .context("writing a status")?;
                Ok(())
            }
        }
    })
    .await?;
    let cpu_after = CpuTime::now();
    let ceiling = Ceiling {
        creates_per_s: OBJECTS as f64 / create_s,
        status_writes_per_s: OBJECTS as f64 / status_s,
        api_cpu_ms_per_write: cpu_after.api_server_since(&cpu_before) * 1000.0
            / (2 * OBJECTS) as f64,
    };
    println!("== API server ceiling: {CLIENTS} clients, {OBJECTS} ProofJobs nobody acts on");
    println!(
        "creates/s                          {:>10.1}",
        ceiling.creates_per_s
    );
    println!(
        "status writes/s                    {:>10.1}",
        ceiling.status_writes_per_s
    );
    cpu_after.print_since(&cpu_before, create_s + status_s);
    println!(
        "API server + etcd CPU per write    {:>10.2} ms",
        ceiling.api_cpu_ms_per_write
    );
    drop(ns);
    Ok(ceiling)
}

/// Working-set bytes of the largest operator pod (the leader, which holds the jobs), from the
/// kubelet's summary.
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
                bytes = bytes.max(pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0));
            }
        }
    }
    Ok(bytes)
}

async fn throughput(inputs: &str, ceiling: &Ceiling) -> anyhow::Result<()> {
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
    let cpu_before = CpuTime::now();
    let started = Instant::now();
    let creator = tokio::spawn({
        let (api, inputs) = (api.clone(), inputs.to_string());
        async move { create_jobs(&api, "j", JOBS, &inputs).await }
    });
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
    let cpu_after = CpuTime::now();
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
    let writes_after = api_writes(&ns).await?;
    let later_writes = (writes_after.others - writes_before.others) / JOBS as f64;
    let all_writes = later_writes + (writes_after.creates - writes_before.creates) / JOBS as f64;
    let jobs_per_s = JOBS as f64 / elapsed;
    let bound = ceiling.jobs_per_s(later_writes);
    latencies.sort_by(f64::total_cmp);
    println!(
        "== dispatcher throughput: {PODS} pods x {SLOTS} slots, {JOBS} jobs from {CLIENTS} clients, proving skipped"
    );
    println!("jobs/s through the dispatcher      {jobs_per_s:>10.1}");
    println!(
        "API writes per job after its create {later_writes:>9.2}  ({all_writes:.2} with it; ProofJob and pod writes)"
    );
    println!(
        "API server bound at those writes   {bound:>10.1} jobs/s  (ceiling: 1 create + {later_writes:.2} status writes)"
    );
    println!(
        "fraction of the bound              {:>10.2}",
        jobs_per_s / bound
    );
    println!(
        "Queued -> Running latency p50/p99  {:>7.0} ms / {:.0} ms  ({} samples)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    cpu_after.print_since(&cpu_before, elapsed);
    let writes = (writes_after.creates - writes_before.creates)
        + (writes_after.others - writes_before.others);
    println!(
        "API server + etcd CPU per write    {:>10.2} ms  ({:.2} ms at the ceiling)",
        cpu_after.api_server_since(&cpu_before) * 1000.0 / writes,
        ceiling.api_cpu_ms_per_write
    );
    let job_writes =
        writes_after.creates - writes_before.creates + (writes_after.others - writes_before.others);
    let events = writes_after.job_watch_events - writes_before.job_watch_events;
    println!(
        "ProofJob watch events per write    {:>10.2}  ({:.1} KiB each)",
        events / job_writes,
        (writes_after.job_watch_bytes - writes_before.job_watch_bytes) / events.max(1.0) / 1024.0
    );
    println!(
        "operator memory during the run (largest pod, working set) {:.1} MiB",
        peak_memory as f64 / (1024.0 * 1024.0)
    );
    many_jobs(&ns, inputs).await
}

/// Fills the namespace up to `MANY_JOBS` ProofJobs, all proved, and reads the operator's
/// memory with all of them in its caches.
async fn many_jobs(ns: &TestNamespace, inputs: &str) -> anyhow::Result<()> {
    let api: Api<ProofJob> = ns.api();
    let more = MANY_JOBS - JOBS;
    let started = Instant::now();
    create_jobs(&api, "m", more, inputs).await?;
    let mut peak: u64 = 0;
    loop {
        let jobs = api.list(&ListParams::default()).await?.items;
        let finished = jobs
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Succeeded))
            .count();
        peak = peak.max(operator_memory(ns).await.unwrap_or(0));
        if finished == MANY_JOBS {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("only {finished} of {MANY_JOBS} jobs succeeded in 15 minutes");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The kubelet refreshes its stats every few seconds.
    for _ in 0..10 {
        peak = peak.max(operator_memory(ns).await.unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("== {MANY_JOBS} ProofJobs in the namespace, all proved");
    println!(
        "operator memory (largest pod, working set)  {:.1} MiB",
        peak as f64 / (1024.0 * 1024.0)
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
