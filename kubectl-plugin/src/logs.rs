//! `logs`: the log of the prover pod that ran a job's last attempt. A pod proves many jobs;
//! its lines about this one carry `job=<namespace>/<name>`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use zkfleet_crds::v1alpha1::{Attempt, ProofJob};

use crate::cluster::Cluster;

/// Container of a prover pod that runs the prover (the operator's name for it).
pub const PROVER_CONTAINER: &str = "prover";

/// Prints (or with `follow`, streams) the log of the job's last attempt's pod.
pub async fn run(
    cluster: &Cluster,
    name: &str,
    follow: bool,
    tail: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let job = cluster.job(name).await?;
    let attempt = last_attempt(&job)?;
    let pod = attempt.pod.clone().expect("last_attempt has a pod");
    let job_key = format!("{}/{name}", cluster.namespace);
    eprintln!(
        "pod {pod} (attempt {} of ProofJob {name}{}); its lines about this job carry job={job_key}",
        attempt.attempt,
        attempt
            .node
            .as_deref()
            .map(|n| format!(", node {n}"))
            .unwrap_or_default()
    );
    let pods = cluster.api::<Pod>();
    let params = LogParams {
        container: Some(PROVER_CONTAINER.into()),
        follow,
        tail_lines: tail,
        ..LogParams::default()
    };
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    if !follow {
        let text = match pods.logs(&pod, &params).await {
            Err(e) if gone(&e) => bail!(pod_gone(&pod)),
            other => other.with_context(|| format!("reading the log of pod {pod}"))?,
        };
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let stream = match pods.log_stream(&pod, &params).await {
        Err(e) if gone(&e) => bail!(pod_gone(&pod)),
        other => other.with_context(|| format!("streaming the log of pod {pod}"))?,
    };
    let mut lines = stream.lines();
    let mut stdout = std::io::stdout();
    while let Some(line) = lines
        .try_next()
        .await
        .with_context(|| format!("streaming the log of pod {pod}"))?
    {
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The job's last attempt that names a pod.
pub fn last_attempt(job: &ProofJob) -> anyhow::Result<&Attempt> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let status = job.status.as_ref();
    status
        .and_then(|s| s.attempts.iter().rev().find(|a| a.pod.is_some()))
        .with_context(|| {
            let phase = status
                .and_then(|s| s.phase)
                .map_or("Pending".into(), |p| format!("{p:?}"));
            format!(
                "ProofJob {name} has not run on a pod yet (it is {phase}): `kubectl zkfleet wait {name}`, then try again"
            )
        })
}

fn pod_gone(pod: &str) -> String {
    format!(
        "pod {pod} no longer exists, and its log went with it (the pool scaled down or rolled its pods); \
         your cluster's log collection may still have it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::job;
    use serde_json::json;

    #[test]
    fn the_pod_is_the_last_attempts() {
        let j = job(json!({"attempts": [
            {"attempt": 1, "pod": "alpha-prover-a", "outcome": "LeaseExpired"},
            {"attempt": 2, "pod": "alpha-prover-b", "node": "n1"},
        ]}));
        let attempt = last_attempt(&j).unwrap();
        assert_eq!(
            (attempt.attempt, attempt.pod.as_deref()),
            (2, Some("alpha-prover-b"))
        );
    }

    #[test]
    fn a_job_that_never_ran_says_so() {
        let err = last_attempt(&job(json!({"phase": "Queued"}))).unwrap_err();
        assert!(
            err.to_string()
                .contains("has not run on a pod yet (it is Queued)"),
            "{err}"
        );
    }
}
