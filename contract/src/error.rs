//! The JSON body of every error answer, from the prover's API and the operator's dispatcher
//! alike.

use serde::{Deserialize, Serialize};

/// `{code, message}`: `code` is stable and machine-readable, `message` says what to fix.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}
