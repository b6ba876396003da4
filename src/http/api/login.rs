//! Password login, logout and the login methods (spec/coder-api.md §3, §7.1).
//!
//! Every login is counted in `portcullis_logins_total` by result.

use std::sync::Arc;

use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::session::{self, AuthError};
use crate::auth::token::{self, Token, SESSION_COOKIE};
use crate::coder::{self, looks_like_email, tag_failed};
use crate::http::admit;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::{Body, ReqBody};
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::limits::LimitError;
use crate::metrics::LoginResult;
use crate::store::{Invalidation, LoginType, StoreError, User};
use crate::users::LoginError;

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

/// A refused or failed login: its answer, and the result it is counted under.
pub(crate) struct Failed {
    result: LoginResult,
    error: Error,
}

// === impl Failed ===

impl Failed {
    /// The right credentials of a suspended user.
    pub(crate) fn suspended() -> Failed {
        Failed {
            result: LoginResult::Suspended,
            error: suspended(),
        }
    }

    /// What it is counted under.
    pub(crate) fn result(&self) -> LoginResult {
        self.result
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
        Failed { result, error }
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
        let (result, error) = match e {
            LoginError::Limited(e @ LimitError::Limited { .. }) => {
                (LoginResult::Limited, Error::from(e))
            }
            // The store could not count: an outage, not a throttle.
            LoginError::Limited(e @ LimitError::Store(_)) => (LoginResult::Error, Error::from(e)),
            LoginError::BadCredentials => (
                LoginResult::BadCredentials,
                Error::coder(StatusCode::UNAUTHORIZED, coder::BAD_LOGIN, ""),
            ),
            LoginError::Disabled => (
                LoginResult::Forbidden,
                Error::coder(
                    StatusCode::FORBIDDEN,
                    "Password authentication is disabled.",
                    "",
                ),
            ),
            LoginError::WrongLoginType(actual) => (
                LoginResult::Forbidden,
                wrong_login_type(LoginType::Password, actual),
            ),
            LoginError::Suspended => (LoginResult::Suspended, suspended()),
            LoginError::Busy => (
                LoginResult::Error,
                Error::coder(
                    StatusCode::SERVICE_UNAVAILABLE,
                    coder::UNAVAILABLE,
                    "Too many logins at once. Try again shortly.",
                ),
            ),
            LoginError::Store(e) => (LoginResult::Error, e.into()),
            LoginError::Password(e) => (LoginResult::Error, Error::internal(e)),
        };
        Failed { result, error }
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
    let answer = attempt(app, peer, req).await;
    app.metrics.login(match &answer {
        Ok(_) => LoginResult::Ok,
        Err(failed) => failed.result,
    });
    answer.map_err(|failed| failed.error)
}

async fn attempt(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
) -> Result<Response<Body>, Failed> {
    api::limit_login(app, peer, req.headers()).await?;
    let body: LoginRequest = api::json_body(req).await?;
    let token = check_and_issue(app, peer, &body.email, &body.password).await?;
    let cookie = session_cookie(app, &token);
    let mut resp = api::json(
        StatusCode::CREATED,
        &LoginResponse {
            session_token: token,
        },
    )?;
    resp.headers_mut().append(SET_COOKIE, cookie);
    Ok(resp)
}

/// The password login of `POST /users/login` for another front (the sign-in page): the same
/// limits of the login group for the client of `headers`, the same checks and messages, the
/// same session, counted in `portcullis_logins_total` the same way. Returns the new session
/// token, for [`session_cookie`].
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
    app.metrics.login(match &answer {
        Ok(_) => LoginResult::Ok,
        Err(failed) => failed.result,
    });
    answer.map_err(|failed| failed.error)
}

/// Coder's checks of a password login (§3.2: the fields, the password, the user's state and
/// login type), then a new session: its token.
async fn check_and_issue(
    app: &App,
    peer: &Peer,
    email: &str,
    password: &str,
) -> Result<String, Failed> {
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
    Ok(new_session_key(app, &user, peer, LoginType::Password).await?)
}

/// `POST /users/logout` (§7.1): deletes the current key and the user's
/// `coder:application_connect` keys, and clears the cookie. Other sessions stay valid.
pub async fn logout(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    end_session(app, req.method(), req.uri(), req.headers()).await?;
    let mut resp = api::json(StatusCode::OK, &json!({ "message": "Logged out!" }))?;
    resp.headers_mut().append(SET_COOKIE, clear_cookie(app));
    Ok(resp)
}

/// Ends the session the request (`method`, `uri`, `headers`) carries, as `POST /users/logout`
/// does (§7.1): the key and the user's `coder:application_connect` keys are deleted, from this
/// replica's cache at once and from every other replica's through the store's invalidation.
/// The caller clears the cookie. `401` when the request carries no live session.
pub(crate) async fn end_session(
    app: &App,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<(), Error> {
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
    let session = auth.session();
    let mut doomed = Vec::new();
    for key in app.store.keys_of(session.user.id).await? {
        if key.id != session.key.id && key.scopes.iter().any(|s| s == "coder:application_connect") {
            doomed.push(key.id);
        }
    }
    // The session goes last: when a deletion fails (it may still have happened), the session
    // that can retry the logout is the only thing that may be gone.
    doomed.push(session.key.id.clone());
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
    Ok(())
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
