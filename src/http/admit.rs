//! The one decision on a request, shared by inline proxying, forward-auth and the API:
//! [`authenticate`] (who is asking: the token, its session, OIDC refresh, the CSRF rule for
//! cookie sessions, and the `portcullis_auth_total` count) and [`admit`] (whether the route
//! policy lets the request on, authenticating when a rule asks for it); [`readmit`] is the same
//! route decision again, for a connection a request opened that is still open.

use http::{HeaderMap, HeaderValue, Method, Uri};
use uuid::Uuid;

use crate::assertion;
use crate::auth::session::{self, Authenticated};
use crate::config::{IdentityConfig, PolicyDefault};
use crate::http::app::App;
use crate::http::csrf;
use crate::http::error::{Error, Result};
use crate::metrics::AuthResult;
use crate::policy::{self, Matched, Rule};
use crate::rbac::{Object, Resource};
use crate::users;

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
    let mut session = None;
    decide(app, (method, uri, headers), &mut session).await?;
    Ok(session)
}

/// Judges again, for `auth` as the session is now, the route a request for `method` and `uri`
/// was admitted to: for a connection that request opened and that is still open. `Ok` when
/// the route policy still lets the session reach it; [`Error::Forbidden`] when it no longer
/// does; [`Error::StoreUnavailable`] when a capture's look-up could not be answered.
pub async fn readmit(app: &App, method: &Method, uri: &Uri, auth: Authenticated) -> Result<()> {
    // The session is given, so no rule authenticates, and no header is read.
    decide(app, (method, uri, &HeaderMap::new()), &mut Some(auth)).await
}

/// The route policy on a request: the rule its canonical path matches (or the default), and
/// the rule of the exact case when that one matched only in another case.
async fn decide(
    app: &App,
    request: (&Method, &Uri, &HeaderMap),
    session: &mut Option<Authenticated>,
) -> Result<()> {
    let (method, uri, _) = request;
    let path = policy::canonicalize(uri.path())?;
    let found = app.config.policy.routes.find(method, &path)?;
    judge(app, found.rule.as_ref(), request, session).await?;
    if let Some(also) = &found.also {
        judge(app, also.as_ref(), request, session).await?;
    }
    Ok(())
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
/// a username), `{org}` (an organization id, `default` or a name) and `{id}`. A name that resolves to nobody
/// becomes the nil id, which no subject owns or belongs to.
async fn describe(
    app: &App,
    auth: &Authenticated,
    resource: Resource,
    route: &Matched<'_>,
) -> Result<Object> {
    let owner = match route.owner.as_deref() {
        None => None,
        Some("me") => Some(auth.subject().id),
        // An id is judged as it is, without a store read; a name is looked up.
        Some(text) => Some(match text.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => users::user_by_id_or_name(&app.store, text)
                .await
                .map_err(Error::StoreUnavailable)?
                .map_or(Uuid::nil(), |u| u.id),
        }),
    };
    let org = match route.org.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => users::org_by_id_or_name(&app.store, text)
                .await
                .map_err(Error::StoreUnavailable)?
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
/// browser sent with the session cookie from another site is refused ([`csrf`]). The one
/// authentication of every request: proxied, forward-auth and API.
pub async fn authenticate(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Authenticated> {
    let found = session::authenticate(&app.store, &app.keys, headers, uri).await;
    authenticated(app, method, uri, headers, found).await
}

/// The rest of [`authenticate`] for a request whose token was already looked up (`found`):
/// the OIDC session's state, the count, and the cross-site check.
pub async fn authenticated(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    found: std::result::Result<Authenticated, session::AuthError>,
) -> Result<Authenticated> {
    let authenticated = match found {
        Ok(auth) => app.oidc_sessions().follow(auth).await,
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
        Err(e) => Err(e.into()),
    }
}

/// Stamps an admitted request's identity on `headers` (the request forwarded upstream, or
/// forward-auth's answer, which the edge copies onto the request it forwards): the identity
/// headers of `identity.headers`, and the signed assertion when `identity.assertion_key` is
/// set, its audience `host` (the host the client asked for) over `https` or not. Without a
/// host there is no audience: `400`.
pub fn identify(
    headers: &mut HeaderMap,
    auth: &Authenticated,
    identity: &IdentityConfig,
    host: Option<&HeaderValue>,
    https: bool,
) -> Result<()> {
    auth.identity().apply(headers, identity.headers);
    let Some(signer) = &identity.assertion else {
        return Ok(());
    };
    let host = host.ok_or(Error::VerifyRequest(
        "The original host is unknown (no X-Forwarded-Host or Host), so the identity assertion \
         has no audience.",
    ))?;
    let aud = assertion::audience(host.as_bytes(), https);
    let signed = auth
        .assertion(signer, &aud)
        .ok_or_else(|| Error::internal("signing the identity assertion failed"))?;
    headers.insert(assertion::HEADER.clone(), signed);
    Ok(())
}
