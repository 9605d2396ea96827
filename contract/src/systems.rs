//! Every proof system zkfleet runs, in one table: what the API server checks a pool and its
//! jobs against (the CRD's `backend.exec.profile` values, the input files a job must carry),
//! what the operator validates and verifies with, what `kubectl zkfleet` tells a user, and the
//! default command a prover pod runs. The prover's own code for a system is one backend module
//! (`prover-pod/src/backend/`), found by the same name.
//!
//! Adding a proof system: a row here, its backend module with one line in the prover's
//! registry, and the generated files (`make crds manifests`).

/// How a system's proofs are checked, which decides what a job carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Groth16 over BN254: jobs carry circuit inputs or a `.wtns` witness; the operator checks
    /// every proof with the pool's verifying key, besides the pool's verifier.
    Groth16,
    /// A STARK or VM prover: jobs carry named input files; the pool's verifier Deployment
    /// checks every proof with the system's own verifier.
    Stark,
}

/// One proof system.
#[derive(Debug, PartialEq, Eq)]
pub struct ProofSystem {
    /// The name pools use (`backend.exec.profile`) and the prover's registry key.
    pub name: &'static str,
    /// What people call it, for messages.
    pub title: &'static str,
    pub family: Family,
    /// The named input files each job carries (STARK family); empty for Groth16.
    pub input_files: &'static [&'static str],
    /// Whether the pool's parameters hold no proving key (its pods are ready once the listed
    /// files are fetched and checked).
    pub keyless: bool,
    /// The file extension of the one program among the pool's parameter files the system
    /// proves (`.masm` for Miden), when it proves a pool-held program.
    pub program_extension: Option<&'static str>,
    /// The command a prover pod runs when the pool gives only a program name or none; the
    /// first word is the program.
    pub default_command: &'static [&'static str],
    /// The verifier the pool's verifier Deployment runs, as a user would look for it.
    pub verifier: &'static str,
    /// What a proof makes public, as the job's `result.publicOutputs` holds it.
    pub public_outputs: &'static str,
}

/// Every proof system exec pools can name (the built-in `groth16-bn254` backend is not an
/// exec profile, but proves as `snarkjs` does).
pub const PROOF_SYSTEMS: &[ProofSystem] = &[
    ProofSystem {
        name: "snarkjs",
        title: "snarkjs Groth16",
        family: Family::Groth16,
        input_files: &[],
        keyless: false,
        program_extension: None,
        default_command: &[
            "snarkjs",
            "groth16",
            "prove",
            "{zkey}",
            "{witness}",
            "{proof}",
            "{public}",
        ],
        verifier: "snarkjs groth16 verify",
        public_outputs: "the Groth16 public signals",
    },
    ProofSystem {
        name: "rapidsnark",
        title: "rapidsnark Groth16",
        family: Family::Groth16,
        input_files: &[],
        keyless: false,
        program_extension: None,
        default_command: &["rapidsnark", "{zkey}", "{witness}", "{proof}", "{public}"],
        verifier: "snarkjs groth16 verify",
        public_outputs: "the Groth16 public signals",
    },
    ProofSystem {
        name: "stone",
        title: "StarkWare Stone",
        family: Family::Stark,
        input_files: &[
            "public_input.json",
            "private_input.json",
            "trace.bin",
            "memory.bin",
        ],
        keyless: true,
        program_extension: None,
        default_command: &[
            "cpu_air_prover",
            "--out_file={proof}",
            "--public_input_file={public_input}",
            "--private_input_file={private_input}",
            "--prover_config_file={prover_config}",
            "--parameter_file={parameters}",
        ],
        verifier: "cpu_air_verifier",
        public_outputs: "output (the output segment), nSteps and layout of the Cairo run",
    },
    ProofSystem {
        name: "miden",
        title: "Miden VM",
        family: Family::Stark,
        input_files: &["inputs.json"],
        keyless: true,
        program_extension: Some(".masm"),
        default_command: &["miden-vm"],
        verifier: "miden-vm verify",
        public_outputs: "programHash, operandStack and stackOutputs",
    },
    ProofSystem {
        name: "stwo",
        title: "Stwo",
        family: Family::Stark,
        input_files: &["program_input.json"],
        keyless: true,
        program_extension: Some(".json"),
        default_command: &["zkfleet-stwo-prove"],
        verifier: "zkfleet-cairo stwo-verify",
        public_outputs: "output (the output segment, decimal) and programHash (Blake2s)",
    },
];

/// The proof system named `name`.
pub fn proof_system(name: &str) -> Option<&'static ProofSystem> {
    PROOF_SYSTEMS.iter().find(|s| s.name == name)
}

/// The names of every proof system, for messages and the CRD's enum.
pub fn names() -> impl Iterator<Item = &'static str> {
    PROOF_SYSTEMS.iter().map(|s| s.name)
}

impl ProofSystem {
    /// True for Groth16 systems, whose jobs carry circuit inputs or a witness.
    pub fn proves_groth16(&self) -> bool {
        self.family == Family::Groth16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_stark_systems_take_files() {
        let mut names: Vec<_> = names().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROOF_SYSTEMS.len());
        for system in PROOF_SYSTEMS {
            assert_eq!(
                system.input_files.is_empty(),
                system.proves_groth16(),
                "{}",
                system.name
            );
            assert!(!system.default_command.is_empty(), "{}", system.name);
        }
    }
}
