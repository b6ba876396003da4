//! Forward-auth: `/.portcullis/verify`, which an edge proxy (nginx, Traefik, Caddy, Envoy) asks
//! whether a request it holds may go on, before it forwards that request itself. Portcullis
//! decides exactly as it would for a request it proxies ([`router::admit`]: route policy, then
//! the session) and answers:
//!
//! - `200` with an empty body and the identity headers of `identity.headers` (plus
//!   `X-Portcullis-Assertion` when configured, its `aud` the original host), which the edge
//!   copies onto the request it forwards; a public route gets `200` and no identity;
//! - `401` / `403` / `503` with Coder's error body, exactly as inline: nginx replaces it with its
//!   own (`error_page`), Traefik, Caddy and Envoy relay it to the client;
//! - `400` when the original request is not known from a source Portcullis believes;
//! - for a browser's page load without a session ([`sign_in::wants_page`]): `303` to the
//!   sign-in page on the original host (Traefik, Caddy, Envoy pass it on), or for nginx the `401` with
//!   `X-Portcullis-Sign-In` naming the page, which its `error_page 401` redirects to.
//!
//! Nothing is ever forwarded upstream from here, and the subrequest's body is never read.
//!
//! # Where the original request comes from
//!
//! - **`/.portcullis/verify`** (nginx `auth_request`, Traefik / Caddy ForwardAuth): from the
//!   headers the edge sets, believed **only from a peer in `server.trusted_proxies`**: the
//!   target from `X-Original-URI` (nginx), `X-Forwarded-Uri` (Traefik, Caddy) or
//!   `X-Original-URL` (ingress-nginx's `auth-url`: a whole URL, reduced to its path and query),
//!   the method from `X-Original-Method` or `X-Forwarded-Method`, both required. Edges pass the
//!   client's own headers along, so a client could send a convention the edge does not set:
//!   every present header of a kind must agree, or the answer is `400` (never a decision about
//!   a target the client chose). The host (the assertion's audience) is `X-Forwarded-Host`,
//!   else the host of `X-Original-URL`, else the subrequest's `Host` (ingress-nginx sets that
//!   to the auth-url's host).
//! - **`/.portcullis/verify/envoy/<original path>`** (Envoy `ext_authz`, HTTP service with
//!   `path_prefix: /.portcullis/verify/envoy`): the target is the path after the prefix with the
//!   query, the method the subrequest's own, the host its `Host`.
//!
//! Every form answers only a peer in `server.trusted_proxies` (the edge); anyone else gets
//! `400`, so no client can ask for identity headers or an assertion for a host it names.
//!
//! The token is read as for a proxied request (spec §8.3): from the subrequest's cookie and
//! headers, which the edge copies from the client, and from the original target's query
//! (`coder_session_token`, `access_token`).

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::headers::{self, X_FORWARDED_HOST};
use crate::http::access::{Decision, Kind, Note};
use crate::http::admit;
use crate::http::app::App;
use crate::http::body::Body;
use crate::http::error::{Error, Result};
use crate::http::peer::Peer;
use crate::http::sign_in;
use crate::metrics::VerifyDecision;

/// The forward-auth endpoint.
pub const PATH: &str = "/.portcullis/verify";

/// The prefix of Envoy's `ext_authz` requests: the original path follows it.
pub const ENVOY_PREFIX: &str = "/.portcullis/verify/envoy";

/// `X-Original-URI`: the original target, as nginx's `auth_request` examples set it.
pub static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Original-Method`: the original method (nginx).
pub static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// `X-Forwarded-Uri`: the original target (Traefik and Caddy ForwardAuth).
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Forwarded-Method`: the original method (Traefik and Caddy ForwardAuth).
pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Original-URL`: the original URL, `scheme://host/path?query` (ingress-nginx `auth-url`).
/// Also a path override some frameworks act on (IIS, Symfony): see [`verify`].
pub static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// What the edge says the original request was.
#[derive(Debug)]
struct Original {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    https: bool,
}

/// Whether `path` is forward-auth's: `/.portcullis/verify` or anything under it.
pub fn is_verify_path(path: &str) -> bool {
    path.strip_prefix(PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Answers a forward-auth request, counting the decision. Never fails: refusals are responses.
/// The access log's `note` gets the original request, the rule, the user and the decision.
pub async fn handle(
    app: &App,
    peer: &Peer,
    req: Request<Incoming>,
    note: &mut Note,
) -> Response<Body> {
    note.kind(Kind::Verify);
    // The body (if an edge sends one) is dropped unread.
    let (parts, _) = req.into_parts();
    let answer = verify(app, peer, &parts, note).await;
    if let Err(e) = &answer {
        note.failed(e);
    }
    app.metrics.verify(match &answer {
        Ok(_) => VerifyDecision::Allow,
        Err(e) => e.decision(),
    });
    answer.unwrap_or_else(|e| refusal(&parts, peer, e))
}

/// The answer to a refused original request. A browser's page load (see
/// [`sign_in::wants_page`]) that is not signed in is sent to the sign-in page, coming back to
/// the original path and query: by a `303` the edge passes on (Traefik, Caddy: the
/// `X-Forwarded-Uri` form; Envoy), or, for nginx's `auth_request`, which turns anything but
/// 2xx, 401 and 403 into its own 500, by the `401` with [`sign_in::SIGN_IN_HEADER`] naming
/// the page (the recipe's `error_page 401` redirects there). Anything else: the error.
fn refusal(parts: &Parts, peer: &Peer, error: Error) -> Response<Body> {
    if !matches!(error, Error::Unauthenticated(_)) {
        return error.into_response();
    }
    let original = match original(parts, peer) {
        Ok(o) if sign_in::wants_page(&o.method, &parts.headers) => o,
        _ => return error.into_response(),
    };
    let target = original.uri.path_and_query().map_or("/", |p| p.as_str());
    let passes_redirects =
        parts.uri.path().starts_with(ENVOY_PREFIX) || parts.headers.contains_key(&X_FORWARDED_URI);
    if passes_redirects {
        // Absolute, on the host the client asked for: Traefik resolves a relative Location
        // against its own request to Portcullis, which the client cannot reach.
        let origin = original
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|host| {
                let scheme = if original.https { "https" } else { "http" };
                format!("{scheme}://{host}")
            });
        return sign_in::to_sign_in(origin.as_deref(), target).unwrap_or_else(Error::into_response);
    }
    let mut resp = error.into_response();
    if let Ok(location) = HeaderValue::from_str(&sign_in::sign_in_location(target)) {
        resp.headers_mut()
            .insert(sign_in::SIGN_IN_HEADER.clone(), location);
    }
    resp
}

async fn verify(app: &App, peer: &Peer, parts: &Parts, note: &mut Note) -> Result<Response<Body>> {
    let original = original(parts, peer)?;
    note.original(&original.method, &original.uri);
    // Inline, these are removed before the upstream sees them; here the edge forwards the
    // request itself, so one that carries them is refused rather than judged on a method or
    // path the application may not use. X-Original-URL is ingress-nginx's way to say what the
    // target is: it is let through when it names exactly the target judged here (one value,
    // and no other spelling of it), since an app acting on it then acts on that same path. The
    // edge must still clear it on the request it forwards (docs/deployment.md).
    let names_target = |name: &HeaderName| {
        *name == X_ORIGINAL_URL
            && once_each(&parts.headers, &[&X_ORIGINAL_URL])
                .ok()
                .and_then(|v| origin_form(v.first()?).ok())
                .is_some_and(|url| url == original.uri)
    };
    let overridden = parts
        .headers
        .keys()
        .any(|name| headers::is_override(name) && !names_target(name));
    if !app.config.upstream.danger_pass_override_headers && overridden {
        return Err(Error::VerifyRequest(
            "The request carries a method or path override header (X-HTTP-Method-Override, \
             X-Original-URL, ...), which the application could act on instead of the method \
             and path judged here.",
        ));
    }
    let auth = admit::admit(app, &original.method, &original.uri, &parts.headers, note).await?;
    let mut resp = Response::new(Body::empty());
    let Some(auth) = auth else {
        note.decide(Decision::Public);
        return Ok(resp);
    };
    admit::identify(
        resp.headers_mut(),
        &auth,
        &app.config.identity,
        original.host.as_ref(),
        original.https,
    )?;
    note.decide(Decision::Allow);
    Ok(resp)
}

/// Works out the original request from the subrequest (see the module doc).
fn original(parts: &Parts, peer: &Peer) -> Result<Original> {
    let headers = &parts.headers;
    let path = parts.uri.path();
    // Every form answers only the edge: a client that could call verify itself would get
    // identity headers and an assertion for any host it names.
    if !peer.trusted {
        return Err(Error::VerifyRequest(
            "Forward-auth answers only proxies in server.trusted_proxies, and this peer is not \
             one.",
        ));
    }
    if let Some(rest) = path.strip_prefix(ENVOY_PREFIX) {
        if rest.is_empty() || rest.starts_with('/') {
            let path = if rest.is_empty() { "/" } else { rest };
            let target = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            let uri = target.parse::<Uri>().map_err(|_| {
                Error::VerifyRequest("The path after /.portcullis/verify/envoy is not valid.")
            })?;
            return Ok(Original {
                method: parts.method.clone(),
                uri,
                host: request_host(parts),
                https: peer.tls,
            });
        }
    }
    if path != PATH {
        return Err(Error::VerifyRequest(
            "Forward-auth is served at /.portcullis/verify, and for Envoy under \
             /.portcullis/verify/envoy/.",
        ));
    }
    let disagree = |()| {
        Error::VerifyRequest(
            "X-Original-URI, X-Forwarded-Uri and X-Original-URL must be one value each and \
             agree.",
        )
    };
    let targets = once_each(
        headers,
        &[&X_ORIGINAL_URI, &X_FORWARDED_URI, &X_ORIGINAL_URL],
    )
    .map_err(disagree)?
    .into_iter()
    .map(origin_form)
    .collect::<Result<Vec<Uri>>>()?;
    let target = agreed(targets)
        .map_err(disagree)?
        .ok_or(Error::VerifyRequest(
            "The original request target is missing: set X-Original-URI (nginx), X-Forwarded-Uri \
         (Traefik, Caddy) or X-Original-URL (ingress-nginx).",
        ))?;
    let methods = once_each(headers, &[&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD]);
    let method = methods
        .and_then(agreed)
        .map_err(|()| {
            Error::VerifyRequest(
                "X-Original-Method and X-Forwarded-Method must be one value each and agree.",
            )
        })?
        .ok_or(Error::VerifyRequest(
            "The original method is missing: set X-Original-Method (nginx) or \
             X-Forwarded-Method (Traefik, Caddy).",
        ))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::VerifyRequest("The original method is not a valid method."))?;
    let url_host = || {
        let url = Uri::try_from(headers.get(&X_ORIGINAL_URL)?.as_bytes()).ok()?;
        HeaderValue::from_str(url.authority()?.as_str()).ok()
    };
    let host = match headers.get(&X_FORWARDED_HOST) {
        Some(v) => first_of_list(v),
        None => url_host().or_else(|| request_host(parts)),
    };
    Ok(Original {
        method,
        uri: target,
        host,
        https: headers::forwarded_https(headers, peer.tls),
    })
}

/// The value of each of the headers `names` that is present: `Err` when one appears more than
/// once.
fn once_each<'h>(
    headers: &'h HeaderMap,
    names: &[&HeaderName],
) -> Result<Vec<&'h HeaderValue>, ()> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let mut all = headers.get_all(*name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => values.push(v),
            (None, _) => {}
            (Some(_), Some(_)) => return Err(()),
        }
    }
    Ok(values)
}

/// The one value all of `values` are: `Ok(None)` when there are none, `Err` when two differ.
fn agreed<T: PartialEq>(values: Vec<T>) -> Result<Option<T>, ()> {
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    for other in values {
        if other != first {
            return Err(());
        }
    }
    Ok(Some(first))
}

/// A target as an edge reports it (`/path?query`, or absolute form), reduced to origin form.
fn origin_form(target: &HeaderValue) -> Result<Uri> {
    let invalid = || Error::VerifyRequest("The original request target is not a valid URI.");
    let uri = Uri::try_from(target.as_bytes()).map_err(|_| invalid())?;
    let pq: &PathAndQuery = uri.path_and_query().ok_or_else(invalid)?;
    if !pq.path().starts_with('/') {
        return Err(invalid());
    }
    if uri.authority().is_none() {
        return Ok(uri);
    }
    Uri::builder()
        .path_and_query(pq.clone())
        .build()
        .map_err(|_| invalid())
}

/// The subrequest's own host: `Host`, or the HTTP/2 `:authority`.
fn request_host(parts: &Parts) -> Option<HeaderValue> {
    match parts.headers.get(HOST) {
        Some(h) => Some(h.clone()),
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

/// The first member of a comma-separated header value (the client-most host of a chain).
fn first_of_list(v: &HeaderValue) -> Option<HeaderValue> {
    let first = v.as_bytes().split(|b| *b == b',').next()?.trim_ascii();
    (!first.is_empty())
        .then(|| HeaderValue::from_bytes(first).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    /// The target as [`original`] reads it from `pairs`: its origin form, `Ok(None)` when
    /// absent, `Err` on a repeat, a disagreement or nonsense.
    fn target(pairs: &[(&'static str, &'static str)]) -> Result<Option<String>, ()> {
        let headers = map(pairs);
        let values = once_each(
            &headers,
            &[&X_ORIGINAL_URI, &X_FORWARDED_URI, &X_ORIGINAL_URL],
        )?;
        let uris = values
            .into_iter()
            .map(|v| origin_form(v).map_err(|_| ()))
            .collect::<Result<Vec<_>, ()>>()?;
        Ok(agreed(uris)?.map(|u| u.to_string()))
    }

    #[test]
    fn every_target_convention_present_must_agree() {
        let ok = |t: &str| Ok(Some(t.to_owned()));
        let cases = vec![
            (vec![], Ok(None)),
            (vec![("x-original-uri", "/a")], ok("/a")),
            (vec![("x-forwarded-uri", "/b")], ok("/b")),
            (
                vec![("x-original-url", "https://app.example/c?d=1")],
                ok("/c?d=1"),
            ),
            (
                vec![("x-original-uri", "/a"), ("x-forwarded-uri", "/a")],
                ok("/a"),
            ),
            (
                vec![
                    ("x-original-uri", "/a?q"),
                    ("x-original-url", "http://app.example:8080/a?q"),
                ],
                ok("/a?q"),
            ),
            (
                vec![
                    ("x-forwarded-uri", "/a"),
                    ("x-original-url", "http://app.example/a"),
                    ("x-original-uri", "/a"),
                ],
                ok("/a"),
            ),
            (
                vec![("x-original-uri", "/a"), ("x-forwarded-uri", "/public")],
                Err(()),
            ),
            (
                vec![
                    ("x-original-uri", "/admin"),
                    ("x-original-url", "http://app.example/public"),
                ],
                Err(()),
            ),
            (
                vec![
                    ("x-forwarded-uri", "/a?x=1"),
                    ("x-original-url", "http://app.example/a?x=2"),
                ],
                Err(()),
            ),
            (
                vec![
                    ("x-original-url", "http://a/x"),
                    ("x-original-url", "http://a/x"),
                ],
                Err(()),
            ),
            (
                vec![("x-original-uri", "/a"), ("x-original-uri", "/a")],
                Err(()),
            ),
            (
                vec![("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")],
                Err(()),
            ),
            (vec![("x-original-url", "app.example/a")], Err(())),
        ];
        for (pairs, want) in cases {
            assert_eq!(target(&pairs), want, "{pairs:?}");
        }
    }

    #[test]
    fn the_two_method_conventions_must_agree_when_both_are_present() {
        let cases = vec![
            (vec![], Ok(None)),
            (vec![("x-original-method", "GET")], Ok(Some("GET"))),
            (vec![("x-forwarded-method", "PUT")], Ok(Some("PUT"))),
            (
                vec![("x-original-method", "GET"), ("x-forwarded-method", "GET")],
                Ok(Some("GET")),
            ),
            (
                vec![
                    ("x-original-method", "GET"),
                    ("x-forwarded-method", "DELETE"),
                ],
                Err(()),
            ),
            (
                vec![("x-original-method", "GET"), ("x-original-method", "GET")],
                Err(()),
            ),
        ];
        for (pairs, want) in cases {
            let headers = map(&pairs);
            let got = once_each(&headers, &[&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD])
                .and_then(agreed)
                .map(|v| v.map(|v| v.to_str().unwrap()));
            assert_eq!(got, want, "{pairs:?}");
        }
    }

    #[test]
    fn targets_are_reduced_to_origin_form_and_nonsense_is_refused() {
        let cases: [(&str, Option<&str>); 6] = [
            ("/a/b?c=d", Some("/a/b?c=d")),
            ("http://app.example/x?y", Some("/x?y")),
            ("/", Some("/")),
            ("*", None),
            ("relative/path", None),
            ("", None),
        ];
        for (target, want) in cases {
            let got = HeaderValue::from_str(target)
                .ok()
                .and_then(|v| origin_form(&v).ok())
                .map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "{target:?}");
        }
    }

    #[test]
    fn only_the_verify_path_and_paths_under_it_are_forward_auth() {
        for (path, want) in [
            ("/.portcullis/verify", true),
            ("/.portcullis/verify/envoy/app", true),
            ("/.portcullis/verifyx", false),
            ("/.portcullis/jwks.json", false),
            ("/app/.portcullis/verify", false),
        ] {
            assert_eq!(is_verify_path(path), want, "{path}");
        }
    }
}
