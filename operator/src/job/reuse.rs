//! Answering a job from the verified proof of an earlier one, when its pool has
//! `spec.resultReuse`: same pool, same parameters digest, same input digest (keyed by the
//! pool's token, see [`super::input::digest`]; never for inputs named by URL, whose content the
//! operator has not read), and a proof kept on the earlier job's status.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use zkfleet_contract::lease::JobInput;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob, ProverPool};

use super::JobQueue;
use crate::build::{self, token_secret::DispatcherToken};

/// A succeeded job whose proof a new job may reuse, as the dispatcher lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlierResult {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The parameters digest `job` would be proved with now: its pinned version's, else the one
/// the pool's ready pods serve.
pub fn parameters_digest(job: &ProofJob, pool: &ProverPool) -> Option<String> {
    let parameters = pool.status.as_ref()?.parameters.as_ref()?;
    match &job.spec.parameters_version {
        Some(pin) => [&parameters.current, &parameters.previous]
            .into_iter()
            .flatten()
            .find(|r| &r.version == pin)
            .map(|r| r.digest.clone()),
        None => parameters.current.as_ref().map(|r| r.digest.clone()),
    }
}

/// The earlier job whose proof `job` (of `namespace`, with `input`) can take instead of being
/// proved, read fresh from the API server; `None` when the pool does not reuse results or
/// nothing matches.
pub async fn find(
    client: &Client,
    queue: &dyn JobQueue,
    job: &ProofJob,
    namespace: &str,
    pool: &ProverPool,
    input: &JobInput,
) -> Result<Option<ProofJob>, kube::Error> {
    let Some(reuse) = &pool.spec.result_reuse else {
        return Ok(None);
    };
    let Some(parameters_digest) = parameters_digest(job, pool) else {
        return Ok(None);
    };
    let pool_namespace = pool.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &pool_namespace);
    let Some(token) = secrets
        .get_opt(&build::token_secret_name(pool))
        .await?
        .as_ref()
        .and_then(DispatcherToken::from_secret)
    else {
        return Ok(None);
    };
    let Some(input_digest) = super::input::digest(token.expose().as_bytes(), input) else {
        return Ok(None);
    };
    let Some(candidate) = queue.reusable(
        (&pool_namespace, &pool.name_any()),
        &parameters_digest,
        &input_digest,
        namespace,
        reuse.across_namespaces,
    ) else {
        return Ok(None);
    };
    // The dispatcher's list may be a moment old: the job read now must still be that job (not
    // a new one of the same name) and still hold the same verified proof.
    let earlier = Api::<ProofJob>::namespaced(client.clone(), &candidate.namespace)
        .get_opt(&candidate.name)
        .await?;
    Ok(earlier.filter(|e| {
        e.uid().as_deref() == Some(candidate.uid.as_str())
            && still_reusable(e, &parameters_digest, &input_digest)
    }))
}

/// Whether `earlier` holds a verified proof on its status made from these parameters and input.
pub fn still_reusable(earlier: &ProofJob, parameters_digest: &str, input_digest: &str) -> bool {
    let Some(status) = &earlier.status else {
        return false;
    };
    status.phase == Some(JobPhase::Succeeded)
        && status.parameters_digest.as_deref() == Some(parameters_digest)
        && status.input_digest.as_deref() == Some(input_digest)
        && status
            .verification
            .as_ref()
            .is_some_and(|v| v.verified && !v.skipped)
        && status
            .result
            .as_ref()
            .is_some_and(|r| r.proof.is_some() && r.location.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool() -> ProverPool {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProverPool",
            "metadata": {"name": "gpu", "namespace": "platform"},
            "spec": {"backend": {"type": "groth16-bn254"}, "resultReuse": {},
                     "parameters": {"version": "v2", "source": {"configMap": {"name": "p"}},
                                    "files": [{"name": "circuit.zkey", "sha256": "ab".repeat(32)}]}},
            "status": {"parameters": {"current": {"version": "v2", "digest": "sha256:22"},
                                      "previous": {"version": "v1", "digest": "sha256:11"}}},
        }))
        .unwrap()
    }

    fn earlier(status: serde_json::Value) -> ProofJob {
        serde_json::from_value(json!({
            "apiVersion": "zkfleet.dev/v1alpha1", "kind": "ProofJob",
            "metadata": {"name": "first", "namespace": "team", "uid": "u1"},
            "spec": {"poolRef": {"name": "gpu"}, "input": {"inline": {"json": "{}"}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_job_is_matched_with_the_parameters_it_would_run_on() {
        let mut job = earlier(json!({}));
        assert_eq!(
            parameters_digest(&job, &pool()).as_deref(),
            Some("sha256:22")
        );
        job.spec.parameters_version = Some("v1".into());
        assert_eq!(
            parameters_digest(&job, &pool()).as_deref(),
            Some("sha256:11")
        );
        job.spec.parameters_version = Some("v9".into());
        assert_eq!(parameters_digest(&job, &pool()), None);
    }

    #[test]
    fn only_a_verified_proof_on_the_status_is_reused() {
        let good = json!({
            "phase": "Succeeded", "parametersDigest": "sha256:22", "inputDigest": "hmac-sha256:aa",
            "result": {"proof": {"protocol": "groth16"}, "publicSignals": ["33"]},
            "verification": {"verified": true, "verifier": "operator"},
        });
        assert!(still_reusable(
            &earlier(good.clone()),
            "sha256:22",
            "hmac-sha256:aa"
        ));
        assert!(!still_reusable(
            &earlier(good.clone()),
            "sha256:11",
            "hmac-sha256:aa"
        ));
        assert!(!still_reusable(
            &earlier(good.clone()),
            "sha256:22",
            "hmac-sha256:bb"
        ));
        let mut skipped = good.clone();
        skipped["verification"] = json!({"verified": false, "skipped": true});
        assert!(!still_reusable(
            &earlier(skipped),
            "sha256:22",
            "hmac-sha256:aa"
        ));
        let mut stored = good.clone();
        stored["result"] = json!({"location": "s3://b/p.json", "sha256": "cd"});
        assert!(
            !still_reusable(&earlier(stored), "sha256:22", "hmac-sha256:aa"),
            "a stored proof goes with its job"
        );
        let mut failed = good;
        failed["phase"] = json!("Failed");
        assert!(!still_reusable(
            &earlier(failed),
            "sha256:22",
            "hmac-sha256:aa"
        ));
    }
}
