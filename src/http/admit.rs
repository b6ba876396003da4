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
use crate::http::access::Note;
use crate::http::app::App;
use crate::http::csrf;
use crate::http::error::{Error, Result};
use crate::metrics::AuthResult;
use crate::policy::{self, Matched, Rule};
use crate::rbac::{self, Action, Object, Resource};
use crate::users;

/// Decides whether a request for `method` and `uri` (with the client's `headers`) may go on:
/// the route policy, authenticating when it asks for it. `Ok(None)` for a public route,
/// `Ok(Some(session))` for an authenticated and authorized one; otherwise the error to answer
/// with (400 for a path with no one reading, 401, 403, or 503 when the store cannot answer).
/// Inline proxying and forward-auth (`/.portcullis/verify`, where `uri` and `method` are the
/// original request's) both ask here, on the same canonical path. The rule that decided and
/// the session's user are noted for the access log.
pub async fn admit(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    note: &mut Note,
) -> Result<Option<Authenticated>> {
    admit_traced(app, (method, uri, headers), None, note).await
}

/// Judges again, for `auth` as the session is now, the route a request for `method` and `uri`
/// was admitted to: for a connection that request opened and that is still open. `Ok` when
/// the route policy still lets the session reach it; [`Error::Forbidden`] when it no longer
/// does; [`Error::StoreUnavailable`] when a capture's look-up could not be answered.
pub async fn readmit(app: &App, method: &Method, uri: &Uri, auth: &Authenticated) -> Result<()> {
    // The session is given, so no rule authenticates, and no header is read.
    let request = (method, uri, &HeaderMap::new());
    admit_traced(app, request, Some(auth), &mut NoTrace(()))
        .await
        .map(drop)
}

/// [`admit`], telling `trace` each step (the `portcullis explain` form; [`admit`] is this
/// function with a trace that does nothing). `given`: the session to judge with, instead of
/// authenticating the request, when a rule needs one (`explain --user`, [`readmit`]).
pub async fn admit_traced<T: Trace>(
    app: &App,
    request: (&Method, &Uri, &HeaderMap),
    given: Option<&Authenticated>,
    trace: &mut T,
) -> Result<Option<Authenticated>> {
    let (method, uri, _) = request;
    let path = policy::canonicalize(uri.path())?;
    trace.canonical(&path);
    let found = app.config.policy.routes.find(method, &path)?;
    let mut session = None;
    let mut how = Judged {
        given,
        session: &mut session,
        trace,
    };
    judge(app, found.rule.as_ref(), false, request, &mut how).await?;
    if let Some(also) = &found.also {
        judge(app, also.as_ref(), true, request, &mut how).await?;
    }
    Ok(session)
}

/// Receives the steps of [`admit_traced`]. Every method does nothing by default.
pub trait Trace: Send {
    /// Receives the RBAC steps of one check.
    type Rbac: rbac::Trace + Send;

    /// The canonical path the rules were asked about.
    fn canonical(&mut self, _path: &str) {}

    /// A rule (`None`: `policy.default`) is applied; `exact_case`: it is the rule that governs
    /// the path with case respected, judged because the first matched only by ignoring case.
    fn rule(&mut self, _route: Option<&Matched<'_>>, _exact_case: bool) {}

    /// The session judged (authenticated, or given).
    fn subject(&mut self, _auth: &Authenticated) {}

    /// An RBAC check of `action` on `object` starts: where its steps go.
    fn check(&mut self, action: Action, object: &Object) -> &mut Self::Rbac;
}

/// The trace of a connection judged again: nothing.
struct NoTrace(());

/// What [`judge`] carries from one rule to the next.
struct Judged<'a, T> {
    given: Option<&'a Authenticated>,
    session: &'a mut Option<Authenticated>,
    trace: &'a mut T,
}

impl Trace for NoTrace {
    type Rbac = ();

    #[inline(always)]
    fn check(&mut self, _: Action, _: &Object) -> &mut () {
        &mut self.0
    }
}

/// Applies one rule (`None`: `policy.default`), authenticating into `session` the first time a
/// rule needs it.
async fn judge<T: Trace>(
    app: &App,
    route: Option<&Matched<'_>>,
    exact_case: bool,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    how: &mut Judged<'_, T>,
) -> Result<()> {
    how.trace.rule(route, exact_case);
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
    let auth = match how.session {
        Some(auth) => auth,
        None => {
            let auth = match how.given {
                Some(given) => given.clone(),
                None => authenticate(app, method, uri, headers).await?,
            };
            how.trace.subject(&auth);
            how.session.insert(auth)
        }
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
    let allowed = subject.decide(action, &object, how.trace.check(action, &object))
        || (object.org.is_none()
            && subject.decide(action, &any_org, how.trace.check(action, &any_org)));
    if allowed {
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
