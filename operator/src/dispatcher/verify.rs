//! Checking a proof before its job succeeds, against the job's own statement. The pool's
//! verifier Deployment (another process that loads the same parameters and proves nothing)
//! gets the proof with the job's input as it was leased, derives the statement from that input
//! (Groth16 public signals through the circuit's wasm, Miden's input stack, Stone's public
//! input) and refuses a proof of anything else. Groth16 proofs are then checked here as well,
//! with the pool's verifying key, against the signals the verifier derived. Either way, the pod
//! that made the proof never judges it, and what it says it proved is only compared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use serde_json::Value;
use tracing::{debug, info};
use zkfleet_contract::lease::JobInput;
use zkfleet_contract::verify::VerifyResponse;
use zkfleet_crds::v1alpha1::{FlaggedPod, ParametersSpec, ProofJob, ProverPool};

use super::known_answer::Checks;
use super::remote_verify::Question;
use super::state::PoolKey;
use super::{DispatchError, Dispatcher, MAX_FLAGGED_PODS, is_ready, remote_verify, served_version};
use crate::build::{self, POOL_LABEL};
use crate::params::Serving;
use crate::verifying_keys::VerifyingKeys;

/// The dispatcher's judging part, with its own state and locks, apart from the queue: the
/// pools' verifying keys, every pod's known-answer standing and rejected proofs, and the pods
/// flagged for the pools' status. Nothing here holds the queue's lock or writes a job.
pub struct Verification {
    pub(super) keys: VerifyingKeys,
    pub(super) checks: Checks,
    /// Pods whose proofs did not verify, per pool, for the pool's status.
    flagged: Mutex<HashMap<PoolKey, Vec<FlaggedPod>>>,
}

impl Verification {
    pub fn new(client: kube::Client) -> Self {
        Self {
            keys: VerifyingKeys::new(client),
            checks: Checks::default(),
            flagged: Mutex::default(),
        }
    }

    /// Lists `pod` (on `node`) on its pool's `status.flaggedPods`: one entry per pod, the
    /// newest kept, at most [`MAX_FLAGGED_PODS`].
    pub fn flag(
        &self,
        pool: &PoolKey,
        pod: &str,
        node: Option<String>,
        reason: &str,
        message: Option<String>,
    ) {
        let mut flagged = self.flagged.lock().expect("lock");
        let list = flagged.entry(pool.clone()).or_default();
        list.retain(|f| f.pod != pod);
        list.push(FlaggedPod {
            pod: pod.into(),
            node,
            reason: reason.into(),
            message,
            time: Some(Time(Timestamp::now())),
        });
        let excess = list.len().saturating_sub(MAX_FLAGGED_PODS);
        list.drain(..excess);
    }

    /// The pods flagged in `pool`.
    pub fn flagged(&self, pool: &PoolKey) -> Vec<FlaggedPod> {
        self.flagged
            .lock()
            .expect("lock")
            .get(pool)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets pools and pods that no longer exist.
    pub fn retain(
        &self,
        pool_exists: impl Fn(&PoolKey) -> bool,
        pod_exists: impl Fn(&str, &str) -> bool,
    ) {
        self.flagged
            .lock()
            .expect("lock")
            .retain(|k, _| pool_exists(k));
        self.checks.retain(pod_exists);
    }
}

/// `Ok` when the proof verified, else why not.
pub type Verdict = Result<(), String>;

/// A job's proof, judged against the job's own statement.
#[derive(Debug)]
pub struct Checked {
    pub verdict: Verdict,
    /// Who gave the verdict: `operator` (Groth16) or `verifier/<pod>`.
    pub verifier: String,
    /// The statement as the verifier derived it from the job's input.
    pub statement: Option<serde_json::Map<String, Value>>,
    /// The job's input gives no statement at all (signals the circuit does not have, an input
    /// stack that is no stack): the input's fault, so no pod is blamed.
    pub input_rejected: bool,
}

/// Why a proof got no verdict.
#[derive(Debug)]
pub enum NoVerdict {
    /// For now (the API server, the network, the verifier): the pod keeps the result and
    /// uploads it again.
    Unavailable(DispatchError),
    /// The pool's parameters give no usable verifying key (a digest that does not match, no
    /// key file, a file that is no key): no upload will ever be checked until the pool is
    /// fixed, so the attempt fails with what to fix instead of being retried for good.
    Misconfigured(String),
}

impl From<DispatchError> for NoVerdict {
    fn from(e: DispatchError) -> Self {
        NoVerdict::Unavailable(e)
    }
}

impl Dispatcher {
    /// The verdict on a proof made with the pool's parameters `version`, against the statement
    /// derived from `input` (a job's input as it was leased, or a known-answer input), who gave
    /// it, and that statement. No verdict at all is `Unavailable`: the pod keeps the result and
    /// uploads it again.
    pub(super) async fn verdict(
        &self,
        pool: &ProverPool,
        version: &str,
        input: &JobInput,
        proof: &Value,
        public_signals: &[String],
        public_outputs: Option<&Value>,
    ) -> Result<Checked, NoVerdict> {
        let question = Question {
            proof,
            public_signals,
            public_outputs,
            input: Some(input),
        };
        let answer = self.ask_verifier(pool, question).await?;
        let statement = answer
            .statement
            .as_ref()
            .and_then(Value::as_object)
            .cloned();
        let remote = Checked {
            verdict: remote_verdict(&answer),
            verifier: verifier_of(pool, &answer),
            statement,
            input_rejected: answer.input_rejected,
        };
        if remote.verdict.is_err() || remote.input_rejected {
            return Ok(remote);
        }
        let Some(statement) = remote.statement else {
            return Err(NoVerdict::Unavailable(DispatchError::Unavailable(
                "the pool's verifier accepted the proof without deriving its statement (is its image older than the operator?); the result is kept by the pod until it does".into(),
            )));
        };
        if !pool.spec.backend.proves_groth16() {
            return Ok(Checked {
                statement: Some(statement),
                ..remote
            });
        }
        // Groth16: the proof is also checked here, with the pool's key, against the signals
        // the verifier derived (which the prover's claims equal, or it had refused them).
        let derived: Vec<String> = statement
            .get("publicSignals")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let ok = self.verify_groth16(pool, version, proof, &derived).await?;
        Ok(Checked {
            verdict: groth16_verdict(ok),
            verifier: "operator".to_string(),
            statement: Some(statement),
            input_rejected: false,
        })
    }

    /// The parameters version a job's proofs are made with: the one it was leased under.
    pub(super) fn version_of(pool: &ProverPool, job: &ProofJob) -> String {
        job.status
            .as_ref()
            .and_then(|s| s.parameters_version.clone())
            .unwrap_or_else(|| pool.spec.parameters.version.clone())
    }

    async fn verify_groth16(
        &self,
        pool: &ProverPool,
        version: &str,
        proof: &serde_json::Value,
        public_signals: &[String],
    ) -> Result<bool, NoVerdict> {
        let parameters = self.parameters(pool, version).await;
        let verifier = match self.verification.keys.get(pool, &parameters).await {
            Ok(v) => v,
            Err(e) if e.is_unreadable() => self.key_from_pods(pool, &parameters).await?,
            Err(e) if e.is_transient() => {
                return Err(NoVerdict::Unavailable(DispatchError::Unavailable(format!(
                    "the pool's verifying key is not available ({e}); the result is kept by the pod until it is"
                ))));
            }
            Err(e) => return Err(NoVerdict::Misconfigured(e.to_string())),
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

    /// The answer of the pool's verifier: from a Ready pod of the verifier Deployment's own
    /// ReplicaSets, asked at its address, whose answer names it. Pods are tried in turn until
    /// one gives a verdict.
    async fn ask_verifier(
        &self,
        pool: &ProverPool,
        question: Question<'_>,
    ) -> Result<VerifyResponse, DispatchError> {
        let no_verdict = |e: String| {
            DispatchError::Unavailable(format!(
                "the pool's verifier gave no verdict ({e}); the result is kept by the pod until it does"
            ))
        };
        if let Some(url) = &self.settings.verifier_url {
            return remote_verify::verify(url, None, &question)
                .await
                .map_err(no_verdict);
        }
        let pods = self.verifier_pods_of(pool);
        if pods.is_empty() {
            return Err(no_verdict(format!(
                "no Ready pod of Deployment {}",
                build::verifier::verifier_name(pool)
            )));
        }
        let turn = self
            .verifier_turn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..pods.len() {
            let (name, ip) = &pods[(turn + i) % pods.len()];
            let url = format!("http://{ip}:{}", build::PROVER_PORT);
            match remote_verify::verify(&url, Some(name), &question).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    debug!(pod = %name, error = %e, "verifier pod gave no verdict");
                    failures.push(format!("pod {name}: {e}"));
                }
            }
        }
        Err(no_verdict(failures.join("; ")))
    }

    /// Names and addresses of the Ready pods of the pool's verifier Deployment.
    fn verifier_pods_of(&self, pool: &ProverPool) -> Vec<(String, String)> {
        let namespace = pool.namespace().unwrap_or_default();
        let deployment = build::verifier::verifier_name(pool);
        let mut pods: Vec<(String, String)> = self
            .verifier_pods
            .state()
            .into_iter()
            .filter(|p| {
                p.namespace().as_deref() == Some(namespace.as_str())
                    && super::auth::serving(p)
                    && made_by_deployment(p, &deployment)
            })
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                Some((p.name_any(), ip))
            })
            .collect();
        pods.sort();
        pods
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
    /// the operator cannot read itself (PVCs, images): this trusts the pool's own pods for the
    /// key, and no other pod carrying the pool's labels.
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
                    && made_by_pool_deployment(p, pool)
            })
            .collect();
        for pod in candidates {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                continue;
            };
            let port = build::PROVER_PORT as u16;
            match self
                .verification
                .keys
                .get_or_ask_pod(pool, parameters, &ip, port)
                .await
            {
                Ok(v) => return Ok(v),
                Err(e) => debug!(error = %e, pod = %pod.name_any(), "no verifying key from pod"),
            }
        }
        Err(DispatchError::Unavailable(
            "no Ready pod of the pool could give its verifying key; the result is kept by the pod until one can".into(),
        ))
    }
}

fn groth16_verdict(ok: bool) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err("it did not verify against the pool's verifying key".to_string())
    }
}

fn remote_verdict(answer: &VerifyResponse) -> Verdict {
    if answer.valid && !answer.input_rejected {
        Ok(())
    } else {
        Err(answer
            .reason
            .clone()
            .unwrap_or_else(|| "the pool's verifier rejected it".into()))
    }
}

/// `verifier/<pod>`, naming the verifier pod that answered when it said.
fn verifier_of(pool: &ProverPool, answer: &VerifyResponse) -> String {
    format!(
        "verifier/{}",
        answer
            .verifier
            .clone()
            .unwrap_or_else(|| build::verifier::verifier_name(pool))
    )
}

/// Whether `pod` was made by the pool's prover Deployment (through one of its ReplicaSets,
/// named `<deployment>-<template hash>` and controlling the pod): a pod someone created by hand
/// with the pool's labels is not asked for keys, nor given work.
pub fn made_by_pool_deployment(pod: &k8s_openapi::api::core::v1::Pod, pool: &ProverPool) -> bool {
    made_by_deployment(pod, &build::prover_name(pool))
}

/// Whether `pod` was made by Deployment `deployment` of its namespace, through a ReplicaSet.
pub fn made_by_deployment(pod: &k8s_openapi::api::core::v1::Pod, deployment: &str) -> bool {
    let hash = pod.labels().get("pod-template-hash");
    pod.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.kind == "ReplicaSet"
            && o.api_version == "apps/v1"
            && hash.is_some_and(|h| o.name == format!("{deployment}-{h}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_pods_of_the_pools_replica_sets_are_asked_for_keys() {
        let pool: ProverPool = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": "cpu", "namespace": "team"},
            "spec": {"backend": {"type": "groth16-bn254"},
                     "parameters": {"version": "v1", "source": {"pvc": {"claimName": "c"}},
                                    "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]}},
        }))
        .unwrap();
        let rs = format!("{}-5d8f9", build::prover_name(&pool));
        let pod = |owner: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "team",
                             "labels": {"zkfleet.dev/pool": "cpu", "pod-template-hash": "5d8f9"},
                             "ownerReferences": owner},
            }))
            .unwrap()
        };
        let owner = |kind: &str, name: &str, controller: bool| {
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u",
                    "controller": controller}])
        };
        assert!(made_by_pool_deployment(
            &pod(owner("ReplicaSet", &rs, true)),
            &pool
        ));
        assert!(
            !made_by_pool_deployment(&pod(json!([])), &pool),
            "a bare pod"
        );
        assert!(!made_by_pool_deployment(
            &pod(owner("ReplicaSet", "imposter-5d8f9", true)),
            &pool
        ));
        assert!(!made_by_pool_deployment(
            &pod(owner("ReplicaSet", &rs, false)),
            &pool
        ));
        assert!(!made_by_pool_deployment(
            &pod(owner("StatefulSet", &rs, true)),
            &pool
        ));
    }
}
