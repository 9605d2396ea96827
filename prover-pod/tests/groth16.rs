//! The groth16-bn254 backend against snarkjs, on real circom circuits.

mod common;

use ark_bn254::Fr;
use ark_ff::One;
use common::{CIRCUITS, circuit, snarkjs_verifies};
use zkfleet_prover::cancel::Cancel;
use zkfleet_prover::groth16::json::{ProofJson, parse_public, public_json, verification_key_json};
use zkfleet_prover::groth16::witness::{WitnessCalculator, WitnessError};
use zkfleet_prover::groth16::{Groth16Error, Prover, ZkeyError, wtns, zkey};

fn prover(name: &str) -> Prover {
    let bytes = std::fs::read(circuit(name).join("circuit.zkey")).unwrap();
    Prover::new(zkey::parse(&bytes, true).unwrap()).unwrap()
}

/// Writes `proof.json` and `public.json` into `dir` as snarkjs reads them.
fn write_snarkjs_files(
    dir: &std::path::Path,
    proof: &ark_groth16::Proof<ark_bn254::Bn254>,
    public: &[Fr],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (proof_path, public_path) = (dir.join("proof.json"), dir.join("public.json"));
    let proof_json = serde_json::to_vec(&ProofJson::from_proof(proof)).unwrap();
    std::fs::write(&proof_path, proof_json).unwrap();
    std::fs::write(
        &public_path,
        serde_json::to_vec(&public_json(public)).unwrap(),
    )
    .unwrap();
    (proof_path, public_path)
}

#[test]
fn proofs_from_wtns_verify_with_snarkjs() {
    for name in CIRCUITS {
        let dir = circuit(name);
        let p = prover(name);
        let w = wtns::parse(&std::fs::read(dir.join("witness.wtns")).unwrap()).unwrap();
        let (proof, public) = p.prove(&w).unwrap();
        assert!(p.verify(&proof, &public).unwrap(), "{name}: own verifier");

        let tmp = tempfile::tempdir().unwrap();
        let (proof_path, public_path) = write_snarkjs_files(tmp.path(), &proof, &public);
        assert!(
            snarkjs_verifies(
                &dir.join("verification_key.json"),
                &public_path,
                &proof_path
            ),
            "{name}: snarkjs"
        );

        // The exported verification key is what snarkjs exports, and snarkjs accepts it.
        let ours = verification_key_json(&p.zkey.pk.vk);
        let mut theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("verification_key.json")).unwrap())
                .unwrap();
        theirs.as_object_mut().unwrap().remove("vk_alphabeta_12");
        assert_eq!(ours, theirs, "{name}: verification_key.json");
        let vk_path = tmp.path().join("vk.json");
        std::fs::write(&vk_path, serde_json::to_vec(&ours).unwrap()).unwrap();
        assert!(
            snarkjs_verifies(&vk_path, &public_path, &proof_path),
            "{name}: snarkjs with our vk"
        );
    }
}

#[test]
fn witness_from_inputs_matches_snarkjs_wtns() {
    for name in CIRCUITS {
        let dir = circuit(name);
        let calc =
            WitnessCalculator::new(&std::fs::read(dir.join("circuit.wasm")).unwrap()).unwrap();
        let input: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("input.json")).unwrap()).unwrap();
        let ours = calc.calculate(&input).unwrap();
        let theirs = wtns::parse(&std::fs::read(dir.join("witness.wtns")).unwrap()).unwrap();
        assert_eq!(ours, theirs, "{name}");

        let p = prover(name);
        let (proof, public) = p.prove(&ours).unwrap();
        assert!(p.verify(&proof, &public).unwrap());
    }
}

#[test]
fn a_cancelled_proof_stops_with_its_own_error_and_the_prover_proves_on() {
    let name = CIRCUITS[0];
    let p = prover(name);
    let w = wtns::parse(&std::fs::read(circuit(name).join("witness.wtns")).unwrap()).unwrap();
    let cancel = Cancel::new();
    cancel.cancel();
    assert!(matches!(
        p.prove_cancellable(&w, &cancel),
        Err(Groth16Error::Cancelled)
    ));
    let (proof, public) = p.prove_cancellable(&w, &Cancel::new()).unwrap();
    assert!(p.verify(&proof, &public).unwrap());
}

#[test]
fn verifier_rejects_tampered_proofs_and_wrong_signals() {
    let p = prover("merkle");
    let w = wtns::parse(&std::fs::read(circuit("merkle").join("witness.wtns")).unwrap()).unwrap();
    let (proof, public) = p.prove(&w).unwrap();
    let json = ProofJson::from_proof(&proof);

    // A different valid point in pi_a: still parses, must not verify.
    let mut tampered = proof.clone();
    tampered.a = (tampered.a + tampered.a).into();
    assert!(!p.verify(&tampered, &public).unwrap());
    let mut swapped = proof.clone();
    std::mem::swap(&mut swapped.a, &mut swapped.c);
    assert!(!p.verify(&swapped, &public).unwrap());

    // A coordinate changed in the JSON: not on the curve any more.
    let mut bad = json.clone();
    bad.pi_c[0] = "1".into();
    assert!(bad.to_proof().is_err());
    bad = json.clone();
    bad.pi_b[0][1] = "12345".into();
    assert!(bad.to_proof().is_err());

    let mut wrong = public.clone();
    wrong[0] += Fr::one();
    assert!(!p.verify(&proof, &wrong).unwrap());
    assert_eq!(
        p.verify(&proof, &public[1..]),
        Err(Groth16Error::WrongPublicCount {
            expected: public.len(),
            got: public.len() - 1
        })
    );
    assert!(parse_public(&["-1".to_string()]).is_err());
    assert!(
        parse_public(&[
            "21888242871839275222246405745257275088548364400416034343698204186575808495617"
                .to_string()
        ])
        .is_err()
    );
    assert!(
        p.verify(
            &json.to_proof().unwrap(),
            &parse_public(&public_json(&public)).unwrap()
        )
        .unwrap()
    );
}

#[test]
fn bad_witnesses_and_inputs_are_errors() {
    let p = prover("mulchain");
    let w = wtns::parse(&std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap()).unwrap();
    assert_eq!(
        p.prove(&w[1..]).unwrap_err(),
        Groth16Error::WrongWitnessLength {
            expected: w.len(),
            got: w.len() - 1
        }
    );
    let calc =
        WitnessCalculator::new(&std::fs::read(circuit("mulchain").join("circuit.wasm")).unwrap())
            .unwrap();
    use serde_json::json;
    assert!(matches!(
        calc.calculate(&json!({"a": 3})),
        Err(WitnessError::MissingSignal { .. })
    ));
    assert_eq!(
        calc.calculate(&json!({"a": 3, "c": 1})),
        Err(WitnessError::UnknownSignal("c".into()))
    );
    let bad = calc.calculate(&json!({"a": 3, "b": "secret-4711"}));
    assert!(matches!(bad, Err(WitnessError::NotAFieldValue { .. })));
    let message = bad.unwrap_err().to_string();
    assert!(
        message.contains("`b`") && !message.contains("4711"),
        "names the signal, never echoes the (possibly secret) value: {message}"
    );
    assert!(matches!(
        calc.calculate(&json!({"a": 3, "b": [1, 2]})),
        Err(WitnessError::WrongSize { .. })
    ));
    assert_eq!(calc.calculate(&json!([1])), Err(WitnessError::NotAnObject));
    // The merkle circuit constrains path indices to bits: 2 fails an assertion.
    let merkle =
        WitnessCalculator::new(&std::fs::read(circuit("merkle").join("circuit.wasm")).unwrap())
            .unwrap();
    let mut input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(circuit("merkle").join("input.json")).unwrap())
            .unwrap();
    input["pathIndices"][0] = json!("2");
    assert!(matches!(
        merkle.calculate(&input),
        Err(WitnessError::Rejected(_))
    ));
    assert!(matches!(
        WitnessCalculator::new(b"\0asm junk"),
        Err(WitnessError::BadWasm(_))
    ));
}

#[test]
fn truncated_or_foreign_zkeys_are_errors() {
    let bytes = std::fs::read(circuit("mulchain").join("circuit.zkey")).unwrap();
    assert_eq!(
        zkey::parse(b"not a zkey at all", true).unwrap_err(),
        ZkeyError::NotAZkey
    );
    for cut in [0, 3, 10, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
        assert!(zkey::parse(&bytes[..cut], true).is_err(), "cut at {cut}");
    }
    // Flip a byte inside the A points: detected by the point checks.
    let mut flipped = bytes.clone();
    let at = section_offset(&bytes, 5) + 64 * 3 + 5;
    flipped[at] ^= 0x55;
    assert!(matches!(
        zkey::parse(&flipped, true),
        Err(ZkeyError::InvalidPoint {
            what: "A",
            index: 3
        })
    ));
    // Unchecked parsing is only for files whose digest was checked before.
    assert!(zkey::parse(&flipped, false).is_ok());
    let wtns_bytes = std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap();
    assert_eq!(
        zkey::parse(&wtns_bytes, true).unwrap_err(),
        ZkeyError::NotAZkey
    );
}

/// A G2 point on the curve but outside the prime-order subgroup, in zkey
/// bytes (Montgomery limbs, little-endian).
fn g2_outside_subgroup() -> Vec<u8> {
    use ark_bn254::{Fq2, G2Affine};
    let mut x = Fq2::one();
    loop {
        if let Some(p) = G2Affine::get_point_from_x_unchecked(x, true)
            && !p.is_in_correct_subgroup_assuming_on_curve()
        {
            return [p.x.c0, p.x.c1, p.y.c0, p.y.c1]
                .iter()
                .flat_map(|f| f.0.0.iter().flat_map(|l| l.to_le_bytes()))
                .collect();
        }
        x += Fq2::one();
    }
}

#[test]
fn proving_key_points_outside_the_subgroup_only_yield_proofs_that_fail() {
    let dir = circuit("mulchain");
    let bytes = std::fs::read(dir.join("circuit.zkey")).unwrap();
    let bad = g2_outside_subgroup();

    // In the verification key (delta2): refused.
    let mut in_vk = bytes.clone();
    let delta2 = section_offset(&bytes, 2) + 84 + 64 + 64 + 128 + 128 + 64;
    in_vk[delta2..delta2 + 128].copy_from_slice(&bad);
    assert_eq!(
        zkey::parse(&in_vk, true).unwrap_err(),
        ZkeyError::InvalidPoint {
            what: "delta2",
            index: 0
        }
    );

    // In the proving key (B2 #1, weighted by the public output): loaded,
    // but its proofs are rejected by the verifier.
    let mut in_pk = bytes.clone();
    let b2 = section_offset(&bytes, 7) + 128;
    in_pk[b2..b2 + 128].copy_from_slice(&bad);
    let p = Prover::new(zkey::parse(&in_pk, true).unwrap()).unwrap();
    let w = wtns::parse(&std::fs::read(dir.join("witness.wtns")).unwrap()).unwrap();
    let (proof, public) = p.prove(&w).unwrap();
    assert!(!p.verify(&proof, &public).unwrap());
    assert!(
        prover("mulchain")
            .verify(&proof, &public)
            .is_ok_and(|ok| !ok)
    );
}

fn section_offset(zkey: &[u8], wanted: u32) -> usize {
    let mut pos = 12;
    loop {
        let ty = u32::from_le_bytes(zkey[pos..pos + 4].try_into().unwrap());
        let size = u64::from_le_bytes(zkey[pos + 4..pos + 12].try_into().unwrap()) as usize;
        if ty == wanted {
            return pos + 12;
        }
        pos += 12 + size;
    }
}

#[test]
fn preprocessed_key_is_reused_and_damage_is_ignored() {
    use zkfleet_prover::groth16::preprocessed::{cache_path, load};
    let zkey_path = circuit("merkle").join("circuit.zkey");
    let direct = zkey::parse(&std::fs::read(&zkey_path).unwrap(), true).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let (first, report) = load(&zkey_path, None, Some(cache.path())).unwrap();
    assert!(!report.from_cache);
    assert_eq!(first, direct);
    let (second, report) = load(&zkey_path, None, Some(cache.path())).unwrap();
    assert!(report.from_cache, "{:?}", report.cache_note);
    assert_eq!(second, direct);
    // Only the finished file is left in the cache directory.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);

    // A damaged preprocessed file is ignored and replaced.
    let file = cache_path(cache.path(), &report.digest);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::write(&file, &std::fs::read(&file).unwrap()[..(len / 2) as usize]).unwrap();
    let (third, report) = load(&zkey_path, Some(&report.digest), Some(cache.path())).unwrap();
    assert!(!report.from_cache);
    assert_eq!(third, direct);
    let (_, report) = load(&zkey_path, Some(&report.digest), Some(cache.path())).unwrap();
    assert!(report.from_cache);

    // An entry another pod on the node wrote under this zkey's name, holding another
    // circuit's key (whose verifying key would pass that pod's proofs), is not used.
    let other = tempfile::tempdir().unwrap();
    let mulchain = circuit("mulchain").join("circuit.zkey");
    let (_, other_report) = load(&mulchain, None, Some(other.path())).unwrap();
    std::fs::copy(cache_path(other.path(), &other_report.digest), &file).unwrap();
    let mut forged = std::fs::read(&file).unwrap();
    forged[8..40].copy_from_slice(&hex::decode(&report.digest).unwrap());
    std::fs::write(&file, forged).unwrap();
    let (fourth, forged_report) =
        load(&zkey_path, Some(&report.digest), Some(cache.path())).unwrap();
    assert!(!forged_report.from_cache, "a forged entry is not used");
    assert!(
        forged_report
            .cache_note
            .as_deref()
            .unwrap_or("")
            .contains("not the zkey's"),
        "{:?}",
        forged_report.cache_note
    );
    assert_eq!(fourth, direct);
    let (_, report) = load(&zkey_path, Some(&report.digest), Some(cache.path())).unwrap();
    assert!(report.from_cache, "the entry was rewritten from the zkey");

    // Proving with the cached key still gives proofs snarkjs accepts.
    let p = Prover::new(second).unwrap();
    let w = wtns::parse(&std::fs::read(circuit("merkle").join("witness.wtns")).unwrap()).unwrap();
    let (proof, public) = p.prove(&w).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (proof_path, public_path) = write_snarkjs_files(tmp.path(), &proof, &public);
    assert!(snarkjs_verifies(
        &circuit("merkle").join("verification_key.json"),
        &public_path,
        &proof_path
    ));
}

#[test]
fn exec_backend_with_snarkjs_makes_proofs_snarkjs_accepts() {
    use std::time::Duration;
    use zkfleet_prover::backend::{
        Backend, ExecGroth16Backend, Groth16Backend, Groth16Files, ProofInput,
    };
    use zkfleet_prover::exec::profile_template;
    let dir = circuit("merkle");
    let files = Groth16Files {
        zkey: dir.join("circuit.zkey"),
        zkey_sha256: None,
        wasm: Some(dir.join("circuit.wasm")),
        wasm_sha256: None,
        r1cs: None,
        r1cs_sha256: None,
        cache_dir: None,
    };
    let snarkjs = common::fixtures().join("bin/snarkjs");
    let backend = ExecGroth16Backend {
        system: "snarkjs",
        inner: Groth16Backend::load(&files).unwrap(),
        zkey: files.zkey.clone(),
        template: profile_template("snarkjs", snarkjs.to_str()).unwrap(),
        work_root: None,
        timeout: Duration::from_secs(600),
    };
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("input.json")).unwrap()).unwrap();
    let out = backend
        .prove(ProofInput::Inputs(input), &Cancel::new())
        .unwrap();
    assert_eq!(
        backend
            .verify(&out.proof, &out.public_signals, None)
            .unwrap(),
        Ok(())
    );
    let tmp = tempfile::tempdir().unwrap();
    let (proof_path, public_path) = (
        tmp.path().join("proof.json"),
        tmp.path().join("public.json"),
    );
    std::fs::write(&proof_path, serde_json::to_vec(&out.proof).unwrap()).unwrap();
    std::fs::write(
        &public_path,
        serde_json::to_vec(&out.public_signals).unwrap(),
    )
    .unwrap();
    assert!(snarkjs_verifies(
        &dir.join("verification_key.json"),
        &public_path,
        &proof_path
    ));

    // A failing prover reports its exit code and stderr.
    let failing = ExecGroth16Backend {
        template: vec![
            snarkjs.to_str().unwrap().into(),
            "groth16".into(),
            "prove".into(),
            "/nonexistent.zkey".into(),
            "{witness}".into(),
            "{proof}".into(),
            "{public}".into(),
        ],
        ..backend
    };
    let w = std::fs::read(dir.join("witness.wtns")).unwrap();
    let err = failing
        .prove(ProofInput::Wtns(w), &Cancel::new())
        .unwrap_err();
    assert_eq!(err.code(), "prover_failed");
    assert!(err.to_string().contains("exited with"), "{err}");
}

/// The circuit's r1cs, as circom wrote it, tells a witness of the circuit from one that only
/// has its shape: every honest witness satisfies it, and a change to any single value past
/// `w[0]` breaks a constraint (every signal of these circuits is constrained).
#[test]
fn witnesses_are_checked_against_the_circuits_own_r1cs() {
    use zkfleet_prover::groth16::r1cs::ConstraintSystem;
    for name in CIRCUITS {
        let cs =
            ConstraintSystem::parse(&std::fs::read(circuit(name).join("circuit.r1cs")).unwrap())
                .unwrap();
        let p = prover(name);
        assert_eq!(
            (cs.n_wires, cs.n_public),
            (p.n_vars(), p.n_public()),
            "{name}"
        );
        let w = wtns::parse(&std::fs::read(circuit(name).join("witness.wtns")).unwrap()).unwrap();
        assert_eq!(cs.first_unsatisfied(&w), None, "{name}: the honest witness");
        for at in 1..w.len() {
            let mut bad = w.clone();
            bad[at] += Fr::one();
            assert!(
                cs.first_unsatisfied(&bad).is_some(),
                "{name}: w[{at}] + 1 broke no constraint"
            );
        }
    }
}

/// A pool's r1cs must be its zkey's circuit, and the backend refuses a witness that breaks it
/// as the input's fault, before proving.
#[test]
fn the_backend_refuses_an_unsatisfiable_witness_before_proving_it() {
    use zkfleet_prover::backend::{
        Backend, BackendError, Groth16Backend, Groth16Files, ProofInput,
    };
    let files = |zkey: &str, r1cs: &str| Groth16Files {
        zkey: circuit(zkey).join("circuit.zkey"),
        zkey_sha256: None,
        wasm: None,
        wasm_sha256: None,
        r1cs: Some(circuit(r1cs).join("circuit.r1cs")),
        r1cs_sha256: None,
        cache_dir: None,
    };
    let Err(mismatch) = Groth16Backend::load(&files("mulchain", "merkle")) else {
        panic!("another circuit's r1cs was taken");
    };
    assert!(
        mismatch.to_string().contains("not the same circuit"),
        "{mismatch}"
    );
    let backend = Groth16Backend::load(&files("mulchain", "mulchain")).unwrap();
    let honest = std::fs::read(circuit("mulchain").join("witness.wtns")).unwrap();
    let mut w = wtns::parse(&honest).unwrap();
    let last = w.len() - 1;
    w[last] += Fr::one();
    let e = backend
        .prove(ProofInput::Wtns(wtns::write(&w)), &Cancel::new())
        .unwrap_err();
    assert!(
        matches!(e, BackendError::Groth16(Groth16Error::Unsatisfied { .. })),
        "{e}"
    );
    assert_eq!(e.code(), "input_rejected");
    assert!(
        e.is_client_error(),
        "the input's fault, not retried on another pod"
    );
    assert!(
        backend
            .prove(ProofInput::Wtns(honest), &Cancel::new())
            .is_ok()
    );
}
