//! The ProofJob controller: validates each new job and queues it, or fails it for good with a
//! reason that says what to fix; deletes finished jobs after `ttlSecondsAfterFinished`; and
//! deletes a job's stored proof with it (the only finalizer zkfleet sets). Leases, results and
//! retries are the dispatcher's ([`crate::dispatcher`]).

pub mod input;
pub mod reuse;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};

use crate::artifacts::ArtifactStore;
use crate::dispatcher::status;
use crate::job_trace;
use crate::metrics::Metrics;
use input::InputError;

/// `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "proofjob";

/// Finalizer on jobs whose proof is in the artifact store: the stored proof is deleted before
/// the job goes away.
pub const ARTIFACT_FINALIZER: &str = "zkfleet.dev/proof-artifact";

/// What every pass shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The dispatcher's queues, which take every job this controller queues.
    pub queue: Arc<dyn JobQueue>,
    /// Where proofs too large for a status are stored (`None`: nowhere); this controller
    /// deletes them with their jobs.
    pub artifacts: Option<ArtifactStore>,
    /// The one namespace watched, or `None` for every namespace.
    pub watch_namespace: Option<String>,
}

/// Where queued jobs go: the dispatcher, seen through the two calls this controller makes, so
/// the two do not depend on each other.
pub trait JobQueue: Send + Sync {
    /// Takes in the newest copy of a job this controller wrote.
    fn observe(&self, job: ProofJob);
    /// Forgets a job being deleted.
    fn forget(&self, job: &ProofJob);
    /// A succeeded job of `namespace` (or of any namespace, when `across_namespaces`) whose
    /// verified proof was made on the pool `(namespace, name)` from these parameters and this
    /// input.
    fn reusable(
        &self,
        pool: (&str, &str),
        parameters_digest: &str,
        input_digest: &str,
        namespace: &str,
        across_namespaces: bool,
    ) -> Option<reuse::EarlierResult>;
}

/// Why a pass failed. All transient: the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing the job: {0}")]
    Api(#[from] kube::Error),
    #[error("deleting the stored proof: {0}")]
    Artifact(String),
}

impl Error {
    /// Variant name: the failures metric's `error` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Api(_) => "Api",
            Self::Artifact(_) => "Artifact",
        }
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let jobs: Api<ProofJob> = crate::scope::api(&ctx.client, ctx.watch_namespace.as_deref());
    // The controller's cache holds every ProofJob, finished ones too (for their TTL and
    // finalizer). Their managedFields are dropped on the way in: nothing here reads them, every
    // status write sends none, and at 10,000 jobs they are a good part of the operator's memory.
    let (reader, writer) = reflector::store();
    let jobs = watcher::watcher(jobs, watcher::Config::default())
        .default_backoff()
        .modify(|job| job.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(jobs, reader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "job reconcile did not run");
            }
        })
        .await;
}

fn error_policy(_job: Arc<ProofJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}

#[instrument(skip(job, ctx), fields(job = %job.name_any(), namespace = job.namespace().unwrap_or_default()))]
async fn reconcile(job: Arc<ProofJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconcile_started(CONTROLLER);
    let started = Instant::now();
    let result = reconcile_job(&job, &ctx).await;
    ctx.metrics
        .reconcile_finished(CONTROLLER, started.elapsed());
    result
}

async fn reconcile_job(job: &ProofJob, ctx: &Context) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<ProofJob> = Api::namespaced(ctx.client.clone(), &namespace);
    if job.metadata.deletion_timestamp.is_some() {
        return delete_artifact(job, &api, ctx).await;
    }
    match job.status.as_ref().and_then(|s| s.phase) {
        None | Some(JobPhase::Pending) => admit(job, &namespace, &api, ctx).await,
        Some(JobPhase::Queued | JobPhase::Running) => Ok(Action::await_change()),
        Some(JobPhase::Succeeded | JobPhase::Failed) => expire(job, &api).await,
    }
}

/// Validates a new job and writes `Queued`, or `Failed` with `InvalidSpec`/`InvalidInput`.
async fn admit(
    job: &ProofJob,
    namespace: &str,
    api: &Api<ProofJob>,
    ctx: &Context,
) -> Result<Action, Error> {
    let pool_namespace = job.spec.pool_ref.namespace_for(namespace);
    let pool = match ctx.watch_namespace.as_deref() {
        // This operator cannot see pools elsewhere; the check below refuses the job.
        Some(watched) if watched != pool_namespace => None,
        _ => {
            let pools: Api<ProverPool> = Api::namespaced(ctx.client.clone(), pool_namespace);
            pools.get_opt(&job.spec.pool_ref.name).await?
        }
    };
    // A pool of another namespace runs the job only with that pool's consent, which rests on
    // the labels of the job's namespace (read here, never the pool's own objects).
    let consent = if pool_namespace == namespace {
        Ok(())
    } else {
        let labels = match &pool {
            Some(_) => Api::<Namespace>::all(ctx.client.clone())
                .get_opt(namespace)
                .await?
                .map(|ns| ns.labels().clone()),
            None => None,
        };
        validate::admits(
            job,
            namespace,
            pool.as_ref(),
            labels.as_ref(),
            ctx.watch_namespace.as_deref(),
        )
    };
    let now = Time(Timestamp::now());
    let verdict = match consent.map(|()| validate::spec(job, namespace, pool.as_ref())) {
        Err(message) => Err((status::NAMESPACE_NOT_ADMITTED, message)),
        Ok(Err(message)) => Err((status::INVALID_SPEC, message)),
        Ok(Ok(())) => match input::resolve(&ctx.client, job).await {
            Ok(input) => Ok(input),
            Err(InputError::Invalid(message)) => Err((status::INVALID_INPUT, message)),
            Err(InputError::Api(e)) => return Err(e.into()),
        },
    };
    let reused = match (&verdict, &pool) {
        // Reuse saves work; when it cannot be checked, the job is proved as usual.
        (Ok(input), Some(pool)) => {
            reuse::find(&ctx.client, ctx.queue.as_ref(), job, namespace, pool, input)
                .await
                .unwrap_or_else(|error| {
                    warn!(%error, "could not look for a result to reuse; proving the job");
                    None
                })
        }
        _ => None,
    };
    let new_status = match (&verdict, &reused) {
        (Ok(_), Some(earlier)) => status::reused(job, earlier, &now),
        (Ok(_), None) => status::queued(job, &now),
        (Err((reason, message)), _) => status::invalid(job, reason, message.clone(), &now),
    };
    let stored = match status::write(api, job, new_status).await {
        Ok(stored) => stored,
        // Someone wrote in between; the watch brings the newer copy.
        Err(e) if status::is_conflict(&e) || status::is_not_found(&e) => {
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    match verdict {
        Ok(_) if reused.is_some() => {
            info!("answered with an earlier job's verified proof");
            ctx.metrics.job_finished(&stored, "Succeeded");
            ctx.metrics.result_reused(&stored);
            job_trace::admitted(&stored, None);
            job_trace::finished(&stored, "Succeeded");
        }
        Ok(_) => {
            info!("queued");
            job_trace::admitted(&stored, None);
        }
        Err((reason, message)) => {
            info!(reason, "refused");
            ctx.metrics.job_refused(&stored, reason);
            job_trace::admitted(&stored, Some(reason));
            job_trace::finished(&stored, reason);
            let event = Event {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(message),
                action: "Validate".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
                warn!(error = %e, "could not publish the event");
            }
        }
    }
    ctx.queue.observe(stored);
    Ok(Action::await_change())
}

/// Deletes a finished job once its `ttlSecondsAfterFinished` has passed.
async fn expire(job: &ProofJob, api: &Api<ProofJob>) -> Result<Action, Error> {
    let (Some(ttl), Some(finished)) = (
        job.spec.ttl_seconds_after_finished,
        job.status.as_ref().and_then(|s| s.completion_time.clone()),
    ) else {
        return Ok(Action::await_change());
    };
    let due = finished.0 + SignedDuration::from_secs(i64::from(ttl));
    let left = due.duration_since(Timestamp::now());
    if left.is_positive() {
        let wait = Duration::try_from(left).unwrap_or(Duration::from_secs(1));
        return Ok(Action::requeue(wait + Duration::from_millis(100)));
    }
    info!(
        ttl,
        "deleting the finished job: its ttlSecondsAfterFinished has passed"
    );
    match api
        .delete(&job.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if status::is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// A job being deleted: delete its stored proof, then let it go.
///
/// The object at the job's own key in the current store is deleted whether or not the status
/// names it (an upload that lost its race with the status still left it there). A status that
/// names a location in another store (the operator's `--artifacts-url` changed since) cannot
/// be cleaned up by this operator: a warning Event says where the proof was left, and the job
/// goes anyway, so neither it nor its namespace is stuck for good.
async fn delete_artifact(
    job: &ProofJob,
    api: &Api<ProofJob>,
    ctx: &Context,
) -> Result<Action, Error> {
    ctx.queue.forget(job);
    if !job.finalizers().iter().any(|f| f == ARTIFACT_FINALIZER) {
        return Ok(Action::await_change());
    }
    let (namespace, name, uid) = (
        job.namespace().unwrap_or_default(),
        job.name_any(),
        job.uid().unwrap_or_default(),
    );
    if let Some(store) = &ctx.artifacts {
        store
            .delete_for_job(&namespace, &name, &uid)
            .await
            .map_err(|e| Error::Artifact(e.to_string()))?;
    }
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.location.clone());
    match recorded {
        Some(location) if !ctx.artifacts.as_ref().is_some_and(|s| s.holds(&location)) => {
            warn!(%location, "the stored proof is in another artifact store; left in place");
            let event = Event {
                type_: EventType::Warning,
                reason: "ArtifactLeftInPlace".into(),
                note: Some(format!(
                    "the proof at {location} is not in this operator's artifact store ({}); delete it there by hand if it is no longer needed",
                    ctx.artifacts.as_ref().map_or("none", |s| s.url())
                )),
                action: "Delete".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
                warn!(error = %e, "could not publish the event");
            }
        }
        Some(location) => info!(%location, "deleted the stored proof"),
        None => {}
    }
    match remove_finalizer(api, job).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if status::is_not_found(&e) || status::is_conflict(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Adds [`ARTIFACT_FINALIZER`] to a job, keeping every other controller's finalizers: the
/// whole list is written at the `resourceVersion` it was read at, re-read on conflicts.
pub async fn add_artifact_finalizer(
    api: &Api<ProofJob>,
    job: &ProofJob,
) -> Result<(), kube::Error> {
    let mut current = job.clone();
    for _ in 0..5 {
        if current.finalizers().iter().any(|f| f == ARTIFACT_FINALIZER) {
            return Ok(());
        }
        let mut finalizers = current.finalizers().to_vec();
        finalizers.push(ARTIFACT_FINALIZER.into());
        let patch = json!({
            "metadata": {"resourceVersion": current.resource_version(), "finalizers": finalizers}
        });
        match api
            .patch(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if status::is_conflict(&e) => current = api.get(&current.name_any()).await?,
            Err(e) => return Err(e),
        }
    }
    // Still racing after five reads: let the caller retry later.
    Err(kube::Error::Api(
        kube::core::Status::failure(
            "the job kept changing while its finalizer was added",
            "Conflict",
        )
        .with_code(409)
        .boxed(),
    ))
}

/// Removes [`ARTIFACT_FINALIZER`], keeping the others, at the `resourceVersion` read.
async fn remove_finalizer(api: &Api<ProofJob>, job: &ProofJob) -> Result<(), kube::Error> {
    let remaining: Vec<_> = job
        .finalizers()
        .iter()
        .filter(|f| *f != ARTIFACT_FINALIZER)
        .cloned()
        .collect();
    let patch = json!({
        "metadata": {"resourceVersion": job.resource_version(), "finalizers": remaining}
    });
    api.patch(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}
