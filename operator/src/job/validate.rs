//! Whether a job's spec can run on its pool, without a client: the pool exists, its backend
//! takes ProofJobs, and a pinned parameters version is one the pool serves.

use zkfleet_crds::v1alpha1::{BackendKind, ExecProfile, ProofJob, ProverPool};

/// Parameters versions a pool can serve a job now or once its rotation finishes: the spec's,
/// the one its pods serve, and the previous one still draining.
pub fn servable_versions(pool: &ProverPool) -> Vec<String> {
    let mut versions = vec![pool.spec.parameters.version.clone()];
    if let Some(p) = pool.status.as_ref().and_then(|s| s.parameters.as_ref()) {
        versions.extend(p.current.iter().map(|r| r.version.clone()));
        versions.extend(p.previous.iter().map(|r| r.version.clone()));
    }
    versions.sort();
    versions.dedup();
    versions
}

/// The spec problem that keeps `job` from ever running, as a message that says what to fix.
pub fn spec(job: &ProofJob, namespace: &str, pool: Option<&ProverPool>) -> Result<(), String> {
    let name = &job.spec.pool_ref.name;
    let Some(pool) = pool else {
        return Err(format!(
            "ProverPool {name} does not exist in namespace {namespace}: create it, or set spec.poolRef.name to a pool of this namespace"
        ));
    };
    if pool.spec.backend.kind == BackendKind::Exec
        && pool
            .spec
            .backend
            .exec
            .as_ref()
            .is_some_and(|e| e.profile == ExecProfile::Stone)
    {
        return Err(format!(
            "ProverPool {name} runs the stone exec profile, which proves Cairo runs over POST /v1/prove; ProofJobs carry circuit inputs or witnesses: use a groth16-bn254 pool"
        ));
    }
    if let Some(pin) = &job.spec.parameters_version {
        let served = servable_versions(pool);
        if !served.contains(pin) {
            return Err(format!(
                "spec.parametersVersion {pin} is not served by ProverPool {name} (it serves {}); pin one of those or remove the pin",
                served.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(backend: serde_json::Value) -> ProverPool {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": "cpu", "namespace": "team"},
            "spec": {
                "backend": backend,
                "parameters": {"version": "v2", "source": {"configMap": {"name": "p"}},
                               "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]},
            },
            "status": {"parameters": {"current": {"version": "v1", "digest": "sha256:aa"}}},
        }))
        .unwrap()
    }

    fn job(pin: Option<&str>) -> ProofJob {
        let mut spec = json!({"poolRef": {"name": "cpu"}, "input": {"inline": {"json": "{}"}}});
        if let Some(pin) = pin {
            spec["parametersVersion"] = json!(pin);
        }
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "j", "namespace": "team"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_pool_is_named() {
        let e = spec(&job(None), "team", None).unwrap_err();
        assert!(
            e.contains("ProverPool cpu does not exist in namespace team"),
            "{e}"
        );
    }

    #[test]
    fn pins_must_name_a_served_version() {
        let p = pool(json!({"type": "groth16-bn254"}));
        assert_eq!(servable_versions(&p), ["v1", "v2"]);
        assert!(spec(&job(Some("v1")), "team", Some(&p)).is_ok());
        assert!(spec(&job(Some("v2")), "team", Some(&p)).is_ok());
        let e = spec(&job(Some("v9")), "team", Some(&p)).unwrap_err();
        assert!(e.contains("v9") && e.contains("v1, v2"), "{e}");
        assert!(spec(&job(None), "team", Some(&p)).is_ok());
    }

    #[test]
    fn stone_pools_take_no_proof_jobs() {
        let p = pool(
            json!({"type": "exec", "exec": {"profile": "stone", "command": ["cpu_air_prover"]}}),
        );
        let e = spec(&job(None), "team", Some(&p)).unwrap_err();
        assert!(e.contains("stone"), "{e}");
        let snarkjs =
            pool(json!({"type": "exec", "exec": {"profile": "snarkjs", "command": ["snarkjs"]}}));
        assert!(spec(&job(None), "team", Some(&snarkjs)).is_ok());
    }
}
