//! `ProofJob`: one proof requested from a `ProverPool`, with its result and verification on the
//! status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Message the API server returns when a submitted job's spec is edited.
pub const SPEC_IMMUTABLE_MESSAGE: &str =
    "spec of a ProofJob cannot change after it is submitted; create a new ProofJob";

/// Most attempts of one job lost to the infrastructure (`status.disruptions`) that are retried
/// without counting against its `maxRetries`; past it they count as well, so a job that brings
/// down every pod it runs on (say, by exhausting its memory) still ends.
pub const MAX_DISRUPTIONS: i32 = 10;

/// Most characters of inline input (`input.inline.json` or `input.inline.base64`).
pub const MAX_INLINE_INPUT_CHARS: u32 = 262_144;

/// A proof to compute. The whole spec is frozen once the job is created.
// Each printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zkfleet.dev",
    version = "v1alpha1",
    kind = "ProofJob",
    plural = "proofjobs",
    namespaced,
    doc = "A request for one zero-knowledge proof from a ProverPool in the same namespace. \
           The operator queues it, runs it on a prover pod, verifies the proof and writes it \
           to the status.",
    status = "ProofJobStatus",
    derive = "PartialEq",
    shortname = "pj",
    category = "zkfleet",
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.poolRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.attemptCount",
        description = "Attempts started, including retries"
    ),
    printcolumn(
        name = "Proving ms",
        type_ = "integer",
        json_path = ".status.provingMillis",
        description = "Milliseconds the successful attempt spent proving"
    ),
    printcolumn(
        name = "Verified",
        type_ = "boolean",
        json_path = ".status.verification.verified"
    ),
    printcolumn(
        name = "Cost",
        type_ = "string",
        json_path = ".status.usage.totalCost",
        description = "What every attempt of the job cost at its pool's pricing",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message(SPEC_IMMUTABLE_MESSAGE))]
#[x_kube(validation = Rule::new(
    "!has(self.fallback) || has(self.poolRef.namespace) || \
     !self.fallback.pools.exists(p, !has(p.namespace) && p.name == self.poolRef.name)"
).message("fallback.pools must not name the pool of poolRef: a job cannot fall back to the pool it leaves"))]
pub struct ProofJobSpec {
    /// The ProverPool that proves this job: in the job's namespace, or in `poolRef.namespace`
    /// when that pool's `spec.sharing.namespaceSelector` admits the job's namespace.
    pub pool_ref: PoolRef,

    /// The proof input: exactly one of `inline`, `configMapKeyRef`, `secretKeyRef` or `url`,
    /// and its `format` (Groth16 pools); or `files`, the named input files of a STARK or VM
    /// prover (exec pools with the `stone` or `miden` profile).
    pub input: ProofInput,

    /// Only run on pods serving this `spec.parameters.version` of the pool. Without it, the
    /// job runs on whatever parameters the pool serves when it is dispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub parameters_version: Option<String>,

    /// Higher runs first among the pool's queued jobs (-1000 to 1000, default 0). Jobs with
    /// the same priority run in creation order.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,

    /// Seconds one attempt may run before it is abandoned and retried (1 to 86400). Default:
    /// the pool's `jobDefaults.timeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: Option<i32>,

    /// Retries after a retryable failure before the job fails (0 to 10). Default: the pool's
    /// `jobDefaults.maxRetries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: Option<i32>,

    /// Pools to move to when `poolRef` cannot serve the job: after it waited `afterSeconds`
    /// there without starting, or once its retries there are used up. Default: the
    /// `jobDefaults.fallback` of the pool `poolRef` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,

    /// Delete the job this many seconds after it succeeds or fails (0 to 2592000, 30 days).
    /// Without it, finished jobs are kept until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2_592_000))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// Where a job goes when its pool cannot serve it.
// The rules compare only pools named without a namespace: the API server's cost estimate
// loses the maxLength of a nullable string (`namespace`) and refuses any rule comparing two
// as too costly. A pool named twice with its namespace spelled out is caught by the
// dispatcher, which never moves a job back to a pool of its chain (`later_pools`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.pools.all(p, has(p.namespace) || self.pools.exists_one(q, !has(q.namespace) && q.name == p.name))"
).message("fallback.pools names a pool more than once: list each pool once"))]
pub struct Fallback {
    /// The pools to try, in order, after `poolRef` (at most 4). A job moves only to a pool
    /// that runs the same backend with the same parameters digest as the pool it leaves (the
    /// proof must be the same proof), and, in another namespace, admits the job's namespace;
    /// pools that do not are skipped.
    #[schemars(length(min = 1, max = 4))]
    pub pools: Vec<PoolRef>,

    /// Move on once the job has waited this many seconds in a pool's queue without starting
    /// there (1 to 86400). Unset: only when its retries on a pool are used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub after_seconds: Option<i32>,
}

/// The pool a job moved to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CurrentPool {
    /// Namespace of the pool.
    pub namespace: String,

    /// Name of the pool.
    pub name: String,

    /// Attempts the job had made on earlier pools; its retries count afresh here.
    #[serde(default)]
    pub since_attempt: i32,
}

/// Reference to the ProverPool of a job.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolRef {
    /// Name of the ProverPool.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0")
        .message("poolRef.name must name a ProverPool"))]
    pub name: String,

    /// Namespace of the ProverPool; default the job's own. A pool in another namespace runs
    /// the job only when its `spec.sharing.namespaceSelector` selects the job's namespace; the
    /// job, its input and its result stay in the job's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl PoolRef {
    /// The pool's namespace, for a job in `job_namespace`.
    pub fn namespace_for<'a>(&'a self, job_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(job_namespace)
    }
}

/// Input of a proof. Exactly one source is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.inline) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) + (has(self.url) ? 1 : 0) + (has(self.files) ? 1 : 0) == 1"
).message("input must set exactly one of inline, configMapKeyRef, secretKeyRef, url or files"))]
#[x_kube(validation = Rule::new("!has(self.files) || !has(self.sha256)")
    .message("input.sha256 checks a single input; with input.files, set sha256 on each file"))]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)")
    .message("input.sha256 is required with input.url: set it to the sha256sum of the file"))]
pub struct ProofInput {
    /// What the input is: `circuit-inputs` (JSON signals; the pod computes the witness with
    /// the circuit's wasm) or `witness` (a binary `.wtns` witness). Default `circuit-inputs`.
    #[serde(default)]
    pub format: InputFormat,

    /// The input itself, in the manifest. For inputs up to 256 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineInput>,

    /// A key of a ConfigMap in the job's namespace that holds the input (in `data` or
    /// `binaryData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,

    /// A key of a Secret in the job's namespace that holds the input, for private inputs. The
    /// Secret must carry the label `zkfleet.dev/proof-input: "true"`: its owner's consent that
    /// ProofJobs of the namespace read it (whoever may create ProofJobs need not be allowed to
    /// read Secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,

    /// Where to download the input: `https://` or an object store URI (`s3://`, `gs://`,
    /// `az://`). Requires `sha256`. The prover pods fetch it without credentials of their own
    /// (so only public objects can be read this way): for a private object, give a presigned
    /// `https://` URL, whose query is never repeated in status, logs or Events. At most 1 GiB,
    /// downloaded within 300 s. A mismatch with `sha256` fails the job without saying what
    /// the object's digest is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(https|s3|gs|az)://[^/]+')")
        .message("input.url must start with https://, s3://, gs:// or az:// followed by a host or bucket"))]
    pub url: Option<String>,

    /// SHA-256 of the input as 64 lowercase hex characters. Required with `url`; with the other
    /// sources it is optional and checked when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::sha256")]
    pub sha256: Option<String>,

    /// Named input files, for provers that take several (1 to 16, names unique): a Stone job's
    /// `public_input.json`, `private_input.json`, `trace.bin` and `memory.bin` (one
    /// `cairo-run --proof_mode` output); a Miden job's `inputs.json`. Each file comes from
    /// exactly one of `inline`, `configMapKeyRef`, `secretKeyRef` or `url`. `format` does not
    /// apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), schema_with = "input_files_schema")]
    pub files: Option<Vec<InputFile>>,
}

/// `input.files`: a list keyed by file name, so the API server refuses two files with one name.
fn input_files_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<InputFile>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["name"]),
    );
    schema.insert("minItems".into(), 1.into());
    schema.insert("maxItems".into(), 16.into());
    schema
}

/// One named input file of a job, from exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.inline) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1"
).message("each of input.files must set exactly one of inline, configMapKeyRef, secretKeyRef or url"))]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)")
    .message("a file of input.files with a url needs sha256: set it to the sha256sum of the file"))]
pub struct InputFile {
    /// The name the prover knows the file by, for example `trace.bin` (letters, digits, `.`,
    /// `_` and `-`).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_][A-Za-z0-9._-]*$')")
        .message("input.files[].name must be a plain file name: letters, digits, '.', '_' and '-', not starting with '.' or '-'"))]
    pub name: String,

    /// The file itself, in the manifest (at most 262144 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineInput>,

    /// A key of a ConfigMap in the job's namespace that holds the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,

    /// A key of a Secret in the job's namespace that holds the file, for private inputs. The
    /// Secret must carry the label `zkfleet.dev/proof-input: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,

    /// Where to download the file: `https://` or an object store URI. Requires `sha256`.
    /// Fetched as `input.url` is: without the pods' credentials, at most 1 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(https|s3|gs|az)://[^/]+')")
        .message("input.files[].url must start with https://, s3://, gs:// or az:// followed by a host or bucket"))]
    pub url: Option<String>,

    /// SHA-256 of the file as 64 lowercase hex characters. Required with `url`; checked when
    /// set with the other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::sha256")]
    pub sha256: Option<String>,
}

impl InputFile {
    /// The file's source, as [`ProofInput::source`] gives a single input's.
    pub fn source(&self) -> Option<InputSource<'_>> {
        one_source(
            self.inline.as_ref(),
            self.config_map_key_ref.as_ref(),
            self.secret_key_ref.as_ref(),
            self.url.as_deref(),
        )
    }
}

fn one_source<'a>(
    inline: Option<&'a InlineInput>,
    config_map: Option<&'a KeyRef>,
    secret: Option<&'a KeyRef>,
    url: Option<&'a str>,
) -> Option<InputSource<'a>> {
    let mut sources = [
        inline.map(InputSource::Inline),
        config_map.map(InputSource::ConfigMapKey),
        secret.map(InputSource::SecretKey),
        url.map(InputSource::Url),
    ]
    .into_iter()
    .flatten();
    match (sources.next(), sources.next()) {
        (Some(source), None) => Some(source),
        _ => None,
    }
}

/// The one source a `ProofInput` names, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputSource<'a> {
    /// `input.inline`.
    Inline(&'a InlineInput),
    /// `input.configMapKeyRef`.
    ConfigMapKey(&'a KeyRef),
    /// `input.secretKeyRef`.
    SecretKey(&'a KeyRef),
    /// `input.url`.
    Url(&'a str),
}

impl ProofInput {
    /// The input's source, or `None` unless exactly one is set (the API server refuses such
    /// jobs, so `None` means the object bypassed validation, or the job carries `files`).
    pub fn source(&self) -> Option<InputSource<'_>> {
        if self.files.is_some() {
            return None;
        }
        one_source(
            self.inline.as_ref(),
            self.config_map_key_ref.as_ref(),
            self.secret_key_ref.as_ref(),
            self.url.as_deref(),
        )
    }
}

/// Kinds of proof input.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// Circuit input signals as JSON (circom `input.json`).
    #[default]
    CircuitInputs,
    /// A computed witness (snarkjs `.wtns`).
    Witness,
}

/// Input carried in the manifest. Exactly one of `json` or `base64` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.json) != has(self.base64)")
    .message("input.inline must set exactly one of json or base64"))]
pub struct InlineInput {
    /// The input as JSON text, for example `{"a": "3", "b": "11"}` (a YAML block scalar
    /// `json: |` keeps it readable). At most 262144 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_INLINE_INPUT_CHARS))]
    pub json: Option<String>,

    /// The input as standard base64, for binary inputs such as a witness. At most 262144
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_INLINE_INPUT_CHARS))]
    pub base64: Option<String>,
}

/// A key of a ConfigMap or Secret in the job's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key inside it.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Observed state of a job, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProofJobStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Where the job is: `Pending` (accepted, not yet queued), `Queued` (waiting for a free
    /// slot), `Running` (a pod holds its lease), `Succeeded` (proof verified and on the status)
    /// or `Failed` (see `reason` and `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,

    /// Current state as conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Attempts started, including retries and attempts no longer listed in `attempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_count: Option<i32>,

    /// Attempts lost to the infrastructure rather than to the job: the pod went away or
    /// stopped heartbeating (killed, evicted, its node lost, no leader to renew its lease).
    /// They are retried without counting against `maxRetries`, up to
    /// [`MAX_DISRUPTIONS`] of them, as a Kubernetes Job's `podFailurePolicy` ignores
    /// disruptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruptions: Option<i32>,

    /// The most recent attempts, oldest first (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub attempts: Vec<Attempt>,

    /// Parameters version used by the successful (or latest) attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_version: Option<String>,

    /// Digest of the parameters used (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_digest: Option<String>,

    /// The pool the job is on, when it moved from `spec.poolRef` to a fallback pool; once it
    /// succeeded, the pool that proved it. Unset: `spec.poolRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<CurrentPool>,

    /// Digest of the input the latest attempt proved (`sha256:<hex>` of the input as read
    /// when it was leased), which a later job with the same input and parameters may reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,

    /// When the job entered the pool's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Time>,

    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the job succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Milliseconds the successful attempt spent proving (witness generation included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proving_millis: Option<i64>,

    /// The proof, once the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ProofResult>,

    /// Outcome of checking the proof against the pool's verifying key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,

    /// Compute the job used and what it cost, counted as each attempt ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<JobUsage>,

    /// Machine-readable cause of the last failure, for example `InputNotFound`,
    /// `ParametersVersionUnavailable`, `LeaseExpired` or `VerificationFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// What went wrong and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Whether the last failure is retried (a lost pod, an expired lease) or final (bad input,
    /// unknown pool, retries used up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

/// Compute a job used. GPU time is the GPU time its attempts held: an attempt's proving time
/// (from lease to result, or to the lease's end when its pod was lost) times the pool's GPUs per
/// pod, divided by its slots per replica; that is what a cloud bills, whatever the kernels used.
/// CPU time is what the prover process measured while it worked on the attempt (the process's
/// CPU time, split between the attempts that ran together).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobUsage {
    /// CPU-milliseconds of the successful attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<i64>,

    /// GPU-milliseconds of the successful attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_millis: Option<i64>,

    /// CPU-milliseconds over every attempt, retries included.
    #[serde(default)]
    pub total_cpu_millis: i64,

    /// GPU-milliseconds over every attempt, retries included.
    #[serde(default)]
    pub total_gpu_millis: i64,

    /// What the successful attempt cost at the pool's `pricing`, as a decimal; unset when the
    /// pool has no pricing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,

    /// What every attempt cost together, as a decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<String>,

    /// Currency of `cost` and `totalCost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Lifecycle phase of a ProofJob.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[schemars(transform = schema::drop_description)]
pub enum JobPhase {
    /// Accepted by the operator, not yet queued.
    #[default]
    Pending,
    /// Waiting in the pool's queue for a free slot.
    Queued,
    /// A prover pod holds the job's lease.
    Running,
    /// The proof was computed, verified and written to `result`.
    Succeeded,
    /// The job failed for good; see `reason` and `message`.
    Failed,
}

impl JobPhase {
    /// Whether the job has finished (no further phase changes).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One run of a job on a prover pod.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Attempt number, starting at 1.
    pub attempt: i32,

    /// Pod that held the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,

    /// Node the pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// When the lease was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,

    /// Deadline of the lease; the attempt is abandoned if the pod has not heartbeated by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_deadline: Option<Time>,

    /// How the attempt ended; unset while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,

    /// Detail about the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// CPU-milliseconds the prover measured for this attempt; unset when the pod ended
    /// without reporting (a lost pod, an expired lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<i64>,

    /// GPU-milliseconds this attempt held (see `status.usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_millis: Option<i64>,
}

/// How an attempt ended.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[schemars(transform = schema::drop_description)]
pub enum AttemptOutcome {
    /// The proof was produced and verified.
    Succeeded,
    /// The prover reported an error.
    Failed,
    /// The pod stopped heartbeating and its lease ran out.
    LeaseExpired,
    /// The attempt ran past its timeout.
    TimedOut,
    /// The proof did not verify; the pod is flagged on the pool.
    VerificationFailed,
}

/// A computed proof. Small proofs are inline; large ones are stored and referenced.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProofResult {
    /// The proof as JSON (snarkjs `proof.json`), when small enough to keep on the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub proof: Option<serde_json::Map<String, serde_json::Value>>,

    /// Public signals as decimal strings (snarkjs `public.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_signals: Option<Vec<String>>,

    /// What a STARK or VM proof commits to, as its proof system reports it: for Miden the
    /// `programHash` and the `stackOutputs`; for Stone the Cairo program's `output`. Kept on
    /// the status even when the proof itself is stored elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub public_outputs: Option<serde_json::Map<String, serde_json::Value>>,

    /// Where the proof is stored when it is too large for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,

    /// SHA-256 of the stored proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,

    /// Size of the stored proof in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,

    /// Set when this proof was not computed for this job but reused: the verified result of an
    /// earlier job with the same parameters digest and input digest (the pool's
    /// `resultReuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<ReusedFrom>,
}

/// The earlier job whose proof a job reused.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReusedFrom {
    /// UID of the earlier job.
    pub uid: String,

    /// Name of the earlier job, when it is in this job's namespace (a job of another
    /// namespace is not named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Result of verifying a proof. A proof that fails verification never reaches the status: its
/// attempt fails with `ProofRejected` and the job is retried.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// True when the proof was checked and verified; false only together with `skipped`.
    pub verified: bool,

    /// True when the pool turns verification off (`jobDefaults.verify: false`): the proof was
    /// not checked by anyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,

    /// Who checked the proof: `operator` (Groth16, with the pool's verifying key) or
    /// `verifier/<pod>` (the pool's verifier, a process apart from the pod that proved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,

    /// Milliseconds verification took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_millis: Option<i64>,

    /// What the proof was checked to prove, as the pool's verifier derived it from this job's
    /// own input and the pool's parameters (never from the proof): Groth16 `publicSignals`;
    /// Miden `programHash` and `operandStack`; Stone the `output`, `nSteps` and `layout` of
    /// the job's public input. A proof of any other statement is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::json_object")]
    pub statement: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_spec_takes_defaults_and_round_trips() {
        let value = json!({
            "poolRef": {"name": "cpu-pool"},
            "input": {"inline": {"json": "{\"a\": \"3\"}"}},
        });
        let spec: ProofJobSpec = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(spec.input.format, InputFormat::CircuitInputs);
        assert_eq!(spec.priority, 0);
        assert!(matches!(spec.input.source(), Some(InputSource::Inline(_))));

        let mut expected = value;
        expected["input"]["format"] = json!("circuit-inputs");
        expected["priority"] = json!(0);
        assert_eq!(serde_json::to_value(&spec).unwrap(), expected);
    }

    #[test]
    fn url_input_round_trips() {
        let spec = ProofJobSpec {
            pool_ref: PoolRef {
                name: "gpu-pool".into(),
                namespace: None,
            },
            input: ProofInput {
                format: InputFormat::Witness,
                url: Some("gs://inputs/w.wtns".into()),
                sha256: Some("f".repeat(64)),
                ..ProofInput::default()
            },
            parameters_version: Some("v2".into()),
            priority: -5,
            timeout_seconds: Some(60),
            max_retries: Some(0),
            fallback: None,
            ttl_seconds_after_finished: Some(3600),
        };
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(value["input"]["format"], "witness");
        assert_eq!(value["poolRef"]["name"], "gpu-pool");
        assert_eq!(value["ttlSecondsAfterFinished"], 3600);
        assert_eq!(serde_json::from_value::<ProofJobSpec>(value).unwrap(), spec);
        assert_eq!(
            spec.input.source(),
            Some(InputSource::Url("gs://inputs/w.wtns"))
        );
    }

    #[test]
    fn two_sources_are_no_source() {
        let input = ProofInput {
            inline: Some(InlineInput {
                json: Some("{}".into()),
                base64: None,
            }),
            secret_key_ref: Some(KeyRef {
                name: "s".into(),
                key: "k".into(),
            }),
            ..ProofInput::default()
        };
        assert_eq!(input.source(), None);
    }

    #[test]
    fn status_round_trips_with_phase_names() {
        let status = ProofJobStatus {
            phase: Some(JobPhase::Succeeded),
            attempt_count: Some(2),
            attempts: vec![
                Attempt {
                    attempt: 1,
                    pod: Some("gpu-pool-0".into()),
                    outcome: Some(AttemptOutcome::LeaseExpired),
                    ..Attempt::default()
                },
                Attempt {
                    attempt: 2,
                    pod: Some("gpu-pool-1".into()),
                    outcome: Some(AttemptOutcome::Succeeded),
                    ..Attempt::default()
                },
            ],
            proving_millis: Some(1234),
            result: Some(ProofResult {
                proof: Some(
                    json!({"pi_a": ["1", "2", "1"], "protocol": "groth16", "curve": "bn128"})
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
                public_signals: Some(vec!["33".into()]),
                ..ProofResult::default()
            }),
            verification: Some(Verification {
                verified: true,
                verifier_millis: Some(8),
                verifier: Some("operator".into()),
                skipped: false,
                statement: None,
            }),
            ..ProofJobStatus::default()
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["phase"], "Succeeded");
        assert_eq!(value["attempts"][0]["outcome"], "LeaseExpired");
        assert_eq!(value["result"]["proof"]["protocol"], "groth16");
        assert_eq!(value["result"]["publicSignals"], json!(["33"]));
        assert_eq!(
            serde_json::from_value::<ProofJobStatus>(value).unwrap(),
            status
        );
    }

    #[test]
    fn phases_serialize_as_kubernetes_names() {
        let names: Vec<_> = [
            JobPhase::Pending,
            JobPhase::Queued,
            JobPhase::Running,
            JobPhase::Succeeded,
            JobPhase::Failed,
        ]
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
        assert_eq!(
            names,
            vec!["Pending", "Queued", "Running", "Succeeded", "Failed"]
        );
        assert!(JobPhase::Failed.is_finished() && !JobPhase::Running.is_finished());
    }
}
