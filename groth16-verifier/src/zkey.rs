//! The verifying-key part of snarkjs `.zkey` files (Groth16, BN254): the file and section
//! layout, point decoding with its checks, and [`read_verifying_key`], which reads a key of any
//! size front to back keeping only sections 1 to 3. The prover's full parser builds on the same
//! pieces.
//!
//! Layout (all integers little-endian): magic `zkey`, version, section count,
//! then sections `(type u32, size u64, bytes)`. Field elements are 32-byte
//! little-endian Montgomery form; the A/B coefficients of section 4 carry one
//! extra Montgomery factor. A point at infinity is written as all zeros.

use std::io::Read;

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField, Zero};
use ark_groth16::VerifyingKey;

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

pub const G1_BYTES: usize = 64;
pub const G2_BYTES: usize = 128;
pub const FIELD_BYTES: usize = 32;

/// Reads little-endian integers and byte runs from one section, naming it when it ends early.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ZkeyError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| ZkeyError::Truncated(format!("{} ends early", self.what)))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    pub fn u32(&mut self) -> Result<u32, ZkeyError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, ZkeyError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

pub fn bigint(b: &[u8]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *limb = u64::from_le_bytes(a);
    }
    BigInt(limbs)
}

/// A base-field element in Montgomery form, or `None` if it is not reduced.
pub fn fq_mont(b: &[u8]) -> Option<Fq> {
    let v = bigint(b);
    (v < Fq::MODULUS).then(|| Fq::new_unchecked(v))
}

/// A G1 point; with `check`, `None` unless it is on the curve.
pub fn g1(b: &[u8], check: bool) -> Option<G1Affine> {
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
pub enum G2Check {
    /// Trust the bytes (a preprocessed key whose digest was checked).
    Nothing,
    /// On the curve, not necessarily in the prime-order subgroup: proving-key points.
    OnCurve,
    /// On the curve and in the subgroup: verification-key points.
    Subgroup,
}

pub fn g2(b: &[u8], check: G2Check) -> Option<G2Affine> {
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

/// BN254 scalar field modulus, little-endian, as it appears in the header.
pub fn bn254_r_bytes() -> Vec<u8> {
    Fr::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect()
}
pub fn bn254_q_bytes() -> Vec<u8> {
    Fq::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect()
}

/// Sections 1 and 2: sizes and the fixed points of the key.
pub struct Header {
    pub n_vars: usize,
    pub n_public: usize,
    pub domain_size: usize,
    pub alpha_g1: G1Affine,
    pub beta_g1: G1Affine,
    pub beta_g2: G2Affine,
    pub gamma_g2: G2Affine,
    pub delta_g1: G1Affine,
    pub delta_g2: G2Affine,
}

/// Reads sections 1 and 2; every fixed point gets the full check.
pub fn header(s1: &[u8], s2: &[u8]) -> Result<Header, ZkeyError> {
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
/// checked as the prover's parser checks the verifying key. Returns the key and nPublic.
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
    let gamma_abc_g1 = ic_points(&s3, h.n_public + 1)?;
    let vk = VerifyingKey {
        alpha_g1: h.alpha_g1,
        beta_g2: h.beta_g2,
        gamma_g2: h.gamma_g2,
        delta_g2: h.delta_g2,
        gamma_abc_g1,
    };
    Ok((vk, h.n_public))
}

/// The IC points of section 3, each checked on the curve (the IC of a circom key is small).
fn ic_points(bytes: &[u8], n: usize) -> Result<Vec<G1Affine>, ZkeyError> {
    if bytes.len() != n * G1_BYTES {
        return Err(ZkeyError::Malformed(format!(
            "IC section holds {} bytes, expected {} points",
            bytes.len(),
            n
        )));
    }
    bytes
        .chunks_exact(G1_BYTES)
        .enumerate()
        .map(|(index, c)| g1(c, true).ok_or(ZkeyError::InvalidPoint { what: "IC", index }))
        .collect()
}
