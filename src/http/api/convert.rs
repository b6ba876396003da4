//! `POST {api.prefix}/users/{user}/convert-login` (spec/coder-api.md §6): moving a password
//! account onto the OpenID Connect provider, in two legs.
//!
//! 1. This endpoint checks the request (every check and message of §6.2, the password through
//!    the same checks as a password login) and stores a `convert-` + 32-character state for
//!    `oidc.convert_state_ttl` (5 minutes) under `oidc-convert:<state>`: held server-side, so
//!    it works across replicas and is single use.
//! 2. The browser then opens `/users/oidc/callback?oidc_merge_state=<state>&redirect=<path>`;
//!    the login flow ([`super::flow`]) uses the state as its OAuth `state`, and on the way
//!    back [`complete`] takes the pending conversion: the provider's email must be the
//!    account's, then the login type becomes `oidc`, the password hash is cleared, and the key
//!    the conversion was asked with is deleted (with the session cookie): the user signs in
//!    again through the provider.
//!
//! Coder carries the state in a signed cookie (its messages about that cookie's signature do
//! not arise here); an unknown, used or expired state answers as Coder's state mismatch.

use std::sync::Arc;

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::oidc::{check_verified, link, random};
use crate::auth::session::Authenticated;
use crate::auth::token::{self, Token};
use crate::coder::tag_failed;
use crate::config::MAX_CONVERT_STATE_TTL;
use crate::http::api::login::{suspended, Failed};
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::oidc::{Login, Oidc};
use crate::store::{keys, LoginType, User, UserStatus};

/// The prefix of a conversion's state (§6.3).
pub const STATE_PREFIX: &str = "convert-";

#[derive(Deserialize)]
struct ConvertRequest {
    #[serde(default)]
    to_type: String,
    #[serde(default)]
    password: String,
}

#[derive(Serialize)]
struct ConvertResponse {
    state_string: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    to_type: &'static str,
    user_id: Uuid,
}

/// A conversion waiting for its callback leg, under `oidc-convert:<state>`.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    user_id: Uuid,
    from: LoginType,
    to: LoginType,
    /// The key the conversion was asked with: deleted when it completes.
    key_id: String,
}

/// `POST /users/{user}/convert-login` (§6.1-6.3).
pub async fn convert_login(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    param: &str,
) -> ApiResult {
    let (auth, user) = permitted(app, &req, param).await?;
    // It checks a password (an argon2 hash): counted in the login group, as a login is.
    api::limit_login(app, peer, req.headers()).await?;
    let body: ConvertRequest = api::json_body(req).await?;
    let mut invalid = Vec::new();
    if body.to_type.is_empty() {
        invalid.push(tag_failed("to_type", "required", ""));
    }
    if body.password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    let to = match body.to_type.as_str() {
        "oidc" => LoginType::Oidc,
        "github" => LoginType::Github,
        t @ ("password" | "none" | "token") => {
            return Err(bad_request(&format!("Cannot convert to login type {t:?}.")))
        }
        t => return Err(bad_request(&format!("Unknown login type {t:?}."))),
    };
    let user = app
        .logins()
        .check_password(&user.email, &body.password)
        .await
        .map_err(Failed::from)?;
    if user.login_type != LoginType::Password {
        // Unreachable while check_password refuses other login types; kept as Coder keeps it.
        return Err(bad_request(
            "User account must have password based authentication.",
        ));
    }
    let ttl = app
        .config
        .oidc
        .as_ref()
        .map_or(MAX_CONVERT_STATE_TTL, |o| o.convert_state_ttl);
    let state = format!("{STATE_PREFIX}{}", random(32)?);
    let pending = Pending {
        user_id: user.id,
        from: user.login_type,
        to,
        key_id: auth.session().key.id.to_string(),
    };
    let record = serde_json::to_vec(&pending).map_err(Error::internal)?;
    app.store
        .put_ephemeral(&pending_key(&state), &record, ttl)
        .await?;
    let expires_at =
        OffsetDateTime::now_utc() + time::Duration::try_from(ttl).map_err(Error::internal)?;
    api::json(
        StatusCode::CREATED,
        &ConvertResponse {
            state_string: state,
            expires_at,
            to_type: to.as_str(),
            user_id: user.id,
        },
    )
}

/// Who may ask to convert `{user}`: a caller who may read that user (§6.2 adds that the
/// caller must know the user's password). The one place to change for the RBAC evaluator.
async fn permitted(
    app: &App,
    req: &Request<impl ReqBody>,
    param: &str,
) -> Result<(Authenticated, User), Error> {
    crate::http::api::users::target(app, req, param).await
}

/// Whether an OAuth `state` belongs to a conversion.
pub fn is_convert_state(state: &str) -> bool {
    state.starts_with(STATE_PREFIX)
}

/// Checks, when the callback starts with `oidc_merge_state`, that the conversion it names is
/// pending (it is taken only when the provider comes back).
pub async fn check_pending(app: &App, state: &str) -> Result<(), Error> {
    if is_convert_state(state)
        && app
            .store
            .get_ephemeral(&pending_key(state))
            .await?
            .is_some()
    {
        return Ok(());
    }
    Err(state_mismatch())
}

/// Completes the conversion named by `state` for the provider account of `login`, with
/// `email` (§6.4): the email must be verified ([`check_verified`]) and the account's, and the
/// provider account is linked to the user ([`link`]); then the user switches to `oidc`, the
/// password hash is cleared, and the key the conversion was asked with and the one of this
/// request's session cookie are deleted.
pub async fn complete(
    app: &App,
    oidc: &Oidc,
    req: &Request<impl ReqBody>,
    state: &str,
    login: &Login,
    email: &str,
) -> Result<(), Error> {
    let record = app
        .store
        .take_ephemeral(&pending_key(state))
        .await?
        .ok_or_else(state_mismatch)?;
    let pending: Pending = serde_json::from_slice(&record).map_err(Error::internal)?;
    check_verified(oidc, &login.claims, email)?;
    let Some(user) = app.store.user_by_email(email).await? else {
        return Err(bad_request(&format!(
            "The oidc account with the email {email:?} does not match the email of the account you are trying to convert. Contact your administrator to resolve this issue."
        )));
    };
    let refused = |from: LoginType| {
        Error::coder(
            StatusCode::FORBIDDEN,
            format!(
                "Request to convert login type from {} to oidc failed.",
                from.as_str()
            ),
            "",
        )
    };
    if user.id != pending.user_id || pending.to != LoginType::Oidc {
        return Err(refused(user.login_type));
    }
    if user.status == UserStatus::Suspended {
        return Err(suspended());
    }
    link(app, &user, &login.identity).await?;
    // Only the fields meant, and only while the stored user is still what the conversion
    // was asked for: of the login type it had, and not suspended.
    let (from, now) = (pending.from, OffsetDateTime::now_utc());
    let mut converted = false;
    let user = app
        .store
        .modify_user(user.id, |stored| {
            converted = stored.login_type == from && stored.status != UserStatus::Suspended;
            if converted {
                stored.login_type = LoginType::Oidc;
                stored.hashed_password = None;
                stored.updated_at = now;
            }
            converted
        })
        .await?
        .ok_or(Error::NotFound)?;
    if !converted {
        return Err(if user.login_type == from {
            suspended()
        } else {
            refused(user.login_type)
        });
    }
    let mut doomed = vec![pending.key_id];
    if let Some(current) = token::extract(req.headers(), req.uri())
        .and_then(|raw| Token::parse(&raw).ok())
        .map(|t| t.id().as_str().to_owned())
    {
        if app
            .store
            .key(&current)
            .await?
            .is_some_and(|k| k.user_id == user.id)
        {
            doomed.push(current);
        }
    }
    for id in doomed {
        app.store.delete_key(&id).await?;
    }
    app.oidc_sessions().invalidate_user(user.id).await;
    tracing::info!(user_id = %user.id, "login type converted from password to oidc");
    Ok(())
}

fn pending_key(state: &str) -> String {
    keys::oidc_convert(state)
}

fn state_mismatch() -> Error {
    Error::coder(
        StatusCode::FORBIDDEN,
        "Request to convert login type failed. State mismatch.",
        "",
    )
}

fn bad_request(message: &str) -> Error {
    Error::coder(StatusCode::BAD_REQUEST, message.to_owned(), "")
}
