//! The `miden` proof system with the real `miden-vm` (built by `e2e/scripts/build-miden.sh`;
//! `make unit` sets ZKFLEET_MIDEN_VM to it): loaded through the registry as a pod loads it,
//! proving the fixture program, and verifying, which must refuse tampered proofs, other
//! outputs and other programs.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use clap::Parser;
use serde_json::{Value, json};
use zkfleet_prover::backend::{self, Backend, LoadContext, ProofInput};
use zkfleet_prover::cancel::Cancel;
use zkfleet_prover::config::{Cli, Command};

fn miden_vm() -> PathBuf {
    std::env::var_os("ZKFLEET_MIDEN_VM").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "ZKFLEET_MIDEN_VM is not set: run `export ZKFLEET_MIDEN_VM=$(e2e/scripts/build-miden.sh | tail -1)` (make unit does)"
        )
    })
}

fn fixtures() -> PathBuf {
    // Read when the test runs: the shared target directory may hold this binary compiled in
    // another checkout, whose files may be gone.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("fixtures/miden")
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The system a Miden pod loads from its parameters directory.
fn load() -> Arc<dyn Backend> {
    let program = fixtures().join("fib.masm");
    let file = format!("fib.masm={}", sha256(&program));
    let template = format!("[{:?}]", miden_vm().display().to_string());
    let cli = Cli::parse_from([
        "zkfleet-prover",
        "serve",
        "--backend",
        "exec",
        "--exec-profile",
        "miden",
        "--exec-template",
        &template,
        "--parameters-dir",
        fixtures().to_str().unwrap(),
        "--parameter-file",
        &file,
    ]);
    let Command::Serve(args) = cli.command else {
        unreachable!()
    };
    let ctx = LoadContext {
        template: zkfleet_prover::exec::command("miden", None, Some(&template))
            .unwrap()
            .unwrap(),
        timeout: std::time::Duration::from_secs(120),
        fetched: None,
        args: *args,
    };
    let (system, digest) = backend::load("miden", &ctx).expect("the program loads");
    assert!(digest.starts_with("miden:"), "{digest}");
    system
}

fn inputs(text: &str) -> ProofInput {
    ProofInput::Files([("inputs.json".to_string(), text.as_bytes().to_vec())].into())
}

#[test]
fn miden_proves_the_program_and_its_verifier_refuses_anything_else() {
    let system = load();
    assert_eq!(system.system(), "miden");
    assert_eq!(system.input_files(), ["inputs.json"]);
    let input = std::fs::read_to_string(fixtures().join("fib-input.json")).unwrap();
    let out = system.prove(inputs(&input), &Cancel::new()).unwrap();
    let outputs = out.public_outputs.clone().unwrap();
    assert_eq!(outputs["stackOutputs"][0], "12586269025", "fib(50)");
    assert_eq!(outputs["operandStack"], json!(["50"]));
    let hash = outputs["programHash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert!(out.public_signals.is_empty());

    let verify = |proof: &Value, outputs: &Value| system.verify(proof, &[], Some(outputs)).unwrap();
    assert_eq!(verify(&out.proof, &outputs), Ok(()));

    // One byte of the proof flipped: miden-vm verify refuses it.
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(out.proof["base64"].as_str().unwrap())
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = json!({"base64": base64::engine::general_purpose::STANDARD.encode(&bytes)});
    let why = verify(&tampered, &outputs).unwrap_err();
    assert!(why.contains("miden-vm verify"), "{why}");

    // The honest proof claimed for another output, another input or another program.
    let mut other = outputs.clone();
    other["stackOutputs"][0] = json!("12586269026");
    assert!(verify(&out.proof, &other).is_err());
    let mut other = outputs.clone();
    other["operandStack"] = json!(["51"]);
    assert!(verify(&out.proof, &other).is_err());
    let mut other = outputs.clone();
    other["programHash"] = json!("0".repeat(64));
    let why = verify(&out.proof, &other).unwrap_err();
    assert!(why.contains("program hash"), "{why}");
    // Not a proof at all.
    assert!(verify(&json!({"pi_a": []}), &outputs).is_err());
}

#[test]
fn bad_miden_input_is_refused_with_what_to_fix_and_not_retried() {
    let system = load();
    // The program's assertion fails for n = 0: the VM refuses the run.
    let bad = std::fs::read_to_string(fixtures().join("fib-bad-input.json")).unwrap();
    let e = system.prove(inputs(&bad), &Cancel::new()).unwrap_err();
    assert_eq!(e.code(), "input_rejected", "{e}");
    assert!(e.is_client_error(), "a retry cannot help: {e}");
    assert!(e.to_string().contains("n must be at least 1"), "{e}");

    // Refused before proving: no operand stack, the wrong file, or Groth16 input.
    for (input, code) in [
        (inputs(r#"{"advice_stack": []}"#), "invalid_input_file"),
        (
            ProofInput::Files([("input.json".to_string(), b"{}".to_vec())].into()),
            "unknown_input_file",
        ),
        (ProofInput::Inputs(json!({"a": "1"})), "wrong_input_kind"),
    ] {
        let e = system.check(&input).unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.is_bad_request(), "{e}");
    }
}
