//! The job pipeline with no cluster: the real dispatcher (its watches, reaper and HTTP router)
//! over an in-memory Kubernetes API ([`zkfleet_fake_api`]), with pools, pods and jobs created
//! as the pool and job controllers would leave them, and the real prover agent in the tests.
//! The real cluster stays the judge of behaviour (`e2e/`); this is for the dispatcher's async
//! steps, its faults and its attackers.
//!
//! A crate of its own so that the operator's crate does not depend on the prover's, not even
//! for its tests (`cargo tree -p zkfleet-operator` shows no zkfleet-prover).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use zkfleet_contract::lease::Caller;
use zkfleet_crds::v1alpha1::{ProofJob, ProverPool};
use zkfleet_fake_api::FakeApi;
use zkfleet_operator::artifacts::ArtifactStore;
use zkfleet_operator::build;
use zkfleet_operator::dispatcher::{Dispatcher, Settings, server};
use zkfleet_operator::metrics::Metrics;

/// The fixtures `prover-pod/fixtures/make-fixtures.sh` makes (`ZKFLEET_FIXTURES`).
pub fn circuit(name: &str) -> PathBuf {
    let dir = std::env::var_os("ZKFLEET_FIXTURES").map(PathBuf::from).expect(
        "test fixtures are missing: run `eval \"$(prover-pod/fixtures/make-fixtures.sh)\"` from the repository root",
    );
    dir.join(name)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The dispatcher's settings in these tests: short leases, so expiry is seen quickly, and the
/// pools' verifier served in this process by [`verifier`]. Call it inside the test's runtime.
pub fn settings() -> Settings {
    Settings {
        lease_duration: Duration::from_secs(30),
        max_wait: Duration::from_secs(5),
        inline_result_max_bytes: 64 << 10,
        verifier_url: Some(verifier()),
    }
}

/// The real Groth16 backend with the mulchain fixture's parameters, loaded once per test binary.
pub fn mulchain_backend() -> Arc<zkfleet_prover::backend::Groth16Backend> {
    use zkfleet_prover::backend::{Groth16Backend, Groth16Files};
    static BACKEND: std::sync::OnceLock<Arc<Groth16Backend>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let dir = circuit("mulchain");
            Groth16Backend::load(&Groth16Files {
                zkey: dir.join("circuit.zkey"),
                zkey_sha256: None,
                wasm: Some(dir.join("circuit.wasm")),
                wasm_sha256: None,
                r1cs: Some(dir.join("circuit.r1cs")),
                r1cs_sha256: None,
                cache_dir: None,
            })
            .expect("the mulchain fixture loads")
        })
        .clone()
}

/// Starts the pools' verifier: the real prover server with the mulchain fixture's parameters
/// loaded, answering `POST /v1/verify` as a pool's verifier Deployment does (it derives each
/// job's public signals from the job's input with the circuit's wasm). Returns its base URL.
pub fn verifier() -> String {
    use zkfleet_prover::server::{AppState, router};
    let backend = mulchain_backend() as Arc<dyn zkfleet_prover::backend::Backend>;
    let state = AppState::new(
        "groth16-bn254",
        "v1".into(),
        2,
        Duration::from_secs(60),
        8 << 20,
    )
    .expect("a verifier's state");
    state.set_params(Ok((backend, String::new())), 0.0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a nonblocking listener");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let listener = tokio::net::TcpListener::from_std(listener).expect("inside a tokio runtime");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    url
}

/// A running dispatcher over a fake API, serving HTTP on loopback.
pub struct Fleet {
    pub api: FakeApi,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    /// `http://127.0.0.1:<port>` of the dispatcher.
    pub url: String,
    pub artifacts: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Fleet {
    pub async fn start(settings: Settings) -> Fleet {
        Self::start_with(settings, true).await
    }

    /// A fleet whose operator has no artifact store (`--artifacts-url` empty) when `store` is
    /// false.
    pub async fn start_with(settings: Settings, store: bool) -> Fleet {
        let api = FakeApi::new();
        let artifacts = tempfile::tempdir().unwrap();
        let store = store.then(|| {
            ArtifactStore::new(&format!("file://{}", artifacts.path().display())).unwrap()
        });
        let metrics = Arc::new(Metrics::new());
        let dispatcher = Dispatcher::new(api.client(), settings, metrics.clone(), store, None);
        let (stop, stopped) = oneshot::channel::<()>();
        let run = dispatcher.clone();
        tokio::spawn(async move {
            run.run(async {
                let _ = stopped.await;
            })
            .await
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = server::router(dispatcher.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let fleet = Fleet {
            api,
            dispatcher,
            metrics,
            url,
            artifacts,
            _stop: stop,
        };
        fleet
            .until("the dispatcher has listed every job", |f| {
                f.dispatcher.is_synced()
            })
            .await;
        fleet
    }

    /// Waits for `ok` to hold, checking every 20 ms; fails the test after 60 s (a cap so a
    /// broken test ends, not a timing assertion).
    pub async fn until(&self, what: &str, mut ok: impl FnMut(&Fleet) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ok(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A Groth16 pool proving `circuit` from the fixtures, its parameters in a ConfigMap (with
    /// the verification key the operator checks proofs with), and its dispatcher token.
    pub fn pool(&self, namespace: &str, name: &str, circuit_name: &str) -> ProverPool {
        let dir = circuit(circuit_name);
        let vk = std::fs::read(dir.join("verification_key.json")).unwrap();
        let zkey = std::fs::read(dir.join("circuit.zkey")).unwrap();
        self.api.create(
            &serde_json::from_value::<ConfigMap>(json!({
                "metadata": {"name": format!("{name}-params"), "namespace": namespace},
                "data": {"verification_key.json": String::from_utf8(vk.clone()).unwrap()},
            }))
            .unwrap(),
        );
        let pool: ProverPool = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backend": {"type": "groth16-bn254"},
                "slotsPerReplica": 2,
                "parameters": {
                    "version": "v1",
                    "source": {"configMap": {"name": format!("{name}-params")}},
                    "files": [
                        {"name": "circuit.zkey", "sha256": sha256_hex(&zkey)},
                        {"name": "verification_key.json", "sha256": sha256_hex(&vk)},
                    ],
                },
            },
        }))
        .unwrap();
        let pool = self.api.create(&pool);
        self.api.create(
            &serde_json::from_value::<Secret>(json!({
                "metadata": {"name": build::token_secret_name(&pool), "namespace": namespace},
                "data": {"token": k8s_openapi::ByteString(token_of(namespace, name).into_bytes())},
            }))
            .unwrap(),
        );
        pool
    }

    /// A Ready pod of the pool's Deployment at 127.0.0.1 (where the tests call from).
    pub fn pod(&self, namespace: &str, pool: &str, name: &str) -> Caller {
        self.api.create(
            &serde_json::from_value::<Pod>(json!({
                "metadata": {
                    "name": name, "namespace": namespace,
                    "labels": {build::POOL_LABEL: pool, "pod-template-hash": "h1"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("{pool}-prover-h1"), "uid": "rs", "controller": true}],
                },
                "spec": {"nodeName": "node-1", "containers": [{"name": "prover", "image": "prover",
                    "env": [{"name": "ZKFLEET_PARAMETERS_VERSION", "value": "v1"}]}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap(),
        );
        Caller {
            namespace: namespace.into(),
            pool: pool.into(),
            pod: name.into(),
        }
    }

    /// A job the job controller admitted: `Queued`, with `input` as its `spec.input`.
    pub fn job(&self, namespace: &str, name: &str, pool: &str, input: Value) -> ProofJob {
        self.job_with(
            namespace,
            name,
            json!({"poolRef": {"name": pool}, "input": input}),
        )
    }

    /// A `Queued` job with the given spec.
    pub fn job_with(&self, namespace: &str, name: &str, spec: Value) -> ProofJob {
        let job: ProofJob = serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
            "status": {"phase": "Queued", "queuedAt": Timestamp::now().to_string()},
        }))
        .unwrap();
        self.api.create(&job)
    }

    /// The job as the API has it now.
    pub fn stored(&self, namespace: &str, name: &str) -> ProofJob {
        self.api.get(namespace, name).expect("the job exists")
    }

    /// The job's phase as the API has it now.
    pub fn phase(&self, namespace: &str, name: &str) -> String {
        self.api
            .get::<ProofJob>(namespace, name)
            .and_then(|j| j.status)
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_default()
    }

    /// How many requests the fake API answered with this method and a path containing `path`.
    pub fn api_calls(&self, method: &str, path: &str) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method.as_str() == method && r.path.contains(path))
            .count()
    }
}

/// The dispatcher token of a pool in these tests.
pub fn token_of(namespace: &str, pool: &str) -> String {
    format!("{:0<40}", format!("token-{namespace}-{pool}-"))
}

/// The circuit inputs of a fixture circuit, as an inline job input.
pub fn inline_inputs(circuit_name: &str) -> Value {
    let text = std::fs::read_to_string(circuit(circuit_name).join("input.json")).unwrap();
    json!({"inline": {"json": text}})
}
