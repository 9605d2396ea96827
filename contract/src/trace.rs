//! Traces: one ProofJob is one trace, from its creation to its verified status, across the
//! operator and the prover pod that proved it. Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then spans go out over OTLP/HTTP (protobuf),
//! configured by the standard `OTEL_*` variables.
//!
//! **Ids from the job.** A job outlives any one operator process (a failover, a restart), and
//! its spans are made by several processes, so its trace cannot live in anyone's memory. Every
//! id is derived from the job instead: the trace id is the job's UID (a UUID is 128 bits, as a
//! trace id is), the root span's id is derived from the UID, and each attempt's span id from
//! the UID and the attempt number. Whoever records an attempt or the job's end, whenever it
//! does, makes spans that fit into the same tree. The lease hands the attempt's context to the
//! pod as a W3C `traceparent`, so the pod's spans hang under its attempt.
//!
//! Spans that end a piece of the tree are made when that piece ends, with their real start
//! times: the root (`ProofJob`, creation to the final status) when the job succeeds or fails,
//! an attempt when its result is recorded or its lease lapses.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, global};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use sha2::{Digest as _, Sha256};

/// Name of the tracer (the instrumentation scope) of both deployables.
pub const TRACER: &str = "zkfleet";

/// The exporter while tracing is on; [`Telemetry::shutdown`] sends what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts exporting spans of `service` when an OTLP endpoint is configured; `Ok(None)`
    /// (tracing off, every span a no-op) when none is. Call from within a tokio runtime: the
    /// exporter sends its requests on it.
    pub fn from_env(service: &str) -> Result<Option<Self>, String> {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
        if !configured {
            return Ok(None);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "tracing must start inside the tokio runtime".to_string())?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("the OTLP client: {e}"))?;
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(OnTokio { client, runtime })
            .build()
            .map_err(|e| format!("the OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(JobIds)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        global::set_tracer_provider(provider.clone());
        Ok(Some(Self { provider }))
    }

    /// Sends the spans still buffered and stops. Blocks: call it off the async threads
    /// (`spawn_blocking`), since the export itself runs on the runtime.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("tracing: could not send the last spans: {e}");
        }
    }
}

/// The trace of the job with UID `uid`.
pub fn job_trace_id(uid: &str) -> TraceId {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    match u128::from_str_radix(&hex, 16) {
        Ok(id) if hex.len() == 32 && id != 0 => TraceId::from(id),
        // Not a UUID (tests name jobs freely): any fixed function of it will do.
        _ => TraceId::from(u128::from_be_bytes(
            derive(&["trace", uid])[..16].try_into().expect("16 bytes"),
        )),
    }
}

/// The root span of the job with UID `uid`: the job from creation to its final status.
pub fn job_span_id(uid: &str) -> SpanId {
    span_id(&["job", uid])
}

/// The span of attempt `attempt` of the job with UID `uid`.
pub fn attempt_span_id(uid: &str, attempt: u32) -> SpanId {
    span_id(&["attempt", uid, &attempt.to_string()])
}

/// A context whose parent is the job's root span.
pub fn job_context(uid: &str) -> Context {
    remote_parent(job_trace_id(uid), job_span_id(uid))
}

/// A context whose parent is the span of one attempt of the job.
pub fn attempt_context(uid: &str, attempt: u32) -> Context {
    remote_parent(job_trace_id(uid), attempt_span_id(uid, attempt))
}

/// The W3C `traceparent` the lease of an attempt carries to its pod.
pub fn traceparent(uid: &str, attempt: u32) -> String {
    use opentelemetry::propagation::TextMapPropagator as _;
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&attempt_context(uid, attempt), &mut headers);
    headers.remove("traceparent").unwrap_or_default()
}

/// The context a `traceparent` names; an empty context (spans start a trace of their own)
/// when it is malformed.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    let headers = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&headers)
}

/// Starts a span with the ids given rather than fresh ones (a job's root span, an attempt's
/// span: their ids were handed out before they were made), under `parent`.
pub fn start_span_with_ids(
    builder: SpanBuilder,
    parent: &Context,
    trace_id: TraceId,
    span_id: SpanId,
) -> global::BoxedSpan {
    NEXT_IDS.with(|next| next.set(Some((trace_id, span_id))));
    let span = builder.start_with_context(&global::tracer(TRACER), parent);
    NEXT_IDS.with(|next| next.set(None));
    span
}

fn remote_parent(trace_id: TraceId, span_id: SpanId) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

fn derive(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"zkfleet-trace");
    for part in parts {
        hash.update([0]);
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

fn span_id(parts: &[&str]) -> SpanId {
    let bytes: [u8; 8] = derive(parts)[..8].try_into().expect("8 bytes");
    // The all-zero id is invalid; a hash lands there with probability 2^-64.
    SpanId::from(u64::from_be_bytes(bytes).max(1))
}

thread_local! {
    /// Ids [`start_span_with_ids`] asked for, taken by the next span this thread starts.
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Fresh random ids, except for a span [`start_span_with_ids`] starts.
#[derive(Debug)]
struct JobIds;

impl IdGenerator for JobIds {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_IDS.with(Cell::get) {
            Some((trace_id, _)) => trace_id,
            None => RandomIdGenerator::default().new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT_IDS.with(Cell::get) {
            Some((_, span_id)) => span_id,
            None => RandomIdGenerator::default().new_span_id(),
        }
    }
}

/// The OTLP exporter's HTTP client: the reqwest both deployables already build, its requests
/// run on their tokio runtime. (The exporter calls it from its own batch thread, which has no
/// runtime; awaiting a task's handle needs none.)
#[derive(Debug)]
struct OnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnTokio {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6b1f3c2a-0d4e-4f5a-9b8c-7d6e5f4a3b2c";

    #[test]
    fn a_jobs_ids_come_from_its_uid_alone() {
        assert_eq!(
            job_trace_id(UID),
            TraceId::from_hex("6b1f3c2a0d4e4f5a9b8c7d6e5f4a3b2c").unwrap()
        );
        assert_eq!(job_span_id(UID), job_span_id(UID));
        assert_ne!(job_span_id(UID), attempt_span_id(UID, 1));
        assert_ne!(attempt_span_id(UID, 1), attempt_span_id(UID, 2));
        assert_ne!(job_trace_id("not-a-uuid"), TraceId::INVALID);
    }

    #[test]
    fn the_leases_traceparent_names_the_attempt_and_reads_back() {
        let header = traceparent(UID, 3);
        assert_eq!(
            header,
            format!(
                "00-6b1f3c2a0d4e4f5a9b8c7d6e5f4a3b2c-{}-01",
                attempt_span_id(UID, 3)
            )
        );
        let read = context_from_traceparent(&header);
        let parent = read.span().span_context().clone();
        assert_eq!(parent.trace_id(), job_trace_id(UID));
        assert_eq!(parent.span_id(), attempt_span_id(UID, 3));
        assert!(parent.is_sampled() && parent.is_remote());
        let garbage = context_from_traceparent("00-zz");
        assert!(!garbage.span().span_context().is_valid());
    }
}
