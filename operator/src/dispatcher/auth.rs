//! Who is calling: the pool token and the pod, checked from the request's headers before its
//! body is read, so a caller without the token costs the dispatcher one header parse and, at
//! most once per [`REREAD_AFTER`], one Secret read.
//!
//! Every refusal of a token reads the same whatever the cause (no such pool, no token Secret
//! yet, a wrong token), so a caller without a token cannot learn which pools exist.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt as _;
use kube::api::Api;
use subtle::ConstantTimeEq as _;
use zkfleet_contract::lease::Caller;

use super::state::PoolKey;
use super::{DispatchError, Dispatcher, is_ready};
use crate::build::token_secret::DispatcherToken;
use crate::build::{self, POOL_LABEL};

/// How long a pool's token is trusted from memory before its Secret is read again.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// A wrong token makes the dispatcher read the Secret again (it may have been replaced), but
/// no more often than this per pool, so a flood of wrong tokens does not become a flood of
/// API reads.
pub const REREAD_AFTER: Duration = Duration::from_secs(5);

/// The pools' tokens as last read from their Secrets.
#[derive(Default)]
pub struct Tokens {
    cached: Mutex<HashMap<PoolKey, (Option<DispatcherToken>, Instant)>>,
}

impl Tokens {
    /// Whether `presented` is the pool's token. `read` reads the pool's Secret: `Ok(None)` when
    /// the pool or its token does not exist. It is called when nothing is cached, when the
    /// cache is older than [`TOKEN_TTL`], and when the token does not match and the cache is
    /// older than [`REREAD_AFTER`].
    pub async fn check<F, Fut>(
        &self,
        key: &PoolKey,
        presented: &str,
        now: Instant,
        read: F,
    ) -> Result<bool, DispatchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<DispatcherToken>, DispatchError>>,
    {
        let cached = self.cached.lock().expect("lock").get(key).cloned();
        let (token, read_at) = match cached {
            Some((token, at)) if now.saturating_duration_since(at) < TOKEN_TTL => (token, at),
            _ => (self.refresh(key, now, &read).await?, now),
        };
        if matches_token(token.as_ref(), presented) {
            return Ok(true);
        }
        if now.saturating_duration_since(read_at) < REREAD_AFTER {
            return Ok(false);
        }
        let fresh = self.refresh(key, now, &read).await?;
        Ok(matches_token(fresh.as_ref(), presented))
    }

    async fn refresh<F, Fut>(
        &self,
        key: &PoolKey,
        now: Instant,
        read: &F,
    ) -> Result<Option<DispatcherToken>, DispatchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<DispatcherToken>, DispatchError>>,
    {
        let token = read().await?;
        let mut cached = self.cached.lock().expect("lock");
        // Only pools that exist are remembered, so made-up pool names cannot grow the map.
        match &token {
            Some(t) => {
                cached.insert(key.clone(), (Some(t.clone()), now));
            }
            None => {
                cached.remove(key);
            }
        }
        Ok(token)
    }

    /// The pool's token as last read, however long ago.
    pub fn cached(&self, key: &PoolKey) -> Option<DispatcherToken> {
        self.cached
            .lock()
            .expect("lock")
            .get(key)
            .and_then(|(token, _)| token.clone())
    }

    /// Forgets pools that are gone.
    pub fn retain(&self, keep: impl Fn(&PoolKey) -> bool) {
        self.cached.lock().expect("lock").retain(|k, _| keep(k));
    }
}

fn matches_token(expected: Option<&DispatcherToken>, presented: &str) -> bool {
    expected.is_some_and(|t| bool::from(t.expose().as_bytes().ct_eq(presented.as_bytes())))
}

/// The one refusal for every token problem.
fn refused(key: &PoolKey) -> DispatchError {
    DispatchError::Unauthorized(format!(
        "the bearer token is not the dispatcher token of pool {}/{}",
        key.namespace, key.name
    ))
}

impl Dispatcher {
    /// Checks the bearer token against the pool's Secret and that the caller is a pod of the
    /// pool calling from its own address. Returns the pod.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        token: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Pod>, DispatchError> {
        if !self.synced.load(Ordering::Acquire) {
            return Err(DispatchError::Unavailable(
                "the dispatcher is still rebuilding its queue; retry shortly".into(),
            ));
        }
        let key = PoolKey::new(&caller.namespace, &caller.pool);
        let Some(token) = token else {
            return Err(DispatchError::Unauthorized(
                "missing Authorization: Bearer <pool token>".into(),
            ));
        };
        let valid = self
            .tokens
            .check(&key, token, Instant::now(), || self.read_token(&key))
            .await?;
        if !valid {
            return Err(refused(&key));
        }
        let Some(pod) = self.pod(&caller.namespace, &caller.pod) else {
            return Err(DispatchError::Forbidden(format!(
                "pod {}/{} does not exist",
                caller.namespace, caller.pod
            )));
        };
        // The pool label alone is not enough: anyone who may create pods in the namespace
        // can copy it. Only pods of the pool's own ReplicaSets take work.
        let made_by_pool = self
            .pool(&key)
            .is_some_and(|pool| super::verify::made_by_pool_deployment(&pod, &pool));
        if pod.labels().get(POOL_LABEL) != Some(&caller.pool) || !made_by_pool {
            return Err(DispatchError::Forbidden(format!(
                "pod {}/{} is not a prover pod of pool {}",
                caller.namespace, caller.pod, caller.pool
            )));
        }
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        if let (Some(peer), Some(pod_ip)) = (peer, pod_ip)
            && peer != pod_ip
        {
            return Err(DispatchError::Forbidden(format!(
                "the request comes from {peer}, not from pod {}/{} ({pod_ip})",
                caller.namespace, caller.pod
            )));
        }
        Ok(pod)
    }

    /// The pool's token, from memory when a pod of the pool has called lately, else from its
    /// Secret; `None` when it cannot be had.
    pub(super) async fn pool_token(&self, key: &PoolKey) -> Option<DispatcherToken> {
        match self.tokens.cached(key) {
            Some(token) => Some(token),
            None => self.read_token(key).await.ok().flatten(),
        }
    }

    /// The pool's token from its Secret; `None` when the pool or the token does not exist.
    async fn read_token(&self, key: &PoolKey) -> Result<Option<DispatcherToken>, DispatchError> {
        let Some(pool) = self.pool(key) else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
        let secret = secrets
            .get_opt(&build::token_secret_name(&pool))
            .await
            .map_err(|e| DispatchError::Unavailable(format!("reading the pool token: {e}")))?;
        Ok(secret.as_ref().and_then(DispatcherToken::from_secret))
    }
}

/// Whether the pod may be given new work: Ready and not terminating.
pub fn serving(pod: &Pod) -> bool {
    is_ready(pod) && pod.metadata.deletion_timestamp.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn token(text: &str) -> DispatcherToken {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t"},
            "data": {"token": k8s_openapi::ByteString(text.as_bytes().to_vec())},
        }))
        .unwrap();
        DispatcherToken::from_secret(&secret).unwrap()
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";
    const NEWER: &str = "fedcba9876543210fedcba9876543210";

    #[tokio::test]
    async fn wrong_tokens_reread_the_secret_at_most_once_per_interval() {
        let tokens = Tokens::default();
        let key = PoolKey::new("team", "cpu");
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(token(GOOD)))
        };
        let t0 = Instant::now();
        assert!(tokens.check(&key, GOOD, t0, read).await.unwrap());
        for _ in 0..100 {
            assert!(!tokens.check(&key, "wrong", t0, read).await.unwrap());
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "a flood of wrong tokens reads nothing"
        );
        let later = t0 + REREAD_AFTER;
        assert!(!tokens.check(&key, "wrong", later, read).await.unwrap());
        assert!(!tokens.check(&key, "wrong", later, read).await.unwrap());
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one re-read per interval");
    }

    #[tokio::test]
    async fn a_replaced_token_is_picked_up_on_the_first_mismatch_after_the_interval() {
        let tokens = Tokens::default();
        let key = PoolKey::new("team", "cpu");
        let current = Mutex::new(GOOD);
        let read = || async { Ok(Some(token(*current.lock().unwrap()))) };
        let t0 = Instant::now();
        assert!(tokens.check(&key, GOOD, t0, read).await.unwrap());
        *current.lock().unwrap() = NEWER;
        assert!(
            tokens
                .check(&key, NEWER, t0 + REREAD_AFTER, read)
                .await
                .unwrap()
        );
        assert!(
            !tokens
                .check(&key, GOOD, t0 + REREAD_AFTER, read)
                .await
                .unwrap(),
            "the old token no longer works"
        );
    }

    #[tokio::test]
    async fn unknown_pools_are_not_remembered() {
        let tokens = Tokens::default();
        let t0 = Instant::now();
        for i in 0..50 {
            let key = PoolKey::new("team", &format!("made-up-{i}"));
            assert!(
                !tokens
                    .check(&key, GOOD, t0, || async { Ok(None) })
                    .await
                    .unwrap()
            );
        }
        assert!(tokens.cached.lock().unwrap().is_empty());
    }
}
