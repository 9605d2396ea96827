//! Groth16 over BN254 as circom and snarkjs write it, verifier side only: snarkjs JSON
//! (`proof.json`, `public.json`, `verification_key.json`), the verifying-key sections of a
//! `.zkey`, and [`Verifier`]. The operator checks every Groth16 proof with this crate; the
//! prover builds its proving key and JSON output on the same modules.

pub mod json;
pub mod verifier;
pub mod zkey;

pub use verifier::{Verifier, VerifyError};
