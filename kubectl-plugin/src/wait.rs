//! `wait`: watches a job until it succeeds or fails, and says how it ended.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::wait::await_condition;
use zkfleet_crds::v1alpha1::{JobPhase, ProofJob};

use crate::cluster::Cluster;

/// Exit status of a `wait` that ran out of time.
pub const TIMED_OUT: u8 = 2;

/// How a finished job ended, and the line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
}

impl Outcome {
    /// Prints the line and gives the exit status: 0 for Succeeded, 1 for Failed.
    pub fn report(&self) -> ExitCode {
        match self {
            Outcome::Succeeded(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Outcome::Failed(line) => {
                eprintln!("{line}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Waits up to `timeout` for the job to finish: exit 0 Succeeded, 1 Failed, 2 timed out.
pub async fn run(cluster: &Cluster, name: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    // Fails at once, with what to check, when there is no such job.
    cluster.job(name).await?;
    let finished_or_gone = |job: Option<&ProofJob>| job.is_none_or(|j| outcome(j).is_some());
    let waited = tokio::time::timeout(
        timeout,
        await_condition(cluster.jobs(), name, finished_or_gone),
    )
    .await;
    match waited {
        Ok(Ok(Some(job))) => Ok(outcome(&job)
            .expect("the wait ends on a finished job")
            .report()),
        Ok(Ok(None)) => anyhow::bail!("ProofJob {name} was deleted while waiting for it"),
        Ok(Err(e)) => Err(e).with_context(|| format!("watching ProofJob {name}")),
        Err(_) => {
            let job = cluster.jobs().get_opt(name).await.ok().flatten();
            eprintln!(
                "timed out after {} waiting for ProofJob {name}: {}",
                human(timeout),
                job.as_ref().map_or("it is gone".into(), still_waiting)
            );
            Ok(ExitCode::from(TIMED_OUT))
        }
    }
}

/// How the job ended, or `None` while it has not.
pub fn outcome(job: &ProofJob) -> Option<Outcome> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let status = job.status.as_ref()?;
    match status.phase? {
        JobPhase::Succeeded => {
            let mut details = Vec::new();
            if let Some(attempt) = status.attempts.last() {
                let pod = attempt.pod.as_deref().unwrap_or("?");
                details.push(format!("attempt {} on pod {pod}", attempt.attempt));
            }
            if let Some(ms) = status.proving_millis {
                details.push(format!("proved in {ms} ms"));
            }
            match &status.verification {
                Some(v) if v.skipped => details.push("not verified (the pool skips it)".into()),
                Some(v) if v.verified => details.push(format!(
                    "verified by {}",
                    v.verifier.as_deref().unwrap_or("the operator")
                )),
                _ => {}
            }
            let details = if details.is_empty() {
                String::new()
            } else {
                format!(" ({})", details.join(", "))
            };
            Some(Outcome::Succeeded(format!("{name} Succeeded{details}")))
        }
        JobPhase::Failed => {
            let reason = status.reason.as_deref().unwrap_or("Failed");
            let message = status
                .message
                .as_deref()
                .unwrap_or("no message on the status");
            let attempts = match status.attempt_count.unwrap_or(0) {
                0 => "before any attempt".to_string(),
                1 => "after 1 attempt".to_string(),
                n => format!("after {n} attempts"),
            };
            Some(Outcome::Failed(format!(
                "{name} Failed {attempts}: {reason}: {message}"
            )))
        }
        JobPhase::Pending | JobPhase::Queued | JobPhase::Running => None,
    }
}

/// Where an unfinished job is, and what it waits for when the operator said so.
fn still_waiting(job: &ProofJob) -> String {
    let status = job.status.clone().unwrap_or_default();
    let phase = status.phase.map_or("Pending".into(), |p| format!("{p:?}"));
    match status.message.filter(|m| !m.is_empty()) {
        Some(detail) => format!("it is still {phase} ({detail})"),
        None => format!("it is still {phase}"),
    }
}

fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::job;
    use serde_json::json;

    #[test]
    fn a_succeeded_job_says_where_and_how_it_was_proved() {
        let j = job(json!({
            "phase": "Succeeded", "provingMillis": 46,
            "attempts": [{"attempt": 1, "pod": "alpha-prover-x"}],
            "verification": {"verified": true, "verifier": "operator"},
        }));
        assert_eq!(
            outcome(&j),
            Some(Outcome::Succeeded(
                "plug Succeeded (attempt 1 on pod alpha-prover-x, proved in 46 ms, verified by operator)"
                    .into()
            ))
        );
    }

    #[test]
    fn a_failed_job_gives_its_reason_and_message() {
        let j = job(json!({
            "phase": "Failed", "attemptCount": 1, "reason": "InvalidInput",
            "message": "signal a is missing",
        }));
        assert_eq!(
            outcome(&j),
            Some(Outcome::Failed(
                "plug Failed after 1 attempt: InvalidInput: signal a is missing".into()
            ))
        );
    }

    #[test]
    fn unfinished_jobs_have_no_outcome_and_say_what_they_wait_for() {
        assert_eq!(outcome(&job(json!({"phase": "Running"}))), None);
        assert_eq!(outcome(&job(json!(null))), None);
        let queued = job(json!({"phase": "Queued", "message": "no ready pod serves the pool"}));
        assert_eq!(
            still_waiting(&queued),
            "it is still Queued (no ready pod serves the pool)"
        );
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
    }
}
