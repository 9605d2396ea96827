//! The `exec` backend: runs any command-line prover from a template with
//! placeholders for parameter, input and output files, with a timeout; a
//! failure reports the exit code and the tail of stderr.
//!
//! Profiles fix the template and the file contract:
//! - `snarkjs`: `snarkjs groth16 prove {zkey} {witness} {proof} {public}`
//! - `rapidsnark`: `rapidsnark {zkey} {witness} {proof} {public}` (same files)
//! - STARK and VM systems build their own command lines in their backends
//!   (`crate::backend`), with [`render`] and [`run`].

use std::io::{Read, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cancel::Cancel;

/// A fresh work directory for one run, in `work_root` (the pod's `/tmp`), else in a
/// `zkfleet-work` directory of the system's temporary directory. Every run is confined to its
/// own: [`run`] denies the program the rest of the work root (see [`crate::sandbox`]).
pub fn work_dir(work_root: Option<&Path>) -> Result<tempfile::TempDir, ExecError> {
    let root = match work_root {
        Some(r) => r.to_path_buf(),
        None => {
            let shared = std::env::temp_dir().join("zkfleet-work");
            std::fs::create_dir_all(&shared)?;
            shared
        }
    };
    Ok(tempfile::Builder::new().prefix("proof-").tempdir_in(root)?)
}

pub(crate) fn read_json(p: &Path) -> Result<Value, ExecError> {
    let bytes = std::fs::read(p)
        .map_err(|e| ExecError::Output(format!("{} not written: {e}", p.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ExecError::Output(format!("{} is not JSON: {e}", p.display())))
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

/// Bytes of a failed prover's log quoted in its error.
const LOG_TAIL_BYTES: u64 = 2048;

/// Runs `argv` in `dir` with a timeout, stderr kept in a file for the error, confined to `dir`
/// (see [`crate::sandbox`]).
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
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let work_root = dir.parent().unwrap_or(dir);
    let mut child =
        crate::sandbox::spawn(command, dir, work_root).map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = crate::usage::reap(|| child.try_wait())? {
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
    // The last LOG_TAIL_BYTES only: a prover may write gigabytes of log.
    let mut tail = Vec::new();
    if let Ok(mut f) = std::fs::File::open(&stderr_path) {
        let length = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)));
        let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut tail);
    }
    let code = status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
    Err(ExecError::Failed {
        code,
        stderr_tail: String::from_utf8_lossy(&tail).trim().to_string(),
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

/// The command a pod runs: the profile's (its proof system's default command), or a custom
/// template. A template without placeholders names the program (and any leading arguments)
/// and the profile's default arguments are appended, so a ProverPool command of just
/// `[cpu_air_prover]` works.
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
        Some(words) if !words.is_empty() && !words.iter().any(|w| w.contains('{')) => {
            let mut t = words;
            t.extend(profile_template(profile, Some("-"))?.into_iter().skip(1));
            Some(t)
        }
        Some(words) => Some(words),
        None => profile_template(profile, program),
    }
}

/// The default command of a profile, from the table of proof systems, with `program` in
/// place of the system's own program when given.
pub fn profile_template(profile: &str, program: Option<&str>) -> Option<Vec<String>> {
    let system = zkfleet_contract::systems::proof_system(profile)?;
    let mut template: Vec<String> = system
        .default_command
        .iter()
        .map(|w| w.to_string())
        .collect();
    if let Some(program) = program {
        template[0] = program.to_string();
    }
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
