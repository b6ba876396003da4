//! Which part of Portcullis handles a request on the main listener. Straight-line: check the
//! method, put the path in its canonical form (or refuse it), refuse a forwarding loop, answer
//! what is under `/.portcullis/` (forward-auth, the sign-in pages, the JWKS, 404 for the rest),
//! send the API prefix to the API, apply the route policy (authenticating when it asks for it),
//! forward, record (the metrics, and the access line of [`crate::http::access`]).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::assertion;
use crate::headers;
use crate::http::access::{Decision, Kind, Note};
use crate::http::activity::InFlight;
use crate::http::admit;
use crate::http::api;
use crate::http::app::App;
use crate::http::body::Body;
use crate::http::error::{Error, Result};
use crate::http::peer::Peer;
use crate::http::proxy;
use crate::http::sign_in;
use crate::http::verify;
use crate::http::watch::Ticket;
use crate::metrics::Outcome;
use crate::policy;

/// Handles one request from the main listener. Never fails: every error becomes a response.
pub async fn handle(
    app: Arc<App>,
    peer: Arc<Peer>,
    in_flight: InFlight,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut note = Note::start(&app, &peer, &req);
    let (resp, outcome) = match route(&app, &peer, req, &mut note).await {
        Ok(answer) => answer,
        Err(e) => {
            note.failed(&e);
            let outcome = e.outcome();
            (e.into_response(), outcome)
        }
    };
    app.metrics.request(outcome, resp.status());
    // The one place where the final status and the decision are both known.
    note.finish(resp.status());
    Ok(resp.map(|b| b.with_in_flight(in_flight)))
}

async fn route(
    app: &Arc<App>,
    peer: &Peer,
    mut req: Request<Incoming>,
    note: &mut Note,
) -> Result<(Response<Body>, Outcome)> {
    proxy::check_method(req.method())?;
    proxy::check_head_size(&req, app.config.server.max_header_bytes)?;
    headers::check_framing(req.headers())?;
    // Forward-auth judges the original request's path (in the Envoy form, the rest of this
    // one) through the same canonical form, and counts its own refusals.
    if verify::is_verify_path(req.uri().path()) {
        return Ok((verify::handle(app, peer, req, note).await, Outcome::Local));
    }
    // Everything below, the upstream included, sees the one canonical path.
    canonical_target(&mut req)?;
    app.upstream.check_loop(req.headers())?;
    let path = req.uri().path();
    if path.starts_with(OWN_PREFIX) {
        if verify::is_verify_path(path) {
            return Ok((verify::handle(app, peer, req, note).await, Outcome::Local));
        }
        note.kind(Kind::Own);
        if sign_in::is_page(path) {
            return Ok((
                Box::pin(sign_in::handle(app, peer, req)).await?,
                Outcome::Local,
            ));
        }
        if path == assertion::JWKS_PATH {
            let signer = app.config.identity.assertion.as_deref();
            let jwks = crate::http::jwks::jwks_response(signer, req.method());
            note.decide(Decision::Local);
            return Ok((jwks, Outcome::Local));
        }
        return Err(Error::RouteNotFound);
    }
    if let Some(rest) = api_path(&app.config.api.prefix, path) {
        let rest = rest.to_owned();
        note.ask_caller(&mut req);
        // Routes of the API that Portcullis does not serve (workspaces, templates, ...) belong
        // to the upstream, under the route policy like any other path.
        // Boxed: the API's future is tens of kilobytes, and hyper moves the future of every
        // request (proxied ones included) at least once; inline, its size would be theirs.
        match Box::pin(api::handle(app, peer, req, &rest)).await {
            Ok(resp) => {
                note.kind(Kind::Api);
                note.decide(Decision::Api);
                return Ok((resp, Outcome::Local));
            }
            Err(not_ours) => req = not_ours,
        }
    }
    let auth = match admit::admit(app, req.method(), req.uri(), req.headers(), note).await {
        Ok(auth) => auth,
        Err(e) => {
            note.failed(&e);
            // A browser without a session goes to sign in.
            let redirect = sign_in_redirect(&req, e)?;
            return Ok((redirect, Outcome::Rejected));
        }
    };
    note.decide(Decision::admitted(&auth));
    let ticket = Ticket::new(app, req.method(), req.uri(), auth.as_ref());
    app.upstream
        .forward(req, peer, app, auth.as_ref(), ticket)
        .await
}

/// Paths under this prefix are Portcullis's own (forward-auth, the JWKS): never forwarded.
pub(crate) const OWN_PREFIX: &str = "/.portcullis/";

/// Replaces the request's path with its canonical form ([`policy::canonicalize`]), keeping the
/// query as sent; `400` for a path that has no one reading.
pub(crate) fn canonical_target<B>(req: &mut Request<B>) -> Result<()> {
    let uri = req.uri();
    let path = uri.path();
    // The asterisk form is only for OPTIONS (RFC 9112 §3.2.4): no rule can name it, and an
    // upstream may route any other method with it anywhere.
    if path == "*" && req.method() != Method::OPTIONS {
        return Err(policy::AmbiguousPath("'*' is a request target only for OPTIONS.").into());
    }
    let Cow::Owned(canonical) = policy::canonicalize(path)? else {
        return Ok(());
    };
    let pq = match uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(pq)
            .map_err(|e| Error::internal(format!("rebuilding a canonical path: {e}")))?,
    );
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|e| Error::internal(format!("rebuilding a uri: {e}")))?;
    Ok(())
}

/// The part of `path` after the API prefix, when `path` is under it (segment-wise: the prefix
/// `/api/v2` takes `/api/v2` and `/api/v2/...`, not `/api/v2x`).
pub(crate) fn api_path<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The answer for a request the route policy refused with `error`: when the error is "not
/// signed in" (no session, or an expired one) and the request is a browser's page load
/// ([`sign_in::wants_page`]), a 303 to the sign-in page that comes back to the same path and
/// query; otherwise the error itself. API clients keep getting Coder's 401.
pub fn sign_in_redirect<B>(req: &Request<B>, error: Error) -> Result<Response<Body>, Error> {
    if !matches!(error, Error::Unauthenticated(_))
        || !sign_in::wants_page(req.method(), req.headers())
    {
        return Err(error);
    }
    sign_in::to_sign_in(None, req.uri().path_and_query().map_or("/", |p| p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves the future of every request into its connection's slot (a `memcpy` of its
    /// whole size), so what a proxied request does not need must not be in it. The API's
    /// future (tens of kilobytes: every endpoint), the sign-in pages', a cache miss's store
    /// reads, an upstream connect and an OIDC refresh are boxed where they are awaited; inline,
    /// the request future was 45 KB and its copy 40 % of a proxied request's instructions
    /// (callgrind, `benches/profile.sh`). Debug-build sizes, larger than release ones.
    #[test]
    fn the_future_of_every_request_stays_small() {
        let handle = future_size(handle);
        let api = future_size(api::handle::<Incoming>);
        assert!(
            api > 16 * 1024,
            "the API's future shrank to {api} bytes: tighten the bound"
        );
        assert!(handle <= 6 * 1024, "a request's future is {handle} bytes");
    }

    #[test]
    fn only_paths_under_the_prefix_go_to_the_api() {
        assert_eq!(api_path("/api/v2", "/api/v2/users/me"), Some("/users/me"));
        assert_eq!(api_path("/api/v2", "/api/v2"), Some(""));
        assert_eq!(api_path("/api/v2", "/api/v2x/users"), None);
        assert_eq!(api_path("/api/v2", "/app/api/v2"), None);
    }
}
