//! `PUT /users/{user}/password` (spec/coder-api.md §7.7): a user changes their own password
//! with the old one; `owner` and `user-admin` set anyone's. Every API key of the user is then
//! deleted, on every replica at once. And `POST /users/validate-password` (§5), which answers
//! with the same strength rule (`Users::password_weakness`) as every place that sets one.

use std::sync::Arc;

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{PasswordError, UserInfo};
use crate::coder::{tag_failed, Validation};
use crate::http::api::users;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::audit::{Audit, Event, Reason};
use crate::http::body::ReqBody;
use crate::http::error::{Error, ErrorChain};
use crate::http::peer::Peer;
use crate::rbac::roles::OWNER;
use crate::rbac::{Action, Object};
use crate::users::UserError;

/// `codersdk.UpdateUserPasswordRequest`.
#[derive(Deserialize)]
struct UpdatePassword {
    #[serde(default)]
    old_password: String,
    #[serde(default)]
    password: String,
}

/// `PUT /users/{user}/password`, in Coder's order: the caller may change it (else 404), the
/// body, a password-login user, the old password when changing one's own, the strength rule,
/// the old password when given, not the current one; then `204` and every key revoked. It
/// counts in the login group's per-IP limit, since it checks passwords. A change, and a wrong
/// old password, are audited.
pub async fn change(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    param: &str,
) -> ApiResult {
    api::limit_login(app, peer, req.headers()).await?;
    let (auth, user) = users::target(app, &req, param).await?;
    if !api::allowed(&auth, Action::UPDATE_PERSONAL, &Object::user(user.id)) {
        return Err(Error::NotFound);
    }
    if !users::may_act_on(&auth, &user) {
        // Coder's own check and answer for this case (coderd/users.go putUserPassword).
        if user.roles.iter().any(|r| r == OWNER) {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                "Only owners can change the password of another owner.",
                "",
            ));
        }
        return Err(Error::Forbidden);
    }
    let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
    let audit = Audit::new(Event::PasswordChange, client).by(auth.session().user.id);
    let body: UpdatePassword = api::json_body(req).await?;
    if body.password.is_empty() {
        return Err(Error::validation(vec![tag_failed(
            "password", "required", "",
        )]));
    }
    // The stored record, not the cached session's copy: its hash is the one to check.
    let user = app.store.user(user.id).await?.ok_or(Error::NotFound)?;
    if user.login_type != crate::store::LoginType::Password {
        return Err(UserError::NotPasswordUser.into());
    }
    if user.id == auth.session().user.id && body.old_password.is_empty() {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            "Old password is required.",
            "",
        ));
    }
    let info = UserInfo {
        username: &user.username,
        email: &user.email,
    };
    if let Some(weak) = app.users().password_weakness(&body.password, Some(info)) {
        return Err(invalid_password(&weak));
    }
    if !body.old_password.is_empty() {
        let hash = user.hashed_password.as_deref().unwrap_or_default();
        let correct = if hash.is_empty() {
            app.passwords.verify_dummy(&body.old_password).await
        } else {
            app.passwords.verify(&body.old_password, hash).await
        };
        let correct = match correct {
            Ok(v) => v.ok,
            Err(PasswordError::TooLong) => false,
            Err(e) => {
                return Err(match e {
                    PasswordError::Busy => UserError::Password(e).into(),
                    other => Error::coder(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal error with passwords.",
                        "",
                    )
                    .with_cause(other),
                })
            }
        };
        if !correct {
            audit
                .user(user.id, &user.email)
                .failed(Reason::WrongPassword)
                .emit();
            return Err(Error::with_validations(
                StatusCode::BAD_REQUEST,
                "Old password is incorrect.",
                vec![Validation {
                    field: "old_password".into(),
                    detail: "Old password is incorrect.".into(),
                }],
            ));
        }
    }
    app.users()
        .set_password(user.id, &body.password)
        .await
        .map_err(|e| match e {
            UserError::WeakPassword(detail) => invalid_password(&detail),
            other => other.into(),
        })?;
    audit.user(user.id, &user.email).emit();
    api::no_content()
}

/// `codersdk.ValidateUserPasswordRequest`, plus two optional fields of our own: whom the
/// password is for, when the caller is not signed in as that user (a sign-up form).
#[derive(Deserialize)]
struct ValidatePassword {
    #[serde(default)]
    password: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
}

/// `POST /users/validate-password` (§5): `200 {"valid", "details"}` for any password, weak or
/// not; `400` only for a body that is not JSON or has no password. Unauthenticated and in the
/// login rate-limit group (§0.5), so it cannot be used to test guesses quickly.
///
/// `reject_user_info` compares with the signed-in caller when the request carries a valid
/// session, else with the body's optional `username` and `email`, else is skipped. A missing
/// or invalid session is not an error here: the endpoint needs none.
pub async fn validate(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    api::limit_login(app, peer, req.headers()).await?;
    let caller = if app.config.passwords.policy.reject_user_info {
        match api::authenticate(app, &req).await {
            Ok(auth) => Some(auth),
            // No session is fine here; a store that cannot answer is worth a line in the log.
            Err(e @ Error::StoreUnavailable(_)) => {
                tracing::warn!(error = %ErrorChain(&e), "could not check the caller's session for reject_user_info");
                None
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let body: ValidatePassword = api::json_body(req).await?;
    if body.password.is_empty() {
        return Err(Error::validation(vec![tag_failed(
            "password", "required", "",
        )]));
    }
    let info = match &caller {
        Some(auth) => Some(UserInfo {
            username: &auth.session().user.username,
            email: &auth.session().user.email,
        }),
        None if !body.username.is_empty() || !body.email.is_empty() => Some(UserInfo {
            username: &body.username,
            email: &body.email,
        }),
        None => None,
    };
    let weakness = app.users().password_weakness(&body.password, info);
    api::json(
        StatusCode::OK,
        &json!({
            "valid": weakness.is_none(),
            "details": weakness.unwrap_or_default(),
        }),
    )
}

/// `400 Invalid password.` with the strength rule's text on `password`.
pub(super) fn invalid_password(detail: &str) -> Error {
    Error::with_validations(
        StatusCode::BAD_REQUEST,
        "Invalid password.",
        vec![Validation {
            field: "password".into(),
            detail: detail.into(),
        }],
    )
}
