//! Users: the first user, reading a user (spec/coder-api.md §7.2, §7.6), and Coder's `User`
//! JSON shape.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::login::looks_like_email;
use crate::api::{self, tag_failed, ApiError, ApiResult, Validation};
use crate::app::App;
use crate::auth::session::Authenticated;
use crate::store::{LoginType, Membership, Organization, User, UserStatus};

/// The store's claim that makes first-user creation single-winner across replicas. It
/// expires, so that a creation that failed half-way (a store blip) can be retried; once the
/// user exists, the user list answers instead.
const FIRST_USER_CLAIM: &str = "first-user";
const FIRST_USER_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Site roles allowed to read any user (§7.2).
const READ_ANY_USER: [&str; 4] = ["owner", "user-admin", "auditor", "template-admin"];

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

#[derive(Debug, Serialize)]
struct RoleJson {
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
            roles: user
                .roles
                .iter()
                .map(|r| RoleJson {
                    name: r.clone(),
                    display_name: display_name(r),
                })
                .collect(),
        }
    }
}

fn display_name(role: &str) -> String {
    match role {
        "owner" => "Owner",
        "auditor" => "Auditor",
        "template-admin" => "Template Admin",
        "user-admin" => "User Admin",
        "member" => "Member",
        other => other,
    }
    .to_owned()
}

/// `GET /users/first` (§7.6).
pub async fn first_exists(app: &Arc<App>) -> ApiResult {
    if app.store.users().await?.is_empty() {
        return Err(ApiError::new(
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
pub async fn create_first(app: &Arc<App>, req: Request<Incoming>) -> ApiResult {
    let body: CreateFirstUser = api::json_body(req).await?;
    let mut invalid = Vec::new();
    validate_email(&body.email, &mut invalid);
    validate_username(&body.username, &mut invalid);
    validate_name(&body.name, &mut invalid);
    if body.password.is_empty() {
        invalid.push(tag_failed("password", "required", ""));
    }
    if !invalid.is_empty() {
        return Err(ApiError::validation(invalid));
    }
    if let Some(weak) = password_weakness(&body.password) {
        return Err(ApiError::with_validations(
            StatusCode::BAD_REQUEST,
            "Password not strong enough!",
            vec![Validation {
                field: "password".into(),
                detail: weak.into(),
            }],
        ));
    }
    let already = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "The initial user has already been created.",
            "",
        )
    };
    if !app.store.users().await?.is_empty() {
        return Err(already());
    }
    let hash = app
        .passwords
        .hash(&body.password)
        .await
        .map_err(ApiError::internal)?;
    let user_id = Uuid::new_v4();
    if !app
        .store
        .set_if_absent(
            FIRST_USER_CLAIM,
            user_id.as_bytes(),
            Some(FIRST_USER_CLAIM_TTL),
        )
        .await?
    {
        return Err(already());
    }
    let now = OffsetDateTime::now_utc();
    let org = match app.store.default_org().await? {
        Some(org) => org,
        None => {
            let org = Organization {
                id: Uuid::new_v4(),
                name: "coder".into(),
                display_name: "Coder".into(),
                description: "Builtin default organization.".into(),
                is_default: true,
                created_at: now,
                updated_at: now,
            };
            app.store.create_org(&org).await?;
            org
        }
    };
    let user = User {
        id: user_id,
        username: body.username,
        email: body.email,
        name: body.name,
        avatar_url: String::new(),
        created_at: now,
        updated_at: now,
        last_seen_at: now,
        status: UserStatus::Active,
        login_type: LoginType::Password,
        hashed_password: Some(hash),
        roles: vec!["owner".into()],
        theme_preference: String::new(),
    };
    app.store.create_user(&user).await?;
    app.store
        .add_member(&Membership {
            user_id,
            organization_id: org.id,
            roles: Vec::new(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    api::json(
        StatusCode::CREATED,
        &json!({ "user_id": user_id, "organization_id": org.id }),
    )
}

/// `GET /users/{user}` (§7.2, §0.6): `me`, a UUID or a username. Others are visible to the
/// site roles that may read users; to anyone else they do not exist.
pub async fn get(app: &Arc<App>, req: Request<Incoming>, param: &str) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let user = resolve(app, &auth, param).await?;
    let session = auth.session();
    if user.id == session.user.id {
        return api::json(StatusCode::OK, &UserJson::new(&user, &session.memberships));
    }
    if !session
        .user
        .roles
        .iter()
        .any(|r| READ_ANY_USER.contains(&r.as_str()))
    {
        return Err(not_found());
    }
    let memberships = app.store.memberships_of(user.id).await?;
    api::json(StatusCode::OK, &UserJson::new(&user, &memberships))
}

/// Resolves the `{user}` path parameter (§0.6).
pub async fn resolve(app: &App, auth: &Authenticated, param: &str) -> Result<User, ApiError> {
    if param == "me" {
        return Ok(auth.session().user.clone());
    }
    let found = match param.parse::<Uuid>() {
        Ok(id) => app.store.user(id).await?,
        Err(_) => app.store.user_by_username(param).await?,
    };
    found.ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Resource not found or you do not have access to this resource",
        "",
    )
}

/// Coder's username rule: 1-32 characters of `[a-zA-Z0-9]` in groups joined by single `-`,
/// and not `new` or `create`.
pub fn validate_username(username: &str, invalid: &mut Vec<Validation>) {
    if username.is_empty() {
        invalid.push(tag_failed("username", "required", ""));
        return;
    }
    let shape_ok = username.len() <= 32
        && username
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !shape_ok || matches!(username, "new" | "create") {
        invalid.push(tag_failed("username", "username", username));
    }
}

/// Required, and shaped like an email address.
pub fn validate_email(email: &str, invalid: &mut Vec<Validation>) {
    if email.is_empty() {
        invalid.push(tag_failed("email", "required", ""));
    } else if !looks_like_email(email) {
        invalid.push(tag_failed("email", "email", email));
    }
}

/// Optional; at most 128 characters, no leading or trailing white space.
pub fn validate_name(name: &str, invalid: &mut Vec<Validation>) {
    if name.chars().count() > 128 || name.trim() != name {
        invalid.push(tag_failed("name", "user_real_name", name));
    }
}

/// The minimal strength rule until the full validator (spec §5) lands: 1 to 64 characters.
fn password_weakness(password: &str) -> Option<&'static str> {
    if password.chars().count() > 64 {
        return Some("password must be no more than 64 characters");
    }
    None
}
