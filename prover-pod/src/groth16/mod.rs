//! The `groth16-bn254` backend: circom/snarkjs-compatible Groth16 over BN254.
//!
//! Proving follows snarkjs exactly (the "circom reduction"): the zkey has no
//! C matrix, so A·w and B·w are evaluated per constraint, C = A∘B, and the
//! quotient is evaluated on the odd powers of the 2n-th root of unity, where
//! the zkey's H points live.

mod msm;
pub mod preprocessed;
pub mod r1cs;
pub mod witness;
pub mod wtns;
pub mod zkey;

pub use zkfleet_groth16_verifier::{json, verifier};

use crate::cancel::Cancel;
use ark_bn254::{Bn254, Fr, G1Affine, G2Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{UniformRand, Zero};
use ark_groth16::{Groth16, PreparedVerifyingKey, Proof, prepare_verifying_key};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use rayon::prelude::*;

pub use verifier::{Verifier, VerifyError};
pub use zkey::{Zkey, ZkeyError};

/// Why a proof could not be made or checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Groth16Error {
    #[error("witness has {got} values but the circuit needs {expected}")]
    WrongWitnessLength { expected: usize, got: usize },
    #[error("witness[0] must be 1")]
    WitnessNotOne,
    #[error("expected {expected} public signals, got {got}")]
    WrongPublicCount { expected: usize, got: usize },
    #[error("zkey domain of size {0} is not supported by the BN254 scalar field")]
    BadDomain(usize),
    #[error("the proof was cancelled before it finished")]
    Cancelled,
    #[error(
        "the witness does not satisfy the circuit: constraint #{constraint} (A·w × B·w = C·w) fails; make the witness again with this circuit's own witness generator, from inputs the circuit accepts"
    )]
    Unsatisfied { constraint: usize },
}

/// One matrix in compressed-row form: row `i` is `entries[start[i]..start[i+1]]`.
struct Rows {
    start: Vec<usize>,
    entries: Vec<(usize, Fr)>,
}

impl Rows {
    fn new(coeffs: &[zkey::Coefficient], rows: usize) -> Self {
        let mut start = vec![0usize; rows + 1];
        for c in coeffs {
            start[c.constraint as usize + 1] += 1;
        }
        for i in 0..rows {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut entries = vec![(0usize, Fr::zero()); coeffs.len()];
        for c in coeffs {
            let at = &mut fill[c.constraint as usize];
            entries[*at] = (c.signal as usize, c.value);
            *at += 1;
        }
        Rows { start, entries }
    }

    fn eval(&self, w: &[Fr]) -> Vec<Fr> {
        (0..self.start.len() - 1)
            .into_par_iter()
            .map(|i| {
                self.entries[self.start[i]..self.start[i + 1]]
                    .iter()
                    .map(|(s, c)| *c * w[*s])
                    .sum()
            })
            .collect()
    }
}

/// A loaded proving key, ready to prove and verify.
pub struct Prover {
    pub zkey: Zkey,
    pvk: PreparedVerifyingKey<Bn254>,
    a: Rows,
    b: Rows,
    domain: Radix2EvaluationDomain<Fr>,
    coset: Radix2EvaluationDomain<Fr>,
}

impl Prover {
    pub fn new(zkey: Zkey) -> Result<Self, Groth16Error> {
        let n = zkey.domain_size;
        let bad = || Groth16Error::BadDomain(n);
        let domain = Radix2EvaluationDomain::<Fr>::new(n)
            .filter(|d| d.size() == n)
            .ok_or_else(bad)?;
        let double = Radix2EvaluationDomain::<Fr>::new(2 * n).ok_or_else(bad)?;
        let coset = domain.get_coset(double.group_gen()).ok_or_else(bad)?;
        let pvk = prepare_verifying_key(&zkey.pk.vk);
        let (a, b) = (Rows::new(&zkey.a, n), Rows::new(&zkey.b, n));
        Ok(Prover {
            zkey,
            pvk,
            a,
            b,
            domain,
            coset,
        })
    }

    /// Number of witness values (circuit signals, including the constant 1).
    pub fn n_vars(&self) -> usize {
        self.zkey.n_vars
    }

    pub fn n_public(&self) -> usize {
        self.zkey.n_public
    }

    /// Proves with fresh blinding factors; returns the proof and the public
    /// signals `witness[1..=nPublic]`.
    pub fn prove(&self, w: &[Fr]) -> Result<(Proof<Bn254>, Vec<Fr>), Groth16Error> {
        self.prove_cancellable(w, &Cancel::new())
    }

    /// [`Prover::prove`] that gives up with [`Groth16Error::Cancelled`] soon after `cancel`
    /// is raised: it checks between the quotient and the MSMs and before each MSM window.
    pub fn prove_cancellable(
        &self,
        w: &[Fr],
        cancel: &Cancel,
    ) -> Result<(Proof<Bn254>, Vec<Fr>), Groth16Error> {
        let mut rng = rand::rngs::OsRng;
        let (r, s) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
        self.prove_with(w, r, s, cancel)
    }

    fn prove_with(
        &self,
        w: &[Fr],
        r: Fr,
        s: Fr,
        cancel: &Cancel,
    ) -> Result<(Proof<Bn254>, Vec<Fr>), Groth16Error> {
        let z = &self.zkey;
        if w.len() != z.n_vars {
            return Err(Groth16Error::WrongWitnessLength {
                expected: z.n_vars,
                got: w.len(),
            });
        }
        if w[0] != Fr::from(1u64) {
            return Err(Groth16Error::WitnessNotOne);
        }
        let stop = || {
            if cancel.is_cancelled() {
                Err(Groth16Error::Cancelled)
            } else {
                Ok(())
            }
        };
        stop()?;
        let pk = &z.pk;
        // The witness in canonical form once, for the four MSMs over it.
        let wb = msm::to_bigints(w);
        // The quotient (FFTs) first, then all five MSMs at once: faster on
        // few cores than overlapping the quotient with four of them and
        // running the H MSM last.
        let h = msm::to_bigints(&self.quotient(w));
        stop()?;
        // A, B1 and B2 run over the whole witness: its digits are cut once for the three.
        let wd = msm::Digits::<Fr>::new(&wb);
        let ((a_w, b1_w), (b2_w, (c_w, h_w))) = rayon::join(
            || {
                rayon::join(
                    || msm::msm_digits(&pk.a_query, &wd, cancel),
                    || msm::msm_digits(&pk.b_g1_query, &wd, cancel),
                )
            },
            || {
                rayon::join(
                    || msm::msm_digits(&pk.b_g2_query, &wd, cancel),
                    || {
                        rayon::join(
                            || msm::msm(&pk.l_query, &wb[z.n_public + 1..], cancel),
                            || msm::msm(&pk.h_query, &h, cancel),
                        )
                    },
                )
            },
        );
        // A cancelled MSM skipped windows and its sums are wrong: never return them.
        stop()?;
        let a = pk.vk.alpha_g1.into_group() + a_w + pk.delta_g1 * r;
        let b2 = pk.vk.beta_g2.into_group() + b2_w + pk.vk.delta_g2 * s;
        let b1 = pk.beta_g1.into_group() + b1_w + pk.delta_g1 * s;
        let c = c_w + h_w + a * s + b1 * r - pk.delta_g1 * (r * s);
        let a: G1Affine = a.into_affine();
        let b: G2Affine = b2.into_affine();
        let proof = Proof {
            a,
            b,
            c: c.into_affine(),
        };
        Ok((proof, w[1..=z.n_public].to_vec()))
    }

    /// The H exponents: (A·B − C) evaluated on the odd 2n-th roots of unity.
    fn quotient(&self, w: &[Fr]) -> Vec<Fr> {
        let (mut a, mut b) = rayon::join(|| self.a.eval(w), || self.b.eval(w));
        let mut c: Vec<Fr> = a
            .par_iter()
            .zip(b.par_iter())
            .map(|(x, y)| *x * y)
            .collect();
        let to_coset = |v: &mut Vec<Fr>| {
            self.domain.ifft_in_place(v);
            self.coset.fft_in_place(v);
        };
        rayon::join(
            || to_coset(&mut a),
            || rayon::join(|| to_coset(&mut b), || to_coset(&mut c)),
        );
        a.par_iter()
            .zip(b.par_iter())
            .zip(c.par_iter())
            .map(|((x, y), z)| *x * y - z)
            .collect()
    }

    /// Checks a proof against public signals with the zkey's verifying key.
    pub fn verify(&self, proof: &Proof<Bn254>, public: &[Fr]) -> Result<bool, Groth16Error> {
        if public.len() != self.zkey.n_public {
            return Err(Groth16Error::WrongPublicCount {
                expected: self.zkey.n_public,
                got: public.len(),
            });
        }
        Ok(Groth16::<Bn254>::verify_proof(&self.pvk, proof, public).unwrap_or(false))
    }
}
