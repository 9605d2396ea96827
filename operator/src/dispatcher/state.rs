//! The dispatcher's memory: every pool's priority queue and every lease, with no I/O. The
//! ProofJob objects stay the source of truth; this is rebuilt from them at start and kept in
//! step with the writes the dispatcher makes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use zkfleet_contract::lease::{Caller, LeaseRef};
use zkfleet_crds::v1alpha1::{AttemptOutcome, JobPhase, ProofInput, ProofJob, SharingSpec};

/// A pool: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub namespace: String,
    pub name: String,
}

impl PoolKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The pool `job` is on: the fallback pool it moved to (`status.pool`), else the one
    /// `spec.poolRef` names (in `poolRef.namespace`, or else the job's own namespace).
    pub fn of(job: &ProofJob) -> Self {
        if let Some(current) = job.status.as_ref().and_then(|s| s.pool.as_ref()) {
            return Self::new(&current.namespace, &current.name);
        }
        let job_namespace = job.namespace().unwrap_or_default();
        Self {
            namespace: job.spec.pool_ref.namespace_for(&job_namespace).to_string(),
            name: job.spec.pool_ref.name.clone(),
        }
    }
}

/// Queue order: higher priority first, then older jobs, then by name for a stable order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    neg_priority: i64,
    created_seconds: i64,
    name: String,
    uid: String,
}

/// Per-job limits, resolved from the job and its pool's `jobDefaults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub max_retries: u32,
}

/// A lease a pod holds. The pod is one of the job's pool, in the job's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub pod: String,
    pub attempt: u32,
    /// Renewed by heartbeats.
    pub deadline: Instant,
    /// Fixed when granted: the attempt's timeout.
    pub timeout_at: Instant,
    /// The input as this dispatcher resolved and handed it out, which the proof is checked
    /// against; `None` for a lease granted by a former leader (its input is read again).
    pub input: Option<InputCopy>,
}

/// A job's input as it was leased. Compared by identity, and never printed: it may be a
/// Secret's content.
#[derive(Clone)]
pub struct InputCopy(pub Arc<zkfleet_contract::lease::JobInput>);

impl PartialEq for InputCopy {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InputCopy {}

impl std::fmt::Debug for InputCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputCopy(..)")
    }
}

/// How long a job keeps away from a pod whose proof of it did not verify. Afterwards that pod
/// may take it again: in a pool whose every pod once failed it (a one-replica pool), the job
/// would otherwise wait for good; its retries still bound how often it runs.
pub const AVOID_FOR: Duration = Duration::from_secs(60);

/// Pods a job keeps away from, each until a time.
type Avoid = BTreeMap<String, Instant>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tracked {
    Queued {
        not_before: Instant,
        /// Pods this job must not run on for now (they made a proof that did not verify).
        avoid: Avoid,
    },
    /// Taken off the queue; its lease is being written to the status.
    Granting {
        avoid: Avoid,
    },
    Leased(Held, Avoid),
    /// Pending validation, or finished: not the dispatcher's business.
    Idle,
}

impl Tracked {
    /// The pods the job avoids, kept across every change of state.
    fn into_avoid(self) -> Avoid {
        match self {
            Tracked::Queued { avoid, .. }
            | Tracked::Granting { avoid }
            | Tracked::Leased(_, avoid) => avoid,
            Tracked::Idle => Avoid::new(),
        }
    }

    /// What this job adds to its pool's (queued, running) counts.
    fn load(&self) -> (usize, usize) {
        match self {
            Tracked::Queued { .. } => (1, 0),
            Tracked::Granting { .. } | Tracked::Leased(..) => (0, 1),
            Tracked::Idle => (0, 0),
        }
    }
}

struct Entry {
    job: Arc<ProofJob>,
    pool: PoolKey,
    /// The job's own namespace: its tenant on a shared pool.
    tenant: String,
    order: Order,
    limits: Limits,
    tracked: Tracked,
    /// When the job was last read again because a pod named a lease newer than this copy.
    reread_at: Option<Instant>,
}

/// How often a job is read again from the API server because pods name a lease this
/// dispatcher's copy does not show yet.
pub const LAGGING_REREAD_EVERY: Duration = Duration::from_secs(2);

/// Most jobs one request has read again: a pod holds at most its slots, so more than this are
/// not leases it could hold, and a misbehaving pod must not turn one heartbeat into a burst of
/// reads. The rest keep their leases unrevoked and are read at later heartbeats.
pub const MAX_REREADS_PER_REQUEST: usize = 8;

/// Why a lease ended without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lapse {
    /// No heartbeat before the deadline.
    Expired,
    /// The attempt ran past its timeout.
    TimedOut,
    /// The pod holding it is gone.
    PodGone,
}

/// A lease that ended without a result, to be written to the job's status.
#[derive(Clone, Debug)]
pub struct Lapsed {
    pub job: Arc<ProofJob>,
    pub held: Held,
    pub lapse: Lapse,
    pub limits: Limits,
}

/// The state of every pool's queue and lease.
#[derive(Default)]
pub struct State {
    jobs: HashMap<String, Entry>,
    queues: HashMap<PoolKey, PoolQueue>,
    /// The jobs of each pool that are queued, being granted or leased. The passes made every
    /// second (lapsed leases, pool loads) and on every lease request (what a pod holds) walk
    /// these alone, so finished jobs, however many, cost them nothing.
    active: HashMap<PoolKey, HashSet<String>>,
    /// Verified proofs kept on their jobs' statuses that later jobs may reuse, one job per
    /// namespace for each pool, parameters digest and input digest.
    results: HashMap<ReuseKey, BTreeMap<String, Reusable>>,
    /// The key each job is listed under in `results`, to unlist it when it goes.
    listed_result: HashMap<String, ReuseKey>,
}

/// What makes two jobs' proofs interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReuseKey {
    pool: PoolKey,
    parameters_digest: String,
    input_digest: String,
}

/// A succeeded job whose proof another job may reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reusable {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The key under which `job`'s proof may be reused: it succeeded, its proof was verified and is
/// on its status (not in the artifact store, which goes when the job does), and its status
/// says which parameters and input it was made from.
fn reuse_key(job: &ProofJob) -> Option<ReuseKey> {
    let status = job.status.as_ref()?;
    let verified = status
        .verification
        .as_ref()
        .is_some_and(|v| v.verified && !v.skipped);
    let inline = status
        .result
        .as_ref()
        .is_some_and(|r| r.proof.is_some() && r.location.is_none());
    if status.phase != Some(JobPhase::Succeeded) || !verified || !inline {
        return None;
    }
    Some(ReuseKey {
        pool: PoolKey::of(job),
        parameters_digest: status.parameters_digest.clone()?,
        input_digest: status.input_digest.clone()?,
    })
}

/// A pool's queued jobs, one queue per namespace (tenant), each in [`Order`].
#[derive(Default)]
struct PoolQueue {
    tenants: BTreeMap<String, BTreeSet<Order>>,
}

impl PoolQueue {
    fn insert(&mut self, tenant: &str, order: Order) {
        self.tenants
            .entry(tenant.to_string())
            .or_default()
            .insert(order);
    }

    fn remove(&mut self, tenant: &str, order: &Order) {
        if let Some(queue) = self.tenants.get_mut(tenant) {
            queue.remove(order);
            if queue.is_empty() {
                self.tenants.remove(tenant);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    fn orders(&self) -> impl Iterator<Item = &Order> + '_ {
        self.tenants.values().flatten()
    }
}

/// The `resourceVersion` as a number, to keep the newest copy of a job when watch events and
/// our own writes interleave (etcd revisions only grow).
fn revision(job: &ProofJob) -> u64 {
    job.resource_version()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

impl State {
    /// Takes in the newest copy of a job (a watch event, a re-read, or the answer to our own
    /// write) and brings the queue in line with it. `lease_duration` is how long a lease found
    /// on a running job at start is honoured before a heartbeat must renew it.
    pub fn observe(
        &mut self,
        job: ProofJob,
        limits: Limits,
        lease_duration: Duration,
        now: Instant,
    ) {
        let Some(uid) = job.uid() else { return };
        if let Some(entry) = self.jobs.get(&uid)
            && revision(&entry.job) > revision(&job)
        {
            return;
        }
        let phase = job.status.as_ref().and_then(|s| s.phase);
        let pool = PoolKey::of(&job);
        let tenant = job.namespace().unwrap_or_default();
        if let Some(key) = reuse_key(&job) {
            self.list_result(key, &job, &uid);
        }
        let order = Order {
            neg_priority: -i64::from(job.spec.priority),
            created_seconds: job
                .creation_timestamp()
                .map(|t| t.0.as_second())
                .unwrap_or_default(),
            name: job.name_any(),
            uid: uid.clone(),
        };
        let mut same_pool = false;
        let previous = self.jobs.remove(&uid).map(|e| {
            self.unindex(&uid, &e.pool);
            if let Some(queue) = self.queues.get_mut(&e.pool) {
                queue.remove(&e.tenant, &e.order);
            }
            same_pool = e.pool == pool;
            e.tracked
        });
        let mut avoid = previous
            .clone()
            .map(Tracked::into_avoid)
            .unwrap_or_default();
        let tracked = match (phase, previous) {
            (
                Some(JobPhase::Queued),
                Some(t @ (Tracked::Queued { .. } | Tracked::Granting { .. })),
            ) => t,
            // The end of the attempt this dispatcher leased, seen here before the answer to the
            // write that recorded it (a watch event can be quicker): the job waits the same
            // backoff and avoids the same pod as [`State::attempt_recorded`] makes it, or a pod
            // polling meanwhile would take it at once, the pod whose proof was just rejected
            // included.
            (Some(JobPhase::Queued), Some(Tracked::Leased(held, _))) if same_pool => {
                let outcome = job
                    .status
                    .as_ref()
                    .and_then(|s| s.attempts.iter().find(|a| a.attempt == held.attempt as i32))
                    .and_then(|a| a.outcome);
                let backoff = if outcome.is_some() {
                    super::reaper::retry_backoff(held.attempt)
                } else {
                    Duration::ZERO
                };
                if outcome == Some(AttemptOutcome::VerificationFailed) {
                    avoid.insert(held.pod.clone(), now + backoff + AVOID_FOR);
                }
                Tracked::Queued {
                    not_before: now + backoff,
                    avoid,
                }
            }
            (Some(JobPhase::Queued), _) => Tracked::Queued {
                not_before: now,
                avoid,
            },
            (
                Some(JobPhase::Running),
                Some(t @ (Tracked::Leased(..) | Tracked::Granting { .. })),
            ) => t,
            (Some(JobPhase::Running), _) => {
                // A lease granted before this operator started: honour it for one lease
                // duration; the pod's heartbeats renew it, a dead pod's do not.
                let status = job.status.clone().unwrap_or_default();
                let attempt = crate::dispatcher::status::current_attempt(&status);
                let current = status
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| a.attempt == attempt as i32);
                let pod = current.and_then(|a| a.pod.clone()).unwrap_or_default();
                // The attempt's timeout runs from when it was granted, not from this restart.
                let ran = current
                    .and_then(|a| a.start_time.as_ref())
                    .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
                    .unwrap_or_default();
                Tracked::Leased(
                    Held {
                        pod,
                        attempt,
                        deadline: now + lease_duration,
                        timeout_at: now + limits.timeout.saturating_sub(ran),
                        input: None,
                    },
                    avoid,
                )
            }
            _ => Tracked::Idle,
        };
        if matches!(tracked, Tracked::Queued { .. }) {
            self.queues
                .entry(pool.clone())
                .or_default()
                .insert(&tenant, order.clone());
        }
        let job = if matches!(tracked, Tracked::Idle) {
            slim(job)
        } else {
            job
        };
        self.jobs.insert(
            uid.clone(),
            Entry {
                job: Arc::new(job),
                pool: pool.clone(),
                tenant,
                order,
                limits,
                tracked,
                reread_at: None,
            },
        );
        self.index(&uid);
    }

    /// Brings `uid`'s place in [`State::active`] in line with its entry. Called after every
    /// change of a job's tracked state.
    fn index(&mut self, uid: &str) {
        let Some(entry) = self.jobs.get(uid) else {
            return;
        };
        if matches!(entry.tracked, Tracked::Idle) {
            let pool = entry.pool.clone();
            self.unindex(uid, &pool);
        } else {
            self.active
                .entry(entry.pool.clone())
                .or_default()
                .insert(uid.to_string());
        }
    }

    fn unindex(&mut self, uid: &str, pool: &PoolKey) {
        if let Some(set) = self.active.get_mut(pool) {
            set.remove(uid);
            if set.is_empty() {
                self.active.remove(pool);
            }
        }
    }

    /// The entries of a pool's active jobs.
    fn active_in<'a>(&'a self, pool: &PoolKey) -> impl Iterator<Item = &'a Entry> + 'a {
        self.active
            .get(pool)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.jobs.get(uid))
    }

    /// The entries of every active job.
    fn all_active(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.active
            .values()
            .flatten()
            .filter_map(|uid| self.jobs.get(uid))
    }

    fn list_result(&mut self, key: ReuseKey, job: &ProofJob, uid: &str) {
        let reusable = Reusable {
            namespace: job.namespace().unwrap_or_default(),
            name: job.name_any(),
            uid: uid.to_string(),
        };
        self.unlist_result(uid);
        let listed = self.results.entry(key.clone()).or_default();
        if let Some(replaced) = listed.insert(reusable.namespace.clone(), reusable) {
            self.listed_result.remove(&replaced.uid);
        }
        self.listed_result.insert(uid.to_string(), key);
    }

    fn unlist_result(&mut self, uid: &str) {
        let Some(key) = self.listed_result.remove(uid) else {
            return;
        };
        if let Some(listed) = self.results.get_mut(&key) {
            listed.retain(|_, r| r.uid != uid);
            if listed.is_empty() {
                self.results.remove(&key);
            }
        }
    }

    /// A succeeded job of `namespace` (or, when `across_namespaces`, of any namespace) whose
    /// verified proof was made on `pool` from these parameters and this input.
    pub fn reusable(
        &self,
        pool: &PoolKey,
        parameters_digest: &str,
        input_digest: &str,
        namespace: &str,
        across_namespaces: bool,
    ) -> Option<Reusable> {
        let key = ReuseKey {
            pool: pool.clone(),
            parameters_digest: parameters_digest.to_string(),
            input_digest: input_digest.to_string(),
        };
        let listed = self.results.get(&key)?;
        listed
            .get(namespace)
            .or_else(|| listed.values().next().filter(|_| across_namespaces))
            .cloned()
    }

    /// Forgets a deleted job. Its lease, if any, is revoked at the pod's next heartbeat.
    pub fn forget(&mut self, uid: &str) {
        self.unlist_result(uid);
        if let Some(entry) = self.jobs.remove(uid) {
            self.unindex(uid, &entry.pool);
            if let Some(queue) = self.queues.get_mut(&entry.pool) {
                queue.remove(&entry.tenant, &entry.order);
            }
        }
    }

    /// Takes up to `max` jobs a pod serving `version` may run off the pool's queue, and marks
    /// them as being granted.
    ///
    /// Each slot goes to the namespace furthest below its weighted share of the pool's running
    /// jobs (fewest running per unit of `sharing` weight) that is under its cap and has a job
    /// this pod may run; within a namespace, jobs go in queue order (priority, then age). A
    /// namespace alone in the queue takes every free slot, and gives them back only as its
    /// jobs finish: running proofs are never preempted.
    pub fn take(
        &mut self,
        pool: &PoolKey,
        pod: &str,
        version: &str,
        max: usize,
        sharing: &SharingSpec,
        now: Instant,
    ) -> Vec<Arc<ProofJob>> {
        let Some(queue) = self.queues.get(pool) else {
            return Vec::new();
        };
        // Each namespace's first `max` jobs this pod may run: no more can be taken from it.
        let mut candidates: Vec<(&str, VecDeque<&Order>)> = queue
            .tenants
            .iter()
            .filter_map(|(tenant, orders)| {
                let runnable: VecDeque<&Order> = orders
                    .iter()
                    .filter(|order| {
                        self.jobs
                            .get(&order.uid)
                            .is_some_and(|entry| runnable_by(entry, pod, version, now))
                    })
                    .take(max)
                    .collect();
                (!runnable.is_empty()).then_some((tenant.as_str(), runnable))
            })
            .collect();
        // Counting what runs walks the pool's active jobs: only needed to choose between
        // namespaces or to hold one to its cap.
        let mut running = if candidates.len() > 1 || sharing.has_caps() {
            self.running_by_tenant(pool)
        } else {
            HashMap::new()
        };
        let mut taken: Vec<Order> = Vec::new();
        while taken.len() < max {
            let next = candidates
                .iter_mut()
                .filter(|(tenant, runnable)| {
                    let (_, cap) = sharing.share_of(tenant);
                    let now_running = running.get(*tenant).copied().unwrap_or(0);
                    !runnable.is_empty() && cap.is_none_or(|cap| now_running < cap as usize)
                })
                .min_by(|(a, a_jobs), (b, b_jobs)| {
                    // a's running/weight against b's, cross-multiplied to stay in integers.
                    let (wa, _) = sharing.share_of(a);
                    let (wb, _) = sharing.share_of(b);
                    let ra = running.get(*a).copied().unwrap_or(0) as u64;
                    let rb = running.get(*b).copied().unwrap_or(0) as u64;
                    (ra * u64::from(wb))
                        .cmp(&(rb * u64::from(wa)))
                        .then_with(|| a_jobs.front().cmp(&b_jobs.front()))
                });
            let Some((tenant, runnable)) = next else {
                break;
            };
            let Some(order) = runnable.pop_front() else {
                break;
            };
            *running.entry(tenant.to_string()).or_default() += 1;
            taken.push(order.clone());
        }
        let queue = self.queues.get_mut(pool).expect("read above");
        taken
            .into_iter()
            .filter_map(|order| {
                let entry = self.jobs.get_mut(&order.uid)?;
                queue.remove(&entry.tenant, &order);
                let avoid = std::mem::replace(&mut entry.tracked, Tracked::Idle).into_avoid();
                entry.tracked = Tracked::Granting { avoid };
                Some(entry.job.clone())
            })
            .collect()
    }

    /// Jobs of each namespace being granted or leased on `pool`.
    fn running_by_tenant(&self, pool: &PoolKey) -> HashMap<String, usize> {
        self.tenant_loads(pool)
            .into_iter()
            .map(|(tenant, (_, running))| (tenant, running))
            .collect()
    }

    /// Each namespace's queued and running jobs on `pool`.
    pub fn tenant_loads(&self, pool: &PoolKey) -> BTreeMap<String, (usize, usize)> {
        let mut loads: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for entry in self.active_in(pool) {
            let (queued, running) = loads.entry(entry.tenant.clone()).or_default();
            let (q, r) = entry.tracked.load();
            *queued += q;
            *running += r;
        }
        loads
    }

    /// The lease was written to the status (`job` is the stored object): the pod holds it.
    pub fn granted(&mut self, job: ProofJob, held: Held) {
        let Some(uid) = job.uid() else { return };
        if let Some(entry) = self.jobs.get_mut(&uid) {
            let avoid = std::mem::replace(&mut entry.tracked, Tracked::Idle).into_avoid();
            entry.tracked = Tracked::Leased(held, avoid);
            entry.job = Arc::new(job);
            self.index(&uid);
        }
    }

    /// Writing the lease failed: the job goes back where it was in the queue, unless a newer
    /// copy of the job, seen while the lease was being written, says it is no longer queued.
    ///
    /// That copy may show the very lease whose write "failed": a write can take effect and
    /// its answer still be lost (the API server restarting, a connection cut). The job is
    /// then running on the pod the lease named, which never heard of it, and is tracked as
    /// that lease, which lapses unless the pod renews it; putting it back in the queue
    /// would lease it again on top of the first attempt.
    pub fn grant_abandoned(&mut self, uid: &str, now: Instant, lease_duration: Duration) {
        let Some(entry) = self.jobs.get_mut(uid) else {
            return;
        };
        let Tracked::Granting { avoid } = &entry.tracked else {
            return;
        };
        let avoid = avoid.clone();
        let still_queued =
            entry.job.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Queued);
        if still_queued {
            entry.tracked = Tracked::Queued {
                not_before: now,
                avoid,
            };
            self.queues
                .entry(entry.pool.clone())
                .or_default()
                .insert(&entry.tenant, entry.order.clone());
            self.index(uid);
        } else {
            // Not in the queue, so observing the copy again starts from nothing but the pods
            // the job avoids.
            entry.tracked = Tracked::Queued {
                not_before: now,
                avoid,
            };
            let (job, limits) = ((*entry.job).clone(), entry.limits);
            self.observe(job, limits, lease_duration, now);
        }
    }

    /// An attempt ended and the status says so (`job` is the stored object). When the job is
    /// queued again, it waits `backoff` and avoids `avoid_pod`.
    pub fn attempt_recorded(
        &mut self,
        job: ProofJob,
        backoff: Duration,
        avoid_pod: Option<&str>,
        now: Instant,
    ) {
        let Some(uid) = job.uid() else { return };
        let Some(entry) = self.jobs.get(&uid) else {
            return;
        };
        // The watch already brought this copy or a newer one, and observing it decided where
        // the job is (perhaps granted again since): the answer to our write is old news.
        if revision(&job) != 0 && revision(&entry.job) >= revision(&job) {
            return;
        }
        if let Some(key) = reuse_key(&job) {
            self.list_result(key, &job, &uid);
        }
        let Some(entry) = self.jobs.get_mut(&uid) else {
            return;
        };
        let mut avoid = std::mem::replace(&mut entry.tracked, Tracked::Idle).into_avoid();
        let queue = self.queues.entry(entry.pool.clone()).or_default();
        queue.remove(&entry.tenant, &entry.order);
        if job.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Queued) {
            if let Some(pod) = avoid_pod {
                avoid.insert(pod.to_string(), now + backoff + AVOID_FOR);
            }
            entry.tracked = Tracked::Queued {
                not_before: now + backoff,
                avoid,
            };
            queue.insert(&entry.tenant, entry.order.clone());
        }
        let idle = matches!(entry.tracked, Tracked::Idle);
        entry.job = Arc::new(if idle { slim(job) } else { job });
        self.index(&uid);
    }

    /// The job and the lease `lease` names, when that lease is the current one held by the
    /// calling pod: same namespace, same pool, same pod name, same attempt.
    pub fn holder(
        &self,
        lease: &LeaseRef,
        caller: &Caller,
    ) -> Option<(Arc<ProofJob>, Held, Limits)> {
        let entry = self.jobs.get(&lease.uid)?;
        match &entry.tracked {
            Tracked::Leased(held, _) if holds(entry, held, lease, caller) => {
                Some((entry.job.clone(), held.clone(), entry.limits))
            }
            _ => None,
        }
    }

    /// Leases `pod` of `pool` holds now.
    pub fn held_by(&self, pool: &PoolKey, pod: &str) -> usize {
        self.active_in(pool)
            .filter(|e| matches!(&e.tracked, Tracked::Leased(held, _) if held.pod == pod))
            .count()
    }

    /// The newest copy of a job the dispatcher knows.
    pub fn job(&self, uid: &str) -> Option<Arc<ProofJob>> {
        self.jobs.get(uid).map(|e| e.job.clone())
    }

    /// Renews the leases `pod` still holds; returns the ones it no longer holds.
    pub fn heartbeat(
        &mut self,
        caller: &Caller,
        leases: &[LeaseRef],
        lease_duration: Duration,
        now: Instant,
    ) -> Vec<LeaseRef> {
        let mut revoked = Vec::new();
        for lease in leases {
            let renewed = self.jobs.get_mut(&lease.uid).is_some_and(|entry| {
                if lagging(entry, lease, caller) {
                    // Not ours to renew yet, and not ours to revoke: see `lagging`.
                    return true;
                }
                let Tracked::Leased(held, _) = &entry.tracked else {
                    return false;
                };
                if !holds(entry, held, lease, caller) {
                    return false;
                }
                if let Tracked::Leased(held, _) = &mut entry.tracked {
                    held.deadline = now + lease_duration;
                }
                true
            });
            if !renewed {
                revoked.push(lease.clone());
            }
        }
        revoked
    }

    /// Whether this copy of the job may be older than the lease `caller` names (see
    /// [`lagging`]), so the lease can be neither renewed nor revoked yet.
    pub fn lags(&self, lease: &LeaseRef, caller: &Caller) -> bool {
        self.jobs
            .get(&lease.uid)
            .is_some_and(|entry| lagging(entry, lease, caller))
    }

    /// The jobs among `leases` whose copies lag behind the lease the caller names and are due
    /// a fresh read (at most one per job per [`LAGGING_REREAD_EVERY`], at most
    /// [`MAX_REREADS_PER_REQUEST`] per call).
    pub fn due_reread(
        &mut self,
        leases: &[LeaseRef],
        caller: &Caller,
        now: Instant,
    ) -> Vec<Arc<ProofJob>> {
        let mut due = Vec::new();
        for lease in leases {
            let Some(entry) = self.jobs.get_mut(&lease.uid) else {
                continue;
            };
            let recent = entry
                .reread_at
                .is_some_and(|at| now.saturating_duration_since(at) < LAGGING_REREAD_EVERY);
            if lagging(entry, lease, caller) && !recent {
                entry.reread_at = Some(now);
                due.push(entry.job.clone());
                if due.len() == MAX_REREADS_PER_REQUEST {
                    break;
                }
            }
        }
        due
    }

    /// Leases whose deadline or timeout passed, or whose pod is in `gone`. They stay held until
    /// [`State::attempt_recorded`] so a result racing the expiry is still matched.
    pub fn lapsed(&self, now: Instant, gone: &dyn Fn(&str, &str) -> bool) -> Vec<Lapsed> {
        self.all_active()
            .filter_map(|entry| {
                let Tracked::Leased(held, _) = &entry.tracked else {
                    return None;
                };
                // A lease whose deadline passed lost its pod (it stopped heartbeating), even
                // when the attempt's timeout passed too: that is the case of a lease a new
                // leader adopted while no leader could renew it. A disruption, not the job's
                // fault; a timeout is the job's only while its pod still heartbeats.
                let lapse = if gone(&entry.pool.namespace, &held.pod) {
                    Lapse::PodGone
                } else if held.deadline <= now {
                    Lapse::Expired
                } else if held.timeout_at <= now {
                    Lapse::TimedOut
                } else {
                    return None;
                };
                Some(Lapsed {
                    job: entry.job.clone(),
                    held: held.clone(),
                    lapse,
                    limits: entry.limits,
                })
            })
            .collect()
    }

    /// Queued and running jobs of a pool.
    pub fn load(&self, pool: &PoolKey) -> (usize, usize) {
        let mut queued = 0;
        let mut running = 0;
        for entry in self.active_in(pool) {
            let (q, r) = entry.tracked.load();
            queued += q;
            running += r;
        }
        (queued, running)
    }

    /// Some active job of a pool (the first found): a real job whose shape a known-answer check
    /// borrows.
    pub fn any_active_in(&self, pool: &PoolKey) -> Option<Arc<ProofJob>> {
        self.active_in(pool).next().map(|e| e.job.clone())
    }

    /// Every queued job.
    pub fn queued(&self) -> Vec<Arc<ProofJob>> {
        self.all_active()
            .filter(|e| matches!(e.tracked, Tracked::Queued { .. }))
            .map(|e| e.job.clone())
            .collect()
    }

    /// Queued jobs pinned to a parameters version.
    pub fn queued_pinned(&self) -> Vec<Arc<ProofJob>> {
        self.all_active()
            .filter(|e| matches!(e.tracked, Tracked::Queued { .. }))
            .filter(|e| e.job.spec.parameters_version.is_some())
            .map(|e| e.job.clone())
            .collect()
    }

    /// Pods holding at least one lease, as (namespace, pod).
    pub fn busy_pods(&self) -> HashSet<(String, String)> {
        self.all_active()
            .filter_map(|entry| match &entry.tracked {
                Tracked::Leased(held, _) => Some((entry.pool.namespace.clone(), held.pod.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every pool with queued or running jobs, with their counts, in one pass over the active
    /// jobs.
    /// The queues of pools with neither are dropped on the way, so pool names that come and go
    /// do not stay in memory for good.
    pub fn loads(&mut self) -> HashMap<PoolKey, (usize, usize)> {
        let mut loads: HashMap<PoolKey, (usize, usize)> = HashMap::new();
        for entry in self.all_active() {
            let (queued, running) = loads.entry(entry.pool.clone()).or_default();
            let (q, r) = entry.tracked.load();
            *queued += q;
            *running += r;
        }
        self.queues
            .retain(|pool, queue| !queue.is_empty() || loads.contains_key(pool));
        loads
    }

    /// The creation time (seconds since the Unix epoch) of each pool's oldest queued job.
    pub fn oldest_queued(&self) -> HashMap<PoolKey, i64> {
        self.queues
            .iter()
            .filter_map(|(pool, queue)| {
                let oldest = queue.orders().map(|order| order.created_seconds).min()?;
                Some((pool.clone(), oldest))
            })
            .collect()
    }

    /// Whether a queued job of the pool could be run by a pod serving `version` now or after
    /// its backoff (so a long-poll keeps waiting rather than returning early). Jobs of a
    /// namespace at its cap wait for one of its running jobs to end, which wakes the poll.
    pub fn next_ready_in(
        &self,
        pool: &PoolKey,
        version: &str,
        sharing: &SharingSpec,
        now: Instant,
    ) -> Option<Duration> {
        let queue = self.queues.get(pool)?;
        let running = if sharing.has_caps() {
            self.running_by_tenant(pool)
        } else {
            HashMap::new()
        };
        queue
            .tenants
            .iter()
            .filter(|(tenant, _)| {
                let (_, cap) = sharing.share_of(tenant);
                cap.is_none_or(|cap| running.get(*tenant).copied().unwrap_or(0) < cap as usize)
            })
            .flat_map(|(_, orders)| orders)
            .filter_map(|order| {
                let entry = self.jobs.get(&order.uid)?;
                let Tracked::Queued { not_before, .. } = &entry.tracked else {
                    return None;
                };
                (!pinned_elsewhere(&entry.job, version))
                    .then(|| not_before.saturating_duration_since(now))
            })
            .min()
    }
}

/// Whether `pod`, serving `version`, may take this queued job now: its backoff is over, it does
/// not avoid the pod, and it is not pinned to another version.
fn runnable_by(entry: &Entry, pod: &str, version: &str, now: Instant) -> bool {
    let Tracked::Queued { not_before, avoid } = &entry.tracked else {
        return false;
    };
    let avoided = avoid.get(pod).is_some_and(|until| *until > now);
    *not_before <= now && !avoided && !pinned_elsewhere(&entry.job, version)
}

/// Whether the dispatcher's copy of a job may be older than a lease a pod of its pool names:
/// the lease is for a later attempt than the copy shows, or for the attempt the copy shows
/// running on that very pod while this dispatcher's own lease write for it is in flight.
///
/// That is the moment after a failover: the former leader leased the attempt and the pod is
/// proving it, while the new leader's watch has not brought that write yet (or its own lease
/// write is about to lose to it). Revoking would make the pod drop a proof it is computing,
/// and the job would be proved twice; so the lease stands until a fresh read settles it.
fn lagging(entry: &Entry, lease: &LeaseRef, caller: &Caller) -> bool {
    if entry.pool.namespace != caller.namespace || entry.pool.name != caller.pool {
        return false;
    }
    let status = entry.job.status.clone().unwrap_or_default();
    let mut known = crate::dispatcher::status::current_attempt(&status);
    if let Tracked::Leased(held, _) = &entry.tracked {
        known = known.max(held.attempt);
    }
    match &entry.tracked {
        Tracked::Idle => false,
        Tracked::Granting { .. } if lease.attempt == known => status
            .attempts
            .iter()
            .any(|a| a.attempt == known as i32 && a.pod.as_deref() == Some(caller.pod.as_str())),
        _ => lease.attempt > known,
    }
}

/// Whether `held` is the lease `lease` names and `caller` is the pod holding it. Pod names are
/// only unique within a namespace, so the namespace and pool are part of who holds it.
fn holds(entry: &Entry, held: &Held, lease: &LeaseRef, caller: &Caller) -> bool {
    held.attempt == lease.attempt
        && held.pod == caller.pod
        && entry.pool.namespace == caller.namespace
        && entry.pool.name == caller.pool
}

/// A job the dispatcher no longer schedules (pending or finished), without its input and
/// proof: only its identity, version and attempts are needed, to keep older copies from
/// replacing it and to answer repeated results.
fn slim(mut job: ProofJob) -> ProofJob {
    job.spec.input = ProofInput::default();
    job.metadata.managed_fields = None;
    if let Some(status) = job.status.as_mut() {
        status.result = None;
    }
    job
}

/// Whether `job` is pinned to a parameters version other than `version`.
fn pinned_elsewhere(job: &ProofJob, version: &str) -> bool {
    job.spec
        .parameters_version
        .as_deref()
        .is_some_and(|pin| pin != version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LEASE: Duration = Duration::from_secs(30);
    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(600),
        max_retries: 3,
    };

    fn job(name: &str, rv: u64, priority: i32, created: i64, phase: &str) -> ProofJob {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}"),
                         "resourceVersion": rv.to_string(),
                         "creationTimestamp": format!("2026-11-20T10:00:{created:02}Z")},
            "spec": {"poolRef": {"name": "cpu"}, "input": {"inline": {"json": "{}"}},
                     "priority": priority},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn pinned(mut j: ProofJob, version: &str) -> ProofJob {
        j.spec.parameters_version = Some(version.into());
        j
    }

    fn pool() -> PoolKey {
        PoolKey {
            namespace: "team".into(),
            name: "cpu".into(),
        }
    }

    fn caller(pod: &str) -> Caller {
        Caller {
            namespace: "team".into(),
            pool: "cpu".into(),
            pod: pod.into(),
        }
    }

    fn names(jobs: &[Arc<ProofJob>]) -> Vec<String> {
        jobs.iter().map(|j| j.name_any()).collect()
    }

    fn held(pod: &str, attempt: u32, now: Instant) -> Held {
        Held {
            pod: pod.into(),
            attempt,
            deadline: now + LEASE,
            timeout_at: now + LIMITS.timeout,
            input: None,
        }
    }

    /// A job of namespace `tenant` for the pool `team/cpu`.
    fn tenant_job(tenant: &str, name: &str, priority: i32, created: i64, phase: &str) -> ProofJob {
        let mut j = job(name, 1, priority, created, phase);
        j.metadata.namespace = Some(tenant.into());
        j.metadata.uid = Some(format!("uid-{tenant}-{name}"));
        j.spec.pool_ref.namespace = Some("team".into());
        j
    }

    fn weights(shares: serde_json::Value) -> SharingSpec {
        serde_json::from_value(json!({ "namespaces": shares })).unwrap()
    }

    fn tenants_of(jobs: &[Arc<ProofJob>]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for j in jobs {
            *counts.entry(j.namespace().unwrap()).or_default() += 1;
        }
        counts
    }

    /// Ends a granted job of the test pool as succeeded.
    fn succeed(s: &mut State, job: &ProofJob, now: Instant) {
        let mut done = job.clone();
        done.metadata.resource_version = Some("99".into());
        done.status = serde_json::from_value(json!({"phase": "Succeeded"})).unwrap();
        s.attempt_recorded(done, Duration::ZERO, None, now);
    }

    /// A succeeded job of `tenant` on `team/cpu` with a verified proof on its status.
    fn proved(tenant: &str, name: &str, input_digest: &str) -> ProofJob {
        let mut j = tenant_job(tenant, name, 0, 1, "Succeeded");
        j.status = serde_json::from_value(json!({
            "phase": "Succeeded", "parametersDigest": "sha256:p1", "inputDigest": input_digest,
            "result": {"proof": {"protocol": "groth16"}, "publicSignals": ["33"]},
            "verification": {"verified": true, "verifier": "operator"},
        }))
        .unwrap();
        j
    }

    #[test]
    fn verified_results_are_listed_for_reuse_by_namespace_until_their_job_goes() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(
            proved("team-a", "first", "hmac-sha256:in"),
            LIMITS,
            LEASE,
            now,
        );
        let found = |s: &State, ns: &str, across: bool| {
            s.reusable(&pool(), "sha256:p1", "hmac-sha256:in", ns, across)
                .map(|r| (r.namespace, r.name))
        };
        assert_eq!(
            found(&s, "team-a", false),
            Some(("team-a".into(), "first".into()))
        );
        assert_eq!(
            found(&s, "team-b", false),
            None,
            "another namespace's result is not offered"
        );
        assert_eq!(
            found(&s, "team-b", true),
            Some(("team-a".into(), "first".into())),
            "unless the pool reuses across namespaces"
        );
        assert_eq!(
            s.reusable(&pool(), "sha256:p2", "hmac-sha256:in", "team-a", true),
            None,
            "other parameters"
        );
        s.observe(
            proved("team-b", "own", "hmac-sha256:in"),
            LIMITS,
            LEASE,
            now,
        );
        assert_eq!(
            found(&s, "team-b", true),
            Some(("team-b".into(), "own".into())),
            "a namespace's own result comes first"
        );
        let mut unverified = proved("team-c", "unchecked", "hmac-sha256:other");
        unverified.status.as_mut().unwrap().verification =
            serde_json::from_value(json!({"verified": false, "skipped": true})).unwrap();
        s.observe(unverified, LIMITS, LEASE, now);
        assert_eq!(
            s.reusable(&pool(), "sha256:p1", "hmac-sha256:other", "team-c", false),
            None,
            "a proof nobody verified is not handed on"
        );
        s.forget("uid-team-a-first");
        assert_eq!(
            found(&s, "team-a", false),
            None,
            "a deleted job's proof is gone with it"
        );
        assert_eq!(
            found(&s, "team-a", true),
            Some(("team-b".into(), "own".into()))
        );
    }

    #[test]
    fn busy_namespaces_share_the_slots_by_weight() {
        let now = Instant::now();
        let mut s = State::default();
        for i in 0..20 {
            s.observe(
                tenant_job("team-a", &format!("a{i}"), 0, i, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
            s.observe(
                tenant_job("team-b", &format!("b{i}"), 0, i, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
        }
        let sharing = weights(json!([{"namespace": "team-a", "weight": 3}]));
        let first = s.take(&pool(), "p1", "v1", 8, &sharing, now);
        assert_eq!(
            tenants_of(&first),
            BTreeMap::from([("team-a".into(), 6), ("team-b".into(), 2)])
        );
        // Four of team-a's finish: its share is back below 3:1, so the freed slots are its.
        let a_jobs: Vec<_> = first
            .iter()
            .filter(|j| j.namespace().unwrap() == "team-a")
            .collect();
        for j in a_jobs.iter().take(4) {
            succeed(&mut s, j, now);
        }
        let refill = s.take(&pool(), "p2", "v1", 4, &sharing, now);
        assert_eq!(tenants_of(&refill), BTreeMap::from([("team-a".into(), 4)]));
        let loads = s.tenant_loads(&pool());
        assert_eq!(loads["team-a"], (10, 6));
        assert_eq!(loads["team-b"], (18, 2));
        // Equal weights by default: one each in turn.
        let even = s.take(&pool(), "p3", "v1", 4, &SharingSpec::default(), now);
        assert_eq!(
            tenants_of(&even),
            BTreeMap::from([("team-b".into(), 4)]),
            "with equal weights, team-b (2 running against 6) gets every slot until it catches up"
        );
    }

    #[test]
    fn a_namespace_alone_borrows_idle_slots_and_hands_them_back_as_they_free() {
        let now = Instant::now();
        let mut s = State::default();
        for i in 0..12 {
            s.observe(
                tenant_job("team-a", &format!("a{i}"), 0, i, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
        }
        let sharing = weights(json!([{"namespace": "team-a", "weight": 3}]));
        let borrowed = s.take(&pool(), "p1", "v1", 8, &sharing, now);
        assert_eq!(
            tenants_of(&borrowed),
            BTreeMap::from([("team-a".into(), 8)])
        );
        for i in 0..4 {
            s.observe(
                tenant_job("team-b", &format!("b{i}"), 0, 50 + i, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
        }
        succeed(&mut s, &borrowed[0], now);
        succeed(&mut s, &borrowed[1], now);
        let freed = s.take(&pool(), "p1", "v1", 2, &sharing, now);
        assert_eq!(
            tenants_of(&freed),
            BTreeMap::from([("team-b".into(), 2)]),
            "team-b, with nothing running, takes the slots team-a gives back"
        );
    }

    #[test]
    fn priority_orders_jobs_within_a_namespace_not_across() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(
            tenant_job("team-a", "a-urgent", 1000, 9, "Queued"),
            LIMITS,
            LEASE,
            now,
        );
        s.observe(
            tenant_job("team-a", "a-urgent-too", 1000, 9, "Queued"),
            LIMITS,
            LEASE,
            now,
        );
        s.observe(
            tenant_job("team-b", "b-low", -5, 5, "Queued"),
            LIMITS,
            LEASE,
            now,
        );
        s.observe(
            tenant_job("team-b", "b-high", 5, 8, "Queued"),
            LIMITS,
            LEASE,
            now,
        );
        let taken = s.take(&pool(), "p1", "v1", 2, &SharingSpec::default(), now);
        assert_eq!(names(&taken), ["a-urgent", "b-high"]);
    }

    #[test]
    fn a_capped_namespace_runs_no_more_than_its_cap_even_with_idle_slots() {
        let now = Instant::now();
        let mut s = State::default();
        for i in 0..6 {
            s.observe(
                tenant_job("team-a", &format!("a{i}"), 0, i, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
        }
        s.observe(
            tenant_job("team-b", "b0", 0, 30, "Queued"),
            LIMITS,
            LEASE,
            now,
        );
        let sharing = weights(json!([{"namespace": "team-a", "maxRunning": 2}]));
        let taken = s.take(&pool(), "p1", "v1", 8, &sharing, now);
        assert_eq!(
            tenants_of(&taken),
            BTreeMap::from([("team-a".into(), 2), ("team-b".into(), 1)])
        );
        assert_eq!(
            s.next_ready_in(&pool(), "v1", &sharing, now),
            None,
            "team-a's queued jobs wait for its running ones; a long poll does not spin on them"
        );
        succeed(&mut s, &taken[0], now);
        assert_eq!(
            s.next_ready_in(&pool(), "v1", &sharing, now),
            Some(Duration::ZERO)
        );
        assert_eq!(s.take(&pool(), "p1", "v1", 8, &sharing, now).len(), 1);
    }

    #[test]
    fn jobs_leave_by_priority_then_age() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("old", 1, 0, 1, "Queued"), LIMITS, LEASE, now);
        s.observe(job("new", 2, 0, 5, "Queued"), LIMITS, LEASE, now);
        s.observe(job("urgent", 3, 10, 9, "Queued"), LIMITS, LEASE, now);
        s.observe(job("pending", 4, 99, 0, "Pending"), LIMITS, LEASE, now);
        assert_eq!(s.load(&pool()), (3, 0));
        let taken = s.take(&pool(), "p1", "v1", 2, &SharingSpec::default(), now);
        assert_eq!(names(&taken), ["urgent", "old"]);
        assert_eq!(s.load(&pool()), (1, 2), "taken jobs count as running");
        assert_eq!(
            names(&s.take(&pool(), "p2", "v1", 5, &SharingSpec::default(), now)),
            ["new"]
        );
    }

    #[test]
    fn pinned_jobs_go_only_to_pods_serving_their_version() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(
            pinned(job("v2-job", 1, 5, 0, "Queued"), "v2"),
            LIMITS,
            LEASE,
            now,
        );
        s.observe(job("any", 2, 0, 1, "Queued"), LIMITS, LEASE, now);
        assert_eq!(
            names(&s.take(&pool(), "p1", "v1", 5, &SharingSpec::default(), now)),
            ["any"]
        );
        assert!(
            s.take(&pool(), "p1", "v1", 5, &SharingSpec::default(), now)
                .is_empty()
        );
        assert_eq!(
            names(&s.take(&pool(), "p2", "v2", 5, &SharingSpec::default(), now)),
            ["v2-job"]
        );
    }

    #[test]
    fn a_lease_is_held_until_its_attempt_is_recorded() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let taken = s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now);
        let mut running = (*taken[0]).clone();
        running.metadata.resource_version = Some("2".into());
        running.status.as_mut().unwrap().phase = Some(JobPhase::Running);
        running.status.as_mut().unwrap().attempt_count = Some(1);
        s.granted(running.clone(), held("p1", 1, now));

        let lease = LeaseRef {
            uid: "uid-a".into(),
            attempt: 1,
        };
        assert!(s.holder(&lease, &caller("p1")).is_some());
        assert!(
            s.holder(&lease, &caller("p2")).is_none(),
            "another pod does not hold it"
        );
        let stale = LeaseRef {
            attempt: 0,
            ..lease.clone()
        };
        assert!(
            s.holder(&stale, &caller("p1")).is_none(),
            "an older attempt is stale"
        );

        // The watch delivers the Queued copy late: it changes nothing.
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        assert!(s.holder(&lease, &caller("p1")).is_some());
        assert_eq!(s.load(&pool()), (0, 1));
    }

    #[test]
    fn heartbeats_renew_held_leases_and_revoke_the_rest() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let a = s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)[0].clone();
        s.granted((*a).clone(), held("p1", 1, now));
        let later = now + Duration::from_secs(25);
        let revoked = s.heartbeat(
            &caller("p1"),
            &[
                LeaseRef {
                    uid: "uid-a".into(),
                    attempt: 1,
                },
                LeaseRef {
                    uid: "uid-deleted".into(),
                    attempt: 1,
                },
            ],
            LEASE,
            later,
        );
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].uid, "uid-deleted");
        let nobody_gone = |_: &str, _: &str| false;
        assert!(
            s.lapsed(now + Duration::from_secs(40), &nobody_gone)
                .is_empty()
        );
        let lapsed = s.lapsed(later + LEASE, &nobody_gone);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].lapse, Lapse::Expired);

        let gone = |_: &str, pod: &str| pod == "p1";
        assert_eq!(s.lapsed(now, &gone)[0].lapse, Lapse::PodGone);

        s.forget("uid-a");
        let revoked = s.heartbeat(
            &caller("p1"),
            &[LeaseRef {
                uid: "uid-a".into(),
                attempt: 1,
            }],
            LEASE,
            later,
        );
        assert_eq!(revoked.len(), 1, "a deleted job's lease is revoked");
    }

    #[test]
    fn a_requeued_job_waits_its_backoff_and_avoids_the_pod_that_failed_it() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let a = s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)[0].clone();
        s.granted((*a).clone(), held("p1", 1, now));
        let mut requeued = (*a).clone();
        requeued.metadata.resource_version = Some("3".into());
        s.attempt_recorded(requeued, Duration::from_secs(2), Some("p1"), now);
        assert_eq!(s.load(&pool()), (1, 0));
        assert!(
            s.take(&pool(), "p2", "v1", 1, &SharingSpec::default(), now)
                .is_empty(),
            "backoff"
        );
        assert_eq!(
            s.next_ready_in(&pool(), "v1", &SharingSpec::default(), now),
            Some(Duration::from_secs(2))
        );
        let after = now + Duration::from_secs(2);
        assert!(
            s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), after)
                .is_empty(),
            "avoids p1"
        );
        assert_eq!(
            names(&s.take(&pool(), "p2", "v1", 1, &SharingSpec::default(), after)),
            ["a"]
        );
    }

    /// `job("a", rv, ..)` running attempt `attempt` on `pod`, which ended with `outcome`
    /// (and the job queued again) when one is given.
    fn attempt_of_a(rv: u64, attempt: i32, pod: &str, outcome: Option<&str>) -> ProofJob {
        let phase = if outcome.is_some() {
            "Queued"
        } else {
            "Running"
        };
        let mut j = job("a", rv, 0, 0, phase);
        j.status = Some(
            serde_json::from_value(json!({
                "phase": phase, "attemptCount": attempt,
                "attempts": [{"attempt": attempt, "pod": pod, "outcome": outcome}],
            }))
            .unwrap(),
        );
        j
    }

    #[test]
    fn a_lease_whose_write_took_effect_but_failed_is_not_leased_again_on_top() {
        // The lease write to p1 took effect, the watch brought it, and the write's answer was
        // lost: the job is p1's attempt 1 (which lapses if p1 never heard of it), not queued.
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        assert_eq!(
            names(&s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)),
            ["a"]
        );
        s.observe(attempt_of_a(2, 1, "p1", None), LIMITS, LEASE, now);
        s.grant_abandoned("uid-a", now, LEASE);
        assert!(
            s.take(&pool(), "p2", "v1", 1, &SharingSpec::default(), now)
                .is_empty(),
            "a running job is not leased again"
        );
        assert_eq!(s.load(&pool()), (0, 1));
        assert_eq!(s.held_by(&pool(), "p1"), 1);
        let lapsed = s.lapsed(now + LEASE, &|_, _| false);
        assert_eq!(lapsed.len(), 1, "the lease nobody renews lapses");
        assert_eq!(
            (lapsed[0].held.pod.as_str(), lapsed[0].held.attempt),
            ("p1", 1)
        );
    }

    #[test]
    fn a_rejected_attempt_seen_on_the_watch_first_still_backs_off_and_avoids_its_pod() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now);
        let leased = attempt_of_a(2, 1, "p1", None);
        s.granted(leased, held("p1", 1, now));
        // The rejection, seen on the watch before the answer to the write that made it.
        let rejected = attempt_of_a(3, 1, "p1", Some("VerificationFailed"));
        s.observe(rejected.clone(), LIMITS, LEASE, now);
        assert_eq!(s.load(&pool()), (1, 0));
        let backoff = super::super::reaper::retry_backoff(1);
        for pod in ["p1", "p2"] {
            assert!(
                s.take(&pool(), pod, "v1", 1, &SharingSpec::default(), now)
                    .is_empty(),
                "{pod} waits out the backoff"
            );
        }
        let after = now + backoff;
        assert!(
            s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), after)
                .is_empty(),
            "the pod whose proof was rejected does not get the job again"
        );
        assert_eq!(
            names(&s.take(&pool(), "p2", "v1", 1, &SharingSpec::default(), after)),
            ["a"]
        );
        // The write's answer arrives now, with p2's lease being written: the job stays p2's.
        s.attempt_recorded(rejected, backoff, Some("p1"), after);
        assert_eq!(s.load(&pool()), (0, 1), "the later lease is kept");
        assert!(
            s.take(
                &pool(),
                "p3",
                "v1",
                1,
                &SharingSpec::default(),
                after + backoff
            )
            .is_empty()
        );
    }

    #[test]
    fn a_job_every_pod_failed_goes_back_to_them_after_a_while() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let a = s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)[0].clone();
        s.granted((*a).clone(), held("p1", 1, now));
        let mut requeued = (*a).clone();
        requeued.metadata.resource_version = Some("3".into());
        s.attempt_recorded(requeued, Duration::from_secs(1), Some("p1"), now);
        // p1 is the pool's only pod: the job does not wait for another one for good.
        let soon = now + Duration::from_secs(2);
        assert!(
            s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), soon)
                .is_empty()
        );
        let later = now + Duration::from_secs(1) + AVOID_FOR;
        assert_eq!(
            names(&s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), later)),
            ["a"]
        );
    }

    #[test]
    fn a_running_job_found_at_start_keeps_its_lease_for_one_lease_duration() {
        let now = Instant::now();
        let mut s = State::default();
        let mut j = job("a", 7, 0, 0, "Running");
        j.status = Some(
            serde_json::from_value(json!({
                "phase": "Running", "attemptCount": 2,
                "attempts": [{"attempt": 1, "pod": "p0", "outcome": "LeaseExpired"},
                             {"attempt": 2, "pod": "p1"}],
            }))
            .unwrap(),
        );
        s.observe(j, LIMITS, LEASE, now);
        let lease = LeaseRef {
            uid: "uid-a".into(),
            attempt: 2,
        };
        assert!(s.holder(&lease, &caller("p1")).is_some());
        assert_eq!(s.load(&pool()), (0, 1));
        let nobody_gone = |_: &str, _: &str| false;
        assert_eq!(s.lapsed(now + LEASE, &nobody_gone).len(), 1);
    }

    #[test]
    fn an_abandoned_grant_goes_back_in_line() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        s.observe(job("b", 2, 0, 1, "Queued"), LIMITS, LEASE, now);
        assert_eq!(
            names(&s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)),
            ["a"]
        );
        s.grant_abandoned("uid-a", now, LEASE);
        assert_eq!(
            names(&s.take(&pool(), "p1", "v1", 2, &SharingSpec::default(), now)),
            ["a", "b"]
        );
    }

    #[test]
    fn finished_jobs_leave_the_queue() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        s.observe(job("a", 2, 0, 0, "Succeeded"), LIMITS, LEASE, now);
        assert_eq!(s.load(&pool()), (0, 0));
        assert!(
            s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)
                .is_empty()
        );
    }

    #[test]
    fn a_same_named_pod_of_another_namespace_or_pool_holds_nothing() {
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let a = s.take(&pool(), "p1", "v1", 1, &SharingSpec::default(), now)[0].clone();
        s.granted((*a).clone(), held("p1", 1, now));
        let lease = LeaseRef {
            uid: "uid-a".into(),
            attempt: 1,
        };
        let elsewhere = Caller {
            namespace: "other-team".into(),
            ..caller("p1")
        };
        let other_pool = Caller {
            pool: "gpu".into(),
            ..caller("p1")
        };
        for impostor in [&elsewhere, &other_pool] {
            assert!(s.holder(&lease, impostor).is_none(), "{impostor:?}");
            let revoked = s.heartbeat(impostor, std::slice::from_ref(&lease), LEASE, now);
            assert_eq!(
                revoked,
                std::slice::from_ref(&lease),
                "{impostor:?} renews nothing"
            );
        }
        assert!(s.holder(&lease, &caller("p1")).is_some());
    }

    #[test]
    fn a_restart_keeps_the_timeout_of_an_attempt_already_running() {
        let now = Instant::now();
        let mut s = State::default();
        let mut j = job("a", 7, 0, 0, "Running");
        let started = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(500);
        j.status = Some(
            serde_json::from_value(json!({
                "phase": "Running", "attemptCount": 1,
                "attempts": [{"attempt": 1, "pod": "p1", "startTime": started.to_string()}],
            }))
            .unwrap(),
        );
        s.observe(j, LIMITS, LEASE, now);
        let nobody_gone = |_: &str, _: &str| false;
        // 600 s timeout, 500 s already spent: it times out within about 100 s, heartbeats or not.
        let (_, held, _) = s
            .holder(
                &LeaseRef {
                    uid: "uid-a".into(),
                    attempt: 1,
                },
                &caller("p1"),
            )
            .unwrap();
        assert!(held.timeout_at <= now + Duration::from_secs(101));
        s.heartbeat(
            &caller("p1"),
            &[LeaseRef {
                uid: "uid-a".into(),
                attempt: 1,
            }],
            Duration::from_secs(1000),
            now,
        );
        let lapsed = s.lapsed(now + Duration::from_secs(101), &nobody_gone);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].lapse, Lapse::TimedOut);
        // Had its pod gone quiet instead (as when no leader could renew its lease), the lapse
        // is the pod's loss, though the timeout passed as well.
        let lapsed = s.lapsed(now + Duration::from_secs(1001), &nobody_gone);
        assert_eq!(lapsed[0].lapse, Lapse::Expired);
    }

    #[test]
    fn pods_get_no_more_than_their_slots() {
        let now = Instant::now();
        let mut s = State::default();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            s.observe(
                job(name, i as u64 + 1, 0, i as i64, "Queued"),
                LIMITS,
                LEASE,
                now,
            );
        }
        for j in s.take(&pool(), "p1", "v1", 2, &SharingSpec::default(), now) {
            s.granted((*j).clone(), held("p1", 1, now));
        }
        assert_eq!(s.held_by(&pool(), "p1"), 2);
        assert_eq!(s.held_by(&pool(), "p2"), 0);
    }

    #[test]
    fn finished_jobs_keep_no_input_or_proof_and_empty_pools_are_dropped() {
        let now = Instant::now();
        let mut s = State::default();
        let mut done = job("a", 2, 0, 0, "Succeeded");
        done.spec.input.inline = Some(Default::default());
        done.status.as_mut().unwrap().result = Some(Default::default());
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        assert_eq!(s.loads().len(), 1);
        s.observe(done, LIMITS, LEASE, now);
        let kept = s.job("uid-a").unwrap();
        assert_eq!(kept.spec.input, ProofInput::default());
        assert!(kept.status.as_ref().unwrap().result.is_none());
        assert!(
            s.loads().is_empty(),
            "a pool with nothing queued or running is forgotten"
        );
        s.forget("uid-a");
        assert!(s.job("uid-a").is_none());
    }

    /// What the active-job index stands for, computed the slow way: a pass over every job.
    fn scanned_loads(s: &State) -> HashMap<PoolKey, (usize, usize)> {
        let mut loads: HashMap<PoolKey, (usize, usize)> = HashMap::new();
        for entry in s.jobs.values() {
            let (q, r) = entry.tracked.load();
            if q + r > 0 {
                let load = loads.entry(entry.pool.clone()).or_default();
                load.0 += q;
                load.1 += r;
            }
        }
        loads
    }

    #[test]
    fn the_active_index_agrees_with_a_full_scan_through_every_change() {
        // A fixed pseudo-random walk (a 64-bit LCG) over every way a job changes state, in two
        // pools, some jobs moving between them: after each step the answers drawn from the
        // index (loads, lapsed leases, leases a pod holds) match a pass over every job.
        let now = Instant::now();
        let mut s = State::default();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % bound
        };
        let mut revision = 1;
        let pods = ["p1", "p2"];
        for step in 0..4000 {
            let name = format!("j{}", next(40));
            let uid = format!("uid-{name}");
            revision += 1;
            let pool_name = if next(5) == 0 { "gpu" } else { "cpu" };
            match next(7) {
                0 | 1 => {
                    let phase = ["Queued", "Running", "Succeeded", "Failed"][next(4) as usize];
                    let mut j = job(&name, revision, 0, (step % 60) as i64, phase);
                    j.spec.pool_ref.name = pool_name.into();
                    s.observe(j, LIMITS, LEASE, now);
                }
                2 => {
                    let pod = pods[next(2) as usize];
                    let key = PoolKey::new("team", pool_name);
                    for taken in s.take(&key, pod, "v1", 2, &SharingSpec::default(), now) {
                        // Leasing a copy that is not queued would add an attempt on top of
                        // one that is still running.
                        assert_eq!(
                            taken.status.as_ref().and_then(|st| st.phase),
                            Some(JobPhase::Queued),
                            "step {step}: only a queued copy is leased"
                        );
                        let mut j = (*taken).clone();
                        j.metadata.resource_version = Some(revision.to_string());
                        // Written, failed, or still in flight while other changes come in.
                        match next(3) {
                            0 => s.granted(j, held(pod, 1, now)),
                            1 => s.grant_abandoned(&taken.uid().unwrap(), now, LEASE),
                            _ => {}
                        }
                    }
                }
                3 => s.grant_abandoned(&uid, now, LEASE),
                4 => {
                    if let Some(current) = s.job(&uid) {
                        let phase = if next(2) == 0 { "Queued" } else { "Succeeded" };
                        let mut j = job(&name, revision, 0, 0, phase);
                        j.spec.pool_ref = current.spec.pool_ref.clone();
                        s.attempt_recorded(j, Duration::ZERO, Some(pods[0]), now);
                    }
                }
                5 => s.forget(&uid),
                _ => {
                    let before: usize = s.jobs.len();
                    s.loads();
                    assert_eq!(s.jobs.len(), before, "loads() forgets no job");
                }
            }

            let indexed: HashSet<String> = s.active.values().flatten().cloned().collect();
            let scanned: HashSet<String> = s
                .jobs
                .iter()
                .filter(|(_, e)| !matches!(e.tracked, Tracked::Idle))
                .map(|(uid, _)| uid.clone())
                .collect();
            assert_eq!(
                indexed, scanned,
                "step {step}: the index holds the active jobs"
            );
            let mut from_index: HashMap<PoolKey, (usize, usize)> = HashMap::new();
            for key in [PoolKey::new("team", "cpu"), PoolKey::new("team", "gpu")] {
                let load = s.load(&key);
                if load != (0, 0) {
                    from_index.insert(key.clone(), load);
                }
                for pod in pods {
                    let scanned_held = s
                        .jobs
                        .values()
                        .filter(|e| e.pool == key)
                        .filter(|e| matches!(&e.tracked, Tracked::Leased(h, _) if h.pod == pod))
                        .count();
                    assert_eq!(s.held_by(&key, pod), scanned_held, "step {step}");
                }
            }
            assert_eq!(from_index, scanned_loads(&s), "step {step}: pool loads");
            let leased = s
                .jobs
                .values()
                .filter(|e| matches!(e.tracked, Tracked::Leased(..)))
                .count();
            assert_eq!(
                s.lapsed(now + LIMITS.timeout, &|_, _| false).len(),
                leased,
                "step {step}: every lease lapses once its timeout is past"
            );
        }
        assert_eq!(s.loads(), scanned_loads(&s));
    }

    #[test]
    fn a_lease_granted_by_a_former_leader_is_not_revoked_before_the_job_is_read_again() {
        // After a failover the former leader's last lease may not have reached this
        // dispatcher's copy: revoking it would make the pod drop the proof it is computing.
        let now = Instant::now();
        let mut s = State::default();
        s.observe(job("a", 1, 0, 0, "Queued"), LIMITS, LEASE, now);
        let lease = LeaseRef {
            uid: "uid-a".into(),
            attempt: 1,
        };
        let leases = std::slice::from_ref(&lease);
        assert!(
            s.heartbeat(&caller("p1"), leases, LEASE, now).is_empty(),
            "a lease newer than the copy is not revoked"
        );
        assert!(s.holder(&lease, &caller("p1")).is_none(), "nor held yet");
        assert_eq!(s.due_reread(leases, &caller("p1"), now).len(), 1);
        assert!(
            s.due_reread(leases, &caller("p1"), now + Duration::from_secs(1))
                .is_empty(),
            "one read per job per interval, however often pods ask"
        );
        let outsider = Caller {
            namespace: "other".into(),
            ..caller("p1")
        };
        assert_eq!(
            s.heartbeat(&outsider, leases, LEASE, now).len(),
            1,
            "a pod of another namespace gets nothing re-read and nothing kept"
        );
        assert!(s.due_reread(leases, &outsider, now + LEASE).is_empty());

        // The fresh read shows the former leader's lease: p1 holds it, p2 does not.
        let mut running = job("a", 2, 0, 0, "Running");
        running.status = Some(
            serde_json::from_value(json!({
                "phase": "Running", "attemptCount": 1,
                "attempts": [{"attempt": 1, "pod": "p1"}],
            }))
            .unwrap(),
        );
        s.observe(running, LIMITS, LEASE, now);
        assert!(s.holder(&lease, &caller("p1")).is_some());
        assert!(s.heartbeat(&caller("p1"), leases, LEASE, now).is_empty());
        assert_eq!(s.heartbeat(&caller("p2"), leases, LEASE, now).len(), 1);
        assert!(
            s.take(&pool(), "p2", "v1", 1, &SharingSpec::default(), now)
                .is_empty(),
            "not granted twice"
        );
    }

    #[test]
    fn one_heartbeat_reads_at_most_a_few_lagging_jobs_again() {
        let now = Instant::now();
        let mut s = State::default();
        let leases: Vec<LeaseRef> = (0..50)
            .map(|i| {
                s.observe(job(&format!("j{i}"), 1, 0, 0, "Queued"), LIMITS, LEASE, now);
                LeaseRef {
                    uid: format!("uid-j{i}"),
                    attempt: 1,
                }
            })
            .collect();
        assert!(s.heartbeat(&caller("p1"), &leases, LEASE, now).is_empty());
        assert_eq!(
            s.due_reread(&leases, &caller("p1"), now).len(),
            MAX_REREADS_PER_REQUEST
        );
        assert_eq!(
            s.due_reread(&leases, &caller("p1"), now).len(),
            MAX_REREADS_PER_REQUEST,
            "the next request reads the next ones"
        );
    }
}
