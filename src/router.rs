//! Which part of Portcullis handles a request on the main listener. Straight-line: check the
//! method, send the API prefix to the API, apply the route policy (authenticating when it
//! asks for it), forward, record.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::api;
use crate::app::App;
use crate::auth::session::{self, AuthError, Authenticated};
use crate::body::Body;
use crate::config::PolicyDefault;
use crate::error::{Error, Result};
use crate::metrics::{AuthResult, Outcome};
use crate::proxy::{self, Peer};
use crate::server::InFlight;

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
    if let Some(rest) = api_path(&app.config.api.prefix, req.uri().path()) {
        let rest = rest.to_owned();
        // Routes of the API that Portcullis does not serve (workspaces, templates, ...) belong
        // to the upstream, under the route policy like any other path.
        match api::handle(app, peer, req, &rest).await {
            Ok(resp) => return Ok((resp, Outcome::Local)),
            Err(not_ours) => req = not_ours,
        }
    }
    let auth = admit(app, req.method(), req.uri(), req.headers()).await?;
    app.upstream
        .forward(req, peer, app, auth.as_ref().map(|a| a.identity()))
        .await
}

/// Decides whether a request for `method` and `uri` (with the client's `headers`) may go on:
/// the route policy, authenticating when it asks for it. `Ok(None)` for a public route,
/// `Ok(Some(session))` for an authenticated and authorized one; otherwise the error to answer
/// with (401, 403, or 503 when the store cannot answer). Inline proxying and forward-auth
/// (`/.portcullis/verify`, where `uri` and `method` are the original request's) both ask here.
pub async fn admit(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>> {
    let _ = method;
    match app.config.policy.default {
        PolicyDefault::Public => Ok(None),
        PolicyDefault::Deny => Err(Error::Forbidden),
        PolicyDefault::Authenticated => authenticate(app, uri, headers).await.map(Some),
    }
}

/// Authenticates the token carried by `headers`/`uri`, counting the result.
async fn authenticate(app: &App, uri: &Uri, headers: &HeaderMap) -> Result<Authenticated> {
    let authenticated = session::authenticate(&app.store, &app.keys, headers, uri).await;
    app.metrics.auth(match &authenticated {
        Ok(_) => AuthResult::Ok,
        Err(e) => e.result(),
    });
    match authenticated {
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
