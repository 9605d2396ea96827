//! Reads snarkjs `.zkey` proving keys (Groth16, BN254), in parallel and with
//! every curve point checked (see [`parse`] for which checks each point gets).
//!
//! Layout (all integers little-endian): magic `zkey`, version, section count,
//! then sections `(type u32, size u64, bytes)`. Field elements are 32-byte
//! little-endian Montgomery form; the A/B coefficients of section 4 carry one
//! extra Montgomery factor. A point at infinity is written as all zeros.

//!
//! The verifying-key sections, point decoding and the error type come from
//! [`zkfleet_groth16_verifier::zkey`]; this module adds the proving key, read in parallel.

use ark_bn254::{Bn254, Fr, G1Affine, G2Affine};
use ark_ff::PrimeField;
use ark_groth16::{ProvingKey, VerifyingKey};
use rayon::prelude::*;
use zkfleet_groth16_verifier::zkey::{
    FIELD_BYTES, G1_BYTES, G2_BYTES, G2Check, Header, Reader, bigint, g1, g2, header,
};
pub use zkfleet_groth16_verifier::zkey::{ZkeyError, read_verifying_key};

/// One non-zero entry of the A or B matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coefficient {
    pub constraint: u32,
    pub signal: u32,
    pub value: Fr,
}

/// A parsed zkey: the arkworks proving key plus what the circom reduction
/// needs (the A and B matrices and the domain size).
#[derive(Clone, Debug, PartialEq)]
pub struct Zkey {
    pub n_vars: usize,
    pub n_public: usize,
    pub domain_size: usize,
    pub pk: ProvingKey<Bn254>,
    pub a: Vec<Coefficient>,
    pub b: Vec<Coefficient>,
}

const COEF_BYTES: usize = 12 + FIELD_BYTES;

fn g1_vec(
    bytes: &[u8],
    n: usize,
    what: &'static str,
    check: bool,
) -> Result<Vec<G1Affine>, ZkeyError> {
    if bytes.len() != n * G1_BYTES {
        return Err(ZkeyError::Malformed(format!(
            "{what} section holds {} bytes, expected {} points",
            bytes.len(),
            n
        )));
    }
    bytes
        .par_chunks_exact(G1_BYTES)
        .enumerate()
        .map(|(index, c)| g1(c, check).ok_or(ZkeyError::InvalidPoint { what, index }))
        .collect()
}

fn g2_vec(
    bytes: &[u8],
    n: usize,
    what: &'static str,
    check: G2Check,
) -> Result<Vec<G2Affine>, ZkeyError> {
    if bytes.len() != n * G2_BYTES {
        return Err(ZkeyError::Malformed(format!(
            "{what} section holds {} bytes, expected {} points",
            bytes.len(),
            n
        )));
    }
    bytes
        .par_chunks_exact(G2_BYTES)
        .enumerate()
        .map(|(index, c)| g2(c, check).ok_or(ZkeyError::InvalidPoint { what, index }))
        .collect()
}

/// Parses a zkey. With `check`, every point is checked to be on the curve
/// (in parallel), and the verification key's G2 points also to be in the
/// prime-order subgroup; without, the proving-key bytes are trusted (use only
/// for files whose digest was checked before). The verification key is
/// always fully checked.
pub fn parse(buf: &[u8], check: bool) -> Result<Zkey, ZkeyError> {
    if buf.len() < 4 || &buf[..4] != b"zkey" {
        return Err(ZkeyError::NotAZkey);
    }
    let mut r = Reader {
        buf,
        pos: 4,
        what: "file header",
    };
    let _version = r.u32()?;
    let n_sections = r.u32()?;
    let mut sections: [Option<&[u8]>; 11] = [None; 11];
    for _ in 0..n_sections {
        r.what = "section header";
        let ty = r.u32()?;
        let size = r.u64()?;
        r.what = "section";
        let size =
            usize::try_from(size).map_err(|_| ZkeyError::Truncated("section too large".into()))?;
        let data = r.take(size)?;
        if let Some(slot) = sections.get_mut(ty as usize) {
            *slot = Some(data);
        }
    }
    let section = |t: u32| sections[t as usize].ok_or(ZkeyError::MissingSection(t));

    let Header {
        n_vars,
        n_public,
        domain_size,
        alpha_g1,
        beta_g1,
        beta_g2,
        gamma_g2,
        delta_g1,
        delta_g2,
    } = header(section(1)?, section(2)?)?;

    let (s3, s4, s5, s6, s7, s8, s9) = (
        section(3)?,
        section(4)?,
        section(5)?,
        section(6)?,
        section(7)?,
        section(8)?,
        section(9)?,
    );
    let n_private = n_vars - n_public - 1;
    // Proving-key G2 points are checked on the curve but not in the subgroup
    // (the subgroup check is ~all of a first load). That is safe: the zkey is
    // authenticated by its sha256 before it is parsed, and a point outside
    // the subgroup can only make the prover emit proofs that fail
    // verification, while every proof is verified (by the operator, and by
    // /v1/verify) against the verification key, whose points (alpha, beta,
    // gamma, delta, IC) keep their full checks. G1 has cofactor 1, so on the
    // curve already means in the group there.
    let proving_key_g2 = if check {
        G2Check::OnCurve
    } else {
        G2Check::Nothing
    };
    // The big sections are independent: parse them side by side, each in parallel.
    let ((ic, (a_query, b_g1_query)), ((b_g2_query, l_query), (h_query, coeffs))) = rayon::join(
        || {
            rayon::join(
                || g1_vec(s3, n_public + 1, "IC", true),
                || {
                    rayon::join(
                        || g1_vec(s5, n_vars, "A", check),
                        || g1_vec(s6, n_vars, "B1", check),
                    )
                },
            )
        },
        || {
            rayon::join(
                || {
                    rayon::join(
                        || g2_vec(s7, n_vars, "B2", proving_key_g2),
                        || g1_vec(s8, n_private, "C", check),
                    )
                },
                || {
                    rayon::join(
                        || g1_vec(s9, domain_size, "H", check),
                        || coefficients(s4, n_vars, domain_size),
                    )
                },
            )
        },
    );
    let (a, b) = coeffs?;
    let pk = ProvingKey {
        vk: VerifyingKey {
            alpha_g1,
            beta_g2,
            gamma_g2,
            delta_g2,
            gamma_abc_g1: ic?,
        },
        beta_g1,
        delta_g1,
        a_query: a_query?,
        b_g1_query: b_g1_query?,
        b_g2_query: b_g2_query?,
        h_query: h_query?,
        l_query: l_query?,
    };
    Ok(Zkey {
        n_vars,
        n_public,
        domain_size,
        pk,
        a,
        b,
    })
}

type Matrices = (Vec<Coefficient>, Vec<Coefficient>);

fn coefficients(bytes: &[u8], n_vars: usize, domain_size: usize) -> Result<Matrices, ZkeyError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        what: "coefficients section",
    };
    let n = r.u32()? as usize;
    let body = &bytes[4..];
    if body.len() != n.saturating_mul(COEF_BYTES) {
        return Err(ZkeyError::Malformed(format!(
            "coefficients section holds {} bytes for {n} coefficients",
            body.len()
        )));
    }
    let parsed: Result<Vec<(u32, Coefficient)>, ZkeyError> = body
        .par_chunks_exact(COEF_BYTES)
        .enumerate()
        .map(|(i, c)| {
            let word = |o: usize| u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]);
            let (matrix, constraint, signal) = (word(0), word(4), word(8));
            let raw = bigint(&c[12..]);
            if matrix > 1
                || constraint as usize >= domain_size
                || signal as usize >= n_vars
                || raw >= Fr::MODULUS
            {
                return Err(ZkeyError::Malformed(format!(
                    "coefficient #{i} is out of range"
                )));
            }
            // Stored as value·R² mod r: one Montgomery decoding leaves value·R,
            // which is the Montgomery form of value.
            let value = Fr::new_unchecked(Fr::new_unchecked(raw).into_bigint());
            Ok((
                matrix,
                Coefficient {
                    constraint,
                    signal,
                    value,
                },
            ))
        })
        .collect();
    let (a, b): (Vec<_>, Vec<_>) = parsed?.into_iter().partition(|(m, _)| *m == 0);
    Ok((
        a.into_iter().map(|(_, c)| c).collect(),
        b.into_iter().map(|(_, c)| c).collect(),
    ))
}
