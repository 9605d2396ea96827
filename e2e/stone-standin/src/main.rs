//! A STAND-IN for StarkWare Stone, used by the e2e tests because Stone's `cpu_air_prover` and
//! `cpu_air_verifier` cannot be built on the test machines. It proves nothing. What it checks
//! is the contract between a zkfleet Stone pod and the real binaries:
//!
//! `stone-standin prove --out_file=.. --public_input_file=.. --private_input_file=..
//! --prover_config_file=.. --parameter_file=..` (the flags `cpu_air_prover` takes) checks that
//! every flag is there, that the FRI parameters satisfy Stone's equation
//! `log2(last_layer_degree_bound) + Σ fri_step_list = log2(n_steps) + 4`, that the private
//! input points at trace and memory files that exist, and writes a "proof" that embeds the
//! public input, as Stone's proof file does, with a digest over it.
//!
//! `stone-standin verify --in_file=PROOF` (the flag `cpu_air_verifier` takes) accepts exactly
//! the stand-in's own untampered proofs: exit 0, else exit 1 with the reason, like the real
//! verifier.

use std::collections::HashMap;
use std::process::ExitCode;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((mode, flags)) if mode == "prove" => flags_of(flags).and_then(|f| prove(&f)),
        Some((mode, flags)) if mode == "verify" => flags_of(flags).and_then(|f| verify(&f)),
        _ => Err((
            64,
            "usage: stone-standin prove|verify --flag=value...".into(),
        )),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn flags_of(args: &[String]) -> Result<HashMap<String, String>, Failure> {
    args.iter()
        .map(|a| {
            a.strip_prefix("--")
                .and_then(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or((64, format!("unexpected argument {a}")))
        })
        .collect()
}

fn flag<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Failure> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or((65, format!("flag --{name} is missing")))
}

fn read_json(path: &str) -> Result<Value, Failure> {
    let bytes = std::fs::read(path).map_err(|e| (66, format!("cannot read {path}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| (66, format!("{path} is not JSON: {e}")))
}

fn digest(public_input: &Value) -> String {
    hex::encode(Sha256::digest(public_input.to_string().as_bytes()))
}

fn prove(flags: &HashMap<String, String>) -> Result<String, Failure> {
    const FLAGS: [&str; 5] = [
        "out_file",
        "public_input_file",
        "private_input_file",
        "prover_config_file",
        "parameter_file",
    ];
    if let Some(extra) = flags.keys().find(|k| !FLAGS.contains(&k.as_str())) {
        return Err((64, format!("unexpected flag --{extra}")));
    }
    let public = read_json(flag(flags, "public_input_file")?)?;
    let private = read_json(flag(flags, "private_input_file")?)?;
    let config = read_json(flag(flags, "prover_config_file")?)?;
    let params = read_json(flag(flags, "parameter_file")?)?;
    let n_steps = public["n_steps"]
        .as_u64()
        .ok_or((67, "public input has no n_steps".to_string()))?;
    let fri = &params["stark"]["fri"];
    let bound = fri["last_layer_degree_bound"].as_u64().unwrap_or(0);
    let steps: Vec<u64> = fri["fri_step_list"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let log2 = |n: u64| 63 - n.leading_zeros() as u64;
    if bound == 0 || log2(bound) + steps.iter().sum::<u64>() != log2(n_steps) + 4 {
        return Err((
            68,
            format!("FRI equation fails: bound {bound} steps {steps:?} n_steps {n_steps}"),
        ));
    }
    for key in ["trace_path", "memory_path"] {
        let path = private[key].as_str().unwrap_or_default();
        if !std::path::Path::new(path).is_file() {
            return Err((69, format!("private input {key} {path:?} is not a file")));
        }
    }
    if config.get("constraint_polynomial_task_size").is_none() {
        return Err((70, "the prover config is not Stone's".into()));
    }
    let proof = json!({
        "stand_in": true,
        "public_input": public,
        "proof_parameters": params,
        "proof_hex": digest(&public),
    });
    let out = flag(flags, "out_file")?;
    std::fs::write(out, proof.to_string()).map_err(|e| (71, format!("writing {out}: {e}")))?;
    Ok(format!(
        "stand-in proof of {n_steps} steps written to {out}"
    ))
}

fn verify(flags: &HashMap<String, String>) -> Result<String, Failure> {
    if flags.len() != 1 {
        return Err((64, "usage: stone-standin verify --in_file=PROOF".into()));
    }
    let proof = read_json(flag(flags, "in_file")?)?;
    if proof["stand_in"] != json!(true) {
        return Err((1, "Invalid proof: not a stand-in proof".into()));
    }
    if proof["proof_hex"].as_str() != Some(digest(&proof["public_input"]).as_str()) {
        return Err((
            1,
            "Proof verification failed: the proof does not match its public input".into(),
        ));
    }
    Ok("Proof verified successfully.".into())
}
