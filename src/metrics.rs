//! Prometheus metrics: one registry, metric names as constants, bounded labels only (outcome,
//! status class, result), never a raw path. Served on the admin listener.
//!
//! Counters for every label combination are created up front and kept as handles, so recording
//! on the request path is an atomic add with no map lookup and no lock.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `portcullis_http_requests_total{outcome, status}`.
pub const HTTP_REQUESTS: &str = "portcullis_http_requests";
/// `portcullis_upstream_response_seconds`: time from sending a request to the upstream's head.
pub const UPSTREAM_RESPONSE_SECONDS: &str = "portcullis_upstream_response_seconds";
/// `portcullis_open_connections`: client connections open now.
pub const OPEN_CONNECTIONS: &str = "portcullis_open_connections";
/// `portcullis_connections_total`: client connections accepted.
pub const CONNECTIONS: &str = "portcullis_connections";
/// `portcullis_tls_handshakes_total{result}`.
pub const TLS_HANDSHAKES: &str = "portcullis_tls_handshakes";
/// `portcullis_tls_reloads_total{result}`.
pub const TLS_RELOADS: &str = "portcullis_tls_reloads";

/// What happened to a request, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded, and the upstream's answer relayed.
    Forwarded,
    /// Forwarded and switched to a tunnel (WebSocket and other upgrades).
    Upgraded,
    /// Refused by Portcullis itself (bad request, policy).
    Rejected,
    /// The upstream failed or timed out.
    UpstreamError,
    /// Answered by Portcullis's own endpoints.
    Local,
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Forwarded,
    Outcome::Upgraded,
    Outcome::Rejected,
    Outcome::UpstreamError,
    Outcome::Local,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: [[Counter; 5]; 5],
    upstream_response: Histogram,
    open_connections: Gauge,
    connections: Counter,
    handshakes: [Counter; 3],
    reloads: [Counter; 2],
}

/// Result of a TLS handshake, as a metric label.
#[derive(Debug, Clone, Copy)]
pub enum Handshake {
    /// Completed.
    Ok,
    /// Failed (protocol error, client went away).
    Error,
    /// Did not complete within `server.tls_handshake_timeout`.
    Timeout,
}

// === impl Outcome ===

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Upgraded => "upgraded",
            Outcome::Rejected => "rejected",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Local => "local",
        }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates every metric and registers it.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let requests_family = Family::<RequestLabels, Counter>::default();
        registry.register(
            HTTP_REQUESTS,
            "Requests on the main listener by outcome and status class",
            requests_family.clone(),
        );
        let requests = OUTCOMES.map(|o| {
            STATUS_CLASSES.map(|s| {
                requests_family
                    .get_or_create(&RequestLabels {
                        outcome: o.label(),
                        status: s,
                    })
                    .clone()
            })
        });

        let upstream_response = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            UPSTREAM_RESPONSE_SECONDS,
            "Time from sending a request upstream to receiving the response head",
            upstream_response.clone(),
        );

        let open_connections = Gauge::default();
        registry.register(
            OPEN_CONNECTIONS,
            "Client connections open on the main listener",
            open_connections.clone(),
        );
        let connections = Counter::default();
        registry.register(
            CONNECTIONS,
            "Client connections accepted on the main listener",
            connections.clone(),
        );

        let results = |family: &Family<ResultLabels, Counter>, names: &[&'static str]| {
            names
                .iter()
                .map(|r| family.get_or_create(&ResultLabels { result: r }).clone())
                .collect::<Vec<_>>()
        };
        let handshakes_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            TLS_HANDSHAKES,
            "TLS handshakes on the main listener by result",
            handshakes_family.clone(),
        );
        let h = results(&handshakes_family, &["ok", "error", "timeout"]);
        let reloads_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            TLS_RELOADS,
            "Certificate reloads by result",
            reloads_family.clone(),
        );
        let r = results(&reloads_family, &["ok", "error"]);

        Metrics {
            registry,
            requests,
            upstream_response,
            open_connections,
            connections,
            handshakes: [h[0].clone(), h[1].clone(), h[2].clone()],
            reloads: [r[0].clone(), r[1].clone()],
        }
    }

    /// Counts one finished request.
    pub fn request(&self, outcome: Outcome, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(0);
        self.requests[o][class].inc();
    }

    /// Records how long the upstream took to answer with a head.
    pub fn upstream_response(&self, elapsed: Duration) {
        self.upstream_response.observe(elapsed.as_secs_f64());
    }

    /// A client connection opened.
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.open_connections.inc();
    }

    /// A client connection closed.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Counts a TLS handshake.
    pub fn tls_handshake(&self, result: Handshake) {
        self.handshakes[result as usize].inc();
    }

    /// Counts a certificate reload attempt.
    pub fn tls_reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_outcome_and_status_class() {
        let m = Metrics::new();
        m.request(Outcome::Forwarded, http::StatusCode::OK);
        m.request(Outcome::Forwarded, http::StatusCode::OK);
        m.request(Outcome::UpstreamError, http::StatusCode::BAD_GATEWAY);
        let text = m.encode();
        assert!(
            text.contains(r#"portcullis_http_requests_total{outcome="forwarded",status="2xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"portcullis_http_requests_total{outcome="upstream_error",status="5xx"} 1"#
        ));
        assert!(text.contains(r#"portcullis_tls_reloads_total{result="error"} 0"#));
    }
}
