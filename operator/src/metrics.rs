//! Prometheus metrics of the operator: reconcile runs, failures by error, durations, and the
//! build version.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric; `zkfleet_build_info{version}` is set to 1.
    pub fn new() -> Self {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new("zkfleet_reconcile_runs_total", "Reconcile passes started"),
            &["controller"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "zkfleet_reconcile_failures_total",
                "Reconcile passes that failed, by error",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "zkfleet_reconcile_duration_seconds",
                "Time one reconcile pass took",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "zkfleet_build_info",
                "Version of the running operator; always 1",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for collector in [
            Box::new(runs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(build_info),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            runs,
            failures,
            duration,
        }
    }

    /// Counts a pass of `controller`.
    pub fn reconcile_started(&self, controller: &str) {
        self.runs.with_label_values(&[controller]).inc();
    }

    /// Records how long a pass took.
    pub fn reconcile_finished(&self, controller: &str, took: Duration) {
        self.duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
    }

    /// Counts a failed pass; `error` is the error's variant name.
    pub fn reconcile_failed(&self, controller: &str, error: &str) {
        self.failures.with_label_values(&[controller, error]).inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_runs_failures_duration_and_build_info() {
        let m = Metrics::new();
        m.reconcile_started("proverpool");
        m.reconcile_failed("proverpool", "Apply");
        m.reconcile_finished("proverpool", Duration::from_millis(20));
        let text = m.render();
        assert!(
            text.contains(r#"zkfleet_reconcile_runs_total{controller="proverpool"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"zkfleet_reconcile_failures_total{controller="proverpool",error="Apply"} 1"#
        ));
        assert!(text.contains("zkfleet_reconcile_duration_seconds_bucket"));
        assert!(text.contains(&format!(
            r#"zkfleet_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )));
    }
}
