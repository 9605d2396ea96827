//! Whether a job's spec can run on its pool, without a client: the pool exists, its backend
//! takes ProofJobs, and a pinned parameters version is one the pool serves.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt as _};
use zkfleet_crds::v1alpha1::{ExecProfile, ProofJob, ProverPool};

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

/// Whether the pool `job` names in another namespace admits jobs of `namespace`, whose labels
/// are `labels`: its `spec.sharing.namespaceSelector` selects them. A pool that does not
/// exist gets the same answer as one that refuses, so a tenant cannot probe which pools other
/// namespaces have.
pub fn admits(
    job: &ProofJob,
    namespace: &str,
    pool: Option<&ProverPool>,
    labels: Option<&BTreeMap<String, String>>,
    watch_namespace: Option<&str>,
) -> Result<(), String> {
    let pool_namespace = job.spec.pool_ref.namespace_for(namespace);
    let name = &job.spec.pool_ref.name;
    if let Some(watched) = watch_namespace
        && watched != pool_namespace
    {
        return Err(format!(
            "this zkfleet operator runs the pools of namespace {watched} only, not {pool_namespace}: name a pool of {watched} in spec.poolRef"
        ));
    }
    if pool.is_some_and(|p| selects(p, labels)) {
        return Ok(());
    }
    Err(format!(
        "ProverPool {name} in namespace {pool_namespace} does not exist or does not admit jobs from namespace {namespace}: ask its owners to select {namespace} in its spec.sharing.namespaceSelector, or name a pool of {namespace}"
    ))
}

/// Whether `pool`'s `spec.sharing.namespaceSelector` selects a namespace with these labels.
pub fn selects(pool: &ProverPool, labels: Option<&BTreeMap<String, String>>) -> bool {
    let selector = pool
        .spec
        .sharing
        .as_ref()
        .and_then(|s| s.namespace_selector.clone());
    match (selector, labels) {
        (Some(selector), Some(labels)) => Selector::try_from(selector)
            .map(|s| s.matches(labels))
            .unwrap_or(false),
        _ => false,
    }
}

/// The spec problem that keeps `job` from ever running, as a message that says what to fix.
pub fn spec(job: &ProofJob, namespace: &str, pool: Option<&ProverPool>) -> Result<(), String> {
    let name = &job.spec.pool_ref.name;
    let Some(pool) = pool else {
        return Err(format!(
            "ProverPool {name} does not exist in namespace {namespace}: create it, or set spec.poolRef.name to a pool of this namespace"
        ));
    };
    input_fits(job, pool)?;
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

/// The job's input is of the kind its pool's prover takes: circuit inputs or a witness for
/// Groth16 pools, exactly the prover's named files for STARK and VM pools.
fn input_fits(job: &ProofJob, pool: &ProverPool) -> Result<(), String> {
    let name = &job.spec.pool_ref.name;
    let takes = pool.spec.backend.input_files();
    let system = pool
        .spec
        .backend
        .exec_profile()
        .map_or("groth16-bn254", ExecProfile::name);
    match (&job.spec.input.files, takes.is_empty()) {
        (None, true) => Ok(()),
        (Some(_), true) => Err(format!(
            "ProverPool {name} proves Groth16 circuits ({system}), which take circuit inputs or a witness, not input.files: use input.inline, configMapKeyRef, secretKeyRef or url"
        )),
        (None, false) => Err(format!(
            "ProverPool {name} runs {system}, which takes the input files {}: set input.files with those names",
            takes.join(", ")
        )),
        (Some(files), false) => {
            if let Some(f) = files.iter().find(|f| !takes.contains(&f.name.as_str())) {
                return Err(format!(
                    "input.files has {}, which {system} does not take (it takes {}): remove or rename it",
                    f.name,
                    takes.join(", ")
                ));
            }
            if let Some(missing) = takes.iter().find(|t| !files.iter().any(|f| f.name == **t)) {
                return Err(format!(
                    "input.files lacks {missing}: {system} takes {}",
                    takes.join(", ")
                ));
            }
            Ok(())
        }
    }
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
    fn a_pool_of_another_namespace_admits_only_the_namespaces_it_selects() {
        let mut shared = pool(json!({"type": "groth16-bn254"}));
        let mut from_a = job(None);
        from_a.metadata.namespace = Some("team-a".into());
        from_a.spec.pool_ref.namespace = Some("team".into());
        let labels = |tier: &str| BTreeMap::from([("tier".to_string(), tier.to_string())]);
        let refused = |e: Result<(), String>| e.unwrap_err();

        // No spec.sharing: the pool is its namespace's alone. The message is the same as for a
        // pool that does not exist, so other namespaces' pools cannot be probed.
        let e = refused(admits(
            &from_a,
            "team-a",
            Some(&shared),
            Some(&labels("gold")),
            None,
        ));
        assert_eq!(
            e,
            refused(admits(&from_a, "team-a", None, None, None)),
            "a refusing pool and a missing one read the same"
        );
        assert!(
            e.contains("does not exist or does not admit jobs from namespace team-a")
                && e.contains("spec.sharing.namespaceSelector"),
            "{e}"
        );

        shared.spec.sharing = Some(
            serde_json::from_value(json!({"namespaceSelector": {"matchLabels": {"tier": "gold"}}}))
                .unwrap(),
        );
        assert!(
            admits(
                &from_a,
                "team-a",
                Some(&shared),
                Some(&labels("gold")),
                None
            )
            .is_ok()
        );
        refused(admits(
            &from_a,
            "team-a",
            Some(&shared),
            Some(&labels("bronze")),
            None,
        ));
        refused(admits(&from_a, "team-a", Some(&shared), None, None));

        let e = refused(admits(
            &from_a,
            "team-a",
            Some(&shared),
            Some(&labels("gold")),
            Some("team-a"),
        ));
        assert!(
            e.contains("runs the pools of namespace team-a only"),
            "an operator that watches one namespace cannot serve another's pool: {e}"
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
    fn each_pool_takes_the_input_its_prover_takes() {
        let stone = pool(
            json!({"type": "exec", "exec": {"profile": "stone", "command": ["cpu_air_prover"]}}),
        );
        let miden =
            pool(json!({"type": "exec", "exec": {"profile": "miden", "command": ["miden-vm"]}}));
        let snarkjs =
            pool(json!({"type": "exec", "exec": {"profile": "snarkjs", "command": ["snarkjs"]}}));
        let with_files = |names: &[&str]| {
            let mut j = job(None);
            j.spec.input = serde_json::from_value(json!({"files": names
                .iter()
                .map(|n| json!({"name": n, "inline": {"json": "{}"}}))
                .collect::<Vec<_>>()}))
            .unwrap();
            j
        };
        // Groth16 pools take a single input, not files.
        assert!(spec(&job(None), "team", Some(&snarkjs)).is_ok());
        let e = spec(&with_files(&["inputs.json"]), "team", Some(&snarkjs)).unwrap_err();
        assert!(e.contains("not input.files"), "{e}");
        // STARK pools take exactly their files.
        let e = spec(&job(None), "team", Some(&stone)).unwrap_err();
        assert!(
            e.contains("public_input.json, private_input.json, trace.bin, memory.bin"),
            "{e}"
        );
        let cairo = [
            "public_input.json",
            "private_input.json",
            "trace.bin",
            "memory.bin",
        ];
        assert!(spec(&with_files(&cairo), "team", Some(&stone)).is_ok());
        let e = spec(&with_files(&cairo[..3]), "team", Some(&stone)).unwrap_err();
        assert!(e.contains("lacks memory.bin"), "{e}");
        assert!(spec(&with_files(&["inputs.json"]), "team", Some(&miden)).is_ok());
        let e = spec(&with_files(&["inputs.json", "x.bin"]), "team", Some(&miden)).unwrap_err();
        assert!(e.contains("x.bin, which miden does not take"), "{e}");
    }
}
