//! The tokens API end to end, over real sockets, on every store (spec/coder-api.md
//! §7.3-7.4): creation with scopes, lifetimes, names and allow lists and every 400/409 of it;
//! listing, lookup, `tokenconfig`, expiry and deletion; who may do each; and tokens made with a
//! restricted key staying within it.

use http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::world::*;
use crate::common::*;

const HOUR_NS: i64 = 3_600_000_000_000;

async fn create(w: &World, who: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/api/v2/users/{who}/keys/tokens");
    let (status, body, _) = w.call(Method::POST, &path, Some(body), Some(token)).await;
    (status, body)
}

async fn create_ok(w: &World, who: &str, token: &str, body: Value) -> String {
    let (status, got) = create(w, who, token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    got["key"].as_str().expect("key").to_owned()
}

async fn get(w: &World, path: &str, token: &str) -> (StatusCode, Value) {
    let (status, body, _) = w.call(Method::GET, path, None, Some(token)).await;
    (status, body)
}

fn assert_bad(got: &(StatusCode, Value), message: &str, detail: &str) {
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert_eq!(got.1["message"], message, "{}", got.1);
    assert_eq!(got.1["detail"], detail, "{}", got.1);
}

// === creation ===

async fn creating_tokens(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();

    // Defaults: coder:all, *:*, 168h, login type token, never used.
    let key = create_ok(&w, "me", admin, json!({"token_name": "ci"})).await;
    let (status, seen) = get(&w, "/api/v2/users/me/keys/tokens/ci", admin).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["id"], &key[..10]);
    assert_eq!(seen["user_id"], w.admin_id.as_str());
    assert_eq!(seen["login_type"], "token");
    assert_eq!(seen["scope"], "all");
    assert_eq!(seen["scopes"], json!(["coder:all"]));
    assert_eq!(seen["allow_list"], json!([{"type": "*", "id": "*"}]));
    assert_eq!(seen["lifetime_seconds"], 7 * 24 * 3600);
    assert_eq!(seen["token_name"], "ci");
    assert_eq!(seen["last_used"], "1970-01-01T00:00:00Z");
    // The token works.
    let (status, me) = get(&w, "/api/v2/users/me", &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");

    // Same name again: 409 with Coder's message and validation.
    let got = create(&w, "me", admin, json!({"token_name": "ci"})).await;
    assert_eq!(got.0, StatusCode::CONFLICT, "{}", got.1);
    assert_eq!(got.1["message"], "A token with name \"ci\" already exists.");
    assert_eq!(
        got.1["validations"],
        json!([{"field": "name", "detail": "This value is already in use and should be unique."}])
    );

    // No name: a generated adjective_surname one.
    let key = create_ok(&w, "me", admin, json!({})).await;
    let (_, list) = get(&w, "/api/v2/users/me/keys/tokens", admin).await;
    let generated = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key[..10])
        .expect("listed")["token_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (adjective, rest) = generated.split_once('_').expect("adjective_surname");
    assert!(
        adjective.chars().all(|c| c.is_ascii_lowercase()),
        "{generated}"
    );
    assert!(
        rest.chars().all(|c| c.is_ascii_alphanumeric()),
        "{generated}"
    );

    // Scopes: the list, aliases canonicalised, the legacy single `scope`.
    create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "ro", "scopes": ["workspace:read", "all", "workspace:read"]}),
    )
    .await;
    let (_, ro) = get(&w, "/api/v2/users/me/keys/tokens/ro", admin).await;
    assert_eq!(ro["scopes"], json!(["workspace:read", "coder:all"]));
    create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "app", "scope": "application_connect"}),
    )
    .await;
    let (_, app) = get(&w, "/api/v2/users/me/keys/tokens/app", admin).await;
    assert_eq!(app["scopes"], json!(["coder:application_connect"]));
    assert_eq!(app["scope"], "application_connect");

    // Scopes that are not external: `*:*`, unknown names.
    for bad in ["*:*", "workspace:fly", "no_user_data", "coder:nonsense"] {
        let got = create(&w, "me", admin, json!({"scopes": [bad]})).await;
        assert_bad(
            &got,
            "Failed to create API key.",
            &format!("invalid or unsupported API key scope: {bad:?}"),
        );
    }

    // Lifetimes: nanoseconds; negative refused; an owner's maximum is the admin maximum.
    create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "short", "lifetime": 2 * HOUR_NS}),
    )
    .await;
    let (_, short) = get(&w, "/api/v2/users/me/keys/tokens/short", admin).await;
    assert_eq!(short["lifetime_seconds"], 7200);
    let got = create(&w, "me", admin, json!({"lifetime": -1})).await;
    assert_bad(
        &got,
        "Failed to validate create API key request.",
        "lifetime must be positive number greater than 0",
    );
    let got = create(&w, "me", admin, json!({"lifetime": 169 * HOUR_NS})).await;
    assert_bad(
        &got,
        "Failed to validate create API key request.",
        "lifetime must be less than 168h0m0s",
    );
    // A member may have a longer one.
    let (bob, bob_token) = w.member("bob").await;
    create_ok(
        &w,
        "me",
        &bob_token,
        json!({"token_name": "long", "lifetime": 720 * HOUR_NS}),
    )
    .await;

    // Bad JSON.
    let got = create(&w, "me", admin, json!({"lifetime": "soon"})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    assert_eq!(got.1["message"], "Request body must be valid JSON.");

    // Who: an owner makes one for bob; bob cannot make one for the owner (not found).
    let bob_id = bob["id"].as_str().unwrap();
    let for_bob = create_ok(&w, bob_id, admin, json!({"token_name": "by-admin"})).await;
    let (_, seen) = get(&w, "/api/v2/users/me", &for_bob).await;
    assert_eq!(seen["username"], "bob");
    let got = create(&w, "admin", &bob_token, json!({})).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    assert_eq!(got.1["message"], NOT_FOUND);
    w.finish().await;
}

on_every_store!(creating_tokens);

async fn allow_lists(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let ws = Uuid::new_v4();
    let other = Uuid::new_v4();

    // Both forms; type:* absorbs that type's ids; sorted; UUIDs in canonical form.
    create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "a", "allow_list": [
            {"type": "workspace", "id": ws.to_string().to_uppercase()},
            format!("template:{other}"),
            {"type": "template", "id": "*"},
        ]}),
    )
    .await;
    let (_, a) = get(&w, "/api/v2/users/me/keys/tokens/a", admin).await;
    assert_eq!(
        a["allow_list"],
        json!([{"type": "template", "id": "*"}, {"type": "workspace", "id": ws.to_string()}])
    );
    // `*:*` anywhere collapses the list.
    create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "b", "allow_list": [format!("workspace:{ws}"), "*:*"]}),
    )
    .await;
    let (_, b) = get(&w, "/api/v2/users/me/keys/tokens/b", admin).await;
    assert_eq!(b["allow_list"], json!([{"type": "*", "id": "*"}]));

    // Refused: unknown type, an id that is not a UUID, a string without `:`, 129 entries.
    for (entry, detail) in [
        (
            json!({"type": "spaceship", "id": "*"}),
            "allow_list entry has unknown resource type \"spaceship\"",
        ),
        (
            json!({"type": "workspace", "id": "abc"}),
            "allow_list entry id \"abc\" must be a UUID or \"*\"",
        ),
        (
            json!("workspace"),
            "allow_list entry \"workspace\" is not \"type:id\"",
        ),
    ] {
        let got = create(&w, "me", admin, json!({"allow_list": [entry]})).await;
        assert_bad(&got, "Failed to create API key.", detail);
    }
    let many: Vec<String> = (0..129)
        .map(|_| format!("workspace:{}", Uuid::new_v4()))
        .collect();
    let got = create(&w, "me", admin, json!({"allow_list": many})).await;
    assert_bad(
        &got,
        "Failed to create API key.",
        "allow_list has 129 entries; at most 128 are allowed",
    );
    w.finish().await;
}

on_every_store!(allow_lists);

// === listing, lookup, expiry, deletion ===

async fn managing_tokens(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let (bob, bob_token) = w.member("bob").await;
    let bob_id = bob["id"].as_str().unwrap();

    // Nothing yet: `[]`, never null (bob's login session is not a token).
    let (status, list) = get(&w, "/api/v2/users/me/keys/tokens", &bob_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));

    let first = create_ok(&w, "me", &bob_token, json!({"token_name": "first"})).await;
    let second = create_ok(&w, "me", &bob_token, json!({"token_name": "second"})).await;
    let (_, list) = get(&w, "/api/v2/users/me/keys/tokens", &bob_token).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["token_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"first") && names.contains(&"second"));

    // tokenconfig: a member's maximum, an owner's (stricter) one.
    let (_, config) = get(&w, "/api/v2/users/me/keys/tokens/tokenconfig", &bob_token).await;
    assert_eq!(config, json!({"max_token_lifetime": 876_600 * HOUR_NS}));
    let (_, config) = get(&w, "/api/v2/users/me/keys/tokens/tokenconfig", admin).await;
    assert_eq!(config, json!({"max_token_lifetime": 168 * HOUR_NS}));

    // By name and by id; unknown ones are 404.
    let (status, _) = get(&w, "/api/v2/users/me/keys/tokens/nope", &bob_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let by_id = format!("/api/v2/users/me/keys/{}", &first[..10]);
    let (status, seen) = get(&w, &by_id, &bob_token).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["token_name"], "first");
    let (status, _) = get(&w, "/api/v2/users/me/keys/ABCDEFGHIJ", &bob_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Others' tokens: a member sees none of the owner's; the owner sees bob's.
    let admin_key = create_ok(&w, "me", admin, json!({"token_name": "adm"})).await;
    let admins = format!("/api/v2/users/admin/keys/{}", &admin_key[..10]);
    let (status, _) = get(&w, &admins, &bob_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bobs = format!("/api/v2/users/{bob_id}/keys/tokens");
    let (status, list) = get(&w, &bobs, admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Expire: 204, the token stops working at once, idempotent, still listed with
    // include_expired only.
    let expire = format!("/api/v2/users/me/keys/{}/expire", &first[..10]);
    let got = w.call(Method::PUT, &expire, None, Some(&bob_token)).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    let (status, body) = get(&w, "/api/v2/users/me", &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("API key expired at"),
        "{body}"
    );
    let got = w.call(Method::PUT, &expire, None, Some(&bob_token)).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT);
    let (_, list) = get(&w, "/api/v2/users/me/keys/tokens", &bob_token).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, list) = get(
        &w,
        "/api/v2/users/me/keys/tokens?include_expired=true",
        &bob_token,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Delete: 204, the token stops working, then 404.
    let delete = format!("/api/v2/users/me/keys/{}", &second[..10]);
    let got = w
        .call(Method::DELETE, &delete, None, Some(&bob_token))
        .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    let (status, _) = get(&w, "/api/v2/users/me", &second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let got = w
        .call(Method::DELETE, &delete, None, Some(&bob_token))
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
    // A member cannot delete the owner's token (it does not exist for them).
    let got = w
        .call(Method::DELETE, &admins, None, Some(&bob_token))
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
    let (status, _) = get(&w, "/api/v2/users/me", &admin_key).await;
    assert_eq!(status, StatusCode::OK);
    w.finish().await;
}

on_every_store!(managing_tokens);

// === restricted creators ===

async fn restricted_creators(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let ws = Uuid::new_v4();

    // A key that may make keys and read workspaces, for one workspace, for 2 hours.
    let creator = create_ok(
        &w,
        "me",
        admin,
        json!({
            "token_name": "creator",
            "scopes": ["api_key:*", "workspace:read"],
            "allow_list": ["api_key:*", format!("workspace:{ws}")],
            "lifetime": 2 * HOUR_NS,
        }),
    )
    .await;
    let (_, creator_json) = get(&w, "/api/v2/users/me/keys/tokens/creator", admin).await;

    // Asking for nothing: its scopes and allow list, and an expiry no later than its own.
    create_ok(&w, "me", &creator, json!({"token_name": "child"})).await;
    let (_, child) = get(&w, "/api/v2/users/me/keys/tokens/child", admin).await;
    assert_eq!(child["scopes"], creator_json["scopes"]);
    assert_eq!(child["allow_list"], creator_json["allow_list"]);
    let expiry = |k: &Value| {
        time::OffsetDateTime::parse(
            k["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(
        expiry(&child) <= expiry(&creator_json),
        "{child} {creator_json}"
    );

    // A subset is fine.
    create_ok(
        &w,
        "me",
        &creator,
        json!({"token_name": "narrow", "scopes": ["workspace:read"],
               "allow_list": [format!("workspace:{ws}")]}),
    )
    .await;

    // More than it holds is refused, for scopes and for the allow list.
    let got = create(&w, "me", &creator, json!({"scopes": ["workspace:update"]})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert_eq!(got.1["message"], "Failed to create API key.");
    let detail = got.1["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("exceeds the creating API key: scope \"workspace:update\""),
        "{detail}"
    );
    let got = create(&w, "me", &creator, json!({"scopes": ["coder:all"]})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let got = create(
        &w,
        "me",
        &creator,
        json!({"allow_list": [format!("workspace:{}", Uuid::new_v4())]}),
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert!(got.1["detail"]
        .as_str()
        .unwrap()
        .contains("is not covered by its allow list"));
    let got = create(&w, "me", &creator, json!({"allow_list": ["*:*"]})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);

    // A session key (POST /users/{user}/keys is coder:all) cannot be minted by it either.
    let got = w
        .call(Method::POST, "/api/v2/users/me/keys", None, Some(&creator))
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);

    // A key without api_key scopes cannot make keys at all.
    let reader = create_ok(
        &w,
        "me",
        admin,
        json!({"token_name": "reader", "scopes": ["workspace:read"]}),
    )
    .await;
    let got = create(&w, "me", &reader, json!({"scopes": ["workspace:read"]})).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    w.finish().await;
}

on_every_store!(restricted_creators);

#[tokio::test]
async fn token_routes_need_a_session() {
    let w = World::start(MEMORY, "").await;
    w.assert_sessions_needed(&[
        (Method::POST, "/api/v2/users/me/keys/tokens"),
        (Method::GET, "/api/v2/users/me/keys/tokens"),
        (Method::GET, "/api/v2/users/me/keys/tokens/tokenconfig"),
        (Method::GET, "/api/v2/users/me/keys/ABCDEFGHIJ"),
        (Method::DELETE, "/api/v2/users/me/keys/ABCDEFGHIJ"),
        (Method::PUT, "/api/v2/users/me/keys/ABCDEFGHIJ/expire"),
    ])
    .await;
    w.finish().await;
}
