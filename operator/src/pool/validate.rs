//! Checks a pool can be built before anything is applied. Problems the API server's schema
//! cannot catch end up here, each with a message saying what to change.

use kube::ResourceExt;
use zkfleet_crds::v1alpha1::{BackendKind, ProverPool};

use crate::build::deployment::zkey_name;

/// Longest pool name: `<name>-prover` must fit a 63-character DNS label (Service name).
pub const MAX_POOL_NAME: usize = 63 - "-prover".len();

/// Why a pool cannot be built. The variant name is the condition reason, the Event reason and
/// the `error` label of the failures metric.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The name does not fit the children's names.
    #[error(
        "pool name {name:?} cannot name its Service: use at most {MAX_POOL_NAME} lowercase letters, digits and '-', starting with a letter"
    )]
    InvalidName { name: String },
    /// The object could not be read as a ProverPool at all.
    #[error("the pool could not be read: {0}; fix the manifest and apply it again")]
    Malformed(String),
    /// Not exactly one parameters source.
    #[error("spec.parameters.source must set exactly one of url, configMap or pvc")]
    NoParametersSource,
    /// The proving key is not among the files.
    #[error(
        "spec.parameters.files has no {zkey}: add it with its sha256, or name the proving key in spec.backend.groth16.zkey"
    )]
    MissingProvingKey { zkey: String },
    /// `backend.type: exec` without settings.
    #[error("spec.backend.type is exec but spec.backend.exec is missing: add the prover command")]
    MissingExecSettings,
    /// A pool of a system that proves a pool-held program (Miden, Stwo) without exactly one
    /// program among its files.
    #[error(
        "the {profile} profile proves one program ({ext}), but spec.parameters.files lists {found} {ext} files: list exactly one, with its sha256"
    )]
    MissingProgram {
        profile: &'static str,
        ext: &'static str,
        found: usize,
    },
}

impl Invalid {
    /// Stable name of the problem: condition reason, Event reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "InvalidName",
            Self::Malformed(_) => "Malformed",
            Self::NoParametersSource => "NoParametersSource",
            Self::MissingProvingKey { .. } => "MissingProvingKey",
            Self::MissingExecSettings => "MissingExecSettings",
            Self::MissingProgram { .. } => "MissingProgram",
        }
    }
}

/// Whether `pool` can be turned into children.
pub fn validate(pool: &ProverPool) -> Result<(), Invalid> {
    let name = pool.name_any();
    if !is_dns_label(&name) || name.len() > MAX_POOL_NAME {
        return Err(Invalid::InvalidName { name });
    }
    if pool.spec.parameters.source.location().is_none() {
        return Err(Invalid::NoParametersSource);
    }
    if pool.spec.backend.kind == BackendKind::Exec && pool.spec.backend.exec.is_none() {
        return Err(Invalid::MissingExecSettings);
    }
    let files = &pool.spec.parameters.files;
    match pool.spec.backend.exec_profile() {
        // A keyless system needs no proving key; one that proves a pool-held program needs
        // exactly one (Stone proves the runs jobs carry: it reads no parameter file of ours).
        Some(profile) if profile.system().keyless => {
            if let Some(ext) = profile.system().program_extension {
                let found = files.iter().filter(|f| f.name.ends_with(ext)).count();
                if found != 1 {
                    return Err(Invalid::MissingProgram {
                        profile: profile.name(),
                        ext,
                        found,
                    });
                }
            }
        }
        _ => {
            let zkey = zkey_name(pool);
            if !files.iter().any(|f| f.name == zkey) {
                return Err(Invalid::MissingProvingKey { zkey: zkey.into() });
            }
        }
    }
    Ok(())
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn accepts_the_fixtures() {
        assert_eq!(validate(&pool(GPU_POOL)), Ok(()));
        assert_eq!(validate(&pool(CPU_POOL)), Ok(()));
    }

    #[test]
    fn an_image_source_is_no_source() {
        // `source.image` left the API: such a pool names no source the operator knows.
        let yaml = CPU_POOL.replace(
            "      url: https://params.example/multiplier/v7\n",
            "      image:\n        reference: registry.example/params@sha256:abc\n",
        );
        let err = validate(&pool(&yaml)).unwrap_err();
        assert_eq!(err, Invalid::NoParametersSource);
        assert!(err.to_string().contains("url, configMap or pvc"));
    }

    #[test]
    fn refuses_a_missing_proving_key() {
        let yaml = CPU_POOL.replace("name: circuit.zkey", "name: other.zkey");
        let err = validate(&pool(&yaml)).unwrap_err();
        assert_eq!(
            err,
            Invalid::MissingProvingKey {
                zkey: "circuit.zkey".into()
            }
        );
        assert!(err.to_string().contains("spec.backend.groth16.zkey"));
    }

    #[test]
    fn refuses_names_too_long_for_a_service() {
        let long = "p".repeat(MAX_POOL_NAME + 1);
        let yaml = CPU_POOL.replace("name: cpu-pool", &format!("name: {long}"));
        assert!(matches!(
            validate(&pool(&yaml)),
            Err(Invalid::InvalidName { .. })
        ));
        let dotted = CPU_POOL.replace("name: cpu-pool", "name: cpu.pool");
        assert!(matches!(
            validate(&pool(&dotted)),
            Err(Invalid::InvalidName { .. })
        ));
        let ok = CPU_POOL.replace(
            "name: cpu-pool",
            &format!("name: {}", "p".repeat(MAX_POOL_NAME)),
        );
        assert_eq!(validate(&pool(&ok)), Ok(()));
    }

    #[test]
    fn accepts_stone_pools_without_a_proving_key() {
        let yaml = CPU_POOL.replace(
            "  backend:\n    type: groth16-bn254\n",
            "  backend:\n    type: exec\n    exec:\n      profile: stone\n      command: [cpu_air_prover]\n",
        );
        assert_eq!(validate(&pool(&yaml)), Ok(()));
        let no_zkey = yaml.replace("name: circuit.zkey", "name: other.bin");
        assert_eq!(validate(&pool(&no_zkey)), Ok(()));
        let missing = CPU_POOL.replace("    type: groth16-bn254\n", "    type: exec\n");
        assert_eq!(validate(&pool(&missing)), Err(Invalid::MissingExecSettings));
    }

    #[test]
    fn miden_pools_need_exactly_one_program() {
        let yaml = CPU_POOL.replace(
            "  backend:\n    type: groth16-bn254\n",
            "  backend:\n    type: exec\n    exec:\n      profile: miden\n      command: [miden-vm]\n",
        );
        let e = validate(&pool(&yaml)).unwrap_err();
        assert_eq!(e.reason(), "MissingProgram");
        assert!(e.to_string().contains("lists 0 .masm files"), "{e}");
        let with_program = yaml.replace("name: circuit.zkey", "name: fib.masm");
        assert_eq!(validate(&pool(&with_program)), Ok(()));
    }

    #[test]
    fn stwo_pools_need_exactly_one_compiled_program() {
        let yaml = CPU_POOL.replace(
            "  backend:\n    type: groth16-bn254\n",
            "  backend:\n    type: exec\n    exec:\n      profile: stwo\n      command: [zkfleet-stwo-prove]\n",
        );
        let e = validate(&pool(&yaml)).unwrap_err();
        assert!(
            e.to_string()
                .contains("the stwo profile proves one program (.json)"),
            "{e}"
        );
        let with_program = yaml.replace("name: circuit.zkey", "name: fib.json");
        assert_eq!(validate(&pool(&with_program)), Ok(()));
    }
}
