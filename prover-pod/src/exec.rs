//! The `exec` backend: runs any command-line prover from a template with
//! placeholders for parameter, input and output files, with a timeout; a
//! failure reports the exit code and the tail of stderr.
//!
//! Profiles fix the template and the file contract:
//! - `snarkjs`: `snarkjs groth16 prove {zkey} {witness} {proof} {public}`
//! - `rapidsnark`: `rapidsnark {zkey} {witness} {proof} {public}` (same files)
//! - `stone`: Stone's `cpu_air_prover`; the pod writes the FRI parameters
//!   itself from the trace length (see [`fri_parameters`]).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cancel::Cancel;

/// Why the Stone FRI parameters cannot be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FriError {
    #[error("n_steps must be a power of two, got {0}")]
    NotPowerOfTwo(u64),
    #[error("n_steps must be at least 512, got {0}")]
    TooFewSteps(u64),
    #[error("last_layer_degree_bound must be a power of two, got {0}")]
    LastLayerNotPowerOfTwo(u64),
    #[error(
        "last_layer_degree_bound {bound} leaves no FRI steps for n_steps {n_steps}: \
         log2(bound) must be below log2(n_steps) + 4 = {total}"
    )]
    LastLayerTooLarge {
        bound: u64,
        n_steps: u64,
        total: u32,
    },
    #[error("the largest FRI step must be between 1 and 8, got {0}")]
    BadMaxStep(u32),
}

/// Stone FRI layout: log2(last_layer_degree_bound) + Σ fri_step_list = log2(n_steps) + 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriParameters {
    pub fri_step_list: Vec<u32>,
    pub last_layer_degree_bound: u64,
}

/// log2 of the blow-up Stone uses (`log_n_cosets`), the "+ 4" of the equation.
pub const LOG_N_COSETS: u32 = 4;

/// Chooses FRI parameters for a trace of `n_steps`: the first step is 0 (as
/// in Stone's examples), then steps of `max_step` and a smaller remainder;
/// the last layer defaults to degree bound 64.
pub fn fri_parameters(
    n_steps: u64,
    last_layer_degree_bound: Option<u64>,
    max_step: u32,
) -> Result<FriParameters, FriError> {
    if !(1..=8).contains(&max_step) {
        return Err(FriError::BadMaxStep(max_step));
    }
    if !n_steps.is_power_of_two() {
        return Err(FriError::NotPowerOfTwo(n_steps));
    }
    if n_steps < 512 {
        return Err(FriError::TooFewSteps(n_steps));
    }
    let total = n_steps.trailing_zeros() + LOG_N_COSETS;
    let bound = last_layer_degree_bound.unwrap_or(64);
    if !bound.is_power_of_two() {
        return Err(FriError::LastLayerNotPowerOfTwo(bound));
    }
    let log_bound = bound.trailing_zeros();
    if log_bound >= total {
        return Err(FriError::LastLayerTooLarge {
            bound,
            n_steps,
            total,
        });
    }
    let mut rest = total - log_bound;
    let mut steps = vec![0];
    while rest > 0 {
        let s = rest.min(max_step);
        steps.push(s);
        rest -= s;
    }
    Ok(FriParameters {
        fri_step_list: steps,
        last_layer_degree_bound: bound,
    })
}

/// The `cpu_air_params.json` Stone reads.
pub fn stone_parameter_file(fri: &FriParameters, n_queries: u32, proof_of_work_bits: u32) -> Value {
    json!({
        "field": "PrimeField0",
        "stark": {
            "fri": {
                "fri_step_list": fri.fri_step_list,
                "last_layer_degree_bound": fri.last_layer_degree_bound,
                "n_queries": n_queries,
                "proof_of_work_bits": proof_of_work_bits,
            },
            "log_n_cosets": LOG_N_COSETS,
        },
        "use_extension_field": false,
    })
}

/// Defaults of the Stone profile: 18 queries with 24 proof-of-work bits
/// (Stone's example, ~80 bits of security at blow-up 16), a last FRI layer of
/// degree bound 64, and FRI steps of at most 4 (folding by 16).
pub const STONE_N_QUERIES: u32 = 18;
pub const STONE_PROOF_OF_WORK_BITS: u32 = 24;
pub const STONE_LAST_LAYER_DEGREE_BOUND: u64 = 64;
pub const STONE_MAX_FRI_STEP: u32 = 4;

/// The `cpu_air_prover_config.json` the pod writes: Stone's own example
/// settings, which keep the low-degree extension in memory only where it
/// pays and split the work into tasks for all cores.
pub fn stone_prover_config() -> Value {
    json!({
        "cached_lde_config": {
            "store_full_lde": false,
            "use_fft_for_eval": false,
        },
        "constraint_polynomial_task_size": 256,
        "n_out_of_memory_merkle_layers": 1,
        "table_prover_n_tasks_per_segment": 32,
    })
}

/// Why a Stone request cannot be proved as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoneInputError {
    #[error(
        "public_input has no n_steps: give the public input cairo-run wrote (--air_public_input), which holds n_steps"
    )]
    MissingSteps,
    #[error(
        "n_steps {0}: {1}; run the Cairo program with a step count that is a power of two of at least 512 (cairo-run --proof_mode pads the trace to one)"
    )]
    BadSteps(String, FriError),
    #[error(
        "n_steps {0} is not a whole number: give the power of two (at least 512) cairo-run wrote"
    )]
    NotANumber(String),
}

/// The FRI parameters for a Cairo run, from the `n_steps` of its public input.
pub fn stone_fri_for(public_input: &Value) -> Result<FriParameters, StoneInputError> {
    let n_steps = public_input
        .get("n_steps")
        .ok_or(StoneInputError::MissingSteps)?;
    let n = n_steps
        .as_u64()
        .ok_or_else(|| StoneInputError::NotANumber(n_steps.to_string()))?;
    fri_parameters(n, Some(STONE_LAST_LAYER_DEGREE_BOUND), STONE_MAX_FRI_STEP)
        .map_err(|e| StoneInputError::BadSteps(n.to_string(), e))
}

/// One Stone proof's inputs: what `cairo-run` wrote for the program run.
#[derive(Clone, Debug)]
pub struct StoneInput {
    /// `--air_public_input` JSON (holds `n_steps`, layout, memory segments).
    pub public_input: Value,
    /// `--air_private_input` JSON; its `trace_path` and `memory_path` are
    /// replaced with the files the pod writes.
    pub private_input: Value,
    /// `--trace_file` bytes.
    pub trace: Vec<u8>,
    /// `--memory_file` bytes.
    pub memory: Vec<u8>,
}

pub fn work_dir(work_root: Option<&Path>) -> Result<tempfile::TempDir, ExecError> {
    Ok(match work_root {
        Some(r) => tempfile::Builder::new().prefix("proof-").tempdir_in(r)?,
        None => tempfile::Builder::new()
            .prefix("zkfleet-proof-")
            .tempdir()?,
    })
}

fn read_json(p: &Path) -> Result<Value, ExecError> {
    let bytes = std::fs::read(p)
        .map_err(|e| ExecError::Output(format!("{} not written: {e}", p.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ExecError::Output(format!("{} is not JSON: {e}", p.display())))
}

/// A Stone proof: writes the inputs, `cpu_air_params.json` (from `fri`) and
/// `cpu_air_prover_config.json` into a fresh directory, runs the template
/// and returns the proof JSON it wrote to `{proof}`.
pub fn prove_stone_files(
    template: &[String],
    input: &StoneInput,
    fri: &FriParameters,
    work_root: Option<&Path>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<Value, ExecError> {
    let dir = work_dir(work_root)?;
    let path = |name: &str| dir.path().join(name);
    let (trace, memory) = (path("trace.bin"), path("memory.bin"));
    std::fs::write(&trace, &input.trace)?;
    std::fs::write(&memory, &input.memory)?;
    let mut private = input.private_input.clone();
    if let Some(obj) = private.as_object_mut() {
        obj.insert("trace_path".into(), json!(trace.to_string_lossy()));
        obj.insert("memory_path".into(), json!(memory.to_string_lossy()));
    }
    let write = |name: &str, v: &Value| -> Result<PathBuf, ExecError> {
        let p = path(name);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?,
        )?;
        Ok(p)
    };
    let private = write("private_input.json", &private)?;
    let public = write("public_input.json", &input.public_input)?;
    let parameters = write(
        "cpu_air_params.json",
        &stone_parameter_file(fri, STONE_N_QUERIES, STONE_PROOF_OF_WORK_BITS),
    )?;
    let config = write("cpu_air_prover_config.json", &stone_prover_config())?;
    let proof = path("proof.json");
    let argv = render(
        template,
        &[
            ("proof", &proof),
            ("public_input", &public),
            ("private_input", &private),
            ("prover_config", &config),
            ("parameters", &parameters),
            ("workdir", dir.path()),
        ],
    )?;
    run(&argv, dir.path(), timeout, cancel)?;
    read_json(&proof)
}

/// Why an external prover run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("prover exited with {code}; its output ends with: {stderr_tail}")]
    Failed { code: String, stderr_tail: String },
    #[error("prover did not finish within {0:?} and was killed")]
    Timeout(Duration),
    #[error("the proof was cancelled and the prover was killed")]
    Cancelled,
    #[error("prover output: {0}")]
    Output(String),
    #[error("template: {0}")]
    Template(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Replaces `{name}` placeholders in each argument; an unknown placeholder is an error.
pub fn render(template: &[String], vars: &[(&str, &Path)]) -> Result<Vec<String>, ExecError> {
    template
        .iter()
        .map(|arg| {
            let mut out = String::new();
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let close = rest[open..].find('}').ok_or_else(|| {
                    ExecError::Template(format!("unclosed placeholder in {arg:?}"))
                })?;
                let name = &rest[open + 1..open + close];
                let (_, path) = vars.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                    ExecError::Template(format!("unknown placeholder {{{name}}} in {arg:?}"))
                })?;
                out.push_str(&path.to_string_lossy());
                rest = &rest[open + close + 1..];
            }
            out.push_str(rest);
            Ok(out)
        })
        .collect()
}

/// Runs `argv` in `dir` with a timeout, stderr kept in a file for the error.
///
/// The prover runs in a process group of its own, and a timeout or `cancel` kills the
/// whole group: templates are often wrapper scripts (`sh /opt/prove.sh`), and killing
/// only the shell would leave the real prover running.
pub fn run(
    argv: &[String],
    dir: &Path,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(), ExecError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ExecError::Template("empty command".into()))?;
    // Some provers (snarkjs) report errors on stdout: keep both.
    let stderr_path = dir.join("prover.log");
    let stderr = std::fs::File::create(&stderr_path)?;
    let stdout = stderr.try_clone()?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let stop = if cancel.is_cancelled() {
            Some(ExecError::Cancelled)
        } else if Instant::now() >= deadline {
            Some(ExecError::Timeout(timeout))
        } else {
            None
        };
        if let Some(error) = stop {
            kill_group(&mut child);
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut tail = Vec::new();
    if let Ok(mut f) = std::fs::File::open(&stderr_path) {
        let _ = f.read_to_end(&mut tail);
    }
    let start = tail.len().saturating_sub(2048);
    let code = status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
    Err(ExecError::Failed {
        code,
        stderr_tail: String::from_utf8_lossy(&tail[start..]).trim().to_string(),
    })
}

/// Kills the child's process group (the child leads it) and reaps the child.
fn kill_group(child: &mut std::process::Child) {
    let group = rustix::process::Pid::from_child(child);
    // The group may already be gone; killing the child below still reaps it.
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Groth16 through an external prover (`snarkjs` or `rapidsnark` profiles):
/// writes the witness, runs the template, reads snarkjs `proof.json` and `public.json`.
pub fn prove_groth16_files(
    template: &[String],
    zkey: &Path,
    wtns: &[u8],
    work_root: Option<&Path>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(Value, Vec<String>), ExecError> {
    let dir = work_dir(work_root)?;
    let witness = dir.path().join("witness.wtns");
    std::fs::write(&witness, wtns)?;
    let (proof, public): (PathBuf, PathBuf) = (
        dir.path().join("proof.json"),
        dir.path().join("public.json"),
    );
    let argv = render(
        template,
        &[
            ("zkey", zkey),
            ("witness", &witness),
            ("proof", &proof),
            ("public", &public),
            ("workdir", dir.path()),
        ],
    )?;
    run(&argv, dir.path(), timeout, cancel)?;
    let proof = read_json(&proof)?;
    let public: Vec<String> = serde_json::from_value(read_json(&public)?)
        .map_err(|e| ExecError::Output(format!("public.json is not a list of strings: {e}")))?;
    Ok((proof, public))
}

/// The command a pod runs: the profile's, or a custom template. For
/// `stone`, a template without placeholders names the program (and any
/// leading arguments) and Stone's flags are appended, so a ProverPool command
/// of just `[cpu_air_prover]` works.
pub fn command(
    profile: &str,
    program: Option<&str>,
    template: Option<&str>,
) -> Result<Option<Vec<String>>, String> {
    let custom = template.map(parse_template).transpose()?;
    Ok(command_from(profile, program, custom))
}

/// A command template as given on the command line: a JSON list of arguments (what the
/// operator passes, so arguments may hold spaces), or words separated by whitespace.
pub fn parse_template(template: &str) -> Result<Vec<String>, String> {
    let template = template.trim();
    if template.starts_with('[') {
        let words: Vec<String> = serde_json::from_str(template)
            .map_err(|e| format!("{template:?} is not a JSON list of strings: {e}"))?;
        if words.is_empty() {
            return Err("the command is an empty list".into());
        }
        return Ok(words);
    }
    Ok(template.split_whitespace().map(str::to_string).collect())
}

fn command_from(
    profile: &str,
    program: Option<&str>,
    custom: Option<Vec<String>>,
) -> Option<Vec<String>> {
    match custom {
        Some(words)
            if profile == "stone"
                && !words.is_empty()
                && !words.iter().any(|w| w.contains('{')) =>
        {
            let mut t = words;
            t.extend(profile_template("stone", Some("-"))?.into_iter().skip(1));
            Some(t)
        }
        Some(words) => Some(words),
        None => profile_template(profile, program),
    }
}

/// The default command of each profile.
pub fn profile_template(profile: &str, program: Option<&str>) -> Option<Vec<String>> {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match profile {
        "snarkjs" => {
            let mut t = v(&[program.unwrap_or("snarkjs")]);
            t.extend(v(&[
                "groth16",
                "prove",
                "{zkey}",
                "{witness}",
                "{proof}",
                "{public}",
            ]));
            Some(t)
        }
        "rapidsnark" => Some(v(&[
            program.unwrap_or("rapidsnark"),
            "{zkey}",
            "{witness}",
            "{proof}",
            "{public}",
        ])),
        "stone" => Some(v(&[
            program.unwrap_or("cpu_air_prover"),
            "--out_file={proof}",
            "--public_input_file={public_input}",
            "--private_input_file={private_input}",
            "--prover_config_file={prover_config}",
            "--parameter_file={parameters}",
        ])),
        // The miden system builds its own command lines; the template names the program.
        "miden" => Some(v(&[program.unwrap_or("miden-vm")])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n_steps: u64, p: &FriParameters) {
        let sum: u32 = p.fri_step_list.iter().sum();
        assert_eq!(
            p.last_layer_degree_bound.trailing_zeros() + sum,
            n_steps.trailing_zeros() + 4
        );
        assert!(p.last_layer_degree_bound.is_power_of_two());
    }

    #[test]
    fn fri_equation_holds_for_every_valid_size() {
        for log in 9..=30 {
            let n = 1u64 << log;
            for bound in [None, Some(1), Some(32), Some(128), Some(1u64 << (log + 3))] {
                for max_step in 1..=5 {
                    let p = fri_parameters(n, bound, max_step).unwrap();
                    check(n, &p);
                    assert!(p.fri_step_list.iter().all(|s| *s <= max_step));
                }
            }
        }
        // Stone's example layout: 16384 steps -> last layer 64, steps [0, 4, 4, 4].
        let p = fri_parameters(16384, None, 4).unwrap();
        assert_eq!(
            p,
            FriParameters {
                fri_step_list: vec![0, 4, 4, 4],
                last_layer_degree_bound: 64
            }
        );
        assert_eq!(
            fri_parameters(512, None, 4).unwrap().fri_step_list,
            vec![0, 4, 3]
        );
    }

    #[test]
    fn impossible_fri_combinations_are_refused() {
        assert_eq!(
            fri_parameters(1000, None, 4),
            Err(FriError::NotPowerOfTwo(1000))
        );
        assert_eq!(fri_parameters(0, None, 4), Err(FriError::NotPowerOfTwo(0)));
        assert_eq!(
            fri_parameters(256, None, 4),
            Err(FriError::TooFewSteps(256))
        );
        assert_eq!(
            fri_parameters(1024, Some(100), 4),
            Err(FriError::LastLayerNotPowerOfTwo(100))
        );
        assert_eq!(
            fri_parameters(1024, Some(1 << 14), 4),
            Err(FriError::LastLayerTooLarge {
                bound: 1 << 14,
                n_steps: 1024,
                total: 14
            })
        );
        assert_eq!(fri_parameters(1024, None, 0), Err(FriError::BadMaxStep(0)));
        let msg = fri_parameters(1024, Some(1 << 20), 4)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("last_layer_degree_bound"), "{msg}");
    }

    /// Whether `pid` has exited (gone, or a zombie waiting for its reaper).
    fn exited(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // The state follows the parenthesised command name.
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
            })
            .unwrap_or(true)
    }

    #[test]
    fn cancelling_kills_the_wrapper_and_the_prover_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("prover.pid");
        // A wrapper script whose real work is a child process, as the stone profile's is.
        let script = format!(
            "sleep 300 & echo $! > {}.tmp && mv {0}.tmp {0}; wait",
            pid_file.display()
        );
        let cancel = Cancel::new();
        let canceller = {
            let (cancel, pid_file) = (cancel.clone(), pid_file.clone());
            std::thread::spawn(move || {
                // Bounded so that a broken build fails instead of hanging.
                for _ in 0..3000 {
                    if pid_file.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                cancel.cancel();
            })
        };
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let result = run(&argv, dir.path(), Duration::from_secs(600), &cancel);
        canceller.join().unwrap();
        assert!(matches!(result, Err(ExecError::Cancelled)), "{result:?}");
        let prover = std::fs::read_to_string(&pid_file).unwrap();
        let prover = prover.trim();
        // SIGKILL is delivered before kill(2) returns, but the kernel may take a moment
        // to tear the process down; the bound only keeps a failure from hanging.
        for _ in 0..500 {
            if exited(prover) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the prover {prover} started by the wrapper still runs");
    }

    #[test]
    fn templates_and_failures() {
        let t: Vec<String> = vec!["x".into(), "--in={witness}".into(), "{proof}.json".into()];
        let out = render(
            &t,
            &[("witness", Path::new("/w")), ("proof", Path::new("/p"))],
        )
        .unwrap();
        assert_eq!(out, vec!["x", "--in=/w", "/p.json"]);
        assert!(matches!(
            render(&["{nope}".into()], &[]),
            Err(ExecError::Template(_))
        ));
        assert!(matches!(
            render(&["{open".into()], &[]),
            Err(ExecError::Template(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        let sh = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
        match run(
            &sh("echo first >&2; echo boom >&2; exit 3"),
            dir.path(),
            Duration::from_secs(60),
            &Cancel::new(),
        ) {
            Err(ExecError::Failed { code, stderr_tail }) => {
                assert_eq!(code, "code 3");
                assert!(stderr_tail.ends_with("boom"), "{stderr_tail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(
                &sh("sleep 30"),
                dir.path(),
                Duration::from_millis(100),
                &Cancel::new()
            ),
            Err(ExecError::Timeout(_))
        ));
        assert!(matches!(
            run(
                &["/nonexistent/prover".into()],
                dir.path(),
                Duration::from_secs(5),
                &Cancel::new()
            ),
            Err(ExecError::Spawn { .. })
        ));
        // A stone command without placeholders is the program; the flags follow.
        let c = command("stone", None, Some("sh /opt/prove.sh"))
            .unwrap()
            .unwrap();
        assert_eq!(c[..2], ["sh", "/opt/prove.sh"]);
        assert!(c.iter().any(|a| a == "--parameter_file={parameters}"));
        let own = command("stone", None, Some("p --out_file={proof}"))
            .unwrap()
            .unwrap();
        assert_eq!(own, ["p", "--out_file={proof}"]);
        // A JSON list keeps arguments with spaces whole.
        let listed = command(
            "snarkjs",
            None,
            Some(r#"["/opt/my prover/prove", "--zkey", "{zkey}"]"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(listed, ["/opt/my prover/prove", "--zkey", "{zkey}"]);
        assert!(command("snarkjs", None, Some("[1, 2]")).is_err());
        assert!(command("snarkjs", None, Some("[]")).is_err());
        let p = stone_parameter_file(&fri_parameters(16384, None, 4).unwrap(), 18, 24);
        assert_eq!(p["stark"]["fri"]["fri_step_list"], json!([0, 4, 4, 4]));
    }
}
