//! The route policy end to end (DESIGN §4): rules tried in order in front of a real upstream,
//! `public` / `authenticated` / `require` rules, `{owner}` and `{org}` captures checked through
//! the RBAC evaluator, scoped tokens, `policy.default = "deny"` for everything else, and paths
//! that could be read two ways refused.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::world::*;
use crate::common::*;

const POLICY: &str = r#"
[policy]
default = "deny"

[[policy.route]]
path = "/health"
public = true

[[policy.route]]
path = "/api/v2/users/{owner}/workspaces"
methods = ["GET"]
require = "workspace:read"

[[policy.route]]
path = "/api/v2/organizations/{org}/templates/**"
methods = ["POST", "PATCH"]
require = "template:update"

[[policy.route]]
path = "/app/**"
authenticated = true
"#;

async fn get(w: &World, method: Method, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let (status, body, _) = w.call(method, path, None, token).await;
    (status, body)
}

async fn route_policy(store_url: &str) {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let sidecar = Sidecar::start(&config_with_store(echo, store_url, &prefix, "", POLICY)).await;
    let w = World::with_first_user(sidecar, prefix).await;
    let admin = w.admin.as_str();
    let (_, bob_token) = w.member("bob").await;
    let org = w.org.clone();

    // Public: no session needed, no identity forwarded.
    let (status, seen) = get(&w, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert!(seen_header(&seen, "x-forwarded-user").is_empty());

    // Authenticated: 401 without a session, identity with one.
    let (status, body) = get(&w, Method::GET, "/app/dashboard", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, seen) = get(&w, Method::GET, "/app/dashboard", Some(&bob_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen_header(&seen, "x-forwarded-user"), vec!["bob"]);

    // require workspace:read on {owner}'s workspaces: bob reads his own (as `me`, by
    // username, by id), not the owner's; the owner reads anyone's.
    for path in [
        "/api/v2/users/me/workspaces",
        "/api/v2/users/bob/workspaces",
    ] {
        let (status, seen) = get(&w, Method::GET, path, Some(&bob_token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {seen}");
        assert_eq!(seen["path"], path);
    }
    let (status, body) = get(
        &w,
        Method::GET,
        "/api/v2/users/admin/workspaces",
        Some(&bob_token),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["message"], "Forbidden.");
    let (status, _) = get(
        &w,
        Method::GET,
        "/api/v2/users/nobody/workspaces",
        Some(&bob_token),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&w, Method::GET, "/api/v2/users/bob/workspaces", Some(admin)).await;
    assert_eq!(status, StatusCode::OK);
    // Unauthenticated on a require rule: 401, not 403.
    let (status, _) = get(&w, Method::GET, "/api/v2/users/me/workspaces", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A method the rule does not list falls to the default (deny).
    let (status, _) = get(&w, Method::POST, "/api/v2/users/me/workspaces", Some(admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A token scoped below the rule's need is refused even for the owner.
    let (status, created, _) = w
        .call(
            Method::POST,
            "/api/v2/users/me/keys/tokens",
            Some(json!({"scopes": ["template:read"]})),
            Some(admin),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let scoped = created["key"].as_str().unwrap();
    let (status, _) = get(&w, Method::GET, "/api/v2/users/me/workspaces", Some(scoped)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // {org}: by id or by name; the owner may update templates, bob may not; an unknown
    // organization belongs to nobody.
    let templates = format!("/api/v2/organizations/{org}/templates/t1");
    let (status, _) = get(&w, Method::PATCH, &templates, Some(admin)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&w, Method::PATCH, &templates, Some(&bob_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(
        &w,
        Method::POST,
        "/api/v2/organizations/nowhere/templates",
        Some(admin),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the owner holds template:update site-wide"
    );

    // Everything else: the default, deny.
    let (status, body) = get(&w, Method::GET, "/elsewhere", Some(admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Portcullis's own API is not under the policy.
    let (status, _) = get(&w, Method::GET, "/api/v2/users/me", Some(&bob_token)).await;
    assert_eq!(status, StatusCode::OK);

    // Paths the upstream could read another way are refused before any rule is asked.
    for path in [
        "/health/../admin",
        "/health/%2e%2e/admin",
        "/app%2F..%2Fadmin",
    ] {
        let (status, body) = get(&w, Method::GET, path, Some(admin)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["message"], "Invalid request path.");
    }
    // Doubled slashes are one separator: //app is /app.
    let (status, _) = get(&w, Method::GET, "//app/x", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    w.finish().await;
}

on_every_store!(route_policy);

/// Portcullis on a Redis of its own (which the test may kill), with `extra` config; returns
/// once the store answers.
async fn on_own_redis(extra: &str) -> (RedisServer, tempfile::TempDir, Sidecar) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let redis = RedisServer::start_persistent(port, dir.path()).await;
    let echo = start_echo().await;
    let store = "cache_ttl = \"60s\"\ncommand_timeout = \"300ms\"";
    let url = format!("redis://127.0.0.1:{port}");
    let config = config_with_store(echo, &url, &random_key_prefix(), store, extra);
    let sidecar = Sidecar::start(&config).await;
    let addr = sidecar.addr;
    eventually("the store answers", || async {
        let first = api_request(Method::GET, "/api/v2/users/first", None, None);
        call_json(addr, first).await.0 != StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    (redis, dir, sidecar)
}

/// An `{owner}` given as a user id is judged as it is, with no store read: with Redis gone, a
/// session still in the cache passes a rule on its own id, while the same rule with a username
/// (which needs a lookup) answers 503, never 401 and never an allow.
#[tokio::test]
async fn an_id_capture_is_judged_without_a_store_read() {
    let policy = "[policy]\ndefault = \"deny\"\n\n[[policy.route]]\n\
                  path = \"/api/v2/users/{owner}/workspaces\"\nmethods = [\"GET\"]\n\
                  require = \"workspace:read\"\n";
    let (mut redis, _dir, sidecar) = on_own_redis(policy).await;
    let addr = sidecar.addr;
    let (admin_id, token) = first_user_token(addr).await;
    let workspaces = |owner: &str| {
        let path = format!("/api/v2/users/{owner}/workspaces");
        api_request(Method::GET, &path, None, Some(&token))
    };
    // The session is read once, and cached.
    let (status, body, _) = call_json(addr, workspaces(&admin_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    redis.kill();
    let (status, body, _) = call_json(addr, workspaces(&admin_id)).await;
    assert_eq!(status, StatusCode::OK, "an id needs no store read: {body}");
    let (status, body, _) = call_json(addr, workspaces("admin")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a name needs one: {body}"
    );
    sidecar.shutdown().await;
}

/// A login while the store cannot count the account's failures is a 503 counted as an error,
/// not as a throttled login.
#[tokio::test]
async fn a_login_the_store_cannot_count_is_an_error_not_a_throttle() {
    // No per-IP limits, so that the account's failure counter is the first store call.
    let limits = "[rate_limit]\nlogin_per_minute = 0\napi_per_minute = 0\n";
    let (mut redis, _dir, sidecar) = on_own_redis(limits).await;
    let addr = sidecar.addr;
    create_admin(addr).await;
    redis.kill();
    let body = json!({"email": ADMIN_EMAIL, "password": PASSWORD});
    let login = api_request(Method::POST, "/api/v2/users/login", Some(&body), None);
    let (status, answer, _) = call_json(addr, login).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let text = sidecar.metrics().await;
    assert_eq!(
        metric(&text, r#"portcullis_logins_total{result="error"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"portcullis_logins_total{result="limited"}"#),
        0.0,
        "{text}"
    );
    sidecar.shutdown().await;
}
