//! `kubectl zkfleet`: the command line of zkfleet users. Submit a ProofJob, wait for it, take
//! its proof home and check it offline, and see the namespace's ProverPools at a glance.
//!
//! kubectl runs any `kubectl-<name>` on the PATH as `kubectl <name>`, so installing this binary
//! is all it takes. Exit codes: 0 success; 1 a failed job, an invalid proof or an error; 2 a
//! `wait` that timed out (clap's usage errors exit 2 as well); 3 `verify` of a proof this tool
//! cannot check offline (STARK and VM proofs).

mod artifact;
mod cluster;
mod logs;
mod proof;
mod status;
mod submit;
mod timeout;
mod verify;
mod wait;

/// What the commands' unit tests share.
#[cfg(test)]
mod test_support {
    use serde_json::{Value, json};
    use zkfleet_crds::v1alpha1::ProofJob;

    /// ProofJob `plug` of pool `alpha` with `status`.
    pub fn job(status: Value) -> ProofJob {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "plug"},
            "spec": {"poolRef": {"name": "alpha"}, "input": {"inline": {"json": "{}"}}},
            "status": status,
        }))
        .unwrap()
    }
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// ProofJobs and ProverPools of zkfleet (zkfleet.dev/v1alpha1) from the command line.
#[derive(Parser, Debug)]
#[command(name = "kubectl zkfleet", bin_name = "kubectl zkfleet", version)]
struct Cli {
    #[command(flatten)]
    cluster: cluster::Target,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a ProofJob from a circuit input file or a directory of input files, and print
    /// its name.
    Submit(SubmitArgs),
    /// Wait until a job succeeds (exit 0) or fails (exit 1, with its reason); exit 2 on
    /// timeout.
    Wait {
        /// The ProofJob.
        job: String,
        /// How long to wait, for example 90s, 10m or 1h.
        #[arg(long, default_value = "10m", value_parser = timeout::parse)]
        timeout: Duration,
    },
    /// Write a succeeded job's proof to files: proof.json and public.json for Groth16
    /// (snarkjs format), the proof and its public outputs for STARK and VM jobs.
    Proof {
        /// The ProofJob.
        job: String,
        /// Directory to write to (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// A copy of the job's stored proof (the artifact store's proof.json), for proofs in a
        /// store this machine cannot read.
        #[arg(long, value_name = "FILE")]
        artifact: Option<PathBuf>,
    },
    /// Check a succeeded Groth16 job's proof on this machine: prints OK (exit 0) or INVALID
    /// (exit 1); exit 3 for proof systems this tool cannot check.
    Verify {
        /// The ProofJob.
        job: String,
        /// The verifying key: snarkjs verification_key.json, or the circuit's .zkey. Default:
        /// the key in the pool's parameters.
        #[arg(long, value_name = "FILE")]
        vk: Option<PathBuf>,
        /// A copy of the job's stored proof (the artifact store's proof.json), for proofs in a
        /// store this machine cannot read.
        #[arg(long, value_name = "FILE")]
        artifact: Option<PathBuf>,
    },
    /// A table of the namespace's ProverPools (or of one): replicas, queue, free slots,
    /// flagged pods, parameters and readiness.
    Status {
        /// Only this ProverPool.
        pool: Option<String>,
    },
    /// The logs of the pod that ran the job's last attempt.
    Logs {
        /// The ProofJob.
        job: String,
        /// Keep streaming new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<i64>,
    },
}

/// `submit`'s flags.
#[derive(Args, Debug)]
struct SubmitArgs {
    /// The ProverPool that proves the job, in the same namespace.
    #[arg(long)]
    pool: String,
    /// Name of the job.
    #[arg(long, conflicts_with = "generate_name")]
    name: Option<String>,
    /// Prefix of a generated name (default: the pool's name and a dash).
    #[arg(long, value_name = "PREFIX")]
    generate_name: Option<String>,
    /// A Groth16 job's input: circuit inputs as JSON (circom input.json), or a .wtns witness.
    #[arg(long, value_name = "FILE", required_unless_present = "input_dir")]
    input: Option<PathBuf>,
    /// A STARK or VM job's input files: every file of the directory, by its name (a Miden
    /// job's inputs.json; a Stone job's public_input.json, private_input.json, trace.bin and
    /// memory.bin).
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    input_dir: Option<PathBuf>,
    /// Higher runs first among the pool's queued jobs.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    priority: i32,
    /// Only run on pods serving this parameters version of the pool.
    #[arg(long, value_name = "VERSION")]
    parameters_version: Option<String>,
    /// Wait for the job to finish, as `wait` does.
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait.
    #[arg(long, default_value = "10m", value_parser = timeout::parse)]
    timeout: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cluster = cluster::connect(&cli.cluster).await?;
    match cli.command {
        Command::Submit(args) => {
            let input = match (&args.input, &args.input_dir) {
                (Some(file), _) => submit::Input::File(file.clone()),
                (None, Some(dir)) => submit::Input::Dir(dir.clone()),
                (None, None) => unreachable!("clap requires --input or --input-dir"),
            };
            let request = submit::Request {
                pool: args.pool,
                name: match (args.name, args.generate_name) {
                    (Some(name), _) => submit::Name::Exact(name),
                    (None, Some(prefix)) => submit::Name::Generate(prefix),
                    (None, None) => submit::Name::Default,
                },
                input,
                priority: args.priority,
                parameters_version: args.parameters_version,
            };
            let name = submit::run(&cluster, request).await?;
            println!("{name}");
            if args.wait {
                return wait::run(&cluster, &name, args.timeout).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait { job, timeout } => wait::run(&cluster, &job, timeout).await,
        Command::Proof { job, out, artifact } => {
            proof::run(&cluster, &job, &out, artifact.as_deref()).await
        }
        Command::Verify { job, vk, artifact } => {
            verify::run(&cluster, &job, vk.as_deref(), artifact.as_deref()).await
        }
        Command::Status { pool } => status::run(&cluster, pool.as_deref()).await,
        Command::Logs { job, follow, tail } => logs::run(&cluster, &job, follow, tail).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_takes_one_input_and_one_way_of_naming() {
        let parse = |args: &[&str]| Cli::try_parse_from(["kubectl-zkfleet"].iter().chain(args));
        assert!(parse(&["submit", "--pool", "p", "--input", "i.json"]).is_ok());
        assert!(parse(&["submit", "--pool", "p"]).is_err());
        assert!(parse(&["submit", "--pool", "p", "--input", "i", "--input-dir", "d"]).is_err());
        assert!(
            parse(&[
                "submit",
                "--pool",
                "p",
                "--input",
                "i",
                "--name",
                "a",
                "--generate-name",
                "b-"
            ])
            .is_err()
        );
        let cli = parse(&[
            "-n",
            "ns",
            "submit",
            "--pool",
            "p",
            "--input",
            "i",
            "--priority",
            "-5",
        ])
        .unwrap();
        assert_eq!(cli.cluster.namespace.as_deref(), Some("ns"));
        match cli.command {
            Command::Submit(args) => assert_eq!(args.priority, -5),
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&[
                "submit",
                "--pool",
                "p",
                "--input",
                "i",
                "--priority",
                "1001"
            ])
            .is_err()
        );
    }

    #[test]
    fn wait_takes_a_human_timeout() {
        let cli =
            Cli::try_parse_from(["kubectl-zkfleet", "wait", "j", "--timeout", "90s"]).unwrap();
        match cli.command {
            Command::Wait { timeout, .. } => assert_eq!(timeout, Duration::from_secs(90)),
            other => panic!("{other:?}"),
        }
    }
}
