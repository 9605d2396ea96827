//! `proof`: writes a succeeded job's proof to files. Groth16 proofs become snarkjs's
//! `proof.json` and `public.json`, ready for `snarkjs groth16 verify`; STARK and VM proofs
//! become the proof as the prover wrote it and `public_outputs.json`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::Value;

use crate::artifact::{self, JobProof};
use crate::cluster::Cluster;

/// One file `proof` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// What the file is, for the user.
    pub what: &'static str,
}

/// Writes the job's proof files into `out` and lists them.
pub async fn run(
    cluster: &Cluster,
    name: &str,
    out: &Path,
    artifact: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let job = cluster.job(name).await?;
    let proof = artifact::load(&job, artifact).await?;
    let files = files(&proof)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!("proof of ProofJob {name}, from {}:", proof.source);
    for file in &files {
        let path = out.join(file.name);
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("  {}  {}", path.display(), file.what);
    }
    Ok(ExitCode::SUCCESS)
}

/// The files a proof is written to.
pub fn files(proof: &JobProof) -> anyhow::Result<Vec<OutFile>> {
    let mut files = Vec::new();
    if proof.is_groth16() {
        files.push(OutFile {
            name: "proof.json",
            bytes: json(&proof.proof),
            what: "the Groth16 proof (snarkjs proof.json)",
        });
        files.push(OutFile {
            name: "public.json",
            bytes: json(&proof.public_signals.clone().unwrap_or_default()),
            what: "its public signals (snarkjs public.json)",
        });
        return Ok(files);
    }
    match binary_proof(&proof.proof) {
        Some(encoded) => files.push(OutFile {
            name: "proof.bin",
            bytes: base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .context("the proof's base64 does not decode")?,
            what: "the proof file the prover wrote (for Miden, miden-vm's .proof), for that system's verifier",
        }),
        None => files.push(OutFile {
            name: "proof.json",
            bytes: json(&proof.proof),
            what: "the proof as the prover wrote it (for Stone, cpu_air_prover's proof), for that system's verifier",
        }),
    }
    if let Some(outputs) = &proof.public_outputs {
        files.push(OutFile {
            name: "public_outputs.json",
            bytes: json(outputs),
            what: "what the proof makes public (Miden: programHash, operandStack, stackOutputs; Stone: output, nSteps, layout)",
        });
    }
    if let Some(signals) = proof.public_signals.as_ref().filter(|s| !s.is_empty()) {
        files.push(OutFile {
            name: "public.json",
            bytes: json(signals),
            what: "its public signals",
        });
    }
    Ok(files)
}

/// The base64 of a proof file, when the prover handed back only that (`{"base64": …}`).
fn binary_proof(proof: &serde_json::Map<String, Value>) -> Option<&str> {
    match (proof.len(), proof.get("base64")) {
        (1, Some(Value::String(encoded))) => Some(encoded),
        _ => None,
    }
}

/// Pretty JSON, ending in a newline.
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proof(
        proof: Value,
        public_signals: Option<Vec<&str>>,
        public_outputs: Option<Value>,
    ) -> JobProof {
        JobProof {
            proof: proof.as_object().cloned().unwrap(),
            public_signals: public_signals.map(|s| s.into_iter().map(String::from).collect()),
            public_outputs: public_outputs.and_then(|v| v.as_object().cloned()),
            source: "test".into(),
        }
    }

    fn names(files: &[OutFile]) -> Vec<&str> {
        files.iter().map(|f| f.name).collect()
    }

    fn parsed(file: &OutFile) -> Value {
        serde_json::from_slice(&file.bytes).unwrap()
    }

    #[test]
    fn groth16_is_written_as_snarkjs_reads_it() {
        let groth16 = json!({"pi_a": ["1", "2", "1"], "protocol": "groth16", "curve": "bn128"});
        let files = files(&proof(groth16.clone(), Some(vec!["15", "3"]), None)).unwrap();
        assert_eq!(names(&files), ["proof.json", "public.json"]);
        assert_eq!(parsed(&files[0]), groth16);
        assert_eq!(parsed(&files[1]), json!(["15", "3"]));
    }

    #[test]
    fn a_miden_proof_is_decoded_next_to_its_public_outputs() {
        let outputs = json!({"programHash": "0xab", "operandStack": ["90"], "stackOutputs": ["1"]});
        let files = files(&proof(
            json!({"base64": "AAEC"}),
            None,
            Some(outputs.clone()),
        ))
        .unwrap();
        assert_eq!(names(&files), ["proof.bin", "public_outputs.json"]);
        assert_eq!(files[0].bytes, [0, 1, 2]);
        assert_eq!(parsed(&files[1]), outputs);
    }

    #[test]
    fn a_stone_proof_stays_json() {
        let stone = json!({"proof_hex": "0x12", "public_input": {"layout": "small"}});
        let outputs = json!({"output": ["7"], "nSteps": 512, "layout": "small"});
        let files = files(&proof(stone.clone(), Some(vec![]), Some(outputs))).unwrap();
        assert_eq!(names(&files), ["proof.json", "public_outputs.json"]);
        assert_eq!(parsed(&files[0]), stone);
    }

    #[test]
    fn bad_base64_is_an_error_not_a_corrupt_file() {
        let err = files(&proof(json!({"base64": "!!"}), None, Some(json!({})))).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
    }
}
