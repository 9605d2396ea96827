//! `ProverPool`: a scalable set of prover pods that share one backend and one set of proving
//! parameters, and take `ProofJob`s from the operator's dispatcher.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use zkfleet_contract::systems::{self, ProofSystem, proof_system};

use super::schema;

/// Desired state of a pool of prover pods.
// Each printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zkfleet.dev",
    version = "v1alpha1",
    kind = "ProverPool",
    plural = "proverpools",
    namespaced,
    doc = "A pool of zero-knowledge prover pods sharing one backend and one set of proving \
           parameters. ProofJobs of its namespace, and of the namespaces its spec.sharing \
           admits, name it to be proved by it.",
    status = "ProverPoolStatus",
    derive = "PartialEq",
    shortname = "pp",
    category = "zkfleet",
    // Without this a job would fall back from the pool to the pool itself, and each move
    // restarts its retries. The rule sees only `metadata.name`, so a fallback naming this
    // pool with its namespace spelled out is caught by the dispatcher, which never moves
    // a job to a pool it has already been on.
    validation = Rule::new(
        "!has(self.spec.jobDefaults) || !has(self.spec.jobDefaults.fallback) || \
         !self.spec.jobDefaults.fallback.pools.exists(p, p.name == self.metadata.name && !has(p.namespace))"
    ).message("spec.jobDefaults.fallback.pools must not name this pool itself: a job cannot fall back to the pool it leaves"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Backend", type_ = "string", json_path = ".spec.backend.type"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Prover pods that exist"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Prover pods ready to take jobs"
    ),
    printcolumn(
        name = "Parameters",
        type_ = "string",
        json_path = ".status.parameters.current.version",
        description = "Parameters version the ready pods serve"
    ),
    printcolumn(
        name = "Queued",
        type_ = "integer",
        json_path = ".status.queue.queued",
        description = "Jobs waiting for a free slot"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProverPoolSpec {
    /// Number of prover pods. Defaults to 1; 0 stops the pool without deleting it. This field
    /// is the target of the scale subresource: `kubectl scale` and the HorizontalPodAutoscaler
    /// created for `autoscaling` write it, so leave it out of GitOps manifests when autoscaling
    /// is on.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Which prover the pods run, and its settings.
    pub backend: Backend,

    /// Container image of the prover pods. Defaults to the zkfleet-prover image the operator
    /// was installed with. For the exec backend, use an image that contains both the
    /// zkfleet-prover binary and the prover command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Proofs one pod runs at the same time (1 to 64, default 1). Raise it only when one proof
    /// leaves the pod's CPU or GPU idle; each slot needs its own share of `resources`.
    #[serde(default = "default_slots_per_replica")]
    #[schemars(range(min = 1, max = 64))]
    pub slots_per_replica: i32,

    /// GPUs each prover pod requests. Leave unset for CPU-only pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,

    /// The proving parameters every pod loads (proving key, circuit, verifying key). Changing
    /// this field starts a parameters rotation: new pods load and check the new files before
    /// old pods drain, so no accepted job is dropped.
    pub parameters: ParametersSpec,

    /// Queue-driven autoscaling. When set, the operator creates a HorizontalPodAutoscaler that
    /// scales this pool on its queue depth, and scales idle pools to zero when `minReplicas`
    /// is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Defaults for ProofJobs that run on this pool; a job's own fields override them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_defaults: Option<JobDefaults>,

    /// Sharing the pool with other namespaces: which may submit jobs to it, and each one's
    /// weighted share of its slots. Unset: only jobs of the pool's own namespace run on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<super::SharingSpec>,

    /// A known-answer check: a proof whose right answer is known, which each pod must get right
    /// (verified, with the expected public signals or outputs) before it takes jobs, and again
    /// every `everySeconds` or `everyProofs`. A pod that gets it wrong is quarantined. Checks
    /// pods serving `spec.parameters.version` (the answer belongs to those parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_answer: Option<super::KnownAnswer>,

    /// Quarantine pods whose proofs are rejected `afterRejectedProofs` times. Unset: a pod with
    /// rejected proofs is only flagged (`status.flaggedPods`) and its jobs retried elsewhere;
    /// the known-answer check quarantines either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<super::QuarantineSpec>,

    /// Answer a job from the verified result of an earlier job with the same parameters digest
    /// and input digest (as read when each was leased), without proving it again. Only proofs
    /// kept on the earlier job's status are reused (not ones in the artifact store, which go
    /// when that job does), and never for an input named by URL (the operator only knows the
    /// sha256 its tenant declared, not the content). Unset: every job is proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_reuse: Option<super::ResultReuse>,

    /// What the pool's compute costs, so each ProofJob shows what its proof cost
    /// (`status.usage.cost`) and the operator's metrics sum cost per pool and namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,

    /// Compute resources of the prover container (CPU, memory). GPUs are requested through
    /// `gpu`, not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a node must have to run prover pods, passed to the pod template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the prover pods, for example for tainted GPU nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and pod affinity of the prover pods, passed to the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How prover pods spread across zones or nodes, passed to the pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the prover pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// RuntimeClass of the prover pods, for example `nvidia` on clusters that select the GPU
    /// container runtime that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
}

impl Default for ProverPoolSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            backend: Backend::default(),
            image: None,
            slots_per_replica: default_slots_per_replica(),
            gpu: None,
            parameters: ParametersSpec::default(),
            autoscaling: None,
            job_defaults: None,
            sharing: None,
            result_reuse: None,
            known_answer: None,
            quarantine: None,
            pricing: None,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            topology_spread_constraints: Vec::new(),
            priority_class_name: None,
            runtime_class_name: None,
        }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_slots_per_replica() -> i32 {
    1
}

/// The prover a pool runs. `type` selects it; only the settings block of that type may be set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'exec' || has(self.exec)")
    .message("backend.type exec needs backend.exec with the prover command"))]
#[x_kube(validation = Rule::new("self.type == 'exec' || !has(self.exec)")
    .message("backend.exec is only allowed when backend.type is exec"))]
#[x_kube(validation = Rule::new("self.type == 'groth16-bn254' || !has(self.groth16)")
    .message("backend.groth16 is only allowed when backend.type is groth16-bn254"))]
pub struct Backend {
    /// Prover backend: `groth16-bn254` (built-in Groth16 prover over BN254, compatible with
    /// circom and snarkjs) or `exec` (runs a command-line prover such as snarkjs, rapidsnark
    /// or Stone).
    #[serde(rename = "type")]
    pub kind: BackendKind,

    /// Settings of the `groth16-bn254` backend. Optional; the defaults fit a circom circuit
    /// whose files are named `circuit.zkey`, `circuit.wasm` and `verification_key.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groth16: Option<Groth16Settings>,

    /// Settings of the `exec` backend. Required when `type` is `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecSettings>,
}

impl Backend {
    /// The exec profile, when `type` is `exec`.
    pub fn exec_profile(&self) -> Option<ExecProfile> {
        match self.kind {
            BackendKind::Exec => self.exec.as_ref().map(|e| e.profile),
            BackendKind::Groth16Bn254 => None,
        }
    }

    /// True when the pool's proofs are Groth16 over BN254 (the built-in prover, snarkjs,
    /// rapidsnark): the operator verifies them itself with the pool's verifying key, and jobs
    /// carry circuit inputs or a witness.
    pub fn proves_groth16(&self) -> bool {
        self.exec_profile()
            .is_none_or(|p| p.system().proves_groth16())
    }

    /// The named input files each job of the pool carries, for provers that take files.
    pub fn input_files(&self) -> &'static [&'static str] {
        self.exec_profile().map_or(&[], |p| p.system().input_files)
    }
}

/// Prover backend names.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Built-in Groth16 prover over BN254 (circom / snarkjs compatible).
    #[default]
    #[serde(rename = "groth16-bn254")]
    Groth16Bn254,
    /// Any command-line prover, run from a command template.
    #[serde(rename = "exec")]
    Exec,
}

impl BackendKind {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Groth16Bn254 => "groth16-bn254",
            Self::Exec => "exec",
        }
    }
}

/// Settings of the built-in Groth16 (BN254) prover.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Groth16Settings {
    /// Name of the proving key in `parameters.files`. Default `circuit.zkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub zkey: Option<String>,

    /// Name of the circuit's witness generator (circom `.wasm`) in `parameters.files`, used for
    /// jobs whose input format is `circuit-inputs`. Default `circuit.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub wasm: Option<String>,

    /// Name of the circuit's constraint system (circom `.r1cs`) in `parameters.files`. Default
    /// `circuit.r1cs`, used when the parameters list a file of that name. With it, the prover
    /// and the verifier check a `witness` job's `.wtns` against every constraint before
    /// anything else, and a witness that breaks one fails the job `InputRejected` at once,
    /// without a proof spent on it or a pod blamed. Without it, such a witness is caught only
    /// when its proof is rejected on two pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub r1cs: Option<String>,

    /// Name of the verifying key (snarkjs `verification_key.json`) in `parameters.files`.
    /// Default `verification_key.json`; when that file is absent, the key is read from the
    /// zkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub verification_key: Option<String>,

    /// Where MSM and NTT run: `auto` (GPU when the pod has one, else CPU), `cpu` or `gpu`
    /// (fail instead of falling back to CPU). Default `auto`. The prover has no GPU code yet:
    /// `auto` proves on the CPU, and the pods of a `gpu` pool are not ready and say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<Acceleration>,
}

/// Where the Groth16 prover runs its heavy arithmetic.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = schema::drop_description)]
pub enum Acceleration {
    /// GPU when one is visible to the pod, otherwise CPU.
    #[default]
    Auto,
    /// CPU only.
    Cpu,
    /// GPU only; a pod without a usable GPU reports not ready.
    Gpu,
}

/// Settings of the `exec` backend: a command-line prover run once per proof.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecSettings {
    /// Command and arguments run for each proof, without a shell. Placeholders are replaced
    /// per proof: `{input}` (input file), `{witness}` (witness file, for the `witness`
    /// format), `{params}` (directory holding `parameters.files`), `{proof}` and `{public}`
    /// (files the command must write), `{workdir}` (scratch directory). Example for snarkjs:
    /// `["snarkjs", "groth16", "prove", "{params}/circuit.zkey", "{witness}", "{proof}",
    /// "{public}"]`.
    #[schemars(length(min = 1, max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,

    /// The proof system the command speaks, one of zkfleet's table of proof systems (the
    /// schema lists their names). Groth16 systems write snarkjs `proof.json`/`public.json`,
    /// which the operator verifies with the pool's key; STARK and VM systems write their own
    /// proofs, checked by the pool's verifier Deployment with the system's verifier. Default
    /// `snarkjs`.
    #[serde(default)]
    pub profile: ExecProfile,

    /// Seconds one run of the command may take before it is killed and the attempt fails
    /// (1 to 86400, default 3600).
    #[serde(default = "default_exec_timeout_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,

    /// Optional command that verifies a proof, with the same placeholders; exit status 0 means
    /// valid. Used for profiles the operator cannot verify itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 4096)))]
    pub verify_command: Option<Vec<String>>,
}

fn default_exec_timeout_seconds() -> i32 {
    3600
}

/// The proof system an exec prover speaks: a row of zkfleet's table of proof systems
/// ([`zkfleet_contract::systems::PROOF_SYSTEMS`]), named in manifests by its name. The CRD
/// lists the names, so the API server refuses any other.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub struct ExecProfile(&'static ProofSystem);

impl ExecProfile {
    /// The profile's name in manifests, which is also the proof system's name in the prover.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The proof system's row in the table.
    pub fn system(self) -> &'static ProofSystem {
        self.0
    }

    /// The profile named `name`, when the table has it.
    pub fn named(name: &str) -> Option<Self> {
        proof_system(name).map(Self)
    }
}

impl Default for ExecProfile {
    fn default() -> Self {
        Self::named("snarkjs").expect("snarkjs is in the table")
    }
}

impl TryFrom<String> for ExecProfile {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Self::named(&name).ok_or_else(|| {
            format!(
                "unknown exec profile {name:?}: use one of {}",
                systems::names().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl From<ExecProfile> for String {
    fn from(profile: ExecProfile) -> String {
        profile.name().to_string()
    }
}

impl JsonSchema for ExecProfile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExecProfile".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": systems::names().collect::<Vec<_>>(),
        })
    }
}

/// GPUs requested by each prover pod.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// GPUs per pod (0 to 16). 0 keeps the other GPU settings but requests none.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub count: i32,

    /// Extended resource name the GPUs are requested under. Default `nvidia.com/gpu`.
    #[serde(default = "default_gpu_resource_name")]
    #[schemars(length(min = 1, max = 253))]
    pub resource_name: String,

    /// When true (default), pods request the GPUs and only run on nodes that have them. When
    /// false, pods request no GPU, prefer GPU nodes, and prove on CPU where none is free.
    #[serde(default = "default_true")]
    pub required: bool,
}

impl Default for GpuSpec {
    fn default() -> Self {
        Self {
            count: 0,
            resource_name: default_gpu_resource_name(),
            required: true,
        }
    }
}

fn default_gpu_resource_name() -> String {
    "nvidia.com/gpu".into()
}

fn default_true() -> bool {
    true
}

/// Proving parameters: a version label, where the files come from, and their checksums.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParametersSpec {
    /// Label of this parameters set, for example `v3` or `2024-06-ceremony`. ProofJobs can pin
    /// it with `spec.parametersVersion`; status and printer columns show it.
    #[schemars(length(min = 1, max = 63))]
    pub version: String,

    /// Where the files are fetched from. Set exactly one of `url`, `configMap`, `pvc`.
    pub source: ParametersSource,

    /// Files the pods load, each with its SHA-256. A pod only reports ready once every file is
    /// present and matches its checksum.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub files: Vec<ParameterFile>,
}

/// Where parameter files come from. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.url) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.pvc) ? 1 : 0) == 1"
).message("parameters.source must set exactly one of url, configMap or pvc"))]
pub struct ParametersSource {
    /// Base URL of the files: `https://` or an object store URI (`s3://`, `gs://`, `az://`).
    /// Each file is fetched from `<url>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(https|s3|gs|az)://[^/]+')")
        .message("parameters.source.url must start with https://, s3://, gs:// or az:// followed by a host or bucket"))]
    pub url: Option<String>,

    /// ConfigMap in the pool's namespace whose keys (in `data` or `binaryData`) are the file
    /// names. Fits small circuits only: a ConfigMap holds at most 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,

    /// PersistentVolumeClaim holding the files, mounted read-only into every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
}

/// The one place a `ParametersSource` names, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParametersLocation<'a> {
    /// `source.url`.
    Url(&'a str),
    /// `source.configMap`.
    ConfigMap(&'a ConfigMapSource),
    /// `source.pvc`.
    Pvc(&'a PvcSource),
}

impl ParametersSource {
    /// Where the files are, or `None` unless exactly one source is set (the API server refuses
    /// such pools, so `None` means the object bypassed validation).
    pub fn location(&self) -> Option<ParametersLocation<'_>> {
        let mut locations = [
            self.url.as_deref().map(ParametersLocation::Url),
            self.config_map.as_ref().map(ParametersLocation::ConfigMap),
            self.pvc.as_ref().map(ParametersLocation::Pvc),
        ]
        .into_iter()
        .flatten();
        match (locations.next(), locations.next()) {
            (Some(location), None) => Some(location),
            _ => None,
        }
    }
}

/// A ConfigMap that holds parameter files.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap, in the pool's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A directory on a PersistentVolumeClaim that holds parameter files.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    /// Name of the PersistentVolumeClaim, in the pool's namespace. Use a ReadOnlyMany or
    /// ReadWriteMany claim when the pool has more than one pod.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// Directory inside the volume that contains the files. Default: the volume root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
}

/// One parameter file and its checksum.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParameterFile {
    /// File name, without directories, for example `circuit.zkey`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._-]+$') && self != '.' && self != '..'")
        .message("parameters.files[].name must be a plain file name (letters, digits, '.', '_', '-'), without '/'"))]
    pub name: String,

    /// SHA-256 of the file as 64 lowercase hex characters (the output of `sha256sum`).
    #[schemars(schema_with = "schema::sha256")]
    pub sha256: String,
}

/// Queue-driven autoscaling of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest prover pods (0 to 1000, default 1). 0 lets an idle pool scale to zero; the first
    /// queued job wakes it.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,

    /// Most prover pods (1 to 1000). Must be at least `minReplicas`.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Queued jobs per pod the autoscaler aims for (1 to 1000, default `slotsPerReplica`).
    /// Running jobs count too, at `slotsPerReplica` per pod, so pods still proving are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_queue_per_replica: Option<i32>,

    /// Seconds the autoscaler waits after the queue shrinks before removing pods (0 to 3600,
    /// default 300). Busy pods are always removed last.
    #[serde(default = "default_scale_down_stabilization_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,

    /// With `minReplicas: 0`, seconds a pool must have no queued or running jobs before it
    /// scales to zero (0 to 86400, default 600).
    #[serde(default = "default_idle_seconds_before_zero")]
    #[schemars(range(min = 0, max = 86400))]
    pub idle_seconds_before_zero: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: 1,
            target_queue_per_replica: None,
            scale_down_stabilization_seconds: default_scale_down_stabilization_seconds(),
            idle_seconds_before_zero: default_idle_seconds_before_zero(),
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

fn default_scale_down_stabilization_seconds() -> i32 {
    300
}

fn default_idle_seconds_before_zero() -> i32 {
    600
}

/// Defaults applied to the pool's ProofJobs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobDefaults {
    /// Seconds one attempt may run before it is abandoned and retried (1 to 86400, default
    /// 600).
    #[serde(default = "default_job_timeout_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,

    /// Retries after a retryable failure (lost pod, expired lease, failed verification) before
    /// the job fails (0 to 10, default 3).
    #[serde(default = "default_job_max_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: i32,

    /// Verify every proof with the pool's verifying key before the job succeeds (default
    /// true). Turn off only for backends the operator cannot verify and that have no
    /// `verifyCommand`.
    #[serde(default = "default_true")]
    pub verify: bool,

    /// Fallback pools of jobs that set none themselves (see ProofJob `spec.fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<super::Fallback>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            timeout_seconds: default_job_timeout_seconds(),
            max_retries: default_job_max_retries(),
            verify: true,
            fallback: None,
        }
    }
}

/// Prices of the pool's compute. A job's cost is its GPU-hours times `gpuHour` plus its
/// CPU-hours times `cpuHour` (see ProofJob `status.usage`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Price of one GPU for one hour, as a decimal, for example `"2.49"`. A job's GPU time is
    /// the GPU time its attempts held: proving time times the pool's GPUs per pod, divided by
    /// its slots per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?$')")
        .message("pricing.gpuHour must be a plain decimal such as \"2.49\""))]
    pub gpu_hour: Option<String>,

    /// Price of one CPU core for one hour, as a decimal, for example `"0.04"`. A job's CPU
    /// time is what its prover process measured while proving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?$')")
        .message("pricing.cpuHour must be a plain decimal such as \"0.04\""))]
    pub cpu_hour: Option<String>,

    /// Currency of the prices, shown beside every cost (default `USD`).
    #[serde(default = "default_currency")]
    #[schemars(length(min = 1, max = 8))]
    pub currency: String,
}

impl Pricing {
    /// The price per hour of GPU and of CPU time; an unset or unreadable price is 0.
    pub fn hourly(&self) -> (f64, f64) {
        let read = |p: &Option<String>| p.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0.0);
        (read(&self.gpu_hour), read(&self.cpu_hour))
    }
}

fn default_currency() -> String {
    "USD".into()
}

/// Default attempt timeout of a ProofJob, in seconds.
pub const DEFAULT_JOB_TIMEOUT_SECONDS: i32 = 600;
/// Default retry budget of a ProofJob.
pub const DEFAULT_JOB_MAX_RETRIES: i32 = 3;

fn default_job_timeout_seconds() -> i32 {
    DEFAULT_JOB_TIMEOUT_SECONDS
}

fn default_job_max_retries() -> i32 {
    DEFAULT_JOB_MAX_RETRIES
}

/// Observed state of a pool, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProverPoolStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Prover pods that exist (read by `kubectl scale` and the autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Prover pods that have loaded their parameters and take jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Prover pods running the current pod template and parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,

    /// Label selector of the pool's pods, in `kubectl get -l` form (used by the autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Parameters currently served, the previous set, and the rollout between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ParametersStatus>,

    /// Jobs queued for and running on this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,

    /// Proof slots of the pool and pods that cannot be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStatus>,

    /// Pods whose proofs failed verification recently (at most 16, oldest first: a pod
    /// flagged again moves to the end). Jobs they held were retried on other pods; check the
    /// node's GPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub flagged_pods: Vec<FlaggedPod>,

    /// Current state as conditions: `Ready`, `ParametersReady`, `Progressing`,
    /// `CapacityAvailable`, `ScalingActive`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
}

/// Parameters served by the pool and the state of a rotation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParametersStatus {
    /// Parameters the ready pods serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<ParametersRevision>,

    /// Parameters served before the last rotation, kept for rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ParametersRevision>,

    /// State of the latest rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,

    /// Human-readable detail about the rollout, for example which file failed its checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// When the latest rotation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_start_time: Option<Time>,
}

/// One parameters set, identified by its label and content digest.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParametersRevision {
    /// `spec.parameters.version` of this set.
    pub version: String,

    /// Digest over the names and checksums of all files (`sha256:<hex>`); pods are labelled
    /// with it, and pinned jobs only go to pods serving it.
    pub digest: String,
}

/// State of a parameters rotation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[schemars(transform = schema::drop_description)]
pub enum RolloutState {
    /// Every pod serves the current parameters.
    #[default]
    Complete,
    /// New pods are loading the new parameters; old pods still serve the previous set.
    Progressing,
    /// The new parameters did not become ready in time and the pool went back to the previous
    /// set; see `message` and the `ParametersReady` condition.
    RolledBack,
    /// No pod could load the parameters and there is no previous set to return to.
    Failed,
}

/// Queue depth of a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Jobs waiting for a free slot.
    #[serde(default)]
    pub queued: i32,

    /// Jobs being proved now.
    #[serde(default)]
    pub running: i32,

    /// Each namespace with queued or running jobs on the pool: its weight, its jobs and the
    /// share of the slots it is due (at most 50, the busiest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<super::NamespaceQueue>,
}

/// Proving capacity of a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CapacityStatus {
    /// Proof slots of all ready pods (`readyReplicas × slotsPerReplica`).
    #[serde(default)]
    pub slots: i32,

    /// Slots not holding a job right now.
    #[serde(default)]
    pub free_slots: i32,

    /// Pods the scheduler cannot place, for example for lack of free GPUs.
    #[serde(default)]
    pub unschedulable_replicas: i32,

    /// Why pods cannot be scheduled, as reported by the scheduler (for example
    /// `Insufficient nvidia.com/gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_reason: Option<String>,
}

/// A pod whose proof failed verification.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlaggedPod {
    /// Pod name.
    pub pod: String,

    /// Node the pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// Why the pod was flagged: `VerificationFailed` (a proof did not verify), or
    /// `Quarantined` (it takes no more jobs and was deleted; see `message`).
    pub reason: String,

    /// What happened, for a quarantined pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// When it was flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "backend": {"type": "groth16-bn254"},
            "parameters": {
                "version": "v1",
                "source": {"configMap": {"name": "params"}},
                "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}],
            },
        })
    }

    #[test]
    fn minimal_spec_takes_defaults() {
        let spec: ProverPoolSpec = serde_json::from_value(minimal()).unwrap();
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.slots_per_replica, 1);
        assert_eq!(spec.backend.kind, BackendKind::Groth16Bn254);
        assert!(spec.gpu.is_none() && spec.autoscaling.is_none());
        assert!(matches!(
            spec.parameters.source.location(),
            Some(ParametersLocation::ConfigMap(ConfigMapSource { name })) if name == "params"
        ));
    }

    #[test]
    fn serializes_without_nulls_or_empty_lists() {
        let spec: ProverPoolSpec = serde_json::from_value(minimal()).unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        let mut expected = minimal();
        expected["replicas"] = json!(1);
        expected["slotsPerReplica"] = json!(1);
        assert_eq!(value, expected);
    }

    #[test]
    fn full_spec_round_trips() {
        let spec = ProverPoolSpec {
            replicas: 3,
            backend: Backend {
                kind: BackendKind::Exec,
                groth16: None,
                exec: Some(ExecSettings {
                    command: vec!["rapidsnark".into(), "{params}/circuit.zkey".into()],
                    profile: ExecProfile::named("rapidsnark").unwrap(),
                    timeout_seconds: 120,
                    verify_command: None,
                }),
            },
            gpu: Some(GpuSpec {
                count: 2,
                ..GpuSpec::default()
            }),
            parameters: ParametersSpec {
                version: "v2".into(),
                source: ParametersSource {
                    pvc: Some(PvcSource {
                        claim_name: "params".into(),
                        path: Some("multiplier".into()),
                    }),
                    ..ParametersSource::default()
                },
                files: vec![ParameterFile {
                    name: "circuit.zkey".into(),
                    sha256: "0".repeat(64),
                }],
            },
            autoscaling: Some(AutoscalingSpec {
                min_replicas: 0,
                max_replicas: 4,
                ..AutoscalingSpec::default()
            }),
            job_defaults: Some(JobDefaults::default()),
            node_selector: [("gpu".to_string(), "a100".to_string())].into(),
            ..ProverPoolSpec::default()
        };
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(value["backend"]["type"], "exec");
        assert_eq!(value["backend"]["exec"]["profile"], "rapidsnark");
        assert_eq!(value["gpu"]["resourceName"], "nvidia.com/gpu");
        assert_eq!(value["autoscaling"]["minReplicas"], 0);
        assert_eq!(value["parameters"]["source"]["pvc"]["claimName"], "params");
        let back: ProverPoolSpec = serde_json::from_value(value).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn status_round_trips() {
        let status = ProverPoolStatus {
            replicas: Some(2),
            ready_replicas: Some(1),
            selector: Some("app.kubernetes.io/instance=gpu-pool".into()),
            parameters: Some(ParametersStatus {
                current: Some(ParametersRevision {
                    version: "v1".into(),
                    digest: format!("sha256:{}", "1".repeat(64)),
                }),
                rollout: Some(RolloutState::RolledBack),
                ..ParametersStatus::default()
            }),
            queue: Some(QueueStatus {
                queued: 5,
                running: 2,
                ..QueueStatus::default()
            }),
            ..ProverPoolStatus::default()
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["parameters"]["rollout"], "RolledBack");
        assert_eq!(value["readyReplicas"], 1);
        assert!(value.get("conditions").is_none());
        assert_eq!(
            serde_json::from_value::<ProverPoolStatus>(value).unwrap(),
            status
        );
    }

    #[test]
    fn location_needs_exactly_one_source() {
        let mut source = ParametersSource {
            url: Some("s3://bucket/p".into()),
            ..ParametersSource::default()
        };
        assert_eq!(
            source.location(),
            Some(ParametersLocation::Url("s3://bucket/p"))
        );
        source.pvc = Some(PvcSource::default());
        assert_eq!(source.location(), None);
        assert_eq!(ParametersSource::default().location(), None);
    }
}
