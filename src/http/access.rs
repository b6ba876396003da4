//! The access log: one line per request on the main listener (proxied, API, forward-auth,
//! Portcullis's own paths), at `info` on the tracing target [`TARGET`], when `log.access` is
//! on. A [`Note`] rides along the request path and collects what only the later steps know
//! (who answered, the route rule, the session's user, the decision); [`crate::http::router`]
//! writes it out once the response head is ready, where the final status is known.
//!
//! What a line holds is fixed here, and nothing else reaches it: the method, the path without
//! its query, the status, the duration, the user id, the decision, the rule, the request id
//! (`X-Request-Id`, when it looks like one) and the client's address. Never a token, a cookie,
//! an `Authorization` value, a query string or a body: none of them is ever read into a
//! [`Note`].
//!
//! Off (the default), a [`Note`] is a few words on the stack: no clock read, no allocation,
//! no header read; the steps that fill it store a rule index and a user id, and the line is
//! never built.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use uuid::Uuid;

use crate::auth::session::Authenticated;
use crate::http::admit::Trace;
use crate::http::app::App;
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::policy::Matched;
use crate::rbac::{Action, Object};

/// The tracing target of access lines: filter on it (`portcullis::access=info`).
pub const TARGET: &str = "portcullis::access";

/// `X-Request-Id`: the request id an edge (nginx `$request_id`, Envoy) or a client sets, logged
/// when it looks like one ([`request_id`]). Portcullis forwards it upstream unchanged and sets
/// none itself.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id logged.
const MAX_REQUEST_ID: usize = 128;

/// Who answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The route policy, then the upstream.
    Proxy,
    /// Portcullis's own API under `api.prefix`.
    Api,
    /// Forward-auth (`/.portcullis/verify`): the line is about the original request.
    Verify,
    /// Portcullis's other own paths (`/.portcullis/...`: the JWKS, or 404).
    Own,
}

/// What Portcullis decided about a request, before any upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The route policy let a session through.
    Allow,
    /// A public route: no session was needed.
    Public,
    /// No valid session on a route that needs one (401, or the 303 into sign-in).
    Unauthenticated,
    /// The route policy or RBAC refused the session, or a cross-site write (403).
    Deny,
    /// The store could not answer (503).
    Unavailable,
    /// Refused before any decision: a method, head, path or forward-auth request that cannot
    /// be judged (4xx, 508).
    Refused,
    /// Answered by Portcullis's API, which decides for itself (its status says how).
    Api,
    /// Answered by Portcullis's own paths (the JWKS).
    Local,
    /// Portcullis's own fault.
    Error,
}

/// The rule that decided, as `portcullis explain` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// `policy.route[N]`, counted from 0.
    Route(usize),
    /// `policy.default`.
    Default,
}

/// The user an API endpoint authenticated, for the line of its request: set by
/// [`crate::http::api::authenticate`] through the request's extensions, which the router gives
/// one only when the access log is on.
#[derive(Debug, Clone, Default)]
pub struct Caller(Arc<OnceLock<Uuid>>);

/// The access log's record of one request (see the module doc).
#[derive(Debug)]
pub struct Note {
    started: Option<Started>,
    kind: Kind,
    decision: Option<Decision>,
    rule: Option<RuleRef>,
    user: Option<Uuid>,
    caller: Option<Caller>,
    // Where the RBAC steps of a check go: nowhere.
    rbac: (),
}

/// What is read when the request arrives, only when the log is on.
#[derive(Debug)]
struct Started {
    at: Instant,
    method: Method,
    /// Only its path is ever logged.
    uri: Uri,
    request_id: Option<HeaderValue>,
    client: IpAddr,
}

// === impl Kind ===

impl Kind {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Proxy => "proxy",
            Kind::Api => "api",
            Kind::Verify => "verify",
            Kind::Own => "portcullis",
        }
    }
}

// === impl Decision ===

impl Decision {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Public => "public",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Deny => "deny",
            Decision::Unavailable => "unavailable",
            Decision::Refused => "refused",
            Decision::Api => "api",
            Decision::Local => "local",
            Decision::Error => "error",
        }
    }

    /// The decision a request that ended in `error` before any other was made.
    pub fn of(error: &Error) -> Decision {
        match error {
            Error::Unauthenticated(_) => Decision::Unauthenticated,
            Error::Forbidden | Error::CrossSite => Decision::Deny,
            Error::StoreUnavailable(_) => Decision::Unavailable,
            Error::Internal(_) => Decision::Error,
            _ => Decision::Refused,
        }
    }

    /// The route decision `admitted` tells: a session let through, or a public route.
    pub fn admitted(admitted: &Option<Authenticated>) -> Decision {
        if admitted.is_some() {
            Decision::Allow
        } else {
            Decision::Public
        }
    }
}

// === impl RuleRef ===

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Route(index) => write!(f, "policy.route[{index}]"),
            RuleRef::Default => f.write_str("policy.default"),
        }
    }
}

// === impl Caller ===

impl Caller {
    /// Notes `auth`'s user on the line of `req`, when the router asked for it.
    pub fn note<B>(req: &Request<B>, auth: &Authenticated) {
        if let Some(Caller(user)) = req.extensions().get::<Caller>() {
            let _ = user.set(auth.session().user.id);
        }
    }
}

// === impl Note ===

impl Note {
    /// The note of a request arriving from `peer`: inert unless `log.access` is on.
    pub fn start<B>(app: &App, peer: &Peer, req: &Request<B>) -> Note {
        let started = app.config.log.access.then(|| Started {
            at: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id: request_id(req),
            client: peer.client_ip(req.headers(), &app.config.server.trusted_proxies),
        });
        Note {
            started,
            kind: Kind::Proxy,
            decision: None,
            rule: None,
            user: None,
            caller: None,
            rbac: (),
        }
    }

    /// Who answers.
    pub fn kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// The decision made.
    pub fn decide(&mut self, decision: Decision) {
        self.decision = Some(decision);
    }

    /// The request ended in `error`: its decision, unless one was made before (a request let
    /// through stays `allow` when the upstream then fails).
    pub fn failed(&mut self, error: &Error) {
        self.decision.get_or_insert(Decision::of(error));
    }

    /// Forward-auth: the line is about the original request, `method` and `uri`.
    pub fn original(&mut self, method: &Method, uri: &Uri) {
        if let Some(started) = &mut self.started {
            started.method = method.clone();
            started.uri = uri.clone();
        }
    }

    /// Gives `req` (an API request) the slot its endpoint notes its caller in, when the log
    /// is on.
    pub fn ask_caller<B>(&mut self, req: &mut Request<B>) {
        if self.started.is_some() {
            let caller = Caller::default();
            req.extensions_mut().insert(caller.clone());
            self.caller = Some(caller);
        }
    }

    /// Writes the line, when the log is on, for a response with `status`.
    pub fn finish(self, status: StatusCode) {
        let Some(started) = self.started else {
            return;
        };
        let user = self
            .user
            .or_else(|| self.caller.as_ref().and_then(|c| c.0.get().copied()));
        let elapsed = started.at.elapsed();
        // Microseconds as milliseconds: `1.234`, never a long binary fraction.
        let duration_ms = elapsed.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: TARGET,
            kind = self.kind.as_str(),
            method = started.method.as_str(),
            path = started.uri.path(),
            status = status.as_u16(),
            duration_ms,
            decision = self.decision.unwrap_or(Decision::Error).as_str(),
            rule = self.rule.map(tracing::field::display),
            user_id = user.map(tracing::field::display),
            request_id = started.request_id.as_ref().and_then(|v| v.to_str().ok()),
            client_ip = %started.client,
            "request"
        );
    }
}

/// Records the rule and the session of the route decision ([`crate::http::admit::admit`]).
impl Trace for Note {
    type Rbac = ();

    fn rule(&mut self, route: Option<&Matched<'_>>, _exact_case: bool) {
        // The last rule judged is the one that decided: a second is judged only when the first
        // let the request through.
        self.rule = Some(route.map_or(RuleRef::Default, |m| RuleRef::Route(m.index)));
    }

    fn subject(&mut self, auth: &Authenticated) {
        self.user = Some(auth.session().user.id);
    }

    fn check(&mut self, _: Action, _: &Object) -> &mut () {
        &mut self.rbac
    }
}

/// The request's `X-Request-Id` when it is one value of at most 128 characters from
/// `A-Z a-z 0-9 . _ ~ : + / = -` (UUIDs, hex, base64, W3C trace ids); anything else a client
/// wrote is not logged.
fn request_id<B>(req: &Request<B>) -> Option<HeaderValue> {
    let mut all = req.headers().get_all(&X_REQUEST_ID).iter();
    let value = all.next()?;
    let fits = all.next().is_none()
        && !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(b));
    fits.then(|| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(values: &[&str]) -> Request<()> {
        let mut req = Request::new(());
        for v in values {
            req.headers_mut()
                .append(&X_REQUEST_ID, HeaderValue::from_str(v).unwrap());
        }
        req
    }

    #[test]
    fn a_request_id_is_logged_only_when_it_looks_like_one() {
        let id =
            |values: &[&str]| request_id(&with_id(values)).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            id(&["0f8fad5b-d9cb-469f-a165-70867728950e"]).as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(id(&["abc=="]).as_deref(), Some("abc=="));
        assert_eq!(id(&[]), None);
        assert_eq!(id(&[""]), None);
        assert_eq!(id(&["a b"]), None);
        assert_eq!(id(&["a\"b"]), None);
        assert_eq!(id(&["one", "two"]), None);
        assert_eq!(id(&[&"x".repeat(129)]), None);
        assert_eq!(id(&[&"x".repeat(128)]).map(|v| v.len()), Some(128));
    }

    #[test]
    fn rules_are_named_as_explain_names_them() {
        assert_eq!(RuleRef::Route(3).to_string(), "policy.route[3]");
        assert_eq!(RuleRef::Default.to_string(), "policy.default");
    }

    #[test]
    fn an_error_before_any_decision_names_its_own() {
        assert_eq!(Decision::of(&Error::Forbidden), Decision::Deny);
        assert_eq!(Decision::of(&Error::CrossSite), Decision::Deny);
        assert_eq!(
            Decision::of(&Error::Unauthenticated(String::new())),
            Decision::Unauthenticated
        );
        assert_eq!(Decision::of(&Error::Loop), Decision::Refused);
        assert_eq!(Decision::of(&Error::internal("x")), Decision::Error);
    }
}
