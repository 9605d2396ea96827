//! The pool's prover Deployment: image, env, GPU limits, scheduling pass-through, probes,
//! drain timing, a locked-down security context, the parameters volume and the node-local
//! parameters cache.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, HostPathVolumeSource, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt as _;
use zkfleet_crds::v1alpha1::{
    Acceleration, BackendKind, DEFAULT_JOB_TIMEOUT_SECONDS, ParametersLocation, ParametersSpec,
    ProverPool,
};

use super::{
    BuildContext, COMPONENT_PROVER, PARAMETERS_LABEL, POOL_LABEL, PROVER_METRICS_PORT,
    PROVER_METRICS_PORT_NAME, PROVER_PORT, PROVER_PORT_NAME, metadata, prover_name,
    selector_labels, token_secret_name,
};
use crate::params::{
    self, PREVIOUS_ANNOTATION, ROLLED_BACK_ANNOTATION, SERVING_ANNOTATION, Serving,
};

/// Name of the prover container.
pub const CONTAINER: &str = "prover";
/// Where the parameter files are in the container.
pub const PARAMETERS_DIR: &str = "/var/run/zkfleet/parameters";
/// Where the node-local cache of this parameters digest is mounted.
pub const CACHE_DIR: &str = "/var/cache/zkfleet/parameters";
/// Directory of the dispatcher token file.
pub const TOKEN_DIR: &str = "/var/run/secrets/zkfleet.dev/dispatcher";
/// uid and gid the prover runs as (the `nonroot` user of distroless-style images).
pub const PROVER_UID: i64 = 65532;

/// Seconds the preStop hook waits before SIGTERM, so that Service endpoints and the
/// dispatcher have stopped sending new work to a pod before it starts draining.
pub const PRE_STOP_SECONDS: i64 = 5;
/// Slack on top of the drain for the process to flush and exit after its last proof.
pub const EXIT_MARGIN_SECONDS: i64 = 15;

/// Seconds a pod may take to drain: a proof started just before SIGTERM may run for the
/// pool's job timeout (`jobDefaults.timeoutSeconds`), and is finished rather than dropped.
pub fn drain_seconds(pool: &ProverPool) -> i64 {
    i64::from(
        pool.spec
            .job_defaults
            .as_ref()
            .map_or(DEFAULT_JOB_TIMEOUT_SECONDS, |d| d.timeout_seconds),
    )
}

/// `terminationGracePeriodSeconds`: preStop pause, then the whole drain, then the exit margin,
/// so the kubelet never kills a pod that is still finishing an accepted proof.
pub fn termination_grace_seconds(pool: &ProverPool) -> i64 {
    PRE_STOP_SECONDS + drain_seconds(pool) + EXIT_MARGIN_SECONDS
}

/// The Deployment serving `serving.target`. Rotation state is recorded in annotations (see
/// [`Serving`]); only `serving.target` reaches the pod template, so a rollback is the previous
/// template applied again.
pub fn deployment(pool: &ProverPool, serving: &Serving, ctx: &BuildContext) -> Deployment {
    let parameters = &serving.target;
    let mut meta = metadata(pool, prover_name(pool), COMPONENT_PROVER);
    meta.annotations = Some(annotations(serving));

    let mut pod_labels = super::labels(pool, COMPONENT_PROVER);
    pod_labels.insert(
        POOL_LABEL.into(),
        pool.metadata.name.clone().unwrap_or_default(),
    );
    pod_labels.insert(PARAMETERS_LABEL.into(), params::fingerprint(parameters));

    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(pool.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(pool)),
                ..LabelSelector::default()
            },
            // Surge one new pod at a time and never take an old one down before its
            // replacement is ready: a rotation never drops below the pool's ready capacity.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(pool, parameters, ctx)),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn annotations(serving: &Serving) -> BTreeMap<String, String> {
    let json = |p: &ParametersSpec| serde_json::to_string(p).expect("ParametersSpec serializes");
    let mut annotations = BTreeMap::from([(SERVING_ANNOTATION.to_string(), json(&serving.target))]);
    if let Some(previous) = &serving.previous {
        annotations.insert(PREVIOUS_ANNOTATION.into(), json(previous));
    }
    if let Some(rolled_back) = &serving.rolled_back {
        annotations.insert(ROLLED_BACK_ANNOTATION.into(), rolled_back.clone());
    }
    annotations
}

fn pod_spec(pool: &ProverPool, parameters: &ParametersSpec, ctx: &BuildContext) -> PodSpec {
    let spec = &pool.spec;
    PodSpec {
        service_account_name: Some(prover_name(pool)),
        // Prover pods never talk to the Kubernetes API; they authenticate to the dispatcher
        // with the pool's token instead.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        containers: vec![container(pool, parameters, ctx)],
        volumes: Some(volumes(pool, parameters, ctx)),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
            .then(|| spec.topology_spread_constraints.clone()),
        priority_class_name: spec.priority_class_name.clone(),
        runtime_class_name: spec.runtime_class_name.clone(),
        termination_grace_period_seconds: Some(termination_grace_seconds(pool)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(PROVER_UID),
            run_as_group: Some(PROVER_UID),
            fs_group: Some(PROVER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

fn container(pool: &ProverPool, parameters: &ParametersSpec, ctx: &BuildContext) -> Container {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PROVER_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    Container {
        name: CONTAINER.into(),
        image: Some(
            pool.spec
                .image
                .clone()
                .unwrap_or_else(|| ctx.prover_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        // The image's entrypoint is the zkfleet-prover binary.
        args: Some(vec!["serve".into()]),
        env: Some(env(pool, parameters, ctx)),
        ports: Some(vec![
            ContainerPort {
                name: Some(PROVER_PORT_NAME.into()),
                container_port: PROVER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(PROVER_METRICS_PORT_NAME.into()),
                container_port: PROVER_METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        resources: Some(resources(pool)),
        // Ready only once every parameter file matched its sha256 and loaded.
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        volume_mounts: Some(volume_mounts(parameters)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// Name of the proving key in `parameters.files`.
pub fn zkey_name(pool: &ProverPool) -> &str {
    pool.spec
        .backend
        .groth16
        .as_ref()
        .and_then(|g| g.zkey.as_deref())
        .unwrap_or("circuit.zkey")
}

/// Name of the witness generator in `parameters.files`.
pub fn wasm_name(pool: &ProverPool) -> &str {
    pool.spec
        .backend
        .groth16
        .as_ref()
        .and_then(|g| g.wasm.as_deref())
        .unwrap_or("circuit.wasm")
}

/// Name of the constraint system in `parameters.files`.
pub fn r1cs_name(pool: &ProverPool) -> &str {
    pool.spec
        .backend
        .groth16
        .as_ref()
        .and_then(|g| g.r1cs.as_deref())
        .unwrap_or("circuit.r1cs")
}

fn env(pool: &ProverPool, parameters: &ParametersSpec, ctx: &BuildContext) -> Vec<EnvVar> {
    let sha = |name: &str| {
        parameters
            .files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.sha256.clone())
    };
    let mut env = vec![
        ("ZKFLEET_LISTEN", format!("0.0.0.0:{PROVER_PORT}")),
        (
            "ZKFLEET_METRICS_LISTEN",
            format!("0.0.0.0:{PROVER_METRICS_PORT}"),
        ),
        ("ZKFLEET_BACKEND", pool.spec.backend.kind.as_str().into()),
        ("ZKFLEET_PARAMETERS_VERSION", parameters.version.clone()),
        ("ZKFLEET_PARAMETERS_DIR", PARAMETERS_DIR.into()),
        (
            "ZKFLEET_ZKEY",
            format!("{PARAMETERS_DIR}/{}", zkey_name(pool)),
        ),
    ];
    if let Some(sha) = sha(zkey_name(pool)) {
        env.push(("ZKFLEET_ZKEY_SHA256", sha));
    }
    if let Some(sha) = sha(wasm_name(pool)) {
        env.push((
            "ZKFLEET_WASM",
            format!("{PARAMETERS_DIR}/{}", wasm_name(pool)),
        ));
        env.push(("ZKFLEET_WASM_SHA256", sha));
    }
    if let Some(sha) = sha(r1cs_name(pool)) {
        env.push((
            "ZKFLEET_R1CS",
            format!("{PARAMETERS_DIR}/{}", r1cs_name(pool)),
        ));
        env.push(("ZKFLEET_R1CS_SHA256", sha));
    }
    if let Some(ParametersLocation::Url(url)) = parameters.source.location() {
        env.push(("ZKFLEET_PARAMETERS_URL", url.into()));
    }
    // Every listed file is fetched and checked by the pod before it reports ready; the proof
    // system finds its own among them (a Miden pool's program, a Groth16 pool's keys).
    env.push((
        "ZKFLEET_PARAMETER_FILES",
        parameters
            .files
            .iter()
            .map(|f| format!("{}={}", f.name, f.sha256))
            .collect::<Vec<_>>()
            .join(","),
    ));
    env.extend([
        ("ZKFLEET_CACHE_DIR", CACHE_DIR.to_string()),
        ("ZKFLEET_SLOTS", pool.spec.slots_per_replica.to_string()),
        (
            "ZKFLEET_PROOF_TIMEOUT_SECONDS",
            drain_seconds(pool).to_string(),
        ),
        (
            "ZKFLEET_DRAIN_TIMEOUT_SECONDS",
            drain_seconds(pool).to_string(),
        ),
        (
            "ZKFLEET_DISPATCHER_TOKEN_FILE",
            format!("{TOKEN_DIR}/token"),
        ),
        ("ZKFLEET_LOG_FORMAT", "json".into()),
        // Agent mode: lease jobs of this pool from the operator's dispatcher.
        ("ZKFLEET_DISPATCHER_URL", ctx.dispatcher_url.clone()),
        ("ZKFLEET_POOL", pool.name_any()),
    ]);
    if let Some(acceleration) = pool
        .spec
        .backend
        .groth16
        .as_ref()
        .and_then(|g| g.acceleration)
    {
        let name = match acceleration {
            Acceleration::Auto => "auto",
            Acceleration::Cpu => "cpu",
            Acceleration::Gpu => "gpu",
        };
        env.push(("ZKFLEET_ACCELERATION", name.into()));
    }
    if let (BackendKind::Exec, Some(exec)) = (pool.spec.backend.kind, &pool.spec.backend.exec) {
        env.push(("ZKFLEET_EXEC_PROFILE", exec.profile.name().into()));
        // Arguments travel as a JSON list, so one may hold spaces; the pool's `{params}`
        // placeholder is the mounted parameters directory.
        let as_list = |command: &[String]| {
            let args: Vec<String> = command
                .iter()
                .map(|a| a.replace("{params}", PARAMETERS_DIR))
                .collect();
            serde_json::to_string(&args).expect("strings serialize")
        };
        env.push(("ZKFLEET_EXEC_TEMPLATE", as_list(&exec.command)));
        if let Some(verify) = &exec.verify_command {
            env.push(("ZKFLEET_EXEC_VERIFY_TEMPLATE", as_list(verify)));
        }
        env.push(("ZKFLEET_EXEC_WORKDIR", "/tmp".into()));
        env.push((
            "ZKFLEET_EXEC_TIMEOUT_SECONDS",
            exec.timeout_seconds.to_string(),
        ));
    }
    let mut env: Vec<EnvVar> = env
        .into_iter()
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        })
        .collect();
    // The pod names itself to the dispatcher, which checks the name against the API.
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        env.push(EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: field.into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    env.extend(ctx.prover_env.iter().cloned());
    env
}

fn resources(pool: &ProverPool) -> ResourceRequirements {
    let mut resources = pool.spec.resources.clone().unwrap_or_default();
    if let Some(gpu) = pool.spec.gpu.as_ref().filter(|g| g.required && g.count > 0) {
        // Extended resources are requested through limits; the request defaults to the limit.
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(gpu.resource_name.clone(), Quantity(gpu.count.to_string()));
    }
    resources
}

fn volumes(pool: &ProverPool, parameters: &ParametersSpec, ctx: &BuildContext) -> Vec<Volume> {
    let parameters_volume = match parameters.source.location() {
        Some(ParametersLocation::ConfigMap(cm)) => Volume {
            name: "parameters".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.name.clone(),
                default_mode: Some(0o444),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Some(ParametersLocation::Pvc(pvc)) => Volume {
            name: "parameters".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        },
        // URL sources are fetched by the pod into this directory.
        _ => empty_dir("parameters"),
    };
    vec![
        parameters_volume,
        parameters_cache(ctx),
        Volume {
            name: "dispatcher-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(token_secret_name(pool)),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(format!(
                    "{}Gi",
                    TMP_GIB_PER_SLOT * i64::from(pool.spec.slots_per_replica.max(1))
                ))),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// Scratch space per slot in the pod's `/tmp`: one input downloaded by URL (the prover caps
/// those at 1 GiB) and an exec prover's work directory. A bound, so that one tenant's job
/// cannot fill the node's disk; the kubelet evicts a pod past it.
const TMP_GIB_PER_SLOT: i64 = 4;

/// The node-local parameters cache: the configured node directory as a whole, because the
/// prover names every entry by its sha256, so sets never read each other's files. Not one
/// hostPath per digest: the kubelet would create each of those owned by root, unwritable by the
/// prover however the node prepared the parent. No path configured: a cache that lives as long
/// as the pod.
fn parameters_cache(ctx: &BuildContext) -> Volume {
    let path = ctx.parameters_cache_path.trim_end_matches('/');
    if path.is_empty() {
        return empty_dir("parameters-cache");
    }
    Volume {
        name: "parameters-cache".into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn volume_mounts(parameters: &ParametersSpec) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let mut parameters_mount = match parameters.source.location() {
        Some(ParametersLocation::Url(_)) | None => mount("parameters", PARAMETERS_DIR, false),
        _ => mount("parameters", PARAMETERS_DIR, true),
    };
    if let Some(ParametersLocation::Pvc(pvc)) = parameters.source.location() {
        parameters_mount.sub_path = pvc.path.clone().filter(|p| !p.is_empty());
    }
    vec![
        parameters_mount,
        mount("parameters-cache", CACHE_DIR, false),
        mount("dispatcher-token", TOKEN_DIR, true),
        mount("tmp", "/tmp", false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    fn build(yaml: &str) -> (ProverPool, Deployment) {
        let pool = pool(yaml);
        let deployment = deployment(&pool, &Serving::fresh(&pool.spec.parameters), &ctx());
        (pool, deployment)
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, String> {
        pod(d).containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn is_deterministic() {
        let (pool, a) = build(GPU_POOL);
        let b = deployment(&pool, &Serving::fresh(&pool.spec.parameters), &ctx());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn requests_gpus_in_limits_and_keeps_other_resources() {
        let (_, d) = build(GPU_POOL);
        let resources = pod(&d).containers[0].resources.as_ref().unwrap();
        assert_eq!(
            resources.limits.as_ref().unwrap()["nvidia.com/gpu"],
            Quantity("1".into())
        );
        assert_eq!(
            resources.requests.as_ref().unwrap()["cpu"],
            Quantity("2".into())
        );

        let (_, cpu) = build(CPU_POOL);
        let resources = pod(&cpu).containers[0].resources.as_ref().unwrap();
        assert!(resources.limits.is_none());
    }

    #[test]
    fn optional_gpu_is_not_requested() {
        let yaml = GPU_POOL.replace("    count: 1\n", "    count: 1\n    required: false\n");
        let (_, d) = build(&yaml);
        let limits = pod(&d).containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .clone();
        assert!(limits.is_none_or(|l| !l.contains_key("nvidia.com/gpu")));
    }

    #[test]
    fn passes_scheduling_fields_through() {
        let (pool, d) = build(GPU_POOL);
        let pod = pod(&d);
        assert_eq!(pod.node_selector.as_ref().unwrap()["gpu"], "true");
        assert_eq!(pod.tolerations.as_ref().unwrap(), &pool.spec.tolerations);
        assert_eq!(pod.affinity, pool.spec.affinity);
        assert_eq!(
            pod.topology_spread_constraints.as_ref().unwrap(),
            &pool.spec.topology_spread_constraints
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("provers"));
        assert_eq!(pod.runtime_class_name.as_deref(), Some("nvidia"));

        let (_, cpu) = build(CPU_POOL);
        let pod = pod_owned(&cpu);
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        assert!(pod.runtime_class_name.is_none());
    }

    fn pod_owned(d: &Deployment) -> PodSpec {
        pod(d).clone()
    }

    #[test]
    fn rolls_one_pod_at_a_time_without_losing_ready_capacity() {
        let (_, d) = build(GPU_POOL);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let rolling = spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    }

    #[test]
    fn probes_and_drain_timing() {
        let (_, d) = build(GPU_POOL);
        let pod = pod(&d);
        let c = &pod.containers[0];
        let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
        assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
        // jobDefaults.timeoutSeconds 120 + 5 s preStop + 15 s margin.
        assert_eq!(pod.termination_grace_period_seconds, Some(140));
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        assert_eq!(env_of(&d)["ZKFLEET_DRAIN_TIMEOUT_SECONDS"], "120");

        let (_, cpu) = build(CPU_POOL);
        assert_eq!(pod_owned(&cpu).termination_grace_period_seconds, Some(620));
    }

    #[test]
    fn runs_locked_down() {
        let (_, d) = build(GPU_POOL);
        let pod = pod(&d);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name.as_deref(), Some("gpu-pool-prover"));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }

    #[test]
    fn configures_the_prover_through_its_environment() {
        let (gpu_pool, d) = build(GPU_POOL);
        let env = env_of(&d);
        assert_eq!(env["ZKFLEET_LISTEN"], "0.0.0.0:8080");
        assert_eq!(env["ZKFLEET_BACKEND"], "groth16-bn254");
        assert_eq!(
            env["ZKFLEET_ZKEY"],
            "/var/run/zkfleet/parameters/circuit.zkey"
        );
        assert_eq!(env["ZKFLEET_ZKEY_SHA256"], "1".repeat(64));
        assert_eq!(
            env["ZKFLEET_WASM"],
            "/var/run/zkfleet/parameters/circuit.wasm"
        );
        assert_eq!(env["ZKFLEET_WASM_SHA256"], "2".repeat(64));
        assert_eq!(env["ZKFLEET_PARAMETERS_VERSION"], "v1");
        assert_eq!(env["ZKFLEET_SLOTS"], "2");
        assert_eq!(env["ZKFLEET_CACHE_DIR"], CACHE_DIR);
        assert_eq!(
            env["ZKFLEET_DISPATCHER_URL"],
            "http://zkfleet-operator.zkfleet-system.svc:8081"
        );
        let pod_name = pod(&d).containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "POD_NAME")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(pod_name.as_deref(), Some("metadata.name"));

        let extra = BuildContext {
            prover_env: vec![EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                value_from: None,
            }],
            ..ctx()
        };
        let with_extra = deployment(
            &gpu_pool,
            &Serving::fresh(&gpu_pool.spec.parameters),
            &extra,
        );
        assert_eq!(env_of(&with_extra)["RUST_LOG"], "debug");
        assert!(!env.contains_key("ZKFLEET_PARAMETERS_URL"));
        let c = &pod(&d).containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("zkfleet.local/zkfleet-prover:0.1.0")
        );
        assert_eq!(c.args, Some(vec!["serve".to_string()]));

        let (_, cpu) = build(CPU_POOL);
        let env = env_of(&cpu);
        assert_eq!(
            env["ZKFLEET_PARAMETERS_URL"],
            "https://params.example/multiplier/v7"
        );
        assert!(!env.contains_key("ZKFLEET_WASM"));
        assert_eq!(
            pod(&cpu).containers[0].image.as_deref(),
            Some("registry.example/prover:custom")
        );

        // The circuit's r1cs, when the parameters carry it, for checking witnesses.
        assert!(!env_of(&d).contains_key("ZKFLEET_R1CS"));
        let with_r1cs = GPU_POOL.replace(
            "      - name: circuit.wasm\n",
            &format!(
                "      - name: circuit.r1cs\n        sha256: {}\n      - name: circuit.wasm\n",
                "3".repeat(64)
            ),
        );
        let env = env_of(&build(&with_r1cs).1);
        assert_eq!(
            env["ZKFLEET_R1CS"],
            "/var/run/zkfleet/parameters/circuit.r1cs"
        );
        assert_eq!(env["ZKFLEET_R1CS_SHA256"], "3".repeat(64));
    }

    #[test]
    fn exec_backend_gets_profile_and_template_with_params_dir() {
        let yaml = CPU_POOL.replace(
            "  backend:\n    type: groth16-bn254\n",
            "  backend:\n    type: exec\n    exec:\n      profile: rapidsnark\n      command: [\"/opt/my prover/rapidsnark\", \"{params}/circuit.zkey\", \"{witness}\", \"{proof}\", \"{public}\"]\n      verifyCommand: [check, \"{proof}\"]\n",
        );
        let (_, d) = build(&yaml);
        let env = env_of(&d);
        assert_eq!(env["ZKFLEET_BACKEND"], "exec");
        assert_eq!(env["ZKFLEET_EXEC_PROFILE"], "rapidsnark");
        // A JSON list: the argument with a space stays one argument.
        assert_eq!(
            env["ZKFLEET_EXEC_TEMPLATE"],
            r#"["/opt/my prover/rapidsnark","/var/run/zkfleet/parameters/circuit.zkey","{witness}","{proof}","{public}"]"#
        );
        assert_eq!(
            env["ZKFLEET_EXEC_VERIFY_TEMPLATE"],
            r#"["check","{proof}"]"#
        );
    }

    #[test]
    fn parameters_cache_is_the_node_directory_or_an_empty_dir() {
        let pool = pool(GPU_POOL);
        let serving = Serving::fresh(&pool.spec.parameters);
        let cache = |path: &str| {
            let ctx = BuildContext {
                parameters_cache_path: path.into(),
                ..ctx()
            };
            let d = deployment(&pool, &serving, &ctx);
            pod(&d)
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "parameters-cache")
                .cloned()
                .unwrap()
        };
        // Sets share the node directory (entries are named by sha256), so a rotation needs no
        // new directory that the kubelet would create owned by root.
        let a = cache("/mnt/zk-cache/");
        assert_eq!(a.host_path.as_ref().unwrap().path, "/mnt/zk-cache");
        let mut rotated = pool.spec.parameters.clone();
        rotated.files[0].sha256 = "9".repeat(64);
        let d = deployment(&pool, &Serving::fresh(&rotated), &ctx());
        assert!(
            pod(&d)
                .volumes
                .iter()
                .flatten()
                .any(|v| v.host_path.as_ref().map(|h| h.path.as_str())
                    == Some("/var/lib/zkfleet/parameters"))
        );
        // No node directory configured: the pod's own writable cache.
        let b = cache("");
        assert!(b.host_path.is_none());
        assert!(b.empty_dir.is_some());
    }

    #[test]
    fn mounts_parameters_cache_token_and_tmp() {
        let (_, d) = build(GPU_POOL);
        let pod = pod(&d);
        let volumes: BTreeMap<_, _> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();
        assert_eq!(
            volumes["parameters"].config_map.as_ref().unwrap().name,
            "multiplier-params"
        );
        let host_path = volumes["parameters-cache"].host_path.as_ref().unwrap();
        assert_eq!(host_path.path, "/var/lib/zkfleet/parameters");
        assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(
            volumes["dispatcher-token"]
                .secret
                .as_ref()
                .unwrap()
                .secret_name
                .as_deref(),
            Some("gpu-pool-dispatcher-token")
        );
        let tmp = volumes["tmp"].empty_dir.as_ref().unwrap();
        assert_eq!(
            tmp.size_limit,
            Some(Quantity(format!("{}Gi", TMP_GIB_PER_SLOT * 2))),
            "scratch space is bounded, per slot"
        );
        let mounts: BTreeMap<_, _> = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m))
            .collect();
        assert_eq!(mounts["parameters"].read_only, Some(true));
        assert_eq!(mounts["tmp"].mount_path, "/tmp");

        let pvc_yaml = GPU_POOL.replace(
            "      configMap:\n        name: multiplier-params\n",
            "      pvc:\n        claimName: params\n        path: multiplier/v1\n",
        );
        let (_, d) = build(&pvc_yaml);
        let pod = pod_owned(&d);
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "parameters")
            .unwrap();
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "params"
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.sub_path.as_deref(), Some("multiplier/v1"));
    }

    #[test]
    fn pods_carry_pool_and_parameters_labels_outside_the_selector() {
        let (pool, d) = build(GPU_POOL);
        let spec = d.spec.as_ref().unwrap();
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[POOL_LABEL], "gpu-pool");
        assert_eq!(
            labels[PARAMETERS_LABEL],
            params::fingerprint(&pool.spec.parameters)
        );
        let selector = spec.selector.match_labels.as_ref().unwrap();
        assert!(!selector.contains_key(PARAMETERS_LABEL));
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    }

    #[test]
    fn builds_the_template_from_the_serving_parameters_and_records_rotation() {
        let pool = pool(GPU_POOL);
        let mut old = pool.spec.parameters.clone();
        old.version = "v0".into();
        let serving = Serving {
            target: old.clone(),
            previous: None,
            rolled_back: Some(params::fingerprint(&pool.spec.parameters)),
        };
        let d = deployment(&pool, &serving, &ctx());
        assert_eq!(env_of(&d)["ZKFLEET_PARAMETERS_VERSION"], "v0");
        let observed = Serving::observed(&d).unwrap();
        assert_eq!(observed, serving);
    }
}
