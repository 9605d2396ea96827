//! The dispatcher: every pool's priority queue of ProofJobs, leased to prover pods that
//! long-poll for work, with heartbeats, expiry and retries; results verified with the pool's
//! verifying key before a job succeeds.
//!
//! The ProofJob objects are the source of truth. The queue is rebuilt from them at start, a
//! lease is written to the job's status before it is handed out, and every status write is
//! made at the job's `resourceVersion`, so an operator restart loses nothing and nothing
//! completes twice. The HTTP side is [`server`]; the memory is [`state`].

mod remote_verify;
pub mod server;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use zkfleet_contract::lease::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest,
    LeaseResponse, LeasedJob, Outcome,
};
use zkfleet_crds::v1alpha1::{
    AttemptOutcome, DEFAULT_JOB_MAX_RETRIES, DEFAULT_JOB_TIMEOUT_SECONDS, FlaggedPod, JobPhase,
    ParametersSpec, ProofJob, ProofResult, ProverPool, RolloutState, Verification,
};

use crate::artifacts::ArtifactStore;
use crate::build::token_secret::DispatcherToken;
use crate::build::{self, POOL_LABEL};
use crate::job::status::{self as job_status, AttemptFailure, Grant, Success};
use crate::job::{self, input};
use crate::metrics::Metrics;
use crate::params::Serving;
use crate::verifying_keys::VerifyingKeys;
use state::{Held, Lapse, Lapsed, Limits, PoolKey, State};

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
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// The dispatcher. One per operator, active on the leader only.
pub struct Dispatcher {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    wakeups: Mutex<HashMap<PoolKey, Arc<Notify>>>,
    flagged: Mutex<HashMap<PoolKey, Vec<FlaggedPod>>>,
    tokens: Mutex<HashMap<PoolKey, (DispatcherToken, Instant)>>,
    pods: Store<Pod>,
    pods_writer: Mutex<Option<reflector::store::Writer<Pod>>>,
    pools: Store<ProverPool>,
    pools_writer: Mutex<Option<reflector::store::Writer<ProverPool>>>,
    keys: VerifyingKeys,
    artifacts: ArtifactStore,
    synced: AtomicBool,
    watch_namespace: Option<String>,
    /// When each pool last had a queued or running job; pools never seen count from `started`.
    last_busy: Mutex<HashMap<PoolKey, Instant>>,
    started: Instant,
    /// `pod-deletion-cost` last written per pod, so unchanged pods are not patched again.
    deletion_costs: Mutex<HashMap<(String, String), i32>>,
}

/// Annotation the ReplicaSet controller reads to pick which pods to remove first (lowest
/// first) when a pool scales down.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Deletion cost of a pod holding leases; idle pods get 0, so they go first.
pub const BUSY_DELETION_COST: i32 = 10_000;

/// How long a pool's token is trusted from memory before the Secret is read again.
const TOKEN_TTL: Duration = Duration::from_secs(30);

impl Dispatcher {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        artifacts: ArtifactStore,
        watch_namespace: Option<String>,
    ) -> Arc<Self> {
        let (pods, pods_writer) = reflector::store();
        let (pools, pools_writer) = reflector::store();
        Arc::new(Self {
            keys: VerifyingKeys::new(client.clone()),
            client,
            settings,
            metrics,
            state: Mutex::new(State::default()),
            wakeups: Mutex::default(),
            flagged: Mutex::default(),
            tokens: Mutex::default(),
            pods,
            pods_writer: Mutex::new(Some(pods_writer)),
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
        crate::pool::scoped(&self.client, self.watch_namespace.as_deref())
    }

    /// Watches pods, pools and jobs, and expires leases, until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let pods_writer = self.pods_writer.lock().expect("lock").take();
        let pools_writer = self.pools_writer.lock().expect("lock").take();
        let (Some(pods_writer), Some(pools_writer)) = (pods_writer, pools_writer) else {
            warn!("dispatcher already running");
            return;
        };
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
        let ticker = self.clone().expire_leases();
        tokio::select! {
            () = pods => {}
            () = pools => {}
            () = jobs => {}
            () = ticker => {}
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
        let state = self.state.lock().expect("lock");
        state
            .loads()
            .values()
            .fold((0, 0), |(q, r), (dq, dr)| (q + dq, r + dr))
    }

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
        Limits {
            timeout: Duration::from_secs(timeout.max(1) as u64),
            max_retries: retries.max(0) as u32,
        }
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

    /// Deletes a stored proof (idempotent).
    pub async fn delete_artifact(&self, location: &str) -> Result<(), String> {
        self.artifacts
            .delete(location)
            .await
            .map_err(|e| e.to_string())
    }

    /// Queued and running jobs of a pool.
    pub fn load(&self, namespace: &str, pool: &str) -> (usize, usize) {
        self.state.lock().expect("lock").load(&PoolKey {
            namespace: namespace.into(),
            name: pool.into(),
        })
    }

    /// How long since the pool was last seen with a queued or running job (since the
    /// operator started, for a pool it has never seen busy). The caller, which has just read
    /// the pool's [`Dispatcher::load`], treats a busy pool as idle for zero.
    pub fn idle_for(&self, namespace: &str, pool: &str) -> Duration {
        let key = PoolKey {
            namespace: namespace.into(),
            name: pool.into(),
        };
        let since = self
            .last_busy
            .lock()
            .expect("lock")
            .get(&key)
            .copied()
            .unwrap_or(self.started);
        since.elapsed()
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

    /// Marks busy pods expensive to delete and idle ones cheap, so a scale-down removes idle
    /// pods first. Only pods whose cost changed are patched.
    async fn update_deletion_costs(&self) {
        let busy = self.state.lock().expect("lock").busy_pods();
        let mut changes = Vec::new();
        for pod in self.pods.state() {
            let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = (namespace, name);
            let cost = if busy.contains(&key) {
                BUSY_DELETION_COST
            } else {
                0
            };
            let current = pod
                .annotations()
                .get(DELETION_COST_ANNOTATION)
                .and_then(|v| v.parse::<i32>().ok());
            let written = self.deletion_costs.lock().expect("lock").get(&key).copied();
            if current != Some(cost) && written != Some(cost) {
                changes.push((key, cost));
            }
        }
        for ((namespace, name), cost) in changes {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let patch =
                json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: cost.to_string()}}});
            match pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.deletion_costs
                        .lock()
                        .expect("lock")
                        .insert((namespace, name), cost);
                }
                Err(e) => debug!(error = %e, pod = %name, "could not set the pod deletion cost"),
            }
        }
    }

    /// Pods flagged since the pool's status was last written, for the pool controller to add.
    pub fn flagged(&self, namespace: &str, pool: &str) -> Vec<FlaggedPod> {
        self.flagged
            .lock()
            .expect("lock")
            .get(&PoolKey {
                namespace: namespace.into(),
                name: pool.into(),
            })
            .cloned()
            .unwrap_or_default()
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

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Checks the bearer token against the pool's Secret and that `pod` is a pod of the pool
    /// calling from its own address. Returns the pod.
    pub async fn authenticate(
        &self,
        caller: &zkfleet_contract::lease::Caller,
        token: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Arc<Pod>, DispatchError> {
        if !self.synced.load(Ordering::Acquire) {
            return Err(DispatchError::Unavailable(
                "the dispatcher is still rebuilding its queue; retry shortly".into(),
            ));
        }
        let key = PoolKey {
            namespace: caller.namespace.clone(),
            name: caller.pool.clone(),
        };
        let Some(token) = token else {
            return Err(DispatchError::Unauthorized(
                "missing Authorization: Bearer <pool token>".into(),
            ));
        };
        let expected = self.token(&key).await?;
        if !constant_time_eq(expected.expose().as_bytes(), token.as_bytes()) {
            // The Secret may have been replaced: read it again once before refusing.
            self.tokens.lock().expect("lock").remove(&key);
            let fresh = self.token(&key).await?;
            if !constant_time_eq(fresh.expose().as_bytes(), token.as_bytes()) {
                return Err(DispatchError::Unauthorized(format!(
                    "the token is not the dispatcher token of pool {}/{}",
                    key.namespace, key.name
                )));
            }
        }
        let Some(pod) = self.pod(&caller.namespace, &caller.pod) else {
            return Err(DispatchError::Forbidden(format!(
                "pod {}/{} does not exist",
                caller.namespace, caller.pod
            )));
        };
        if pod.labels().get(POOL_LABEL) != Some(&caller.pool) {
            return Err(DispatchError::Forbidden(format!(
                "pod {}/{} does not belong to pool {}",
                caller.namespace, caller.pod, caller.pool
            )));
        }
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
        if let (Some(peer), Some(pod_ip)) = (peer, pod_ip)
            && peer != pod_ip
        {
            return Err(DispatchError::Forbidden(format!(
                "the request comes from {peer}, not from pod {}/{} ({pod_ip})",
                caller.namespace, caller.pod
            )));
        }
        Ok(pod)
    }

    async fn token(&self, key: &PoolKey) -> Result<DispatcherToken, DispatchError> {
        if let Some((token, at)) = self.tokens.lock().expect("lock").get(key)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(token.clone());
        }
        let Some(pool) = self.pool(key) else {
            return Err(DispatchError::Forbidden(format!(
                "pool {}/{} does not exist",
                key.namespace, key.name
            )));
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
        let secret = secrets
            .get_opt(&build::token_secret_name(&pool))
            .await
            .map_err(|e| DispatchError::Unavailable(format!("reading the pool token: {e}")))?;
        let token = secret
            .as_ref()
            .and_then(DispatcherToken::from_secret)
            .ok_or_else(|| {
                DispatchError::Unavailable(format!(
                    "pool {}/{} has no dispatcher token yet",
                    key.namespace, key.name
                ))
            })?;
        self.tokens
            .lock()
            .expect("lock")
            .insert(key.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    /// Answers a lease request: up to `free_slots` jobs, waiting up to `wait_seconds` for one.
    pub async fn lease(
        &self,
        pod: &Pod,
        request: &LeaseRequest,
    ) -> Result<LeaseResponse, DispatchError> {
        if !is_ready(pod) || pod.metadata.deletion_timestamp.is_some() {
            return Err(DispatchError::Forbidden(format!(
                "pod {} is not Ready or is terminating, so it gets no new work",
                request.caller.pod
            )));
        }
        let key = PoolKey {
            namespace: request.caller.namespace.clone(),
            name: request.caller.pool.clone(),
        };
        // The version the operator put in the pod's template, not what the pod says.
        let version = served_version(pod).unwrap_or_else(|| request.parameters_version.clone());
        let wait = Duration::from_secs(request.wait_seconds.into()).min(self.settings.max_wait);
        let until = Instant::now() + wait;
        let notify = self.wakeup(&key);
        loop {
            let notified = notify.notified();
            // A long poll outlives the check at its start: a pod that began terminating (or
            // stopped being Ready) meanwhile gets no more work.
            let still_serving = self
                .pod(&request.caller.namespace, &request.caller.pod)
                .is_some_and(|p| is_ready(&p) && p.metadata.deletion_timestamp.is_none());
            if !still_serving {
                return Ok(LeaseResponse::default());
            }
            let taken = self.state.lock().expect("lock").take(
                &key,
                &request.caller.pod,
                &version,
                request.free_slots.max(1) as usize,
                Instant::now(),
            );
            let mut jobs = Vec::new();
            for job in taken {
                if let Some(leased) = self.grant(&job, pod, &version, request).await {
                    jobs.push(leased);
                }
            }
            if !jobs.is_empty() {
                return Ok(LeaseResponse { jobs });
            }
            let now = Instant::now();
            if now >= until {
                return Ok(LeaseResponse::default());
            }
            let backoff = self
                .state
                .lock()
                .expect("lock")
                .next_ready_in(&key, &version, now)
                .map(|d| d.max(Duration::from_millis(50)));
            let sleep = backoff.unwrap_or(until - now).min(until - now);
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Writes the lease of `job` to its status, then returns it for the pod. A job whose input
    /// cannot be read fails here with `InvalidInput`.
    async fn grant(
        &self,
        job: &ProofJob,
        pod: &Pod,
        version: &str,
        request: &LeaseRequest,
    ) -> Option<LeasedJob> {
        let uid = job.uid()?;
        let api: Api<ProofJob> = Api::namespaced(self.client.clone(), &request.caller.namespace);
        let now = Time(Timestamp::now());
        // Read again (admission only checked it): inputs, Secrets included, are not kept in
        // memory while jobs wait, and a job may wait long.
        let input = match input::resolve(&self.client, job).await {
            Ok(input) => input,
            Err(input::InputError::Invalid(message)) => {
                let s = job_status::invalid(job, job_status::INVALID_INPUT, message, &now);
                match job_status::write(&api, job, s).await {
                    Ok(stored) => {
                        self.metrics.job_finished(job_status::INVALID_INPUT);
                        self.state.lock().expect("lock").attempt_recorded(
                            stored,
                            Duration::ZERO,
                            None,
                            Instant::now(),
                        );
                    }
                    Err(e) => {
                        debug!(error = %e, "could not fail the job; it is retried");
                        self.state
                            .lock()
                            .expect("lock")
                            .grant_abandoned(&uid, Instant::now());
                    }
                }
                return None;
            }
            Err(e) => {
                warn!(error = %e, "could not read a job's input; leaving it queued");
                self.state
                    .lock()
                    .expect("lock")
                    .grant_abandoned(&uid, Instant::now() + Duration::from_secs(1));
                return None;
            }
        };
        let limits = self.limits(job);
        let status = job.status.clone().unwrap_or_default();
        let attempt = job_status::current_attempt(&status) + 1;
        let key = PoolKey::of(job);
        let revision = self
            .pool(&key)
            .and_then(|p| p.status.clone())
            .and_then(|s| s.parameters)
            .and_then(|p| {
                [p.current, p.previous]
                    .into_iter()
                    .flatten()
                    .find(|r| r.version == version)
            });
        let lease_deadline = Timestamp::now()
            + SignedDuration::try_from(self.settings.lease_duration).unwrap_or_default();
        let grant = Grant {
            attempt,
            pod: request.caller.pod.clone(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            deadline: Time(lease_deadline),
            parameters_version: Some(version.to_string()),
            parameters_digest: revision
                .map(|r| r.digest)
                .or_else(|| Some(request.parameters_digest.clone())),
        };
        let written = job_status::write(&api, job, job_status::leased(job, &grant, &now)).await;
        match written {
            Ok(stored) => {
                let granted_at = Instant::now();
                let queued_at = status.queued_at.as_ref().map(|t| t.0);
                if let Some(q) = queued_at
                    && let Ok(waited) = Duration::try_from(Timestamp::now().duration_since(q))
                {
                    self.metrics.dispatched(waited);
                }
                self.state.lock().expect("lock").granted(
                    stored,
                    Held {
                        pod: request.caller.pod.clone(),
                        attempt,
                        deadline: granted_at + self.settings.lease_duration,
                        timeout_at: granted_at + limits.timeout,
                        granted_at,
                    },
                );
                info!(job = %job.name_any(), pod = %request.caller.pod, attempt, "leased");
                Some(LeasedJob {
                    lease: zkfleet_contract::lease::LeaseRef { uid, attempt },
                    job: format!("{}/{}", request.caller.namespace, job.name_any()),
                    lease_seconds: self.settings.lease_duration.as_secs() as u32,
                    timeout_seconds: limits.timeout.as_secs() as u32,
                    input,
                })
            }
            Err(e) => {
                if job_status::is_conflict(&e) {
                    debug!(job = %job.name_any(), "lease lost a write race; re-reading the job");
                    if let Ok(fresh) = api.get(&job.name_any()).await {
                        self.observe(fresh);
                    }
                } else if !job_status::is_not_found(&e) {
                    warn!(error = %e, "could not write a lease");
                }
                self.state
                    .lock()
                    .expect("lock")
                    .grant_abandoned(&uid, Instant::now());
                None
            }
        }
    }

    /// Renews the pod's leases and says which it no longer holds.
    pub fn heartbeat(&self, request: &HeartbeatRequest) -> HeartbeatResponse {
        let revoked = self.state.lock().expect("lock").heartbeat(
            &request.caller.pod,
            &request.leases,
            self.settings.lease_duration,
            Instant::now(),
        );
        for lease in &revoked {
            info!(uid = %lease.uid, attempt = lease.attempt, pod = %request.caller.pod, "lease revoked");
        }
        HeartbeatResponse { revoked }
    }

    /// Records how a leased attempt ended: verifies a proof before the job succeeds.
    pub async fn complete(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, DispatchError> {
        let pod = &request.caller.pod;
        let holder = self.state.lock().expect("lock").holder(&request.lease, pod);
        let Some((job, held, limits)) = holder else {
            return self.already_recorded(request);
        };
        let key = PoolKey::of(&job);
        match &request.outcome {
            Outcome::Proved {
                proof,
                public_signals,
                public_outputs,
                proving_millis,
                ..
            } => {
                let pool = self.pool(&key).ok_or_else(|| {
                    DispatchError::Unavailable(format!("pool {} is not known yet", key.name))
                })?;
                let verify = pool.spec.job_defaults.as_ref().is_none_or(|d| d.verify);
                let verification = if verify {
                    let started = Instant::now();
                    let (verdict, verifier) = if pool.spec.backend.proves_groth16() {
                        let ok = self.verify(&pool, &job, proof, public_signals).await?;
                        let verdict = if ok {
                            Ok(())
                        } else {
                            Err("it did not verify against the pool's verifying key".to_string())
                        };
                        (verdict, "operator".to_string())
                    } else {
                        self.verify_remote(&pool, proof, public_outputs.as_ref())
                            .await?
                    };
                    let millis = started.elapsed().as_millis() as i64;
                    if let Err(why) = verdict {
                        self.metrics.proof_rejected(&key.namespace, &key.name);
                        self.flag(&key, pod);
                        warn!(job = %job.name_any(), %pod, %verifier, "proof did not verify; the pod is flagged and the job retried elsewhere");
                        let failure = AttemptFailure {
                            outcome: AttemptOutcome::VerificationFailed,
                            reason: "ProofRejected",
                            message: format!("the proof from pod {pod} was rejected: {why}"),
                            retryable: true,
                        };
                        let phase = self
                            .record_failure(&job, &held, &failure, limits, Some(pod))
                            .await?;
                        return Ok(CompleteResponse {
                            phase,
                            duplicate: false,
                        });
                    }
                    Verification {
                        verified: true,
                        verifier_millis: Some(millis),
                        verifier: Some(verifier),
                        skipped: false,
                    }
                } else {
                    Verification {
                        verified: false,
                        skipped: true,
                        ..Verification::default()
                    }
                };
                let result = self
                    .store_result(&job, proof, public_signals, public_outputs.as_ref())
                    .await?;
                let success = Success {
                    result,
                    verification,
                    proving_millis: *proving_millis as i64,
                };
                let phase = self.record_success(&job, &held, success).await?;
                Ok(CompleteResponse {
                    phase,
                    duplicate: false,
                })
            }
            Outcome::Failed {
                code,
                message,
                retryable,
            } => {
                let failure = AttemptFailure {
                    outcome: AttemptOutcome::Failed,
                    reason: if *retryable {
                        "ProverError"
                    } else {
                        job_status::INVALID_INPUT
                    },
                    message: format!("{code}: {message}"),
                    retryable: *retryable,
                };
                let phase = self
                    .record_failure(&job, &held, &failure, limits, None)
                    .await?;
                Ok(CompleteResponse {
                    phase,
                    duplicate: false,
                })
            }
        }
    }

    /// A result for a lease the dispatcher no longer holds: a repeat of one already recorded
    /// (200, so the pod stops retrying) or a stale one (409).
    fn already_recorded(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, DispatchError> {
        let job = self.state.lock().expect("lock").job(&request.lease.uid);
        let Some(job) = job else {
            return Err(DispatchError::NotFound(format!(
                "job {} does not exist (deleted?)",
                request.lease.uid
            )));
        };
        let status = job.status.clone().unwrap_or_default();
        let recorded = status.attempts.iter().any(|a| {
            a.attempt == request.lease.attempt as i32
                && a.pod.as_deref() == Some(request.caller.pod.as_str())
                && a.outcome.is_some()
        });
        if recorded {
            return Ok(CompleteResponse {
                phase: phase_name(status.phase),
                duplicate: true,
            });
        }
        Err(DispatchError::Stale(format!(
            "attempt {} of job {} is not leased to pod {} (the job is at attempt {})",
            request.lease.attempt,
            job.name_any(),
            request.caller.pod,
            job_status::current_attempt(&status)
        )))
    }

    async fn verify(
        &self,
        pool: &ProverPool,
        job: &ProofJob,
        proof: &serde_json::Value,
        public_signals: &[String],
    ) -> Result<bool, DispatchError> {
        let version = job
            .status
            .as_ref()
            .and_then(|s| s.parameters_version.clone())
            .unwrap_or_else(|| pool.spec.parameters.version.clone());
        let parameters = self.parameters(pool, &version).await;
        let verifier = match self.keys.get(pool, &parameters).await {
            Ok(v) => v,
            Err(e) if e.is_unreadable() => self.key_from_pods(pool, &parameters).await?,
            Err(e) => {
                return Err(DispatchError::Unavailable(format!(
                    "the pool's verifying key is not available ({e}); the result is kept by the pod until it is"
                )));
            }
        };
        match verifier.verify(proof, public_signals) {
            Ok(ok) => Ok(ok),
            // A malformed proof is a wrong proof.
            Err(e) => {
                info!(error = %e, "malformed proof");
                Ok(false)
            }
        }
    }

    /// The verdict of the pool's verifier on a STARK or VM proof, and who gave it
    /// (`verifier/<pod>`). No verdict at all is `Unavailable`: the pod keeps the result and
    /// uploads it again.
    async fn verify_remote(
        &self,
        pool: &ProverPool,
        proof: &serde_json::Value,
        public_outputs: Option<&serde_json::Value>,
    ) -> Result<(Result<(), String>, String), DispatchError> {
        let answer = remote_verify::verify(&build::verifier::url(pool), proof, public_outputs)
            .await
            .map_err(|e| {
                DispatchError::Unavailable(format!(
                    "the pool's verifier gave no verdict ({e}); the result is kept by the pod until it does"
                ))
            })?;
        let verifier = format!(
            "verifier/{}",
            answer
                .verifier
                .unwrap_or_else(|| build::verifier::verifier_name(pool))
        );
        let verdict = if answer.valid {
            Ok(())
        } else {
            Err(answer
                .reason
                .unwrap_or_else(|| "the pool's verifier rejected it".into()))
        };
        Ok((verdict, verifier))
    }

    /// The pool's parameters of `version`: the spec's, or the previous ones a rotation is
    /// draining (kept on the Deployment).
    async fn parameters(&self, pool: &ProverPool, version: &str) -> ParametersSpec {
        if pool.spec.parameters.version == version {
            return pool.spec.parameters.clone();
        }
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &pool.namespace().unwrap_or_default());
        if let Ok(Some(d)) = deployments.get_opt(&build::prover_name(pool)).await
            && let Some(serving) = Serving::observed(&d)
        {
            for spec in [Some(serving.target), serving.previous]
                .into_iter()
                .flatten()
            {
                if spec.version == version {
                    return spec;
                }
            }
        }
        pool.spec.parameters.clone()
    }

    /// The verifying key, from a Ready pod of the pool serving `version`, for parameter sources
    /// the operator cannot read itself (PVCs, images): this trusts the pool's pods for the key.
    async fn key_from_pods(
        &self,
        pool: &ProverPool,
        parameters: &ParametersSpec,
    ) -> Result<Arc<zkfleet_groth16_verifier::Verifier>, DispatchError> {
        let namespace = pool.namespace().unwrap_or_default();
        let name = pool.name_any();
        let candidates: Vec<_> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.namespace().as_deref() == Some(namespace.as_str())
                    && p.labels().get(POOL_LABEL) == Some(&name)
                    && is_ready(p)
                    && served_version(p).as_deref() == Some(parameters.version.as_str())
            })
            .collect();
        for pod in candidates {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                continue;
            };
            let port = build::PROVER_PORT as u16;
            match self.keys.get_or_ask_pod(pool, parameters, &ip, port).await {
                Ok(v) => return Ok(v),
                Err(e) => debug!(error = %e, pod = %pod.name_any(), "no verifying key from pod"),
            }
        }
        Err(DispatchError::Unavailable(
            "no Ready pod of the pool could give its verifying key; the result is kept by the pod until one can".into(),
        ))
    }

    async fn store_result(
        &self,
        job: &ProofJob,
        proof: &serde_json::Value,
        public_signals: &[String],
        public_outputs: Option<&serde_json::Value>,
    ) -> Result<ProofResult, DispatchError> {
        // Public signals and outputs stay on the status (they are what a user reads); the
        // proof joins them there when small, else it goes to the artifact store.
        let public_signals = (!public_signals.is_empty() || public_outputs.is_none())
            .then(|| public_signals.to_vec());
        let public_outputs = public_outputs.and_then(|v| v.as_object().cloned());
        let size = serde_json::to_vec(proof).map(|v| v.len()).unwrap_or(0)
            + serde_json::to_vec(&public_signals)
                .map(|v| v.len())
                .unwrap_or(0)
            + serde_json::to_vec(&public_outputs)
                .map(|v| v.len())
                .unwrap_or(0);
        if size <= self.settings.inline_result_max_bytes {
            return Ok(ProofResult {
                proof: proof.as_object().cloned(),
                public_signals,
                public_outputs,
                ..ProofResult::default()
            });
        }
        // The finalizer goes on before the artifact exists, so no stored proof outlives its job.
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<ProofJob> = Api::namespaced(self.client.clone(), &namespace);
        if !job
            .finalizers()
            .iter()
            .any(|f| f == job::ARTIFACT_FINALIZER)
        {
            let patch = json!({"metadata": {"finalizers": [job::ARTIFACT_FINALIZER]}});
            api.patch(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| DispatchError::Unavailable(format!("adding the finalizer: {e}")))?;
        }
        let body = serde_json::to_vec(&json!({
            "proof": proof,
            "publicSignals": public_signals,
            "publicOutputs": public_outputs,
        }))
        .unwrap_or_default();
        let stored = self
            .artifacts
            .put(
                &namespace,
                &job.name_any(),
                &job.uid().unwrap_or_default(),
                body,
            )
            .await
            .map_err(|e| DispatchError::Unavailable(format!("storing the proof: {e}")))?;
        Ok(ProofResult {
            proof: None,
            public_signals,
            public_outputs,
            location: Some(stored.location),
            sha256: Some(stored.sha256),
            size_bytes: Some(stored.size_bytes),
        })
    }

    fn flag(&self, pool: &PoolKey, pod: &str) {
        let node = self
            .pod(&pool.namespace, pod)
            .and_then(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()));
        let mut flagged = self.flagged.lock().expect("lock");
        let list = flagged.entry(pool.clone()).or_default();
        list.retain(|f| f.pod != pod);
        list.push(FlaggedPod {
            pod: pod.into(),
            node,
            reason: "VerificationFailed".into(),
            time: Some(Time(Timestamp::now())),
        });
        let excess = list.len().saturating_sub(MAX_FLAGGED_PODS);
        list.drain(..excess);
    }

    /// Writes a status built from the newest copy of the job, re-reading on conflicts, as long
    /// as `held` is still the job's current attempt.
    async fn write_attempt(
        &self,
        job: &ProofJob,
        held: &Held,
        build: impl Fn(&ProofJob) -> zkfleet_crds::v1alpha1::ProofJobStatus,
    ) -> Result<ProofJob, DispatchError> {
        let api: Api<ProofJob> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let mut current = job.clone();
        for _ in 0..5 {
            let attempt = job_status::current_attempt(&current.status.clone().unwrap_or_default());
            let finished = current
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(JobPhase::is_finished);
            if attempt != held.attempt || finished {
                return Err(DispatchError::Stale(format!(
                    "attempt {} of job {} is no longer current",
                    held.attempt,
                    current.name_any()
                )));
            }
            match job_status::write(&api, &current, build(&current)).await {
                Ok(stored) => return Ok(stored),
                Err(e) if job_status::is_conflict(&e) => {
                    current = api.get(&current.name_any()).await.map_err(|e| {
                        DispatchError::Unavailable(format!("re-reading the job: {e}"))
                    })?;
                }
                Err(e) if job_status::is_not_found(&e) => {
                    return Err(DispatchError::NotFound(format!(
                        "job {} was deleted",
                        current.name_any()
                    )));
                }
                Err(e) => {
                    return Err(DispatchError::Unavailable(format!(
                        "writing the job's status: {e}"
                    )));
                }
            }
        }
        Err(DispatchError::Unavailable(
            "the job kept changing under the write; retry".into(),
        ))
    }

    async fn record_success(
        &self,
        job: &ProofJob,
        held: &Held,
        success: Success,
    ) -> Result<String, DispatchError> {
        let now = Time(Timestamp::now());
        let stored = self
            .write_attempt(job, held, |j| {
                job_status::succeeded(j, held.attempt, success.clone(), &now)
            })
            .await?;
        self.metrics.job_finished("Succeeded");
        info!(job = %job.name_any(), pod = %held.pod, attempt = held.attempt, "succeeded");
        let phase = phase_name(stored.status.as_ref().and_then(|s| s.phase));
        self.state.lock().expect("lock").attempt_recorded(
            stored,
            Duration::ZERO,
            None,
            Instant::now(),
        );
        Ok(phase)
    }

    async fn record_failure(
        &self,
        job: &ProofJob,
        held: &Held,
        failure: &AttemptFailure,
        limits: Limits,
        avoid_pod: Option<&str>,
    ) -> Result<String, DispatchError> {
        let now = Time(Timestamp::now());
        let stored = self
            .write_attempt(job, held, |j| {
                job_status::attempt_failed(j, held.attempt, failure, limits.max_retries, &now).0
            })
            .await?;
        let phase = stored.status.as_ref().and_then(|s| s.phase);
        if phase == Some(JobPhase::Failed) {
            self.metrics.job_finished(failure.reason);
        }
        info!(job = %job.name_any(), pod = %held.pod, attempt = held.attempt, reason = failure.reason, phase = ?phase, "attempt failed");
        let backoff = retry_backoff(held.attempt);
        let key = PoolKey::of(&stored);
        self.state.lock().expect("lock").attempt_recorded(
            stored,
            backoff,
            avoid_pod,
            Instant::now(),
        );
        self.wake(&key);
        Ok(phase_name(phase))
    }

    /// Every second: ends leases whose pod is gone, whose heartbeats stopped or whose attempt
    /// timed out, and publishes queue depths.
    async fn expire_leases(self: Arc<Self>) {
        let _ = self.pods.wait_until_ready().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.synced.load(Ordering::Acquire) {
                continue;
            }
            let gone = |namespace: &str, pod: &str| {
                self.pod(namespace, pod).is_none_or(|p| {
                    matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Failed" | "Succeeded")
                    )
                })
            };
            let lapsed = self
                .state
                .lock()
                .expect("lock")
                .lapsed(Instant::now(), &gone);
            for l in lapsed {
                self.end_lapsed(l).await;
            }
            self.fail_stranded_pins().await;
            let loads = self.state.lock().expect("lock").loads();
            let now = Instant::now();
            for (pool, (queued, running)) in loads {
                self.metrics
                    .set_queue(&pool.namespace, &pool.name, queued, running);
                if queued + running > 0 {
                    self.last_busy.lock().expect("lock").insert(pool, now);
                }
            }
            self.update_deletion_costs().await;
        }
    }

    /// Fails queued jobs pinned to a version their pool no longer serves, once they have
    /// waited [`PIN_GRACE`]: they could never run.
    async fn fail_stranded_pins(&self) {
        let pinned = self.state.lock().expect("lock").queued_pinned();
        for job in pinned {
            let Some(pin) = job.spec.parameters_version.clone() else {
                continue;
            };
            let key = PoolKey::of(&job);
            let Some(pool) = self.pool(&key) else {
                continue;
            };
            let waited = job
                .status
                .as_ref()
                .and_then(|s| s.queued_at.as_ref())
                .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
                .unwrap_or_default();
            // The common case, a job pinned to the version the pool asks for, needs no pod scan.
            if waited < PIN_GRACE || pool.spec.parameters.version == pin {
                continue;
            }
            let serving = self
                .pods
                .state()
                .iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(key.namespace.as_str())
                        && p.labels().get(POOL_LABEL) == Some(&key.name)
                        && p.metadata.deletion_timestamp.is_none()
                        && is_ready(p)
                        && served_version(p).as_deref() == Some(pin.as_str())
                })
                .count();
            if !pin_stranded(&pool, &pin, serving) {
                continue;
            }
            let message = format!(
                "no pod of ProverPool {} serves parameters version {pin} any more (it serves {}); submit the job again pinned to a served version or without a pin",
                key.name, pool.spec.parameters.version
            );
            let api: Api<ProofJob> = Api::namespaced(self.client.clone(), &key.namespace);
            let now = Time(Timestamp::now());
            let status = job_status::invalid(&job, "ParametersVersionUnavailable", message, &now);
            match job_status::write(&api, &job, status).await {
                Ok(stored) => {
                    info!(job = %job.name_any(), %pin, "failed: its pinned parameters version is no longer served");
                    self.metrics.job_finished("ParametersVersionUnavailable");
                    self.state.lock().expect("lock").attempt_recorded(
                        stored,
                        Duration::ZERO,
                        None,
                        Instant::now(),
                    );
                }
                Err(e) => debug!(error = %e, "could not fail a stranded pinned job; retrying"),
            }
        }
    }

    async fn end_lapsed(&self, lapsed: Lapsed) {
        let Lapsed {
            job,
            held,
            lapse,
            limits,
        } = lapsed;
        let (outcome, reason, message) = match lapse {
            Lapse::Expired => (
                AttemptOutcome::LeaseExpired,
                "LeaseExpired",
                format!(
                    "pod {} stopped heartbeating and its lease ran out",
                    held.pod
                ),
            ),
            Lapse::PodGone => (
                AttemptOutcome::LeaseExpired,
                "PodLost",
                format!("pod {} went away while it held the job", held.pod),
            ),
            Lapse::TimedOut => (
                AttemptOutcome::TimedOut,
                "TimedOut",
                format!(
                    "the attempt on pod {} ran past its {} s timeout",
                    held.pod,
                    limits.timeout.as_secs()
                ),
            ),
        };
        self.metrics.lease_lapsed(reason);
        let failure = AttemptFailure {
            outcome,
            reason,
            message,
            retryable: true,
        };
        if let Err(e) = self
            .record_failure(&job, &held, &failure, limits, None)
            .await
        {
            match e {
                DispatchError::Stale(_) | DispatchError::NotFound(_) => {
                    // Someone else recorded the attempt (or the job is gone): take the newest
                    // copy so the lease is no longer held.
                    let api: Api<ProofJob> =
                        Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
                    match api.get_opt(&job.name_any()).await {
                        Ok(Some(fresh)) => self.observe(fresh),
                        Ok(None) => self.forget(&job),
                        Err(_) => {}
                    }
                }
                other => warn!(error = %other, "could not end a lapsed lease; retrying"),
            }
        }
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

/// How long a pinned job may wait for a version no pod serves before it fails.
pub const PIN_GRACE: Duration = Duration::from_secs(30);

/// Whether a job pinned to `pin` can no longer run on `pool`: the pool's spec asks for another
/// version, no rotation is under way, and none of its Ready pods serves the pin.
pub fn pin_stranded(pool: &ProverPool, pin: &str, pods_serving_pin: usize) -> bool {
    let rotating = pool
        .status
        .as_ref()
        .and_then(|s| s.parameters.as_ref())
        .and_then(|p| p.rollout)
        == Some(RolloutState::Progressing);
    pool.spec.parameters.version != pin && !rotating && pods_serving_pin == 0
}

/// Seconds to wait before retrying an attempt: 1, 2, 4 … capped at 30.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_thirty_seconds() {
        let secs: Vec<_> = (1..=8).map(|a| retry_backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_pin_is_stranded_only_when_settled_and_unserved() {
        let pool = |rollout: &str| -> ProverPool {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {"backend": {"type": "groth16-bn254"},
                         "parameters": {"version": "v2", "source": {"configMap": {"name": "c"}},
                                        "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]}},
                "status": {"parameters": {"rollout": rollout}},
            }))
            .unwrap()
        };
        assert!(pin_stranded(&pool("Complete"), "v1", 0));
        assert!(
            !pin_stranded(&pool("Complete"), "v1", 1),
            "a pod still serves v1"
        );
        assert!(
            !pin_stranded(&pool("Progressing"), "v1", 0),
            "rotation under way"
        );
        assert!(
            !pin_stranded(&pool("Complete"), "v2", 0),
            "the spec's own version"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
