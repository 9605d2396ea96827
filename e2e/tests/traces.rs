//! Traces on the real cluster: with the chart's `tracing.otlpEndpoint` set, the operator and the
//! prover pod send OTLP/HTTP spans to a small receiver in this test (the OTLP protobuf messages
//! of the OpenTelemetry project's own crate), and one ProofJob is one trace whose id is the
//! job's UID: the root `ProofJob` span with `admit`, `queue` and `attempt` under it, and the
//! pod's `prove` and `report` and the operator's `verify` under the attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use zkfleet_crds::v1alpha1::ProofJob;
use zkfleet_e2e::fleet::{Parameters, create_pool, prove_mulchain_job, setup, wait_serving};
use zkfleet_e2e::poll_until;

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
    error: bool,
    millis: f64,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// `POST /v1/traces`: an OTLP export request in protobuf, as the OTLP/HTTP spec has it.
async fn receive(State(spans): State<Spans>, body: Bytes) -> (axum::http::StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut got = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                got.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.key.clone(),
                                text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    // STATUS_CODE_ERROR is 2.
                    error: span.status.is_some_and(|s| s.code == 2),
                    millis: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano)
                        as f64
                        / 1e6,
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    (axum::http::StatusCode::OK, Vec::new())
}

fn hex(bytes: &[u8]) -> String {
    zkfleet_e2e::fleet::hex(bytes)
}

/// The node's address, where pods reach this test's receiver.
async fn node_ip(client: kube::Client) -> String {
    let nodes: Api<Node> = Api::all(client);
    let node = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    node.status
        .and_then(|s| s.addresses)
        .into_iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .expect("the node has an InternalIP")
}

#[tokio::test]
async fn one_proof_job_is_one_trace_across_the_operator_and_its_prover_pod() {
    let spans = Spans::default();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = kube::Client::try_default().await.unwrap();
    let endpoint = format!("http://{}:{port}", node_ip(client).await);
    let setup = setup("traces", &format!("tracing:\n  otlpEndpoint: {endpoint}\n")).await;
    let ns = &setup.ns;
    let params =
        Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool(ns, "alpha", 1, None, &params).await;
    wait_serving(ns, "alpha", 1).await;
    let status = prove_mulchain_job(ns, "traced", "alpha").await;
    let job: ProofJob = ns.api().get("traced").await.unwrap();
    let trace_id = job.uid().unwrap().replace('-', "");

    // Spans leave in batches every few seconds; wait until both processes' have come.
    let of_job = || -> Vec<Received> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    };
    let names = [
        "ProofJob", "admit", "queue", "attempt", "verify", "prove", "report",
    ];
    let complete = poll_until(Duration::from_secs(90), || {
        let got = of_job();
        async move {
            names
                .iter()
                .all(|n| got.iter().any(|s| s.name == *n))
                .then_some(())
        }
    })
    .await;
    let got = of_job();
    assert!(
        complete.is_some(),
        "the job's trace lacks spans: got {:?}",
        got.iter()
            .map(|s| (&s.service, &s.name))
            .collect::<Vec<_>>()
    );
    for span in &got {
        eprintln!(
            "{:<16} {:<9} {:>9.1} ms  span {} parent {}",
            span.service, span.name, span.millis, span.span_id, span.parent_span_id
        );
    }
    let one = |name: &str| -> Received {
        let found: Vec<_> = got.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {found:?}");
        found[0].clone()
    };

    let root = one("ProofJob");
    assert_eq!(root.service, "zkfleet-operator");
    assert_eq!(root.parent_span_id, "", "the root has no parent");
    assert_eq!(root.attributes["zkfleet.outcome"], "Succeeded");
    assert_eq!(root.attributes["zkfleet.job"], "traced");
    assert_eq!(root.attributes["k8s.namespace.name"], ns.name);
    assert!(!root.error);
    for child in ["admit", "queue", "attempt"] {
        let span = one(child);
        assert_eq!(span.service, "zkfleet-operator", "{span:?}");
        assert_eq!(
            span.parent_span_id, root.span_id,
            "{child} hangs under the root"
        );
    }
    let attempt = one("attempt");
    let pod = status.attempts[0].pod.clone().unwrap();
    assert_eq!(attempt.attributes["k8s.pod.name"], pod);
    assert_eq!(attempt.attributes["zkfleet.outcome"], "Succeeded");
    let verify = one("verify");
    assert_eq!(verify.service, "zkfleet-operator");
    assert_eq!(verify.parent_span_id, attempt.span_id);
    assert_eq!(verify.attributes["zkfleet.verifier"], "operator");
    // The pod's spans come from the pod, under the attempt the lease named.
    for pod_span in ["prove", "report"] {
        let span = one(pod_span);
        assert_eq!(span.service, "zkfleet-prover", "{span:?}");
        assert_eq!(
            span.parent_span_id, attempt.span_id,
            "{pod_span} hangs under the attempt"
        );
        assert_eq!(span.attributes["k8s.pod.name"], pod);
    }
    assert_eq!(one("prove").attributes["zkfleet.outcome"], "proved");

    // Spans say which job, pool, pod and outcome; nothing of the job's input or proof.
    let allowed = [
        "k8s.namespace.name",
        "k8s.pod.name",
        "zkfleet.job",
        "zkfleet.pool",
        "zkfleet.attempt",
        "zkfleet.attempts",
        "zkfleet.outcome",
        "zkfleet.backend",
        "zkfleet.verifier",
        "zkfleet.cpu_millis",
        "zkfleet.gpu_millis",
        "zkfleet.cost",
        "zkfleet.upload",
    ];
    for span in &got {
        for key in span.attributes.keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "unexpected attribute {key} on {span:?}"
            );
        }
    }
}
