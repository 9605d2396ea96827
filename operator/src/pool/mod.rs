//! The ProverPool controller: each pass runs fetch → validate → build → apply → status, and
//! publishes Events for the transitions it saw. Pools are watched as untyped objects and parsed
//! per pass, so one malformed pool gets a condition instead of stalling the watch for all.

pub mod apply;
pub mod events;
pub mod fetch;
pub mod readiness;
pub mod rollout;
pub mod scaling;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};
use zkfleet_crds::v1alpha1::{
    ProverPool, RolloutState, find_condition, new_condition, pool_condition, set_condition,
    status as cond,
};

use crate::FIELD_MANAGER;
use crate::build::token_secret::DispatcherToken;
use crate::build::{self, BuildContext, MANAGED_BY, POOL_LABEL};
use crate::metrics::Metrics;
use crate::scope::api;
use apply::{ApplyError, Children};
use fetch::FetchError;
use status::StatusError;
use validate::Invalid;

/// `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "proverpool";

/// How often a rotating pool is looked at even when nothing it watches changes, so the
/// rollout deadline is noticed on time.
const ROLLOUT_RECHECK: Duration = Duration::from_secs(10);
/// Quiet time before a pool is reconciled after a change, so bursts of updates (its pods,
/// its children) fold into one pass.
const QUEUE_DEBOUNCE: Duration = Duration::from_millis(500);
/// How often a settled pool is re-checked anyway (drift the watches missed).
const RESYNC: Duration = Duration::from_secs(300);

/// What every pass shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub build: BuildContext,
    /// How long a parameters rotation may take before it is rolled back.
    pub rollout_deadline: Duration,
    /// The one namespace watched, or `None` for every namespace.
    pub watch_namespace: Option<String>,
    /// The dispatcher's queues, whose counts and flagged pods go on the pool's status.
    pub queues: Arc<dyn QueueView>,
}

/// What the pool controller reads of the dispatcher: a narrow view of its queues, so the two
/// do not depend on each other.
pub trait QueueView: Send + Sync {
    /// Queued and running jobs of a pool.
    fn load(&self, namespace: &str, pool: &str) -> (usize, usize);
    /// Pods whose proofs did not verify, to list on the pool's status.
    fn flagged(&self, namespace: &str, pool: &str) -> Vec<zkfleet_crds::v1alpha1::FlaggedPod>;
    /// How long the pool has had no queued or running job.
    fn idle_for(&self, namespace: &str, pool: &str) -> Duration;
    /// The pools whose queued or running counts changed, as (namespace, name), each at most
    /// about once a second, and those with a newly flagged pod; taken once.
    fn load_changes(&self) -> futures::stream::BoxStream<'static, (String, String)>;
    /// Queued and running jobs of a pool, per namespace of the jobs.
    fn namespace_loads(&self, namespace: &str, pool: &str) -> BTreeMap<String, (usize, usize)>;
}

/// Why a pass failed. All transient: the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("generating the dispatcher token: {0}")]
    GenerateToken(getrandom::Error),
    #[error("resizing the pool through its scale subresource: {0}")]
    Scale(kube::Error),
}

impl Error {
    /// The innermost variant name: the failures metric's `error` label and the Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason(),
            Self::Apply(e) => e.reason(),
            Self::Status(e) => e.reason(),
            Self::GenerateToken(_) => "GenerateToken",
            Self::Scale(_) => "Scale",
        }
    }
}

/// Runs the controller until `shutdown` resolves; passes in flight then finish.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let ns = ctx.watch_namespace.as_deref();
    let resource = ApiResource::erase::<ProverPool>(&());
    let pools: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    // Only children this operator labelled are watched: never every Secret in the cluster.
    let ours =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let pod_owner = resource.clone();
    let load_owner = resource.clone();
    let load_changes = ctx.queues.load_changes();
    Controller::new_with(pools, watcher::Config::default(), resource)
        .owns(api::<Deployment>(&client, ns), ours.clone())
        .owns(api::<Service>(&client, ns), ours.clone())
        .owns(api::<ServiceAccount>(&client, ns), ours.clone())
        .owns(api::<Secret>(&client, ns), ours.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), ours.clone())
        .owns(api::<NetworkPolicy>(&client, ns), ours.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, ns), ours.clone())
        // Pods belong to ReplicaSets, not to the pool; their label names the pool. Their
        // readiness and scheduling feed the pool's status.
        .watches(api::<Pod>(&client, ns), ours, move |pod: Pod| {
            let ns = pod.namespace()?;
            let pool = pod.labels().get(POOL_LABEL)?.clone();
            Some(ObjectRef::new_with(&pool, pod_owner.clone()).within(&ns))
        })
        // Jobs moving through a pool's queue change its queue counts: the dispatcher names
        // each pool whose counts changed, at most once a second, and each pool with a newly
        // flagged pod. (A watch of every ProofJob
        // here would be a second copy of them in memory, and under a steady stream of job
        // updates its debounced triggers would never fall quiet long enough to fire.)
        .reconcile_on(load_changes.map(move |(namespace, name)| {
            ObjectRef::new_with(&name, load_owner.clone()).within(&namespace)
        }))
        .with_config(kube::runtime::controller::Config::default().debounce(QUEUE_DEBOUNCE))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile did not run");
            }
        })
        .await;
}

#[instrument(skip(obj, ctx), fields(pool = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconcile_started(CONTROLLER);
    let started = Instant::now();
    let result = reconcile_pool(&obj, &ctx).await;
    ctx.metrics
        .reconcile_finished(CONTROLLER, started.elapsed());
    if let Err(error) = &result {
        ctx.metrics.reconcile_failed(CONTROLLER, error.reason());
        let ev = events::event(
            EventType::Warning,
            error.reason(),
            "Reconcile",
            error.to_string(),
        );
        let reference = obj.object_ref(&ApiResource::erase::<ProverPool>(&()));
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            warn!(error = %e, "publishing an Event failed");
        }
    }
    result
}

fn error_policy(_obj: Arc<DynamicObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, reason = error.reason(), "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_pool(obj: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        // Children go with the pool through their owner references.
        return Ok(Action::await_change());
    }
    let pool: ProverPool = match obj.clone().try_parse() {
        Ok(pool) => pool,
        Err(e) => {
            report_malformed(obj, ctx, &e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    let now = Timestamp::now();

    // validate
    if let Err(problem) = validate::validate(&pool) {
        let was = pool
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, pool_condition::READY))
            .map(|c| c.reason.clone());
        let next = status::invalid(&pool, &problem, Time(now));
        status::write(&ctx.client, &pool, &next).await?;
        ctx.metrics.reconcile_failed(CONTROLLER, problem.reason());
        if was.as_deref() != Some(problem.reason()) {
            warn!(reason = problem.reason(), %problem, "pool is invalid; waiting for a change");
            publish(
                ctx,
                &pool,
                events::event(
                    EventType::Warning,
                    problem.reason(),
                    "Validate",
                    problem.to_string(),
                ),
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    // fetch
    let world = fetch::fetch(&ctx.client, &pool).await?;

    // build
    let decision = rollout::decide(
        &pool,
        world.deployment.as_ref(),
        &world.pods,
        &world.not_ready,
        now,
        ctx.rollout_deadline,
    );
    let token = match world.token {
        Some(token) => token,
        None => DispatcherToken::generate().map_err(Error::GenerateToken)?,
    };
    let deployment = build::deployment::deployment(&pool, &decision.serving, &ctx.build);
    let network_policy = build::network_policy::network_policy(&pool, &ctx.build);
    let service = build::service::service(&pool, &ctx.build);
    let children = Children {
        service_account: build::service_account::service_account(&pool, &ctx.build),
        token_secret: build::token_secret::token_secret(&pool, &token, &ctx.build),
        verifier: build::verifier::children(&pool, &deployment, &service, &network_policy),
        service,
        network_policy,
        pdb: build::pdb::pdb(&pool, &ctx.build),
        deployment,
        hpa: build::hpa::hpa(&pool, &ctx.build),
    };

    // apply
    let deployment = apply::apply(&ctx.client, &pool, &children).await?;
    let pruned = apply::prune(&ctx.client, &pool, &children).await?;
    if !pruned.is_empty() {
        info!(?pruned, "deleted children the pool no longer needs");
    }

    // status
    let mut next = status::compute(&pool, Some(&deployment), &world.pods, &decision, Time(now));
    status::quote_not_ready(&mut next, &world.not_ready);
    let (namespace, name) = (pool.namespace().unwrap_or_default(), pool.name_any());
    let (queued, running) = ctx.queues.load(&namespace, &name);
    status::apply_load(
        &mut next,
        &status::Load {
            queued,
            running,
            flagged: ctx.queues.flagged(&namespace, &name),
            namespaces: pool
                .spec
                .sharing
                .as_ref()
                .map(|sharing| {
                    status::namespace_queues(
                        sharing,
                        &ctx.queues.namespace_loads(&namespace, &name),
                    )
                })
                .unwrap_or_default(),
        },
    );
    if pool.spec.known_answer.is_some() || pool.spec.quarantine.is_some() {
        status::set_provers_healthy(&mut next, &Time(now));
    }
    // scaling: to zero when idle, back to one when jobs wait (minReplicas 0)
    let idle_for = if queued + running > 0 {
        Duration::ZERO
    } else {
        ctx.queues.idle_for(&namespace, &name)
    };
    let scaling = scaling::decide(&pool, queued, running, idle_for);
    set_condition(
        &mut next.conditions,
        new_condition(
            pool_condition::SCALING_ACTIVE,
            if scaling.active {
                cond::TRUE
            } else {
                cond::FALSE
            },
            scaling.reason,
            scaling.message.clone(),
            pool.metadata.generation,
            Time(now),
        ),
    );
    let to_publish = events::transitions(pool.status.as_ref(), &next, &decision);
    let rotation = match &decision.event {
        Some(rollout::RolloutEvent::Started { .. }) => Some("started"),
        Some(rollout::RolloutEvent::RolledBack { .. }) => Some("rolled_back"),
        Some(rollout::RolloutEvent::Failed { .. }) => Some("failed"),
        None => None,
    };
    if status::write(&ctx.client, &pool, &next).await? {
        info!(
            ready = next.ready_replicas,
            replicas = next.replicas,
            rollout = ?decision.status.rollout,
            "status updated"
        );
    }
    if let Some(result) = rotation {
        ctx.metrics.rotation(&namespace, &name, result);
    }
    for ev in to_publish {
        publish(ctx, &pool, ev).await;
    }
    // After the status, so a failing resize never holds the status back.
    resize(ctx, &pool, &scaling).await?;

    let recheck = match decision.status.rollout {
        Some(RolloutState::Progressing | RolloutState::Failed) => ROLLOUT_RECHECK,
        _ => RESYNC,
    };
    Ok(Action::requeue(
        scaling.recheck.map_or(recheck, |r| r.min(recheck)),
    ))
}

/// Applies a scale-to-zero or wake decision through the pool's scale subresource, with an
/// Event and a metric.
async fn resize(ctx: &Context, pool: &ProverPool, scaling: &scaling::Scaling) -> Result<(), Error> {
    let (replicas, reason) = match scaling.resize {
        scaling::Resize::Keep => return Ok(()),
        scaling::Resize::ToZero => (0, "ScaledToZero"),
        scaling::Resize::Wake => (1, "WokeUp"),
    };
    let api: Api<ProverPool> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch_scale(
        &pool.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Scale)?;
    info!(replicas, reason, "resized the pool");
    ctx.metrics.scaling_decision(reason);
    publish(
        ctx,
        pool,
        events::event(EventType::Normal, reason, "Scale", scaling.message.clone()),
    )
    .await;
    Ok(())
}

async fn publish(ctx: &Context, pool: &ProverPool, ev: kube::runtime::events::Event) {
    if let Err(error) = ctx.recorder.publish(&ev, &pool.object_ref(&())).await {
        warn!(%error, reason = %ev.reason, "publishing an Event failed");
    }
}

/// A pool object that does not parse: say so on its status and wait for a fix.
async fn report_malformed(obj: &DynamicObject, ctx: &Context, error: &str) -> Result<(), Error> {
    let problem = Invalid::Malformed(error.to_string());
    warn!(%problem, "pool cannot be read");
    ctx.metrics.reconcile_failed(CONTROLLER, problem.reason());
    let resource = ApiResource::erase::<ProverPool>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &obj.namespace().unwrap_or_default(),
        &resource,
    );
    let condition = zkfleet_crds::v1alpha1::new_condition(
        pool_condition::READY,
        zkfleet_crds::v1alpha1::status::FALSE,
        problem.reason(),
        problem.to_string(),
        obj.metadata.generation,
        Time(Timestamp::now()),
    );
    let patch = serde_json::json!({
        "apiVersion": zkfleet_crds::v1alpha1::API_VERSION,
        "kind": "ProverPool",
        "status": {"conditions": [condition]},
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| StatusError::PatchStatus {
        name: obj.name_any(),
        source,
    })?;
    Ok(())
}
