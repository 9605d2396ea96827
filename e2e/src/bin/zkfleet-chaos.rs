//! `make chaos`: the full chaos run on the local cluster (see `zkfleet_e2e::chaos`). Prints the
//! faults and invariants as a Markdown table; exits non-zero when a promise was broken.

use zkfleet_e2e::chaos::{Plan, run_and_judge};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plan = Plan::full();
    println!(
        "chaos: {} jobs on {} pods x {} slots, each held {} ms; faults: {} leader kills, {} \
         prover kills, {} kube-apiserver and {} etcd restarts, {} rotation, corrupt pod: {}",
        plan.jobs,
        plan.pods,
        plan.slots,
        plan.delay_ms,
        plan.leader_kills,
        plan.prover_kills,
        plan.apiserver_restarts,
        plan.etcd_restarts,
        plan.rotations,
        plan.corrupt_pod
    );
    run_and_judge(&plan).await?;
    Ok(())
}
