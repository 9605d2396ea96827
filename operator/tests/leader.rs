//! Leader election against an API server that stops answering: the leader steps down once its
//! Lease could have passed to another replica, instead of waiting on a stuck request while a
//! second leader serves.

use std::time::Duration;

use zkfleet_fake_api::{FakeApi, Rule};
use zkfleet_operator::leader::{Elector, LeaderError, Timing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_steps_down_within_its_lease() {
    let api = FakeApi::new();
    let timing = Timing {
        lease: Duration::from_secs(2),
        renew: Duration::from_millis(100),
        retry: Duration::from_millis(100),
    };
    let elector = Elector::new(api.client(), "zkfleet", "leader", "replica-a", timing);
    assert!(
        elector.try_claim().await.unwrap(),
        "the first replica leads"
    );
    // From now on the API server takes every renewal and never answers it.
    let stuck = api.hold(Rule::new("PUT", "/leases/leader"));
    let lost = tokio::time::timeout(Duration::from_secs(60), elector.hold())
        .await
        .expect("hold() returns instead of waiting on the stuck renewal for good");
    assert!(matches!(lost, LeaderError::Lost { .. }), "{lost:?}");
    assert!(stuck.arrivals() >= 1, "a renewal was attempted and held");
}
