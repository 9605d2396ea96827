//! Loads proving keys fast: a zkey is parsed and checked once, then kept as a
//! preprocessed file (arkworks uncompressed form, read back unchecked) named
//! by the sha256 of the source zkey, so a restart or a second pod on the node
//! skips the parsing and the curve checks.
//!
//! Cache file: `ZKFLPK01`, the 32-byte sha256 of the source zkey, then the
//! key in `ark-serialize` uncompressed form. It is written to a temporary
//! name and renamed, so a crash never leaves a partial file under the final
//! name; a file that does not read back cleanly is ignored and rewritten.
//!
//! The cache directory is shared by every prover pod on the node, whichever namespace it
//! belongs to, so an entry is not trusted for the verifying key: on every cache hit the
//! verifying key is read again from the zkey itself (its first sections, checked as the
//! parser checks them) and must equal the entry's. An entry written by another pod to pass
//! wrong proofs is ignored and rewritten. (A damaged proving key only makes proofs that do not
//! verify, which the operator rejects.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ark_bn254::{Bn254, Fr};
use ark_groth16::ProvingKey;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use sha2::{Digest as _, Sha256};

use super::zkey::{self, Coefficient, Zkey, ZkeyError};

const MAGIC: &[u8; 8] = b"ZKFLPK01";

/// Why a proving key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Zkey { path: PathBuf, source: ZkeyError },
}

/// How a key was loaded, for logs and metrics.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// sha256 of the source zkey, hex.
    pub digest: String,
    /// True when the preprocessed file was used.
    pub from_cache: bool,
    pub seconds: f64,
    /// Why the cache could not be used or written, if it could not.
    pub cache_note: Option<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The preprocessed file for a zkey with this digest.
pub fn cache_path(cache_dir: &Path, digest_hex: &str) -> PathBuf {
    cache_dir.join(format!("{digest_hex}.zkfleet-pk"))
}

/// Loads a zkey, through the preprocessed cache when `cache_dir` is given.
/// `known_digest` is the sha256 (hex) of the file if the caller already
/// checked it, which saves reading the zkey at all on a cache hit.
pub fn load(
    path: &Path,
    known_digest: Option<&str>,
    cache_dir: Option<&Path>,
) -> Result<(Zkey, LoadReport), LoadError> {
    let start = Instant::now();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| LoadError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut source_bytes = None;
    let digest = match known_digest {
        Some(d) => d.to_ascii_lowercase(),
        None => {
            let bytes = read(path)?;
            let d = sha256_hex(&bytes);
            source_bytes = Some(bytes);
            d
        }
    };
    let mut note = None;
    if let Some(dir) = cache_dir {
        let cached = read_cache(&cache_path(dir, &digest), &digest).and_then(|z| {
            match zkey_verifying_key(path) {
                Ok(vk) if vk == z.pk.vk => Ok(z),
                Ok(_) => Err(
                    "the preprocessed key's verifying key is not the zkey's: entry ignored and rewritten"
                        .to_string(),
                ),
                Err(e) => Err(format!("cannot check the preprocessed key against the zkey: {e}")),
            }
        });
        match cached {
            Ok(z) => {
                let seconds = start.elapsed().as_secs_f64();
                return Ok((
                    z,
                    LoadReport {
                        digest,
                        from_cache: true,
                        seconds,
                        cache_note: None,
                    },
                ));
            }
            Err(e) => note = Some(e),
        }
    }
    let bytes = match source_bytes {
        Some(b) => b,
        None => read(path)?,
    };
    let z = zkey::parse(&bytes, true).map_err(|source| LoadError::Zkey {
        path: path.to_path_buf(),
        source,
    })?;
    drop(bytes);
    if let Some(Err(e)) = cache_dir.map(|dir| write_cache(dir, &digest, &z)) {
        note = Some(format!("cannot write preprocessed key: {e}"));
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok((
        z,
        LoadReport {
            digest,
            from_cache: false,
            seconds,
            cache_note: note,
        },
    ))
}

/// The verifying key in a zkey's own sections, read without parsing the proving key.
fn zkey_verifying_key(path: &Path) -> Result<ark_groth16::VerifyingKey<Bn254>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    zkey::read_verifying_key(std::io::BufReader::new(file))
        .map(|(vk, _)| vk)
        .map_err(|e| e.to_string())
}

fn read_cache(path: &Path, digest_hex: &str) -> Result<Zkey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("no preprocessed key: {e}"))?;
    let digest = hex::decode(digest_hex).map_err(|e| e.to_string())?;
    if bytes.len() < 40 || &bytes[..8] != MAGIC || bytes[8..40] != digest[..] {
        return Err("preprocessed key has a foreign header".into());
    }
    decode(&bytes[40..]).map_err(|e| format!("preprocessed key unreadable: {e}"))
}

fn decode(mut r: &[u8]) -> Result<Zkey, ark_serialize::SerializationError> {
    let (c, v) = (Compress::No, Validate::No);
    let n_vars = u64::deserialize_with_mode(&mut r, c, v)? as usize;
    let n_public = u64::deserialize_with_mode(&mut r, c, v)? as usize;
    let domain_size = u64::deserialize_with_mode(&mut r, c, v)? as usize;
    let pk = ProvingKey::<Bn254>::deserialize_with_mode(&mut r, c, v)?;
    let mut matrix = || -> Result<Vec<Coefficient>, ark_serialize::SerializationError> {
        let ids = Vec::<u32>::deserialize_with_mode(&mut r, c, v)?;
        let values = Vec::<Fr>::deserialize_with_mode(&mut r, c, v)?;
        if ids.len() != 2 * values.len() {
            return Err(ark_serialize::SerializationError::InvalidData);
        }
        Ok(ids
            .chunks_exact(2)
            .zip(values)
            .map(|(ids, value)| Coefficient {
                constraint: ids[0],
                signal: ids[1],
                value,
            })
            .collect())
    };
    let a = matrix()?;
    let b = matrix()?;
    let z = Zkey {
        n_vars,
        n_public,
        domain_size,
        pk,
        a,
        b,
    };
    // Cheap shape checks, so a damaged file cannot make the prover index out of bounds.
    let ok = z.n_public < z.n_vars
        && z.domain_size.is_power_of_two()
        && z.pk.a_query.len() == z.n_vars
        && z.pk.b_g1_query.len() == z.n_vars
        && z.pk.b_g2_query.len() == z.n_vars
        && z.pk.l_query.len() == z.n_vars - z.n_public - 1
        && z.pk.h_query.len() == z.domain_size
        && z.pk.vk.gamma_abc_g1.len() == z.n_public + 1
        && z.a
            .iter()
            .chain(&z.b)
            .all(|c| (c.constraint as usize) < z.domain_size && (c.signal as usize) < z.n_vars);
    if ok {
        Ok(z)
    } else {
        Err(ark_serialize::SerializationError::InvalidData)
    }
}

fn encode(z: &Zkey, out: &mut Vec<u8>) -> Result<(), ark_serialize::SerializationError> {
    let c = Compress::No;
    (z.n_vars as u64).serialize_with_mode(&mut *out, c)?;
    (z.n_public as u64).serialize_with_mode(&mut *out, c)?;
    (z.domain_size as u64).serialize_with_mode(&mut *out, c)?;
    z.pk.serialize_with_mode(&mut *out, c)?;
    for m in [&z.a, &z.b] {
        let ids: Vec<u32> = m.iter().flat_map(|c| [c.constraint, c.signal]).collect();
        let values: Vec<Fr> = m.iter().map(|c| c.value).collect();
        ids.serialize_with_mode(&mut *out, c)?;
        values.serialize_with_mode(&mut *out, c)?;
    }
    Ok(())
}

fn write_cache(dir: &Path, digest_hex: &str, z: &Zkey) -> Result<(), String> {
    let digest = hex::decode(digest_hex).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(64 << 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&digest);
    encode(z, &mut buf).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    tmp.write_all(&buf).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(cache_path(dir, digest_hex))
        .map_err(|e| e.to_string())?;
    Ok(())
}
