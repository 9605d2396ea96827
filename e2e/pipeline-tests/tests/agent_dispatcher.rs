//! The real prover agent (`zkfleet_prover::agent`, proving the mulchain fixture with the real
//! Groth16 backend) against the real dispatcher over an in-memory Kubernetes API: what a user
//! sees on the ProofJob when a pod proves a job, when its proof is a lie, when the job is
//! deleted under it, when the API server refuses to record its result for a while, and when
//! the pod drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use zkfleet_contract::lease::Caller;
use zkfleet_crds::v1alpha1::{Attempt, AttemptOutcome, ProofJob, ProofJobStatus};
use zkfleet_fake_api::Rule;
use zkfleet_operator::dispatcher::Settings;
use zkfleet_prover::agent::Agent;
use zkfleet_prover::backend::Backend;
use zkfleet_prover::config::{AgentConfig, Faults};
use zkfleet_prover::server::AppState;

use zkfleet_pipeline_tests::{Fleet, circuit, inline_inputs, settings, sha256_hex, token_of};

const NS: &str = "team";
const POOL: &str = "cpu";
const CIRCUIT: &str = "mulchain";

/// The pod's counter of proofs whose upload the dispatcher acknowledged.
const ACKNOWLEDGED_PROOFS: &str =
    "zkfleet_prover_result_uploads_total{outcome=\"acknowledged\",result=\"proved\"}";
/// The upload counter's samples after one proof was acknowledged and nothing else reported.
const ONE_PROOF_ACKNOWLEDGED: &str = "{outcome=\"acknowledged\",result=\"proved\"} 1";

/// The mulchain backend and the digest it reports, loaded once for every test.
fn backend() -> (Arc<dyn Backend>, String) {
    let loaded = zkfleet_pipeline_tests::mulchain_backend();
    let digest = format!("sha256:{}", loaded.report.digest);
    (loaded as Arc<dyn Backend>, digest)
}

/// A prover pod of the pool: the pod object the dispatcher checks callers against, and the
/// agent of `zkfleet-prover` running in this process with the mulchain parameters loaded.
struct ProverPod {
    caller: Caller,
    state: Arc<AppState>,
    agent: tokio::task::JoinHandle<()>,
    _token_file: tempfile::NamedTempFile,
}

impl ProverPod {
    /// A Ready pod named `name` with `slots` proof slots, whose agent leases from the fleet's
    /// dispatcher with the pool's token.
    fn start(fleet: &Fleet, name: &str, slots: usize, faults: Faults) -> ProverPod {
        let caller = fleet.pod(NS, POOL, name);
        let state = AppState::new(
            "groth16-bn254",
            "v1".into(),
            slots,
            Duration::from_secs(600),
            1 << 20,
        )
        .unwrap();
        state.set_params(Ok(backend()), 0.0);
        let token_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token_file.path(), token_of(NS, POOL)).unwrap();
        let agent = Agent::new(
            AgentConfig {
                dispatcher_url: fleet.url.clone(),
                caller: caller.clone(),
                token_file: token_file.path().into(),
                lease_wait_seconds: 30,
                faults,
            },
            state.clone(),
        )
        .unwrap();
        ProverPod {
            caller,
            state,
            agent: tokio::spawn(agent.run()),
            _token_file: token_file,
        }
    }

    fn name(&self) -> &str {
        &self.caller.pod
    }

    /// SIGTERM's part: drain, then wait for the agent to finish what it holds and stop.
    async fn drain(self) -> Arc<AppState> {
        self.state.start_draining();
        tokio::time::timeout(Duration::from_secs(60), self.agent)
            .await
            .expect("the agent finishes draining within a minute")
            .unwrap();
        self.state
    }

    /// A sample's value in the pod's /metrics text (0 when absent).
    fn metric(&self, sample: &str) -> f64 {
        self.state
            .metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the pod has read the dispatcher's acknowledgement of `n` proofs: it reads
    /// it after the dispatcher wrote the job's status.
    async fn until_acknowledged(&self, fleet: &Fleet, n: usize) {
        fleet
            .until("the pod counts the acknowledged uploads", |_| {
                self.metric(ACKNOWLEDGED_PROOFS) == n as f64
            })
            .await;
    }

    /// Every sample of the result uploads counter, as `{labels} value` lines.
    fn uploads(&self) -> Vec<String> {
        self.state
            .metrics
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("zkfleet_prover_result_uploads_total"))
            .map(str::to_string)
            .collect()
    }
}

/// Where a job's input is downloaded from, standing in for an object store that answers only
/// when the test says so: a job reading its input from here stays in its pod's hands, mid-way
/// through its proof, for as long as a test needs. Plain http on loopback: a cluster's CRD
/// schema only takes https and object store URLs, but the fake API applies no schema and the
/// pod downloads over either.
struct HeldInput {
    url: String,
    sha256: String,
    served: Arc<Served>,
}

/// What the input server saw, and the switch that lets its downloads finish.
#[derive(Default)]
struct Served {
    /// Downloads begun.
    requests: AtomicUsize,
    /// Downloads the pod hung up on before they were answered.
    abandoned: AtomicUsize,
    release: watch::Sender<bool>,
    body: Vec<u8>,
}

/// Counts a download as abandoned when its handler is dropped before it answered (the client
/// hung up).
struct Answering<'a> {
    served: &'a Served,
    answered: bool,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.served.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn held_download(State(served): State<Arc<Served>>) -> Vec<u8> {
    served.requests.fetch_add(1, Ordering::SeqCst);
    let mut answering = Answering {
        served: &served,
        answered: false,
    };
    let _ = served.release.subscribe().wait_for(|r| *r).await;
    answering.answered = true;
    served.body.clone()
}

impl HeldInput {
    /// Serves the fixture circuit's inputs on loopback, holding every download until
    /// [`HeldInput::release`].
    async fn serve() -> HeldInput {
        let body = std::fs::read(circuit(CIRCUIT).join("input.json")).unwrap();
        let served = Arc::new(Served {
            body,
            ..Served::default()
        });
        let app = axum::Router::new()
            .route("/inputs/input.json", get(held_download))
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/inputs/input.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        HeldInput {
            url,
            sha256: sha256_hex(&served.body),
            served,
        }
    }

    /// The job's `spec.input`.
    fn input(&self) -> Value {
        json!({"url": self.url, "sha256": self.sha256})
    }

    fn requests(&self) -> usize {
        self.served.requests.load(Ordering::SeqCst)
    }

    fn abandoned(&self) -> usize {
        self.served.abandoned.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.served.release.send_replace(true);
    }
}

fn status(fleet: &Fleet, job: &str) -> ProofJobStatus {
    fleet.stored(NS, job).status.unwrap_or_default()
}

/// The attempts on the job's status as (pod, outcome).
fn attempts(fleet: &Fleet, job: &str) -> Vec<(String, Option<AttemptOutcome>)> {
    status(fleet, job)
        .attempts
        .iter()
        .map(|a: &Attempt| (a.pod.clone().unwrap_or_default(), a.outcome))
        .collect()
}

/// Status writes of the job the API server answered with `code`.
fn status_writes(fleet: &Fleet, job: &str, code: u16) -> usize {
    let path = format!("/proofjobs/{job}/status");
    fleet
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&path) && r.status == code)
        .count()
}

/// Runs the fixtures' snarkjs (a verifier nobody here wrote); true when it prints OK.
fn snarkjs_verifies(proof: &Value, public_signals: &[String]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let proof_file = dir.path().join("proof.json");
    let public_file = dir.path().join("public.json");
    std::fs::write(&proof_file, proof.to_string()).unwrap();
    std::fs::write(&public_file, json!(public_signals).to_string()).unwrap();
    let fixtures = std::env::var_os("ZKFLEET_FIXTURES").expect("ZKFLEET_FIXTURES is set");
    let out = std::process::Command::new(std::path::Path::new(&fixtures).join("bin/snarkjs"))
        .args(["groth16", "verify"])
        .arg(circuit(CIRCUIT).join("verification_key.json"))
        .arg(&public_file)
        .arg(&proof_file)
        .output()
        .expect("run snarkjs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("OK!"), text)
}

fn corrupt_proofs() -> Faults {
    Faults {
        corrupt_proofs: true,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_proved_by_a_pod_and_verified_by_the_operator() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let pod = ProverPod::start(&fleet, "prover-a", 1, Faults::default());
    fleet.job(NS, "product", POOL, inline_inputs(CIRCUIT));

    fleet
        .until("the job succeeds", |f| {
            f.phase(NS, "product") == "Succeeded"
        })
        .await;
    let status = status(&fleet, "product");
    let result = status.result.clone().expect("the result is on the status");
    let proof = Value::Object(result.proof.expect("the proof is on the status"));
    let public = result
        .public_signals
        .expect("the public signals are on the status");
    assert!(!public.is_empty());
    let verification = status.verification.clone().unwrap();
    assert!(verification.verified && !verification.skipped);
    assert_eq!(verification.verifier.as_deref(), Some("operator"));
    assert_eq!(
        attempts(&fleet, "product"),
        [(pod.name().to_string(), Some(AttemptOutcome::Succeeded))]
    );
    assert_eq!(status.parameters_version.as_deref(), Some("v1"));
    assert_eq!(status.parameters_digest, Some(backend().1));

    let (verified, output) = snarkjs_verifies(&proof, &public);
    assert!(
        verified,
        "snarkjs rejects the proof on the status: {output}"
    );
    pod.until_acknowledged(&fleet, 1).await;
    assert_eq!(pod.uploads(), [ONE_PROOF_ACKNOWLEDGED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_that_does_not_verify_flags_its_pod_and_the_job_succeeds_on_another() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let liar = ProverPod::start(&fleet, "prover-liar", 1, corrupt_proofs());
    fleet.job(NS, "product", POOL, inline_inputs(CIRCUIT));

    fleet
        .until("the lying pod's attempt is rejected", |f| {
            !attempts(f, "product").is_empty() && f.phase(NS, "product") == "Queued"
        })
        .await;
    assert_eq!(
        attempts(&fleet, "product"),
        [(
            liar.name().to_string(),
            Some(AttemptOutcome::VerificationFailed)
        )]
    );
    assert_eq!(
        status(&fleet, "product").reason.as_deref(),
        Some("ProofRejected")
    );
    // One rejection does not tell the pod from the input: nobody is flagged yet.
    assert_eq!(fleet.dispatcher.flagged(NS, POOL), []);

    // The lying pod keeps asking for work; the job goes to the honest one, and that isolates
    // the liar.
    let honest = ProverPod::start(&fleet, "prover-honest", 1, Faults::default());
    fleet
        .until("the job succeeds", |f| {
            f.phase(NS, "product") == "Succeeded"
        })
        .await;
    let flagged = fleet.dispatcher.flagged(NS, POOL);
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].pod, liar.name());
    assert_eq!(flagged[0].reason, "VerificationFailed");
    assert_eq!(flagged[0].node.as_deref(), Some("node-1"));
    assert_eq!(
        attempts(&fleet, "product"),
        [
            (
                liar.name().to_string(),
                Some(AttemptOutcome::VerificationFailed)
            ),
            (honest.name().to_string(), Some(AttemptOutcome::Succeeded)),
        ]
    );
    let status = status(&fleet, "product");
    assert!(status.verification.unwrap().verified);
    // Both attempts used CPU; the job shows the successful one's, and the sum of both.
    let cpu: Vec<i64> = status
        .attempts
        .iter()
        .map(|a| {
            a.cpu_millis
                .expect("each pod reported its attempt's CPU time")
        })
        .collect();
    let usage = status.usage.expect("the job shows its usage");
    assert!(cpu[1] > 0, "{cpu:?}");
    assert_eq!(usage.cpu_millis, Some(cpu[1]));
    assert_eq!(usage.total_cpu_millis, cpu[0] + cpu[1]);
    // No GPUs in this pool, and no prices.
    assert_eq!((usage.gpu_millis, usage.total_cost), (Some(0), None));
}

/// A job for circuit inputs `a`, `b` of the mulchain fixture.
fn inputs_ab(a: u32, b: u32) -> Value {
    json!({"inline": {"json": json!({"a": a.to_string(), "b": b.to_string()}).to_string()}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_proof_of_another_jobs_statement_is_rejected_and_the_job_gets_its_own() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let liar = ProverPod::start(
        &fleet,
        "prover-liar",
        1,
        Faults {
            wrong_statement: true,
            ..Faults::default()
        },
    );
    // Its first proof is honest ...
    fleet.job(NS, "first", POOL, inputs_ab(3, 5));
    fleet
        .until("the first job succeeds", |f| {
            f.phase(NS, "first") == "Succeeded"
        })
        .await;
    let first = status(&fleet, "first").result.unwrap().public_signals;
    // ... and it answers the next job with that same, valid proof.
    fleet.job(NS, "second", POOL, inputs_ab(7, 11));
    fleet
        .until("the liar's answer is rejected", |f| {
            !attempts(f, "second").is_empty() && f.phase(NS, "second") == "Queued"
        })
        .await;
    let rejected = status(&fleet, "second");
    let message = rejected.attempts[0].message.clone().unwrap_or_default();
    assert!(message.contains("another statement"), "{message}");
    let honest = ProverPod::start(&fleet, "prover-honest", 1, Faults::default());
    fleet
        .until("the second job succeeds", |f| {
            f.phase(NS, "second") == "Succeeded"
        })
        .await;
    let done = status(&fleet, "second");
    assert_eq!(
        done.attempts.last().unwrap().pod.as_deref(),
        Some(honest.name())
    );
    let own = done.result.unwrap().public_signals.unwrap();
    assert_ne!(Some(&own), first.as_ref());
    // The statement on the status is the one derived from the job's input (whose public
    // input `a` is 7).
    let statement = done.verification.unwrap().statement.unwrap();
    assert_eq!(statement["publicSignals"], json!(own));
    assert_eq!(own.last().map(String::as_str), Some("7"));
    let (ok, out) = snarkjs_verifies(&done_proof(&fleet, "second"), &own);
    assert!(ok, "snarkjs: {out}");
    let flagged = fleet.dispatcher.flagged(NS, POOL);
    assert_eq!(
        flagged.iter().map(|f| f.pod.as_str()).collect::<Vec<_>>(),
        [liar.name()]
    );
}

/// The proof on a succeeded job's status.
fn done_proof(fleet: &Fleet, job: &str) -> Value {
    let proof = status(fleet, job).result.unwrap().proof.unwrap();
    serde_json::to_value(proof).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_breaks_the_circuit_fails_input_rejected_and_blames_no_pod() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let _a = ProverPod::start(&fleet, "prover-a", 1, Faults::default());
    let _b = ProverPod::start(&fleet, "prover-b", 1, Faults::default());
    // The fixture's witness, right length and w[0] = 1, with its last (internal) value changed.
    let mut wtns = std::fs::read(circuit(CIRCUIT).join("witness.wtns")).unwrap();
    let at = wtns.len() - 32;
    wtns[at] ^= 1;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wtns);
    fleet.job(
        NS,
        "broken",
        POOL,
        json!({"format": "witness", "inline": {"base64": b64}}),
    );
    fleet
        .until("the job fails", |f| f.phase(NS, "broken") == "Failed")
        .await;
    let s = status(&fleet, "broken");
    assert_eq!(
        s.reason.as_deref(),
        Some("InputRejected"),
        "{:?}",
        s.message
    );
    // The pods have the circuit's r1cs: the first refuses the witness before proving it, so
    // no proof is spent and the job is not tried on another pod.
    assert_eq!(s.attempts.len(), 1, "{:?}", s.attempts);
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains("does not satisfy the circuit: constraint #"),
        "{message}"
    );
    assert_eq!(fleet.dispatcher.flagged(NS, POOL), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_stops_its_proof_and_frees_the_pods_slot() {
    // Pods learn of a revoked lease at their next heartbeat, every third of a lease: with 6 s
    // leases, within 2 s.
    let fleet = Fleet::start(Settings {
        lease_duration: Duration::from_secs(6),
        ..settings()
    })
    .await;
    fleet.pool(NS, POOL, CIRCUIT);
    let input = HeldInput::serve().await;
    let pod = ProverPod::start(&fleet, "prover-a", 1, Faults::default());
    fleet.job(NS, "doomed", POOL, input.input());
    fleet
        .until("the pod is working on the job", |f| {
            f.phase(NS, "doomed") == "Running" && input.requests() == 1
        })
        .await;
    assert_eq!(pod.metric("zkfleet_prover_free_slots"), 0.0);

    Api::<ProofJob>::namespaced(fleet.api.client(), NS)
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    fleet
        .until("the pod abandons the deleted job's work", |_| {
            input.abandoned() == 1
                && pod.metric("zkfleet_prover_lease_revocations_total") == 1.0
                && pod.metric("zkfleet_prover_free_slots") == 1.0
        })
        .await;

    // Its only slot is free: the pod takes the next job.
    fleet.job(NS, "next", POOL, inline_inputs(CIRCUIT));
    fleet
        .until("the next job succeeds", |f| {
            f.phase(NS, "next") == "Succeeded"
        })
        .await;
    assert_eq!(
        attempts(&fleet, "next"),
        [(pod.name().to_string(), Some(AttemptOutcome::Succeeded))]
    );
    // Nothing was reported for the deleted job: one upload in all, the next job's, and the
    // deleted job's status was written once, when it was leased.
    pod.until_acknowledged(&fleet, 1).await;
    assert_eq!(pod.uploads(), [ONE_PROOF_ACKNOWLEDGED]);
    assert_eq!(input.requests(), 1);
    let writes = fleet.api_calls("PUT", "/proofjobs/doomed/status");
    assert_eq!(writes, 1, "status writes of the deleted job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_api_server_cannot_record_yet_is_uploaded_again_until_it_is() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let input = HeldInput::serve().await;
    let pod = ProverPod::start(&fleet, "prover-a", 1, Faults::default());
    fleet.job(NS, "product", POOL, input.input());
    fleet
        .until("the pod is working on the job", |f| {
            f.phase(NS, "product") == "Running" && input.requests() == 1
        })
        .await;

    // The lease is on the status; the next two writes, those that would record the proof, are
    // refused, so the dispatcher answers the pod's upload 503 twice.
    fleet
        .api
        .fail(Rule::new("PUT", "/proofjobs/product/status"), 503, 2);
    input.release();
    fleet
        .until("the job succeeds", |f| {
            f.phase(NS, "product") == "Succeeded"
        })
        .await;

    assert_eq!(
        attempts(&fleet, "product"),
        [(pod.name().to_string(), Some(AttemptOutcome::Succeeded))]
    );
    assert!(status(&fleet, "product").verification.unwrap().verified);
    // The pod hears back after the API server answered the write that recorded the result.
    pod.until_acknowledged(&fleet, 1).await;
    assert_eq!(pod.uploads(), [ONE_PROOF_ACKNOWLEDGED]);
    assert_eq!(status_writes(&fleet, "product", 503), 2);
    assert_eq!(status_writes(&fleet, "product", 200), 2, "lease and result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_pod_finishes_the_proof_it_holds_and_leases_nothing_more() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    let input = HeldInput::serve().await;
    // One slot, so no lease request of the pod is pending when it starts draining: that race
    // is the ignored test below.
    let draining = ProverPod::start(&fleet, "prover-a", 1, Faults::default());
    let name = draining.name().to_string();
    fleet.job(NS, "in-flight", POOL, input.input());
    fleet
        .until("the pod is working on the job", |f| {
            f.phase(NS, "in-flight") == "Running" && input.requests() == 1
        })
        .await;

    draining.state.start_draining();
    fleet.job(NS, "after-drain", POOL, inline_inputs(CIRCUIT));
    fleet
        .until("the dispatcher queues the new job", |f| {
            f.dispatcher.load(NS, POOL) == (1, 1)
        })
        .await;
    // The pod's slot comes free with the new job waiting for it.
    input.release();
    draining.drain().await;

    assert_eq!(fleet.phase(NS, "in-flight"), "Succeeded");
    assert_eq!(
        attempts(&fleet, "in-flight"),
        [(name, Some(AttemptOutcome::Succeeded))]
    );
    assert_eq!(fleet.phase(NS, "after-drain"), "Queued");
    assert!(attempts(&fleet, "after-drain").is_empty());

    // The job was there to be had: a pod still serving takes it, and it is the job's only
    // attempt, so the draining pod never held it.
    let serving = ProverPod::start(&fleet, "prover-b", 1, Faults::default());
    fleet
        .until("the new job succeeds", |f| {
            f.phase(NS, "after-drain") == "Succeeded"
        })
        .await;
    assert_eq!(
        attempts(&fleet, "after-drain"),
        [(serving.name().to_string(), Some(AttemptOutcome::Succeeded))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A race once: a pod that began draining dropped its pending lease request, but a job that
/// arrived before the dispatcher noticed the hang-up was still leased to it, and sat Running on
/// a pod that never got it until the lease ran out (its attempt ending LeaseExpired, a retry
/// spent). The draining pod now waits a moment for that request and proves what it brings.
async fn a_job_leased_as_its_pod_begins_draining_is_proved_not_stranded() {
    let fleet = Fleet::start(settings()).await;
    fleet.pool(NS, POOL, CIRCUIT);
    // Rounds, since each only sometimes lands in the window.
    for round in 0..10 {
        let input = HeldInput::serve().await;
        // Two slots: while it proves, the pod has a lease request waiting for its other one.
        let draining = ProverPod::start(&fleet, &format!("prover-{round}"), 2, Faults::default());
        let name = draining.name().to_string();
        let (held, late) = (format!("in-flight-{round}"), format!("after-drain-{round}"));
        fleet.job(NS, &held, POOL, input.input());
        fleet
            .until("the pod is working on the job", |f| {
                f.phase(NS, &held) == "Running" && input.requests() == 1
            })
            .await;

        draining.state.start_draining();
        fleet.job(NS, &late, POOL, inline_inputs(CIRCUIT));
        input.release();
        draining.drain().await;
        assert_eq!(fleet.phase(NS, &held), "Succeeded");
        // Either the draining pod never got it, or it got it and proved it: never a lease that
        // runs out on a pod that did not know it held it.
        let late_attempts = attempts(&fleet, &late);
        assert!(
            late_attempts.is_empty()
                || late_attempts == [(name.clone(), Some(AttemptOutcome::Succeeded))],
            "round {round}: {late}, queued as {name} began draining: {:?}",
            status(&fleet, &late)
        );
        // Out of the next round's way.
        Api::<ProofJob>::namespaced(fleet.api.client(), NS)
            .delete(&late, &DeleteParams::default())
            .await
            .unwrap();
    }
}
