//! Checks snarkjs Groth16 proofs against a verifying key alone, read from a
//! snarkjs `verification_key.json` or from a zkey: what a party that holds
//! no proving key (the operator) needs to trust a proof it did not make.

use std::io::Read;

use ark_bn254::Bn254;
use ark_groth16::{Groth16, PreparedVerifyingKey, VerifyingKey, prepare_verifying_key};
use serde::Deserialize as _;
use serde_json::Value;

use crate::json::{self, JsonError, ProofJson};
use crate::zkey::{self, ZkeyError};

/// Why a proof could not be checked at all. A well-formed proof that does
/// not verify is not an error: [`Verifier::verify`] answers `Ok(false)`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The proof is not a snarkjs `proof.json` object.
    #[error("proof is not a snarkjs proof.json (pi_a, pi_b, pi_c, protocol, curve): {0}")]
    MalformedProof(String),
    /// The proof has the right shape but is not a BN254 Groth16 proof
    /// (a point off the curve, another protocol or curve).
    #[error("invalid proof: {0}")]
    InvalidProof(JsonError),
    /// The number of public signals is not the circuit's.
    #[error("expected {expected} public signals, got {got}")]
    WrongPublicCount { expected: usize, got: usize },
    /// A public signal is not a field element.
    #[error("public signal #{0} is not a decimal integer below the BN254 scalar field modulus")]
    InvalidPublicSignal(usize),
}

impl VerifyError {
    /// Stable machine-readable code, the same the prover's `/v1/verify` answers with.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MalformedProof(_) | VerifyError::InvalidProof(_) => "invalid_proof",
            VerifyError::WrongPublicCount { .. } => "wrong_public_count",
            VerifyError::InvalidPublicSignal(_) => "invalid_public_signal",
        }
    }
}

/// A Groth16 BN254 verifying key, prepared for checking proofs.
pub struct Verifier {
    vk: VerifyingKey<Bn254>,
    pvk: PreparedVerifyingKey<Bn254>,
    n_public: usize,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("n_public", &self.n_public)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `vk`; its IC has one point more than there are public signals.
    pub fn new(vk: VerifyingKey<Bn254>) -> Self {
        let n_public = vk.gamma_abc_g1.len().saturating_sub(1);
        let pvk = prepare_verifying_key(&vk);
        Verifier { vk, pvk, n_public }
    }

    /// From snarkjs `verification_key.json`, every point checked.
    pub fn from_json(v: &Value) -> Result<Self, JsonError> {
        json::parse_verification_key(v).map(Self::new)
    }

    /// From the verifying-key sections of a zkey held in memory.
    pub fn from_zkey_bytes(bytes: &[u8]) -> Result<Self, ZkeyError> {
        Self::from_zkey_reader(bytes)
    }

    /// From a zkey read front to back once (a file, a download), keeping
    /// only its verifying-key sections in memory.
    pub fn from_zkey_reader<R: Read>(r: R) -> Result<Self, ZkeyError> {
        zkey::read_verifying_key(r).map(|(vk, _)| Self::new(vk))
    }

    /// Number of public signals a proof is checked against.
    pub fn n_public(&self) -> usize {
        self.n_public
    }

    pub fn verifying_key(&self) -> &VerifyingKey<Bn254> {
        &self.vk
    }

    /// The key as snarkjs `verification_key.json`.
    pub fn verification_key_json(&self) -> Value {
        json::verification_key_json(&self.vk)
    }

    /// Checks a snarkjs `proof.json` against `public.json`'s signals:
    /// `Ok(true)` when the proof is valid, `Ok(false)` when it is a
    /// well-formed proof that does not verify, an error when the input is
    /// not a proof and signals for this key at all.
    pub fn verify(&self, proof: &Value, public_signals: &[String]) -> Result<bool, VerifyError> {
        let proof = ProofJson::deserialize(proof)
            .map_err(|e| VerifyError::MalformedProof(e.to_string()))?;
        self.verify_proof_json(&proof, public_signals)
    }

    /// [`Verifier::verify`] for an already deserialized `proof.json`.
    pub fn verify_proof_json(
        &self,
        proof: &ProofJson,
        public_signals: &[String],
    ) -> Result<bool, VerifyError> {
        if public_signals.len() != self.n_public {
            return Err(VerifyError::WrongPublicCount {
                expected: self.n_public,
                got: public_signals.len(),
            });
        }
        let proof = proof.to_proof().map_err(VerifyError::InvalidProof)?;
        let public = json::parse_public(public_signals).map_err(|e| match e {
            JsonError::BadSignal(i) => VerifyError::InvalidPublicSignal(i),
            other => VerifyError::InvalidProof(other),
        })?;
        // The count was checked, so an error here cannot happen; it would mean "not valid".
        Ok(Groth16::<Bn254>::verify_proof(&self.pvk, &proof, &public).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::{Fr, G1Affine, G2Affine};
    use ark_ec::{AffineRepr, CurveGroup};

    /// A key with arbitrary but valid points: enough to test parsing and
    /// refusals without a circuit (proofs are tested on fixtures in tests/verifier.rs).
    fn key(n_public: usize) -> VerifyingKey<Bn254> {
        let g1 = |k: u64| (G1Affine::generator() * Fr::from(k)).into_affine();
        let g2 = |k: u64| (G2Affine::generator() * Fr::from(k)).into_affine();
        VerifyingKey {
            alpha_g1: g1(2),
            beta_g2: g2(3),
            gamma_g2: g2(5),
            delta_g2: g2(7),
            gamma_abc_g1: (0..=n_public as u64).map(|i| g1(11 + i)).collect(),
        }
    }

    #[test]
    fn exported_keys_parse_back() {
        let vk = key(3);
        let parsed = json::parse_verification_key(&json::verification_key_json(&vk)).unwrap();
        assert_eq!(parsed, vk);
        assert_eq!(Verifier::new(vk).n_public(), 3);
    }

    #[test]
    fn key_errors_name_the_field() {
        let good = json::verification_key_json(&key(2));
        let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut v = good.clone();
            f(v.as_object_mut().unwrap());
            Verifier::from_json(&v).unwrap_err()
        };
        assert_eq!(
            with(&|m| {
                m.remove("vk_delta_2");
            }),
            JsonError::BadKeyField {
                field: "vk_delta_2",
                expected: "a G2 point [[x0, x1], [y0, y1], [z0, z1]] of decimal strings"
            }
        );
        assert_eq!(
            with(&|m| {
                m.insert("nPublic".into(), 3.into());
            }),
            JsonError::IcCount {
                n_public: 3,
                got: 3
            }
        );
        assert_eq!(
            with(&|m| {
                m.insert("curve".into(), "bls12381".into());
            }),
            JsonError::WrongKeyProtocol("groth16".into(), "bls12381".into())
        );
        // (1, 3) is not on y² = x³ + 3.
        assert_eq!(
            with(&|m| {
                m.insert("vk_alpha_1".into(), serde_json::json!(["1", "3", "1"]));
            }),
            JsonError::BadPoint("vk_alpha_1")
        );
        assert_eq!(
            with(&|m| {
                m["IC"][1] = serde_json::json!(["1", "3", "1"]);
            }),
            JsonError::BadIcPoint(1)
        );
        assert_eq!(
            with(&|m| {
                m.insert(
                    "vk_gamma_2".into(),
                    serde_json::json!([["0", "0"], ["1", "0"], ["0", "0"]]),
                );
            }),
            JsonError::KeyPointAtInfinity("vk_gamma_2")
        );
        assert!(Verifier::from_json(&serde_json::json!("not a key")).is_err());
    }

    #[test]
    fn g2_points_outside_the_subgroup_are_refused() {
        // Points of the twist that are on the curve but not in the prime-order
        // subgroup: found by trying x = i + 0·u until x³ + b' is a square.
        use ark_bn254::{Fq2, g2::Config};
        use ark_ec::short_weierstrass::SWCurveConfig;
        use ark_ff::Field;
        let off_subgroup = (1u64..)
            .find_map(|i| {
                let x = Fq2::from(i);
                let y = (x.square() * x + Config::COEFF_B).sqrt()?;
                let p = G2Affine::new_unchecked(x, y);
                (!p.is_in_correct_subgroup_assuming_on_curve()).then_some(p)
            })
            .unwrap();
        let mut v = json::verification_key_json(&key(1));
        v["vk_beta_2"] = serde_json::json!(json::g2_json(&off_subgroup));
        assert_eq!(
            Verifier::from_json(&v).unwrap_err(),
            JsonError::BadPoint("vk_beta_2")
        );
    }

    #[test]
    fn malformed_proofs_and_signals_are_errors() {
        let verifier = Verifier::new(key(2));
        let proof = serde_json::to_value(ProofJson::from_proof(&ark_groth16::Proof {
            a: G1Affine::generator(),
            b: G2Affine::generator(),
            c: G1Affine::generator(),
        }))
        .unwrap();
        let signals = vec!["1".to_string(), "2".to_string()];
        // Well-formed but not a proof for this key.
        assert_eq!(verifier.verify(&proof, &signals), Ok(false));
        assert!(matches!(
            verifier.verify(&serde_json::json!({"pi_a": []}), &signals),
            Err(VerifyError::MalformedProof(_))
        ));
        assert_eq!(
            verifier.verify(&proof, &signals[..1]),
            Err(VerifyError::WrongPublicCount {
                expected: 2,
                got: 1
            })
        );
        let modulus =
            "21888242871839275222246405745257275088548364400416034343698204186575808495617";
        assert_eq!(
            verifier.verify(&proof, &["1".into(), modulus.into()]),
            Err(VerifyError::InvalidPublicSignal(1))
        );
        let mut off_curve = proof.clone();
        off_curve["pi_c"] = serde_json::json!(["1", "3", "1"]);
        assert_eq!(
            verifier.verify(&off_curve, &signals),
            Err(VerifyError::InvalidProof(JsonError::BadPoint("pi_c")))
        );
    }
}
