//! A running Portcullis with its first user (an owner) logged in, and the JSON API calls the
//! user-management, token and authorization tests make against it.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::*;
use portcullis::store::{LoginType, UserStatus};
use portcullis::users::NewUser;

pub const MEMORY: &str = "memory://";

pub const SIGNED_OUT: &str =
    "You are signed out or your session has expired. Please sign in again to continue.";
/// The detail of a 401 to a request without a session token.
pub const MISSING_TOKEN: &str =
    "Cookie \"coder_session_token\" or query parameter must be provided.";
pub const NOT_FOUND: &str = "Resource not found or you do not have access to this resource";
pub const SUSPENDED_DETAIL: &str =
    "User is not active (status = \"suspended\"). Contact an admin to reactivate your account.";

// === harness ===

/// One Portcullis with its first user (an owner) logged in.
pub struct World {
    pub sidecar: Sidecar,
    pub admin: String,
    pub admin_id: String,
    pub org: String,
    pub prefix: String,
}

impl World {
    pub async fn start(store_url: &str, extra: &str) -> World {
        let echo = start_echo().await;
        let prefix = random_key_prefix();
        let sidecar = Sidecar::start(&config_with_store(echo, store_url, &prefix, "", extra)).await;
        World::with_first_user(sidecar, prefix).await
    }

    /// Two Portcullis instances on `store_url` under one key prefix, the first user made and
    /// logged in on the first, their caches long-lived (an hour, no negative cache), so that a
    /// change made through one reaches the other through the invalidation, never the cache
    /// TTL. On `memory://`, which replicas cannot share, the second is `None`.
    pub async fn with_replica(store_url: &str) -> (World, Option<Sidecar>) {
        World::with_replica_on(store_url, start_echo().await, "").await
    }

    /// [`World::with_replica`] in front of `upstream`, with extra TOML `extra` in both configs.
    pub async fn with_replica_on(
        store_url: &str,
        upstream: SocketAddr,
        extra: &str,
    ) -> (World, Option<Sidecar>) {
        let prefix = random_key_prefix();
        let config = config_with_store(
            upstream,
            store_url,
            &prefix,
            "cache_ttl = \"1h\"\nnegative_cache_ttl = \"0s\"\n",
            extra,
        );
        let a = Sidecar::start(&config).await;
        let b = match store_url {
            MEMORY => None,
            _ => Some(Sidecar::start(&config).await),
        };
        (World::with_first_user(a, prefix).await, b)
    }

    /// Creates the first user on `sidecar` (whose key prefix is `prefix`) and logs in as them.
    pub async fn with_first_user(sidecar: Sidecar, prefix: String) -> World {
        let first = create_admin(sidecar.addr).await;
        let admin = admin_token(sidecar.addr).await;
        World {
            sidecar,
            admin,
            admin_id: first["user_id"].as_str().unwrap().to_owned(),
            org: first["organization_id"].as_str().unwrap().to_owned(),
            prefix,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value, HeaderMap) {
        call(&self.sidecar, method, path, body, token).await
    }

    /// Makes a token with `POST /users/me/keys/tokens` and `body`, as the caller of `session`;
    /// returns the key.
    pub async fn token(&self, session: &str, body: Value) -> String {
        make_token(self.sidecar.addr, session, body).await
    }

    /// Creates a user through `POST /users` as the admin, then logs in as them.
    pub async fn member(&self, username: &str) -> (Value, String) {
        make_member(self.sidecar.addr, &self.admin, username).await
    }

    /// Creates an active user holding a site role the API cannot grant yet, through the
    /// app's own user operations, then logs in as them.
    pub async fn with_role(&self, username: &str, role: &str) -> (String, String) {
        let (user, _) = self
            .sidecar
            .app
            .users()
            .create(NewUser {
                email: format!("{username}@example.com"),
                username: username.into(),
                name: String::new(),
                password: Some(PASSWORD.into()),
                login_type: LoginType::Password,
                status: UserStatus::Active,
                roles: vec![role.into()],
                organization_ids: Vec::new(),
            })
            .await
            .expect("created");
        let token = login_ok(
            self.sidecar.addr,
            &format!("{username}@example.com"),
            PASSWORD,
        )
        .await;
        (user.id.to_string(), token)
    }

    /// Asserts that each route answers a request without a token with 401, Coder's signed-out
    /// message and the missing-token detail.
    pub async fn assert_sessions_needed(&self, routes: &[(Method, &str)]) {
        for (method, path) in routes {
            let got = self.call(method.clone(), path, Some(json!({})), None).await;
            assert_eq!(
                got.0,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {}",
                got.1
            );
            assert_eq!(got.1["message"], SIGNED_OUT);
            assert_eq!(got.1["detail"], MISSING_TOKEN);
        }
    }

    pub async fn finish(self) {
        let (url, prefix) = (self.sidecar.store_url(), self.prefix.clone());
        self.sidecar.shutdown().await;
        delete_redis_keys(&url, &prefix).await;
    }
}

/// Makes a token at `addr` with `POST /users/me/keys/tokens` and `body`, as the caller of
/// `session`; returns the key.
pub async fn make_token(addr: SocketAddr, session: &str, body: Value) -> String {
    let (status, got, _) = call_json(
        addr,
        api_request(
            Method::POST,
            "/api/v2/users/me/keys/tokens",
            Some(&body),
            Some(session),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    got["key"].as_str().expect("key").to_owned()
}

/// Creates a user at `addr` through `POST /users` as `admin`, then logs in as them: the user
/// and the session token.
pub async fn make_member(addr: SocketAddr, admin: &str, username: &str) -> (Value, String) {
    let body = json!({
        "email": format!("{username}@example.com"),
        "username": username,
        "password": PASSWORD,
    });
    let (status, user, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users", Some(&body), Some(admin)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let token = login_ok(addr, &format!("{username}@example.com"), PASSWORD).await;
    (user, token)
}

pub async fn call(
    sidecar: &Sidecar,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value, HeaderMap) {
    call_json(
        sidecar.addr,
        api_request(method, path, body.as_ref(), token),
    )
    .await
}

/// A proxied request with `token`: the status, and the echo report (or the error body).
pub async fn proxied(sidecar: &Sidecar, token: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(sidecar, Method::GET, "/app", None, Some(token)).await;
    (status, body)
}

pub fn assert_message(got: &(StatusCode, Value, HeaderMap), status: StatusCode, message: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["message"], message, "{}", got.1);
}

pub fn assert_signed_out(got: &(StatusCode, Value), detail: &str) {
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);
    assert_eq!(got.1["message"], SIGNED_OUT);
    assert_eq!(got.1["detail"], detail);
}

pub fn forbidden_detail() -> &'static str {
    "You don't have permission to view this content. If you believe this is a mistake, please contact your administrator or try signing in with different credentials."
}
