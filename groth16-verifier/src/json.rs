//! snarkjs JSON formats: `proof.json`, `public.json` and
//! `verification_key.json` (decimal strings of canonical integers,
//! projective coordinates with z = 1, G2 coordinates as `[c0, c1]`).

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{PrimeField, Zero};
use ark_groth16::{Proof, VerifyingKey};
use num_bigint::BigUint;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// snarkjs `proof.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofJson {
    pub pi_a: Vec<String>,
    pub pi_b: Vec<Vec<String>>,
    pub pi_c: Vec<String>,
    pub protocol: String,
    pub curve: String,
}

/// Why a proof or public-signals JSON is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("{0} is not a valid BN254 point")]
    BadPoint(&'static str),
    #[error("public signal #{0} is not a decimal integer below the field modulus")]
    BadSignal(usize),
    #[error("proof is for protocol {0:?}/curve {1:?}, expected groth16/bn128")]
    WrongProtocol(String, String),
    #[error("verification key is for protocol {0:?}/curve {1:?}, expected groth16/bn128")]
    WrongKeyProtocol(String, String),
    #[error("verification key field {field} is missing or is not {expected}")]
    BadKeyField {
        field: &'static str,
        expected: &'static str,
    },
    #[error("verification key IC[{0}] is not a valid BN254 G1 point")]
    BadIcPoint(usize),
    #[error(
        "verification key {0} is the point at infinity, which no Groth16 setup produces: the file is damaged or not a verification key"
    )]
    KeyPointAtInfinity(&'static str),
    #[error(
        "verification key has {got} IC points but nPublic is {n_public}: IC must hold nPublic + 1 points"
    )]
    IcCount { n_public: usize, got: usize },
}

fn dec<F: PrimeField>(f: &F) -> String {
    f.into_bigint().to_string()
}

/// Parses a canonical decimal integer below the modulus of `F`.
pub fn parse_dec<F: PrimeField>(s: &str) -> Option<F> {
    if s.is_empty() || s.len() > 80 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = BigUint::parse_bytes(s.as_bytes(), 10)?;
    if n >= F::MODULUS.into() {
        return None;
    }
    Some(F::from_le_bytes_mod_order(&n.to_bytes_le()))
}

pub fn g1_json(p: &G1Affine) -> Vec<String> {
    match p.xy() {
        Some((x, y)) => vec![dec(&x), dec(&y), "1".into()],
        None => vec!["0".into(), "1".into(), "0".into()],
    }
}

fn fq2_json(f: &Fq2) -> Vec<String> {
    vec![dec(&f.c0), dec(&f.c1)]
}

pub fn g2_json(p: &G2Affine) -> Vec<Vec<String>> {
    match p.xy() {
        Some((x, y)) => vec![fq2_json(&x), fq2_json(&y), vec!["1".into(), "0".into()]],
        None => vec![
            vec!["0".into(), "0".into()],
            vec!["1".into(), "0".into()],
            vec!["0".into(), "0".into()],
        ],
    }
}

fn g1_from(v: &[String], what: &'static str) -> Result<G1Affine, JsonError> {
    let bad = || JsonError::BadPoint(what);
    let f = |i: usize| v.get(i).and_then(|s| parse_dec::<Fq>(s)).ok_or_else(bad);
    let (x, y, z) = (f(0)?, f(1)?, f(2)?);
    if z.is_zero() {
        return Ok(G1Affine::zero());
    }
    let p = G1Affine::new_unchecked(x / z, y / z);
    if p.is_on_curve() { Ok(p) } else { Err(bad()) }
}

fn g2_from(v: &[Vec<String>], what: &'static str) -> Result<G2Affine, JsonError> {
    let bad = || JsonError::BadPoint(what);
    let f = |i: usize| -> Result<Fq2, JsonError> {
        let c = v.get(i).ok_or_else(bad)?;
        let e = |j: usize| c.get(j).and_then(|s| parse_dec::<Fq>(s)).ok_or_else(bad);
        Ok(Fq2::new(e(0)?, e(1)?))
    };
    let (x, y, z) = (f(0)?, f(1)?, f(2)?);
    if z.is_zero() {
        return Ok(G2Affine::zero());
    }
    let p = G2Affine::new_unchecked(x / z, y / z);
    if p.is_on_curve() && p.is_in_correct_subgroup_assuming_on_curve() {
        Ok(p)
    } else {
        Err(bad())
    }
}

impl ProofJson {
    pub fn from_proof(p: &Proof<Bn254>) -> Self {
        ProofJson {
            pi_a: g1_json(&p.a),
            pi_b: g2_json(&p.b),
            pi_c: g1_json(&p.c),
            protocol: "groth16".into(),
            curve: "bn128".into(),
        }
    }

    /// The proof as curve points, each checked.
    pub fn to_proof(&self) -> Result<Proof<Bn254>, JsonError> {
        if self.protocol != "groth16" || self.curve != "bn128" {
            return Err(JsonError::WrongProtocol(
                self.protocol.clone(),
                self.curve.clone(),
            ));
        }
        Ok(Proof {
            a: g1_from(&self.pi_a, "pi_a")?,
            b: g2_from(&self.pi_b, "pi_b")?,
            c: g1_from(&self.pi_c, "pi_c")?,
        })
    }
}

/// `public.json`: the public signals as decimal strings.
pub fn public_json(signals: &[Fr]) -> Vec<String> {
    signals.iter().map(dec).collect()
}

pub fn parse_public(signals: &[String]) -> Result<Vec<Fr>, JsonError> {
    signals
        .iter()
        .enumerate()
        .map(|(i, s)| parse_dec::<Fr>(s).ok_or(JsonError::BadSignal(i)))
        .collect()
}

/// `verification_key.json` as `snarkjs zkey export verificationkey` writes it
/// (without `vk_alphabeta_12`, which snarkjs' verifier does not read).
pub fn verification_key_json(vk: &VerifyingKey<Bn254>) -> Value {
    serde_json::json!({
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": vk.gamma_abc_g1.len().saturating_sub(1),
        "vk_alpha_1": g1_json(&vk.alpha_g1),
        "vk_beta_2": g2_json(&vk.beta_g2),
        "vk_gamma_2": g2_json(&vk.gamma_g2),
        "vk_delta_2": g2_json(&vk.delta_g2),
        "IC": vk.gamma_abc_g1.iter().map(g1_json).collect::<Vec<_>>(),
    })
}

/// Reads snarkjs `verification_key.json` (as `snarkjs zkey export
/// verificationkey` writes it; `vk_alphabeta_12` is ignored, it is derived
/// from alpha and beta). Every point is checked to be on the curve and, for
/// G2, in the prime-order subgroup; IC must hold nPublic + 1 points.
pub fn parse_verification_key(v: &Value) -> Result<VerifyingKey<Bn254>, JsonError> {
    const G1: &str = "a G1 point [x, y, z] of decimal strings";
    const G2: &str = "a G2 point [[x0, x1], [y0, y1], [z0, z1]] of decimal strings";
    let protocol: String = key_field(v, "protocol", "a string")?;
    let curve: String = key_field(v, "curve", "a string")?;
    // snarkjs names the curve bn128; other tools call it bn254.
    if protocol != "groth16" || !matches!(curve.to_ascii_lowercase().as_str(), "bn128" | "bn254") {
        return Err(JsonError::WrongKeyProtocol(protocol, curve));
    }
    let n_public: usize = key_field(v, "nPublic", "a non-negative integer")?;
    let g1 = |name: &'static str| -> Result<G1Affine, JsonError> {
        let p = g1_from(&key_field::<Vec<String>>(v, name, G1)?, name)?;
        if p.is_zero() {
            return Err(JsonError::KeyPointAtInfinity(name));
        }
        Ok(p)
    };
    let g2 = |name: &'static str| -> Result<G2Affine, JsonError> {
        let p = g2_from(&key_field::<Vec<Vec<String>>>(v, name, G2)?, name)?;
        if p.is_zero() {
            return Err(JsonError::KeyPointAtInfinity(name));
        }
        Ok(p)
    };
    let alpha_g1 = g1("vk_alpha_1")?;
    let beta_g2 = g2("vk_beta_2")?;
    let gamma_g2 = g2("vk_gamma_2")?;
    let delta_g2 = g2("vk_delta_2")?;
    let ic: Vec<Value> = key_field(v, "IC", "a list of G1 points [x, y, z] of decimal strings")?;
    if Some(ic.len()) != n_public.checked_add(1) {
        return Err(JsonError::IcCount {
            n_public,
            got: ic.len(),
        });
    }
    let gamma_abc_g1 = ic
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Vec::<String>::deserialize(p)
                .ok()
                .and_then(|coords| g1_from(&coords, "IC").ok())
                .ok_or(JsonError::BadIcPoint(i))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifyingKey {
        alpha_g1,
        beta_g2,
        gamma_g2,
        delta_g2,
        gamma_abc_g1,
    })
}

/// Field `field` of a verification key, read as `T`.
fn key_field<T: DeserializeOwned>(
    v: &Value,
    field: &'static str,
    expected: &'static str,
) -> Result<T, JsonError> {
    v.get(field)
        .and_then(|f| T::deserialize(f).ok())
        .ok_or(JsonError::BadKeyField { field, expected })
}
