//! KEDA's external scaler gRPC interface, so a cluster that already runs KEDA (which holds
//! the one `external.metrics.k8s.io` registration a cluster can have) scales ProverPools
//! through a `ScaledObject` instead of zkfleet's own metrics API.
//!
//! A trigger names the pool in its metadata; the ScaledObject's namespace is the pool's:
//!
//! ```yaml
//! triggers:
//!   - type: external
//!     metadata:
//!       scalerAddress: zkfleet-operator.zkfleet-system.svc:9090
//!       pool: gpu-pool
//! ```
//!
//! The metrics are those of the aggregated API, with the same targets as the HPA zkfleet
//! builds: `zkfleet_pool_queued_jobs` against `targetQueuePerReplica` (default the pool's
//! slots per replica) and `zkfleet_pool_running_jobs` against `slotsPerReplica`, so pods still
//! proving are kept when the queue drains. A pool is active while it has queued or running
//! jobs, which is what takes a pool at zero replicas back to one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::external_metrics::{QUEUED_JOBS, RUNNING_JOBS};

/// The generated messages and server of `operator/proto/externalscaler.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The trigger metadata key naming the ProverPool.
pub const POOL_KEY: &str = "pool";
/// How often `StreamIsActive` looks at the pool; it sends only changes.
const STREAM_EVERY: Duration = Duration::from_secs(2);

/// A pool's load and the targets its scaling divides it by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolScaling {
    pub queued: u64,
    pub running: u64,
    /// Queued jobs one replica should have (`autoscaling.targetQueuePerReplica`, else its slots).
    pub target_queue_per_replica: f64,
    /// Jobs one replica runs at once.
    pub slots_per_replica: f64,
}

impl PoolScaling {
    /// Whether the pool has work: KEDA scales it from zero while it has.
    fn active(&self) -> bool {
        self.queued + self.running > 0
    }
}

/// What the scaler reads of the operator.
pub trait PoolScalings: Send + Sync {
    /// The pool's load and targets; `None` when there is no such pool.
    fn scaling(&self, namespace: &str, pool: &str) -> Option<PoolScaling>;
}

/// The gRPC service.
#[derive(Clone)]
pub struct Scaler {
    pools: Arc<dyn PoolScalings>,
}

impl Scaler {
    pub fn new(pools: Arc<dyn PoolScalings>) -> Self {
        Self { pools }
    }

    fn scaling(&self, object: &ScaledObjectRef) -> Result<PoolScaling, Status> {
        let pool = object
            .scaler_metadata
            .get(POOL_KEY)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "the trigger's metadata has no `{POOL_KEY}`: set it to the name of the ProverPool to scale (in the ScaledObject's namespace)"
                ))
            })?;
        self.pools.scaling(&object.namespace, pool).ok_or_else(|| {
            Status::not_found(format!(
                "no ProverPool {pool} in namespace {}",
                object.namespace
            ))
        })
    }
}

/// A metric name as KEDA asks for it, without the `s<trigger index>-` prefix it may add.
fn unprefixed(name: &str) -> &str {
    match name.split_once('-') {
        Some((index, rest))
            if index.len() > 1
                && index.starts_with('s')
                && index[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => name,
    }
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let s = self.scaling(request.get_ref())?;
        Ok(Response::new(IsActiveResponse { result: s.active() }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let object = request.into_inner();
        // Refused at once when the trigger is wrong, rather than in the stream.
        self.scaling(&object)?;
        let scaler = self.clone();
        // The state is the last answer sent (`Some(None)` before the first), or `None` once
        // the stream has ended.
        let stream = futures::stream::unfold(Some(None), move |state: Option<Option<bool>>| {
            let (scaler, object) = (scaler.clone(), object.clone());
            async move {
                let last = state?;
                loop {
                    if last.is_some() {
                        tokio::time::sleep(STREAM_EVERY).await;
                    }
                    let active = match scaler.scaling(&object) {
                        Ok(s) => s.active(),
                        // The pool went away: say so and end the stream.
                        Err(status) => return Some((Err(status), None)),
                    };
                    if last != Some(active) {
                        return Some((Ok(IsActiveResponse { result: active }), Some(Some(active))));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let s = self.scaling(request.get_ref())?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![
                metric_spec(QUEUED_JOBS, s.target_queue_per_replica),
                metric_spec(RUNNING_JOBS, s.slots_per_replica),
            ],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let object = request.scaled_object_ref.unwrap_or_default();
        let s = self.scaling(&object)?;
        let value = match unprefixed(&request.metric_name) {
            QUEUED_JOBS => s.queued,
            RUNNING_JOBS => s.running,
            other => {
                return Err(Status::not_found(format!(
                    "no metric {other}: this scaler serves {QUEUED_JOBS} and {RUNNING_JOBS}"
                )));
            }
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![metric_value(request.metric_name, value)],
        }))
    }
}

/// A metric and its target per replica. KEDA releases before the float fields read the
/// integer ones (deprecated in the contract), so both are set.
#[allow(deprecated)]
fn metric_spec(name: &str, target: f64) -> MetricSpec {
    MetricSpec {
        metric_name: name.to_string(),
        target_size: target.round() as i64,
        target_size_float: target,
    }
}

/// A metric's value, in both fields as [`metric_spec`] explains.
#[allow(deprecated)]
fn metric_value(name: String, value: u64) -> MetricValue {
    MetricValue {
        metric_name: name,
        metric_value: value as i64,
        metric_value_float: value as f64,
    }
}

/// Serves the scaler on `addr` (plain gRPC; keep the port to KEDA with the chart's
/// NetworkPolicy) until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    pools: Arc<dyn PoolScalings>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tracing::info!(%addr, "KEDA external scaler listening");
    tonic::transport::Server::builder()
        .add_service(ExternalScalerServer::new(Scaler::new(pools)))
        .serve_with_shutdown(addr, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Pools(Mutex<HashMap<(String, String), PoolScaling>>);

    impl PoolScalings for Pools {
        fn scaling(&self, namespace: &str, pool: &str) -> Option<PoolScaling> {
            self.0
                .lock()
                .unwrap()
                .get(&(namespace.to_string(), pool.to_string()))
                .copied()
        }
    }

    fn object(namespace: &str, pool: Option<&str>) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "so".into(),
            namespace: namespace.into(),
            scaler_metadata: pool
                .map(|p| HashMap::from([(POOL_KEY.to_string(), p.to_string())]))
                .unwrap_or_default(),
        }
    }

    fn scaler(queued: u64, running: u64) -> (Scaler, Arc<Pools>) {
        let pools = Arc::new(Pools::default());
        pools.0.lock().unwrap().insert(
            ("team".into(), "gpu".into()),
            PoolScaling {
                queued,
                running,
                target_queue_per_replica: 2.0,
                slots_per_replica: 4.0,
            },
        );
        (Scaler::new(pools.clone()), pools)
    }

    #[tokio::test]
    async fn a_pool_answers_its_metrics_and_targets() {
        let (s, _) = scaler(7, 3);
        let active = s
            .is_active(Request::new(object("team", Some("gpu"))))
            .await
            .unwrap();
        assert!(active.get_ref().result);
        let spec = s
            .get_metric_spec(Request::new(object("team", Some("gpu"))))
            .await
            .unwrap()
            .into_inner();
        let targets: Vec<_> = spec
            .metric_specs
            .iter()
            .map(|m| (m.metric_name.as_str(), m.target_size_float))
            .collect();
        assert_eq!(targets, [(QUEUED_JOBS, 2.0), (RUNNING_JOBS, 4.0)]);
        for (asked, value) in [
            (QUEUED_JOBS.to_string(), 7.0),
            (format!("s0-{RUNNING_JOBS}"), 3.0),
        ] {
            let got = s
                .get_metrics(Request::new(GetMetricsRequest {
                    scaled_object_ref: Some(object("team", Some("gpu"))),
                    metric_name: asked.clone(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(got.metric_values[0].metric_value_float, value, "{asked}");
            assert_eq!(got.metric_values[0].metric_name, asked);
        }
    }

    #[tokio::test]
    async fn a_wrong_trigger_is_refused_with_what_to_fix() {
        let (s, _) = scaler(0, 0);
        let e = s
            .is_active(Request::new(object("team", None)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("pool"), "{}", e.message());
        let e = s
            .is_active(Request::new(object("other", Some("gpu"))))
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::NotFound,
            "the ScaledObject's namespace is the pool's"
        );
        let e = s
            .get_metrics(Request::new(GetMetricsRequest {
                scaled_object_ref: Some(object("team", Some("gpu"))),
                metric_name: "cpu".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn the_stream_sends_the_state_then_each_change() {
        let (s, pools) = scaler(0, 0);
        let mut stream = s
            .stream_is_active(Request::new(object("team", Some("gpu"))))
            .await
            .unwrap()
            .into_inner();
        assert!(!stream.next().await.unwrap().unwrap().result);
        pools
            .0
            .lock()
            .unwrap()
            .get_mut(&("team".to_string(), "gpu".to_string()))
            .unwrap()
            .queued = 1;
        assert!(stream.next().await.unwrap().unwrap().result);

        // The pool is deleted: one NotFound, then the stream ends.
        pools.0.lock().unwrap().clear();
        let gone = stream.next().await.unwrap().unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);
        assert!(stream.next().await.is_none());
    }

    #[test]
    fn keda_prefixes_are_dropped() {
        assert_eq!(
            unprefixed("s0-zkfleet_pool_queued_jobs"),
            "zkfleet_pool_queued_jobs"
        );
        assert_eq!(unprefixed("s12-x"), "x");
        assert_eq!(
            unprefixed("zkfleet_pool_queued_jobs"),
            "zkfleet_pool_queued_jobs"
        );
        assert_eq!(unprefixed("sx-y"), "sx-y");
    }
}
