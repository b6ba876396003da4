//! Users: the first user, reading, creating, suspending, activating and deleting users
//! (spec/coder-api.md §7.2, §7.6, §7.8) and Coder's `User` JSON shape. What a caller may do to
//! a user is the RBAC evaluator's answer for the user object (`user:read`, `user:create`, ...).

use std::sync::Arc;

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::session::Authenticated;
use crate::auth::UserInfo;
use crate::coder::tag_failed;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::rbac::roles::{self, Kind};
use crate::rbac::{Action, Object, Resource};
use crate::store::keys::FIRST_USER_CLAIM;
use crate::store::{Invalidation, LoginType, Membership, User, UserStatus};
use crate::users::{validate_email, validate_name, validate_username, NewUser, UserError};

const FIRST_USER_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Coder's `User` (§7.2).
#[derive(Debug, Serialize)]
pub struct UserJson {
    id: Uuid,
    username: String,
    name: String,
    email: String,
    avatar_url: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_seen_at: OffsetDateTime,
    status: &'static str,
    login_type: &'static str,
    theme_preference: String,
    organization_ids: Vec<Uuid>,
    roles: Vec<RoleJson>,
}

/// A site role as Coder's `User.roles` shows it: `{name, display_name}`.
#[derive(Debug, Serialize)]
pub struct RoleJson {
    name: String,
    display_name: String,
}

#[derive(Deserialize)]
struct CreateFirstUser {
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `codersdk.CreateUserRequestWithOrgs` (§7.8).
#[derive(Deserialize)]
struct CreateUser {
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_type: String,
    /// Coder's deprecated form of `"login_type": "none"`, still sent by older clients.
    #[serde(default)]
    disable_login: bool,
    #[serde(default)]
    organization_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    user_status: Option<String>,
}

// === impl UserJson ===

impl UserJson {
    /// The API view of a stored user: never the password hash.
    pub fn new(user: &User, memberships: &[Membership]) -> Self {
        UserJson {
            id: user.id,
            username: user.username.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            avatar_url: user.avatar_url.clone(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_seen_at: user.last_seen_at,
            status: user.status.as_str(),
            login_type: user.login_type.as_str(),
            theme_preference: user.theme_preference.clone(),
            organization_ids: memberships.iter().map(|m| m.organization_id).collect(),
            roles: user.roles.iter().map(|r| RoleJson::site(r)).collect(),
        }
    }
}

// === impl RoleJson ===

impl RoleJson {
    /// The site role `name`, with its built-in display name (the name itself for any other).
    pub fn site(name: &str) -> Self {
        RoleJson {
            name: name.to_owned(),
            display_name: roles::find(name, Kind::Site)
                .map_or(name, |r| r.display_name)
                .to_owned(),
        }
    }
}

/// `GET /users/first` (§7.6).
pub async fn first_exists(app: &Arc<App>) -> ApiResult {
    if !app.store.has_users().await? {
        return Err(Error::coder(
            StatusCode::NOT_FOUND,
            "The initial user has not been created!",
            "",
        ));
    }
    api::json(
        StatusCode::OK,
        &json!({ "message": "The initial user has already been created!" }),
    )
}

/// `POST /users/first` (§7.6): the first user becomes an active `owner` and a member of the
/// default organization, created with it. Exactly one request wins, across replicas.
///
/// It hashes a password with argon2 before it knows whether it will be refused, so it counts in
/// the login group's per-client limit.
pub async fn create_first(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    api::limit_login(app, peer, req.headers()).await?;
    let body: CreateFirstUser = api::json_body(req).await?;
    let mut invalid = Vec::new();
    validate_email(&body.email, &mut invalid);
    validate_username(&body.username, &mut invalid);
    validate_name(&body.name, &mut invalid);
    if body.password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    let user = UserInfo {
        username: &body.username,
        email: &body.email,
    };
    if let Some(weak) = app.users().password_weakness(&body.password, Some(user)) {
        return Err(UserError::WeakPassword(weak).into());
    }
    let already = || {
        Error::coder(
            StatusCode::CONFLICT,
            "The initial user has already been created.",
            "",
        )
    };
    if app.store.has_users().await? {
        return Err(already());
    }
    let claim = Uuid::new_v4();
    if !app
        .store
        .set_if_absent(
            FIRST_USER_CLAIM,
            claim.as_bytes(),
            Some(FIRST_USER_CLAIM_TTL),
        )
        .await?
    {
        return Err(already());
    }
    let (user, memberships) = app
        .users()
        .create(NewUser {
            email: body.email,
            username: body.username,
            name: body.name,
            password: Some(body.password),
            login_type: LoginType::Password,
            status: UserStatus::Active,
            roles: vec![roles::OWNER.into()],
            organization_ids: Vec::new(),
        })
        .await?;
    let org = memberships.first().map(|m| m.organization_id);
    api::json(
        StatusCode::CREATED,
        &json!({ "user_id": user.id, "organization_id": org }),
    )
}

/// `GET /users/{user}` (§7.2, §0.6): `me`, a UUID or a username. Others are visible to the
/// site roles that may read users; to anyone else they do not exist.
pub async fn get(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = target(app, &req, param).await?;
    let session = auth.session();
    if user.id == session.user.id {
        return api::json(StatusCode::OK, &UserJson::new(&user, &session.memberships));
    }
    let memberships = app.store.memberships_of(user.id).await?;
    api::json(StatusCode::OK, &UserJson::new(&user, &memberships))
}

/// `POST /users` (§7.8): an admin creates a user, `dormant` until the first login unless
/// `user_status` says otherwise, in the given organizations or the default one.
pub async fn create(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    if !api::allowed(&auth, Action::CREATE, &Object::new(Resource::USER)) {
        return Err(Error::coder(
            StatusCode::FORBIDDEN,
            "You are not authorized to create users.",
            "",
        ));
    }
    let body: CreateUser = api::json_body(req).await?;
    let mut invalid = Vec::new();
    validate_email(&body.email, &mut invalid);
    validate_username(&body.username, &mut invalid);
    validate_name(&body.name, &mut invalid);
    let status = match body.user_status.as_deref() {
        None | Some("") | Some("dormant") => UserStatus::Dormant,
        Some("active") => UserStatus::Active,
        Some("suspended") => UserStatus::Suspended,
        Some(other) => {
            invalid.push(tag_failed("user_status", "oneof", other));
            UserStatus::Dormant
        }
    };
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    let login_type = match body.login_type.as_str() {
        "" if body.disable_login => "none",
        "" => "password",
        other => other,
    };
    if login_type != "password" && !body.password.is_empty() {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            format!("Password cannot be set for non-password (\"{login_type}\") authentication."),
            "",
        ));
    }
    if login_type == "password" && app.config.passwords.disable_password_auth {
        return Err(Error::coder(
            StatusCode::FORBIDDEN,
            "Password based authentication is disabled! Unable to provision new users with password authentication.",
            "",
        ));
    }
    let login_type = match login_type {
        "password" => LoginType::Password,
        "none" => LoginType::None,
        "github" => LoginType::Github,
        "oidc" if app.config.oidc.is_some() => LoginType::Oidc,
        "oidc" => {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                "You must configure OIDC before creating OIDC users.",
                "",
            ))
        }
        other => {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                format!("Unsupported login type \"{other}\" for manually creating new users."),
                "",
            ))
        }
    };
    let (user, memberships) = app
        .users()
        .create(NewUser {
            email: body.email,
            username: body.username,
            name: body.name,
            password: Some(body.password).filter(|p| !p.is_empty()),
            login_type,
            status,
            roles: Vec::new(),
            organization_ids: body.organization_ids.unwrap_or_default(),
        })
        .await?;
    api::json(StatusCode::CREATED, &UserJson::new(&user, &memberships))
}

/// `DELETE /users/{user}`: deletes the user with every key and membership; nobody may delete
/// themselves. `200 {"message":"User has been deleted!"}`, as Coder.
pub async fn delete(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = match target(app, &req, param).await {
        // A deletion that was stored but could not tell the other replicas answered an error,
        // and this may be the client's retry: the user is gone, so this one answers 404. Tell
        // the replicas again first, so that the user's sessions end everywhere.
        Err(Error::NotFound) => {
            if let Ok(id) = param.parse::<Uuid>() {
                app.users().forget(Invalidation::User(id)).await?;
            }
            return Err(Error::NotFound);
        }
        found => found?,
    };
    if user.id == auth.session().user.id {
        return Err(Error::coder(
            StatusCode::FORBIDDEN,
            "You cannot delete yourself!",
            "",
        ));
    }
    if !api::allowed(&auth, Action::DELETE, &Object::user(user.id)) || !may_act_on(&auth, &user) {
        return Err(Error::Forbidden);
    }
    app.users().delete(user.id).await?;
    api::json(
        StatusCode::OK,
        &json!({ "message": "User has been deleted!" }),
    )
}

/// `PUT /users/{user}/status/suspend` and `/status/activate`: the updated `User`. Nobody may
/// suspend themselves, and an `owner` cannot be suspended until the role is removed (as
/// Coder). A suspension ends every session of the user at once, on every replica.
pub async fn set_status(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    param: &str,
    status: UserStatus,
) -> ApiResult {
    let (auth, user) = target(app, &req, param).await?;
    if status == UserStatus::Suspended {
        if user.id == auth.session().user.id {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                "You cannot suspend yourself.",
                "",
            ));
        }
        if user.roles.iter().any(|r| r == roles::OWNER) {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                "You cannot suspend a user with the \"owner\" role. You must remove the role first.",
                "",
            ));
        }
    }
    if !api::allowed(&auth, Action::UPDATE, &Object::user(user.id)) || !may_act_on(&auth, &user) {
        return Err(Error::Forbidden);
    }
    let user = app.users().set_status(user.id, status).await?;
    let memberships = app.store.memberships_of(user.id).await?;
    api::json(StatusCode::OK, &UserJson::new(&user, &memberships))
}

/// Whether the caller may act on `user` (delete, suspend, activate, change the password or
/// the roles of) under the rule written once in [`roles::may_act_on`]: only a caller that could
/// grant every site role `user` holds. Always true for the caller's own record; the endpoints
/// have their own rules about acting on oneself.
pub fn may_act_on(auth: &Authenticated, user: &User) -> bool {
    let session = auth.session();
    if user.id == session.user.id {
        return true;
    }
    let actor: Vec<_> = roles::site_roles(&session.user.roles).collect();
    roles::may_act_on(&actor, &user.roles, Kind::Site)
}

/// Authenticates the request, resolves `{user}` (§0.6) and checks that the caller may see
/// that user: a user the caller may not read does not exist for them (§7.2). Reading is
/// decided by the caller's roles alone, not its key's scopes, so that any token can find out
/// whose it is (`/users/me`); what the caller then does to the user is checked in full.
pub async fn target(
    app: &App,
    req: &Request<impl ReqBody>,
    param: &str,
) -> Result<(Authenticated, User), Error> {
    let auth = api::authenticate(app, req).await?;
    let user = resolve(app, &auth, param).await?;
    if !auth
        .subject()
        .roles_allow(Action::READ, &Object::user(user.id))
    {
        return Err(Error::NotFound);
    }
    Ok((auth, user))
}

/// Resolves the `{user}` path parameter (§0.6): `me`, a user id, or a username
/// (case-insensitively). Every route that takes it needs a session, which is checked first,
/// so `me` always has one here (Coder's `Cannot use "me" without a valid session.` answers
/// only routes where a session is optional, and there are none).
pub async fn resolve(app: &App, auth: &Authenticated, param: &str) -> Result<User, Error> {
    if param == "me" {
        return Ok(User::clone(&auth.session().user));
    }
    crate::users::user_by_id_or_name(&app.store, param)
        .await?
        .ok_or(Error::NotFound)
}
