//! Every Prometheus metric lantern exports, in one place. Label values are
//! bounded: app ids come from the catalog (`none` otherwise), detectors from
//! the rules, decisions and kinds from fixed sets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Label used when a request belongs to no catalog app.
pub const NO_APP: &str = "none";

/// The `reason` values of `requests_refused_total`: ambiguous message
/// framing or line endings, a `Host` naming another target, a request body
/// that broke off or was malformed.
pub const REFUSAL_REASONS: [&str; 3] = ["framing", "host", "body"];

/// The metric handles, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by app and decision.
    pub requests: IntCounterVec,
    /// Findings, by detector, app and the action taken.
    pub findings: IntCounterVec,
    /// CONNECT tunnels, by kind (`inspect` or `blind`).
    pub tunnels: IntCounterVec,
    /// Time spent inspecting a request body.
    pub inspect_seconds: Histogram,
    /// Time from sending a request upstream to its response head.
    pub upstream_seconds: Histogram,
    /// Client connections open now.
    pub active_connections: IntGauge,
    /// Request body bytes handed to the inspector.
    pub inspected_bytes: IntCounter,
    /// Policy/catalog/rule reloads, by result.
    pub policy_reloads: IntCounterVec,
    /// Connections refused before any request was read, by reason.
    pub connections_refused: IntCounterVec,
    /// Requests refused as malformed, by reason (`framing`, `host`, `body`).
    pub requests_refused: IntCounterVec,
    /// Requests that could not be inspected and were forwarded or refused per
    /// the fail mode, by reason and mode.
    pub uninspected: IntCounterVec,
    /// Upstream failures, by kind (`connect`, `tls`, `timeout`, `reset`
    /// (a response body that broke off), `other`).
    pub upstream_errors: IntCounterVec,
    /// `upstream_errors{kind="reset"}`, resolved once: every response body
    /// carries it.
    pub upstream_reset: IntCounter,
    /// Audit events written, failed writes, and events dropped on a full queue.
    pub audit: crate::audit::AuditMetrics,
    _build_info: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric (plus process metrics on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("lantern".into()), None)
            .expect("static registry prefix is valid");
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ];
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let requests = counter_vec(
            "requests_total",
            "Requests handled, by app and decision.",
            &["app", "decision"],
        );
        let findings = counter_vec(
            "findings_total",
            "Sensitive-data findings, by detector, app and action taken.",
            &["detector", "app", "action"],
        );
        let tunnels = counter_vec("tunnels_total", "CONNECT tunnels, by kind.", &["kind"]);
        let policy_reloads = counter_vec(
            "policy_reloads_total",
            "Reloads of policy, catalog and rules, by result.",
            &["result"],
        );
        let connections_refused = counter_vec(
            "connections_refused_total",
            "Client connections refused before reading a request, by reason.",
            &["reason"],
        );
        let requests_refused = counter_vec(
            "requests_refused_total",
            "Requests refused as malformed before reaching an upstream, by reason.",
            &["reason"],
        );
        let uninspected = counter_vec(
            "uninspected_requests_total",
            "Requests to inspected apps whose body could not be inspected, by reason and fail mode.",
            &["reason", "mode"],
        );
        let upstream_errors = counter_vec(
            "upstream_errors_total",
            "Upstream failures, by kind.",
            &["kind"],
        );
        let inspect_seconds = histogram(
            "inspect_seconds",
            "Time spent inspecting one request.",
            latency_buckets.clone(),
        );
        let upstream_seconds = histogram(
            "upstream_seconds",
            "Time from sending a request upstream to its response head.",
            latency_buckets,
        );
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let audit = crate::audit::AuditMetrics {
            written: counter("audit_events_total", "Audit events written."),
            write_errors: counter(
                "audit_write_errors_total",
                "Audit events lost to write failures.",
            ),
            dropped: counter(
                "audit_dropped_total",
                "Audit events dropped because the write queue was full.",
            ),
        };
        let active_connections =
            IntGauge::new("active_connections", "Client connections open now.")
                .expect("valid metric");
        registry
            .register(Box::new(active_connections.clone()))
            .expect("unique metric");
        let inspected_bytes = counter("inspected_bytes_total", "Request body bytes inspected.");
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "lantern build information."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Known label sets start at zero, so the first event shows as an
        // increase (alerts use increase()) and every name is scrapeable.
        for kind in ["inspect", "blind"] {
            tunnels.with_label_values(&[kind]);
        }
        for result in ["ok", "error"] {
            policy_reloads.with_label_values(&[result]);
        }
        for reason in ["not_allowed", "capacity"] {
            connections_refused.with_label_values(&[reason]);
        }
        for reason in REFUSAL_REASONS {
            requests_refused.with_label_values(&[reason]);
        }
        for reason in ["oversize", "unreadable", "failed"] {
            for mode in ["open", "closed"] {
                uninspected.with_label_values(&[reason, mode]);
            }
        }
        uninspected.with_label_values(&["busy", "closed"]);
        for kind in ["connect", "tls", "timeout", "reset", "other"] {
            upstream_errors.with_label_values(&[kind]);
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            // Process metrics keep their conventional unprefixed names.
            let _ = prometheus::default_registry().register(Box::new(process));
        }
        Metrics {
            registry,
            requests,
            findings,
            tunnels,
            inspect_seconds,
            upstream_seconds,
            active_connections,
            inspected_bytes,
            policy_reloads,
            connections_refused,
            requests_refused,
            uninspected,
            upstream_reset: upstream_errors.with_label_values(&["reset"]),
            upstream_errors,
            audit,
            _build_info: build_info,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::default_registry().gather());
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Decrements a gauge when dropped: ties a connection's lifetime to
/// `active_connections` on every exit path.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let m = Metrics::new();
        m.requests.with_label_values(&["chatgpt", "allow"]).inc();
        {
            let _g = GaugeGuard::new(&m.active_connections);
            assert_eq!(m.active_connections.get(), 1);
        }
        assert_eq!(m.active_connections.get(), 0);
        let text = m.render();
        assert!(
            text.contains("lantern_requests_total{app=\"chatgpt\",decision=\"allow\"} 1"),
            "{text}"
        );
        assert!(text.contains("lantern_build_info{version="));
        assert!(text.contains("lantern_active_connections 0"));
    }
}
