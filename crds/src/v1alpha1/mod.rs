//! Version `v1alpha1` of the `zkfleet.dev` API group.

pub mod conditions;
pub mod job;
pub mod known_answer;
pub mod pool;
mod schema;
pub mod sharing;

pub use conditions::*;
pub use job::*;
pub use known_answer::*;
pub use pool::*;
pub use sharing::*;

/// API version string (`group/version`) of the resources in this module.
pub const API_VERSION: &str = "zkfleet.dev/v1alpha1";
