//! Reads snarkjs `.zkey` proving keys (Groth16, BN254), in parallel and with
//! every curve point checked (see [`parse`] for which checks each point gets).
//!
//! Layout (all integers little-endian): magic `zkey`, version, section count,
//! then sections `(type u32, size u64, bytes)`. Field elements are 32-byte
//! little-endian Montgomery form; the A/B coefficients of section 4 carry one
//! extra Montgomery factor. A point at infinity is written as all zeros.

use std::io::Read;

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField, Zero};
use ark_groth16::{ProvingKey, VerifyingKey};
use rayon::prelude::*;

/// Why a file is not a usable Groth16 BN254 zkey.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZkeyError {
    #[error("not a zkey file (magic bytes are not \"zkey\")")]
    NotAZkey,
    #[error("zkey is truncated: {0}")]
    Truncated(String),
    #[error("zkey section {0} is missing")]
    MissingSection(u32),
    #[error("zkey protocol {0} is not Groth16 (1)")]
    NotGroth16(u32),
    #[error("zkey is not for the BN254 (bn128) curve")]
    WrongCurve,
    #[error("zkey is malformed: {0}")]
    Malformed(String),
    #[error("zkey {what} #{index} is not a valid curve point")]
    InvalidPoint { what: &'static str, index: usize },
}

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

const G1_BYTES: usize = 64;
const G2_BYTES: usize = 128;
const FIELD_BYTES: usize = 32;
const COEF_BYTES: usize = 12 + FIELD_BYTES;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ZkeyError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| ZkeyError::Truncated(format!("{} ends early", self.what)))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, ZkeyError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ZkeyError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn bigint(b: &[u8]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *limb = u64::from_le_bytes(a);
    }
    BigInt(limbs)
}

/// A base-field element in Montgomery form, or `None` if it is not reduced.
fn fq_mont(b: &[u8]) -> Option<Fq> {
    let v = bigint(b);
    (v < Fq::MODULUS).then(|| Fq::new_unchecked(v))
}

fn g1(b: &[u8], check: bool) -> Option<G1Affine> {
    let x = fq_mont(&b[..32])?;
    let y = fq_mont(&b[32..64])?;
    if x.is_zero() && y.is_zero() {
        return Some(G1Affine::zero());
    }
    let p = G1Affine::new_unchecked(x, y);
    // G1 of BN254 has cofactor 1: on the curve means in the group.
    (!check || p.is_on_curve()).then_some(p)
}

/// How much of a G2 point to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum G2Check {
    /// Trust the bytes (a preprocessed key whose digest was checked).
    Nothing,
    /// On the curve, not necessarily in the prime-order subgroup: proving-key points.
    OnCurve,
    /// On the curve and in the subgroup: verification-key points.
    Subgroup,
}

fn g2(b: &[u8], check: G2Check) -> Option<G2Affine> {
    let x = Fq2::new(fq_mont(&b[..32])?, fq_mont(&b[32..64])?);
    let y = Fq2::new(fq_mont(&b[64..96])?, fq_mont(&b[96..128])?);
    if x.is_zero() && y.is_zero() {
        return Some(G2Affine::zero());
    }
    let p = G2Affine::new_unchecked(x, y);
    let ok = match check {
        G2Check::Nothing => true,
        G2Check::OnCurve => p.is_on_curve(),
        G2Check::Subgroup => p.is_on_curve() && p.is_in_correct_subgroup_assuming_on_curve(),
    };
    ok.then_some(p)
}

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

/// BN254 scalar field modulus, little-endian, as it appears in the header.
fn bn254_r_bytes() -> Vec<u8> {
    Fr::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect()
}
fn bn254_q_bytes() -> Vec<u8> {
    Fq::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect()
}

/// Sections 1 and 2: sizes and the fixed points of the key.
struct Header {
    n_vars: usize,
    n_public: usize,
    domain_size: usize,
    alpha_g1: G1Affine,
    beta_g1: G1Affine,
    beta_g2: G2Affine,
    gamma_g2: G2Affine,
    delta_g1: G1Affine,
    delta_g2: G2Affine,
}

fn header(s1: &[u8], s2: &[u8]) -> Result<Header, ZkeyError> {
    let mut h = Reader {
        buf: s1,
        pos: 0,
        what: "header section",
    };
    let protocol = h.u32()?;
    if protocol != 1 {
        return Err(ZkeyError::NotGroth16(protocol));
    }

    let mut h = Reader {
        buf: s2,
        pos: 0,
        what: "groth16 header section",
    };
    let n8q = h.u32()? as usize;
    if n8q != 32 || h.take(32)? != bn254_q_bytes().as_slice() {
        return Err(ZkeyError::WrongCurve);
    }
    let n8r = h.u32()? as usize;
    if n8r != 32 || h.take(32)? != bn254_r_bytes().as_slice() {
        return Err(ZkeyError::WrongCurve);
    }
    let n_vars = h.u32()? as usize;
    let n_public = h.u32()? as usize;
    let domain_size = h.u32()? as usize;
    if n_public >= n_vars || !domain_size.is_power_of_two() || domain_size > 1 << 28 {
        return Err(ZkeyError::Malformed(format!(
            "impossible sizes: {n_vars} signals, {n_public} public, domain {domain_size}"
        )));
    }
    let mut one_g1 =
        |what| g1(h.take(G1_BYTES)?, true).ok_or(ZkeyError::InvalidPoint { what, index: 0 });
    let alpha_g1 = one_g1("alpha1")?;
    let beta_g1 = one_g1("beta1")?;
    let beta_g2 = g2(h.take(G2_BYTES)?, G2Check::Subgroup).ok_or(ZkeyError::InvalidPoint {
        what: "beta2",
        index: 0,
    })?;
    let gamma_g2 = g2(h.take(G2_BYTES)?, G2Check::Subgroup).ok_or(ZkeyError::InvalidPoint {
        what: "gamma2",
        index: 0,
    })?;
    let delta_g1 = g1(h.take(G1_BYTES)?, true).ok_or(ZkeyError::InvalidPoint {
        what: "delta1",
        index: 0,
    })?;
    let delta_g2 = g2(h.take(G2_BYTES)?, G2Check::Subgroup).ok_or(ZkeyError::InvalidPoint {
        what: "delta2",
        index: 0,
    })?;
    Ok(Header {
        n_vars,
        n_public,
        domain_size,
        alpha_g1,
        beta_g1,
        beta_g2,
        gamma_g2,
        delta_g1,
        delta_g2,
    })
}

/// Largest verifying-key section read by [`read_verifying_key`]: IC of a
/// million public signals. Anything larger is not a circom circuit's key.
const MAX_VK_SECTION: u64 = 64 << 20;

/// Reads only the verifying key of a zkey (sections 1 to 3: header, fixed
/// points and IC) from a stream read once, front to back: the proving-key
/// sections are skipped without being kept, so a multi-gigabyte zkey costs
/// little memory. Reads to the end of the last section. Every point is
/// checked as [`parse`] checks the verifying key. Returns the key and nPublic.
pub fn read_verifying_key<R: Read>(mut r: R) -> Result<(VerifyingKey<Bn254>, usize), ZkeyError> {
    let io = |what: &'static str| {
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ZkeyError::Truncated(format!("{what} ends early")),
            _ => ZkeyError::Truncated(format!("cannot read the zkey: {e}")),
        }
    };
    let mut magic = Vec::with_capacity(4);
    (&mut r)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(io("file header"))?;
    if magic != b"zkey" {
        return Err(ZkeyError::NotAZkey);
    }
    let mut head = [0u8; 8];
    r.read_exact(&mut head).map_err(io("file header"))?;
    let n_sections = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut kept: [Option<Vec<u8>>; 4] = [None, None, None, None];
    for _ in 0..n_sections {
        let mut h = [0u8; 12];
        r.read_exact(&mut h).map_err(io("section header"))?;
        let ty = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[4..]);
        let size = u64::from_le_bytes(size);
        let mut body = (&mut r).take(size);
        let got = if (1..=3).contains(&ty) {
            if size > MAX_VK_SECTION {
                return Err(ZkeyError::Malformed(format!(
                    "section {ty} holds {size} bytes, too many for a verifying key"
                )));
            }
            let mut buf = Vec::new();
            body.read_to_end(&mut buf).map_err(io("section"))?;
            let got = buf.len() as u64;
            kept[ty] = Some(buf);
            got
        } else {
            std::io::copy(&mut body, &mut std::io::sink()).map_err(io("section"))?
        };
        if got != size {
            return Err(ZkeyError::Truncated("section ends early".into()));
        }
    }
    let [_, s1, s2, s3] = kept;
    let section = |s: Option<Vec<u8>>, t: u32| s.ok_or(ZkeyError::MissingSection(t));
    let (s1, s2, s3) = (section(s1, 1)?, section(s2, 2)?, section(s3, 3)?);
    let h = header(&s1, &s2)?;
    let gamma_abc_g1 = g1_vec(&s3, h.n_public + 1, "IC", true)?;
    let vk = VerifyingKey {
        alpha_g1: h.alpha_g1,
        beta_g2: h.beta_g2,
        gamma_g2: h.gamma_g2,
        delta_g2: h.delta_g2,
        gamma_abc_g1,
    };
    Ok((vk, h.n_public))
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
