//! The one error type of the HTTP layer, and its one renderer.
//!
//! Every handler, the router, forward-auth and the API fail with [`Error`]; [`Error::into_response`]
//! is the only place an error becomes a response, and the only place it is logged (once, at the
//! boundary). Bodies use Coder's shape (`{"message", "detail", "validations"}`,
//! spec/coder-api.md §0.2). Faults are classified by who caused them: the client gets a 4xx, an
//! upstream failure a 502 or 504, and our own faults a 500 with a generic body (the cause is
//! logged, never sent). Each variant also names its own metric labels ([`Error::outcome`],
//! [`Error::decision`]).

use std::borrow::Cow;
use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::upstream::BodyError;
use serde::Serialize;

use crate::auth::session::AuthError;
use crate::auth::PasswordError;
use crate::coder::{self, Validation};
use crate::headers::FramingError;
use crate::http::body::Body;
use crate::limits::LimitError as Limited;
use crate::metrics::{Outcome, VerifyDecision};
pub use crate::report::ErrorChain;
use crate::store::StoreError;
use crate::users::UserError;

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
    /// A route Portcullis serves, asked with a method it does not serve there: `405` with the
    /// route's methods in `Allow`.
    #[error("method {method} is not served on this route")]
    MethodNotServed {
        /// The method asked for.
        method: http::Method,
        /// The methods the route serves, for `Allow`.
        allow: &'static str,
    },
    /// No valid session on a route that needs one; the detail says why (spec §8.4).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The store could not answer and nothing usable was cached: 503, never 401.
    #[error("store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// The path has dot segments or encoded separators, so the route policy cannot judge it
    /// the way the upstream would read it.
    #[error("{0}")]
    AmbiguousPath(#[from] crate::policy::AmbiguousPath),
    /// Body framing that a front end and the upstream could read differently
    /// ([`crate::headers::check_framing`]): `501` for a transfer coding other than one
    /// `chunked`, `400` for a framing header spelled with `_`. The connection is closed after
    /// the answer, since what follows on it may be framed otherwise than hyper read it.
    #[error("{0}")]
    Framing(#[from] crate::headers::FramingError),
    /// The client's request body failed while it was forwarded: malformed chunked encoding,
    /// or the client went away mid-body. The upstream saw no whole request.
    #[error("the request body is malformed or was cut off")]
    ClientBody,
    /// The route policy or RBAC refuses the request.
    #[error("forbidden")]
    Forbidden,
    /// Coder's 404 for a resource that is missing or that the caller may not see.
    #[error("resource not found or not visible to the caller")]
    NotFound,
    /// Too many requests of a rate-limited group: `limit` in `window`.
    #[error("rate limited: more than {limit} requests in {window:?}")]
    RateLimited {
        /// The most requests allowed in `window`.
        limit: u64,
        /// The window the limit counts over.
        window: Duration,
    },
    /// The request body did not arrive whole within `server.header_read_timeout`.
    #[error("request body too slow")]
    BodyTimeout,
    /// A proxied upload sent no byte for `server.idle_timeout`.
    #[error("request body stalled")]
    UploadStalled,
    /// Every password-hashing permit is taken (`passwords.max_concurrent`).
    #[error("too many password checks at once")]
    PasswordsBusy,
    /// An answer of the Coder API with its exact texts (spec/coder-api.md): a client mistake
    /// or refusal specific to one endpoint.
    #[error("{}", .0.message)]
    Coder(Box<CoderAnswer>),
    /// The request already passed through this Portcullis (its `Via` names us): the upstream
    /// points back at Portcullis.
    #[error("forwarding loop: the request already passed through this proxy")]
    Loop,
    /// A path in a namespace Portcullis owns (`/.portcullis/`) that it does not serve.
    #[error("no such route")]
    RouteNotFound,
    /// A write authenticated by the session cookie that a browser sent from another site
    /// (`Origin`, `Sec-Fetch-Site`; see [`crate::http::csrf`]).
    #[error("cross-site request refused")]
    CrossSite,
    /// A forward-auth request (`/.portcullis/verify`) that does not say, or not from a
    /// trusted proxy, or not unambiguously, what the original request was; the detail says what.
    #[error("bad forward-auth request: {0}")]
    VerifyRequest(&'static str),
    /// The upstream could not be reached or closed the connection.
    #[error("upstream unavailable")]
    UpstreamUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The upstream did not connect or answer in time; names the phase.
    #[error("upstream timed out during {0}")]
    UpstreamTimeout(&'static str),
    /// A bug or an unexpected local failure; the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A Coder API answer: status, message, detail and field validations (spec §0.1-0.2).
#[derive(Debug)]
pub struct CoderAnswer {
    /// The status.
    pub status: StatusCode,
    /// The message, one of the spec's exact strings.
    pub message: Cow<'static, str>,
    /// The detail; empty for none.
    pub detail: Cow<'static, str>,
    /// Per-field problems; empty for none.
    pub validations: Vec<Validation>,
    /// What caused a 5xx answer, for the log (never sent).
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Serialize)]
struct CoderBody<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    validations: &'a [Validation],
}

/// The `Content-Type` of every JSON body Portcullis writes.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

// === impl Error ===

impl Error {
    /// An answer of the Coder API: `status`, the spec's `message` and a `detail` (empty for
    /// none).
    pub fn coder(
        status: StatusCode,
        message: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Coder(Box::new(CoderAnswer {
            status,
            message: message.into(),
            detail: detail.into(),
            validations: Vec::new(),
            cause: None,
        }))
    }

    /// `400` with `message` and `detail`.
    pub fn bad_request(
        message: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::coder(StatusCode::BAD_REQUEST, message, detail)
    }

    /// `400 Validation failed.` with per-field details.
    pub fn validation(validations: Vec<Validation>) -> Self {
        Self::with_validations(
            StatusCode::BAD_REQUEST,
            coder::VALIDATION_FAILED,
            validations,
        )
    }

    /// A message with a validations list.
    pub fn with_validations(
        status: StatusCode,
        message: impl Into<Cow<'static, str>>,
        validations: Vec<Validation>,
    ) -> Self {
        Error::Coder(Box::new(CoderAnswer {
            status,
            message: message.into(),
            detail: Cow::Borrowed(""),
            validations,
            cause: None,
        }))
    }

    /// The same answer, with `cause` kept for the log line that answers it (a Coder answer
    /// whose text says nothing of what failed).
    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        if let Error::Coder(answer) = &mut self {
            answer.cause = Some(cause.into());
        }
        self
    }

    /// `500 Internal error.`; `cause` is logged when the error is answered, never sent.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(cause.into())
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::HostMissing
            | Error::HostConflict
            | Error::HostInvalid
            | Error::AmbiguousPath(_)
            | Error::VerifyRequest(_)
            | Error::Framing(FramingError::UnderscoreSpelling)
            | Error::ClientBody => StatusCode::BAD_REQUEST,
            Error::Framing(FramingError::UnsupportedCoding) => StatusCode::NOT_IMPLEMENTED,
            Error::MethodNotAllowed(_) | Error::MethodNotServed { .. } => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            Error::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Overloaded | Error::PasswordsBusy => StatusCode::SERVICE_UNAVAILABLE,
            Error::Forbidden | Error::CrossSite => StatusCode::FORBIDDEN,
            Error::RouteNotFound | Error::NotFound => StatusCode::NOT_FOUND,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::BodyTimeout | Error::UploadStalled => StatusCode::REQUEST_TIMEOUT,
            Error::Loop => StatusCode::LOOP_DETECTED,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Coder(answer) => answer.status,
        }
    }

    /// The `outcome` label of `portcullis_requests_total` for a request that ended in this
    /// error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::UpstreamUnavailable(_) | Error::UpstreamTimeout(_) => Outcome::UpstreamError,
            _ => Outcome::Rejected,
        }
    }

    /// The `decision` label of `portcullis_verify_total` for a forward-auth request that ended
    /// in this error.
    pub fn decision(&self) -> VerifyDecision {
        match self {
            Error::Unauthenticated(_) => VerifyDecision::Unauthenticated,
            Error::Forbidden | Error::CrossSite => VerifyDecision::Forbidden,
            Error::AmbiguousPath(_) | Error::VerifyRequest(_) => VerifyDecision::BadRequest,
            Error::StoreUnavailable(_) => VerifyDecision::Unavailable,
            _ => VerifyDecision::Error,
        }
    }

    /// Turns the error into the response the client sees, logging it: our own faults and the
    /// upstream's at `warn` (a bug at `error`) with the whole cause chain, client mistakes at
    /// `debug`. This is the only place an error is logged.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let (message, detail): (&str, &str) = match &self {
            Error::HostMissing => ("Request is missing the Host header.", ""),
            Error::HostConflict => ("Request has more than one Host.", ""),
            Error::HostInvalid => ("Request Host header is invalid.", ""),
            Error::VerifyRequest(detail) => ("Invalid forward-auth request.", *detail),
            Error::MethodNotAllowed(_) => ("Method not allowed.", ""),
            Error::MethodNotServed { .. } => ("Method not allowed.", ""),
            Error::AmbiguousPath(crate::policy::AmbiguousPath(why)) => {
                ("Invalid request path.", *why)
            }
            Error::HeadersTooLarge => ("Request header fields too large.", ""),
            Error::Framing(FramingError::UnsupportedCoding) => (
                "Transfer coding not implemented.",
                "Transfer-Encoding must be exactly \"chunked\".",
            ),
            Error::ClientBody => (
                "Invalid request body.",
                "The request body's chunked encoding is malformed, or the body ended early.",
            ),
            Error::Framing(FramingError::UnderscoreSpelling) => (
                "Invalid request framing.",
                "Content-Length and Transfer-Encoding must not be spelled with '_', which some \
                 servers read as '-'.",
            ),
            Error::Overloaded => (coder::UNAVAILABLE, "Too many open connections."),
            Error::PasswordsBusy => (
                coder::UNAVAILABLE,
                "Too many password checks at once. Try again shortly.",
            ),
            Error::Unauthenticated(detail) => (coder::SIGNED_OUT, detail.as_str()),
            Error::StoreUnavailable(_) => (
                coder::UNAVAILABLE,
                "The session store is not reachable. Try again shortly.",
            ),
            Error::Forbidden => (coder::FORBIDDEN, coder::FORBIDDEN_DETAIL),
            Error::NotFound => (coder::NOT_FOUND, ""),
            Error::CrossSite => (
                coder::FORBIDDEN,
                "Cross-site request refused: a write authenticated by the session cookie must \
                 come from this site.",
            ),
            Error::RateLimited { .. } => ("", ""),
            Error::BodyTimeout => (
                "Request timeout.",
                "The request body did not arrive within server.header_read_timeout.",
            ),
            Error::UploadStalled => (
                "Request timeout.",
                "No byte of the request body arrived for server.idle_timeout.",
            ),
            Error::UpstreamUnavailable(_) => {
                ("Bad gateway.", "The upstream service could not be reached.")
            }
            Error::UpstreamTimeout(_) => (
                "Gateway timeout.",
                "The upstream service did not answer in time.",
            ),
            Error::Internal(_) => (coder::INTERNAL, ""),
            Error::RouteNotFound => ("Route not found.", ""),
            Error::Loop => (
                "Forwarding loop detected.",
                "This request has already passed through this proxy (see its Via header): the \
                 upstream leads back to Portcullis. Check upstream.url.",
            ),
            Error::Coder(answer) => (&answer.message, &answer.detail),
        };
        match &self {
            Error::Internal(_) => {
                tracing::error!(status = status.as_u16(), error = %ErrorChain(&self), "request failed");
            }
            Error::Coder(answer) if status.is_server_error() => match &answer.cause {
                Some(cause) => tracing::warn!(
                    status = status.as_u16(),
                    error = %self,
                    cause = %ErrorChain(cause.as_ref()),
                    "request failed"
                ),
                None => tracing::warn!(status = status.as_u16(), error = %self, "request failed"),
            },
            _ if status.is_server_error() => {
                tracing::warn!(status = status.as_u16(), error = %ErrorChain(&self), "request failed");
            }
            _ => tracing::debug!(status = status.as_u16(), error = %self, "request refused"),
        }
        let validations = match &self {
            Error::Coder(answer) => answer.validations.as_slice(),
            _ => &[],
        };
        // The two answers whose text is made from their fields.
        let made;
        let (message, detail) = match &self {
            Error::RateLimited { limit, window } => {
                made = rate_limited_message(*limit, *window);
                (made.as_str(), detail)
            }
            Error::MethodNotServed { method, allow } => {
                made = format!("{method} is not served on this route; it serves {allow}.");
                (message, made.as_str())
            }
            _ => (message, detail),
        };
        let mut resp = json_response(
            status,
            &CoderBody {
                message,
                detail,
                validations,
            },
        );
        match &self {
            Error::MethodNotAllowed(_) => {
                resp.headers_mut().insert(
                    ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            Error::MethodNotServed { allow, .. } => {
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
            }
            // The rest of the body is still on its way, or its framing is in doubt: the
            // connection cannot carry another request (RFC 9110 §15.5.9).
            Error::BodyTimeout | Error::UploadStalled | Error::Framing(_) | Error::ClientBody => {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Error::RateLimited { window, .. } => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(window.as_secs()));
            }
            _ => {}
        }
        resp
    }
}

/// Coder's 429 message, with the window as Go prints durations.
fn rate_limited_message(limit: u64, window: Duration) -> String {
    format!(
        "You've been rate limited for sending more than {limit} requests in {}.",
        coder::go_duration(window)
    )
}

impl From<StoreError> for Error {
    /// A store that cannot answer is a 503, never a 401; any other store failure is ours.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Error::StoreUnavailable(e),
            other => Error::internal(other),
        }
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(s) => Error::StoreUnavailable(s),
            other => Error::Unauthenticated(other.to_string()),
        }
    }
}

impl From<Limited> for Error {
    fn from(e: Limited) -> Self {
        match e {
            Limited::Limited { limit, window } => Error::RateLimited { limit, window },
            Limited::Store(s) => s.into(),
        }
    }
}

/// The client's body failure that made an upstream exchange fail, if that is what did.
fn client_body<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return Some(body);
        }
        next = e.source();
    }
    None
}

impl From<crate::upstream::Error> for Error {
    fn from(e: crate::upstream::Error) -> Self {
        match e {
            // The client's body broke the exchange: its fault, not the upstream's, and the
            // upstream never got a whole request.
            crate::upstream::Error::Unavailable(cause) => match client_body(cause.as_ref()) {
                Some(BodyError::Stalled(_)) => Error::UploadStalled,
                // Bad chunked encoding, or the client went away mid-body.
                Some(BodyError::Client(_)) => Error::ClientBody,
                None => Error::UpstreamUnavailable(cause),
            },
            crate::upstream::Error::Timeout(phase) => Error::UpstreamTimeout(phase),
            internal @ crate::upstream::Error::Internal(_) => Error::internal(internal),
        }
    }
}

impl From<PasswordError> for Error {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => Error::PasswordsBusy,
            other => Error::internal(other),
        }
    }
}

impl From<UserError> for Error {
    /// Coder's answers for failed user operations; endpoints with a more specific answer
    /// (such as `Invalid password.` for a weak new password) map those cases themselves.
    fn from(e: UserError) -> Self {
        let in_use = |field: &str| Validation {
            field: field.into(),
            detail: coder::ALREADY_IN_USE.into(),
        };
        match e {
            UserError::Invalid(validations) => Error::validation(validations),
            UserError::WeakPassword(detail) => not_strong_enough(detail),
            UserError::PasswordNotAllowed(login_type) => Error::bad_request(
                format!(
                    "Password cannot be set for non-password (\"{}\") authentication.",
                    login_type.as_str()
                ),
                "",
            ),
            UserError::NotPasswordUser => Error::bad_request(
                "Users without password login type cannot change their password.",
                "",
            ),
            UserError::SamePassword => {
                Error::bad_request("New password cannot match old password.", "")
            }
            UserError::Conflict(field) => Error::with_validations(
                StatusCode::CONFLICT,
                "User already exists.",
                vec![in_use(field)],
            ),
            UserError::TokenNameTaken(name) => Error::with_validations(
                StatusCode::CONFLICT,
                format!("A token with name \"{name}\" already exists."),
                vec![in_use("name")],
            ),
            UserError::NoSuchOrg(id) => Error::coder(
                StatusCode::NOT_FOUND,
                format!("Organization does not exist with the provided id \"{id}\"."),
                "",
            ),
            UserError::NoSuchUser => Error::NotFound,
            e @ (UserError::UnknownRole(_) | UserError::UnknownOrgRole(_)) => {
                Error::bad_request("Invalid role.", e.to_string())
            }
            e @ UserError::UnknownScope(_) => {
                Error::bad_request("Failed to create API key.", e.to_string())
            }
            UserError::Lifetime(detail) => {
                Error::bad_request("Failed to validate create API key request.", detail)
            }
            UserError::Store(e) => e.into(),
            UserError::Password(e) => e.into(),
            UserError::Rng(e) => Error::internal(e),
        }
    }
}

/// `400 Password not strong enough!` with the rule's text on `password` (§7.6, §7.8).
pub fn not_strong_enough(detail: String) -> Error {
    Error::with_validations(
        StatusCode::BAD_REQUEST,
        "Password not strong enough!",
        vec![Validation {
            field: "password".into(),
            detail,
        }],
    )
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
    json_response(
        status,
        &CoderBody {
            message,
            detail,
            validations: &[],
        },
    )
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
            (Error::Framing(FramingError::UnderscoreSpelling), 400),
            (Error::Framing(FramingError::UnsupportedCoding), 501),
            (Error::ClientBody, 400),
            (Error::MethodNotAllowed(http::Method::TRACE), 405),
            (Error::HeadersTooLarge, 431),
            (Error::Overloaded, 503),
            (Error::Forbidden, 403),
            (Error::CrossSite, 403),
            (Error::Unauthenticated("API key is invalid.".into()), 401),
            (Error::UpstreamUnavailable(io()), 502),
            (Error::UpstreamTimeout("connect"), 504),
            (Error::internal("x"), 500),
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
        let resp = Error::internal("secret path /etc/x").into_response();
        let body = resp.into_body().into_full_bytes().expect("full body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("\"message\""));
    }
}
