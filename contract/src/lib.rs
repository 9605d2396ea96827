//! What the zkfleet operator and its prover pods agree on, and nothing else: the lease
//! protocol, the table of proof systems, the JSON error body, sha256 digests, the verifier protocol and, with the
//! `object-store` feature, which URLs name which object store. Both deployables depend on this
//! crate; neither depends on the other.

pub mod digest;
pub mod error;
pub mod lease;
#[cfg(feature = "object-store")]
pub mod store;
pub mod systems;
#[cfg(feature = "otel")]
pub mod trace;
pub mod verify;

pub use digest::Digest;
pub use error::ErrorBody;
