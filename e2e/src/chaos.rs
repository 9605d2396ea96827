//! The chaos suite: many held jobs proved while the cluster is broken in every way zkfleet
//! promises to survive, then the promises checked from the API alone.
//!
//! One run: a namespace with its own operator (two replicas, so one stands by), a pool whose
//! provers hold every job `delay_ms` before proving (so jobs overlap and every fault lands on
//! work in flight), one extra pod of the pool that corrupts its proofs, and `jobs` ProofJobs
//! with distinct inputs created up front. While they are proved the faults of the [`Plan`] are
//! injected, each when a set fraction of the jobs has finished (progress, not a clock, decides
//! when): the operator leader SIGKILLed (its container killed through containerd, so nothing
//! is handed over and grants and completes are cut mid-request), prover containers SIGKILLed,
//! kube-apiserver and etcd restarted, and the pool's parameters rotated.
//!
//! At the end, from the API: every job `Succeeded` with exactly one successful attempt and a
//! proof snarkjs accepts for the job's own input, or `Failed` with a reason; none left
//! unfinished; no proof from the corrupt pod accepted; no two attempts of a job overlapping
//! (which would be the same work done twice); and every attempt beyond the first explained by
//! a fault that was injected, counted by fault.
//!
//! `make chaos` runs [`Plan::full`] (`zkfleet-chaos`); `make test` runs [`Plan::short`]
//! (`tests/chaos.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tokio_stream::StreamExt as _;
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofJob};

use crate::fleet::{
    MINUTE, POOL_LABEL, Parameters, Setup, create_pool_with, fixtures, pod_ready, set_parameters,
    setup, start_faulty_pod, wait_serving,
};
use crate::poll_until;

/// The pool every job goes to.
const POOL: &str = "pool";
/// The chart's `dispatcher.leaseSeconds` for the run: short, so work on a killed prover is
/// handed to another pod soon after.
const LEASE_SECONDS: i64 = 10;
/// The operator's leader election Lease lasts this long: a SIGKILLed leader is replaced
/// within it (see `operator/src/leader.rs`).
const LEADER_LEASE_SECONDS: i64 = 15;
/// Parallel clients creating the jobs.
const CLIENTS: usize = 16;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub jobs: usize,
    /// Prover pods of the pool, and proving slots of each.
    pub pods: i32,
    pub slots: i32,
    /// Each leased job waits this long on its prover before it is proved.
    pub delay_ms: u64,
    pub leader_kills: usize,
    pub prover_kills: usize,
    pub apiserver_restarts: usize,
    pub etcd_restarts: usize,
    pub rotations: usize,
    /// One pod of the pool that corrupts every proof.
    pub corrupt_pod: bool,
    /// The whole run, setup included, must end within this.
    pub timeout: Duration,
}

impl Plan {
    /// `make chaos`: 2,000 held jobs through 5 leader kills, 20 prover kills, a kube-apiserver
    /// restart, an etcd restart and a rotation, beside a corrupt pod.
    pub fn full() -> Self {
        Self {
            jobs: 2000,
            pods: 4,
            slots: 8,
            delay_ms: 2000,
            leader_kills: 5,
            prover_kills: 20,
            apiserver_restarts: 1,
            etcd_restarts: 1,
            rotations: 1,
            corrupt_pod: true,
            timeout: 40 * MINUTE,
        }
    }

    /// The version in `make test`: 200 jobs, one fault of each kind.
    pub fn short() -> Self {
        Self {
            jobs: 200,
            pods: 2,
            slots: 4,
            delay_ms: 1000,
            leader_kills: 1,
            prover_kills: 1,
            apiserver_restarts: 1,
            etcd_restarts: 1,
            rotations: 1,
            corrupt_pod: true,
            timeout: 15 * MINUTE,
        }
    }

    /// When each fault is injected, as the fraction of jobs finished that triggers it. Faults
    /// of one kind are spread evenly over 5%..85% of the run; kinds are offset from each other
    /// so no two land at once.
    pub fn schedule(&self) -> Vec<(f64, Fault)> {
        let kinds = [
            (Fault::Rotation, self.rotations, 0.15),
            (Fault::ProverKill, self.prover_kills, 0.25),
            (Fault::ApiServerRestart, self.apiserver_restarts, 0.4),
            (Fault::LeaderKill, self.leader_kills, 0.5),
            (Fault::EtcdRestart, self.etcd_restarts, 0.7),
        ];
        let mut schedule: Vec<(f64, Fault)> = kinds
            .into_iter()
            .flat_map(|(fault, count, phase)| {
                (0..count).map(move |k| (0.05 + 0.8 * (k as f64 + phase) / count as f64, fault))
            })
            .collect();
        schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
        schedule
    }
}

/// A fault the suite injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    LeaderKill,
    ProverKill,
    ApiServerRestart,
    EtcdRestart,
    Rotation,
}

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Self::LeaderKill => "operator leader SIGKILLed",
            Self::ProverKill => "prover container SIGKILLed",
            Self::ApiServerRestart => "kube-apiserver restarted",
            Self::EtcdRestart => "etcd restarted",
            Self::Rotation => "parameters rotated (v1 -> v2)",
        }
    }
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Injected {
    pub fault: Fault,
    /// The pod killed, or the component restarted.
    pub target: String,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// Jobs running and queued when it began.
    pub running: usize,
    pub queued: usize,
}

/// What the run saw, and whether zkfleet kept its promises.
#[derive(Debug, Default)]
pub struct Report {
    pub plan_jobs: usize,
    pub injected: Vec<Injected>,
    pub planned: BTreeMap<Fault, usize>,
    pub succeeded: usize,
    pub verified_by_snarkjs: usize,
    /// Failed jobs and their reasons.
    pub failed: Vec<(String, String)>,
    pub unfinished: Vec<String>,
    /// Jobs whose accepted proof snarkjs refused, answers another input, or came from the
    /// corrupt pod.
    pub bad_accepted: Vec<String>,
    /// Proofs of the corrupt pod that the operator rejected.
    pub rejected: usize,
    pub attempts: usize,
    /// Attempts beyond one per job, by the fault that explains them.
    pub extra_by_cause: BTreeMap<&'static str, usize>,
    /// The same attempts by cause and how they ended (`LeaseExpired`, `TimedOut`, ...).
    pub extra_outcomes: BTreeMap<(&'static str, String), usize>,
    /// One message of each cause and outcome, for the reader of the table.
    pub extra_examples: BTreeMap<(&'static str, String), String>,
    /// Attempts lost to a prover kill, by how they ended: how long each had run when its
    /// prover was killed, in seconds. An attempt older than its timeout less one lease at the
    /// kill reaches its timeout before its lease runs out, so it ends `TimedOut`.
    pub age_at_kill: BTreeMap<String, Vec<f64>>,
    /// Attempts lost to a prover kill that ended `TimedOut`: in all, and those whose lease ran
    /// out while the operator could not act on it (a leader kill or control-plane restart was
    /// under way, in the windows `explain` uses); the rest reached their timeout for another
    /// reason.
    pub timed_out_on_killed: (usize, usize),
    /// Attempts beyond the first that no injected fault explains.
    pub unexplained: Vec<String>,
    /// Jobs with more or fewer than one successful attempt while Succeeded.
    pub not_once: Vec<String>,
    /// Jobs with two attempts running at once: the same proof computed twice.
    pub overlapping: Vec<String>,
    /// Faults injected after every job had finished: they tested nothing.
    pub idle_faults: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// Every broken promise, in words; empty when the run passed.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut list = |what: &str, names: &[String]| {
            if !names.is_empty() {
                let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
                out.push(format!("{what} ({}): {}", names.len(), shown.join(", ")));
            }
        };
        list("jobs left unfinished", &self.unfinished);
        list("bad proofs accepted", &self.bad_accepted);
        list(
            "Succeeded without exactly one successful attempt",
            &self.not_once,
        );
        list("jobs proved twice at once", &self.overlapping);
        list("attempts no fault explains", &self.unexplained);
        list("faults that hit no work", &self.idle_faults);
        let no_reason: Vec<String> = self
            .failed
            .iter()
            .filter(|(_, reason)| reason.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        list("Failed without a reason", &no_reason);
        for (fault, planned) in &self.planned {
            let done = self.injected.iter().filter(|i| i.fault == *fault).count();
            if done != *planned {
                out.push(format!(
                    "{}: {done} injected of {planned} planned",
                    fault.describe()
                ));
            }
        }
        out
    }

    /// The run as a Markdown table (the README shows one).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "| fault | injected | jobs running / queued then |");
        let _ = writeln!(t, "|---|---:|---|");
        for (fault, planned) in &self.planned {
            let hits: Vec<&Injected> = self.injected.iter().filter(|i| i.fault == *fault).collect();
            let range = |f: fn(&Injected) -> usize| {
                let min = hits.iter().map(|i| f(i)).min().unwrap_or(0);
                let max = hits.iter().map(|i| f(i)).max().unwrap_or(0);
                if min == max {
                    min.to_string()
                } else {
                    format!("{min}–{max}")
                }
            };
            let _ = writeln!(
                t,
                "| {} | {} of {planned} | {} / {} |",
                fault.describe(),
                hits.len(),
                range(|i| i.running),
                range(|i| i.queued),
            );
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "| invariant | result |");
        let _ = writeln!(t, "|---|---:|");
        let mut row = |what: &str, value: String| {
            let _ = writeln!(t, "| {what} | {value} |");
        };
        row("jobs", self.plan_jobs.to_string());
        row(
            "Succeeded, one success each, proof accepted by snarkjs",
            format!("{} ({} verified)", self.succeeded, self.verified_by_snarkjs),
        );
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, reason) in &self.failed {
            *reasons.entry(reason.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        row(
            "Failed with a reason",
            if reasons.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", self.failed.len(), reasons.join(", "))
            },
        );
        row(
            "left Pending, Queued or Running",
            self.unfinished.len().to_string(),
        );
        row("bad proofs accepted", self.bad_accepted.len().to_string());
        row(
            "corrupt proofs rejected by the operator",
            self.rejected.to_string(),
        );
        row(
            "jobs proved twice at once (overlapping attempts)",
            self.overlapping.len().to_string(),
        );
        row("attempts in all", self.attempts.to_string());
        for (cause, n) in &self.extra_by_cause {
            let outcomes: Vec<String> = self
                .extra_outcomes
                .iter()
                .filter(|((c, _), _)| c == cause)
                .map(|((_, outcome), n)| format!("{outcome} {n}"))
                .collect();
            row(
                &format!("extra attempts explained by: {cause}"),
                format!("{n} ({})", outcomes.join(", ")),
            );
        }
        for (outcome, ages) in &self.age_at_kill {
            let mut ages = ages.clone();
            ages.sort_by(f64::total_cmp);
            let at = |q: f64| ages[((ages.len() - 1) as f64 * q).round() as usize];
            row(
                &format!("age at the prover kill of attempts then {outcome}"),
                format!(
                    "{:.1} / {:.1} / {:.1} s (min / median / max)",
                    at(0.0),
                    at(0.5),
                    at(1.0)
                ),
            );
        }
        if self.timed_out_on_killed.0 > 0 {
            row(
                "of those TimedOut, lease ran out while a leader kill or control-plane restart was under way",
                format!(
                    "{} of {}",
                    self.timed_out_on_killed.1, self.timed_out_on_killed.0
                ),
            );
        }
        row(
            "extra attempts no fault explains",
            self.unexplained.len().to_string(),
        );
        row("wall time", format!("{:.0} s", self.seconds));
        let _ = writeln!(t);
        for ((cause, outcome), message) in &self.extra_examples {
            let _ = writeln!(t, "- {cause}, {outcome}: e.g. \"{message}\"");
        }
        t
    }
}

/// Jobs by phase, as a watch on the namespace sees them.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    finished: usize,
    running: usize,
    queued: usize,
}

/// Follows the jobs of a namespace through a watch (which rides out API server restarts with
/// the watcher's backoff), publishing counts by phase.
fn follow_jobs(api: Api<ProofJob>) -> tokio::sync::watch::Receiver<Progress> {
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    tokio::spawn(async move {
        let mut events = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
        let mut phases: HashMap<String, Option<JobPhase>> = HashMap::new();
        let mut relisting: HashMap<String, Option<JobPhase>> = HashMap::new();
        let phase = |j: &ProofJob| j.status.as_ref().and_then(|s| s.phase);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => relisting.clear(),
                Ok(watcher::Event::InitApply(j)) => {
                    relisting.insert(j.name_any(), phase(&j));
                }
                Ok(watcher::Event::InitDone) => phases = std::mem::take(&mut relisting),
                Ok(watcher::Event::Apply(j)) => {
                    phases.insert(j.name_any(), phase(&j));
                }
                Ok(watcher::Event::Delete(j)) => {
                    phases.remove(&j.name_any());
                }
                Err(_) => continue,
            }
            let mut progress = Progress::default();
            for p in phases.values() {
                match p {
                    Some(p) if p.is_finished() => progress.finished += 1,
                    Some(JobPhase::Running) => progress.running += 1,
                    _ => progress.queued += 1,
                }
            }
            if tx.send(progress).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs `plan` on the local cluster and checks the invariants; the report says what held.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let began = Instant::now();
    let deadline = began + plan.timeout;
    let values = format!(
        "prover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"delay-ms={}\"\n\
         dispatcher:\n  leaseSeconds: {LEASE_SECONDS}\n",
        plan.delay_ms
    );
    let setup = setup("chaos", &values).await;
    let ns = &setup.ns;
    let v1 = Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        ns,
        POOL,
        plan.pods,
        &v1,
        json!({"slotsPerReplica": plan.slots, "jobDefaults": {"timeoutSeconds": 30}}),
    )
    .await;
    wait_serving(ns, POOL, plan.pods).await;
    let faulty = if plan.corrupt_pod {
        let fault = format!("corrupt-proofs,delay-ms={}", plan.delay_ms);
        let name = start_faulty_pod(ns, POOL, &fault).await;
        ns.wait_for::<Pod>(&name, "the corrupt pod Ready", 2 * MINUTE, pod_ready)
            .await?;
        Some(name)
    } else {
        None
    };

    let jobs: Api<ProofJob> = ns.api();
    let mut progress = follow_jobs(jobs.clone());
    create_jobs(&jobs, plan.jobs).await?;
    println!(
        "chaos: {} jobs created in {:.0} s",
        plan.jobs,
        began.elapsed().as_secs_f64()
    );

    let mut injected: Vec<Injected> = Vec::new();
    let mut rotated_pods: Vec<String> = Vec::new();
    for (k, (at, fault)) in plan.schedule().into_iter().enumerate() {
        let threshold = ((at * plan.jobs as f64).ceil() as usize).min(plan.jobs);
        let now = wait_progress(&mut progress, deadline, |p| p.finished >= threshold).await?;
        let started = Timestamp::now();
        let target = match fault {
            Fault::LeaderKill => {
                let since = injected
                    .iter()
                    .filter(|i| i.fault == Fault::LeaderKill)
                    .map(|i| i.started)
                    .next_back();
                kill_leader(&setup, since).await?
            }
            Fault::ProverKill => kill_prover(&setup, faulty.as_deref(), k).await?,
            Fault::ApiServerRestart => restart_component("kube-apiserver").await?,
            Fault::EtcdRestart => restart_component("etcd").await?,
            Fault::Rotation => {
                rotated_pods = pool_pods(&setup, faulty.as_deref()).await?;
                let v2 =
                    Parameters::create(ns, "v2", "mulchain-v2", &["circuit.zkey", "circuit.wasm"])
                        .await;
                set_parameters(ns, POOL, &v2).await;
                "v1 -> v2".into()
            }
        };
        let done = Injected {
            fault,
            target,
            started,
            ended: Timestamp::now(),
            running: now.running,
            queued: now.queued,
        };
        println!(
            "chaos: {:>4.0} s  {} ({}) at {} finished, {} running, {} queued",
            began.elapsed().as_secs_f64(),
            fault.describe(),
            done.target,
            now.finished,
            now.running,
            now.queued
        );
        injected.push(done);
    }

    let waited = wait_progress(&mut progress, deadline, |p| p.finished >= plan.jobs).await;
    if let Err(e) = &waited {
        println!("chaos: not every job finished: {e}");
    }
    if plan.rotations > 0 {
        // The rotation ends with every pod of the Deployment on v2.
        wait_serving(ns, POOL, plan.pods).await;
    }
    let mut report = check(&jobs, plan, &injected, faulty.as_deref(), &rotated_pods).await?;
    report.planned = [
        (Fault::LeaderKill, plan.leader_kills),
        (Fault::ProverKill, plan.prover_kills),
        (Fault::ApiServerRestart, plan.apiserver_restarts),
        (Fault::EtcdRestart, plan.etcd_restarts),
        (Fault::Rotation, plan.rotations),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    report.idle_faults = injected
        .iter()
        .filter(|i| i.running + i.queued == 0)
        .map(|i| format!("{} ({})", i.fault.describe(), i.target))
        .collect();
    report.injected = injected;
    report.seconds = began.elapsed().as_secs_f64();
    drop(setup);
    Ok(report)
}

/// Waits until the jobs' progress satisfies `done`, or `deadline`.
async fn wait_progress(
    progress: &mut tokio::sync::watch::Receiver<Progress>,
    deadline: Instant,
    done: impl Fn(&Progress) -> bool,
) -> anyhow::Result<Progress> {
    let left = deadline.saturating_duration_since(Instant::now());
    let waited = tokio::time::timeout(left, progress.wait_for(|p| done(p)))
        .await
        .map(|r| r.map(|p| *p));
    match waited {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(_)) => bail!("the job watch ended"),
        Err(_) => {
            let p = *progress.borrow();
            bail!(
                "the run's time ran out with {} jobs finished, {} running, {} queued",
                p.finished,
                p.running,
                p.queued
            )
        }
    }
}

/// The job's circuit input: `a` (public) is the job's number plus 2, so each proof answers a
/// different statement and a proof handed to the wrong job would show.
fn input_a(index: usize) -> String {
    (index + 2).to_string()
}

fn job_name(index: usize) -> String {
    format!("job-{index:05}")
}

async fn create_jobs(api: &Api<ProofJob>, n: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in (client..n).step_by(CLIENTS) {
                let inputs = json!({"a": input_a(i), "b": "5"}).to_string();
                let job: ProofJob = serde_json::from_value(json!({
                    "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
                    "metadata": {"name": job_name(i)},
                    "spec": {"poolRef": {"name": POOL}, "input": {"inline": {"json": inputs}}},
                }))?;
                api.create(&PostParams::default(), &job)
                    .await
                    .with_context(|| format!("creating {}", job_name(i)))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The containerd id of the pod's first container, when it runs.
fn running_container(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    let id = status.container_id.as_deref()?;
    Some(id.strip_prefix("containerd://").unwrap_or(id).to_string())
}

/// SIGKILLs the pod's container through containerd, as the kernel's OOM killer or a crash
/// would end it: no SIGTERM, no drain, no Lease handed over. The kubelet restarts it.
async fn sigkill(pod: &Pod) -> anyhow::Result<()> {
    let id =
        running_container(pod).ok_or_else(|| anyhow!("{} runs no container", pod.name_any()))?;
    let out = tokio::process::Command::new("ctr")
        .args(["-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", &id])
        .output()
        .await
        .context("running ctr (containerd's client, installed by e2e/cluster)")?;
    if !out.status.success() {
        bail!(
            "ctr could not kill {} ({id}): {}",
            pod.name_any(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Kills the operator pod that leads now. It waits for a leader that renewed the Lease after
/// the previous kill and is Ready, so every kill ends a working leader.
async fn kill_leader(setup: &Setup, previous_kill: Option<Timestamp>) -> anyhow::Result<String> {
    let ns = &setup.ns;
    let leases: Api<Lease> = ns.api();
    let pods: Api<Pod> = ns.api();
    let lease_name = setup.release.operator.clone();
    let leader = poll_until(3 * MINUTE, || {
        let (leases, pods, lease_name) = (leases.clone(), pods.clone(), lease_name.clone());
        async move {
            let spec = leases.get(&lease_name).await.ok()?.spec?;
            let renewed = spec.renew_time?.0;
            if previous_kill.is_some_and(|killed| renewed <= killed) {
                return None;
            }
            let pod = pods.get(spec.holder_identity.as_deref()?).await.ok()?;
            (pod_ready(&pod) && running_container(&pod).is_some()).then_some(pod)
        }
    })
    .await
    .ok_or_else(|| anyhow!("no operator pod led and was Ready within 3 minutes"))?;
    sigkill(&leader).await?;
    Ok(leader.name_any())
}

/// The pool's pods of its Deployment (not the corrupt pod), by name.
async fn pool_pods(setup: &Setup, faulty: Option<&str>) -> anyhow::Result<Vec<String>> {
    let list = setup
        .ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{POOL_LABEL}={POOL}")))
        .await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|p| p.name_any())
        .filter(|n| Some(n.as_str()) != faulty)
        .collect();
    names.sort();
    Ok(names)
}

/// Kills the container of one Ready prover pod, a different one each time (`turn`).
async fn kill_prover(setup: &Setup, faulty: Option<&str>, turn: usize) -> anyhow::Result<String> {
    let pods: Api<Pod> = setup.ns.api();
    let selector = format!("{POOL_LABEL}={POOL}");
    let victim = poll_until(3 * MINUTE, || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let mut ready: Vec<Pod> = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| {
                    Some(p.name_any().as_str()) != faulty
                        && p.metadata.deletion_timestamp.is_none()
                        && pod_ready(p)
                        && running_container(p).is_some()
                })
                .collect();
            ready.sort_by_key(|p| p.name_any());
            let n = ready.len();
            (n > 0).then(|| ready.swap_remove(turn % n))
        }
    })
    .await
    .ok_or_else(|| anyhow!("no prover pod was Ready to kill within 3 minutes"))?;
    sigkill(&victim).await?;
    Ok(victim.name_any())
}

/// Restarts one control plane component with `e2e/cluster restart`, which returns once the
/// cluster answers again.
async fn restart_component(component: &str) -> anyhow::Result<String> {
    // This checkout's, not the one the binary was compiled in (see `repo_dir`).
    let script = crate::helm::repo_dir().join("e2e/cluster");
    let out = tokio::process::Command::new(&script)
        .args(["restart", component])
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "e2e/cluster restart {component} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(component.into())
}

/// Everything the run promised, checked from the jobs' final state.
async fn check(
    jobs: &Api<ProofJob>,
    plan: &Plan,
    injected: &[Injected],
    faulty: Option<&str>,
    rotated_pods: &[String],
) -> anyhow::Result<Report> {
    let listed = list_all(jobs).await?;
    let mut report = Report {
        plan_jobs: plan.jobs,
        ..Report::default()
    };
    let mut to_verify = Vec::new();
    for index in 0..plan.jobs {
        let name = job_name(index);
        let Some(job) = listed.get(&name) else {
            report.unfinished.push(format!("{name} (gone)"));
            continue;
        };
        let status = job.status.clone().unwrap_or_default();
        report.attempts += status.attempt_count.unwrap_or(0).max(0) as usize;
        let attempts = &status.attempts;
        match status.phase {
            Some(JobPhase::Succeeded) => {
                report.succeeded += 1;
                let successes: Vec<_> = attempts
                    .iter()
                    .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
                    .collect();
                if successes.len() != 1 {
                    // With every attempt, so a failed run can be read without the cluster.
                    let listed: Vec<String> = attempts
                        .iter()
                        .map(|a| {
                            format!(
                                "#{} {} {:?} {:?}..{:?} {}",
                                a.attempt,
                                a.pod.as_deref().unwrap_or("-"),
                                a.outcome,
                                a.start_time.as_ref().map(|t| t.0.to_string()),
                                a.end_time.as_ref().map(|t| t.0.to_string()),
                                a.message.as_deref().unwrap_or("")
                            )
                        })
                        .collect();
                    report.not_once.push(format!(
                        "{name} (attempts: {}; attemptCount {:?})",
                        listed.join(", "),
                        status.attempt_count
                    ));
                }
                if faulty.is_some() && successes.iter().any(|a| a.pod.as_deref() == faulty) {
                    report
                        .bad_accepted
                        .push(format!("{name} (from the corrupt pod)"));
                }
                let result = status.result.clone().unwrap_or_default();
                let signals = result.public_signals.clone().unwrap_or_default();
                if signals.get(1) != Some(&input_a(index)) {
                    report.bad_accepted.push(format!(
                        "{name} (public signals {signals:?} answer another input)"
                    ));
                }
                to_verify.push(ToVerify {
                    job: name.clone(),
                    proof: result.proof.clone(),
                    public_signals: signals,
                });
            }
            Some(JobPhase::Failed) => {
                report
                    .failed
                    .push((name.clone(), status.reason.clone().unwrap_or_default()));
            }
            other => report.unfinished.push(format!("{name} ({other:?})")),
        }
        if status.attempt_count.unwrap_or(0) as usize != attempts.len() {
            report.unexplained.push(format!(
                "{name}: {} attempts, {} listed",
                status.attempt_count.unwrap_or(0),
                attempts.len()
            ));
        }
        for (i, earlier) in attempts.iter().enumerate() {
            let overlaps = attempts[i + 1..].iter().any(|later| {
                match (&earlier.end_time, &later.start_time) {
                    (Some(end), Some(start)) => start.0 < end.0,
                    _ => true,
                }
            });
            if overlaps {
                // Its attempts go in the report: the job is gone once the run's namespace is.
                let shown: Vec<String> = attempts
                    .iter()
                    .map(|a| {
                        let time =
                            |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                                t.as_ref().map_or("-".to_string(), |t| t.0.to_string())
                            };
                        format!(
                            "#{} on {} {}..{} {:?} {:?}",
                            a.attempt,
                            a.pod.as_deref().unwrap_or("-"),
                            time(&a.start_time),
                            time(&a.end_time),
                            a.outcome,
                            a.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                report
                    .overlapping
                    .push(format!("{name} [{}]", shown.join("; ")));
                break;
            }
        }
        for attempt in attempts {
            match attempt.outcome {
                Some(AttemptOutcome::Succeeded) => continue,
                Some(AttemptOutcome::VerificationFailed) if attempt.pod.as_deref() == faulty => {
                    report.rejected += 1;
                }
                _ => {}
            }
            match explain(attempt, injected, faulty, rotated_pods) {
                Some(cause) => {
                    *report.extra_by_cause.entry(cause).or_default() += 1;
                    let outcome = attempt
                        .outcome
                        .map(|o| format!("{o:?}"))
                        .unwrap_or_else(|| "unset".into());
                    *report
                        .extra_outcomes
                        .entry((cause, outcome.clone()))
                        .or_default() += 1;
                    if cause == Fault::ProverKill.describe()
                        && attempt.outcome == Some(AttemptOutcome::TimedOut)
                    {
                        report.timed_out_on_killed.0 += 1;
                        if lease_ran_out_unattended(attempt, injected) {
                            report.timed_out_on_killed.1 += 1;
                        }
                    }
                    if cause == Fault::ProverKill.describe()
                        && let Some(age) = age_at_kill(attempt, injected)
                    {
                        report
                            .age_at_kill
                            .entry(outcome.clone())
                            .or_default()
                            .push(age);
                    }
                    report
                        .extra_examples
                        .entry((cause, outcome))
                        .or_insert_with(|| attempt.message.clone().unwrap_or_default());
                }
                None => report.unexplained.push(format!(
                    "{name} attempt {} on {:?}: {:?} {:?} ({:?} to {:?})",
                    attempt.attempt,
                    attempt.pod,
                    attempt.outcome,
                    attempt.message,
                    attempt.start_time.as_ref().map(|t| t.0),
                    attempt.end_time.as_ref().map(|t| t.0),
                )),
            }
        }
    }
    let verdicts = snarkjs_verify(&to_verify).await?;
    for (name, ok) in verdicts {
        if ok {
            report.verified_by_snarkjs += 1;
        } else {
            report
                .bad_accepted
                .push(format!("{name} (snarkjs refuses its proof)"));
        }
    }
    Ok(report)
}

/// Every ProofJob of the namespace by name, listed in pages.
async fn list_all(api: &Api<ProofJob>) -> anyhow::Result<HashMap<String, ProofJob>> {
    let mut all = HashMap::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        for job in page.items {
            all.insert(job.name_any(), job);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(all),
        }
    }
}

/// The fault that explains an attempt that did not succeed, if one does. An attempt is
/// explained by:
/// - the corrupt pod, when it rejected that pod's proof;
/// - a prover kill, when it ran on the killed pod at the moment of the kill;
/// - the rotation, when it ran on a pod the rotation replaced, after the rotation began;
/// - a leader kill or a control-plane restart, when it overlaps the fault, widened by the
///   time a new leader needs to take over and one dispatcher lease to run out.
fn explain(
    attempt: &zkfleet_crds::v1alpha1::Attempt,
    injected: &[Injected],
    faulty: Option<&str>,
    rotated_pods: &[String],
) -> Option<&'static str> {
    let pod = attempt.pod.as_deref();
    if attempt.outcome == Some(AttemptOutcome::VerificationFailed) {
        return (pod.is_some() && pod == faulty).then_some("the corrupt pod");
    }
    let slack = SignedDuration::from_secs(1);
    let start = attempt.start_time.as_ref()?.0;
    let end = attempt.end_time.as_ref().map(|t| t.0).unwrap_or(start);
    let overlaps = |from: Timestamp, to: Timestamp| start <= to + slack && end + slack >= from;
    // The fault that touched the attempt's own pod comes first: a prover killed while a leader
    // kill's window was open lost its attempts to the prover kill.
    let on_its_pod = injected.iter().find(|fault| match fault.fault {
        Fault::ProverKill => {
            pod == Some(fault.target.as_str()) && overlaps(fault.started, fault.ended)
        }
        Fault::Rotation => {
            pod.is_some_and(|p| rotated_pods.iter().any(|r| r == p)) && end + slack >= fault.started
        }
        _ => false,
    });
    let cluster_wide = || {
        injected.iter().find(|fault| {
            let after = |seconds: i64| fault.ended + SignedDuration::from_secs(seconds);
            match fault.fault {
                Fault::LeaderKill => overlaps(
                    fault.started,
                    after(LEADER_LEASE_SECONDS + LEASE_SECONDS + 10),
                ),
                Fault::ApiServerRestart | Fault::EtcdRestart => {
                    overlaps(fault.started, after(LEASE_SECONDS + 10))
                }
                Fault::ProverKill | Fault::Rotation => false,
            }
        })
    };
    if let Some(fault) = on_its_pod.or_else(cluster_wide) {
        return Some(fault.fault.describe());
    }
    None
}

/// How long `attempt` had run when the prover kill that ended it began, in seconds.
fn age_at_kill(attempt: &zkfleet_crds::v1alpha1::Attempt, injected: &[Injected]) -> Option<f64> {
    let start = attempt.start_time.as_ref()?.0;
    let pod = attempt.pod.as_deref()?;
    injected
        .iter()
        .filter(|f| f.fault == Fault::ProverKill && f.target == pod && f.started >= start)
        .map(|f| f.started.duration_since(start).as_secs_f64())
        .reduce(f64::min)
}

/// Whether the lease of `attempt`, lost to a prover kill, ran out (one lease after the kill)
/// while no operator could end it: a leader kill or a control-plane restart was under way,
/// widened as [`explain`] widens them.
fn lease_ran_out_unattended(
    attempt: &zkfleet_crds::v1alpha1::Attempt,
    injected: &[Injected],
) -> bool {
    let (Some(start), Some(pod)) = (attempt.start_time.as_ref(), attempt.pod.as_deref()) else {
        return false;
    };
    let Some(kill) = injected
        .iter()
        .filter(|f| f.fault == Fault::ProverKill && f.target == pod && f.started >= start.0)
        .min_by_key(|f| f.started)
    else {
        return false;
    };
    let ran_out = kill.started + SignedDuration::from_secs(LEASE_SECONDS);
    injected.iter().any(|f| {
        let widened = match f.fault {
            Fault::LeaderKill => LEADER_LEASE_SECONDS + LEASE_SECONDS + 10,
            Fault::ApiServerRestart | Fault::EtcdRestart => LEASE_SECONDS + 10,
            Fault::ProverKill | Fault::Rotation => return false,
        };
        f.started <= ran_out && ran_out <= f.ended + SignedDuration::from_secs(widened)
    })
}

/// An accepted proof and the job it answers.
struct ToVerify {
    job: String,
    proof: Option<serde_json::Map<String, serde_json::Value>>,
    public_signals: Vec<String>,
}

/// Verifies the proofs with snarkjs (the verifier the circuit's tooling ships, which nobody
/// here wrote), all in one node process: `(job, accepted)` for each.
async fn snarkjs_verify(proofs: &[ToVerify]) -> anyhow::Result<Vec<(String, bool)>> {
    use tokio::io::AsyncWriteExt as _;
    if proofs.is_empty() {
        return Ok(Vec::new());
    }
    let script = crate::helm::repo_dir().join("e2e/scripts/verify-groth16.cjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(fixtures().join("verification_key.json"))
        .env("NODE_PATH", snarkjs_node_modules()?)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running node (installed with the fixtures' npm tools)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = Vec::new();
    for p in proofs {
        let line = json!({"name": p.job, "proof": p.proof, "publicSignals": p.public_signals});
        lines.extend_from_slice(line.to_string().as_bytes());
        lines.push(b'\n');
    }
    let writer = tokio::spawn(async move {
        stdin.write_all(&lines).await?;
        stdin.shutdown().await
    });
    let out = child.wait_with_output().await?;
    writer.await??;
    if !out.status.success() {
        bail!(
            "the snarkjs verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let verdicts: HashMap<String, bool> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, verdict)| (name.to_string(), verdict == "OK"))
        .collect();
    Ok(proofs
        .iter()
        .map(|p| {
            (
                p.job.clone(),
                verdicts.get(&p.job).copied().unwrap_or(false),
            )
        })
        .collect())
}

/// The `node_modules` holding snarkjs: the fixtures' `bin/snarkjs` is a wrapper that runs
/// `<node_modules>/.bin/snarkjs` (see `prover-pod/fixtures/make-fixtures.sh`).
fn snarkjs_node_modules() -> anyhow::Result<PathBuf> {
    let wrapper = fixtures()
        .parent()
        .map(|root| root.join("bin/snarkjs"))
        .ok_or_else(|| anyhow!("the fixtures have no root"))?;
    let text = std::fs::read_to_string(&wrapper)
        .with_context(|| format!("reading {}", wrapper.display()))?;
    let target = text
        .split('"')
        .nth(1)
        .ok_or_else(|| anyhow!("{} does not name the snarkjs it runs", wrapper.display()))?;
    Path::new(target)
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{target} is not in a node_modules/.bin"))
}

/// Makes a report's table and verdict: `Ok` with the table when every invariant held.
pub fn verdict(report: &Report) -> Result<String, String> {
    let table = report.table();
    let violations = report.violations();
    if violations.is_empty() {
        Ok(table)
    } else {
        Err(format!("{table}\nbroken:\n- {}", violations.join("\n- ")))
    }
}

/// Shared by the binary and the test: runs, prints the table, and fails on a broken promise.
pub async fn run_and_judge(plan: &Plan) -> anyhow::Result<String> {
    let report = run(plan).await?;
    match verdict(&report) {
        Ok(table) => {
            println!("{table}");
            Ok(table)
        }
        Err(text) => Err(anyhow!("the chaos run broke zkfleet's promises:\n{text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_plan_spreads_every_fault_over_the_run_in_order() {
        let plan = Plan::full();
        let schedule = plan.schedule();
        assert_eq!(schedule.len(), 5 + 20 + 1 + 1 + 1);
        assert!(schedule.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(schedule.iter().all(|(at, _)| (0.05..=0.85).contains(at)));
        let count = |f| schedule.iter().filter(|(_, k)| *k == f).count();
        assert_eq!(count(Fault::LeaderKill), 5);
        assert_eq!(count(Fault::ProverKill), 20);
    }

    #[test]
    fn the_short_plan_injects_one_fault_of_each_kind_at_distinct_points() {
        let schedule = Plan::short().schedule();
        assert_eq!(schedule.len(), 5);
        let mut points: Vec<f64> = schedule.iter().map(|(at, _)| *at).collect();
        points.dedup();
        assert_eq!(points.len(), 5, "{schedule:?}");
    }

    fn attempt(
        pod: &str,
        outcome: AttemptOutcome,
        from: &str,
        to: &str,
    ) -> zkfleet_crds::v1alpha1::Attempt {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        zkfleet_crds::v1alpha1::Attempt {
            attempt: 1,
            pod: Some(pod.into()),
            start_time: Some(Time(from.parse().unwrap())),
            end_time: Some(Time(to.parse().unwrap())),
            outcome: Some(outcome),
            ..Default::default()
        }
    }

    fn injected(fault: Fault, target: &str, from: &str, to: &str) -> Injected {
        Injected {
            fault,
            target: target.into(),
            started: from.parse().unwrap(),
            ended: to.parse().unwrap(),
            running: 1,
            queued: 1,
        }
    }

    #[test]
    fn a_lost_lease_that_ran_out_without_a_leader_is_told_apart_with_its_age_at_the_kill() {
        let kill = injected(
            Fault::ProverKill,
            "pool-a",
            "2026-01-01T00:00:10Z",
            "2026-01-01T00:00:10Z",
        );
        let timed_out = attempt(
            "pool-a",
            AttemptOutcome::TimedOut,
            "2026-01-01T00:00:08Z",
            "2026-01-01T00:00:38Z",
        );
        assert_eq!(
            age_at_kill(&timed_out, std::slice::from_ref(&kill)),
            Some(2.0)
        );
        // Its lease ran out at 00:20, with no other fault under way.
        assert!(!lease_ran_out_unattended(
            &timed_out,
            std::slice::from_ref(&kill)
        ));
        // A leader killed at 00:15 leaves nobody to end it until a new one took over.
        let leader = injected(
            Fault::LeaderKill,
            "operator-0",
            "2026-01-01T00:00:15Z",
            "2026-01-01T00:00:15Z",
        );
        assert!(lease_ran_out_unattended(
            &timed_out,
            &[kill.clone(), leader]
        ));
        // A leader killed long after the lease ran out does not count.
        let late = injected(
            Fault::LeaderKill,
            "operator-0",
            "2026-01-01T00:01:00Z",
            "2026-01-01T00:01:00Z",
        );
        assert!(!lease_ran_out_unattended(&timed_out, &[kill, late]));
    }

    #[test]
    fn an_attempt_is_explained_only_by_a_fault_that_could_have_ended_it() {
        let kill = injected(
            Fault::ProverKill,
            "pool-a",
            "2026-01-01T00:00:10Z",
            "2026-01-01T00:00:10Z",
        );
        let faults = [kill];
        let lost = attempt(
            "pool-a",
            AttemptOutcome::LeaseExpired,
            "2026-01-01T00:00:08Z",
            "2026-01-01T00:00:20Z",
        );
        assert_eq!(
            explain(&lost, &faults, Some("pool-faulty"), &[]),
            Some("prover container SIGKILLed")
        );
        // A leader kill whose window covers the loss does not take it from the prover kill.
        let leader = injected(
            Fault::LeaderKill,
            "operator-0",
            "2026-01-01T00:00:05Z",
            "2026-01-01T00:00:05Z",
        );
        let both = [leader, faults[0].clone()];
        assert_eq!(
            explain(&lost, &both, Some("pool-faulty"), &[]),
            Some("prover container SIGKILLed")
        );
        // The same loss on a pod nobody killed is unexplained.
        let elsewhere = attempt(
            "pool-b",
            AttemptOutcome::LeaseExpired,
            "2026-01-01T00:00:08Z",
            "2026-01-01T00:00:20Z",
        );
        assert_eq!(explain(&elsewhere, &faults, Some("pool-faulty"), &[]), None);
        // So is one on the killed pod that began after the kill.
        let later = attempt(
            "pool-a",
            AttemptOutcome::LeaseExpired,
            "2026-01-01T00:00:30Z",
            "2026-01-01T00:00:40Z",
        );
        assert_eq!(explain(&later, &faults, Some("pool-faulty"), &[]), None);
        // A rejected proof is explained by the corrupt pod only.
        let rejected = attempt(
            "pool-faulty",
            AttemptOutcome::VerificationFailed,
            "2026-01-01T00:00:08Z",
            "2026-01-01T00:00:09Z",
        );
        assert_eq!(
            explain(&rejected, &faults, Some("pool-faulty"), &[]),
            Some("the corrupt pod")
        );
        let honest_rejected = attempt(
            "pool-a",
            AttemptOutcome::VerificationFailed,
            "2026-01-01T00:00:08Z",
            "2026-01-01T00:00:09Z",
        );
        assert_eq!(
            explain(&honest_rejected, &faults, Some("pool-faulty"), &[]),
            None
        );
    }

    #[test]
    fn the_verdict_lists_every_broken_promise() {
        let mut report = Report {
            plan_jobs: 2,
            succeeded: 1,
            verified_by_snarkjs: 1,
            ..Report::default()
        };
        report.planned.insert(Fault::LeaderKill, 1);
        report.injected.push(injected(
            Fault::LeaderKill,
            "op-0",
            "2026-01-01T00:00:10Z",
            "2026-01-01T00:00:11Z",
        ));
        report
            .failed
            .push(("job-00001".into(), "LeaseExpired".into()));
        assert!(verdict(&report).is_ok(), "{:?}", verdict(&report));
        report
            .bad_accepted
            .push("job-00000 (snarkjs refuses its proof)".into());
        report.failed.push(("job-00002".into(), String::new()));
        let text = verdict(&report).unwrap_err();
        assert!(
            text.contains("bad proofs accepted (1): job-00000"),
            "{text}"
        );
        assert!(
            text.contains("Failed without a reason (1): job-00002"),
            "{text}"
        );
    }
}
