//! Pods that prove they still prove right. A pool with `spec.knownAnswer` hands each pod one of
//! its known inputs, picked at random, as an ordinary lease before the pod gets any job, and
//! again every `everySeconds` or `everyProofs`. The proof must verify against the statement
//! the pool's verifier derives from that input, as a job's must, and carry the known public
//! signals or outputs where the pool wrote them down. A pod that gets it wrong, or (with `spec.quarantine`) whose proofs are rejected
//! too often, is quarantined: it takes no more leases, the pool lists it in `flaggedPods`
//! (whence its `ProversHealthy` condition and a `PodQuarantined` Event), and it is deleted so
//! that its Deployment replaces it.
//!
//! The check is a lease shaped like any other ([`disguise`]): a random UID in the shape of a
//! Kubernetes UID, a job name in the namespace and shape of the pool's real jobs, and a trace
//! context, so a pod cannot tell it from a user's job and answer it alone correctly. Its state
//! is in memory only: after a failover every pod is checked again, which costs one proof per
//! pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams};
use tracing::{info, warn};
use zkfleet_contract::lease::{
    Caller, CompleteRequest, CompleteResponse, JobInput, LeaseRef, LeasedJob, Outcome,
};
use zkfleet_crds::v1alpha1::{KnownAnswer, KnownInput, ProofJob, ProverPool, QUARANTINED};

use super::state::PoolKey;
use super::verify::{Checked, NoVerdict};
use super::{DispatchError, Dispatcher};
use crate::job::input;

/// A known-answer check's lease UID and job (`namespace/name`), drawn as a real job's are: a
/// random version-4 UUID, as Kubernetes gives every object, and a name in the namespace and
/// the shape of `like` (a real job of the pool, `name-xxxxx` as `generateName` makes them),
/// or of the pool's name when it has no job.
pub fn disguise(pool: &PoolKey, like: Option<&ProofJob>, random: [u8; 21]) -> (String, String) {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&random[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let hex = hex::encode(uuid);
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    // The alphabet of generateName's suffixes (no vowels, no confusable digits).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = random[16..]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let (namespace, stem) = match like {
        Some(job) => {
            let name = job.name_any();
            let stem = match name.rsplit_once('-') {
                Some((stem, _)) if !stem.is_empty() => stem.to_string(),
                _ => name,
            };
            (
                job.namespace().unwrap_or_else(|| pool.namespace.clone()),
                stem,
            )
        }
        None => (pool.namespace.clone(), pool.name.clone()),
    };
    (uid, format!("{namespace}/{stem}-{suffix}"))
}

/// The known input a check handed out, as the pod got it, and its answer.
#[derive(Debug, PartialEq)]
pub struct Issued {
    pub input: JobInput,
    pub known: KnownInput,
}

/// Where a pod stands with its known-answer check.
#[derive(Clone, Debug, PartialEq)]
enum Standing {
    /// A check is out: the pod gets no jobs until it answers.
    Checking {
        uid: String,
        deadline: Instant,
        issued: Arc<Issued>,
    },
    /// It answered right at `at`, and has made `proofs` proofs since.
    Passed { at: Instant, proofs: u32 },
    /// It takes no more leases.
    Quarantined,
}

/// What a lease request of a pod may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Jobs, as usual.
    Open,
    /// Its known-answer check first (a new one is due).
    Check,
    /// Nothing until its check is answered.
    Wait,
    /// Nothing ever.
    Quarantined,
}

/// Every pod's standing, and its rejected proofs.
#[derive(Default)]
pub struct Checks {
    standing: Mutex<HashMap<(String, String), Standing>>,
    rejected: Mutex<HashMap<(String, String), Vec<Rejection>>>,
}

/// One rejected proof counted against a pod: which attempt, and when it was counted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rejection {
    uid: String,
    attempt: i32,
    at: Instant,
}

fn pod_key(namespace: &str, pod: &str) -> (String, String) {
    (namespace.to_string(), pod.to_string())
}

impl Checks {
    /// What `pod` may get now, given its pool's check (`None`: the pool has none, or the pod
    /// serves other parameters than the check's).
    pub fn gate(
        &self,
        namespace: &str,
        pod: &str,
        check: Option<&KnownAnswer>,
        now: Instant,
    ) -> Gate {
        let standing = self
            .standing
            .lock()
            .expect("lock")
            .get(&pod_key(namespace, pod))
            .cloned();
        match (standing, check) {
            (Some(Standing::Quarantined), _) => Gate::Quarantined,
            (_, None) => Gate::Open,
            (None, Some(_)) => Gate::Check,
            (Some(Standing::Checking { deadline, .. }), Some(_)) => {
                // A check the pod never answered (it restarted, or lost it) is handed out anew.
                if deadline <= now {
                    Gate::Check
                } else {
                    Gate::Wait
                }
            }
            (Some(Standing::Passed { at, proofs }), Some(check)) => {
                let every = Duration::from_secs(check.every_seconds.max(0) as u64);
                let stale = check.every_seconds > 0 && now.saturating_duration_since(at) >= every;
                let counted = check.every_proofs > 0 && proofs >= check.every_proofs as u32;
                if stale || counted {
                    Gate::Check
                } else {
                    Gate::Open
                }
            }
        }
    }

    /// Records the check `uid` handed to `pod`.
    pub fn issue(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        deadline: Instant,
        issued: Arc<Issued>,
    ) {
        self.standing.lock().expect("lock").insert(
            pod_key(namespace, pod),
            Standing::Checking {
                uid: uid.to_string(),
                deadline,
                issued,
            },
        );
    }

    /// Whether `uid` is the lease of a check `caller` was handed (and has not answered).
    pub fn is_check(&self, caller: &Caller, uid: &str) -> bool {
        matches!(
            self.standing.lock().expect("lock").get(&pod_key(&caller.namespace, &caller.pod)),
            Some(Standing::Checking { uid: u, .. }) if u == uid
        )
    }

    /// Whether `lease` is the check `caller` holds now; if so its deadline is renewed.
    pub fn renew(&self, caller: &Caller, lease: &LeaseRef, deadline: Instant) -> bool {
        let mut standing = self.standing.lock().expect("lock");
        match standing.get_mut(&pod_key(&caller.namespace, &caller.pod)) {
            Some(Standing::Checking {
                uid, deadline: d, ..
            }) if *uid == lease.uid => {
                *d = deadline;
                true
            }
            _ => false,
        }
    }

    /// The check `lease` is, when `caller` holds it.
    fn held(&self, caller: &Caller, lease: &LeaseRef) -> Option<Arc<Issued>> {
        match self
            .standing
            .lock()
            .expect("lock")
            .get(&pod_key(&caller.namespace, &caller.pod))
        {
            Some(Standing::Checking { uid, issued, .. }) if *uid == lease.uid => {
                Some(issued.clone())
            }
            _ => None,
        }
    }

    fn passed(&self, namespace: &str, pod: &str, now: Instant) {
        self.standing.lock().expect("lock").insert(
            pod_key(namespace, pod),
            Standing::Passed { at: now, proofs: 0 },
        );
    }

    /// Counts a proof of `pod` towards its next check.
    pub fn proved(&self, namespace: &str, pod: &str) {
        if let Some(Standing::Passed { proofs, .. }) = self
            .standing
            .lock()
            .expect("lock")
            .get_mut(&pod_key(namespace, pod))
        {
            *proofs += 1;
        }
    }

    /// Counts the rejected proof of attempt `attempt` of job `uid` against `pod`, once however
    /// often it is reported; returns how many of its proofs were rejected within `window`.
    pub fn rejected(
        &self,
        namespace: &str,
        pod: &str,
        (uid, attempt): (&str, i32),
        now: Instant,
        window: Duration,
    ) -> u32 {
        let mut rejected = self.rejected.lock().expect("lock");
        let list = rejected.entry(pod_key(namespace, pod)).or_default();
        list.retain(|r| now.saturating_duration_since(r.at) < window);
        if !list.iter().any(|r| r.uid == uid && r.attempt == attempt) {
            list.push(Rejection {
                uid: uid.to_string(),
                attempt,
                at: now,
            });
        }
        list.len() as u32
    }

    /// Marks `pod` quarantined; false when it already was.
    fn quarantine(&self, namespace: &str, pod: &str) -> bool {
        let previous = self
            .standing
            .lock()
            .expect("lock")
            .insert(pod_key(namespace, pod), Standing::Quarantined);
        previous != Some(Standing::Quarantined)
    }

    /// Forgets pods that no longer exist.
    pub fn retain(&self, exists: impl Fn(&str, &str) -> bool) {
        self.standing
            .lock()
            .expect("lock")
            .retain(|(ns, pod), _| exists(ns, pod));
        self.rejected
            .lock()
            .expect("lock")
            .retain(|(ns, pod), _| exists(ns, pod));
    }
}

/// Whether a proof's public signals and outputs are the known answer, where one was given.
pub fn is_known_answer(
    check: &KnownInput,
    public_signals: &[String],
    public_outputs: Option<&serde_json::Value>,
) -> Result<(), String> {
    if let Some(expected) = &check.public_signals
        && expected.as_slice() != public_signals
    {
        return Err(format!(
            "its public signals {public_signals:?} are not the known answer {expected:?}"
        ));
    }
    if let Some(expected) = &check.public_outputs {
        for (key, value) in expected {
            let got = public_outputs.and_then(|o| o.get(key));
            if got != Some(value) {
                return Err(format!(
                    "its public output {key} is {}, not the known {value}",
                    got.map_or("missing".to_string(), |g| g.to_string())
                ));
            }
        }
    }
    Ok(())
}

impl Dispatcher {
    /// The pool's known-answer check, when it applies to a pod serving `version`.
    pub(super) fn check_for<'a>(
        &self,
        pool: Option<&'a ProverPool>,
        version: &str,
    ) -> Option<&'a KnownAnswer> {
        let pool = pool?;
        (pool.spec.parameters.version == version)
            .then_some(pool.spec.known_answer.as_ref())
            .flatten()
    }

    /// A new known-answer lease for the caller; `None` when its input cannot be read (the pod
    /// then waits, and the problem is logged).
    pub(super) async fn issue_check(
        &self,
        check: &KnownAnswer,
        caller: &Caller,
    ) -> Option<LeasedJob> {
        let known = check.inputs();
        let mut random = [0u8; 22];
        if getrandom::fill(&mut random).is_err() {
            warn!("no randomness for a known-answer check; the pod waits");
            return None;
        }
        let known = known[random[21] as usize % known.len()].clone();
        // The input is read as a job of the pool's own namespace would have it read.
        let mut probe: ProofJob = ProofJob::new(
            "known-answer",
            zkfleet_crds::v1alpha1::ProofJobSpec {
                pool_ref: zkfleet_crds::v1alpha1::PoolRef {
                    name: caller.pool.clone(),
                    namespace: None,
                },
                input: known.input.clone(),
                parameters_version: None,
                priority: 0,
                timeout_seconds: None,
                max_retries: None,
                fallback: None,
                ttl_seconds_after_finished: None,
            },
        );
        probe.metadata.namespace = Some(caller.namespace.clone());
        let input = match input::resolve(&self.client, &probe).await {
            Ok(input) => input,
            Err(e) => {
                warn!(pool = %caller.pool, error = %e, "the known-answer input cannot be read; the pod waits");
                return None;
            }
        };
        let timeout = self.limits(&probe).timeout;
        let key = PoolKey::new(&caller.namespace, &caller.pool);
        let like = self.state.lock().expect("lock").any_active_in(&key);
        let mut drawn = [0u8; 21];
        drawn.copy_from_slice(&random[..21]);
        let (uid, job) = disguise(&key, like.as_deref(), drawn);
        self.verification.checks.issue(
            &caller.namespace,
            &caller.pod,
            &uid,
            Instant::now() + self.settings.lease_duration,
            Arc::new(Issued {
                input: input.clone(),
                known,
            }),
        );
        info!(pod = %caller.pod, pool = %caller.pool, "known-answer check handed out");
        let traceparent = Some(zkfleet_contract::trace::traceparent(&uid, 1));
        Some(LeasedJob {
            lease: LeaseRef { uid, attempt: 1 },
            job,
            lease_seconds: self.settings.lease_duration.as_secs() as u32,
            timeout_seconds: timeout.as_secs() as u32,
            input,
            traceparent,
        })
    }

    /// The answer to a known-answer check: verified and compared, the pod passes or is
    /// quarantined.
    pub(super) async fn complete_check(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, DispatchError> {
        let caller = &request.caller;
        let Some(issued) = self.verification.checks.held(caller, &request.lease) else {
            return Err(DispatchError::Stale(format!(
                "check {} is not one pod {} holds",
                request.lease.uid, caller.pod
            )));
        };
        let key = PoolKey::new(&caller.namespace, &caller.pool);
        let pool = self.pool(&key).ok_or_else(|| {
            DispatchError::Unavailable(format!("pool {} is not known yet", key.name))
        })?;
        if pool.spec.known_answer.is_none() {
            // The pool dropped its check meanwhile.
            self.verification
                .checks
                .passed(&caller.namespace, &caller.pod, Instant::now());
            return Ok(answered("Succeeded"));
        }
        let wrong = match &request.outcome {
            Outcome::Failed { code, message, .. } => Some(format!(
                "it failed the known-answer check: {code}: {message}"
            )),
            Outcome::Proved {
                proof,
                public_signals,
                public_outputs,
                ..
            } => {
                let version = pool.spec.parameters.version.clone();
                match self
                    .verdict(
                        &pool,
                        &version,
                        &issued.input,
                        proof,
                        public_signals,
                        public_outputs.as_ref(),
                    )
                    .await
                {
                    Ok(checked) if checked.input_rejected => {
                        // The pool's own known input gives no statement: the pool is wrong, not
                        // the pod, and every check fails alike until it is fixed.
                        warn!(pool = %key.name, "the known-answer input gives no statement; fix spec.knownAnswer; the pod is let through");
                        None
                    }
                    Ok(Checked {
                        verdict: Ok(()), ..
                    }) => is_known_answer(&issued.known, public_signals, public_outputs.as_ref())
                        .err()
                        .map(|why| format!("its known-answer proof verified, but {why}")),
                    Ok(Checked {
                        verdict: Err(why), ..
                    }) => Some(format!("its known-answer proof was rejected: {why}")),
                    Err(NoVerdict::Unavailable(e)) => return Err(e),
                    Err(NoVerdict::Misconfigured(why)) => {
                        // Nothing can be verified on this pool until it is fixed, and every job
                        // says so; the check cannot tell a good pod from a bad one.
                        warn!(pool = %key.name, %why, "the known-answer proof cannot be verified; the pod is let through");
                        None
                    }
                }
            }
        };
        match wrong {
            None => {
                info!(pod = %caller.pod, pool = %caller.pool, "known-answer check passed");
                self.metrics
                    .known_answer_checked(&key.namespace, &key.name, "passed");
                self.verification
                    .checks
                    .passed(&caller.namespace, &caller.pod, Instant::now());
                Ok(answered("Succeeded"))
            }
            Some(why) => {
                self.metrics
                    .known_answer_checked(&key.namespace, &key.name, "failed");
                self.quarantine(&key, &caller.pod, why).await;
                Ok(answered("Failed"))
            }
        }
    }

    /// Counts the rejected proof of `attempt` of job `uid` against `pod`, quarantining the pod
    /// at the pool's limit.
    pub(super) async fn count_rejection(&self, key: &PoolKey, pod: &str, uid: &str, attempt: i32) {
        let Some(quarantine) = self.pool(key).and_then(|p| p.spec.quarantine.clone()) else {
            return;
        };
        let window = Duration::from_secs(quarantine.window_seconds.max(1) as u64);
        let rejected = self.verification.checks.rejected(
            &key.namespace,
            pod,
            (uid, attempt),
            Instant::now(),
            window,
        );
        let limit = quarantine.after_rejected_proofs.max(1) as u32;
        if rejected >= limit {
            let why = format!(
                "{rejected} of its proofs were rejected by verification within {} s, each of a job another pod then proved",
                window.as_secs()
            );
            self.quarantine(key, pod, why).await;
        }
    }

    /// Takes `pod` out of service: no more leases, listed on the pool's status, deleted.
    async fn quarantine(&self, key: &PoolKey, pod: &str, why: String) {
        if !self.verification.checks.quarantine(&key.namespace, pod) {
            return;
        }
        warn!(pool = %key.name, %pod, %why, "pod quarantined");
        self.flag(
            key,
            pod,
            QUARANTINED,
            Some(format!(
                "pod {pod} was quarantined: {why}; it takes no more jobs and was deleted, so the pool replaces it"
            )),
        );
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        if let Err(e) = pods.delete(pod, &DeleteParams::default()).await {
            // It stays out of service here; its leases end when it stops heartbeating.
            warn!(%pod, error = %e, "could not delete the quarantined pod");
        }
    }
}

fn answered(phase: &str) -> CompleteResponse {
    CompleteResponse {
        phase: phase.into(),
        duplicate: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(every_seconds: i32, every_proofs: i32) -> KnownAnswer {
        serde_json::from_value(json!({
            "input": {"inline": {"json": "{\"a\": \"3\"}"}},
            "publicSignals": ["33", "3"],
            "everySeconds": every_seconds, "everyProofs": every_proofs,
        }))
        .unwrap()
    }

    fn issued() -> Arc<Issued> {
        Arc::new(Issued {
            input: zkfleet_contract::lease::JobInput::CircuitInputs {
                inputs: json!({"a": "3"}),
            },
            known: check(0, 0).inputs().remove(0),
        })
    }

    #[test]
    fn a_pod_is_checked_before_its_first_job_and_again_when_due() {
        let checks = Checks::default();
        let now = Instant::now();
        let kat = check(600, 2);
        assert_eq!(
            checks.gate("ns", "p", None, now),
            Gate::Open,
            "no check on the pool"
        );
        assert_eq!(checks.gate("ns", "p", Some(&kat), now), Gate::Check);
        checks.issue("ns", "p", "u1", now + Duration::from_secs(30), issued());
        assert_eq!(checks.gate("ns", "p", Some(&kat), now), Gate::Wait);
        assert_eq!(
            checks.gate("ns", "p", Some(&kat), now + Duration::from_secs(31)),
            Gate::Check,
            "a check never answered is handed out again"
        );
        checks.passed("ns", "p", now);
        assert_eq!(checks.gate("ns", "p", Some(&kat), now), Gate::Open);
        checks.proved("ns", "p");
        assert_eq!(checks.gate("ns", "p", Some(&kat), now), Gate::Open);
        checks.proved("ns", "p");
        assert_eq!(
            checks.gate("ns", "p", Some(&kat), now),
            Gate::Check,
            "after 2 proofs"
        );
        checks.passed("ns", "p", now);
        assert_eq!(
            checks.gate("ns", "p", Some(&kat), now + Duration::from_secs(600)),
            Gate::Check,
            "after everySeconds"
        );
        assert!(checks.quarantine("ns", "p"));
        assert!(!checks.quarantine("ns", "p"), "once");
        assert_eq!(checks.gate("ns", "p", None, now), Gate::Quarantined);
        assert_eq!(
            checks.gate("other", "p", Some(&kat), now),
            Gate::Check,
            "by namespace"
        );
    }

    /// A pod sees a known-answer check as it sees a job: the same fields, a UID of a
    /// Kubernetes UID's shape, a job named like the pool's own jobs in their namespace, and a
    /// trace context.
    #[test]
    fn a_known_answer_lease_has_the_shape_of_a_real_lease() {
        let job: ProofJob = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "rollup-batch-7f2kq", "namespace": "team-a",
                         "uid": "0b6c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"},
            "spec": {"poolRef": {"name": "gpu", "namespace": "fleet"},
                     "input": {"inline": {"json": "{}"}}},
        }))
        .unwrap();
        let pool = PoolKey::new("fleet", "gpu");
        let lease = |uid: String, job: String| LeasedJob {
            lease: LeaseRef {
                uid: uid.clone(),
                attempt: 1,
            },
            job,
            lease_seconds: 30,
            timeout_seconds: 600,
            input: zkfleet_contract::lease::JobInput::CircuitInputs { inputs: json!({}) },
            traceparent: Some(zkfleet_contract::trace::traceparent(&uid, 1)),
        };
        let real = lease(job.uid().unwrap(), "team-a/rollup-batch-7f2kq".into());
        let (uid, name) = disguise(&pool, Some(&job), [7; 21]);
        let check = lease(uid.clone(), name.clone());
        let keys = |l: &LeasedJob| {
            let v = serde_json::to_value(l).unwrap();
            v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(keys(&check), keys(&real));
        let shape = |s: &str| s.split('-').map(str::len).collect::<Vec<_>>();
        assert_eq!(shape(&uid), shape(&real.lease.uid), "{uid}");
        assert_eq!(&uid[14..15], "4", "a version-4 UUID: {uid}");
        assert!(name.starts_with("team-a/rollup-batch-"), "{name}");
        assert_eq!(name.len(), real.job.len(), "{name}");
        assert!(!name.contains("known") && !uid.contains("known"));
        // Two checks never share a UID or a name.
        let (other_uid, other_name) = disguise(&pool, Some(&job), [9; 21]);
        assert_ne!((other_uid, other_name), (uid, name));
        // A pool with no job yet: its own name and namespace.
        let (_, name) = disguise(&pool, None, [7; 21]);
        assert!(name.starts_with("fleet/gpu-"), "{name}");
    }

    #[test]
    fn a_rejection_counts_once_per_attempt_and_decays_after_the_window() {
        let checks = Checks::default();
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let count = |job: &str, attempt: i32, at: Instant| {
            checks.rejected("team", "p1", (job, attempt), at, hour)
        };
        assert_eq!(count("j1", 1, t0), 1);
        // The same attempt reported again (its status write failed, the pod uploaded again).
        assert_eq!(count("j1", 1, t0 + Duration::from_secs(5)), 1);
        assert_eq!(count("j1", 2, t0 + Duration::from_secs(10)), 2);
        assert_eq!(count("j2", 1, t0 + Duration::from_secs(20)), 3);
        // An hour on, the first two no longer count.
        assert_eq!(count("j3", 1, t0 + hour + Duration::from_secs(15)), 2);
        // Another pod's count is its own.
        assert_eq!(checks.rejected("team", "p2", ("j1", 1), t0, hour), 1);
    }

    #[test]
    fn only_the_held_check_is_renewed() {
        let checks = Checks::default();
        let now = Instant::now();
        let uid = "u1".to_string();
        checks.issue("ns", "p", &uid, now, issued());
        let caller = |pod: &str| Caller {
            namespace: "ns".into(),
            pool: "gpu".into(),
            pod: pod.into(),
        };
        let lease = |uid: &str| LeaseRef {
            uid: uid.into(),
            attempt: 1,
        };
        assert!(checks.renew(&caller("p"), &lease(&uid), now + Duration::from_secs(30)));
        assert_eq!(
            checks.gate(
                "ns",
                "p",
                Some(&check(600, 0)),
                now + Duration::from_secs(10)
            ),
            Gate::Wait,
            "renewed"
        );
        assert!(
            !checks.renew(&caller("q"), &lease(&uid), now),
            "another pod"
        );
        assert!(
            !checks.renew(&caller("p"), &lease("known-answer/p/99"), now),
            "an old check"
        );
    }

    #[test]
    fn the_answer_must_match_every_known_value() {
        let kat = check(0, 0).inputs().remove(0);
        assert!(is_known_answer(&kat, &["33".into(), "3".into()], None).is_ok());
        let e = is_known_answer(&kat, &["34".into(), "3".into()], None).unwrap_err();
        assert!(e.contains("34") && e.contains("33"), "{e}");
        let stark: KnownInput = serde_json::from_value(json!({
            "input": {"inline": {"json": "{}"}},
            "publicOutputs": {"stackOutputs": ["8"]},
        }))
        .unwrap();
        let outputs = json!({"programHash": "ab", "stackOutputs": ["8"]});
        assert!(is_known_answer(&stark, &[], Some(&outputs)).is_ok());
        let e = is_known_answer(&stark, &[], Some(&json!({"stackOutputs": ["9"]}))).unwrap_err();
        assert!(e.contains("stackOutputs"), "{e}");
        assert!(is_known_answer(&stark, &[], None).is_err());
        // Nothing written down: the verifier's statement is the whole answer.
        let derived: KnownInput =
            serde_json::from_value(json!({"input": {"inline": {"json": "{}"}}})).unwrap();
        assert!(is_known_answer(&derived, &["1".into()], Some(&json!({}))).is_ok());
    }

    #[test]
    fn every_known_input_is_listed_with_its_own_answer() {
        let kat: KnownAnswer = serde_json::from_value(json!({
            "input": {"inline": {"json": "{\"a\": \"3\"}"}},
            "publicSignals": ["33", "3"],
            "alternatives": [
                {"input": {"inline": {"json": "{\"a\": \"4\"}"}}},
                {"input": {"inline": {"json": "{\"a\": \"5\"}"}}, "publicSignals": ["55", "5"]},
            ],
        }))
        .unwrap();
        let inputs = kat.inputs();
        assert_eq!(inputs.len(), 3);
        assert_eq!(
            inputs[0].public_signals,
            Some(vec!["33".into(), "3".into()])
        );
        assert_eq!(inputs[1].public_signals, None);
        assert_eq!(
            inputs[2].public_signals,
            Some(vec!["55".into(), "5".into()])
        );
    }
}
