//! The ProofJob controller's finalizer over an in-memory API: a job whose stored proof lives
//! in another artifact store (the operator's `--artifacts-url` changed since) is still
//! deleted, with a warning saying where its proof was left, rather than hanging for good.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use serde_json::json;
use zkfleet_crds::v1alpha1::ProofJob;
use zkfleet_fake_api::FakeApi;
use zkfleet_operator::artifacts::ArtifactStore;
use zkfleet_operator::job::{self, JobQueue};
use zkfleet_operator::metrics::Metrics;

/// The controller's queue, unused here.
struct NoQueue;

impl JobQueue for NoQueue {
    fn observe(&self, _: ProofJob) {}
    fn forget(&self, _: &ProofJob) {}
    fn reusable(
        &self,
        _: (&str, &str),
        _: &str,
        _: &str,
        _: &str,
        _: bool,
    ) -> Option<job::reuse::EarlierResult> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_proof_is_in_a_former_store_is_still_deleted() {
    let api = FakeApi::new();
    let client = api.client();
    let store_dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::new(&format!("file://{}", store_dir.path().display())).unwrap();
    // A proof the dispatcher stored for this job in the current store, before a stale status
    // write lost it: nothing on the status points at it.
    let orphan = artifacts
        .put("team", "old", "uid-old", b"{}".to_vec())
        .await
        .unwrap();
    let job: ProofJob = serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": "old", "namespace": "team", "uid": "uid-old",
                     "finalizers": [job::ARTIFACT_FINALIZER]},
        "spec": {"poolRef": {"name": "cpu"}, "input": {"inline": {"json": "{}"}}},
        "status": {"phase": "Succeeded",
                   "result": {"location": "s3://retired-bucket/team/old-uid-old/proof.json",
                              "sha256": "ab".repeat(32), "sizeBytes": 2}},
    }))
    .unwrap();
    api.create(&job);
    let ctx = Arc::new(job::Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "zkfleet-operator".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Metrics::new()),
        queue: Arc::new(NoQueue),
        artifacts: Some(artifacts),
        watch_namespace: None,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(job::run(ctx, async {
        let _ = stopped.await;
    }));
    let jobs: Api<ProofJob> = Api::namespaced(client.clone(), "team");
    jobs.delete("old", &DeleteParams::default()).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while api.get::<ProofJob>("team", "old").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job is still there: {:?}",
            api.get::<ProofJob>("team", "old")
                .unwrap()
                .metadata
                .finalizers
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let orphan_path = orphan.location.strip_prefix("file://").unwrap();
    assert!(
        !std::path::Path::new(orphan_path).exists(),
        "the job's object in the current store went with it"
    );
    let events = Api::<Event>::namespaced(client, "team")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ArtifactLeftInPlace")
                && e.note
                    .as_deref()
                    .unwrap_or("")
                    .contains("s3://retired-bucket")),
        "a warning says where the proof was left: {:?}",
        events.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    drop(stop);
}
