//! The zkfleet API: `ProverPool` and `ProofJob` custom resources, and the CRD YAML built from them.
//!
//! The Rust types are the single source of truth for the API. `crdgen` (see `src/bin/crdgen.rs`)
//! renders them into the CRD manifests under `charts/zkfleet/crds/` and `manifests/crds/`, and a
//! test fails whenever the committed YAML drifts from the types.

pub mod crdgen;
pub mod v1alpha1;

/// API group of every zkfleet custom resource.
pub const GROUP: &str = "zkfleet.dev";
