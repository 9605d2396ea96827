//! What the end-to-end tests of pools and jobs share: a namespace with its own operator
//! installed by helm, the circuit parameters of the prover fixtures in a ConfigMap, pools made
//! from them, and waits on pools and their pods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use zkfleet_crds::v1alpha1::ProverPool;

use crate::TestNamespace;
use crate::helm::{Release, install_operator};

pub const MINUTE: Duration = Duration::from_secs(60);
/// Label the operator puts on every prover pod, naming its pool.
pub const POOL_LABEL: &str = "zkfleet.dev/pool";

/// The test's namespace and its operator. The release is dropped (uninstalled) before the
/// namespace is deleted.
pub struct Setup {
    pub release: Release,
    pub ns: TestNamespace,
}

/// A namespace with its own operator; `values` (YAML) on top of the chart's defaults.
pub async fn setup(prefix: &str, values: &str) -> Setup {
    let dir = fixtures();
    assert!(
        dir.join("circuit.zkey").is_file(),
        "{} has no circuit.zkey",
        dir.display()
    );
    let ns = TestNamespace::new(prefix).await.unwrap();
    let release = install_operator(&ns, values).await.unwrap();
    Setup { release, ns }
}

/// The mulchain circuit of the prover fixtures.
pub fn fixtures() -> PathBuf {
    let Some(root) = std::env::var_os("ZKFLEET_FIXTURES") else {
        panic!(
            "ZKFLEET_FIXTURES is not set: run `eval \"$(prover-pod/fixtures/make-fixtures.sh)\"` \
             first (`make e2e` does), so the pools have circuit parameters to load"
        );
    };
    PathBuf::from(root).join("mulchain")
}

/// One parameters set: a ConfigMap holding files of the mulchain fixture, and the sha256 the
/// pool declares for each (the real one unless a test breaks it).
pub struct Parameters {
    pub version: String,
    pub config_map: String,
    pub files: Vec<(String, String)>,
}

impl Parameters {
    /// Creates ConfigMap `config_map` with `names` from the mulchain fixture.
    pub async fn create(
        ns: &TestNamespace,
        version: &str,
        config_map: &str,
        names: &[&str],
    ) -> Self {
        let mut data = BTreeMap::new();
        let mut files = Vec::new();
        for name in names {
            let path = fixtures().join(name);
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            files.push((name.to_string(), hex(&Sha256::digest(&bytes))));
            data.insert(name.to_string(), ByteString(bytes));
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(config_map.into()),
                ..ObjectMeta::default()
            },
            binary_data: Some(data),
            ..ConfigMap::default()
        };
        ns.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        Self {
            version: version.into(),
            config_map: config_map.into(),
            files,
        }
    }

    pub fn spec(&self) -> serde_json::Value {
        json!({
            "version": self.version,
            "source": {"configMap": {"name": self.config_map}},
            "files": self.files.iter()
                .map(|(name, sha256)| json!({"name": name, "sha256": sha256}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Creates a groth16 pool of `replicas` pods, with `gpus` GPUs each when given.
pub async fn create_pool(
    ns: &TestNamespace,
    name: &str,
    replicas: i32,
    gpus: Option<i32>,
    parameters: &Parameters,
) -> ProverPool {
    let mut extra = json!({});
    if let Some(count) = gpus {
        extra["gpu"] = json!({"count": count});
    }
    create_pool_with(ns, name, replicas, parameters, extra).await
}

/// Creates a groth16 pool of `replicas` pods; `extra` (a JSON object) is merged over the spec.
pub async fn create_pool_with(
    ns: &TestNamespace,
    name: &str,
    replicas: i32,
    parameters: &Parameters,
    extra: serde_json::Value,
) -> ProverPool {
    let mut spec = json!({
        "replicas": replicas,
        "backend": {"type": "groth16-bn254"},
        "parameters": parameters.spec(),
        // Short drains keep pod deletion, and so rotations, quick.
        "jobDefaults": {"timeoutSeconds": 10},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    let pool: ProverPool = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1",
        "kind": "ProverPool",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    ns.api::<ProverPool>()
        .create(&PostParams::default(), &pool)
        .await
        .unwrap()
}

/// Status and reason of a pool condition.
pub fn condition(pool: &ProverPool, type_: &str) -> Option<(String, String, String)> {
    let c = pool
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn condition_is(pool: &ProverPool, type_: &str, status: &str) -> bool {
    condition(pool, type_).is_some_and(|(s, _, _)| s == status)
}

pub fn ready_replicas(pool: &ProverPool) -> i32 {
    pool.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// The pool is fully up: `replicas` pods ready on its current parameters, every condition
/// saying so, and the status written for the current generation.
pub fn serving(pool: &ProverPool, replicas: i32) -> bool {
    let status = pool.status.as_ref();
    status.and_then(|s| s.observed_generation) == pool.metadata.generation
        && ready_replicas(pool) == replicas
        && status.and_then(|s| s.replicas) == Some(replicas)
        && condition_is(pool, "Ready", "True")
        && condition_is(pool, "ParametersReady", "True")
        && condition_is(pool, "CapacityAvailable", "True")
        && condition_is(pool, "Progressing", "False")
}

pub async fn wait_serving(ns: &TestNamespace, pool: &str, replicas: i32) -> ProverPool {
    ns.wait_for::<ProverPool>(
        pool,
        &format!(
            "{replicas} ready replicas with Ready, ParametersReady and CapacityAvailable True"
        ),
        3 * MINUTE,
        move |p| serving(p, replicas),
    )
    .await
    .unwrap()
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_env(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// Waits until the pool's pods (terminating ones included) satisfy `condition`; on timeout the
/// error shows the pods and the namespace's diagnostic report.
pub async fn wait_for_pods(
    ns: &TestNamespace,
    pool: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let selector = format!("{POOL_LABEL}={pool}");
    let mut events = Box::pin(watcher(
        ns.api::<Pod>(),
        watcher::Config::default().labels(&selector),
    ));
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    let mut initializing = BTreeMap::new();
    let mut listed = false;
    let waited = tokio::time::timeout(timeout, async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => initializing.clear(),
                Ok(watcher::Event::InitApply(p)) => {
                    initializing.insert(p.name_any(), p);
                }
                Ok(watcher::Event::InitDone) => {
                    pods = std::mem::take(&mut initializing);
                    listed = true;
                }
                Ok(watcher::Event::Apply(p)) => {
                    pods.insert(p.name_any(), p);
                }
                Ok(watcher::Event::Delete(p)) => {
                    pods.remove(&p.name_any());
                }
                // The watcher retries by itself.
                Err(_) => continue,
            }
            let current: Vec<Pod> = pods.values().cloned().collect();
            if listed && condition(&current) {
                return current;
            }
        }
        unreachable!("a watcher stream does not end")
    })
    .await;
    match waited {
        Ok(pods) => pods,
        Err(_) => {
            let list = ns
                .api::<Pod>()
                .list(&ListParams::default().labels(&selector))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            panic!(
                "timed out after {timeout:?} waiting for the pods of pool {pool}: {what}\n{}",
                ns.report(Some(&list)).await
            )
        }
    }
}

/// Every pod serves parameters `version`, `count` of them, all ready.
pub fn all_ready_on(pods: &[Pod], version: &str, count: usize) -> bool {
    pods.len() == count
        && pods.iter().all(|p| {
            p.metadata.deletion_timestamp.is_none()
                && pod_ready(p)
                && pod_env(p, "ZKFLEET_PARAMETERS_VERSION").as_deref() == Some(version)
        })
}

pub async fn scale(ns: &TestNamespace, pool: &str, replicas: i32) {
    ns.api::<ProverPool>()
        .patch_scale(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

pub async fn set_parameters(ns: &TestNamespace, pool: &str, parameters: &Parameters) {
    ns.api::<ProverPool>()
        .patch(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parameters": parameters.spec()}})),
        )
        .await
        .unwrap();
}

pub fn deployment_name(pool: &str) -> String {
    format!("{pool}-prover")
}

/// Starts a pod from the pool's own pod template, with `fault` injected, made by a ReplicaSet of
/// its own named like the pool's (outside its Deployment): one bad machine among good ones.
pub async fn start_faulty_pod(ns: &TestNamespace, pool: &str, fault: &str) -> String {
    let deployment = ns
        .wait_for::<Deployment>(
            &deployment_name(pool),
            "the pool's Deployment",
            MINUTE,
            |_| true,
        )
        .await
        .unwrap();
    let mut spec: PodSpec = deployment.spec.unwrap().template.spec.unwrap();
    spec.containers[0]
        .env
        .get_or_insert_with(Vec::new)
        .push(EnvVar {
            name: "ZKFLEET_FAULT_INJECTION".into(),
            value: Some(fault.into()),
            value_from: None,
        });
    // A ReplicaSet of its own, named as the Deployment's are (`<deployment>-<hash>`): the
    // dispatcher leases only to pods of the pool's ReplicaSets. Its object labels do not
    // match the Deployment's selector, so the Deployment never adopts (and scales away) it.
    let hash = "faulty";
    let labels: BTreeMap<String, String> = [
        (POOL_LABEL.to_string(), pool.to_string()),
        ("pod-template-hash".to_string(), hash.to_string()),
    ]
    .into();
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("{}-{hash}", deployment_name(pool)),
                     "labels": {"zkfleet.dev/e2e": "faulty-prover"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": spec}},
    }))
    .unwrap();
    ns.api::<ReplicaSet>()
        .create(&PostParams::default(), &replica_set)
        .await
        .unwrap();
    let selector = format!("{POOL_LABEL}={pool},pod-template-hash={hash}");
    for _ in 0..600 {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        if let Some(pod) = pods.items.first() {
            return pod.name_any();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the faulty ReplicaSet of pool {pool} made no pod");
}

/// Where the kubelet keeps an emptyDir volume of a pod on this node.
pub fn empty_dir(pod: &Pod, volume: &str) -> PathBuf {
    PathBuf::from("/var/lib/kubelet/pods")
        .join(pod.uid().unwrap())
        .join("volumes/kubernetes.io~empty-dir")
        .join(volume)
}

/// The pod holding the leader Lease of the operator `release`.
pub async fn leader(ns: &TestNamespace, release: &str) -> String {
    let lease = ns
        .api::<k8s_openapi::api::coordination::v1::Lease>()
        .get(release)
        .await
        .unwrap();
    lease.spec.and_then(|s| s.holder_identity).unwrap()
}

/// Where a proof stored at `location` by the default artifact store (`file://` in the
/// operator's emptyDir) is on this node: in the leader's emptyDir.
pub async fn stored_artifact(ns: &TestNamespace, release: &Release, location: &str) -> PathBuf {
    let path = location
        .strip_prefix("file:///var/lib/zkfleet/artifacts/")
        .expect("in the operator's artifact directory");
    let pod = ns
        .api::<Pod>()
        .get(&leader(ns, &release.operator).await)
        .await
        .unwrap();
    empty_dir(&pod, "artifacts").join(path)
}

/// Waits until the job is Succeeded or Failed.
pub async fn wait_job_finished(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
) -> zkfleet_crds::v1alpha1::ProofJob {
    ns.wait_for::<zkfleet_crds::v1alpha1::ProofJob>(name, "Succeeded or Failed", timeout, |j| {
        j.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(zkfleet_crds::v1alpha1::JobPhase::is_finished)
    })
    .await
    .unwrap()
}

/// The mulchain fixture's circuit inputs, inline, as a ProofJob's `spec.input`.
pub fn mulchain_input() -> serde_json::Value {
    let inputs = std::fs::read_to_string(fixtures().join("input.json")).unwrap();
    json!({"inline": {"json": inputs}})
}

/// ProofJob `name` proving the mulchain fixture's inputs; `spec` (a JSON object: `poolRef`
/// and any other fields, `input` too) is merged over that input.
pub fn mulchain_job(name: &str, spec: serde_json::Value) -> zkfleet_crds::v1alpha1::ProofJob {
    let mut merged = json!({"input": mulchain_input()});
    for (key, value) in spec.as_object().into_iter().flatten() {
        merged[key] = value.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": name},
        "spec": merged,
    }))
    .unwrap()
}

/// Submits ProofJob `name` to `pool` with the mulchain fixture's circuit inputs inline.
pub async fn submit_mulchain_job(
    ns: &TestNamespace,
    name: &str,
    pool: &str,
) -> zkfleet_crds::v1alpha1::ProofJob {
    let job = mulchain_job(name, json!({"poolRef": {"name": pool}}));
    ns.api::<zkfleet_crds::v1alpha1::ProofJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap()
}

/// Submits ProofJob `name` to `pool` (mulchain inputs inline), waits until it finishes, and
/// returns its status after checking it succeeded.
pub async fn prove_mulchain_job(
    ns: &TestNamespace,
    name: &str,
    pool: &str,
) -> zkfleet_crds::v1alpha1::ProofJobStatus {
    submit_mulchain_job(ns, name, pool).await;
    let status = wait_job_finished(ns, name, 3 * MINUTE)
        .await
        .status
        .unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(zkfleet_crds::v1alpha1::JobPhase::Succeeded),
        "{name}: {:?}",
        status.message
    );
    status
}

/// The pods of the job's attempts that ended with `outcome`.
pub fn attempts_with(
    job: &zkfleet_crds::v1alpha1::ProofJob,
    outcome: zkfleet_crds::v1alpha1::AttemptOutcome,
) -> Vec<String> {
    job.status
        .iter()
        .flat_map(|s| &s.attempts)
        .filter(|a| a.outcome == Some(outcome))
        .filter_map(|a| a.pod.clone())
        .collect()
}

/// Waits until an attempt of job `name` was rejected, and checks it was rejected as a proof of
/// another statement than the job's own (what a pod that mixes up jobs, or lies, sends).
pub async fn wait_rejected_as_another_statement(ns: &TestNamespace, name: &str) {
    use zkfleet_crds::v1alpha1::{AttemptOutcome, ProofJob};
    let rejected = |j: &ProofJob| {
        j.status
            .iter()
            .flat_map(|s| &s.attempts)
            .find(|a| a.outcome == Some(AttemptOutcome::VerificationFailed))
            .cloned()
    };
    let job = ns
        .wait_for::<ProofJob>(name, "a proof rejected", 3 * MINUTE, |j| {
            rejected(j).is_some()
        })
        .await
        .unwrap();
    let message = rejected(&job).and_then(|a| a.message).unwrap_or_default();
    assert!(message.contains("another statement"), "{name}: {message}");
}

/// Waits until the job finishes and checks it succeeded with a verified proof.
pub async fn wait_verified(ns: &TestNamespace, name: &str) -> zkfleet_crds::v1alpha1::ProofJob {
    let job = wait_job_finished(ns, name, 3 * MINUTE).await;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(zkfleet_crds::v1alpha1::JobPhase::Succeeded),
        "{name}: {:?}",
        status.message
    );
    assert!(
        status.verification.as_ref().is_some_and(|v| v.verified),
        "{name}: its proof was verified"
    );
    job
}

/// A plain HTTP/1.1 GET of `path` from `address` (host:port); the status code and body.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    http_answer(&answer)
}

/// The status code and body of a raw HTTP/1.1 answer.
pub fn http_answer(answer: &str) -> (u16, String) {
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The IP address of the pod of `setup`'s operator that leads.
pub async fn leader_ip(setup: &Setup) -> String {
    let pod: Pod = setup
        .ns
        .api()
        .get(&leader(&setup.ns, &setup.release.operator).await)
        .await
        .unwrap();
    pod.status
        .and_then(|s| s.pod_ip)
        .expect("the leader has an IP")
}

/// What `snarkjs groth16 verify` (a verifier nobody here wrote) says of a proof of the mulchain
/// fixture circuit with these public signals: `Ok` when it accepts, else its output.
pub fn snarkjs_verifies(
    proof: &serde_json::Value,
    public_signals: &[String],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (proof_file, public) = (
        dir.path().join("proof.json"),
        dir.path().join("public.json"),
    );
    std::fs::write(&proof_file, proof.to_string()).unwrap();
    std::fs::write(&public, serde_json::to_vec(public_signals).unwrap()).unwrap();
    let root = std::env::var_os("ZKFLEET_FIXTURES").expect("ZKFLEET_FIXTURES is set");
    let out = std::process::Command::new(PathBuf::from(root).join("bin").join("snarkjs"))
        .args(["groth16", "verify"])
        .arg(fixtures().join("verification_key.json"))
        .arg(&public)
        .arg(&proof_file)
        .output()
        .expect("snarkjs runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Starts a pod made by hand (no controller) with `labels` and `annotations`, serving the
/// text `answer` to every HTTP request on port 8080, and waits until it is Ready: a pod
/// impersonating one of zkfleet's, for the adversarial tests.
pub async fn start_impostor_pod(
    ns: &TestNamespace,
    name: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    answer: &str,
) {
    let config_map = format!("{name}-answer");
    ns.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": config_map},
                "data": {"answer": answer},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "prover", "image": crate::image("e2e-testserver"),
                                 "imagePullPolicy": "IfNotPresent",
                                 "args": ["serve", "8080", "/answer/answer"],
                                 "volumeMounts": [{"name": "answer", "mountPath": "/answer"}]}],
                 "volumes": [{"name": "answer", "configMap": {"name": config_map}}]},
    }))
    .unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    ns.wait_for::<Pod>(name, "the hand-made pod to be Ready", MINUTE, pod_ready)
        .await
        .unwrap();
}
