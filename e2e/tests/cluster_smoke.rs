//! Smoke tests that prove the harness cluster is a real one: workloads run
//! and serve, GPUs are accounted by the scheduler, Services resolve by DNS,
//! the HPA controller runs, and the API server enforces CRD CEL rules.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, ResourceExt};
use zkfleet_e2e::{TestNamespace, image};

const MINUTE: Duration = Duration::from_secs(60);

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod running the test server in one of its modes, never restarted.
fn one_shot_pod(name: &str, args: &[&str], gpus: Option<u32>) -> String {
    let limits = gpus
        .map(|n| format!("resources: {{limits: {{nvidia.com/gpu: {n}}}}}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    args: {args:?}
    {limits}
"#,
        image = image("e2e-testserver"),
    )
}

async fn logs(ns: &TestNamespace, pod: &str) -> String {
    ns.api::<Pod>()
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"))
}

async fn deploy_test_server(ns: &TestNamespace, name: &str) -> Deployment {
    ns.create::<Deployment>(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: server
        image: {image}
        imagePullPolicy: IfNotPresent
        args: [serve, "8080"]
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 10m}}}}
"#,
        image = image("e2e-testserver"),
    ))
    .await
    .expect("create deployment")
}

#[tokio::test]
async fn deployment_pods_become_ready_and_serve_http() {
    let ns = TestNamespace::new("http").await.unwrap();
    deploy_test_server(&ns, "web").await;
    ns.wait_for::<Deployment>("web", "1 ready replica", 2 * MINUTE, |d| {
        d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)
    })
    .await
    .unwrap();

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let pod = pods
        .items
        .iter()
        .find(|p| pod_ready(p))
        .expect("a ready pod");
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    // The test runs on the node, which routes to the pod network.
    let body = http_get(&format!("{ip}:8080")).await;
    assert_eq!(
        body.trim(),
        format!("zkfleet-testserver {}", pod.name_any())
    );
}

#[tokio::test]
async fn gpu_pods_get_devices_and_oversized_requests_stay_pending() {
    let ns = TestNamespace::new("gpu").await.unwrap();
    ns.create::<Pod>(&one_shot_pod(
        "one-gpu",
        &["env", "NVIDIA_VISIBLE_DEVICES"],
        Some(1),
    ))
    .await
    .unwrap();
    ns.create::<Pod>(&one_shot_pod(
        "too-many",
        &["env", "NVIDIA_VISIBLE_DEVICES"],
        Some(64),
    ))
    .await
    .unwrap();

    ns.wait_for::<Pod>("one-gpu", "the pod to succeed", 2 * MINUTE, |p| {
        pod_phase(p) == "Succeeded"
    })
    .await
    .unwrap();
    let out = logs(&ns, "one-gpu").await;
    let devices = out
        .trim()
        .strip_prefix("NVIDIA_VISIBLE_DEVICES=")
        .unwrap_or_else(|| panic!("unexpected output: {out}"));
    assert_eq!(
        devices.split(',').count(),
        1,
        "one GPU requested, got devices {devices:?}"
    );
    assert!(devices.starts_with("fake-gpu-"), "device ids: {devices}");

    let pending = ns
        .wait_for::<Pod>("too-many", "the scheduler to refuse it", MINUTE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                    })
                })
        })
        .await
        .unwrap();
    assert_eq!(pod_phase(&pending), "Pending");
    let message = pending
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("Insufficient nvidia.com/gpu"),
        "scheduler message: {message}"
    );
}

#[tokio::test]
async fn pods_reach_a_cluster_ip_service_by_dns_name() {
    let ns = TestNamespace::new("dns").await.unwrap();
    deploy_test_server(&ns, "backend").await;
    ns.create::<Service>(
        r#"
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
"#,
    )
    .await
    .unwrap();
    ns.wait_for::<Deployment>("backend", "1 ready replica", 2 * MINUTE, |d| {
        d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)
    })
    .await
    .unwrap();

    let url = format!("http://backend.{}.svc.cluster.local:80/", ns.name);
    // kube-proxy programs a new Service a moment after its endpoint is ready, and on a busy
    // node (namespaces of earlier tests being deleted) that moment can outlast a pod start.
    // Until then the ClusterIP either refuses connections or, when the API server handed out
    // an address freed by a Service another test just deleted, still leads to that old
    // Service's pods (seen: an empty HTTP 404 from another test's server). Either way a new
    // client tries again; only an answer from this test's backend ends the loop early.
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    let (done, out) = loop {
        attempt += 1;
        let client = format!("client-{attempt}");
        ns.create::<Pod>(&one_shot_pod(&client, &["fetch", &url], None))
            .await
            .unwrap();
        let done = ns
            .wait_for::<Pod>(&client, "the client pod to finish", 2 * MINUTE, |p| {
                matches!(pod_phase(p), "Succeeded" | "Failed")
            })
            .await
            .unwrap();
        let out = logs(&ns, &client).await;
        let answered_by_backend =
            pod_phase(&done) == "Succeeded" && out.starts_with("zkfleet-testserver backend-");
        if answered_by_backend || attempt == ATTEMPTS {
            break (done, out);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(
        pod_phase(&done),
        "Succeeded",
        "client output (attempt {attempt}): {out}"
    );
    assert!(
        out.starts_with("zkfleet-testserver backend-"),
        "client output: {out}"
    );
}

#[tokio::test]
async fn hpa_controller_reports_missing_cpu_metrics() {
    let ns = TestNamespace::new("hpa").await.unwrap();
    deploy_test_server(&ns, "scaled").await;
    ns.create::<HorizontalPodAutoscaler>(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: scaled}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: scaled}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#,
    )
    .await
    .unwrap();
    // There is no metrics-server: a working HPA controller says exactly that.
    let hpa = ns
        .wait_for::<HorizontalPodAutoscaler>(
            "scaled",
            "a ScalingActive condition",
            2 * MINUTE,
            |h| {
                h.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "ScalingActive"))
            },
        )
        .await
        .unwrap();
    let active = hpa
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "ScalingActive"))
        .unwrap();
    assert_eq!(active.status, "False");
    assert_eq!(active.reason.as_deref(), Some("FailedGetResourceMetric"));
    assert!(
        active
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("cpu"),
        "message: {:?}",
        active.message
    );
}

#[tokio::test]
async fn api_server_refuses_objects_that_break_a_cel_rule() {
    let ns = TestNamespace::new("cel").await.unwrap();
    // A CRD of the test's own, unique to this namespace, so tests never collide.
    let group = format!("{}.e2e.zkfleet.dev", ns.name);
    let crd: CustomResourceDefinition = serde_yaml::from_str(&format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: ranges.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: ranges, singular: range, kind: Range}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              min: {{type: integer}}
              max: {{type: integer}}
            x-kubernetes-validations:
            - rule: self.min <= self.max
              message: spec.min must not exceed spec.max
"#
    ))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(ns.client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let crd_name = crd.name_any();
    let established = tokio::time::timeout(
        MINUTE,
        kube::runtime::wait::await_condition(
            crds.clone(),
            &crd_name,
            kube::runtime::conditions::is_crd_established(),
        ),
    )
    .await;
    assert!(
        matches!(established, Ok(Ok(_))),
        "CRD not established: {established:?}"
    );

    let gvk = GroupVersionKind::gvk(&group, "v1", "Range");
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk));
    let make = |name: &str, min: i64, max: i64| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": format!("{group}/v1"),
            "kind": "Range",
            "metadata": {"name": name},
            "spec": {"min": min, "max": max},
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &make("good", 1, 2))
        .await
        .expect("a valid object is accepted");
    let refused = api
        .create(&PostParams::default(), &make("bad", 3, 2))
        .await
        .expect_err("an object that breaks the rule is refused");
    let text = refused.to_string();
    assert!(
        text.contains("spec.min must not exceed spec.max"),
        "error: {text}"
    );

    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .unwrap();
}

/// A plain HTTP/1.1 GET from the test process, returning the body.
async fn http_get(authority: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "response: {response}");
    body.to_string()
}
