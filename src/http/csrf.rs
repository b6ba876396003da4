//! Cross-site request forgery defence for requests a browser authenticates with the session
//! cookie (spec/coder-api.md §0.4, Coder's `coderd/httpmw/csrf.go` on nosurf).
//!
//! Two checks, both only for unsafe methods (not GET, HEAD, OPTIONS, TRACE) that carry the
//! `coder_session_token` cookie — a client that sends its token any other way chose to, and a
//! browser on another site cannot:
//!
//! - **Double submit** (API only, as Coder): the `X-CSRF-TOKEN` header must equal the
//!   `csrf_token` cookie, compared in constant time. Exempt, as in Coder: a request whose
//!   `Coder-Session-Token` header or `coder_session_token` query parameter equals the cookie
//!   (a client that holds the token, not a browser replaying a cookie), and
//!   `/users/first` (the caller leaves it out). Failure is Coder's plain-text `400`
//!   ([`BAD_TOKEN`]).
//! - **Same site** (API and proxied requests): an `Origin` whose host is not the request's
//!   host (`Host`, the HTTP/2 authority, or `X-Forwarded-Host`), an `Origin` of `null`, or
//!   `Sec-Fetch-Site: cross-site` is refused with `403` (Fetch Metadata, OWASP CSRF cheat
//!   sheet "Verifying Origin With Standard Headers"). Without the public suffix list a sibling
//!   subdomain counts as another site for `Origin`. Accepting `X-Forwarded-Host` as the host is
//!   safe here: a cross-site form or simple fetch cannot set it without a CORS preflight.
//!
//! The sign-in and sign-out pages (`crate::http::sign_in`) use the same cookie for a form: its
//! value in a hidden `csrf_token` field ([`form_token_matches`]), and [`cross_site`] for every
//! post, session cookie or not (a forged sign-in is login CSRF).
//!
//! The `csrf_token` cookie is issued on API responses to a browser that has a session cookie
//! (or is being given one at login) and no token yet. It is not `HttpOnly`: the page's own
//! script reads it to send it back in `X-CSRF-TOKEN`, which is the point of a double submit;
//! another site can neither read it nor set the header.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST, ORIGIN, SET_COOKIE};
use http::{Method, Response, StatusCode, Uri};
use subtle::ConstantTimeEq;

use crate::auth::token::{
    self, RngError, SESSION_COOKIE, SESSION_TOKEN_HEADER, SESSION_TOKEN_QUERY,
};
use crate::headers::X_FORWARDED_HOST;
use crate::http::body::Body;
use crate::http::error::Error;

/// The cookie that holds the token (nosurf's default name, as Coder).
pub const TOKEN_COOKIE: &str = "csrf_token";
/// The header that must repeat it.
pub static TOKEN_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
/// Coder's plain-text answer to a missing or wrong token (§0.4).
pub const BAD_TOKEN: &str = "Something is wrong with your CSRF token. Please refresh the page. If this error persists, try clearing your cookies.";

/// Length of a new token: 32 symbols of `0-9A-Za-z`, about 190 bits.
const TOKEN_LEN: usize = 32;

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Which checks a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// The double submit and the same-site check: the API.
    TokenAndSite,
    /// The same-site check only: proxied requests, whose upstream knows nothing of our token.
    Site,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `X-CSRF-TOKEN` header is missing or does not equal the `csrf_token` cookie.
    Token,
    /// `Origin` or `Sec-Fetch-Site` says the request comes from another site.
    CrossSite,
}

/// What a request carried, to decide whether its response issues the token cookie.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    session: bool,
    token: bool,
}

/// Decides a request: `Ok` unless it is an unsafe request carrying the session cookie and
/// fails one of `checks` (see the module doc). Pure: headers and URI only.
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    checks: Checks,
) -> Result<(), Refusal> {
    if is_safe(method) {
        return Ok(());
    }
    let Some(session) = token::cookie(headers, SESSION_COOKIE) else {
        return Ok(());
    };
    let header = headers
        .get(&SESSION_TOKEN_HEADER)
        .map(HeaderValue::as_bytes);
    let query = token::query_value(uri, SESSION_TOKEN_QUERY);
    if header == Some(session) || query.is_some_and(|q| q.as_bytes() == session) {
        return Ok(());
    }
    if cross_site(uri, headers) {
        return Err(Refusal::CrossSite);
    }
    if checks == Checks::TokenAndSite && !token_matches(headers) {
        return Err(Refusal::Token);
    }
    Ok(())
}

/// A new token for the `csrf_token` cookie.
///
/// # Errors
/// [`RngError`] when the operating system cannot supply randomness.
pub fn new_token() -> Result<String, RngError> {
    token::random_string(TOKEN_LEN)
}

/// Whether a form's `presented` token (the sign-in and sign-out pages' hidden field) equals
/// the `csrf_token` cookie of `headers`, both non-empty; compared in constant time. The same
/// double submit as the API's header, for a form, which cannot set a header.
pub fn form_token_matches(headers: &HeaderMap, presented: &str) -> bool {
    let Some(cookie) = token::cookie(headers, TOKEN_COOKIE) else {
        return false;
    };
    !presented.is_empty() && bool::from(cookie.ct_eq(presented.as_bytes()))
}

/// The `csrf_token` cookie's value on `headers`, when it has one of a token's shape, to be
/// used again rather than replaced (a second tab keeps working).
pub fn current_token(headers: &HeaderMap) -> Option<&str> {
    let value = token::cookie(headers, TOKEN_COOKIE)?;
    (value.len() == TOKEN_LEN && value.iter().all(u8::is_ascii_alphanumeric))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Safe methods (RFC 9110 §9.2.1) as nosurf counts them.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the `X-CSRF-TOKEN` header equals the `csrf_token` cookie, both non-empty;
/// compared in constant time.
fn token_matches(headers: &HeaderMap) -> bool {
    let (Some(cookie), Some(header)) = (
        token::cookie(headers, TOKEN_COOKIE),
        headers.get(&TOKEN_HEADER).map(HeaderValue::as_bytes),
    ) else {
        return false;
    };
    !header.is_empty() && bool::from(cookie.ct_eq(header))
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` that is `null`, unreadable, or names another host than the
/// request's. No `Origin` and no `Sec-Fetch-Site` (an old browser's same-origin form, or not
/// a browser) is not cross-site.
pub fn cross_site(uri: &Uri, headers: &HeaderMap) -> bool {
    let fetch_site = headers.get(&SEC_FETCH_SITE).map(HeaderValue::as_bytes);
    if fetch_site.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"cross-site")) {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<Uri>().ok())
        .and_then(|o| o.host().map(str::to_owned));
    let Some(origin_host) = origin_host else {
        return true;
    };
    let first = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(|v| v.split(',').next())
            .and_then(|h| h.trim().parse::<http::uri::Authority>().ok())
    };
    let hosts = [headers.get(HOST), headers.get(&X_FORWARDED_HOST)]
        .into_iter()
        .flatten()
        .filter_map(first)
        .chain(uri.authority().cloned());
    !hosts
        .into_iter()
        .any(|a| a.host().eq_ignore_ascii_case(&origin_host))
}

// === impl Refusal ===

impl Refusal {
    /// The answer: Coder's plain-text `400` (with Go's `http.Error` framing: a trailing newline
    /// and `nosniff`) for a bad token, `403 Forbidden.` for a cross-site request.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Refusal::Token => {
                let mut resp = Response::new(Body::full(format!("{BAD_TOKEN}\n")));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                let headers = resp.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(
                    http::header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                resp
            }
            Refusal::CrossSite => Error::CrossSite.into_response(),
        }
    }
}

// === impl Carried ===

impl Carried {
    /// What `headers` (a request's) carry.
    pub fn of(headers: &HeaderMap) -> Self {
        Carried {
            session: token::cookie(headers, SESSION_COOKIE).is_some(),
            token: token::cookie(headers, TOKEN_COOKIE).is_some(),
        }
    }

    /// Whether the response (with `headers`) should set a `csrf_token` cookie: the browser has
    /// none, and it has a session cookie or is being given one now (a login).
    pub fn wants_token(&self, response: &HeaderMap) -> bool {
        let sets_session = || {
            response.get_all(SET_COOKIE).iter().any(|v| {
                v.as_bytes()
                    .strip_prefix(SESSION_COOKIE.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
                    .is_some_and(|value| !value.is_empty() && !value.starts_with(b";"))
            })
        };
        !self.token && (self.session || sets_session())
    }
}

#[cfg(test)]
mod tests;
