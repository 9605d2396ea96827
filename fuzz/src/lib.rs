//! The bodies of zkfleet's fuzz targets: each hands bytes that come from outside (a parameter
//! file, a witness, a job's input, a prover pod's request) to the parser that reads them, and
//! checks what must hold for any input. Errors are fine; a panic, an abort or an allocation
//! the input did not pay for is a bug. The targets in `fuzz_targets/` and the replay test in
//! `tests/` call these same functions, so a saved input replays on stable as it ran fuzzed.

use std::path::PathBuf;
use std::sync::OnceLock;

use ark_bn254::Fr;
use serde_json::Value;
use zkfleet_contract::lease::{Caller, CompleteRequest, HeartbeatRequest, LeaseRequest, Outcome};
use zkfleet_groth16_verifier::Verifier;
use zkfleet_prover::groth16::witness::{WitnessCalculator, field_value};
use zkfleet_prover::groth16::{Prover, wtns as wtns_file, zkey as zkey_file};

/// A `.zkey` as the prover loads it (with and without point checks) and as the operator reads
/// its verifying key. Whatever the prover's checked parse accepts, the verifying-key reader
/// accepts too, with the same key, and the prover can load and prove with.
pub fn zkey(data: &[u8]) {
    let full = zkey_file::parse(data, true);
    let unchecked = zkey_file::parse(data, false);
    let header_only = Verifier::from_zkey_bytes(data);
    let Ok(full) = full else {
        return;
    };
    assert!(unchecked.is_ok(), "a checked zkey fails unchecked");
    let verifier = header_only.expect("the prover reads a zkey the verifier refuses");
    assert_eq!(verifier.verifying_key(), &full.pk.vk);
    assert_eq!(verifier.n_public(), full.n_public);
    // Any witness of the right length: the key's matrices need not describe a real circuit.
    let witness: Vec<Fr> = (1..=full.n_vars as u64).map(Fr::from).collect();
    if let Ok(prover) = Prover::new(full) {
        let (proof, public) = prover
            .prove(&witness)
            .expect("a witness of the key's length proves");
        let _ = prover.verify(&proof, &public);
    }
}

/// A `.wtns` witness; whatever parses writes back to a file that parses to the same values.
pub fn wtns(data: &[u8]) {
    if let Ok(values) = wtns_file::parse(data) {
        assert_eq!(wtns_file::parse(&wtns_file::write(&values)), Ok(values));
    }
}

/// A job's circuit-input JSON: every value through the signal-value parser, then the whole
/// object through the witness generator of the mulchain fixture circuit.
pub fn circuit_inputs(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    each_value(&input, &mut |v| {
        let _ = field_value(v);
    });
    let calculator = mulchain();
    if let Ok(witness) = calculator.calculate(&input) {
        assert_eq!(witness.len(), calculator.witness_size());
        assert_eq!(witness.first(), Some(&Fr::from(1u64)));
    }
}

fn each_value(v: &Value, f: &mut impl FnMut(&Value)) {
    f(v);
    match v {
        Value::Array(items) => items.iter().for_each(|i| each_value(i, f)),
        Value::Object(fields) => fields.values().for_each(|i| each_value(i, f)),
        _ => {}
    }
}

/// The witness generator of the mulchain fixture, compiled once per process.
fn mulchain() -> &'static WitnessCalculator {
    static CALCULATOR: OnceLock<WitnessCalculator> = OnceLock::new();
    CALCULATOR.get_or_init(|| {
        let wasm = fixtures().join("mulchain/circuit.wasm");
        let bytes =
            std::fs::read(&wasm).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm.display()));
        WitnessCalculator::new(&bytes).expect("the mulchain fixture is a circom witness generator")
    })
}

fn fixtures() -> PathBuf {
    std::env::var_os("ZKFLEET_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "circuit_inputs runs the fixture circuits: run `eval \"$(prover-pod/fixtures/make-fixtures.sh)\"` \
             from the repository root, which sets ZKFLEET_FIXTURES"
        )
    })
}

/// A request body or caller header a prover pod sends the dispatcher. Every request type
/// that decodes encodes back to itself; a Groth16 result's proof and public signals are
/// checked against the mulchain fixture's verification key, as the dispatcher checks a pool's.
pub fn dispatcher_bodies(data: &[u8]) {
    if let Ok(header) = std::str::from_utf8(data)
        && let Some(caller) = Caller::from_header_value(header)
    {
        assert_eq!(caller.header_value(), header);
    }
    if let Ok(lease) = serde_json::from_slice::<LeaseRequest>(data) {
        assert_eq!(round_trip(&lease), lease);
    }
    if let Ok(heartbeat) = serde_json::from_slice::<HeartbeatRequest>(data) {
        assert_eq!(round_trip(&heartbeat), heartbeat);
    }
    if let Ok(complete) = serde_json::from_slice::<CompleteRequest>(data) {
        assert_eq!(
            without_json_values(round_trip(&complete)),
            without_json_values(complete.clone())
        );
        if let Outcome::Proved {
            proof,
            public_signals,
            ..
        } = &complete.outcome
        {
            let _ = verifier().verify(proof, public_signals);
        }
    }
}

/// A result with its free-form JSON taken out: serde_json reads some floats back one bit off
/// (it does not promise float round trips), and a proof's JSON is handed on, not re-encoded.
fn without_json_values(mut complete: CompleteRequest) -> CompleteRequest {
    if let Outcome::Proved {
        proof,
        public_outputs,
        ..
    } = &mut complete.outcome
    {
        *proof = Value::Null;
        *public_outputs = None;
    }
    complete
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let text = serde_json::to_vec(value).expect("a decoded request encodes");
    serde_json::from_slice(&text).expect("an encoded request decodes")
}

/// The verification key of the mulchain fixture (copied into `data/`, so this target runs
/// without the fixtures).
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let key = include_str!("../data/mulchain-verification_key.json");
        let key: Value = serde_json::from_str(key).expect("the checked-in key is JSON");
        Verifier::from_json(&key).expect("the checked-in key is a verification key")
    })
}
