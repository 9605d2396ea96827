//! Reads and writes circom `.wtns` witness files: values are 32-byte
//! little-endian integers in standard form, `witness[0] = 1`.

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};

/// Why bytes are not a usable BN254 witness.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WtnsError {
    #[error("not a wtns file (magic bytes are not \"wtns\")")]
    NotAWtns,
    #[error("wtns file is truncated or malformed: {0}")]
    Malformed(String),
    #[error("wtns is not over the BN254 scalar field")]
    WrongField,
    #[error("witness value #{0} is not a canonical field element")]
    NotAFieldElement(usize),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses a `.wtns` file into field elements.
pub fn parse(buf: &[u8]) -> Result<Vec<Fr>, WtnsError> {
    if buf.len() < 12 || &buf[..4] != b"wtns" {
        return Err(WtnsError::NotAWtns);
    }
    let trunc = |what: &str| WtnsError::Malformed(format!("{what} ends early"));
    let n_sections = u32_at(buf, 8).ok_or_else(|| trunc("header"))?;
    let mut pos = 12usize;
    let (mut header, mut values) = (None, None);
    for _ in 0..n_sections {
        let ty = u32_at(buf, pos).ok_or_else(|| trunc("section header"))?;
        let size = buf
            .get(pos + 4..pos + 12)
            .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
            .ok_or_else(|| trunc("section header"))?;
        let start = pos + 12;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|&e| e <= buf.len());
        let end = end.ok_or_else(|| trunc("section"))?;
        match ty {
            1 => header = Some(&buf[start..end]),
            2 => values = Some(&buf[start..end]),
            _ => {}
        }
        pos = end;
    }
    let header = header.ok_or_else(|| WtnsError::Malformed("header section missing".into()))?;
    let values = values.ok_or_else(|| WtnsError::Malformed("values section missing".into()))?;
    let n8 = u32_at(header, 0).ok_or_else(|| trunc("header section"))? as usize;
    if n8 != 32 || header.get(4..36) != Some(modulus_bytes().as_slice()) {
        return Err(WtnsError::WrongField);
    }
    let n = u32_at(header, 36).ok_or_else(|| trunc("header section"))? as usize;
    if values.len() != n * 32 {
        return Err(WtnsError::Malformed(format!(
            "{} value bytes for {n} values",
            values.len()
        )));
    }
    values
        .chunks_exact(32)
        .enumerate()
        .map(|(i, c)| {
            let mut limbs = [0u64; 4];
            for (j, l) in limbs.iter_mut().enumerate() {
                let mut a = [0u8; 8];
                a.copy_from_slice(&c[j * 8..j * 8 + 8]);
                *l = u64::from_le_bytes(a);
            }
            Fr::from_bigint(BigInt(limbs)).ok_or(WtnsError::NotAFieldElement(i))
        })
        .collect()
}

fn modulus_bytes() -> Vec<u8> {
    Fr::MODULUS.0.iter().flat_map(|l| l.to_le_bytes()).collect()
}

/// Writes a witness as a version-2 `.wtns` file (what snarkjs and rapidsnark read).
pub fn write(witness: &[Fr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + witness.len() * 32);
    out.extend_from_slice(b"wtns");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&40u64.to_le_bytes());
    out.extend_from_slice(&32u32.to_le_bytes());
    out.extend_from_slice(&modulus_bytes());
    out.extend_from_slice(&(witness.len() as u32).to_le_bytes());
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&((witness.len() * 32) as u64).to_le_bytes());
    for w in witness {
        for l in w.into_bigint().0 {
            out.extend_from_slice(&l.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let w = vec![Fr::from(1u64), Fr::from(7u64), -Fr::from(3u64)];
        assert_eq!(parse(&write(&w)), Ok(w));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(parse(b"nope"), Err(WtnsError::NotAWtns));
        let full = write(&[Fr::from(1u64), Fr::from(2u64)]);
        for cut in [12, 20, 50, full.len() - 1] {
            assert!(
                matches!(parse(&full[..cut]), Err(WtnsError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let mut bad = full.clone();
        let last = bad.len() - 32;
        bad[last..].copy_from_slice(&[0xff; 32]);
        assert_eq!(parse(&bad), Err(WtnsError::NotAFieldElement(1)));
    }
}
