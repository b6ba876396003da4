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
/// `portcullis_key_cache_total{result}`: key look-ups by how the cache answered them.
pub const KEY_CACHE: &str = "portcullis_key_cache";
/// `portcullis_store_call_seconds`: how long the cache's session reads from the store took.
pub const STORE_CALL_SECONDS: &str = "portcullis_store_call_seconds";
/// `portcullis_store_errors_total`: the cache's session reads that the store failed.
pub const STORE_ERRORS: &str = "portcullis_store_errors";
/// `portcullis_store_up`: 1 while the Redis store answers commands, 0 while it is marked down.
pub const STORE_UP: &str = "portcullis_store_up";
/// `portcullis_store_last_error_age_seconds`: how long ago a Redis command last got no answer
/// (-1: never).
pub const STORE_LAST_ERROR_AGE: &str = "portcullis_store_last_error_age_seconds";
/// `portcullis_store_command_seconds{command}`: every Redis command's round trip, by command.
pub const STORE_COMMAND_SECONDS: &str = "portcullis_store_command_seconds";
/// `portcullis_logins_total{result}`: password and OIDC logins by result.
pub const LOGINS: &str = "portcullis_logins";
/// `portcullis_auth_total{result}`: authentication of every request that needs a session
/// (proxied, forward-auth and API) by result.
pub const AUTH: &str = "portcullis_auth";
/// `portcullis_otp_requests_total{result}`: one-time passcode requests by what was done.
pub const OTP_REQUESTS: &str = "portcullis_otp_requests";
/// `portcullis_otp_deliveries_total{result}`: one-time passcode deliveries by result.
pub const OTP_DELIVERIES: &str = "portcullis_otp_deliveries";
/// `portcullis_otp_password_changes_total{result}`: password changes with a one-time passcode.
pub const OTP_CHANGES: &str = "portcullis_otp_password_changes";
/// `portcullis_verify_total{decision}`: forward-auth answers by decision.
pub const VERIFY: &str = "portcullis_verify";
/// `portcullis_build_info{version, commit}`: always 1; the labels say which build runs.
pub const BUILD_INFO: &str = "portcullis_build_info";
/// `portcullis_connections_revoked_total{reason}`: open connections (upgraded tunnels,
/// streaming responses) closed because their session no longer allows them.
pub const CONNECTIONS_REVOKED: &str = "portcullis_connections_revoked";

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
// The `result` labels, in the order of their enum's discriminants.
const HANDSHAKE_RESULTS: [&str; 3] = ["ok", "error", "timeout"];
const RELOAD_RESULTS: [&str; 2] = ["ok", "error"];
const CACHE_RESULTS: [&str; 4] = ["hit", "miss", "stale", "unknown"];
const LOGIN_RESULTS: [&str; 6] = [
    "ok",
    "bad_credentials",
    "limited",
    "forbidden",
    "suspended",
    "error",
];
const OTP_REQUEST_RESULTS: [&str; 4] = ["issued", "unknown", "limited", "error"];
const OTP_DELIVERY_RESULTS: [&str; 4] = ["sent", "failed", "timeout", "unconfigured"];
const OTP_CHANGE_RESULTS: [&str; 5] = ["ok", "bad_code", "refused", "limited", "error"];
const AUTH_RESULTS: [&str; 6] = [
    "ok",
    "missing",
    "invalid",
    "expired",
    "suspended",
    "store_unavailable",
];
const REVOKE_REASONS: [&str; 6] = [
    "revoked",
    "expired",
    "suspended",
    "deleted",
    "forbidden",
    "unverified",
];
const VERIFY_DECISIONS: [&str; 6] = [
    "allow",
    "unauthenticated",
    "forbidden",
    "bad_request",
    "unavailable",
    "error",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
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
    key_cache: [Counter; 4],
    store_call: Histogram,
    store_errors: Counter,
    store_up: Gauge,
    store_last_error_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    store_commands: Family<CommandLabels, Histogram, fn() -> Histogram>,
    logins: [Counter; 6],
    auth: [Counter; 6],
    otp_requests: [Counter; 4],
    otp_deliveries: [Counter; 4],
    otp_changes: [Counter; 5],
    verify: [Counter; 6],
    revoked: [Counter; 6],
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

/// How the key cache answered a look-up, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// A fresh entry (younger than `store.cache_ttl`), or one a concurrent look-up of the same
    /// key had just loaded: no store read of its own.
    Hit,
    /// Read from the store (whether or not the key exists, and whether or not the read worked).
    Miss,
    /// Served past `store.cache_ttl` because the store failed (within `store.max_stale`).
    Stale,
    /// A key id remembered as unknown (the negative cache).
    Unknown,
}

/// The result of a password or OIDC login, as a metric label. An OIDC login is counted when
/// the provider sends the browser back (a login-type conversion is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// A session was created.
    Ok,
    /// Wrong email or password, or a malformed request; for OIDC, a state, code or ID token
    /// that failed (400, 401).
    BadCredentials,
    /// Refused by the per-IP or per-account limits (429).
    Limited,
    /// Password login disabled, or the user is not a password user (403); for OIDC, any 403:
    /// an email not verified or not allowed, signups off, another login type, a link conflict.
    Forbidden,
    /// The right password for a suspended user.
    Suspended,
    /// The store, the hasher or something else of Portcullis's failed (5xx).
    Error,
}

/// The result of authenticating a proxied request, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// A valid session.
    Ok,
    /// No token anywhere.
    Missing,
    /// A malformed token, an unknown key id or a wrong secret.
    Invalid,
    /// The key has expired.
    Expired,
    /// The user is suspended.
    Suspended,
    /// The store could not answer and nothing usable was cached (503).
    StoreUnavailable,
}

/// What a one-time passcode request led to, as a metric label. The caller is answered `204`
/// in every case; only operators see the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRequestResult {
    /// A code was stored for a password user and handed to the delivery.
    Issued,
    /// No password user has the email: the same work was done, nothing was sent.
    Unknown,
    /// Past `otp.requests_per_email`: nothing was stored or sent.
    Limited,
    /// The store or the random number generator failed: nothing was sent.
    Error,
}

/// The result of one delivery of a code, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpDeliveryResult {
    /// Accepted by the SMTP server or the webhook (2xx), or written to the log.
    Sent,
    /// Refused, or the connection failed.
    Failed,
    /// Did not finish within `otp.delivery_timeout`.
    Timeout,
    /// No `otp.delivery` is configured, so the code went nowhere.
    Unconfigured,
}

/// The result of `POST /users/otp/change-password`, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpChangeResult {
    /// The password was changed and every key of the user revoked.
    Ok,
    /// `Incorrect email or one-time passcode.`
    BadCode,
    /// Refused before or after the code check: a bad body, a weak password, the same
    /// password, password login disabled.
    Refused,
    /// Refused by the per-IP limit (429).
    Limited,
    /// The store, the hasher or something else of Portcullis's failed (5xx).
    Error,
}

/// A forward-auth answer (`/.portcullis/verify`), as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDecision {
    /// 200: the edge may forward the request.
    Allow,
    /// 401: no valid session.
    Unauthenticated,
    /// 403: the route policy refuses it.
    Forbidden,
    /// 400: the original request was missing, untrusted or ambiguous.
    BadRequest,
    /// 503: the store could not answer.
    Unavailable,
    /// 500: Portcullis's own fault.
    Error,
}

/// Why an open connection was closed when its session was checked again, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The key was deleted or made to expire early: logout, token deletion, a password change.
    Revoked,
    /// The key reached its expiry.
    Expired,
    /// The user is suspended.
    Suspended,
    /// The user is gone.
    Deleted,
    /// The session is valid, but the route policy no longer lets it reach the route (roles,
    /// organization membership, scopes).
    Forbidden,
    /// The store could not answer a check for longer than `store.max_stale`.
    Unverified,
}

// === impl RevokeReason ===

impl RevokeReason {
    /// The metric label, which is also how logs and close messages name the reason.
    pub fn label(self) -> &'static str {
        REVOKE_REASONS[self as usize]
    }
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

        let handshakes = results(
            &mut registry,
            TLS_HANDSHAKES,
            "TLS handshakes on the main listener by result",
            HANDSHAKE_RESULTS,
        );
        let reloads = results(
            &mut registry,
            TLS_RELOADS,
            "Certificate reloads by result",
            RELOAD_RESULTS,
        );

        let key_cache = results(
            &mut registry,
            KEY_CACHE,
            "Key look-ups by how the cache answered: hit, miss (read from the store), stale \
             (served past cache_ttl because the store failed), unknown (negative cache)",
            CACHE_RESULTS,
        );
        // From 100 us to about 3.3 s: a local Redis round trip up to far past any deadline.
        let store_call = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            STORE_CALL_SECONDS,
            "Time the key cache's session reads from the store took, failed ones included",
            store_call.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            STORE_ERRORS,
            "Key cache session reads that the store failed (unreachable, timed out, bad record)",
            store_errors.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            STORE_UP,
            "1 while the Redis store answers commands, 0 while it is marked down after a command \
             got no answer (always 1 on memory://)",
            store_up.clone(),
        );
        store_up.set(1);
        let store_last_error_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            STORE_LAST_ERROR_AGE,
            "Seconds since a Redis command last got no answer (-1: never)",
            store_last_error_age.clone(),
        );
        store_last_error_age.set(-1.0);
        let store_commands: Family<CommandLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));
        registry.register(
            STORE_COMMAND_SECONDS,
            "Round trip of every Redis command by command name, failed ones included",
            store_commands.clone(),
        );
        let logins = results(
            &mut registry,
            LOGINS,
            "Password and OIDC logins by result",
            LOGIN_RESULTS,
        );
        let auth = results(
            &mut registry,
            AUTH,
            "Session checks (proxied, forward-auth and API requests) by result",
            AUTH_RESULTS,
        );

        // One series, set once, so that dashboards can tell which build each replica runs. Only
        // the admin listener serves it: no response to a client names the version.
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            BUILD_INFO,
            "Always 1; version is the crate version, commit the commit the binary was built \
             from (unknown when the build did not name one)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: crate::VERSION,
                commit: crate::COMMIT.unwrap_or("unknown"),
            })
            .set(1);

        let otp_requests = results(
            &mut registry,
            OTP_REQUESTS,
            "One-time passcode requests by what was done: issued, unknown (no such password \
             user), limited (otp.requests_per_email), error; every one was answered 204",
            OTP_REQUEST_RESULTS,
        );
        let otp_deliveries = results(
            &mut registry,
            OTP_DELIVERIES,
            "One-time passcode deliveries by result: sent, failed, timeout \
             (otp.delivery_timeout), unconfigured (no otp.delivery)",
            OTP_DELIVERY_RESULTS,
        );
        let otp_changes = results(
            &mut registry,
            OTP_CHANGES,
            "Password changes with a one-time passcode by result",
            OTP_CHANGE_RESULTS,
        );
        let verify_family = Family::<DecisionLabels, Counter>::default();
        registry.register(
            VERIFY,
            "Forward-auth answers by decision: allow (200), unauthenticated (401), forbidden \
             (403), bad_request (400), unavailable (503), error (500)",
            verify_family.clone(),
        );
        let verify = VERIFY_DECISIONS.map(|decision| {
            verify_family
                .get_or_create(&DecisionLabels { decision })
                .clone()
        });

        let revoked_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            CONNECTIONS_REVOKED,
            "Open connections (WebSocket and other upgraded tunnels, streaming responses) closed \
             because their session no longer allows them, by reason: revoked (logout, token \
             deleted, password changed), expired, suspended, deleted (the user), forbidden (the \
             route policy now refuses it), unverified (the store could not answer a check for \
             store.max_stale)",
            revoked_family.clone(),
        );
        let revoked = REVOKE_REASONS.map(|reason| {
            revoked_family
                .get_or_create(&ReasonLabels { reason })
                .clone()
        });

        Metrics {
            registry,
            requests,
            upstream_response,
            open_connections,
            connections,
            handshakes,
            reloads,
            key_cache,
            store_call,
            store_errors,
            store_up,
            store_last_error_age,
            store_commands,
            logins,
            auth,
            otp_requests,
            otp_deliveries,
            otp_changes,
            verify,
            revoked,
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

    /// Counts a key look-up by how the cache answered it.
    pub fn key_cache(&self, result: CacheResult) {
        self.key_cache[result as usize].inc();
    }

    /// Records one session read from the store: how long it took, and whether it failed.
    pub fn store_call(&self, elapsed: Duration, failed: bool) {
        self.store_call.observe(elapsed.as_secs_f64());
        if failed {
            self.store_errors.inc();
        }
    }

    /// Records the store's state, as of a scrape: up or down, and how long ago a command last
    /// got no answer.
    pub fn store_state(&self, up: bool, last_error: Option<Duration>) {
        self.store_up.set(i64::from(up));
        self.store_last_error_age
            .set(last_error.map_or(-1.0, |d| d.as_secs_f64()));
    }

    /// Records one Redis command's round trip. `command` is one of a fixed set of names.
    pub fn store_command(&self, command: &'static str, elapsed: Duration) {
        self.store_commands
            .get_or_create(&CommandLabels { command })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a password or OIDC login.
    pub fn login(&self, result: LoginResult) {
        self.logins[result as usize].inc();
    }

    /// Counts the authentication of a proxied request.
    pub fn auth(&self, result: AuthResult) {
        self.auth[result as usize].inc();
    }

    /// Counts a one-time passcode request.
    pub fn otp_request(&self, result: OtpRequestResult) {
        self.otp_requests[result as usize].inc();
    }

    /// Counts a delivery of a one-time passcode.
    pub fn otp_delivery(&self, result: OtpDeliveryResult) {
        self.otp_deliveries[result as usize].inc();
    }

    /// Counts a password change with a one-time passcode.
    pub fn otp_change(&self, result: OtpChangeResult) {
        self.otp_changes[result as usize].inc();
    }

    /// Counts a forward-auth answer.
    pub fn verify(&self, decision: VerifyDecision) {
        self.verify[decision as usize].inc();
    }

    /// Counts an open connection closed because its session no longer allows it.
    pub fn connection_revoked(&self, reason: RevokeReason) {
        self.revoked[reason as usize].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Registers a counter family labelled `result` under `name` and creates one counter per label
/// in `labels`, up front, in order.
fn results<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<ResultLabels, Counter>::default();
    registry.register(name, help, family.clone());
    labels.map(|result| family.get_or_create(&ResultLabels { result }).clone())
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests;
