//! The standalone verifier against snarkjs files: keys from snarkjs'
//! `verification_key.json` and from the zkey, proofs from the crate's prover.

mod common;

use common::{CIRCUITS, circuit};
use serde_json::Value;
use zkfleet_prover::groth16::json::{ProofJson, public_json};
use zkfleet_prover::groth16::{Prover, Verifier, VerifyError, ZkeyError, wtns, zkey};

fn snarkjs_key(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(circuit(name).join("verification_key.json")).unwrap())
        .unwrap()
}

/// A fresh proof of the circuit's sample witness, as JSON, with its public signals.
fn proof(name: &str) -> (Value, Vec<String>) {
    let dir = circuit(name);
    let prover =
        Prover::new(zkey::parse(&std::fs::read(dir.join("circuit.zkey")).unwrap(), true).unwrap())
            .unwrap();
    let w = wtns::parse(&std::fs::read(dir.join("witness.wtns")).unwrap()).unwrap();
    let (proof, public) = prover.prove(&w).unwrap();
    (
        serde_json::to_value(ProofJson::from_proof(&proof)).unwrap(),
        public_json(&public),
    )
}

#[test]
fn snarkjs_keys_round_trip_and_match_the_zkey() {
    for name in CIRCUITS {
        let theirs = snarkjs_key(name);
        let from_json = Verifier::from_json(&theirs).unwrap();
        let mut expected = theirs.clone();
        expected.as_object_mut().unwrap().remove("vk_alphabeta_12");
        assert_eq!(from_json.verification_key_json(), expected, "{name}");
        assert_eq!(
            from_json.n_public(),
            theirs["nPublic"].as_u64().unwrap() as usize
        );

        let zkey_bytes = std::fs::read(circuit(name).join("circuit.zkey")).unwrap();
        let from_zkey = Verifier::from_zkey_bytes(&zkey_bytes).unwrap();
        assert_eq!(
            from_zkey.verifying_key(),
            from_json.verifying_key(),
            "{name}"
        );
        let full = zkey::parse(&zkey_bytes, true).unwrap();
        assert_eq!(from_zkey.verifying_key(), &full.pk.vk, "{name}");
        // Read as a stream, through small reads.
        let file = std::fs::File::open(circuit(name).join("circuit.zkey")).unwrap();
        let from_file =
            Verifier::from_zkey_reader(std::io::BufReader::with_capacity(7, file)).unwrap();
        assert_eq!(from_file.verifying_key(), &full.pk.vk, "{name}");
    }
}

#[test]
fn zkeys_that_are_not_zkeys_are_refused() {
    let bytes = std::fs::read(circuit("mulchain").join("circuit.zkey")).unwrap();
    assert_eq!(
        Verifier::from_zkey_bytes(b"not a zkey").unwrap_err(),
        ZkeyError::NotAZkey
    );
    for cut in [0, 3, 10, 100, bytes.len() - 1] {
        let err = Verifier::from_zkey_bytes(&bytes[..cut]).unwrap_err();
        let expected = if cut < 4 {
            ZkeyError::NotAZkey
        } else {
            // The same refusal as the full parser's.
            zkey::parse(&bytes[..cut], true).unwrap_err()
        };
        assert_eq!(err, expected, "cut at {cut}");
    }
}

#[test]
fn real_proofs_verify_and_tampered_ones_do_not() {
    for name in CIRCUITS {
        let verifier = Verifier::from_json(&snarkjs_key(name)).unwrap();
        let (proof, public) = proof(name);
        assert_eq!(verifier.verify(&proof, &public), Ok(true), "{name}");

        // pi_a negated is still a curve point, so the proof is well formed but wrong.
        let mut tampered = proof.clone();
        let p = "21888242871839275222246405745257275088696311157297823662689037894645226208583";
        let y: num_bigint::BigUint = tampered["pi_a"][1].as_str().unwrap().parse().unwrap();
        let neg_y = p.parse::<num_bigint::BigUint>().unwrap() - y;
        tampered["pi_a"][1] = Value::String(neg_y.to_string());
        assert_eq!(verifier.verify(&tampered, &public), Ok(false), "{name}");

        // pi_a and pi_c swapped: also on the curve, also wrong.
        let mut swapped = proof.clone();
        swapped["pi_c"] = proof["pi_a"].clone();
        swapped["pi_a"] = proof["pi_c"].clone();
        assert_eq!(verifier.verify(&swapped, &public), Ok(false), "{name}");

        let mut wrong_signal = public.clone();
        let last: num_bigint::BigUint = wrong_signal[0].parse().unwrap();
        wrong_signal[0] = (last + 1u32).to_string();
        assert_eq!(verifier.verify(&proof, &wrong_signal), Ok(false), "{name}");

        let mut one_more = public.clone();
        one_more.push("1".into());
        assert_eq!(
            verifier.verify(&proof, &one_more),
            Err(VerifyError::WrongPublicCount {
                expected: public.len(),
                got: public.len() + 1
            }),
            "{name}"
        );
        let err = verifier
            .verify(&serde_json::json!({"garbage": true}), &public)
            .unwrap_err();
        assert!(matches!(err, VerifyError::MalformedProof(_)), "{name}");
        assert!(err.to_string().contains("pi_a"), "{err}");
        let mut not_a_number = public.clone();
        not_a_number[0] = "0x12".into();
        assert_eq!(
            verifier.verify(&proof, &not_a_number),
            Err(VerifyError::InvalidPublicSignal(0))
        );
    }
}

#[test]
fn snarkjs_proofs_verify_against_the_zkey_key() {
    // A proof snarkjs made, checked with the key read from the zkey.
    let name = "mulchain";
    let dir = circuit(name);
    let tmp = tempfile::tempdir().unwrap();
    let (proof_path, public_path) = (
        tmp.path().join("proof.json"),
        tmp.path().join("public.json"),
    );
    let (ok, out) = common::snarkjs(&[
        "groth16",
        "prove",
        dir.join("circuit.zkey").to_str().unwrap(),
        dir.join("witness.wtns").to_str().unwrap(),
        proof_path.to_str().unwrap(),
        public_path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let proof: Value = serde_json::from_slice(&std::fs::read(&proof_path).unwrap()).unwrap();
    let public: Vec<String> =
        serde_json::from_slice(&std::fs::read(&public_path).unwrap()).unwrap();
    let verifier =
        Verifier::from_zkey_bytes(&std::fs::read(dir.join("circuit.zkey")).unwrap()).unwrap();
    assert_eq!(verifier.verify(&proof, &public), Ok(true));
}
