//! Prometheus metrics of the prover pod (`zkfleet_prover_*`).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry,
};

pub struct Metrics {
    registry: Registry,
    pub proofs: IntCounterVec,
    pub proving_seconds: HistogramVec,
    pub active_proofs: IntGauge,
    pub free_slots: IntGauge,
    pub parameters_load_seconds: Gauge,
    pub parameters_fetch_seconds: Gauge,
    pub parameters_downloaded_bytes: IntCounter,
    pub build_info: GaugeVec,
    pub leases_received: IntCounter,
    pub lease_revocations: IntCounter,
    pub result_uploads: IntCounterVec,
    pub heartbeat_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let proofs = IntCounterVec::new(
            Opts::new(
                "zkfleet_prover_proofs_total",
                "Proof requests by backend and outcome (ok or an error code).",
            ),
            &["backend", "outcome"],
        )?;
        let proving_seconds = HistogramVec::new(
            HistogramOpts::new(
                "zkfleet_prover_proving_seconds",
                "Time to make one proof, witness included.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["backend"],
        )?;
        let active_proofs =
            IntGauge::new("zkfleet_prover_active_proofs", "Proofs being made now.")?;
        let free_slots = IntGauge::new("zkfleet_prover_free_slots", "Proof slots free now.")?;
        let parameters_load_seconds = Gauge::new(
            "zkfleet_prover_parameters_load_seconds",
            "Time the last parameters load took: fetching, digest checks and parsing.",
        )?;
        let parameters_fetch_seconds = Gauge::new(
            "zkfleet_prover_parameters_fetch_seconds",
            "Time the last parameters load spent fetching files and checking their sha256.",
        )?;
        let parameters_downloaded_bytes = IntCounter::new(
            "zkfleet_prover_parameters_downloaded_bytes_total",
            "Bytes of parameter files downloaded (cache hits download nothing).",
        )?;
        let build_info = GaugeVec::new(
            Opts::new(
                "zkfleet_prover_build_info",
                "Always 1; labels describe the build.",
            ),
            &["version"],
        )?;
        let leases_received = IntCounter::new(
            "zkfleet_prover_leases_received_total",
            "Jobs leased to this pod by the dispatcher (agent mode).",
        )?;
        let lease_revocations = IntCounter::new(
            "zkfleet_prover_lease_revocations_total",
            "Leases the dispatcher revoked while this pod held them; their work was abandoned.",
        )?;
        let result_uploads = IntCounterVec::new(
            Opts::new(
                "zkfleet_prover_result_uploads_total",
                "Results reported to the dispatcher, by result (proved, failed) and outcome \
                 (acknowledged; stale: 404/409, dropped; refused: other 4xx, dropped; \
                 revoked: the lease was revoked before the upload was acknowledged).",
            ),
            &["result", "outcome"],
        )?;
        let heartbeat_failures = IntCounter::new(
            "zkfleet_prover_heartbeat_failures_total",
            "Heartbeats to the dispatcher that got no successful answer.",
        )?;
        // The pod's own memory and CPU (`process_resident_memory_bytes`, ...), read from /proc
        // at each scrape.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(proofs.clone()))?;
        registry.register(Box::new(proving_seconds.clone()))?;
        registry.register(Box::new(active_proofs.clone()))?;
        registry.register(Box::new(free_slots.clone()))?;
        registry.register(Box::new(parameters_load_seconds.clone()))?;
        registry.register(Box::new(parameters_fetch_seconds.clone()))?;
        registry.register(Box::new(parameters_downloaded_bytes.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(leases_received.clone()))?;
        registry.register(Box::new(lease_revocations.clone()))?;
        registry.register(Box::new(result_uploads.clone()))?;
        registry.register(Box::new(heartbeat_failures.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        Ok(Metrics {
            registry,
            proofs,
            proving_seconds,
            active_proofs,
            free_slots,
            parameters_load_seconds,
            parameters_fetch_seconds,
            parameters_downloaded_bytes,
            build_info,
            leases_received,
            lease_revocations,
            result_uploads,
            heartbeat_failures,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric names, fixed above.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
