//! Password reset with a one-time passcode (spec/coder-api.md §4, with the corrections of
//! issue 5): `POST /users/otp/request` and `POST /users/otp/change-password`. Both are
//! unauthenticated and count in the login group's per-IP limit (§0.3, §0.5). The codes
//! themselves — issuing, checking, the per-email limit, delivery — are [`crate::otp`]'s.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::UserInfo;
use crate::coder::tag_failed;
use crate::http::api::password::invalid_password;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::audit::{Audit, Event, Reason};
use crate::http::body::{Body, ReqBody};
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::metrics::OtpChangeResult;
use crate::store::StoreError;
use crate::users::{validate_email, UserError};

/// `codersdk.RequestOneTimePasscodeRequest`.
#[derive(Deserialize)]
struct RequestCode {
    #[serde(default)]
    email: String,
}

/// `codersdk.ChangePasswordWithOneTimePasscodeRequest`.
#[derive(Deserialize)]
struct ChangeWithCode {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    one_time_passcode: String,
}

/// A refused change: its answer, and the result it is counted under.
struct Refusal(OtpChangeResult, Error);

/// What the audit line of a change names: the email attempted, the user once known.
#[derive(Default)]
struct Attempt {
    email: String,
    user: Option<(Uuid, String)>,
}

// === impl Refusal ===

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        let result = match error.status() {
            StatusCode::TOO_MANY_REQUESTS => OtpChangeResult::Limited,
            s if s.is_server_error() => OtpChangeResult::Error,
            _ => OtpChangeResult::Refused,
        };
        Refusal(result, error)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<UserError> for Refusal {
    fn from(e: UserError) -> Self {
        Error::from(e).into()
    }
}

/// `POST /users/otp/request` (§4.1): `204` for every valid request, whether or not a password
/// user has the email, and whether or not the store, the limit or the delivery let a code
/// through — the difference shows only in the log and in `portcullis_otp_requests_total`.
/// Refused before any of that: the per-IP limit (429, or 503 when the store cannot count),
/// disabled password login (403), a bad body (400).
pub async fn request(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    api::limit_login(app, peer, req.headers()).await?;
    if app.config.passwords.disable_password_auth {
        return Err(password_auth_disabled());
    }
    let body: RequestCode = api::json_body(req).await?;
    let mut invalid = Vec::new();
    validate_email(&body.email, &mut invalid);
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    app.otp.request(&app.store, &body.email).await;
    api::no_content()
}

/// `POST /users/otp/change-password` (§4.2), counted in
/// `portcullis_otp_password_changes_total`.
/// Every outcome is audited as a `password_reset`.
pub async fn change_password(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
    let mut attempt = Attempt::default();
    let answer = change(app, peer, req, &mut attempt).await;
    app.metrics.otp_change(match &answer {
        Ok(_) => OtpChangeResult::Ok,
        Err(Refusal(result, _)) => *result,
    });
    let audit = match &attempt.user {
        Some((id, email)) => Audit::new(Event::PasswordReset, client).user(*id, email),
        None => Audit::new(Event::PasswordReset, client).attempted(&attempt.email),
    };
    match &answer {
        Ok(_) => audit.emit(),
        Err(Refusal(OtpChangeResult::BadCode, _)) => audit.failed(Reason::BadCode).emit(),
        Err(Refusal(_, error)) => audit.failed(Reason::of_status(error.status())).emit(),
    }
    answer.map_err(|Refusal(_, error)| error)
}

/// The checks in the spec's order: disabled password login (403); the body (400
/// `Validation failed.`); the strength rule (400 `Invalid password.`) — judged here against
/// the email only, since naming the username before the code is checked would tell a
/// stranger whether a guess at it is right; the user and the code (400
/// `Incorrect email or one-time passcode.`, the same for an unknown email); the strength rule
/// with the username; not the current password (400 `New password cannot match old
/// password.`). Then in one step: the code is consumed (a code consumed or replaced
/// meanwhile is incorrect), the new hash stored, and every API key of the user deleted and
/// invalidated on every replica.
async fn change(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    attempt: &mut Attempt,
) -> Result<Response<Body>, Refusal> {
    api::limit_login(app, peer, req.headers()).await?;
    if app.config.passwords.disable_password_auth {
        return Err(password_auth_disabled().into());
    }
    let body: ChangeWithCode = api::json_body(req).await?;
    attempt.email.clone_from(&body.email);
    let mut invalid = Vec::new();
    validate_email(&body.email, &mut invalid);
    if body.password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if body.one_time_passcode.is_empty() {
        invalid.push(tag_failed("one_time_passcode", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid).into());
    }
    let users = app.users();
    let by_email = UserInfo {
        username: "",
        email: &body.email,
    };
    if let Some(weak) = users.password_weakness(&body.password, Some(by_email)) {
        return Err(invalid_password(&weak).into());
    }

    let user = crate::otp::user_by_email(&app.store, &body.email).await?;
    let checked = app
        .otp
        .check(&app.store, user.as_ref(), &body.one_time_passcode)
        .await?;
    let (Some(user), Some(checked)) = (user, checked) else {
        return Err(incorrect_code());
    };
    attempt.user = Some((user.id, user.email.clone()));

    let info = UserInfo {
        username: &user.username,
        email: &user.email,
    };
    if let Some(weak) = users.password_weakness(&body.password, Some(info)) {
        return Err(invalid_password(&weak).into());
    }
    if users.is_current_password(&user, &body.password).await? {
        return Err(UserError::SamePassword.into());
    }
    if !app.otp.consume(&app.store, checked).await? {
        return Err(incorrect_code());
    }
    let revoked = users.replace_password(user, &body.password).await?;
    tracing::info!(revoked, "password changed with a one-time passcode");
    Ok(api::no_content()?)
}

fn incorrect_code() -> Refusal {
    Refusal(
        OtpChangeResult::BadCode,
        Error::coder(
            StatusCode::BAD_REQUEST,
            "Incorrect email or one-time passcode.",
            "",
        ),
    )
}

fn password_auth_disabled() -> Error {
    Error::coder(
        StatusCode::FORBIDDEN,
        "Password authentication is disabled.",
        "",
    )
}
