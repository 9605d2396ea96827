//! The spans the operator adds to a job's trace (see [`zkfleet_contract::trace`] for how one
//! job is one trace): `admit` (creation to queued), `queue` (waiting for a slot, once per
//! attempt), `attempt` (lease to recorded result; the pod's `prove` span hangs under it),
//! `verify` (checking the proof), and the root `ProofJob` (creation to its final status),
//! made when the job succeeds or fails. Every span is a no-op while tracing is off.
//!
//! Attributes name the job, its pool, pod and outcome; never its input, proof or Secrets.

use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status};
use opentelemetry::{Context, global};
use zkfleet_contract::trace::{
    TRACER, attempt_context, attempt_span_id, job_context, job_span_id, job_trace_id,
    start_span_with_ids,
};
use zkfleet_crds::v1alpha1::ProofJob;

use crate::dispatcher::status::Charge;

fn identity(job: &ProofJob) -> Vec<KeyValue> {
    vec![
        KeyValue::new("k8s.namespace.name", job.namespace().unwrap_or_default()),
        KeyValue::new("zkfleet.job", job.name_any()),
        KeyValue::new("zkfleet.pool", job.spec.pool_ref.name.clone()),
    ]
}

fn at(time: Timestamp) -> SystemTime {
    SystemTime::from(time)
}

fn builder(
    name: &'static str,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
) -> SpanBuilder {
    SpanBuilder::from_name(name)
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attributes)
}

/// Ends `span` at `end`, marked as an error when there is one.
fn end(mut span: global::BoxedSpan, end: SystemTime, error: Option<String>) {
    if let Some(why) = error {
        span.set_status(Status::error(why));
    }
    span.end_with_timestamp(end);
}

/// A finished span under `parent`, from `start` to `stop`.
fn record(
    name: &'static str,
    parent: &Context,
    start: SystemTime,
    stop: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
) {
    let span = builder(name, SpanKind::Internal, start, attributes)
        .start_with_context(&global::tracer(TRACER), parent);
    end(span, stop, error);
}

/// The job was checked and entered its pool's queue (or was refused).
pub fn admitted(job: &ProofJob, refusal: Option<&str>) {
    let Some(uid) = job.uid() else { return };
    let start = job
        .creation_timestamp()
        .map_or_else(SystemTime::now, |t| at(t.0));
    record(
        "admit",
        &job_context(&uid),
        start,
        SystemTime::now(),
        identity(job),
        refusal.map(str::to_string),
    );
}

/// Attempt `attempt` was leased to `pod`: the job waited in the queue from when it was queued,
/// or from its previous attempt's end, until now.
pub fn leased(job: &ProofJob, attempt: u32, pod: &str) {
    let Some(uid) = job.uid() else { return };
    let status = job.status.clone().unwrap_or_default();
    let since = status
        .attempts
        .iter()
        .filter_map(|a| a.end_time.as_ref())
        .chain(status.queued_at.as_ref())
        .map(|t| t.0)
        .max();
    let mut attributes = identity(job);
    attributes.push(KeyValue::new("zkfleet.attempt", i64::from(attempt)));
    attributes.push(KeyValue::new("k8s.pod.name", pod.to_string()));
    record(
        "queue",
        &job_context(&uid),
        since.map_or_else(SystemTime::now, at),
        SystemTime::now(),
        attributes,
        None,
    );
}

/// The proof of attempt `attempt` was checked by `verifier`, which took `took`, until now.
pub fn verified(
    job: &ProofJob,
    attempt: u32,
    verifier: &str,
    took: Duration,
    rejection: Option<String>,
) {
    let Some(uid) = job.uid() else { return };
    let stop = SystemTime::now();
    let mut attributes = identity(job);
    attributes.push(KeyValue::new("zkfleet.verifier", verifier.to_string()));
    record(
        "verify",
        &attempt_context(&uid, attempt),
        stop - took,
        stop,
        attributes,
        rejection,
    );
}

/// Attempt `attempt` on `pod` ended as `outcome` (an `AttemptOutcome`, or a reason).
pub fn attempt_ended(
    job: &ProofJob,
    attempt: u32,
    pod: &str,
    outcome: &str,
    charge: &Charge,
    failed: Option<&str>,
) {
    let Some(uid) = job.uid() else { return };
    // From the lease to the result's arrival (the pod's own measure of it); it ends when the
    // result is recorded, after verification.
    let stop = SystemTime::now();
    let start =
        charge.ended_at.unwrap_or(stop) - Duration::from_millis(charge.wall_millis.max(0) as u64);
    let mut attributes = identity(job);
    attributes.extend([
        KeyValue::new("zkfleet.attempt", i64::from(attempt)),
        KeyValue::new("k8s.pod.name", pod.to_string()),
        KeyValue::new("zkfleet.outcome", outcome.to_string()),
        KeyValue::new("zkfleet.gpu_millis", charge.gpu_millis),
    ]);
    if let Some(cpu) = charge.cpu_millis {
        attributes.push(KeyValue::new("zkfleet.cpu_millis", cpu));
    }
    let span = start_span_with_ids(
        builder("attempt", SpanKind::Internal, start, attributes),
        &job_context(&uid),
        job_trace_id(&uid),
        attempt_span_id(&uid, attempt),
    );
    end(span, stop, failed.map(str::to_string));
}

/// The job reached its final status, `outcome` (`Succeeded`, or the reason it failed): the
/// root span, from the job's creation until now.
pub fn finished(job: &ProofJob, outcome: &str) {
    let Some(uid) = job.uid() else { return };
    let start = job
        .creation_timestamp()
        .map_or_else(SystemTime::now, |t| at(t.0));
    let status = job.status.clone().unwrap_or_default();
    let mut attributes = identity(job);
    attributes.extend([
        KeyValue::new("zkfleet.outcome", outcome.to_string()),
        KeyValue::new(
            "zkfleet.attempts",
            i64::from(status.attempt_count.unwrap_or(0)),
        ),
    ]);
    if let Some(cost) = status.usage.as_ref().and_then(|u| u.total_cost.clone()) {
        attributes.push(KeyValue::new("zkfleet.cost", cost));
    }
    let span = start_span_with_ids(
        builder("ProofJob", SpanKind::Server, start, attributes),
        &Context::new(),
        job_trace_id(&uid),
        job_span_id(&uid),
    );
    let failed = (outcome != "Succeeded").then(|| outcome.to_string());
    end(span, SystemTime::now(), failed);
}
