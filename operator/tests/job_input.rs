//! Reading a ProofJob's input from a Secret, over an in-memory API: only Secrets their owner
//! labelled for ProofJobs are read, so creating a ProofJob is no way to learn anything about
//! the namespace's other Secrets.

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use zkfleet_contract::lease::JobInput;
use zkfleet_crds::v1alpha1::ProofJob;
use zkfleet_fake_api::FakeApi;
use zkfleet_operator::job::input::{self, InputError, PROOF_INPUT_LABEL};

fn job_reading(secret: &str) -> ProofJob {
    serde_json::from_value(json!({
        "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
        "metadata": {"name": "j", "namespace": "team"},
        "spec": {"poolRef": {"name": "cpu"},
                 "input": {"secretKeyRef": {"name": secret, "key": "input.json"},
                           "sha256": "0".repeat(64)}},
    }))
    .unwrap()
}

fn secret(name: &str, labelled: bool) -> Secret {
    let labels = if labelled {
        json!({PROOF_INPUT_LABEL: "true"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "team", "labels": labels},
        "data": {"input.json": k8s_openapi::ByteString(br#"{"a": "3"}"#.to_vec())},
    }))
    .unwrap()
}

fn refusal(result: Result<JobInput, InputError>) -> String {
    match result {
        Err(InputError::Invalid(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn only_secrets_labelled_for_proof_inputs_are_read() {
    let api = FakeApi::new();
    let client = api.client();
    api.create(&secret("database-password", false));
    api.create(&secret("witness-inputs", true));

    let unlabelled = refusal(input::resolve(&client, &job_reading("database-password")).await);
    let missing = refusal(input::resolve(&client, &job_reading("no-such-secret")).await);
    assert!(unlabelled.contains(PROOF_INPUT_LABEL), "{unlabelled}");
    // Nothing tells the two apart: not its existence, size or digest.
    assert_eq!(
        unlabelled.replace("database-password", "<name>"),
        missing.replace("no-such-secret", "<name>")
    );
    let digest_of_the_secret = "sha256";
    assert!(!unlabelled.contains(digest_of_the_secret), "{unlabelled}");

    // A labelled Secret is read (and here refused only for its sha256, as any input is).
    let labelled = refusal(input::resolve(&client, &job_reading("witness-inputs")).await);
    assert!(labelled.contains("input.sha256"), "{labelled}");
}
