//! Reads a circom `.r1cs` constraint system (iden3's binary format, version 1) and checks a
//! witness against it, so that a `.wtns` a tenant brings is refused before a proof is spent on
//! it. The zkey cannot do this: it holds only the A and B matrices (snarkjs derives C from
//! them), so a witness that breaks a constraint proves to a proof that merely fails to verify.
//!
//! Layout: `"r1cs"`, version, section count, then sections of `(type u32, size u64)`. Section 1
//! (header): field size n8, the prime, wire count, public output and input counts, private
//! input count, label count (u64) and constraint count. Section 2: per constraint the linear
//! combinations A, B and C, each a term count and `(wire u32, coefficient n8 bytes)` terms,
//! integers little-endian in standard form. Other sections (wire labels, custom gates) are
//! skipped.

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField, Zero};
use rayon::prelude::*;

/// Why bytes are not a constraint system of this prover's field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum R1csError {
    #[error("not an r1cs file (magic bytes are not \"r1cs\")")]
    NotAnR1cs,
    #[error("r1cs version {0} is not supported (only version 1)")]
    Version(u32),
    #[error("r1cs file is truncated or malformed: {0}")]
    Malformed(String),
    #[error("the r1cs is not over the BN254 scalar field")]
    WrongField,
}

/// A circuit's constraints `A·w × B·w = C·w`, as compressed linear combinations.
pub struct ConstraintSystem {
    /// Wires (witness length), `w[0] = 1` included.
    pub n_wires: usize,
    /// Public signals (outputs, then inputs): `w[1..=n_public]`.
    pub n_public: usize,
    /// Linear combination `i` is `terms[start[i]..start[i + 1]]`; constraint `k` is the
    /// combinations `3k` (A), `3k + 1` (B) and `3k + 2` (C).
    start: Vec<usize>,
    terms: Vec<(u32, Fr)>,
}

/// Reads little-endian integers off a byte slice, naming what ended early.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], R1csError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| R1csError::Malformed(format!("{what} ends early")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, R1csError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, R1csError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn field(&mut self, what: &str) -> Result<Fr, R1csError> {
        let b = self.take(32, what)?;
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *limb = u64::from_le_bytes(a);
        }
        Fr::from_bigint(BigInt(limbs))
            .ok_or_else(|| R1csError::Malformed(format!("{what} is not a field element")))
    }
}

impl ConstraintSystem {
    /// Parses a `.r1cs` file.
    pub fn parse(bytes: &[u8]) -> Result<Self, R1csError> {
        if bytes.len() < 12 || &bytes[..4] != b"r1cs" {
            return Err(R1csError::NotAnR1cs);
        }
        let mut file = Reader { bytes, at: 4 };
        let version = file.u32("header")?;
        if version != 1 {
            return Err(R1csError::Version(version));
        }
        let sections = file.u32("header")?;
        let (mut header, mut constraints) = (None, None);
        for _ in 0..sections {
            let kind = file.u32("section header")?;
            let size = file.u64("section header")?;
            let size = usize::try_from(size)
                .map_err(|_| R1csError::Malformed("a section is larger than memory".into()))?;
            let body = file.take(size, "a section")?;
            match kind {
                1 => header = Some(body),
                2 => constraints = Some(body),
                _ => {}
            }
        }
        let header = header.ok_or_else(|| R1csError::Malformed("header section missing".into()))?;
        let constraints = constraints
            .ok_or_else(|| R1csError::Malformed("constraints section missing".into()))?;

        let mut h = Reader {
            bytes: header,
            at: 0,
        };
        let n8 = h.u32("header section")? as usize;
        let modulus: Vec<u8> = Fr::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect();
        if n8 != 32 || h.take(n8, "header section")? != modulus.as_slice() {
            return Err(R1csError::WrongField);
        }
        let n_wires = h.u32("header section")? as usize;
        let n_public = h.u32("header section")? as usize + h.u32("header section")? as usize;
        let _private_inputs = h.u32("header section")?;
        let _labels = h.u64("header section")?;
        let n_constraints = h.u32("header section")? as usize;
        if n_public >= n_wires.max(1) {
            return Err(R1csError::Malformed(format!(
                "{n_public} public signals among {n_wires} wires"
            )));
        }

        let mut c = Reader {
            bytes: constraints,
            at: 0,
        };
        // Capacity from the section's size, not from counts the file claims.
        let mut start = Vec::with_capacity((constraints.len() / 12).min(3 * n_constraints) + 1);
        let mut terms = Vec::with_capacity(constraints.len() / 36);
        start.push(0);
        for k in 0..n_constraints {
            for _ in 0..3 {
                let n_terms = c.u32("a constraint")?;
                for _ in 0..n_terms {
                    let wire = c.u32("a constraint term")?;
                    if wire as usize >= n_wires {
                        return Err(R1csError::Malformed(format!(
                            "constraint #{k} names wire {wire} of {n_wires}"
                        )));
                    }
                    terms.push((wire, c.field("a coefficient")?));
                }
                start.push(terms.len());
            }
        }
        Ok(ConstraintSystem {
            n_wires,
            n_public,
            start,
            terms,
        })
    }

    /// Number of constraints.
    pub fn len(&self) -> usize {
        (self.start.len() - 1) / 3
    }

    /// Whether the system has no constraints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn eval(&self, lc: usize, witness: &[Fr]) -> Fr {
        self.terms[self.start[lc]..self.start[lc + 1]]
            .iter()
            .fold(Fr::zero(), |sum, (wire, coeff)| {
                sum + *coeff * witness[*wire as usize]
            })
    }

    /// The first constraint `witness` breaks, if any. The witness must have `n_wires` values.
    pub fn first_unsatisfied(&self, witness: &[Fr]) -> Option<usize> {
        assert_eq!(
            witness.len(),
            self.n_wires,
            "witness length checked by the caller"
        );
        (0..self.len()).into_par_iter().find_first(|&k| {
            self.eval(3 * k, witness) * self.eval(3 * k + 1, witness)
                != self.eval(3 * k + 2, witness)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An r1cs of one constraint `w2 × w3 = w1` (out = a × b), in the layout circom writes.
    fn multiplier() -> Vec<u8> {
        let modulus: Vec<u8> = Fr::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect();
        let mut header = Vec::new();
        header.extend_from_slice(&32u32.to_le_bytes());
        header.extend_from_slice(&modulus);
        for n in [4u32, 1, 1, 1] {
            header.extend_from_slice(&n.to_le_bytes());
        }
        header.extend_from_slice(&4u64.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes());
        let one: Vec<u8> = {
            let mut b = vec![0u8; 32];
            b[0] = 1;
            b
        };
        let mut constraints = Vec::new();
        for wire in [2u32, 3, 1] {
            constraints.extend_from_slice(&1u32.to_le_bytes());
            constraints.extend_from_slice(&wire.to_le_bytes());
            constraints.extend_from_slice(&one);
        }
        let mut out = b"r1cs".to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        for (kind, body) in [(1u32, header), (2u32, constraints)] {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    #[test]
    fn a_witness_is_checked_against_every_constraint() {
        let cs = ConstraintSystem::parse(&multiplier()).unwrap();
        assert_eq!((cs.n_wires, cs.n_public, cs.len()), (4, 2, 1));
        let w = |v: [u64; 4]| v.map(Fr::from).to_vec();
        assert_eq!(cs.first_unsatisfied(&w([1, 12, 3, 4])), None);
        assert_eq!(cs.first_unsatisfied(&w([1, 13, 3, 4])), Some(0));
    }

    #[test]
    fn garbage_and_truncation_are_refused() {
        assert_eq!(
            ConstraintSystem::parse(b"wtns\0\0\0\0\0\0\0\0").err(),
            Some(R1csError::NotAnR1cs)
        );
        let full = multiplier();
        for cut in [12, 30, 80, full.len() - 1] {
            assert!(
                matches!(
                    ConstraintSystem::parse(&full[..cut]),
                    Err(R1csError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        let mut v2 = full.clone();
        v2[4] = 2;
        assert_eq!(
            ConstraintSystem::parse(&v2).err(),
            Some(R1csError::Version(2))
        );
        let mut other_field = full;
        other_field[12 + 12 + 4] ^= 1;
        assert_eq!(
            ConstraintSystem::parse(&other_field).err(),
            Some(R1csError::WrongField)
        );
    }
}
