//! The short version of `make fuzz`, run by `make unit` on stable: every seed in
//! `corpus/<target>/` and every saved crash in `regressions/<target>/` goes through the fuzz
//! targets' bodies once, and so do the fixtures' full-size zkeys and witnesses (too big to
//! fuzz from). The seeds are also checked to still reach the paths they were made for.

use std::path::{Path, PathBuf};

use zkfleet_contract::lease::{CompleteRequest, Outcome};
use zkfleet_groth16_verifier::Verifier;
use zkfleet_prover::groth16::{wtns, zkey};

const CIRCUITS: [&str; 2] = ["mulchain", "merkle"];

/// The files of `dir` under the fuzz crate, sorted; none when it does not exist.
fn files(dir: &str) -> Vec<PathBuf> {
    let dir = crate_dir().join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `body` on every seed and regression input of `target`; returns the seeds' count.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let seeds = files(&format!("corpus/{target}"));
    assert!(!seeds.is_empty(), "no seeds in fuzz/corpus/{target}");
    for path in seeds.iter().chain(&files(&format!("regressions/{target}"))) {
        eprintln!("replaying {}", path.display());
        body(&read(path));
    }
    seeds.len()
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    read(&crate_dir().join(format!("corpus/{target}/{name}")))
}

/// The fuzz crate, read when the test runs: the binary may have been compiled in another
/// checkout, and a directory that is gone would silently replay nothing.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The fixtures directory; fails the test with instructions when missing.
fn fixtures() -> PathBuf {
    let dir = std::env::var_os("ZKFLEET_FIXTURES").map(PathBuf::from);
    dir.filter(|d| d.join(".complete").exists())
        .unwrap_or_else(|| {
            panic!(
                "test fixtures are missing: run `eval \"$(prover-pod/fixtures/make-fixtures.sh)\"` \
             from the repository root, which sets ZKFLEET_FIXTURES"
            )
        })
}

#[test]
fn zkey_seeds_and_fixtures() {
    replay("zkey", zkfleet_fuzz::zkey);
    for circuit in CIRCUITS {
        zkfleet_fuzz::zkey(&read(&fixtures().join(circuit).join("circuit.zkey")));
    }
    // The shrunk key is a complete, valid zkey (3 signals, a domain of 1): the fuzzer starts
    // from inputs that reach every section's checks.
    let shrunk = zkey::parse(&seed("zkey", "mulchain-shrunk.zkey"), true).unwrap();
    assert_eq!((shrunk.n_vars, shrunk.domain_size), (3, 1));
    assert!(Verifier::from_zkey_bytes(&seed("zkey", "mulchain-verifying-key-only.zkey")).is_ok());
}

#[test]
fn wtns_seeds_and_fixtures() {
    replay("wtns", zkfleet_fuzz::wtns);
    for circuit in CIRCUITS {
        zkfleet_fuzz::wtns(&read(&fixtures().join(circuit).join("witness.wtns")));
    }
    assert_eq!(
        wtns::parse(&seed("wtns", "mulchain-first-4.wtns"))
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn circuit_input_seeds() {
    fixtures();
    replay("circuit_inputs", zkfleet_fuzz::circuit_inputs);
}

#[test]
fn dispatcher_body_seeds() {
    replay("dispatcher_bodies", zkfleet_fuzz::dispatcher_bodies);
    // The Groth16 result carries a real proof for the checked-in key: the fuzzer starts from
    // a body that goes all the way through verification.
    let body: CompleteRequest =
        serde_json::from_slice(&seed("dispatcher_bodies", "complete-proved.json")).unwrap();
    let Outcome::Proved {
        proof,
        public_signals,
        ..
    } = body.outcome
    else {
        panic!("complete-proved.json is not a proof");
    };
    let key = include_str!("../data/mulchain-verification_key.json");
    let verifier = Verifier::from_json(&serde_json::from_str(key).unwrap()).unwrap();
    assert_eq!(verifier.verify(&proof, &public_signals), Ok(true));
}
