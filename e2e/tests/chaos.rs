//! The short chaos run (`make chaos` runs the full one): 200 held jobs while the operator
//! leader and a prover are SIGKILLed, kube-apiserver and etcd are restarted, the parameters are
//! rotated and one pod corrupts its proofs; then every promise is checked from the API (see
//! `zkfleet_e2e::chaos`). It restarts the control plane, so it is the only test in its binary:
//! cargo runs test binaries one after another, so no other test sees the restarts.

use zkfleet_e2e::chaos::{Plan, run_and_judge};

#[tokio::test]
async fn two_hundred_jobs_survive_one_fault_of_each_kind_with_every_promise_kept() {
    if let Err(e) = run_and_judge(&Plan::short()).await {
        panic!("{e:#}");
    }
}
