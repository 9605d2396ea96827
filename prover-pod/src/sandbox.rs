//! The sandbox every external prover and verifier runs in: a Landlock domain (the Linux
//! security module any process may use on itself, no privilege needed) that lets the program
//! read and execute the image, read the pool's parameters, write only its own work directory,
//! and open no network connection; and an environment holding only what a program needs.
//!
//! What it keeps from a third-party prover: the pool's dispatcher token (whoever holds it can
//! lease every tenant's jobs), the other attempts' work directories and downloaded inputs (other
//! tenants' data), the agent's memory and `/proc` files (Landlock denies a sandboxed process
//! any ptrace access to processes outside its domain), and the agent's environment.
//!
//! Why not another uid: switching uid needs `CAP_SETUID`, which a non-root pod does not have,
//! and granting it would hand the capability to the agent that holds the token. Landlock
//! restricts the one thread that spawns the child (and so the child), never the agent.
//!
//! A kernel without Landlock (before Linux 5.13, or with it disabled) cannot isolate the
//! program, and then exec provers refuse to run rather than run unconfined.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

/// The newest Landlock ABI asked for; older kernels enforce what they can (best effort), and
/// any Landlock at all confines the filesystem.
const ABI_WANTED: ABI = ABI::V5;

/// Environment variables a program keeps: where to find programs and libraries, and locale.
/// Everything else (the agent's settings, cloud credentials, the pod's service addresses) is
/// dropped.
const KEPT_ENV: &[&str] = &["PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TZ"];

static PROTECTED: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Paths no sandboxed program may open, whatever its work directory: the agent calls this at
/// start with the directory of its dispatcher token. Set once; later calls are ignored.
pub fn protect(paths: Vec<PathBuf>) {
    let _ = PROTECTED.set(paths);
}

/// Spawns `command` confined to `work_dir` (read and write), with read and execute access to
/// everything else except `work_root` (where the other attempts' directories are) and the
/// protected paths, no network, and a clean environment (`HOME` and `TMPDIR` are `work_dir`).
pub fn spawn(mut command: Command, work_dir: &Path, work_root: &Path) -> std::io::Result<Child> {
    command.env_clear();
    for name in KEPT_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.env("HOME", work_dir).env("TMPDIR", work_dir);
    let mut denied: Vec<PathBuf> = PROTECTED.get().cloned().unwrap_or_default();
    denied.push(work_root.to_path_buf());
    let work_dir = work_dir.to_path_buf();
    // Landlock confines the calling thread and what it forks: a thread of its own, which
    // ends once the child is spawned, so the agent's threads stay unconfined.
    std::thread::spawn(move || {
        confine(&work_dir, &denied)?;
        command.spawn()
    })
    .join()
    .map_err(|_| std::io::Error::other("the sandbox thread panicked"))?
}

fn confine(work_dir: &Path, denied: &[PathBuf]) -> std::io::Result<()> {
    let denied: Vec<PathBuf> = denied
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let mut readable = Vec::new();
    readable_except(Path::new("/"), &denied, &mut readable);
    let refuse = |e: landlock::RulesetError| {
        std::io::Error::other(format!("cannot set up the prover's sandbox: {e}"))
    };
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(refuse)?
        .handle_access(AccessNet::from_all(ABI_WANTED))
        .map_err(refuse)?
        .create()
        .map_err(refuse)?
        .add_rules(path_beneath_rules(
            &readable,
            AccessFs::from_read(ABI_WANTED),
        ))
        .map_err(refuse)?
        // /dev for /dev/null, /dev/urandom and /dev/shm.
        .add_rules(path_beneath_rules(
            [work_dir, Path::new("/dev")],
            AccessFs::from_all(ABI_WANTED),
        ))
        .map_err(refuse)?
        .restrict_self()
        .map_err(refuse)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(std::io::Error::other(
            "this node's kernel does not enforce Landlock (Linux 5.13 or later, with landlock in the lsm= boot list): exec provers are not run unconfined next to the pool's token",
        ));
    }
    Ok(())
}

/// Collects into `out` the entries of `dir` that hold none of `denied` (which are canonical),
/// and descends into those that are ancestors of one. A symlink that leads to or above a
/// denied path is left out: its target is reached by its own path.
fn readable_except(dir: &Path, denied: &[PathBuf], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let real = path.canonicalize().unwrap_or_else(|_| path.clone());
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if denied.iter().any(|d| d.starts_with(&real)) {
            // `real` is a denied path or holds one.
            if !is_link && !denied.contains(&real) {
                readable_except(&path, denied, out);
            }
        } else if !denied.iter().any(|d| real.starts_with(d)) {
            out.push(path);
        }
    }
}
