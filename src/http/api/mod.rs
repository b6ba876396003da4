//! The Coder-compatible API under `api.prefix` (spec/coder-api.md): routing, JSON bodies and
//! the error shape. One file per endpoint family.

pub mod authcheck;
pub mod convert;
pub mod directory;
pub mod explain;
pub mod login;
pub mod oidc;
pub mod orgs;
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
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::session::{self, Authenticated};
use crate::coder;
use crate::http::access::Caller;
use crate::http::admit;
use crate::http::api::tokens::KeyOp;
use crate::http::app::App;
use crate::http::body::{Body, BodyDeadline, Deadline, ReqBody};
use crate::http::csrf;
use crate::http::error::{json_response, Error};
use crate::http::peer::Peer;
use crate::limits::ApiClient;
use crate::rbac::{Action, Object};
use crate::store::UserStatus;

/// Largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// The result of an endpoint.
pub type ApiResult = Result<Response<Body>, Error>;

/// Handles a request whose path starts with `api.prefix`; `path` is the rest, starting with
/// `/` (canonical: no empty or dot segments). A path in a family Portcullis owns ([`owned`]) is
/// answered here for every method and parameter value: by its endpoint, or `405` (with
/// `Allow`) for a method it does not serve, or `404 Route not found.`. Any other path is
/// handed back (`Err`) for the proxy: the rest of a Coder-style API (workspaces, templates,
/// ...) belongs to the upstream. Matching is case-sensitive, as Coder's router is.
pub async fn handle<B: ReqBody>(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<B>,
    path: &str,
) -> Result<Response<Body>, Request<B>> {
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
    let mut req = req;
    if let Err(refused) = limit_api(app, peer, &mut req).await {
        return Ok(refused.into_response());
    }
    // The API's bodies are small: they must arrive whole in time (408 otherwise).
    let req = req.map(|body| Deadline::new(body, app.config.server.header_read_timeout));
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
        (&Method::POST, ["users", "first"]) => users::create_first(app, peer, req).await,
        (&Method::GET, ["users", "authmethods"]) => login::auth_methods(app),
        (&Method::POST, ["users", "login"]) => login::login(app, peer, req).await,
        (&Method::GET, ["users", "oidc", "callback"]) => oidc::callback(app, peer, req).await,
        (&Method::POST, ["users", "logout"]) => login::logout(app, peer, req).await,
        (&Method::POST, ["users", "validate-password"]) => password::validate(app, peer, req).await,
        (&Method::POST, ["users", "otp", "request"]) => otp::request(app, peer, req).await,
        (&Method::POST, ["users", "otp", "change-password"]) => {
            otp::change_password(app, peer, req).await
        }
        (&Method::POST, ["users"]) => users::create(app, req).await,
        (&Method::GET, ["users"]) => directory::list(app, req).await,
        (&Method::POST, ["portcullis", "explain"]) => explain::explain(app, peer, req).await,
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
        (&Method::GET, ["users", user, "login-type"]) => {
            directory::login_type(app, req, user).await
        }
        (&Method::GET, ["users", user, "organizations"]) => {
            directory::organizations(app, req, user).await
        }
        (&Method::PUT, ["users", user, "profile"]) => {
            directory::update_profile(app, req, user).await
        }
        (&Method::GET, ["users", user, "roles"]) => roles::user_roles(app, req, user).await,
        (&Method::PUT, ["users", user, "roles"]) => roles::set_site_roles(app, req, user).await,
        (&Method::GET, ["organizations"]) => orgs::list(app, req).await,
        (&Method::POST, ["organizations"]) => orgs::create(app, req).await,
        (&Method::GET, ["organizations", org]) => orgs::get(app, req, org).await,
        (&Method::PATCH, ["organizations", org]) => orgs::update(app, req, org).await,
        (&Method::DELETE, ["organizations", org]) => orgs::delete(app, req, org).await,
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
        (&Method::GET, ["users", user, "keys", id]) => {
            tokens::key(app, req, user, id, KeyOp::Get).await
        }
        (&Method::DELETE, ["users", user, "keys", id]) => {
            tokens::key(app, req, user, id, KeyOp::Delete).await
        }
        (&Method::PUT, ["users", user, "keys", id, "expire"]) => {
            tokens::key(app, req, user, id, KeyOp::Expire).await
        }
        (&Method::POST, ["users", user, "convert-login"]) => {
            convert::convert_login(app, peer, req, user).await
        }
        _ => Err(not_served(&method, &segments)),
    };
    let mut resp = result.unwrap_or_else(Error::into_response);
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
            let cookie = csrf_cookie(app, &token);
            resp.headers_mut().append(http::header::SET_COOKIE, cookie);
        }
        Err(error) => tracing::warn!(%error, "could not make a CSRF token"),
    }
}

/// The `Set-Cookie` of a `csrf_token` cookie holding `token` (see [`issue_csrf_cookie`]).
pub(crate) fn csrf_cookie(app: &App, token: &str) -> http::HeaderValue {
    login::set_cookie(
        app,
        &format!(
            "{}={token}; Path=/; SameSite={}",
            csrf::TOKEN_COOKIE,
            app.config.session.cookie_same_site
        ),
    )
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

/// Whether Portcullis answers `path` (the part after the API prefix) itself rather than
/// sending it upstream: see [`handle`].
pub fn serves(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    owned(&segments)
}

/// Whether a path under the API prefix is in a family Portcullis serves, so that no method or
/// parameter value of it ever reaches the upstream: the users, keys, roles, membership,
/// authorization and sign-in routes (spec/coder-api.md §0.5 and DESIGN §3.3). The rest of
/// `/users/{user}/...` (workspaces, organizations, settings, ...) is the application's.
fn owned(segments: &[&str]) -> bool {
    match segments {
        ["auth", ..] | ["authcheck", ..] | ["users"] | ["users", _] | ["portcullis", ..] => true,
        ["users", fixed, ..] if FIXED_USER_PATHS.contains(fixed) => true,
        ["users", _, "password" | "status" | "roles" | "keys" | "convert-login", ..] => true,
        ["users", _, "login-type" | "organizations" | "profile"] => true,
        ["organizations"] | ["organizations", _] | ["organizations", _, "members", ..] => true,
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
        ["authcheck"] | ["users", "login" | "logout" | "validate-password"] => "POST",
        ["users"] => "GET, HEAD, POST",
        ["users", _, "login-type" | "organizations"] => "GET, HEAD",
        ["users", _, "profile"] => "PUT",
        ["portcullis", "explain"] => "POST",
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
        ["organizations"] => "GET, HEAD, POST",
        ["organizations", _] => "GET, HEAD, PATCH, DELETE",
        ["organizations", _, "members"] => "GET, HEAD",
        ["organizations", _, "members", _] => "POST, DELETE",
        ["organizations", _, "members", _, "roles"] => "PUT",
        _ => return None,
    })
}

/// The answer for an owned path that no endpoint serves with `method`: `405` with `Allow` when
/// the path is a route, `404 Route not found.` (spec §0.1) when it is not.
fn not_served(method: &Method, segments: &[&str]) -> Error {
    match methods_of(segments) {
        Some(allow) => Error::MethodNotServed {
            method: method.clone(),
            allow,
        },
        None => Error::RouteNotFound,
    }
}

/// Reads and decodes a JSON body (at most 1 MiB): `400 Request body must be valid JSON.` with
/// the decoder's message otherwise.
pub async fn json_body<T, B>(req: Request<B>) -> Result<T, Error>
where
    T: DeserializeOwned,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if too_slow(&*e) {
                Error::BodyTimeout
            } else {
                Error::bad_request(coder::BAD_JSON, e.to_string())
            }
        })?
        .to_bytes();
    from_json(&bytes).map_err(|e| Error::bad_request(coder::BAD_JSON, e.to_string()))
}

/// A request body read as Coder (Go's `encoding/json`) reads it: a `null` member leaves its
/// field as it was, so `{"login_type": null}` is the same as no `login_type`. Clients built on
/// that (a Python client sends `null` for every argument left out) work. A body that reads
/// without that rule is read as it is; one that reads only with it has its `null` members
/// dropped first, at every depth; one that reads neither way gets the first error, with its
/// line and column.
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let first = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(first);
    };
    if !drop_nulls(&mut value) {
        return Err(first);
    }
    serde_json::from_value(value).map_err(|_| first)
}

/// Drops the `null` members of every object in `value`; whether there were any.
fn drop_nulls(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(members) => {
            let before = members.len();
            members.retain(|_, v| !v.is_null());
            let mut dropped = members.len() != before;
            for v in members.values_mut() {
                dropped |= drop_nulls(v);
            }
            dropped
        }
        Value::Array(items) => items.iter_mut().fold(false, |d, v| drop_nulls(v) | d),
        _ => false,
    }
}

/// Whether a body failed because its [`Deadline`] passed.
fn too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyDeadline>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Authenticates an API request: [`admit::authenticate`], the one used for every request
/// (with the session the rate limit already found, when it found one). The caller's user goes
/// on the request's access line ([`Caller`]).
pub async fn authenticate<B>(app: &App, req: &Request<B>) -> Result<Authenticated, Error> {
    let auth = match req.extensions().get::<Prechecked>() {
        Some(Prechecked(auth)) => {
            let found = Ok(auth.clone());
            admit::authenticated(app, req.method(), req.uri(), req.headers(), found).await
        }
        None => admit::authenticate(app, req.method(), req.uri(), req.headers()).await,
    }?;
    Caller::note(req, &auth);
    Ok(auth)
}

/// The session [`limit_api`] found for a request, so that the endpoint does not look the token
/// up a second time.
#[derive(Clone)]
struct Prechecked(Authenticated);

/// Counts a request to a route Portcullis serves (spec §0.3) for its user when it carries a
/// valid credential (as Coder's limiter does), else for its client, refusing it with `429` past
/// `rate_limit.api_per_minute`. Only the counting authenticates here; the endpoint
/// authenticates again (from the key cache) and decides.
async fn limit_api<B>(app: &App, peer: &Peer, req: &mut Request<B>) -> Result<(), Error> {
    if !app.limits.counts_api() {
        return Ok(());
    }
    let client = match session::authenticate(&app.store, &app.keys, req.headers(), req.uri()).await
    {
        Ok(auth) => {
            let client = ApiClient::User(auth.session().user.id);
            req.extensions_mut().insert(Prechecked(auth));
            client
        }
        Err(_) => {
            ApiClient::Anonymous(peer.client_ip(req.headers(), &app.config.server.trusted_proxies))
        }
    };
    Ok(app.limits.api(&app.store, client).await?)
}

/// Counts a request of the login group (spec §0.3) from the client (its address behind
/// `server.trusted_proxies`), refusing it with `429` past `rate_limit.login_per_minute`.
pub async fn limit_login(app: &App, peer: &Peer, headers: &http::HeaderMap) -> Result<(), Error> {
    let client = peer.client_ip(headers, &app.config.server.trusted_proxies);
    Ok(app.limits.login(&app.store, client).await?)
}

/// Whether the caller may do `action` on `object`: roles ∩ key scopes ∩ allow list (§11.4).
pub fn allowed(auth: &Authenticated, action: Action, object: &Object) -> bool {
    auth.subject().allows(action, object)
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

#[cfg(test)]
mod tests {
    //! The API's handlers are generic over the request body, so these drive them with
    //! in-memory bodies and the memory store: no socket, no listener.

    use http_body_util::Full;
    use serde_json::{json, Value};

    use super::*;

    fn app() -> Arc<App> {
        let text = "[upstream]\nurl = \"http://127.0.0.1:9\"\n\
                    [store]\nurl = \"memory://\"\n\
                    [policy]\ndefault = \"authenticated\"\n";
        let config = crate::Config::from_toml(text, Vec::new(), std::path::Path::new("."))
            .expect("a valid config");
        App::new(config).expect("an app")
    }

    fn peer() -> Peer {
        Peer::new("127.0.0.1:40000".parse().expect("an address"), false, false)
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        #[serde(default)]
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        tags: Vec<String>,
    }

    #[test]
    fn null_members_read_as_absent_as_go_reads_them() {
        let read = |text: &str| from_json::<Body>(text.as_bytes()).map_err(|e| e.to_string());
        let empty = Body {
            name: String::new(),
            inner: None,
        };
        assert_eq!(read(r#"{"name": null}"#), Ok(empty));
        assert_eq!(
            read(r#"{"name": "x", "inner": {"tags": null}}"#),
            Ok(Body {
                name: "x".into(),
                inner: Some(Inner { tags: Vec::new() }),
            })
        );
        // What is wrong in other ways stays wrong, with the first error's place.
        let err = read(r#"{"name": null, "inner": 3}"#).unwrap_err();
        assert!(err.contains("line 1 column"), "{err}");
        assert!(read(r#"{"name": 1}"#).is_err());
        assert!(read(r#"[null]"#).is_err());
        assert!(read("{").is_err());
    }

    fn request(
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("/api/v2{path}"))
            .header(http::header::HOST, "portcullis.test")
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            builder = builder.header("coder-session-token", token);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a request")
    }

    /// Calls the API with `path` (under the prefix) and returns status and JSON body.
    async fn call(app: &Arc<App>, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
        let path = req.uri().path().trim_start_matches("/api/v2").to_owned();
        let resp = match handle(app, &peer(), req, &path).await {
            Ok(resp) => resp,
            Err(_) => panic!("{path} is not the API's"),
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .into_full_bytes()
            .expect("a body made here");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, body)
    }

    #[tokio::test]
    async fn the_first_user_signs_up_logs_in_and_reads_itself_without_a_socket() {
        let app = app();
        let first = json!({
            "email": "admin@example.com",
            "username": "admin",
            "password": "correct horse battery",
        });
        let (status, body) = call(
            &app,
            request(Method::POST, "/users/first", None, &first.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _) = call(&app, request(Method::GET, "/users/first", None, "")).await;
        assert_eq!(status, StatusCode::OK);
        let login = json!({"email": "admin@example.com", "password": "correct horse battery"});
        let (status, body) = call(
            &app,
            request(Method::POST, "/users/login", None, &login.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["session_token"].as_str().expect("a session token");
        let (status, me) = call(&app, request(Method::GET, "/users/me", Some(token), "")).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["username"], "admin");
        assert_eq!(me["roles"][0]["name"], "owner");
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_a_400_in_coders_shape() {
        let app = app();
        let (status, body) = call(
            &app,
            request(Method::POST, "/users/login", None, "{not json"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], coder::BAD_JSON);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_unauthenticated_call_is_a_401_and_a_wrong_method_a_405_with_allow() {
        let app = app();
        let (status, body) = call(&app, request(Method::GET, "/users/me", None, "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["message"], coder::SIGNED_OUT);
        let req = request(Method::PATCH, "/users/me/keys/tokens", None, "");
        let Ok(resp) = handle(&app, &peer(), req, "/users/me/keys/tokens").await else {
            panic!("the keys routes are the API's");
        };
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[http::header::ALLOW], "GET, HEAD, POST");
        let bytes = resp
            .into_body()
            .into_full_bytes()
            .expect("a body made here");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        assert_eq!(body["message"], "Method not allowed.");
        assert_eq!(
            body["detail"],
            "PATCH is not served on this route; it serves GET, HEAD, POST."
        );
    }

    #[tokio::test]
    async fn paths_the_api_does_not_own_are_handed_back_to_the_proxy() {
        let app = app();
        let req = request(Method::GET, "/workspaces", None, "");
        assert!(handle(&app, &peer(), req, "/workspaces").await.is_err());
    }
}
