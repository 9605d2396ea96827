//! `status`: the namespace's ProverPools as one table, from their status alone, followed by
//! why any pool is not Ready.

use std::process::ExitCode;

use anyhow::Context as _;
use kube::api::ListParams;
use zkfleet_crds::v1alpha1::{ProverPool, find_condition, pool_condition};

use crate::cluster::Cluster;

/// Column titles of the table.
const HEADER: [&str; 8] = [
    "NAME",
    "REPLICAS",
    "QUEUED",
    "RUNNING",
    "FREE SLOTS",
    "FLAGGED",
    "PARAMETERS",
    "READY",
];

/// Prints the table of the namespace's pools, or of `only`.
pub async fn run(cluster: &Cluster, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let pools = match only {
        Some(name) => vec![
            cluster
                .pools()
                .get_opt(name)
                .await
                .with_context(|| format!("reading ProverPool {name}"))?
                .with_context(|| {
                    format!(
                        "ProverPool {name} not found in namespace {}: `kubectl zkfleet status` lists them all",
                        cluster.namespace
                    )
                })?,
        ],
        None => {
            cluster
                .pools()
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing ProverPools in namespace {}", cluster.namespace))?
                .items
        }
    };
    if pools.is_empty() {
        eprintln!("No ProverPools in namespace {}.", cluster.namespace);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&pools));
    Ok(ExitCode::SUCCESS)
}

/// The table, then one line per pool that is not Ready saying why.
pub fn render(pools: &[ProverPool]) -> String {
    let rows: Vec<[String; 8]> = pools.iter().map(row).collect();
    let mut out = table(&HEADER.map(String::from), &rows);
    for pool in pools {
        if let Some(reason) = not_ready(pool) {
            out.push_str(&reason);
            out.push('\n');
        }
    }
    out
}

/// One pool's row: replicas ready/desired, queue, capacity, flagged pods, the parameters
/// version served (and the one before it) and the Ready condition with its reason.
pub fn row(pool: &ProverPool) -> [String; 8] {
    let status = pool.status.clone().unwrap_or_default();
    let queue = status.queue.unwrap_or_default();
    let capacity = status.capacity.unwrap_or_default();
    let parameters = status.parameters.unwrap_or_default();
    let parameters = match (parameters.current, parameters.previous) {
        (None, _) => "-".to_string(),
        (Some(current), None) => current.version,
        (Some(current), Some(previous)) => {
            format!("{} (previous {})", current.version, previous.version)
        }
    };
    let ready =
        find_condition(&status.conditions, pool_condition::READY).map_or("Unknown".into(), |c| {
            if c.reason.is_empty() {
                c.status.clone()
            } else {
                format!("{} ({})", c.status, c.reason)
            }
        });
    [
        pool.metadata.name.clone().unwrap_or_default(),
        format!(
            "{}/{}",
            status.ready_replicas.unwrap_or(0),
            pool.spec.replicas
        ),
        queue.queued.to_string(),
        queue.running.to_string(),
        capacity.free_slots.to_string(),
        status.flagged_pods.len().to_string(),
        parameters,
        ready,
    ]
}

/// Why the pool is not Ready, when it is not.
fn not_ready(pool: &ProverPool) -> Option<String> {
    let name = pool.metadata.name.as_deref().unwrap_or("?");
    let conditions = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match find_condition(conditions, pool_condition::READY) {
        Some(c) if c.status == "True" => None,
        Some(c) if !c.message.is_empty() => Some(format!("{name}: not Ready: {}", c.message)),
        Some(_) => Some(format!("{name}: not Ready")),
        None => Some(format!(
            "{name}: no Ready condition yet (is the zkfleet operator running?)"
        )),
    }
}

/// Left-aligned columns three spaces apart, as kubectl prints them.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for line in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pool(name: &str, replicas: i32, status: Value) -> ProverPool {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "backend": {"type": "groth16-bn254"},
                "parameters": {
                    "version": "v2", "source": {"configMap": {"name": "p"}},
                    "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}],
                },
            },
            "status": status,
        }))
        .unwrap()
    }

    fn condition(status: &str, reason: &str, message: &str) -> Value {
        json!({"type": "Ready", "status": status, "reason": reason, "message": message,
               "lastTransitionTime": "2025-01-01T00:00:00Z"})
    }

    #[test]
    fn the_table_lines_up_and_explains_pools_that_are_not_ready() {
        let serving = pool(
            "alpha",
            2,
            json!({
                "readyReplicas": 2, "replicas": 2,
                "queue": {"queued": 12, "running": 2},
                "capacity": {"slots": 2, "freeSlots": 0},
                "flaggedPods": [{"pod": "alpha-prover-1", "reason": "VerificationFailed"}],
                "parameters": {
                    "current": {"version": "v2", "digest": "sha256:1"},
                    "previous": {"version": "v1", "digest": "sha256:0"},
                },
                "conditions": [condition("True", "Serving", "2 pods ready")],
            }),
        );
        let starting = pool(
            "gpu-pool-large",
            1,
            json!({"conditions": [condition("False", "NoReadyPods", "0 of 1 pods ready: Insufficient nvidia.com/gpu")]}),
        );
        let new = pool("fresh", 1, Value::Null);
        assert_eq!(
            render(&[serving, starting, new]),
            "\
NAME             REPLICAS   QUEUED   RUNNING   FREE SLOTS   FLAGGED   PARAMETERS         READY
alpha            2/2        12       2         0            1         v2 (previous v1)   True (Serving)
gpu-pool-large   0/1        0        0         0            0         -                  False (NoReadyPods)
fresh            0/1        0        0         0            0         -                  Unknown
gpu-pool-large: not Ready: 0 of 1 pods ready: Insufficient nvidia.com/gpu
fresh: no Ready condition yet (is the zkfleet operator running?)
"
        );
    }
}
