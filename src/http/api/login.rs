//! Password login, logout and the login methods (spec/coder-api.md §3, §7.1).
//!
//! Every login is counted in `portcullis_logins_total` by result, and written to the audit log
//! ([`crate::http::audit`]) with its reason; so is every logout.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::session::{self, AuthError, Authenticated};
use crate::auth::token::{self, Token, SESSION_COOKIE};
use crate::coder::{self, looks_like_email, tag_failed};
use crate::http::access::Caller;
use crate::http::admit;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::audit::{self, Audit, Event, Reason};
use crate::http::body::{Body, ReqBody};
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::limits::LimitError;
use crate::metrics::LoginResult;
use crate::store::{Invalidation, LoginType, StoreError, User};
use crate::users::{LoginError, Unmatched};

#[derive(Deserialize)]
struct LoginRequest {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Serialize)]
struct LoginResponse {
    session_token: String,
}

/// A refused or failed login: its answer, the result it is counted under, and the reason the
/// audit log gives.
pub(crate) struct Failed {
    result: LoginResult,
    reason: Reason,
    error: Error,
}

// === impl Failed ===

impl Failed {
    /// The right credentials of a suspended user.
    pub(crate) fn suspended() -> Failed {
        Failed {
            result: LoginResult::Suspended,
            reason: Reason::Suspended,
            error: suspended(),
        }
    }

    /// What it is counted under.
    pub(crate) fn result(&self) -> LoginResult {
        self.result
    }

    /// Why it failed, for the audit log.
    pub(crate) fn reason(&self) -> Reason {
        self.reason
    }
}

impl From<Error> for Failed {
    /// Classifies by status; the one result a status cannot tell (suspended) is built
    /// explicitly where it happens.
    fn from(error: Error) -> Self {
        let result = match error.status() {
            StatusCode::TOO_MANY_REQUESTS => LoginResult::Limited,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => LoginResult::BadCredentials,
            StatusCode::FORBIDDEN => LoginResult::Forbidden,
            _ => LoginResult::Error,
        };
        let reason = Reason::of_status(error.status());
        Failed {
            result,
            reason,
            error,
        }
    }
}

impl From<Failed> for Error {
    fn from(failed: Failed) -> Self {
        failed.error
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<LoginError> for Failed {
    /// Coder's answer for each refusal (§3.2), and the result it is counted under.
    fn from(e: LoginError) -> Self {
        let (result, reason, error) = match e {
            LoginError::Limited(e @ LimitError::Limited { .. }) => {
                (LoginResult::Limited, Reason::RateLimited, Error::from(e))
            }
            // The store could not count: an outage, not a throttle.
            LoginError::Limited(e @ LimitError::Store(_)) => {
                (LoginResult::Error, Reason::Unavailable, Error::from(e))
            }
            LoginError::BadCredentials(unmatched) => (
                LoginResult::BadCredentials,
                match unmatched {
                    Unmatched::UnknownUser => Reason::UnknownUser,
                    Unmatched::WrongPassword => Reason::WrongPassword,
                },
                Error::coder(StatusCode::UNAUTHORIZED, coder::BAD_LOGIN, ""),
            ),
            LoginError::Disabled => (
                LoginResult::Forbidden,
                Reason::Disabled,
                Error::coder(
                    StatusCode::FORBIDDEN,
                    "Password authentication is disabled.",
                    "",
                ),
            ),
            LoginError::WrongLoginType(actual) => (
                LoginResult::Forbidden,
                Reason::WrongLoginType,
                wrong_login_type(LoginType::Password, actual),
            ),
            LoginError::Suspended => (LoginResult::Suspended, Reason::Suspended, suspended()),
            LoginError::Busy => (
                LoginResult::Error,
                Reason::Unavailable,
                Error::coder(
                    StatusCode::SERVICE_UNAVAILABLE,
                    coder::UNAVAILABLE,
                    "Too many logins at once. Try again shortly.",
                ),
            ),
            LoginError::Store(e) => (LoginResult::Error, Reason::Unavailable, e.into()),
            LoginError::Password(e) => (LoginResult::Error, Reason::Error, Error::internal(e)),
        };
        Failed {
            result,
            reason,
            error,
        }
    }
}

/// `GET /users/authmethods`: OIDC is enabled when `[oidc]` is configured, with its
/// `sign_in_text` and `icon_url`.
pub fn auth_methods(app: &App) -> ApiResult {
    let oidc = app.config.oidc.as_ref();
    api::json(
        StatusCode::OK,
        &json!({
            "terms_of_service_url": "",
            "password": { "enabled": !app.config.passwords.disable_password_auth },
            "github": { "enabled": false },
            "oidc": {
                "enabled": oidc.is_some(),
                "signInText": oidc.map_or("", |o| o.sign_in_text.as_str()),
                "iconUrl": oidc.map_or("", |o| o.icon_url.as_str()),
            },
        }),
    )
}

/// `POST /users/login` (§3.2), with the abuse limits of the login group: per client IP, and
/// per account after repeated failures (the 429 looks the same whether or not it exists).
pub async fn login(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
    let mut email = String::new();
    let answer = attempt(app, peer, req, &mut email).await;
    record_login(app, client, &email, answer.as_ref().map(|(_, user)| user));
    answer.map(|(resp, _)| resp).map_err(|failed| failed.error)
}

/// Counts a password login in `portcullis_logins_total` by result, and writes it to the audit
/// log: the user when it succeeded, else the email attempted and why it failed.
fn record_login(app: &App, client: IpAddr, email: &str, outcome: Result<&User, &Failed>) {
    app.metrics.login(match outcome {
        Ok(_) => LoginResult::Ok,
        Err(failed) => failed.result,
    });
    let audit = Audit::new(Event::Login, client).method(audit::Method::Password);
    match outcome {
        Ok(user) => audit.user(user.id, &user.email).emit(),
        Err(failed) => audit.attempted(email).failed(failed.reason).emit(),
    }
}

/// The login; `email` gets the email it attempted, once the body is read.
async fn attempt(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    email: &mut String,
) -> Result<(Response<Body>, User), Failed> {
    api::limit_login(app, peer, req.headers()).await?;
    let body: LoginRequest = api::json_body(req).await?;
    email.clone_from(&body.email);
    let (token, user) = check_and_issue(app, peer, &body.email, &body.password).await?;
    let cookie = session_cookie(app, &token);
    let mut resp = api::json(
        StatusCode::CREATED,
        &LoginResponse {
            session_token: token,
        },
    )?;
    resp.headers_mut().append(SET_COOKIE, cookie);
    Ok((resp, user))
}

/// The password login of `POST /users/login` for another front (the sign-in page): the same
/// limits of the login group for the client of `headers`, the same checks and messages, the
/// same session, counted in `portcullis_logins_total` and audited the same way. Returns the new
/// session token, for [`session_cookie`].
pub(crate) async fn password_login(
    app: &App,
    peer: &Peer,
    headers: &http::HeaderMap,
    email: &str,
    password: &str,
) -> Result<String, Error> {
    let answer = async {
        api::limit_login(app, peer, headers).await?;
        check_and_issue(app, peer, email, password).await
    }
    .await;
    let client = peer.client_ip(headers, &app.config.server.trusted_proxies);
    record_login(app, client, email, answer.as_ref().map(|(_, user)| user));
    answer
        .map(|(token, _)| token)
        .map_err(|failed| failed.error)
}

/// Coder's checks of a password login (§3.2: the fields, the password, the user's state and
/// login type), then a new session: its token, and the user.
async fn check_and_issue(
    app: &App,
    peer: &Peer,
    email: &str,
    password: &str,
) -> Result<(String, User), Failed> {
    let mut invalid = Vec::new();
    if email.is_empty() {
        invalid.push(tag_failed("email", "required", ""));
    } else if !looks_like_email(email) {
        invalid.push(tag_failed("email", "email", email));
    }
    if password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid).into());
    }
    let user = app.logins().check_password(email, password).await?;
    let token = new_session_key(app, &user, peer, LoginType::Password).await?;
    Ok((token, user))
}

/// `POST /users/logout` (§7.1): deletes the current key and the user's
/// `coder:application_connect` keys, and clears the cookie. Other sessions stay valid.
pub async fn logout(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    let auth = end_session(app, peer, req.method(), req.uri(), req.headers()).await?;
    Caller::note(&req, &auth);
    let mut resp = api::json(StatusCode::OK, &json!({ "message": "Logged out!" }))?;
    resp.headers_mut().append(SET_COOKIE, clear_cookie(app));
    Ok(resp)
}

/// Ends the session the request (`method`, `uri`, `headers`, from `peer`) carries, as
/// `POST /users/logout` does (§7.1): the key and the user's `coder:application_connect` keys are
/// deleted, from this replica's cache at once and from every other replica's through the
/// store's invalidation, and the logout is audited. The caller clears the cookie. `401` when
/// the request carries no live session.
pub(crate) async fn end_session(
    app: &App,
    peer: &Peer,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<Authenticated, Error> {
    let found = session::authenticate(&app.store, &app.keys, headers, uri).await;
    if let Err(AuthError::Unknown) = found {
        // A logout that deleted the session but could not tell the other replicas answered an
        // error, and the client tries again: the key is gone, so this one answers 401. Tell
        // the replicas now, so that the 401 means signed out on every one of them.
        if let Some(token) = token::extract(headers, uri).and_then(|raw| Token::parse(&raw).ok()) {
            let what = Invalidation::Key(token.id().to_string());
            app.users().forget(what).await?;
        }
    }
    let auth = admit::authenticated(app, method, uri, headers, found).await?;
    let client = peer.client_ip(headers, &app.config.server.trusted_proxies);
    let session = auth.session();
    let mut doomed = Vec::new();
    for key in app.store.keys_of(session.user.id).await? {
        if key.id != session.key.id.as_str()
            && key.scopes.iter().any(|s| s == "coder:application_connect")
        {
            doomed.push(key.id);
        }
    }
    // The session goes last: when a deletion fails (it may still have happened), the session
    // that can retry the logout is the only thing that may be gone.
    doomed.push(session.key.id.to_string());
    // Each key is dropped from this replica's cache before the answer, not when the
    // invalidation comes back over Redis: on a cluster that echo can trail the answer, and the
    // key would still work here meanwhile. Other replicas get the invalidation.
    let users = app.users();
    for id in doomed {
        users.delete_key(&id).await.map_err(|e| {
            Error::coder(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error deleting API key.",
                "",
            )
            .with_cause(e)
        })?;
    }
    app.oidc_sessions().forget(&session.key).await;
    Audit::new(Event::Logout, client)
        .user(session.user.id, &session.user.email)
        .emit();
    Ok(auth)
}

/// Issues a session for `user` (§3.2 step 8) lasting `session.lifetime`, from `peer`
/// ([`crate::users::Users::issue_session`]).
pub async fn new_session_key(
    app: &App,
    user: &User,
    peer: &Peer,
    login_type: LoginType,
) -> Result<String, Error> {
    let lifetime = app.config.session.lifetime;
    let ip = peer.addr.ip();
    Ok(app
        .users()
        .issue_session(user, login_type, lifetime, ip)
        .await?)
}

/// The `coder_session_token` cookie carrying `token` (§3.4), for `session.cookie_domain` when
/// set.
pub(crate) fn session_cookie(app: &App, token: &str) -> HeaderValue {
    set_cookie(
        app,
        &format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite={}{}",
            app.config.session.cookie_same_site,
            cookie_domain(app)
        ),
    )
}

/// A `Set-Cookie` that clears the session cookie (of `session.cookie_domain` when set: a
/// cookie is cleared only by one naming the same domain).
pub(crate) fn clear_cookie(app: &App) -> HeaderValue {
    set_cookie(
        app,
        &format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite={}{}",
            app.config.session.cookie_same_site,
            cookie_domain(app)
        ),
    )
}

/// `; Domain=<session.cookie_domain>`, or nothing (a host-only cookie).
fn cookie_domain(app: &App) -> String {
    app.config
        .session
        .cookie_domain
        .as_ref()
        .map_or_else(String::new, |d| format!("; Domain={d}"))
}

/// A `Set-Cookie` value: `cookie` (name, value, attributes), plus `Secure` when
/// `session.cookie_secure` says so.
pub(crate) fn set_cookie(app: &App, cookie: &str) -> HeaderValue {
    let secure = if app.config.session.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!("{cookie}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Coder's refusal of a login of the wrong type (§3.2 step 5; no trailing period).
pub(crate) fn wrong_login_type(attempted: LoginType, actual: LoginType) -> Error {
    Error::coder(
        StatusCode::FORBIDDEN,
        format!(
            "Incorrect login type, attempting to use \"{}\" but user is of login type \"{}\"",
            attempted.as_str(),
            actual.as_str()
        ),
        "",
    )
}

/// Coder's refusal of a suspended user's login (§3.2 step 7).
pub(crate) fn suspended() -> Error {
    Error::coder(
        StatusCode::UNAUTHORIZED,
        "Your account is suspended. Contact an admin to reactivate your account.",
        "",
    )
}
