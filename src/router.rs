//! Which part of Portcullis handles a request on the main listener. Straight-line: check the
//! method, put the path in its canonical form (or refuse it), refuse a forwarding loop, answer
//! what is under `/.portcullis/` (forward-auth, the JWKS, 404 for the rest), send the API
//! prefix to the API, apply the route policy (authenticating when it asks for it), forward,
//! record.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::api;
use crate::app::App;
use crate::assertion;
use crate::auth::session::{self, AuthError, Authenticated};
use crate::body::Body;
use crate::config::PolicyDefault;
use crate::csrf;
use crate::error::{Error, Result};
use crate::metrics::{AuthResult, Outcome};
use crate::policy::{self, Matched, Rule};
use crate::proxy::{self, Peer};
use crate::rbac::{Object, Resource};
use crate::server::InFlight;
use crate::verify;

/// Handles one request from the main listener. Never fails: every error becomes a response.
pub async fn handle(
    app: Arc<App>,
    peer: Arc<Peer>,
    in_flight: InFlight,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (resp, outcome) = match route(&app, &peer, req).await {
        Ok(answer) => answer,
        Err(e) => {
            let outcome = match e {
                Error::UpstreamUnavailable(_) | Error::UpstreamTimeout(_) => Outcome::UpstreamError,
                _ => Outcome::Rejected,
            };
            (e.into_response(), outcome)
        }
    };
    app.metrics.request(outcome, resp.status());
    Ok(resp.map(|b| b.with_in_flight(in_flight)))
}

async fn route(
    app: &Arc<App>,
    peer: &Peer,
    mut req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome)> {
    proxy::check_method(req.method())?;
    proxy::check_head_size(&req, app.config.server.max_header_bytes)?;
    // Forward-auth judges the original request's path (in the Envoy form, the rest of this
    // one) through the same canonical form, and counts its own refusals.
    if verify::is_verify_path(req.uri().path()) {
        return Ok((verify::handle(app, peer, req).await, Outcome::Local));
    }
    // Everything below, the upstream included, sees the one canonical path.
    canonical_target(&mut req)?;
    app.upstream.check_loop(req.headers())?;
    let path = req.uri().path();
    if path.starts_with(OWN_PREFIX) {
        if verify::is_verify_path(path) {
            return Ok((verify::handle(app, peer, req).await, Outcome::Local));
        }
        if path == assertion::JWKS_PATH {
            let signer = app.config.identity.assertion.as_deref();
            let jwks = assertion::jwks_response(signer, req.method());
            return Ok((jwks, Outcome::Local));
        }
        return Err(Error::RouteNotFound);
    }
    if let Some(rest) = api_path(&app.config.api.prefix, path) {
        let rest = rest.to_owned();
        // Routes of the API that Portcullis does not serve (workspaces, templates, ...) belong
        // to the upstream, under the route policy like any other path.
        match api::handle(app, peer, req, &rest).await {
            Ok(resp) => return Ok((resp, Outcome::Local)),
            Err(not_ours) => req = not_ours,
        }
    }
    let auth = match admit(app, req.method(), req.uri(), req.headers()).await {
        Ok(auth) => auth,
        Err(e) => {
            // A browser without a session goes to sign in, when OIDC is configured.
            let redirect = crate::oidc::session::sign_in_redirect(app, &req, e)?;
            return Ok((redirect, Outcome::Rejected));
        }
    };
    app.upstream.forward(req, peer, app, auth.as_ref()).await
}

/// Paths under this prefix are Portcullis's own (forward-auth, the JWKS): never forwarded.
const OWN_PREFIX: &str = "/.portcullis/";

/// Replaces the request's path with its canonical form ([`policy::canonicalize`]), keeping the
/// query as sent; `400` for a path that has no one reading.
fn canonical_target<B>(req: &mut Request<B>) -> Result<()> {
    let uri = req.uri();
    let path = uri.path();
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
            .map_err(|e| Error::Internal(format!("rebuilding a canonical path: {e}")))?,
    );
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|e| Error::Internal(format!("rebuilding a uri: {e}")))?;
    Ok(())
}

/// Decides whether a request for `method` and `uri` (with the client's `headers`) may go on:
/// the route policy, authenticating when it asks for it. `Ok(None)` for a public route,
/// `Ok(Some(session))` for an authenticated and authorized one; otherwise the error to answer
/// with (400 for a path with no one reading, 401, 403, or 503 when the store cannot answer).
/// Inline proxying and forward-auth (`/.portcullis/verify`, where `uri` and `method` are the
/// original request's) both ask here, on the same canonical path.
pub async fn admit(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>> {
    let path = policy::canonicalize(uri.path())?;
    let found = app.config.policy.routes.find(method, &path)?;
    let mut session = None;
    let request = (method, uri, headers);
    judge(app, found.rule.as_ref(), request, &mut session).await?;
    if let Some(also) = &found.also {
        judge(app, also.as_ref(), request, &mut session).await?;
    }
    Ok(session)
}

/// Applies one rule (`None`: `policy.default`), authenticating into `session` the first time a
/// rule needs it.
async fn judge(
    app: &App,
    route: Option<&Matched<'_>>,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    session: &mut Option<Authenticated>,
) -> Result<()> {
    let rule = match route {
        Some(route) => route.rule,
        None => match app.config.policy.default {
            PolicyDefault::Public => Rule::Public,
            PolicyDefault::Deny => return Err(Error::Forbidden),
            PolicyDefault::Authenticated => Rule::Authenticated,
        },
    };
    if rule == Rule::Public {
        return Ok(());
    }
    let auth = match session {
        Some(auth) => auth,
        None => session.insert(authenticate(app, method, uri, headers).await?),
    };
    let (Rule::Require(resource, action), Some(route)) = (rule, route) else {
        return Ok(());
    };
    let object = describe(app, auth, resource, route).await?;
    // Without an `{org}`, the object may be outside organizations (users, keys) or in any
    // organization the caller belongs to (workspaces, templates): either allows.
    let any_org = Object {
        any_org: true,
        ..object.clone()
    };
    let subject = auth.subject();
    if subject.allows(action, &object) || (object.org.is_none() && subject.allows(action, &any_org))
    {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// The object a `require` rule checks, from the route's captures: `{owner}` (`me`, a user id or
/// a username), `{org}` (an organization id or name) and `{id}`. A name that resolves to nobody
/// becomes the nil id, which no subject owns or belongs to.
async fn describe(
    app: &App,
    auth: &Authenticated,
    resource: Resource,
    route: &Matched<'_>,
) -> Result<Object> {
    let store_error = Error::StoreUnavailable;
    let owner = match route.owner.as_deref() {
        None => None,
        Some("me") => Some(auth.subject().id),
        Some(text) => Some(match text.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => app
                .store
                .user_by_username(text)
                .await
                .map_err(store_error)?
                .map_or(Uuid::nil(), |u| u.id),
        }),
    };
    let org = match route.org.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => app
                .store
                .org_by_name(text)
                .await
                .map_err(store_error)?
                .map_or(Uuid::nil(), |o| o.id),
        }),
    };
    Ok(Object {
        resource,
        id: route.id.as_deref().and_then(|t| t.parse().ok()),
        owner,
        org,
        any_org: false,
    })
}

/// Authenticates the token carried by `headers`/`uri`, counting the result; a write that a
/// browser sent with the session cookie from another site is refused ([`csrf`]).
async fn authenticate(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Authenticated> {
    let authenticated = match session::authenticate(&app.store, &app.keys, headers, uri).await {
        Ok(auth) => crate::oidc::session::follow(app, auth).await,
        Err(e) => Err(e),
    };
    app.metrics.auth(match &authenticated {
        Ok(_) => AuthResult::Ok,
        Err(e) => e.result(),
    });
    match authenticated {
        Ok(auth) if auth.from_cookie() => csrf::check(method, uri, headers, csrf::Checks::Site)
            .map(|()| auth)
            .map_err(|_| Error::CrossSite),
        Ok(auth) => Ok(auth),
        Err(AuthError::Store(e)) => Err(Error::StoreUnavailable(e)),
        Err(e) => Err(Error::Unauthenticated(e.to_string())),
    }
}

/// The part of `path` after the API prefix, when `path` is under it (segment-wise: the prefix
/// `/api/v2` takes `/api/v2` and `/api/v2/...`, not `/api/v2x`).
fn api_path<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_the_prefix_go_to_the_api() {
        assert_eq!(api_path("/api/v2", "/api/v2/users/me"), Some("/users/me"));
        assert_eq!(api_path("/api/v2", "/api/v2"), Some(""));
        assert_eq!(api_path("/api/v2", "/api/v2x/users"), None);
        assert_eq!(api_path("/api/v2", "/app/api/v2"), None);
    }
}
