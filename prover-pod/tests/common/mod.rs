//! Finds the fixtures made by `prover-pod/fixtures/make-fixtures.sh`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub const CIRCUITS: [&str; 2] = ["mulchain", "merkle"];

/// The fixtures directory; fails the test with instructions when missing.
pub fn fixtures() -> PathBuf {
    let hint = "test fixtures are missing: run `eval \"$(prover-pod/fixtures/make-fixtures.sh)\"` \
                from the repository root (about 3 minutes the first time), which sets ZKFLEET_FIXTURES";
    let dir = std::env::var_os("ZKFLEET_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{hint}"));
    assert!(
        dir.join(".complete").exists(),
        "{hint} (no complete fixtures in {})",
        dir.display()
    );
    dir
}

pub fn circuit(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// Runs the pinned snarkjs; returns (success, stdout + stderr).
pub fn snarkjs(args: &[&str]) -> (bool, String) {
    let out = Command::new(fixtures().join("bin/snarkjs"))
        .args(args)
        .output()
        .expect("run snarkjs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `snarkjs groth16 verify` on files; true when snarkjs prints OK.
pub fn snarkjs_verifies(
    vk: &std::path::Path,
    public: &std::path::Path,
    proof: &std::path::Path,
) -> bool {
    let (ok, text) = snarkjs(&[
        "groth16",
        "verify",
        vk.to_str().unwrap(),
        public.to_str().unwrap(),
        proof.to_str().unwrap(),
    ]);
    ok && text.contains("OK!")
}

/// Polls `ok` until it holds; the bound only keeps a broken build from
/// hanging CI, it is not a timed assertion.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("gave up waiting for {what}");
}
