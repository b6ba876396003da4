//! Browser sign-in: the page at `/.portcullis/sign-in` (a password form, and a button into the
//! OIDC login when `[oidc]` is set), the sign-out at `/.portcullis/sign-out`, and the rule
//! that sends a browser there ([`wants_page`], [`to_sign_in`]) instead of answering Coder's
//! JSON 401.
//!
//! - **Sign-in** `POST` (form-urlencoded `email`, `password`, `rd`, `csrf_token`) is the
//!   password login of `POST {api.prefix}/users/login` through the same code
//!   (`login::password_login`: the same limits, checks, messages, session and cookie); on
//!   success `303` to `rd`, else the page again with Coder's message and status (`401` for a
//!   wrong password, `429` past the limits).
//! - **Sign-out** `GET` shows a confirm button; `POST` ends the session as
//!   `POST /users/logout` does (`login::end_session`: the store and every replica's cache),
//!   clears the cookie, and goes back to the sign-in page.
//! - **CSRF**: both forms carry the `csrf_token` cookie's value in a hidden field (a double
//!   submit, as the API's header, [`csrf::form_token_matches`]), and a form posted from
//!   another site is refused ([`csrf::cross_site`]). A forged sign-in would put the victim in
//!   the attacker's account (login CSRF, OWASP CSRF cheat sheet); a forged sign-out is a
//!   nuisance.
//! - **`rd`** is followed only when [`redirect::safe`] says so, else the page goes to `/`.
//!
//! The pages are served with a `Content-Security-Policy` that allows nothing but their inline
//! style, `no-store`, and `frame-ancestors 'none'` (no clickjacking of the form).

pub mod page;
pub mod redirect;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY,
    CONTENT_TYPE, LOCATION, REFERRER_POLICY, RETRY_AFTER, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use openidconnect::url::form_urlencoded;

use crate::auth::token;
use crate::http::api::{self, login};
use crate::http::app::App;
use crate::http::body::{Body, Deadline, ReqBody};
use crate::http::csrf;
use crate::http::error::{Error, Result};
use crate::http::peer::Peer;

/// The sign-in page.
pub const SIGN_IN: &str = "/.portcullis/sign-in";
/// The sign-out page.
pub const SIGN_OUT: &str = "/.portcullis/sign-out";
/// The header by which forward-auth's `401` names the sign-in page, for an edge that cannot
/// pass a redirect on itself (nginx `auth_request`: `auth_request_set` reads it).
pub static SIGN_IN_HEADER: HeaderName = HeaderName::from_static("x-portcullis-sign-in");

/// The largest form read: two fields of text and two tokens.
const MAX_FORM: usize = 16 * 1024;

/// What the pages allow: their inline style and inline images, nothing else.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                      base-uri 'none'; frame-ancestors 'none'";

/// Whether `path` is one of the pages.
pub fn is_page(path: &str) -> bool {
    path == SIGN_IN || path == SIGN_OUT
}

/// Answers a request for one of the pages (`GET`/`HEAD` to show it, `POST` to submit it;
/// `405` otherwise).
pub async fn handle<B: ReqBody>(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<B>,
) -> Result<Response<Body>> {
    let method = req.method().clone();
    match (req.uri().path(), method) {
        (SIGN_IN, Method::GET | Method::HEAD) => show_sign_in(app, req.uri(), req.headers()).await,
        (SIGN_IN, Method::POST) => submit_sign_in(app, peer, req).await,
        (SIGN_OUT, Method::GET | Method::HEAD) => {
            let (csrf, fresh) = csrf_token(req.headers())?;
            Ok(html(
                app,
                StatusCode::OK,
                page::sign_out(&csrf, None),
                fresh.then_some(&csrf),
            ))
        }
        (SIGN_OUT, Method::POST) => submit_sign_out(app, peer, req).await,
        (_, method) => Err(Error::MethodNotServed {
            method,
            allow: "GET, HEAD, POST",
        }),
    }
}

/// Whether a request is a browser loading a page: `GET` or `HEAD` whose `Accept` prefers
/// `text/html` (or `application/xhtml+xml`): of the types it names with the highest quality,
/// the first is HTML (browsers name it first, beside images at the same quality), and no
/// wildcard is ranked above it. A wildcard (`*/*`) says what is acceptable, not what is
/// preferred, so `*/*` alone, or JSON named first, is an API client.
pub fn wants_page(method: &Method, headers: &HeaderMap) -> bool {
    if *method != Method::GET && *method != Method::HEAD {
        return false;
    }
    let items = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let mut best: Option<(f32, bool)> = None;
    let mut wildcard = 0.0_f32;
    for item in items {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.ends_with("/*") {
            wildcard = wildcard.max(q);
            continue;
        }
        if q <= 0.0 || media.is_empty() {
            continue;
        }
        if best.is_none_or(|(top, _)| q > top) {
            let html = media == "text/html" || media == "application/xhtml+xml";
            best = Some((q, html));
        }
    }
    best.is_some_and(|(q, html)| html && q >= wildcard)
}

/// The `303` to the sign-in page that comes back to `target` (a path and query on this site),
/// on `origin` (`https://host`) when given, else relative.
pub fn to_sign_in(origin: Option<&str>, target: &str) -> Result<Response<Body>> {
    let location = sign_in_location(target);
    redirect_to(&format!("{}{location}", origin.unwrap_or("")))
}

/// `/.portcullis/sign-in?rd=<target, encoded>`.
pub fn sign_in_location(target: &str) -> String {
    let rd: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    format!("{SIGN_IN}?rd={rd}")
}

/// `GET /.portcullis/sign-in`: the page; straight on to `rd` for a browser already signed in.
async fn show_sign_in(app: &App, uri: &Uri, headers: &HeaderMap) -> Result<Response<Body>> {
    let query = Query::of(uri.query().unwrap_or("").as_bytes());
    let rd = landing(app, query.get("rd"));
    if token::extract(headers, uri).is_some()
        && crate::http::admit::authenticate(app, &Method::GET, uri, headers)
            .await
            .is_ok()
    {
        return redirect_to(rd);
    }
    let notice = query.get("signed-out").map(|_| "You have been signed out.");
    let (csrf, fresh) = csrf_token(headers)?;
    let body = sign_in_page(app, rd, "", &csrf, None, notice);
    Ok(html(app, StatusCode::OK, body, fresh.then_some(&csrf)))
}

/// `POST /.portcullis/sign-in`.
async fn submit_sign_in<B: ReqBody>(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<B>,
) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let form = read_form(app, body).await?;
    let rd = landing(app, form.get("rd"));
    let email = form.get("email").unwrap_or("");
    if let Some(refused) = forged(&parts.uri, &parts.headers, form.get("csrf_token")) {
        let (csrf, _) = csrf_token(&HeaderMap::new())?;
        let body = sign_in_page(app, rd, email, &csrf, Some(refused), None);
        return Ok(html(app, StatusCode::FORBIDDEN, body, Some(&csrf)));
    }
    let password = form.get("password").unwrap_or("");
    match login::password_login(app, peer, &parts.headers, email, password).await {
        Ok(token) => {
            let mut resp = redirect_to(rd)?;
            resp.headers_mut()
                .append(SET_COOKIE, login::session_cookie(app, &token));
            Ok(resp)
        }
        Err(error) => {
            let failed = Failure::of(error);
            let (csrf, fresh) = csrf_token(&parts.headers)?;
            let body = sign_in_page(app, rd, email, &csrf, Some(&failed.message), None);
            let mut resp = html(app, failed.status, body, fresh.then_some(&csrf));
            if let Some(after) = failed.retry_after {
                resp.headers_mut().insert(RETRY_AFTER, after);
            }
            Ok(resp)
        }
    }
}

/// `POST /.portcullis/sign-out`: ends the session, clears the cookie, back to the sign-in page.
/// A browser that is already signed out is sent there too.
async fn submit_sign_out<B: ReqBody>(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<B>,
) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let form = read_form(app, body).await?;
    if let Some(refused) = forged(&parts.uri, &parts.headers, form.get("csrf_token")) {
        let (csrf, _) = csrf_token(&HeaderMap::new())?;
        let body = page::sign_out(&csrf, Some(refused));
        return Ok(html(app, StatusCode::FORBIDDEN, body, Some(&csrf)));
    }
    match login::end_session(app, peer, &parts.method, &parts.uri, &parts.headers).await {
        Ok(_) | Err(Error::Unauthenticated(_)) => {}
        Err(error) => {
            let failed = Failure::of(error);
            let (csrf, fresh) = csrf_token(&parts.headers)?;
            let body = page::sign_out(&csrf, Some(&failed.message));
            return Ok(html(app, failed.status, body, fresh.then_some(&csrf)));
        }
    }
    let mut resp = redirect_to(&format!("{SIGN_IN}?signed-out"))?;
    resp.headers_mut()
        .append(SET_COOKIE, login::clear_cookie(app));
    Ok(resp)
}

/// Why a posted form is refused as forged, or `None`: it comes from another site, or its
/// `csrf_token` field is not the cookie's.
fn forged(uri: &Uri, headers: &HeaderMap, presented: Option<&str>) -> Option<&'static str> {
    let matches = csrf::form_token_matches(headers, presented.unwrap_or(""));
    (csrf::cross_site(uri, headers) || !matches)
        .then_some("This form has expired or was sent from another site. Please try again.")
}

/// The sign-in page's HTML.
fn sign_in_page(
    app: &App,
    rd: &str,
    email: &str,
    csrf: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> String {
    let oidc = app.config.oidc.as_ref().map(|o| {
        let text = if o.sign_in_text.is_empty() {
            let provider = o
                .issuer
                .parse::<Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned))
                .unwrap_or_else(|| "single sign-on".to_owned());
            format!("Sign in with {provider}")
        } else {
            o.sign_in_text.clone()
        };
        let back: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        (
            text,
            format!(
                "{}/users/oidc/callback?redirect={back}",
                app.config.api.prefix
            ),
        )
    });
    page::sign_in(&page::SignIn {
        email,
        rd,
        csrf,
        error,
        notice,
        password: !app.config.passwords.disable_password_auth,
        oidc: oidc.as_ref().map(|(t, h)| (t.as_str(), h.as_str())),
    })
}

/// Where a sign-in lands: `rd` when [`redirect::safe`], else `/`. Never Portcullis's own
/// pages (`/.portcullis/...`): the sign-in page sends a signed-in browser on to `rd`, so an
/// `rd` naming it would send the browser round in a loop.
fn landing<'a>(app: &App, rd: Option<&'a str>) -> &'a str {
    rd.and_then(|rd| redirect::safe(rd, &app.config.session.allowed_redirect_hosts))
        .filter(|rd| !rd.starts_with(crate::http::router::OWN_PREFIX))
        .unwrap_or("/")
}

/// The browser's CSRF token (`csrf::current_token`), or a new one; `true` when new (the
/// response sets the cookie).
fn csrf_token(headers: &HeaderMap) -> Result<(String, bool)> {
    match csrf::current_token(headers) {
        Some(t) => Ok((t.to_owned(), false)),
        None => Ok((csrf::new_token().map_err(Error::internal)?, true)),
    }
}

/// A page: `status`, `body`, the headers every page has, and the `csrf_token` cookie when
/// `new_csrf` is a token the browser does not hold yet.
fn html(app: &App, status: StatusCode, body: String, new_csrf: Option<&String>) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(headers);
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the form's POST, which the
    // cross-site check must refuse (Fetch, "serializing a request origin").
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if let Some(token) = new_csrf {
        headers.append(SET_COOKIE, api::csrf_cookie(app, token));
    }
    resp
}

/// A `303 See Other` to `location` (RFC 9110 §15.4.4: the browser follows it with `GET`).
fn redirect_to(location: &str) -> Result<Response<Body>> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let value = HeaderValue::from_str(location).map_err(Error::internal)?;
    resp.headers_mut().insert(LOCATION, value);
    no_store(resp.headers_mut());
    Ok(resp)
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Reads a form body (at most [`MAX_FORM`], within `server.header_read_timeout`).
async fn read_form<B: ReqBody>(app: &App, body: B) -> Result<Query> {
    let body = Deadline::new(body, app.config.server.header_read_timeout);
    let bytes: Bytes = Limited::new(body, MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            Error::bad_request(
                "Invalid form.",
                "The form did not arrive whole, in time, and within 16 KiB.",
            )
        })?
        .to_bytes();
    Ok(Query::of(&bytes))
}

/// The fields of a form or a query (`application/x-www-form-urlencoded`); the first of a name
/// counts.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(bytes: &[u8]) -> Query {
        Query(form_urlencoded::parse(bytes).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a page says about a failed login or sign-out: the API's answer to the same failure
/// ([`Error::into_response`], which also logs it), read back.
struct Failure {
    status: StatusCode,
    message: String,
    retry_after: Option<HeaderValue>,
}

impl Failure {
    fn of(error: Error) -> Failure {
        let resp = error.into_response();
        let status = resp.status();
        let retry_after = resp.headers().get(RETRY_AFTER).cloned();
        let body: serde_json::Value = resp
            .into_body()
            .into_full_bytes()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let validations = body["validations"]
            .as_array()
            .is_some_and(|v| !v.is_empty());
        let message = if validations {
            "Enter your email address and your password.".to_owned()
        } else {
            body["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .unwrap_or("Something went wrong. Please try again.")
                .to_owned()
        };
        Failure {
            status,
            message,
            retry_after,
        }
    }
}
