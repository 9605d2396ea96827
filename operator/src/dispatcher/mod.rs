//! The dispatcher: every pool's priority queue of ProofJobs, leased to prover pods that
//! long-poll for work, with heartbeats, expiry and retries; results verified before a job
//! succeeds.
//!
//! A job's walk through it, one module per step:
//!
//! 1. **apply**: the job controller ([`crate::job`]) validates a new job, writes `Queued` and
//!    hands the stored copy to [`Dispatcher::observe`]; the ProofJob watch here brings every
//!    later copy.
//! 2. **queue**: [`state`] keeps every pool's queue and every lease in memory, with no I/O.
//! 3. **lease**: [`auth`] checks a pod's token and identity before its request body is read;
//!    [`grant`] long-polls for work and writes each lease to the job's status before the pod
//!    gets it.
//! 4. **proof**: the pod proves, heartbeating ([`Dispatcher::heartbeat`]), and uploads its
//!    result to [`complete`],
//! 5. **verify**: which has it checked ([`verify`]: Groth16 here, STARKs by the pool's own
//!    verifier),
//! 6. **status**: and [`record`] writes the attempt, the proof (inline or in the artifact
//!    store) and the phase at the job's `resourceVersion`.
//!
//! [`reaper`] ends leases whose pod went quiet, went away or ran out of time. The HTTP side is
//! [`server`].
//!
//! Who owns what:
//!
//! - [`state::State`]: every queue and every lease, behind one lock and with no I/O. The two
//!   stay together on purpose: a grant takes a job off its queue and into a lease in one step,
//!   and a lapsed lease puts it back in one step, so no moment sees a job in both or neither.
//! - [`verify::Verification`]: the judging part, with its own locks: verifying keys, each pod's
//!   known-answer standing and rejected proofs ([`known_answer`]), and flagged pods.
//! - [`status`]: the job's status transitions, as pure functions, and the one function that
//!   writes a job's status (at its `resourceVersion`); the job controller above uses it too.
//! - [`auth::Tokens`]: the pools' dispatcher tokens.
//! - [`Dispatcher`]: the facade the HTTP server ([`server`]) and the controllers call; it
//!   holds the parts above, the watches' stores and the operator's settings.
//!
//! The ProofJob objects are the source of truth: the queue is rebuilt from them at start, a
//! lease is on the job's status before it is handed out, and every status write is made at the
//! job's `resourceVersion`, so a restart loses nothing and nothing completes twice.

pub mod auth;
pub mod complete;
pub mod fallback;
pub mod grant;
pub mod known_answer;
pub mod reaper;
pub mod record;
mod remote_verify;
pub mod server;
pub mod state;
pub mod status;
pub mod usage;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::{info, warn};
use zkfleet_crds::v1alpha1::{
    DEFAULT_JOB_MAX_RETRIES, DEFAULT_JOB_TIMEOUT_SECONDS, FlaggedPod, JobPhase, ProofJob,
    ProverPool, SharingSpec,
};

use crate::artifacts::ArtifactStore;
use crate::build::POOL_LABEL;
use crate::metrics::Metrics;
use state::{Limits, PoolKey, State};

pub use reaper::{PIN_GRACE, pin_stranded, retry_backoff};

/// How the dispatcher behaves; flags of the operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A lease runs out this long after its last heartbeat.
    pub lease_duration: Duration,
    /// Longest a lease request is held open waiting for work.
    pub max_wait: Duration,
    /// Proofs up to this many bytes of JSON go on the job's status; larger ones to the
    /// artifact store.
    pub inline_result_max_bytes: usize,
    /// Base URL of the verifier every pool's proofs go to, for tests that run one in
    /// process; `None` (the operator's setting): each pool's own verifier Service.
    pub verifier_url: Option<String>,
}

/// Most pods kept in a pool's `status.flaggedPods`.
pub const MAX_FLAGGED_PODS: usize = 16;

/// What went wrong with a request, as the HTTP status and `{code, message}` the pod sees.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
}

impl DispatchError {
    /// Stable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Stale(_) => "stale_lease",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "too_large",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// The dispatcher. One per operator, active on the leader only.
pub struct Dispatcher {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// Every queue and lease.
    state: Mutex<State>,
    /// Long-polls waiting on a pool, woken when one of its jobs is queued.
    wakeups: Mutex<HashMap<PoolKey, Arc<Notify>>>,
    tokens: auth::Tokens,
    /// Verifying keys, known-answer standings, rejected proofs and flagged pods.
    verification: verify::Verification,
    pods: Store<Pod>,
    pods_writer: Mutex<Option<reflector::store::Writer<Pod>>>,
    /// Pods of the pools' verifiers, which carry no pool label (see [`crate::build::verifier`]).
    verifier_pods: Store<Pod>,
    verifier_pods_writer: Mutex<Option<reflector::store::Writer<Pod>>>,
    /// Turns the verifier pod asked first, so verifications spread over a verifier's pods.
    verifier_turn: std::sync::atomic::AtomicUsize,
    pools: Store<ProverPool>,
    pools_writer: Mutex<Option<reflector::store::Writer<ProverPool>>>,
    /// Where proofs too large for a status go; `None`: nowhere durable, so such jobs fail.
    artifacts: Option<ArtifactStore>,
    /// Set once the ProofJob watch has listed every job: before that the queue is incomplete.
    synced: AtomicBool,
    watch_namespace: Option<String>,
    /// When each pool last had a queued or running job; pools never seen count from `started`.
    last_busy: Mutex<HashMap<PoolKey, Instant>>,
    started: Instant,
    /// Pools whose counts changed, for the pool controller (see [`Dispatcher::load_changes`]).
    load_changes_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    load_changes_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
    /// `pod-deletion-cost` last written per pod, so unchanged pods are not patched again.
    deletion_costs: Mutex<HashMap<(String, String), i32>>,
}

impl Dispatcher {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        artifacts: Option<ArtifactStore>,
        watch_namespace: Option<String>,
    ) -> Arc<Self> {
        let (pods, pods_writer) = reflector::store();
        let (pools, pools_writer) = reflector::store();
        let (verifier_pods, verifier_pods_writer) = reflector::store();
        let (load_changes_tx, load_changes_rx) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Self {
            load_changes_tx,
            load_changes_rx: Mutex::new(Some(load_changes_rx)),
            verification: verify::Verification::new(client.clone()),
            client,
            settings,
            metrics,
            state: Mutex::new(State::default()),
            wakeups: Mutex::default(),
            tokens: auth::Tokens::default(),
            pods,
            pods_writer: Mutex::new(Some(pods_writer)),
            verifier_pods,
            verifier_pods_writer: Mutex::new(Some(verifier_pods_writer)),
            verifier_turn: std::sync::atomic::AtomicUsize::new(0),
            pools,
            pools_writer: Mutex::new(Some(pools_writer)),
            artifacts,
            synced: AtomicBool::new(false),
            watch_namespace,
            last_busy: Mutex::default(),
            started: Instant::now(),
            deletion_costs: Mutex::default(),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        crate::scope::api(&self.client, self.watch_namespace.as_deref())
    }

    /// Watches pods, pools and jobs, and expires leases, until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let pods_writer = self.pods_writer.lock().expect("lock").take();
        let pools_writer = self.pools_writer.lock().expect("lock").take();
        let verifier_pods_writer = self.verifier_pods_writer.lock().expect("lock").take();
        let (Some(pods_writer), Some(pools_writer), Some(verifier_pods_writer)) =
            (pods_writer, pools_writer, verifier_pods_writer)
        else {
            warn!("dispatcher already running");
            return;
        };
        let verifier_config = watcher::Config::default().labels(&format!(
            "app.kubernetes.io/component={},app.kubernetes.io/name={}",
            crate::build::verifier::COMPONENT_VERIFIER,
            crate::build::PROVER_APP_NAME
        ));
        let verifier_pods = reflector::reflector(
            verifier_pods_writer,
            watcher::watcher(self.api::<Pod>(), verifier_config),
        )
        .default_backoff()
        .for_each(|_| async {});
        let pod_config = watcher::Config::default().labels(POOL_LABEL);
        let pods =
            reflector::reflector(pods_writer, watcher::watcher(self.api::<Pod>(), pod_config))
                .default_backoff()
                .for_each(|_| async {});
        let pools = reflector::reflector(
            pools_writer,
            watcher::watcher(self.api::<ProverPool>(), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|_| async {});
        let jobs = self.clone().watch_jobs();
        let ticker = self.clone().reap();
        let mover = self.clone().move_waiting();
        tokio::select! {
            () = pods => {}
            () = pools => {}
            () = verifier_pods => {}
            () = jobs => {}
            () = ticker => {}
            () = mover => {}
            () = shutdown => {}
        }
    }

    async fn watch_jobs(self: Arc<Self>) {
        let mut events = watcher::watcher(self.api::<ProofJob>(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let _ = self.pools.wait_until_ready().await;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(job) | Event::InitApply(job)) => self.observe(job),
                Ok(Event::Delete(job)) => self.forget(&job),
                Ok(Event::Init) => {}
                Ok(Event::InitDone) => {
                    if !self.synced.swap(true, Ordering::AcqRel) {
                        let (queued, running) = self.totals();
                        info!(queued, running, "queue rebuilt from ProofJobs");
                    }
                }
                Err(e) => warn!(error = %e, "ProofJob watch failed; retrying"),
            }
        }
    }

    fn totals(&self) -> (usize, usize) {
        let mut state = self.state.lock().expect("lock");
        state
            .loads()
            .values()
            .fold((0, 0), |(q, r), (dq, dr)| (q + dq, r + dr))
    }

    /// The job's timeout and retries, from the job or its pool's `jobDefaults`.
    fn limits(&self, job: &ProofJob) -> Limits {
        let defaults = self
            .pool(&PoolKey::of(job))
            .and_then(|p| p.spec.job_defaults.clone());
        let timeout = job
            .spec
            .timeout_seconds
            .or(defaults.as_ref().map(|d| d.timeout_seconds))
            .unwrap_or(DEFAULT_JOB_TIMEOUT_SECONDS);
        let retries = job
            .spec
            .max_retries
            .or(defaults.as_ref().map(|d| d.max_retries))
            .unwrap_or(DEFAULT_JOB_MAX_RETRIES);
        // On a fallback pool the retries count afresh: those used on earlier pools are added.
        let earlier = job
            .status
            .as_ref()
            .and_then(|s| s.pool.as_ref())
            .map_or(0, |p| p.since_attempt.max(0) as u32);
        Limits {
            timeout: Duration::from_secs(timeout.max(1) as u64),
            max_retries: retries.max(0) as u32 + earlier,
        }
    }

    /// Whether the ProofJob watch has listed every job, so the queues are complete and pods
    /// are served.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Takes in the newest copy of a job.
    pub fn observe(&self, job: ProofJob) {
        let key = PoolKey::of(&job);
        let limits = self.limits(&job);
        let queued = job.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Queued);
        self.state.lock().expect("lock").observe(
            job,
            limits,
            self.settings.lease_duration,
            Instant::now(),
        );
        if queued {
            self.wake(&key);
        }
    }

    /// Forgets a deleted job; the pod holding it learns at its next heartbeat.
    pub fn forget(&self, job: &ProofJob) {
        if let Some(uid) = job.uid() {
            self.state.lock().expect("lock").forget(&uid);
        }
    }

    /// Queued and running jobs of a pool.
    pub fn load(&self, namespace: &str, pool: &str) -> (usize, usize) {
        self.state
            .lock()
            .expect("lock")
            .load(&PoolKey::new(namespace, pool))
    }

    /// How long since the pool was last seen with a queued or running job (since the
    /// operator started, for a pool it has never seen busy). The caller, which has just read
    /// the pool's [`Dispatcher::load`], treats a busy pool as idle for zero.
    pub fn idle_for(&self, namespace: &str, pool: &str) -> Duration {
        let since = self
            .last_busy
            .lock()
            .expect("lock")
            .get(&PoolKey::new(namespace, pool))
            .copied()
            .unwrap_or(self.started);
        since.elapsed()
    }

    /// Pods flagged since the pool's status was last written, for the pool controller to add.
    pub fn flagged(&self, namespace: &str, pool: &str) -> Vec<FlaggedPod> {
        self.verification.flagged(&PoolKey::new(namespace, pool))
    }

    /// Every pool's queued and running jobs in a namespace (for the external metrics API).
    pub fn loads_in(&self, namespace: &str) -> Vec<(String, usize, usize)> {
        let loads = self.state.lock().expect("lock").loads();
        loads
            .into_iter()
            .filter(|(key, _)| key.namespace == namespace)
            .map(|(key, (queued, running))| (key.name, queued, running))
            .collect()
    }

    /// Names a pool whose status the pool controller should write again: its counts changed
    /// (sent at most once per pool per reaper pass, a second, so the channel stays short), or
    /// one of its pods was flagged (rare: one rejected proof or failed check each).
    fn load_changed(&self, pool: &PoolKey) {
        let _ = self
            .load_changes_tx
            .send((pool.namespace.clone(), pool.name.clone()));
    }

    /// The pools whose queued or running counts changed, as the reaper finds them each second,
    /// and those with a newly flagged pod.
    /// Taken once (by the pool controller); later calls get an empty stream.
    pub fn load_changes(&self) -> futures::stream::BoxStream<'static, (String, String)> {
        match self.load_changes_rx.lock().expect("lock").take() {
            Some(rx) => tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
            None => futures::stream::empty().boxed(),
        }
    }

    fn wake(&self, pool: &PoolKey) {
        if let Some(notify) = self.wakeups.lock().expect("lock").get(pool) {
            notify.notify_waiters();
        }
    }

    fn wakeup(&self, pool: &PoolKey) -> Arc<Notify> {
        self.wakeups
            .lock()
            .expect("lock")
            .entry(pool.clone())
            .or_default()
            .clone()
    }

    fn pool(&self, key: &PoolKey) -> Option<Arc<ProverPool>> {
        self.pools
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// How the pool shares its slots among namespaces (without `spec.sharing`: its own
    /// namespace alone, unweighted and uncapped).
    fn sharing(&self, key: &PoolKey) -> SharingSpec {
        self.pool(key)
            .and_then(|p| p.spec.sharing.clone())
            .unwrap_or_default()
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }
}

impl crate::job::JobQueue for Dispatcher {
    fn observe(&self, job: ProofJob) {
        Dispatcher::observe(self, job);
    }

    fn forget(&self, job: &ProofJob) {
        Dispatcher::forget(self, job);
    }

    fn reusable(
        &self,
        (namespace, pool): (&str, &str),
        parameters_digest: &str,
        input_digest: &str,
        job_namespace: &str,
        across_namespaces: bool,
    ) -> Option<crate::job::reuse::EarlierResult> {
        self.state
            .lock()
            .expect("lock")
            .reusable(
                &PoolKey::new(namespace, pool),
                parameters_digest,
                input_digest,
                job_namespace,
                across_namespaces,
            )
            .map(|r| crate::job::reuse::EarlierResult {
                namespace: r.namespace,
                name: r.name,
                uid: r.uid,
            })
    }
}

impl crate::pool::QueueView for Dispatcher {
    fn load(&self, namespace: &str, pool: &str) -> (usize, usize) {
        Dispatcher::load(self, namespace, pool)
    }

    fn flagged(&self, namespace: &str, pool: &str) -> Vec<FlaggedPod> {
        Dispatcher::flagged(self, namespace, pool)
    }

    fn idle_for(&self, namespace: &str, pool: &str) -> Duration {
        Dispatcher::idle_for(self, namespace, pool)
    }

    fn load_changes(&self) -> futures::stream::BoxStream<'static, (String, String)> {
        Dispatcher::load_changes(self)
    }

    fn namespace_loads(
        &self,
        namespace: &str,
        pool: &str,
    ) -> std::collections::BTreeMap<String, (usize, usize)> {
        self.state
            .lock()
            .expect("lock")
            .tenant_loads(&PoolKey::new(namespace, pool))
    }
}

impl crate::keda_scaler::PoolScalings for Dispatcher {
    fn scaling(&self, namespace: &str, pool: &str) -> Option<crate::keda_scaler::PoolScaling> {
        let key = PoolKey::new(namespace, pool);
        let (target, slots) = crate::build::hpa::targets_per_replica(&*self.pool(&key)?);
        let (queued, running) = self.state.lock().expect("lock").load(&key);
        Some(crate::keda_scaler::PoolScaling {
            queued: queued as u64,
            running: running as u64,
            target_queue_per_replica: f64::from(target),
            slots_per_replica: f64::from(slots),
        })
    }
}

impl crate::external_metrics::PoolLoads for Dispatcher {
    fn loads(&self, namespace: &str) -> Vec<crate::external_metrics::PoolLoad> {
        self.loads_in(namespace)
            .into_iter()
            .map(
                |(pool, queued, running)| crate::external_metrics::PoolLoad {
                    pool,
                    queued: queued as u64,
                    running: running as u64,
                },
            )
            .collect()
    }
}

fn phase_name(phase: Option<JobPhase>) -> String {
    match phase {
        Some(p) => format!("{p:?}"),
        None => "Pending".into(),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The parameters version in the pod's template (set by the operator).
fn served_version(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "ZKFLEET_PARAMETERS_VERSION")
        .and_then(|e| e.value.clone())
}
