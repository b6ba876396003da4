//! The request-path error type and the one function that turns it into a response.
//!
//! Bodies use Coder's shape (`{"message", "detail", "validations"}`, spec/coder-api.md §0.2).
//! Faults are classified by who caused them: the client gets a 4xx, an upstream failure a 502 or
//! 504, and our own faults a 500 with a generic body (the cause is logged, never sent).

use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::Body;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while handling one request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// HTTP/1.1 request without a `Host` header (RFC 9112 §3.2).
    #[error("request has no host")]
    HostMissing,
    /// More than one `Host` header, or a `Host` that disagrees with the request target.
    #[error("request has conflicting host headers")]
    HostConflict,
    /// A `Host` value that is not a valid authority.
    #[error("request host is invalid")]
    HostInvalid,
    /// The request head is larger than `server.max_header_bytes` (HTTP/2; hyper answers
    /// HTTP/1.1 itself).
    #[error("request headers too large")]
    HeadersTooLarge,
    /// Every connection permit is taken (an upgrade could not get one).
    #[error("too many connections")]
    Overloaded,
    /// A method Portcullis never forwards (`TRACE`, `CONNECT`).
    #[error("method {0} is not allowed")]
    MethodNotAllowed(http::Method),
    /// No valid session on a route that needs one; the detail says why (spec §8.4).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The store could not answer and nothing usable was cached: 503, never 401.
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] crate::store::StoreError),
    /// The path has dot segments or encoded separators, so the route policy cannot judge it
    /// the way the upstream would read it.
    #[error("{0}")]
    AmbiguousPath(#[from] crate::policy::AmbiguousPath),
    /// The route policy refuses the request.
    #[error("forbidden by route policy")]
    Forbidden,
    /// The request already passed through this Portcullis (its `Via` names us): the upstream
    /// points back at Portcullis.
    #[error("forwarding loop: the request already passed through this proxy")]
    Loop,
    /// A path in a namespace Portcullis owns (`/.portcullis/`) that it does not serve.
    #[error("no such route")]
    RouteNotFound,
    /// A write authenticated by the session cookie that a browser sent from another site
    /// (`Origin`, `Sec-Fetch-Site`; see [`crate::csrf`]).
    #[error("cross-site request refused")]
    CrossSite,
    /// A forward-auth request (`/.portcullis/verify`) that does not say, or not from a
    /// trusted proxy, or not unambiguously, what the original request was; the detail says what.
    #[error("bad forward-auth request: {0}")]
    VerifyRequest(&'static str),
    /// The upstream could not be reached or closed the connection.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The upstream did not connect or answer in time; names the phase.
    #[error("upstream timed out during {0}")]
    UpstreamTimeout(&'static str),
    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct CoderBody<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
}

/// The `Content-Type` of every JSON body Portcullis writes.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

// === impl Error ===

impl Error {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::HostMissing
            | Error::HostConflict
            | Error::HostInvalid
            | Error::AmbiguousPath(_)
            | Error::VerifyRequest(_) => StatusCode::BAD_REQUEST,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Error::Forbidden | Error::CrossSite => StatusCode::FORBIDDEN,
            Error::RouteNotFound => StatusCode::NOT_FOUND,
            Error::Loop => StatusCode::LOOP_DETECTED,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Turns the error into the response the client sees, logging it once if it is ours or the
    /// upstream's fault. Client mistakes are logged at debug only.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let (message, detail) = match &self {
            Error::HostMissing => ("Request is missing the Host header.", ""),
            Error::HostConflict => ("Request has more than one Host.", ""),
            Error::HostInvalid => ("Request Host header is invalid.", ""),
            Error::VerifyRequest(detail) => ("Invalid forward-auth request.", *detail),
            Error::MethodNotAllowed(_) => ("Method not allowed.", ""),
            Error::AmbiguousPath(crate::policy::AmbiguousPath(why)) => {
                ("Invalid request path.", *why)
            }
            Error::HeadersTooLarge => ("Request header fields too large.", ""),
            Error::Overloaded => ("Service unavailable.", "Too many open connections."),
            Error::Unauthenticated(detail) => (crate::api::SIGNED_OUT, detail.as_str()),
            Error::StoreUnavailable(_) => (
                "Service unavailable.",
                "The session store is not reachable. Try again shortly.",
            ),
            Error::Forbidden => (
                "Forbidden.",
                "You don't have permission to view this content. If you believe this is a \
                 mistake, please contact your administrator or try signing in with different \
                 credentials.",
            ),
            Error::CrossSite => (
                "Forbidden.",
                "Cross-site request refused: a write authenticated by the session cookie must \
                 come from this site.",
            ),
            Error::UpstreamUnavailable(_) => {
                ("Bad gateway.", "The upstream service could not be reached.")
            }
            Error::UpstreamTimeout(_) => (
                "Gateway timeout.",
                "The upstream service did not answer in time.",
            ),
            Error::Internal(_) => ("Internal error.", ""),
            Error::RouteNotFound => ("Route not found.", ""),
            Error::Loop => (
                "Forwarding loop detected.",
                "This request has already passed through this proxy (see its Via header): the \
                 upstream leads back to Portcullis. Check upstream.url.",
            ),
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %ErrorChain(&self), "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut resp = json_response(status, &CoderBody { message, detail });
        if let Error::MethodNotAllowed(_) = self {
            resp.headers_mut().insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        resp
    }
}

/// Formats an error with its whole `source()` chain, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let bytes = match serde_json::to_vec(value) {
        Ok(b) => b,
        // Serializing our own plain structs cannot fail; answer something valid regardless.
        Err(_) => br#"{"message":"Internal error."}"#.to_vec(),
    };
    let mut resp = Response::new(Body::full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

/// A response in Coder's body shape with a message and an optional detail.
pub fn message_response(status: StatusCode, message: &str, detail: &str) -> Response<Body> {
    json_response(status, &CoderBody { message, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_the_status_class_of_whoever_is_at_fault() {
        let io = || Box::new(std::io::Error::other("refused")) as _;
        let cases: Vec<(Error, u16)> = vec![
            (Error::HostMissing, 400),
            (Error::HostConflict, 400),
            (Error::HostInvalid, 400),
            (Error::VerifyRequest("no X-Original-URI"), 400),
            (Error::MethodNotAllowed(http::Method::TRACE), 405),
            (Error::HeadersTooLarge, 431),
            (Error::Overloaded, 503),
            (Error::Forbidden, 403),
            (Error::CrossSite, 403),
            (Error::Unauthenticated("API key is invalid.".into()), 401),
            (Error::UpstreamUnavailable(io()), 502),
            (Error::UpstreamTimeout("connect"), 504),
            (Error::Internal("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[CONTENT_TYPE], JSON);
        }
    }

    #[test]
    fn server_errors_do_not_leak_their_cause_to_the_client() {
        let resp = Error::Internal("secret path /etc/x".into()).into_response();
        let body = resp.into_body().into_full_bytes().expect("full body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("\"message\""));
    }
}
