//! The operator's KEDA external scaler, called over gRPC as KEDA calls it (KEDA itself need not
//! run): a pool's activity, metric targets and values follow its jobs, the push stream reports
//! each change, and a trigger without a pool or naming another namespace's pool is refused.

use std::collections::HashMap;

use serde_json::json;
use tokio_stream::StreamExt as _;
use zkfleet_e2e::fleet::*;
use zkfleet_e2e::poll_until;

mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::external_scaler_client::ExternalScalerClient;
use proto::{GetMetricsRequest, ScaledObjectRef};

const POOL: &str = "gpu";
/// The metrics of the scaler, as the operator names them.
const QUEUED: &str = "zkfleet_pool_queued_jobs";
const RUNNING: &str = "zkfleet_pool_running_jobs";

fn trigger(namespace: &str, pool: Option<&str>) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "provers".into(),
        namespace: namespace.into(),
        scaler_metadata: pool
            .map(|p| HashMap::from([("pool".to_string(), p.to_string())]))
            .unwrap_or_default(),
    }
}

async fn metric(
    client: &mut ExternalScalerClient<tonic::transport::Channel>,
    namespace: &str,
    name: &str,
) -> f64 {
    let answer = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(trigger(namespace, Some(POOL))),
            // KEDA prefixes the trigger's index.
            metric_name: format!("s0-{name}"),
        })
        .await
        .unwrap()
        .into_inner();
    answer.metric_values[0].metric_value_float
}

#[tokio::test]
async fn keda_reads_a_pools_queue_through_the_external_scaler_contract() {
    // Each job is held 3 s, so the queue is seen while it is there.
    let setup = setup(
        "keda",
        "kedaScaler:\n  enabled: true\nprover:\n  extraEnv:\n    - name: ZKFLEET_FAULT_INJECTION\n      value: \"delay-ms=3000\"\n",
    )
    .await;
    let ns = &setup.ns;
    let v1 = Parameters::create(ns, "v1", "mulchain-v1", &["circuit.zkey", "circuit.wasm"]).await;
    create_pool_with(
        ns,
        POOL,
        1,
        &v1,
        json!({"slotsPerReplica": 1, "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetQueuePerReplica": 2}}),
    )
    .await;
    wait_serving(ns, POOL, 1).await;

    let address = format!("http://{}:9090", leader_ip(&setup).await);
    let mut client = ExternalScalerClient::connect(address).await.unwrap();
    let idle = client
        .is_active(trigger(&ns.name, Some(POOL)))
        .await
        .unwrap();
    assert!(!idle.into_inner().result, "no jobs: inactive");
    let mut pushes = client
        .stream_is_active(trigger(&ns.name, Some(POOL)))
        .await
        .unwrap()
        .into_inner();
    assert!(!pushes.next().await.unwrap().unwrap().result);

    let specs = client
        .get_metric_spec(trigger(&ns.name, Some(POOL)))
        .await
        .unwrap()
        .into_inner()
        .metric_specs;
    let targets: Vec<_> = specs
        .iter()
        .map(|m| (m.metric_name.as_str(), m.target_size_float))
        .collect();
    assert_eq!(
        targets,
        [(QUEUED, 2.0), (RUNNING, 1.0)],
        "targetQueuePerReplica, then slotsPerReplica"
    );

    for i in 0..3 {
        submit_mulchain_job(ns, &format!("job-{i}"), POOL).await;
    }
    assert!(
        pushes.next().await.unwrap().unwrap().result,
        "the stream says the pool became active"
    );
    let seen = poll_until(2 * MINUTE, || {
        let mut client = client.clone();
        let namespace = ns.name.clone();
        async move {
            let queued = metric(&mut client, &namespace, QUEUED).await;
            let running = metric(&mut client, &namespace, RUNNING).await;
            (queued == 2.0 && running == 1.0).then_some(())
        }
    })
    .await;
    assert!(
        seen.is_some(),
        "one job running on the one slot, two queued"
    );

    for i in 0..3 {
        wait_job_finished(ns, &format!("job-{i}"), 3 * MINUTE).await;
    }
    let inactive = poll_until(MINUTE, || {
        let mut client = client.clone();
        let namespace = ns.name.clone();
        async move {
            let active = client
                .is_active(trigger(&namespace, Some(POOL)))
                .await
                .ok()?;
            (!active.into_inner().result).then_some(())
        }
    })
    .await;
    assert!(inactive.is_some(), "inactive again once every job finished");

    let refused = client.is_active(trigger(&ns.name, None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("pool"), "{}", refused.message());
    let elsewhere = client
        .is_active(trigger("default", Some(POOL)))
        .await
        .unwrap_err();
    assert_eq!(
        elsewhere.code(),
        tonic::Code::NotFound,
        "a ScaledObject scales pools of its own namespace"
    );
}
