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

on_both_stores!(route_policy =>
    route_policy_with_the_memory_store, route_policy_with_redis);
