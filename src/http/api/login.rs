//! Password login, logout and the login methods (spec/coder-api.md §3, §7.1).
//!
//! Every login is counted in `portcullis_logins_total` by result.

use std::sync::Arc;

use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::auth::token::SESSION_COOKIE;
use crate::coder::{looks_like_email, tag_failed};
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::{Body, ReqBody};
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::metrics::LoginResult;
use crate::rbac::scopes as scope;
use crate::store::{Invalidation, LoginType, StoreError, User, UserStatus};
use crate::users::NewKey;

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
    let mut invalid = Vec::new();
    if body.email.is_empty() {
        invalid.push(tag_failed("email", "required", ""));
    } else if !looks_like_email(&body.email) {
        invalid.push(tag_failed("email", "email", &body.email));
    }
    if body.password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid).into());
    }
    let user = check_password(app, &body.email, &body.password).await?;

    let token = new_session_key(app, &user, peer, LoginType::Password).await?;
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

/// Coder's password-login checks (§3.2 steps 2-7) for `email` and `password`: the account
/// throttle, the password (a dummy hash for unknown users, never a success), disabled password
/// auth, the login type, suspension; then a dormant user is activated and an old hash
/// upgraded. `POST /users/login` and `POST /users/{user}/convert-login` (§6.2) both run it.
pub(crate) async fn check_password(app: &App, email: &str, password: &str) -> Result<User, Failed> {
    let account = email.to_lowercase();
    app.limits
        .account_allowed(&app.store, &account)
        .await
        .map_err(Error::from)?;

    let user = app.store.user_by_email(email).await?;
    let hash = user.as_ref().and_then(|u| u.hashed_password.as_deref());
    let verified = match hash {
        Some(hash) if !hash.is_empty() => app.passwords.verify(password, hash).await,
        // Same work as a real check, and never a success (unlike Coder's `hunter2` quirk).
        _ => app.passwords.verify_dummy(password).await,
    }
    .map_err(password_error)?;
    // A user who signs in another way (OIDC, GitHub, none) has no password to match: after the
    // same work as a real check, the login-type answer below, as Coder gives for a converted
    // account (§6.4). That answer tells such an email exists; unknown emails still get 401.
    let passwordless = user
        .as_ref()
        .is_some_and(|u| u.login_type != LoginType::Password);
    let Some(user) = user.filter(|_| verified.ok || passwordless) else {
        app.limits.account_failed(&app.store, &account).await;
        return Err(
            Error::coder(StatusCode::UNAUTHORIZED, "Incorrect email or password.", "").into(),
        );
    };
    if app.config.passwords.disable_password_auth {
        return Err(Error::coder(
            StatusCode::FORBIDDEN,
            "Password authentication is disabled.",
            "",
        )
        .into());
    }
    if user.login_type != LoginType::Password {
        return Err(wrong_login_type(LoginType::Password, user.login_type).into());
    }
    if user.status == UserStatus::Suspended {
        return Err(Failed::suspended());
    }
    app.limits.account_succeeded(&app.store, &account).await;

    let upgraded = if verified.needs_rehash {
        app.passwords
            .hash(password)
            .await
            .inspect_err(|error| tracing::warn!(%error, "could not upgrade a password hash"))
            .ok()
    } else {
        None
    };
    if user.status != UserStatus::Dormant && upgraded.is_none() {
        return Ok(user);
    }
    // Only the fields meant, on the stored user as it is now (an administrator may have
    // suspended it, or someone changed its password, while the hashes ran).
    let (verified_hash, now) = (user.hashed_password.clone(), OffsetDateTime::now_utc());
    let user = app
        .store
        .modify_user(user.id, |stored| {
            let mut changed = false;
            if stored.status == UserStatus::Dormant {
                stored.status = UserStatus::Active;
                changed = true;
            }
            if upgraded.is_some() && stored.hashed_password == verified_hash {
                stored.hashed_password.clone_from(&upgraded);
                changed = true;
            }
            if changed {
                stored.updated_at = now;
            }
            changed
        })
        .await?;
    match user {
        Some(user) if user.status == UserStatus::Suspended => Err(Failed {
            result: LoginResult::Suspended,
            error: suspended(),
        }),
        Some(user) => Ok(user),
        // Deleted while logging in.
        None => {
            Err(Error::coder(StatusCode::UNAUTHORIZED, "Incorrect email or password.", "").into())
        }
    }
}

/// `POST /users/logout` (§7.1): deletes the current key and the user's
/// `coder:application_connect` keys, and clears the cookie. Other sessions stay valid.
pub async fn logout(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let session = auth.session();
    let mut doomed = vec![session.key.id.clone()];
    for key in app.store.keys_of(session.user.id).await? {
        if key.id != session.key.id && key.scopes.iter().any(|s| s == "coder:application_connect") {
            doomed.push(key.id);
        }
    }
    for id in doomed {
        app.store.delete_key(&id).await.map_err(|e| {
            tracing::error!(error = %e, "could not delete an API key at logout");
            Error::coder(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error deleting API key.",
                "",
            )
        })?;
        if let Err(error) = app.store.publish(Invalidation::Key(id)).await {
            // Other replicas fall back to the cache TTL; this one forgets it now.
            tracing::warn!(%error, "could not publish a key invalidation");
        }
    }
    app.keys.apply(&Invalidation::Key(session.key.id.clone()));
    app.oidc_sessions().forget(&session.key).await;
    let mut resp = api::json(StatusCode::OK, &json!({ "message": "Logged out!" }))?;
    resp.headers_mut().append(SET_COOKIE, clear_cookie(app));
    Ok(resp)
}

/// Creates and stores a `coder:all` session key for `user` (§3.2 step 8) with `login_type`
/// (`password`, or `oidc` for single sign-on), lasting `session.lifetime`, and returns the
/// token, the only time its secret exists in the clear.
pub async fn new_session_key(
    app: &App,
    user: &User,
    peer: &Peer,
    login_type: LoginType,
) -> Result<String, Error> {
    let key = NewKey {
        login_type,
        lifetime: app.config.session.lifetime,
        scopes: vec![scope::ALL.to_owned()],
        token_name: String::new(),
        ip_address: peer.addr.ip().to_string(),
        allow_list: Vec::new(),
        not_after: None,
    };
    Ok(app.users().issue_key(user, key).await?)
}

/// The `coder_session_token` cookie carrying `token` (§3.4).
pub(crate) fn session_cookie(app: &App, token: &str) -> HeaderValue {
    set_cookie(
        app,
        &format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite={}",
            app.config.session.cookie_same_site
        ),
    )
}

/// A `Set-Cookie` that clears the session cookie.
pub(crate) fn clear_cookie(app: &App) -> HeaderValue {
    set_cookie(
        app,
        &format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite={}",
            app.config.session.cookie_same_site
        ),
    )
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

fn password_error(e: crate::auth::PasswordError) -> Error {
    match e {
        crate::auth::PasswordError::Busy => Error::coder(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable.",
            "Too many logins at once. Try again shortly.",
        ),
        crate::auth::PasswordError::TooLong => {
            Error::coder(StatusCode::UNAUTHORIZED, "Incorrect email or password.", "")
        }
        other => Error::internal(other),
    }
}
