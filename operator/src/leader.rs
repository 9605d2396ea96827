//! Leader election on a `coordination.k8s.io/v1` Lease: one replica reconciles, the others
//! wait to take over. The rules are pure functions ([`claim`], [`claimed`], [`released`]); the
//! [`Elector`] reads and writes the Lease with optimistic concurrency (resourceVersion), so two
//! replicas can never both win the same term.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long a Lease is valid, how often the leader renews it, and how often others retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A holder that has not renewed for this long is presumed dead (Lease duration).
    pub lease: Duration,
    /// The leader renews this often.
    pub renew: Duration,
    /// Standbys, and a leader whose renewal failed, retry this often.
    pub retry: Duration,
}

impl Default for Timing {
    /// 15 s lease, 5 s renew, 2 s retry: a crashed leader is replaced within ~17 s, one that
    /// shuts down cleanly (and releases the Lease) within ~2 s.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(5),
            retry: Duration::from_secs(2),
        }
    }
}

/// What this replica may do with the Lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a live Lease.
    Held { holder: String },
}

/// Whether `identity` may take or renew the Lease at `now`.
pub fn claim(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Claim {
    let Some(spec) = spec else {
        return Claim::Acquire;
    };
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    match holder {
        None => Claim::Acquire,
        Some(h) if h == identity => Claim::Renew,
        Some(h) => {
            let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            match last {
                Some(MicroTime(t)) if *t + SignedDuration::from_secs(duration) > now => {
                    Claim::Held { holder: h.into() }
                }
                _ => Claim::Acquire,
            }
        }
    }
}

/// The Lease spec after `identity` takes or renews it at `now`.
pub fn claimed(
    prev: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    lease: Duration,
) -> LeaseSpec {
    let ours = prev.and_then(|p| p.holder_identity.as_deref()) == Some(identity);
    let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(i32::try_from(lease.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if ours {
            prev.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || prev.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// The Lease spec a leader leaves behind on a clean shutdown: no holder and a one-second
/// duration, so a standby takes over on its next retry instead of waiting for expiry.
pub fn released(prev: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..prev.clone()
    }
}

/// Why talking to the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading Lease {name}: {source}")]
    GetLease {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Lease {name}: {source}")]
    WriteLease {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("renewing Lease {name}: the API server did not answer in time")]
    Timeout { name: String },
    #[error("lost the Lease {name}: not renewed for {seconds}s")]
    Lost { name: String, seconds: u64 },
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`, as `identity` (the pod name).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
        }
    }

    async fn get_lease(&self) -> Result<Option<Lease>, LeaderError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaderError::GetLease {
                name: self.name.clone(),
                source,
            })
    }

    /// One attempt to take or renew the Lease. `Ok(false)` when another replica holds it or won
    /// a race for it.
    pub async fn try_claim(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let current = self.get_lease().await?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed(None, &self.identity, now, self.timing.lease)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                Err(source) => Err(self.write_error(source)),
            };
        };
        match claim(current.spec.as_ref(), &self.identity, now) {
            Claim::Held { holder } => {
                debug!(%holder, lease = %self.name, "lease held by another replica");
                Ok(false)
            }
            Claim::Acquire | Claim::Renew => {
                // `current` carries its resourceVersion: if anyone wrote the Lease since we read
                // it, the replace fails with a conflict and we did not win.
                let mut next = current.clone();
                next.spec = Some(claimed(
                    current.spec.as_ref(),
                    &self.identity,
                    now,
                    self.timing.lease,
                ));
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &next)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                    Err(source) => Err(self.write_error(source)),
                }
            }
        }
    }

    fn write_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::WriteLease {
            name: self.name.clone(),
            source,
        }
    }

    /// Waits until this replica holds the Lease (`true`) or `shutdown` fires (`false`).
    pub async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            match self.try_claim().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(error) => warn!(%error, "leader election attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry) => {}
                _ = shutdown.changed() => return false,
            }
            if *shutdown.borrow() {
                return false;
            }
        }
    }

    /// Renews the Lease until renewal fails for longer than the Lease lasts minus one retry,
    /// then returns the error: from that moment another replica may lead. A renewal the API
    /// server does not answer counts as failed once that time is up: a request stuck on a slow
    /// API server must not keep this replica leading past its Lease, while another takes over.
    pub async fn hold(&self) -> LeaderError {
        let mut last_renewed = tokio::time::Instant::now();
        let give_up = self.timing.lease.saturating_sub(self.timing.retry);
        loop {
            let left = give_up.saturating_sub(last_renewed.elapsed());
            let attempt = tokio::time::timeout(left, self.try_claim()).await;
            let ok = match attempt.unwrap_or_else(|_| {
                Err(LeaderError::Timeout {
                    name: self.name.clone(),
                })
            }) {
                Ok(true) => true,
                Ok(false) => {
                    warn!(lease = %self.name, "another replica took the lease");
                    return LeaderError::Lost {
                        name: self.name.clone(),
                        seconds: last_renewed.elapsed().as_secs(),
                    };
                }
                Err(error) => {
                    warn!(%error, "renewing the lease failed");
                    false
                }
            };
            if ok {
                last_renewed = tokio::time::Instant::now();
                tokio::time::sleep(self.timing.renew).await;
            } else if last_renewed.elapsed() >= give_up {
                return LeaderError::Lost {
                    name: self.name.clone(),
                    seconds: last_renewed.elapsed().as_secs(),
                };
            } else {
                tokio::time::sleep(self.timing.retry).await;
            }
        }
    }

    /// Gives the Lease up if this replica still holds it, so a standby takes over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let current = self.get_lease().await?;
        let Some(mut lease) = current else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released(spec, Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|source| self.write_error(source))?;
        info!(lease = %self.name, "released the lease");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn free_or_expired_leases_are_taken() {
        assert_eq!(claim(None, "a", at(0)), Claim::Acquire);
        assert_eq!(
            claim(Some(&LeaseSpec::default()), "a", at(0)),
            Claim::Acquire
        );
        assert_eq!(claim(Some(&held_by("b", 10)), "a", at(26)), Claim::Acquire);
    }

    #[test]
    fn live_leases_of_others_are_respected() {
        assert_eq!(
            claim(Some(&held_by("b", 10)), "a", at(24)),
            Claim::Held { holder: "b".into() }
        );
        assert_eq!(claim(Some(&held_by("a", 10)), "a", at(24)), Claim::Renew);
        // A holder without times is treated as expired.
        let no_times = LeaseSpec {
            holder_identity: Some("b".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(claim(Some(&no_times), "a", at(0)), Claim::Acquire);
    }

    #[test]
    fn renewing_keeps_the_term_and_taking_over_starts_one() {
        let renewed = claimed(
            Some(&held_by("a", 10)),
            "a",
            at(20),
            Duration::from_secs(15),
        );
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.lease_transitions, Some(2));

        let taken = claimed(
            Some(&held_by("b", 10)),
            "a",
            at(30),
            Duration::from_secs(15),
        );
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.lease_duration_seconds, Some(15));
    }

    #[test]
    fn a_released_lease_is_free_immediately() {
        let released = released(&held_by("a", 10), at(11));
        assert_eq!(released.holder_identity, None);
        assert_eq!(claim(Some(&released), "b", at(11)), Claim::Acquire);
    }

    #[test]
    fn default_timing_is_fast() {
        let t = Timing::default();
        assert_eq!(
            (t.lease.as_secs(), t.renew.as_secs(), t.retry.as_secs()),
            (15, 5, 2)
        );
    }
}
