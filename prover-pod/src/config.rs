//! Command-line flags and `ZKFLEET_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Serve(ServeArgs),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecProfile {
    /// `snarkjs groth16 prove {zkey} {witness} {proof} {public}`.
    Snarkjs,
    /// `rapidsnark {zkey} {witness} {proof} {public}`.
    Rapidsnark,
}

impl ExecProfile {
    pub fn name(self) -> &'static str {
        match self {
            ExecProfile::Snarkjs => "snarkjs",
            ExecProfile::Rapidsnark => "rapidsnark",
        }
    }
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Groth16Bn254 => "groth16-bn254",
            BackendKind::Exec => "exec",
        }
    }
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

    /// Which prover this pod runs. Requests naming another backend are refused.
    #[arg(
        long,
        env = "ZKFLEET_BACKEND",
        value_enum,
        default_value = "groth16-bn254"
    )]
    pub backend: BackendKind,

    /// The circuit's proving key (.zkey) on local disk.
    #[arg(long, env = "ZKFLEET_ZKEY")]
    pub zkey: PathBuf,

    /// Expected sha256 of the .zkey (hex). When set, a file with another
    /// digest is refused and the pod never becomes ready.
    #[arg(long, env = "ZKFLEET_ZKEY_SHA256")]
    pub zkey_sha256: Option<String>,

    /// The circuit's witness generator (.wasm from circom). Without it the pod
    /// proves only .wtns witnesses, not circuit inputs.
    #[arg(long, env = "ZKFLEET_WASM")]
    pub wasm: Option<PathBuf>,

    /// Expected sha256 of the .wasm (hex).
    #[arg(long, env = "ZKFLEET_WASM_SHA256")]
    pub wasm_sha256: Option<String>,

    /// Label of the parameters (ProverPool spec.parameters.version), reported by /v1/info.
    #[arg(long, env = "ZKFLEET_PARAMETERS_VERSION", default_value = "")]
    pub parameters_version: String,

    /// Node-local directory for preprocessed proving keys, named by the
    /// zkey's sha256, so a restart or a second pod skips parsing and checks.
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

    /// exec backend: which prover's command line and file contract to use.
    #[arg(
        long,
        env = "ZKFLEET_EXEC_PROFILE",
        value_enum,
        default_value = "snarkjs"
    )]
    pub exec_profile: ExecProfile,

    /// exec backend: the prover program (default: the profile's program on the PATH).
    #[arg(long, env = "ZKFLEET_EXEC_PROGRAM")]
    pub exec_program: Option<String>,

    /// exec backend: a custom command instead of the profile's, arguments
    /// separated by spaces, with placeholders {zkey}, {witness}, {proof},
    /// {public} and {workdir}; it must write snarkjs proof.json/public.json.
    #[arg(long, env = "ZKFLEET_EXEC_TEMPLATE")]
    pub exec_template: Option<String>,

    /// exec backend: where per-proof working directories are made (default: the system temp dir).
    #[arg(long, env = "ZKFLEET_EXEC_WORKDIR")]
    pub exec_workdir: Option<PathBuf>,

    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "ZKFLEET_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
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
