//! Version `v1alpha1` of the `zkfleet.dev` API group.

pub mod conditions;
pub mod job;
pub mod pool;
mod schema;

pub use conditions::*;
pub use job::*;
pub use pool::*;

/// API version string (`group/version`) of the resources in this module.
pub const API_VERSION: &str = "zkfleet.dev/v1alpha1";
