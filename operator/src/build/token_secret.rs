//! The pool's dispatcher token Secret: the shared secret prover pods present to the
//! dispatcher. Generated once, kept for the life of the pool, never logged.

use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use zkfleet_crds::v1alpha1::ProverPool;

use super::{BuildContext, COMPONENT_DISPATCHER_TOKEN, metadata, token_secret_name};

/// Key of the token in the Secret's data.
pub const TOKEN_KEY: &str = "token";

/// A dispatcher token. `Debug` and `Display` print a placeholder, so the value cannot reach
/// logs, errors or Events by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct DispatcherToken(String);

impl DispatcherToken {
    /// 32 random bytes from the operating system, hex-encoded.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// The token stored in an existing Secret, when it holds a usable one.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let bytes = secret.data.as_ref()?.get(TOKEN_KEY)?;
        let token = std::str::from_utf8(&bytes.0).ok()?;
        (token.len() >= 32).then(|| Self(token.to_string()))
    }

    /// The token itself, for the Secret and (later) the dispatcher's check.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DispatcherToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DispatcherToken(<redacted>)")
    }
}

/// The Secret holding `token`. Reconcile passes the token already stored in the Secret when
/// there is one, so applying it again never rotates the token under running pods.
pub fn token_secret(pool: &ProverPool, token: &DispatcherToken, _ctx: &BuildContext) -> Secret {
    Secret {
        metadata: metadata(pool, token_secret_name(pool), COMPONENT_DISPATCHER_TOKEN),
        type_: Some("Opaque".into()),
        data: Some(
            [(
                TOKEN_KEY.to_string(),
                ByteString(token.0.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::*;

    #[test]
    fn keeps_the_existing_token() {
        let pool = pool(GPU_POOL);
        let first = DispatcherToken::generate().unwrap();
        let secret = token_secret(&pool, &first, &ctx());
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("gpu-pool-dispatcher-token")
        );
        let again = DispatcherToken::from_secret(&secret).unwrap();
        assert_eq!(again, first);
        assert_eq!(token_secret(&pool, &again, &ctx()), secret);
    }

    #[test]
    fn generated_tokens_are_long_random_and_redacted() {
        let a = DispatcherToken::generate().unwrap();
        let b = DispatcherToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "DispatcherToken(<redacted>)");
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn ignores_secrets_without_a_usable_token() {
        let mut secret = Secret::default();
        assert!(DispatcherToken::from_secret(&secret).is_none());
        secret.data = Some([(TOKEN_KEY.to_string(), ByteString(b"short".to_vec()))].into());
        assert!(DispatcherToken::from_secret(&secret).is_none());
    }
}
