//! The Coder-compatible API under `api.prefix` (spec/coder-api.md): routing, JSON bodies and
//! the error shape. One file per endpoint family.

pub mod authcheck;
pub mod login;
pub mod otp;
pub mod password;
pub mod roles;
pub mod scopes;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::App;
use crate::auth::session::{self, AuthError, Authenticated};
use crate::auth::PasswordError;
use crate::body::Body;
use crate::csrf;
use crate::error::{json_response, message_response, ErrorChain};
use crate::proxy::Peer;
use crate::rbac::{Action, Object};
use crate::store::UserStatus;
use crate::users::UserError;

/// Largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// Coder's signed-out message (§8.4).
pub const SIGNED_OUT: &str =
    "You are signed out or your session has expired. Please sign in again to continue.";

/// A failed API call: the response it is answered with. Endpoint code builds these with the
/// exact messages of the spec.
#[derive(Debug)]
pub struct ApiError(Box<Response<Body>>);

/// A `Validation failed.` entry.
#[derive(Debug, Serialize)]
pub struct Validation {
    /// The JSON field.
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// The result of an endpoint.
pub type ApiResult = Result<Response<Body>, ApiError>;

// === impl ApiError ===

impl ApiError {
    /// `{"message", "detail"}` with `status`.
    pub fn new(status: StatusCode, message: &str, detail: impl AsRef<str>) -> Self {
        ApiError(Box::new(message_response(status, message, detail.as_ref())))
    }

    /// `400 Validation failed.` with per-field details.
    pub fn validation(validations: Vec<Validation>) -> Self {
        Self::with_validations(StatusCode::BAD_REQUEST, "Validation failed.", validations)
    }

    /// A message with a validations list.
    pub fn with_validations(
        status: StatusCode,
        message: &str,
        validations: Vec<Validation>,
    ) -> Self {
        #[derive(Serialize)]
        struct WithValidations<'a> {
            message: &'a str,
            validations: Vec<Validation>,
        }
        ApiError(Box::new(json_response(
            status,
            &WithValidations {
                message,
                validations,
            },
        )))
    }

    /// `500 Internal error.`, the cause logged but never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in the API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.", "")
    }

    /// `503`: the store cannot answer. Never a 401, so a store outage never looks like a logout.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable.",
            "The session store is not reachable. Try again shortly.",
        )
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        *self.0
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(_) => ApiError::unavailable(ErrorChain(&e)),
            other => ApiError::internal(ErrorChain(&other)),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(s) => ApiError::unavailable(ErrorChain(&s)),
            other => ApiError::new(StatusCode::UNAUTHORIZED, SIGNED_OUT, other.to_string()),
        }
    }
}

impl From<UserError> for ApiError {
    /// Coder's answers for failed user operations; endpoints with a more specific answer
    /// (such as `Invalid password.` for a weak new password) map those cases themselves.
    fn from(e: UserError) -> Self {
        let bad =
            |message: &str, detail: &str| ApiError::new(StatusCode::BAD_REQUEST, message, detail);
        match e {
            UserError::Invalid(validations) => ApiError::validation(validations),
            UserError::WeakPassword(detail) => not_strong_enough(&detail),
            UserError::PasswordNotAllowed(login_type) => bad(
                &format!(
                    "Password cannot be set for non-password (\"{}\") authentication.",
                    login_type.as_str()
                ),
                "",
            ),
            UserError::NotPasswordUser => bad(
                "Users without password login type cannot change their password.",
                "",
            ),
            UserError::SamePassword => bad("New password cannot match old password.", ""),
            UserError::Conflict(field) => ApiError::with_validations(
                StatusCode::CONFLICT,
                "User already exists.",
                vec![Validation {
                    field: field.into(),
                    detail: "This value is already in use and should be unique.".into(),
                }],
            ),
            UserError::TokenNameTaken(name) => ApiError::with_validations(
                StatusCode::CONFLICT,
                &format!("A token with name \"{name}\" already exists."),
                vec![Validation {
                    field: "name".into(),
                    detail: "This value is already in use and should be unique.".into(),
                }],
            ),
            UserError::NoSuchOrg(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                &format!("Organization does not exist with the provided id \"{id}\"."),
                "",
            ),
            UserError::NoSuchUser => not_found(),
            e @ (UserError::UnknownRole(_) | UserError::UnknownOrgRole(_)) => {
                bad("Invalid role.", &e.to_string())
            }
            e @ UserError::UnknownScope(_) => bad("Failed to create API key.", &e.to_string()),
            UserError::Lifetime(detail) => {
                bad("Failed to validate create API key request.", &detail)
            }
            UserError::Store(e) => e.into(),
            UserError::Password(PasswordError::Busy) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable.",
                "Too many password checks at once. Try again shortly.",
            ),
            UserError::Password(e) => ApiError::internal(e),
            UserError::Rng(e) => ApiError::internal(e),
        }
    }
}

/// Handles a request whose path starts with `api.prefix`; `path` is the rest, starting with
/// `/` (canonical: no empty or dot segments). A path in a family Portcullis owns ([`owned`]) is
/// answered here for every method and parameter value: by its endpoint, or `405` (with
/// `Allow`) for a method it does not serve, or `404 Route not found.`. Any other path is
/// handed back (`Err`) for the proxy: the rest of a Coder-style API (workspaces, templates,
/// ...) belongs to the upstream. Matching is case-sensitive, as Coder's router is.
pub async fn handle(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Body>, Request<Incoming>> {
    // Coder exempts `/users/first` (§0.4): it needs no session.
    if path != "/users/first" {
        let checks = csrf::Checks::TokenAndSite;
        if let Err(refused) = csrf::check(req.method(), req.uri(), req.headers(), checks) {
            return Ok(refused.into_response());
        }
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if !owned(&segments) {
        return Err(req);
    }
    let carried = csrf::Carried::of(req.headers());
    // HEAD is answered by the GET handler, without the body (RFC 9110 §9.3.2).
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["auth", "scopes"]) => scopes::list(),
        (&Method::POST, ["authcheck"]) => authcheck::check(app, req).await,
        (&Method::GET, ["users", "first"]) => users::first_exists(app).await,
        (&Method::POST, ["users", "first"]) => users::create_first(app, req).await,
        (&Method::GET, ["users", "authmethods"]) => login::auth_methods(app),
        (&Method::POST, ["users", "login"]) => login::login(app, peer, req).await,
        (&Method::GET, ["users", "oidc", "callback"]) => {
            crate::oidc::flow::callback(app, peer, req).await
        }
        (&Method::POST, ["users", "logout"]) => login::logout(app, req).await,
        (&Method::POST, ["users", "validate-password"]) => password::validate(app, peer, req).await,
        (&Method::POST, ["users", "otp", "request"]) => otp::request(app, peer, req).await,
        (&Method::POST, ["users", "otp", "change-password"]) => {
            otp::change_password(app, peer, req).await
        }
        (&Method::POST, ["users"]) => users::create(app, req).await,
        (_, ["users", fixed, ..]) if FIXED_USER_PATHS.contains(fixed) => {
            Err(not_served(&method, &segments))
        }
        (&Method::GET, ["users", user]) => users::get(app, req, user).await,
        (&Method::DELETE, ["users", user]) => users::delete(app, req, user).await,
        (&Method::PUT, ["users", user, "password"]) => password::change(app, peer, req, user).await,
        (&Method::PUT, ["users", user, "status", "suspend"]) => {
            users::set_status(app, req, user, UserStatus::Suspended).await
        }
        (&Method::PUT, ["users", user, "status", "activate"]) => {
            users::set_status(app, req, user, UserStatus::Active).await
        }
        (&Method::GET, ["users", user, "roles"]) => roles::user_roles(app, req, user).await,
        (&Method::PUT, ["users", user, "roles"]) => roles::set_site_roles(app, req, user).await,
        (&Method::GET, ["organizations", org, "members"]) => {
            roles::list_members(app, req, org).await
        }
        (&Method::POST, ["organizations", org, "members", user]) => {
            roles::add_member(app, req, org, user).await
        }
        (&Method::DELETE, ["organizations", org, "members", user]) => {
            roles::remove_member(app, req, org, user).await
        }
        (&Method::PUT, ["organizations", org, "members", user, "roles"]) => {
            roles::set_member_roles(app, req, org, user).await
        }
        (&Method::POST, ["users", user, "keys"]) => tokens::create_key(app, peer, req, user).await,
        (&Method::POST, ["users", user, "keys", "tokens"]) => {
            tokens::create_token(app, peer, req, user).await
        }
        (&Method::GET, ["users", user, "keys", "tokens"]) => {
            tokens::list_tokens(app, req, user).await
        }
        (&Method::GET, ["users", user, "keys", "tokens", "tokenconfig"]) => {
            tokens::token_config(app, req, user).await
        }
        (&Method::GET, ["users", user, "keys", "tokens", name]) => {
            tokens::token_by_name(app, req, user, name).await
        }
        (&Method::GET, ["users", user, "keys", id]) => tokens::get_key(app, req, user, id).await,
        (&Method::DELETE, ["users", user, "keys", id]) => {
            tokens::delete_key(app, req, user, id).await
        }
        (&Method::PUT, ["users", user, "keys", id, "expire"]) => {
            tokens::expire_key(app, req, user, id).await
        }
        (&Method::POST, ["users", user, "convert-login"]) => {
            crate::oidc::convert::convert_login(app, req, user).await
        }
        _ => Err(not_served(&method, &segments)),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    if carried.wants_token(resp.headers()) {
        issue_csrf_cookie(app, &mut resp);
    }
    Ok(resp)
}

/// Adds a `Set-Cookie` with a new `csrf_token` (see [`csrf`]): not `HttpOnly`, so that the
/// page's script can send it back in `X-CSRF-TOKEN`; `SameSite` and `Secure` as the session
/// cookie's.
fn issue_csrf_cookie(app: &App, resp: &mut Response<Body>) {
    match csrf::new_token() {
        Ok(token) => {
            let cookie = login::set_cookie(
                app,
                &format!(
                    "{}={token}; Path=/; SameSite={}",
                    csrf::TOKEN_COOKIE,
                    app.config.session.cookie_same_site
                ),
            );
            resp.headers_mut().append(http::header::SET_COOKIE, cookie);
        }
        Err(error) => tracing::warn!(%error, "could not make a CSRF token"),
    }
}

/// Second segments of `/users/...` that are routes of their own, never a `{user}`: as in
/// Coder's router, a static segment wins over a parameter (`GET /users/login` is `405`, not a
/// user named "login").
const FIXED_USER_PATHS: [&str; 8] = [
    "first",
    "authmethods",
    "login",
    "logout",
    "validate-password",
    "otp",
    "oidc",
    "oauth2",
];

/// Whether a path under the API prefix is in a family Portcullis serves, so that no method or
/// parameter value of it ever reaches the upstream: the users, keys, roles, membership,
/// authorization and sign-in routes (spec/coder-api.md §0.5 and DESIGN §3.3). The rest of
/// `/users/{user}/...` (workspaces, organizations, settings, ...) is the application's.
fn owned(segments: &[&str]) -> bool {
    match segments {
        ["auth", ..] | ["authcheck", ..] | ["users"] | ["users", _] => true,
        ["users", fixed, ..] if FIXED_USER_PATHS.contains(fixed) => true,
        ["users", _, "password" | "status" | "roles" | "keys" | "convert-login", ..] => true,
        ["organizations", _, "members", ..] => true,
        _ => false,
    }
}

/// The methods a path of an owned family is served with, for `Allow`; `None` when no route
/// has that path.
fn methods_of(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["auth", "scopes"] | ["users", "authmethods"] | ["users", "oidc", "callback"] => {
            "GET, HEAD"
        }
        ["authcheck"] | ["users"] | ["users", "login" | "logout" | "validate-password"] => "POST",
        ["users", "otp", "request" | "change-password"] => "POST",
        ["users", "first"] => "GET, HEAD, POST",
        ["users", fixed, ..] if FIXED_USER_PATHS.contains(fixed) => return None,
        ["users", _] => "GET, HEAD, DELETE",
        ["users", _, "password"] | ["users", _, "status", "suspend" | "activate"] => "PUT",
        ["users", _, "roles"] => "GET, HEAD, PUT",
        ["users", _, "keys"] | ["users", _, "convert-login"] => "POST",
        ["users", _, "keys", "tokens"] => "GET, HEAD, POST",
        ["users", _, "keys", "tokens", _] => "GET, HEAD",
        ["users", _, "keys", _] => "GET, HEAD, DELETE",
        ["users", _, "keys", _, "expire"] => "PUT",
        ["organizations", _, "members"] => "GET, HEAD",
        ["organizations", _, "members", _] => "POST, DELETE",
        ["organizations", _, "members", _, "roles"] => "PUT",
        _ => return None,
    })
}

/// The answer for an owned path that no endpoint serves with `method`: `405` with `Allow` when
/// the path is a route, `404 Route not found.` (spec §0.1) when it is not.
fn not_served(method: &Method, segments: &[&str]) -> ApiError {
    let Some(allow) = methods_of(segments) else {
        return ApiError::new(StatusCode::NOT_FOUND, "Route not found.", "");
    };
    let mut err = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed.",
        format!("{method} is not served on this route; it serves {allow}."),
    );
    err.0
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    err
}

/// Reads and decodes a JSON body (at most 1 MiB): `400 Request body must be valid JSON.` with
/// the decoder's message otherwise.
pub async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Request body must be valid JSON.",
                e.to_string(),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Request body must be valid JSON.",
            e.to_string(),
        )
    })
}

/// Authenticates an API request (an OIDC session's provider token is refreshed when it has
/// expired, spec §8.4).
pub async fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Authenticated, ApiError> {
    let auth = session::authenticate(&app.store, &app.keys, req.headers(), req.uri()).await?;
    Ok(crate::oidc::session::follow(app, auth).await?)
}

/// Whether the caller may do `action` (a literal action name) on `object`: roles ∩ key scopes
/// ∩ allow list (§11.4).
pub fn allowed(auth: &Authenticated, action: &str, object: &Object) -> bool {
    auth.subject().allows(Action::known(action), object)
}

/// Coder's answer for a resource that is missing or that the caller may not see.
pub fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Resource not found or you do not have access to this resource",
        "",
    )
}

/// `403 Forbidden.` with Coder's detail (§0.2): authenticated, but not allowed to change this.
pub fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden.",
        "You don't have permission to view this content. If you believe this is a mistake, please contact your administrator or try signing in with different credentials.",
    )
}

/// `204 No Content`.
pub fn no_content() -> ApiResult {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> ApiResult {
    Ok(json_response(status, value))
}

/// Coder's validation detail for a failed tag (§0.1).
pub fn tag_failed(field: &str, tag: &str, value: &str) -> Validation {
    Validation {
        field: field.to_owned(),
        detail: format!("Validation failed for tag {tag:?} with value: {value:?}"),
    }
}

/// `400 Password not strong enough!` with the rule's text on `password` (§7.6, §7.8).
fn not_strong_enough(detail: &str) -> ApiError {
    ApiError::with_validations(
        StatusCode::BAD_REQUEST,
        "Password not strong enough!",
        vec![Validation {
            field: "password".into(),
            detail: detail.into(),
        }],
    )
}
