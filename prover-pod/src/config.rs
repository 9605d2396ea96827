//! Command-line flags and `ZKFLEET_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use zkfleet_contract::systems::{ProofSystem, proof_system};

use crate::lease::Caller;
use crate::params::{self, Digest, FileSpec, Source, Spec};

#[derive(Debug, Parser)]
#[command(
    name = "zkfleet-prover",
    version,
    about = "zkfleet prover pod: proves circom/snarkjs Groth16 circuits over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the prover server (what a prover pod runs).
    Serve(Box<ServeArgs>),
    /// Prove once from files and write snarkjs proof.json and public.json.
    Prove(ProveArgs),
    /// Write the snarkjs verification_key.json of a zkey.
    ExportVk {
        /// The proving key (.zkey).
        #[arg(long)]
        zkey: PathBuf,
        /// Where to write verification_key.json ("-" for stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Groth16 over BN254, compatible with circom and snarkjs.
    #[value(name = "groth16-bn254")]
    Groth16Bn254,
    /// An external command-line prover (see --exec-profile); the pod computes
    /// witnesses and verifies proofs itself with the zkey.
    #[value(name = "exec")]
    Exec,
}

/// An exec profile: a proof system of zkfleet's table
/// ([`zkfleet_contract::systems::PROOF_SYSTEMS`]), named as pools name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecProfile(pub &'static ProofSystem);

impl ExecProfile {
    pub fn name(self) -> &'static str {
        self.0.name
    }
}

/// Parses --exec-profile: a name from the table of proof systems.
fn exec_profile(name: &str) -> Result<ExecProfile, String> {
    proof_system(name).map(ExecProfile).ok_or_else(|| {
        format!(
            "no proof system named {name:?}: use one of {}",
            zkfleet_contract::systems::names()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Groth16Bn254 => "groth16-bn254",
            BackendKind::Exec => "exec",
        }
    }
}

/// Where the Groth16 arithmetic runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Acceleration {
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address the HTTP server listens on (health, metrics and the API).
    #[arg(long, env = "ZKFLEET_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// A second address serving `/metrics` alone, so Prometheus can be let in without reaching
    /// the prover's API (the pool's NetworkPolicy opens only this port to it). Unset: metrics
    /// are served on `--listen` only.
    #[arg(long, env = "ZKFLEET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Which prover this pod runs. Requests naming another backend are refused.
    #[arg(
        long,
        env = "ZKFLEET_BACKEND",
        value_enum,
        default_value = "groth16-bn254"
    )]
    pub backend: BackendKind,

    /// The circuit's proving key (.zkey): a path on local disk or, with
    /// --parameters-url or --parameters-dir, the name of one of the parameter
    /// files (of a path, only the file name counts).
    #[arg(long, env = "ZKFLEET_ZKEY", default_value = "circuit.zkey")]
    pub zkey: PathBuf,

    /// Expected sha256 of the .zkey (hex). When set, a file with another
    /// digest is refused and the pod never becomes ready.
    #[arg(long, env = "ZKFLEET_ZKEY_SHA256")]
    pub zkey_sha256: Option<String>,

    /// The circuit's witness generator (.wasm from circom), a path or a
    /// parameter file name like --zkey. Without it the pod proves only .wtns
    /// witnesses, not circuit inputs.
    #[arg(long, env = "ZKFLEET_WASM")]
    pub wasm: Option<PathBuf>,

    /// Expected sha256 of the .wasm (hex).
    #[arg(long, env = "ZKFLEET_WASM_SHA256")]
    pub wasm_sha256: Option<String>,

    /// The circuit's constraint system (.r1cs from circom), a path or a
    /// parameter file name like --zkey. With it, a .wtns witness is checked
    /// against every constraint before it is proved, and one that breaks a
    /// constraint is refused as the input's fault (`input_rejected`).
    #[arg(long, env = "ZKFLEET_R1CS")]
    pub r1cs: Option<PathBuf>,

    /// Expected sha256 of the .r1cs (hex).
    #[arg(long, env = "ZKFLEET_R1CS_SHA256")]
    pub r1cs_sha256: Option<String>,

    /// Base URL the parameter files are fetched from, each from `<url>/<name>`:
    /// https:// (http:// also works, for in-cluster mirrors), s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix. Object store credentials
    /// come from the standard AWS_*, GOOGLE_* and AZURE_* variables. Downloads
    /// go to --cache-dir (required), named by sha256, and every file needs a
    /// digest (--parameter-file, --zkey-sha256, --wasm-sha256).
    #[arg(long, env = "ZKFLEET_PARAMETERS_URL")]
    pub parameters_url: Option<String>,

    /// Directory holding the parameter files under their names (a ConfigMap,
    /// PVC or image mount); each is checked against its sha256 before use.
    /// With --parameters-url, the downloaded files are linked in here instead,
    /// for exec templates that expect them under their names.
    #[arg(long, env = "ZKFLEET_PARAMETERS_DIR")]
    pub parameters_dir: Option<PathBuf>,

    /// A parameter file and its sha256, as NAME=SHA256 (`sha256sum` hex, or
    /// `sha256:<hex>`); repeat for each file, or give a comma-separated list in
    /// the variable. --zkey/--zkey-sha256 and --wasm/--wasm-sha256 add their
    /// files to this list. The pod is ready only once every file is present
    /// and matches.
    #[arg(
        long = "parameter-file",
        env = "ZKFLEET_PARAMETER_FILES",
        value_name = "NAME=SHA256",
        value_delimiter = ','
    )]
    pub parameter_files: Vec<FileSpec>,

    /// Label of the parameters (ProverPool spec.parameters.version), reported by /v1/info.
    #[arg(long, env = "ZKFLEET_PARAMETERS_VERSION", default_value = "")]
    pub parameters_version: String,

    /// Node-local cache directory: downloaded parameter files
    /// (`files/<sha256>`) and preprocessed proving keys, named by sha256, so a
    /// restart or a second pod on the node downloads and parses nothing.
    /// Unset: no cache.
    #[arg(long, env = "ZKFLEET_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Proofs this pod makes at once. A request beyond that gets 429 with Retry-After.
    #[arg(long, env = "ZKFLEET_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "ZKFLEET_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_body_bytes: usize,

    /// Longest one proof may take, in seconds; a slower one answers 504.
    #[arg(long, env = "ZKFLEET_PROOF_TIMEOUT_SECONDS", default_value_t = 600)]
    pub proof_timeout_seconds: u64,

    /// On SIGTERM, how long to wait for in-flight proofs before exiting anyway.
    #[arg(long, env = "ZKFLEET_DRAIN_TIMEOUT_SECONDS", default_value_t = 900)]
    pub drain_timeout_seconds: u64,

    /// exec backend: which proof system's command line and file contract to use, by its name
    /// in zkfleet's table of proof systems.
    #[arg(
        long,
        env = "ZKFLEET_EXEC_PROFILE",
        value_parser = exec_profile,
        default_value = "snarkjs"
    )]
    pub exec_profile: ExecProfile,

    /// exec backend: the prover program (default: the profile's program on the PATH).
    #[arg(long, env = "ZKFLEET_EXEC_PROGRAM")]
    pub exec_program: Option<String>,

    /// exec backend: a custom command instead of the profile's: a JSON list of arguments
    /// (`["prove.sh", "--out", "{proof}"]`, what the operator passes, so an argument may hold
    /// spaces) or words separated by spaces, with placeholders {zkey}, {witness}, {proof},
    /// {public} and {workdir}; it must write snarkjs proof.json/public.json.
    /// For stone the placeholders are {proof}, {public_input},
    /// {private_input}, {prover_config}, {parameters} and {workdir}, and a
    /// command without placeholders is the program, Stone's flags appended. For miden, the
    /// first word is the miden-vm program.
    #[arg(long, env = "ZKFLEET_EXEC_TEMPLATE")]
    pub exec_template: Option<String>,

    /// exec backend: the command that verifies a proof, as --exec-template (JSON list or
    /// words), with {proof} (the proof file) and {workdir}; exit status 0 means valid. Default
    /// for stone: `cpu_air_verifier --in_file={proof}`.
    #[arg(long, env = "ZKFLEET_EXEC_VERIFY_TEMPLATE")]
    pub exec_verify_template: Option<String>,

    /// exec backend: longest one run of the prover (or the verifier) may take, in seconds, when
    /// shorter than --proof-timeout-seconds (the pool's `backend.exec.timeoutSeconds`).
    #[arg(long, env = "ZKFLEET_EXEC_TIMEOUT_SECONDS")]
    pub exec_timeout_seconds: Option<u64>,

    /// groth16-bn254: where the MSMs and NTTs run: `auto` (the GPU when one is usable, else
    /// the CPU), `cpu`, or `gpu` (never the CPU). This prover has no GPU code yet, so `auto`
    /// proves on the CPU and a `gpu` pod is not ready, saying why; /v1/info reports the device.
    #[arg(long, env = "ZKFLEET_ACCELERATION", value_enum, default_value = "auto")]
    pub acceleration: Acceleration,

    /// exec backend: where per-proof working directories are made (default: the system temp dir).
    #[arg(long, env = "ZKFLEET_EXEC_WORKDIR")]
    pub exec_workdir: Option<PathBuf>,

    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "ZKFLEET_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Base URL of the operator's dispatcher (http:// or https://). When set, the pod also
    /// runs in agent mode: it leases jobs whenever it has a free slot, heartbeats them and
    /// reports their results, besides serving HTTP. Agent mode also needs --pool,
    /// --pod-name, --pod-namespace and --dispatcher-token-file. Unset: standalone prover.
    #[arg(long, env = "ZKFLEET_DISPATCHER_URL")]
    pub dispatcher_url: Option<String>,

    /// Agent mode: the ProverPool this pod belongs to.
    #[arg(long, env = "ZKFLEET_POOL")]
    pub pool: Option<String>,

    /// Agent mode: this pod's name (downward API metadata.name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Agent mode: this pod's namespace (downward API metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Agent mode: file holding the pool's dispatcher token (the mounted Secret's `token`
    /// key), sent as a bearer token; read again when the dispatcher answers 401, so a
    /// rotated Secret is picked up.
    #[arg(long, env = "ZKFLEET_DISPATCHER_TOKEN_FILE")]
    pub dispatcher_token_file: Option<PathBuf>,

    /// Agent mode: longest the dispatcher may hold a lease request open waiting for a job.
    #[arg(long, env = "ZKFLEET_LEASE_WAIT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=300))]
    pub lease_wait_seconds: u32,

    /// FOR TESTS ONLY: make the agent misbehave on purpose, as a comma-separated list of
    /// `corrupt-proofs` (every uploaded proof is tampered with, so the operator's verifier
    /// must reject it), `wrong-statement` (every job after the first is answered with the
    /// first proof: valid, but of another statement), `delay-ms=<N>` (each leased job waits N ms before proving,
    /// cancelled by a revoked lease) and `skip-proving` (answer each lease at once with a
    /// placeholder proof: dispatcher benchmarks with verification off). A warning is logged at
    /// start when any is set.
    #[arg(
        long,
        env = "ZKFLEET_FAULT_INJECTION",
        value_delimiter = ',',
        value_name = "FAULT",
        hide = true
    )]
    pub fault_injection: Vec<Fault>,
}

#[derive(Clone, Debug, Args)]
pub struct ProveArgs {
    /// The proving key (.zkey).
    #[arg(long)]
    pub zkey: PathBuf,
    /// A .wtns witness to prove.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub wtns: Option<PathBuf>,
    /// Circuit inputs (JSON) to prove; needs --wasm.
    #[arg(long, requires = "wasm")]
    pub input: Option<PathBuf>,
    /// The circuit's witness generator (.wasm).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Where to write proof.json.
    #[arg(long, default_value = "proof.json")]
    pub proof: PathBuf,
    /// Where to write public.json.
    #[arg(long, default_value = "public.json")]
    pub public: PathBuf,
    /// Directory for preprocessed proving keys (see `serve --cache-dir`).
    #[arg(long, env = "ZKFLEET_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Where the groth16 files are, once the parameters are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedFiles {
    /// Name of the zkey among the parameter files.
    pub zkey: String,
    /// Name of the wasm among the parameter files, if any.
    pub wasm: Option<String>,
    /// Name of the r1cs among the parameter files, if any.
    pub r1cs: Option<String>,
}

impl ServeArgs {
    /// Agent mode's settings when --dispatcher-url is set; `None` for a standalone pod.
    /// Errors name every missing flag with its variable.
    pub fn agent(&self) -> Result<Option<AgentConfig>, String> {
        let Some(url) = self.dispatcher_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--dispatcher-url (ZKFLEET_DISPATCHER_URL) {url:?} must be an http:// or https:// URL"
            ));
        }
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let (pool, pod, namespace) = (
            given(&self.pool),
            given(&self.pod_name),
            given(&self.pod_namespace),
        );
        let token_file = self
            .dispatcher_token_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        let missing: Vec<&str> = [
            (pool.is_none(), "--pool (ZKFLEET_POOL)"),
            (pod.is_none(), "--pod-name (POD_NAME)"),
            (namespace.is_none(), "--pod-namespace (POD_NAMESPACE)"),
            (
                token_file.is_none(),
                "--dispatcher-token-file (ZKFLEET_DISPATCHER_TOKEN_FILE)",
            ),
        ]
        .into_iter()
        .filter_map(|(absent, flag)| absent.then_some(flag))
        .collect();
        match (pool, pod, namespace, token_file) {
            (Some(pool), Some(pod), Some(namespace), Some(token_file)) => Ok(Some(AgentConfig {
                dispatcher_url: url.to_string(),
                caller: Caller {
                    namespace: namespace.into(),
                    pool: pool.into(),
                    pod: pod.into(),
                },
                token_file: token_file.clone(),
                lease_wait_seconds: self.lease_wait_seconds,
                faults: Faults::from_list(&self.fault_injection),
            })),
            _ => Err(format!(
                "agent mode (--dispatcher-url) also needs {}",
                missing.join(", ")
            )),
        }
    }

    /// The proof system this pod runs, as named in [`crate::backend::REGISTRY`]: the
    /// built-in `groth16-bn254`, or the exec profile.
    pub fn system(&self) -> &'static str {
        match self.backend {
            BackendKind::Groth16Bn254 => "groth16-bn254",
            BackendKind::Exec => self.exec_profile.name(),
        }
    }

    /// Whether the proof system reads no proving key (the table's `keyless`): any listed
    /// parameter files are fetched and checked, and the system finds its own among them.
    pub fn is_keyless(&self) -> bool {
        proof_system(self.system()).is_some_and(|s| s.keyless)
    }

    /// --exec-verify-template as arguments, when given.
    pub fn exec_verify_template(&self) -> Result<Option<Vec<String>>, String> {
        self.exec_verify_template
            .as_deref()
            .map(|t| {
                crate::exec::parse_template(t).map_err(|e| format!("--exec-verify-template: {e}"))
            })
            .transpose()
    }

    /// The parameters to fetch and check before loading, when a source
    /// (--parameters-url or --parameters-dir) is given; `None` means the
    /// --zkey/--wasm paths are used directly. Errors are flag mistakes.
    pub fn parameters(&self) -> Result<Option<(Spec, ResolvedFiles)>, String> {
        let source = match (&self.parameters_url, &self.parameters_dir) {
            (Some(url), _) => {
                params::check_url(url)?;
                Source::Url(url.clone())
            }
            (None, Some(dir)) => Source::Dir(dir.clone()),
            (None, None) => return Ok(None),
        };
        if matches!(source, Source::Url(_)) && self.cache_dir.is_none() {
            return Err(
                "--parameters-url needs --cache-dir (ZKFLEET_CACHE_DIR) for the downloads".into(),
            );
        }
        let mut files = self.parameter_files.clone();
        if self.is_keyless() {
            // Keyless systems read no proving key; any listed files are fetched and checked.
            let none = ResolvedFiles {
                zkey: String::new(),
                wasm: None,
                r1cs: None,
            };
            return Ok(Some((Spec { source, files }, none)));
        }
        let name_of = |p: &std::path::Path, flag: &str| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| format!("{flag} {} has no file name", p.display()))
        };
        let mut add = |name: String, sha: Option<&String>, flag: &str| -> Result<(), String> {
            let digest: Option<Digest> = sha.map(|s| s.parse()).transpose()?;
            match (files.iter().find(|f| f.name == name), digest) {
                (Some(f), Some(d)) if f.sha256 != d => Err(format!(
                    "{flag}-sha256 and --parameter-file give different digests for {name}"
                )),
                (Some(_), _) => Ok(()),
                (None, Some(d)) => {
                    files.push(FileSpec::new(&name, d)?);
                    Ok(())
                }
                (None, None) => Err(format!(
                    "{name} has no sha256: give {flag}-sha256 or --parameter-file {name}=SHA256"
                )),
            }
        };
        let zkey = name_of(&self.zkey, "--zkey")?;
        add(zkey.clone(), self.zkey_sha256.as_ref(), "--zkey")?;
        let wasm = match &self.wasm {
            Some(w) => {
                let name = name_of(w, "--wasm")?;
                add(name.clone(), self.wasm_sha256.as_ref(), "--wasm")?;
                Some(name)
            }
            None => None,
        };
        let r1cs = match &self.r1cs {
            Some(r) => {
                let name = name_of(r, "--r1cs")?;
                add(name.clone(), self.r1cs_sha256.as_ref(), "--r1cs")?;
                Some(name)
            }
            None => None,
        };
        Ok(Some((
            Spec { source, files },
            ResolvedFiles { zkey, wasm, r1cs },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["zkfleet-prover", "serve"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Serve(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parameter_files_come_from_flags_and_the_zkey_digest() {
        let (z, w) = ("1".repeat(64), "2".repeat(64));
        let a = serve(&[
            "--parameters-url",
            "https://example.test/p/",
            "--cache-dir",
            "/tmp/c",
            "--zkey",
            "/var/run/zkfleet/parameters/circuit.zkey",
            "--zkey-sha256",
            &z,
            "--parameter-file",
            &format!("circuit.wasm={w}"),
            "--wasm",
            "circuit.wasm",
        ]);
        let (spec, files) = a.parameters().unwrap().unwrap();
        assert_eq!(spec.source, Source::Url("https://example.test/p/".into()));
        assert_eq!(files.zkey, "circuit.zkey");
        assert_eq!(files.wasm.as_deref(), Some("circuit.wasm"));
        let names: Vec<_> = spec.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["circuit.wasm", "circuit.zkey"]);
    }

    #[test]
    fn parameter_mistakes_are_refused() {
        // A URL without a cache, a file without a digest, two digests.
        assert!(
            serve(&["--parameters-url", "https://x.test"])
                .parameters()
                .is_err()
        );
        assert!(serve(&["--parameters-dir", "/p"]).parameters().is_err());
        let ftp = serve(&["--parameters-url", "ftp://x.test/p", "--cache-dir", "/c"]);
        assert!(ftp.parameters().is_err());
        let a = serve(&[
            "--parameters-dir",
            "/p",
            "--zkey-sha256",
            &"1".repeat(64),
            "--parameter-file",
            &format!("circuit.zkey={}", "2".repeat(64)),
        ]);
        assert!(a.parameters().is_err());
        assert!(serve(&[]).parameters().unwrap().is_none());
    }

    #[test]
    fn agent_mode_names_what_is_missing() {
        assert!(serve(&[]).agent().unwrap().is_none());
        let err = serve(&["--dispatcher-url", "http://op:8443", "--pool", "cpu"])
            .agent()
            .unwrap_err();
        assert!(err.contains("--pod-name (POD_NAME)"), "{err}");
        assert!(err.contains("--pod-namespace (POD_NAMESPACE)"), "{err}");
        assert!(err.contains("ZKFLEET_DISPATCHER_TOKEN_FILE"), "{err}");
        assert!(!err.contains("--pool"), "{err}");
        let full = [
            "--dispatcher-url",
            "http://op:8443/",
            "--pool",
            "cpu",
            "--pod-name",
            "cpu-abc",
            "--pod-namespace",
            "team",
            "--dispatcher-token-file",
            "/var/run/zkfleet/token/token",
            "--fault-injection",
            "corrupt-proofs,delay-ms=50",
        ];
        let a = serve(&full).agent().unwrap().unwrap();
        assert_eq!(a.caller.pod, "cpu-abc");
        assert_eq!(a.lease_wait_seconds, 20);
        assert!(a.faults.corrupt_proofs);
        assert_eq!(a.faults.delay, Some(std::time::Duration::from_millis(50)));
        let mut ftp = full;
        ftp[1] = "ftp://op";
        assert!(serve(&ftp).agent().is_err());
    }
}

/// What agent mode needs, from the `serve` flags.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Base URL of the dispatcher, such as `http://zkfleet-operator.zkfleet:8443`.
    pub dispatcher_url: String,
    /// The pool and the pod, as the dispatcher checks them.
    pub caller: Caller,
    /// File holding the pool's dispatcher token (a mounted Secret key).
    pub token_file: PathBuf,
    /// Longest the dispatcher may hold a lease request open.
    pub lease_wait_seconds: u32,
    /// Test-only misbehaviour.
    pub faults: Faults,
}

/// One test-only fault (`--fault-injection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Tamper with every proof before it is uploaded, so the dispatcher's verifier rejects it.
    CorruptProofs,
    /// Wait this many milliseconds before proving each leased job (cancellable).
    DelayMs(u64),
    /// Prove nothing: answer every lease at once with a placeholder proof (which does not
    /// verify). For benchmarks of the dispatcher with verification off.
    SkipProving,
    /// Answer every job after the first with the first proof this pod made: a valid proof of
    /// another statement, as a pod that mixes up jobs (or lies) would send.
    WrongStatement,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "corrupt-proofs" {
            return Ok(Fault::CorruptProofs);
        }
        if s == "skip-proving" {
            return Ok(Fault::SkipProving);
        }
        if s == "wrong-statement" {
            return Ok(Fault::WrongStatement);
        }
        if let Some(ms) = s.strip_prefix("delay-ms=") {
            return ms
                .parse()
                .map(Fault::DelayMs)
                .map_err(|_| format!("delay-ms wants a number of milliseconds, not {ms:?}"));
        }
        Err(format!(
            "unknown fault {s:?}: use corrupt-proofs, wrong-statement, skip-proving or delay-ms=<N>"
        ))
    }
}

/// The faults in effect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub corrupt_proofs: bool,
    pub delay: Option<Duration>,
    pub skip_proving: bool,
    pub wrong_statement: bool,
}

impl Faults {
    pub fn from_list(faults: &[Fault]) -> Self {
        let mut out = Faults::default();
        for f in faults {
            match *f {
                Fault::CorruptProofs => out.corrupt_proofs = true,
                Fault::DelayMs(ms) => out.delay = Some(Duration::from_millis(ms)),
                Fault::SkipProving => out.skip_proving = true,
                Fault::WrongStatement => out.wrong_statement = true,
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }
}
