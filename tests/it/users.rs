//! User management end to end, over real sockets, on both store backends: `POST /users`,
//! `DELETE /users/{user}`, `PUT /users/{user}/password`, `PUT /users/{user}/status/suspend`
//! and `/activate`, `POST /users/{user}/keys` — their answers, Coder's messages, who may call
//! them, and what they revoke, on one Portcullis and on two sharing one Redis.
//!
//! The Redis runs use `127.0.0.1:6379` (which `.ci/run` starts) under a random key prefix each,
//! and fail loudly when it does not answer. Users with roles the API cannot yet grant
//! (`auditor`, `user-admin`, a second `owner`) are made through the running app's own
//! `portcullis::users` operations, the ones the CLI uses.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::world::*;
use crate::common::*;
use portcullis::store::{LoginType, UserStatus};
use portcullis::users::{NewKey, NewUser};

// === POST /users ===

async fn admin_creates_users(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = Some(w.admin.as_str());

    // Success: dormant, password login, no site roles, in the default organization.
    let created = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({
                "email": "Bob@Example.com", "username": "bob", "name": "Bob B",
                "password": PASSWORD, "login_type": "password", "organization_ids": [],
            })),
            admin,
        )
        .await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    let bob = &created.1;
    assert_eq!(bob["username"], "bob");
    assert_eq!(bob["email"], "Bob@Example.com");
    assert_eq!(bob["name"], "Bob B");
    assert_eq!(bob["status"], "dormant");
    assert_eq!(bob["login_type"], "password");
    assert_eq!(bob["roles"], json!([]));
    assert_eq!(bob["organization_ids"], json!([w.org]));
    assert!(bob.get("hashed_password").is_none());

    // A dormant user becomes active at the first login.
    let bob_token = login_ok(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    let (status, me, _) = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&bob_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["status"], "active");
    let (_, seen, _) = w.call(Method::GET, "/api/v2/users/bob", None, admin).await;
    assert_eq!(seen["status"], "active");

    // Duplicates, compared case-insensitively: Coder's message, and which field collided.
    for (email, username, field) in [
        ("BOB@example.com", "robert", "email"),
        ("robert@example.com", "BOB", "username"),
    ] {
        let got = w
            .call(
                Method::POST,
                "/api/v2/users",
                Some(json!({"email": email, "username": username, "password": PASSWORD})),
                admin,
            )
            .await;
        assert_message(&got, StatusCode::CONFLICT, "User already exists.");
        assert_eq!(
            got.1["validations"],
            json!([{"field": field, "detail": "This value is already in use and should be unique."}])
        );
    }

    // Validation of the fields, and a password required for password logins.
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "not-an-email", "username": "no spaces", "password": PASSWORD})),
            admin,
        )
        .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Validation failed.");
    assert_eq!(validation_fields(&got.1), ["email", "username"]);
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "c@example.com", "username": "cee"})),
            admin,
        )
        .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Validation failed.");
    assert_eq!(
        got.1["validations"],
        json!([{"field": "password", "detail": "Validation failed for tag \"required\" with value: \"\""}])
    );

    // Login types: a password only for password logins; OIDC needs OIDC; no tokens.
    let body = |login_type: &str, password: &str| json!({"email": "d@example.com", "username": "dee", "password": password, "login_type": login_type});
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(body("none", PASSWORD)),
            admin,
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Password cannot be set for non-password (\"none\") authentication.",
    );
    let got = w
        .call(Method::POST, "/api/v2/users", Some(body("oidc", "")), admin)
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "You must configure OIDC before creating OIDC users.",
    );
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(body("token", "")),
            admin,
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Unsupported login type \"token\" for manually creating new users.",
    );
    let got = w
        .call(Method::POST, "/api/v2/users", Some(body("none", "")), admin)
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["login_type"], "none");

    // A weak password; an unknown organization; an explicit status.
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "e@example.com", "username": "eee", "password": "x".repeat(65)})),
            admin,
        )
        .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Password not strong enough!");
    assert_eq!(got.1["validations"][0]["field"], "password");
    let nowhere = Uuid::new_v4();
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(
                json!({"email": "e@example.com", "username": "eee", "password": PASSWORD,
                        "organization_ids": [nowhere]}),
            ),
            admin,
        )
        .await;
    assert_message(
        &got,
        StatusCode::NOT_FOUND,
        &format!("Organization does not exist with the provided id \"{nowhere}\"."),
    );
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(
                json!({"email": "e@example.com", "username": "eee", "password": PASSWORD,
                        "organization_ids": [w.org], "user_status": "active"}),
            ),
            admin,
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["status"], "active");
    assert_eq!(got.1["organization_ids"], json!([w.org]));

    // Not JSON; no session; a plain member.
    let resp = send(
        w.sidecar.addr,
        Request::builder()
            .method(Method::POST)
            .uri("/api/v2/users")
            .header("host", "app.test")
            .header("coder-session-token", &w.admin)
            .body(full("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(resp).await["message"],
        "Request body must be valid JSON."
    );
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(body("password", PASSWORD)),
            None,
        )
        .await;
    assert_message(&got, StatusCode::UNAUTHORIZED, SIGNED_OUT);
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "f@example.com", "username": "eff", "password": PASSWORD})),
            Some(&bob_token),
        )
        .await;
    assert_message(
        &got,
        StatusCode::FORBIDDEN,
        "You are not authorized to create users.",
    );
    // A user-admin may.
    let (_, user_admin) = w.with_role("ua", "user-admin").await;
    let got = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "f@example.com", "username": "eff", "password": PASSWORD})),
            Some(&user_admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    w.finish().await;
}

on_both_stores!(admin_creates_users =>
    admin_creates_users_with_the_memory_store,
    admin_creates_users_with_redis
);

/// With password logins disabled, nobody can be given a password (the admin's session comes
/// from the app's own key issuing, since password login is refused too).
#[tokio::test]
async fn password_users_cannot_be_created_when_password_auth_is_disabled() {
    let echo = start_echo().await;
    let config = config_with_store(echo, MEMORY, &random_key_prefix(), "", "").replace(
        "argon2_iterations = 1\n",
        "argon2_iterations = 1\ndisable_password_auth = true\n",
    );
    let sidecar = Sidecar::start(&config).await;
    let ops = sidecar.app.users();
    let (admin, _) = ops
        .create(NewUser {
            email: ADMIN_EMAIL.into(),
            username: "admin".into(),
            name: String::new(),
            password: None,
            login_type: LoginType::None,
            status: UserStatus::Active,
            roles: vec!["owner".into()],
            organization_ids: Vec::new(),
        })
        .await
        .unwrap();
    let token = ops
        .issue_key(
            &admin,
            NewKey {
                login_type: LoginType::Token,
                lifetime: Duration::from_secs(3600),
                scopes: Vec::new(),
                token_name: "setup".into(),
                ip_address: String::new(),
                allow_list: Vec::new(),
                not_after: None,
            },
        )
        .await
        .unwrap();
    let got = call(
        &sidecar,
        Method::POST,
        "/api/v2/users",
        Some(json!({"email": "b@example.com", "username": "bee", "password": PASSWORD})),
        Some(&token),
    )
    .await;
    assert_message(
        &got,
        StatusCode::FORBIDDEN,
        "Password based authentication is disabled! Unable to provision new users with password authentication.",
    );
    let got = call(
        &sidecar,
        Method::POST,
        "/api/v2/users",
        Some(json!({"email": "b@example.com", "username": "bee", "login_type": "none"})),
        Some(&token),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
}

// === {user} resolution (§0.6) ===

async fn user_parameter(store_url: &str) {
    let w = World::start(store_url, "").await;
    // `me` without a session: every {user} route needs one, so Coder's session check answers.
    w.assert_sessions_needed(&[
        (Method::GET, "/api/v2/users/me"),
        (Method::DELETE, "/api/v2/users/me"),
        (Method::PUT, "/api/v2/users/me/password"),
        (Method::PUT, "/api/v2/users/me/status/suspend"),
        (Method::PUT, "/api/v2/users/me/status/activate"),
        (Method::POST, "/api/v2/users/me/keys"),
    ])
    .await;
    // An unknown username or id: not found, on every route.
    let unknown_id = format!("/api/v2/users/{}", Uuid::new_v4());
    for base in ["/api/v2/users/nobody", unknown_id.as_str()] {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::PUT, "/password"),
            (Method::PUT, "/status/suspend"),
            (Method::PUT, "/status/activate"),
            (Method::POST, "/keys"),
        ] {
            let path = format!("{base}{suffix}");
            let got = w
                .call(
                    method.clone(),
                    &path,
                    Some(json!({"password": "a new passphrase"})),
                    Some(&w.admin),
                )
                .await;
            assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
        }
    }
    // A user id and a username (any case) name the same user.
    let (bob, _) = w.member("bob").await;
    for name in [bob["id"].as_str().unwrap(), "bob", "BOB"] {
        let (status, seen, _) = w
            .call(
                Method::GET,
                &format!("/api/v2/users/{name}"),
                None,
                Some(&w.admin),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(seen["id"], bob["id"]);
    }
    w.finish().await;
}

on_both_stores!(user_parameter =>
    the_user_parameter_with_the_memory_store,
    the_user_parameter_with_redis
);

// === DELETE /users/{user} ===

async fn deleting_users(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let (carol, carol_token) = w.member("carol").await;
    let (_, auditor) = w.with_role("aud", "auditor").await;
    let (_, user_admin) = w.with_role("ua", "user-admin").await;
    let bob_path = format!("/api/v2/users/{}", bob["id"].as_str().unwrap());
    assert_eq!(proxied(&w.sidecar, &bob_token).await.0, StatusCode::OK);

    // Nobody deletes themselves; a member cannot see others; an auditor sees but may not.
    let got = w
        .call(Method::DELETE, "/api/v2/users/me", None, Some(&w.admin))
        .await;
    assert_message(&got, StatusCode::FORBIDDEN, "You cannot delete yourself!");
    let got = w
        .call(
            Method::DELETE,
            &format!("/api/v2/users/{}", w.admin_id),
            None,
            Some(&w.admin),
        )
        .await;
    assert_message(&got, StatusCode::FORBIDDEN, "You cannot delete yourself!");
    let got = w
        .call(Method::DELETE, &bob_path, None, Some(&carol_token))
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let got = w
        .call(Method::DELETE, &bob_path, None, Some(&auditor))
        .await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    assert_eq!(got.1["detail"], forbidden_detail());

    // The admin deletes bob: every key of his stops at once, and he is gone.
    let got = w
        .call(Method::DELETE, &bob_path, None, Some(&w.admin))
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1, json!({"message": "User has been deleted!"}));
    assert_signed_out(
        &proxied(&w.sidecar, &bob_token).await,
        "API key is invalid.",
    );
    let got = w.call(Method::GET, &bob_path, None, Some(&w.admin)).await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let (status, body) = login(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let got = w
        .call(Method::DELETE, &bob_path, None, Some(&w.admin))
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    // A user-admin may delete too; the deleted user's name is free again.
    let carol_path = format!("/api/v2/users/{}", carol["id"].as_str().unwrap());
    let got = w
        .call(Method::DELETE, &carol_path, None, Some(&user_admin))
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_signed_out(
        &proxied(&w.sidecar, &carol_token).await,
        "API key is invalid.",
    );
    w.member("carol").await;
    w.finish().await;
}

on_both_stores!(deleting_users =>
    deleting_users_with_the_memory_store,
    deleting_users_with_redis
);

// === PUT /users/{user}/password ===

async fn password_changes(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let bob_second = login_ok(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    let (_, carol_token) = w.member("carol").await;
    let (_, auditor) = w.with_role("aud", "auditor").await;
    let bob_path = format!("/api/v2/users/{}/password", bob["id"].as_str().unwrap());
    let put = |path: &str, body: Value, token: &str| {
        let (path, token) = (path.to_owned(), token.to_owned());
        let sidecar = &w.sidecar;
        async move { call(sidecar, Method::PUT, &path, Some(body), Some(&token)).await }
    };

    // Who may: not another member, not an auditor (both: not found, as in Coder).
    let got = put(
        &bob_path,
        json!({"password": "a new passphrase"}),
        &carol_token,
    )
    .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let got = put(&bob_path, json!({"password": "a new passphrase"}), &auditor).await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    // The messages of §7.7, on bob's own password.
    let me = "/api/v2/users/me/password";
    let got = put(me, json!({"old_password": PASSWORD}), &bob_token).await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Validation failed.");
    assert_eq!(got.1["validations"][0]["field"], "password");
    let got = put(me, json!({"password": "a new passphrase"}), &bob_token).await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Old password is required.");
    let got = put(
        me,
        json!({"old_password": PASSWORD, "password": "Kx8#mQ2$vL9@".repeat(5) + "Kx8#!"}),
        &bob_token,
    )
    .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Invalid password.");
    assert_eq!(got.1["validations"][0]["field"], "password");
    assert_eq!(
        got.1["validations"][0]["detail"],
        "password must be no more than 64 characters"
    );
    let got = put(
        me,
        json!({"old_password": "not it at all", "password": "a new passphrase"}),
        &bob_token,
    )
    .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Old password is incorrect.");
    assert_eq!(
        got.1["validations"],
        json!([{"field": "old_password", "detail": "Old password is incorrect."}])
    );
    let got = put(
        me,
        json!({"old_password": PASSWORD, "password": PASSWORD}),
        &bob_token,
    )
    .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "New password cannot match old password.",
    );
    // Nothing above changed anything.
    assert_eq!(proxied(&w.sidecar, &bob_token).await.0, StatusCode::OK);

    // Bob changes his own: 204, and every token of his dies; carol's lives.
    let got = put(
        me,
        json!({"old_password": PASSWORD, "password": "bobs new passphrase"}),
        &bob_token,
    )
    .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    for token in [&bob_token, &bob_second] {
        assert_signed_out(&proxied(&w.sidecar, token).await, "API key is invalid.");
    }
    assert_eq!(proxied(&w.sidecar, &carol_token).await.0, StatusCode::OK);
    let (status, _) = login(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bob_token = login_ok(w.sidecar.addr, "bob@example.com", "bobs new passphrase").await;

    // The admin sets it without the old one; bob's sessions die again.
    let got = put(&bob_path, json!({"password": "set by the admin"}), &w.admin).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_signed_out(
        &proxied(&w.sidecar, &bob_token).await,
        "API key is invalid.",
    );
    login_ok(w.sidecar.addr, "bob@example.com", "set by the admin").await;
    // The admin's own still needs the old one.
    let got = put(me, json!({"password": "a new passphrase"}), &w.admin).await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Old password is required.");

    // A user without a password login has no password to change.
    let (status, nopass, _) = w
        .call(
            Method::POST,
            "/api/v2/users",
            Some(json!({"email": "n@example.com", "username": "nopass", "login_type": "none"})),
            Some(&w.admin),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{nopass}");
    let got = put(
        "/api/v2/users/nopass/password",
        json!({"password": "a new passphrase"}),
        &w.admin,
    )
    .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Users without password login type cannot change their password.",
    );
    w.finish().await;
}

on_both_stores!(password_changes =>
    password_changes_with_the_memory_store,
    password_changes_with_redis
);

// === PUT /users/{user}/status/... ===

async fn suspension(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let (_, carol_token) = w.member("carol").await;
    let (_, auditor) = w.with_role("aud", "auditor").await;
    let (other_owner, _) = w.with_role("own2", "owner").await;
    let bob_id = bob["id"].as_str().unwrap();
    let suspend = format!("/api/v2/users/{bob_id}/status/suspend");
    let activate = format!("/api/v2/users/{bob_id}/status/activate");
    assert_eq!(proxied(&w.sidecar, &bob_token).await.0, StatusCode::OK);

    // Refusals: yourself, an owner, a member on another, an auditor.
    let got = w
        .call(
            Method::PUT,
            "/api/v2/users/me/status/suspend",
            None,
            Some(&w.admin),
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "You cannot suspend yourself.",
    );
    let got = w
        .call(
            Method::PUT,
            &format!("/api/v2/users/{other_owner}/status/suspend"),
            None,
            Some(&w.admin),
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "You cannot suspend a user with the \"owner\" role. You must remove the role first.",
    );
    let got = w
        .call(Method::PUT, &suspend, None, Some(&carol_token))
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let got = w.call(Method::PUT, &suspend, None, Some(&auditor)).await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    assert_eq!(proxied(&w.sidecar, &bob_token).await.0, StatusCode::OK);

    // Suspended: the updated user comes back, and bob's session stops at once.
    let got = w.call(Method::PUT, &suspend, None, Some(&w.admin)).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["id"], bob["id"]);
    assert_eq!(got.1["status"], "suspended");
    assert_eq!(got.1["organization_ids"], json!([w.org]));
    assert_signed_out(&proxied(&w.sidecar, &bob_token).await, SUSPENDED_DETAIL);
    let (status, body, _) = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&bob_token))
        .await;
    assert_signed_out(&(status, body), SUSPENDED_DETAIL);
    let (status, body) = login(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "Your account is suspended. Contact an admin to reactivate your account."
    );

    // Activated: a new login goes through.
    let got = w.call(Method::PUT, &activate, None, Some(&w.admin)).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["status"], "active");
    let fresh = login_ok(w.sidecar.addr, "bob@example.com", PASSWORD).await;
    assert_eq!(proxied(&w.sidecar, &fresh).await.0, StatusCode::OK);
    // Activation by someone who may not: forbidden.
    let got = w.call(Method::PUT, &activate, None, Some(&auditor)).await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    w.finish().await;
}

on_both_stores!(suspension =>
    suspension_and_activation_with_the_memory_store,
    suspension_and_activation_with_redis
);

// === POST /users/{user}/keys ===

async fn session_keys(store_url: &str) {
    let w = World::start(store_url, "[tokens]\ndefault_lifetime = \"48h\"\n").await;
    let (bob, bob_token) = w.member("bob").await;
    let (_, carol_token) = w.member("carol").await;
    let (_, user_admin) = w.with_role("ua", "user-admin").await;

    // Your own: 201 {"key"}, no cookie, coder:all, the configured default lifetime.
    let got = w
        .call(
            Method::POST,
            "/api/v2/users/me/keys",
            None,
            Some(&bob_token),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert!(got.2.get("set-cookie").is_none());
    let key = got.1["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 33);
    let (status, seen) = proxied(&w.sidecar, &key).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), vec!["bob"]);
    assert_eq!(seen_header(&seen, "x-forwarded-scopes"), vec!["coder:all"]);
    let stored = w
        .sidecar
        .app
        .store
        .key(&key[..10])
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.lifetime_seconds, 48 * 3600);
    assert_eq!(stored.login_type, LoginType::Password);
    assert_eq!(stored.token_name, "");

    // The owner may make one for bob; nobody else may (not found, as in Coder).
    let bob_keys = format!("/api/v2/users/{}/keys", bob["id"].as_str().unwrap());
    let got = w.call(Method::POST, &bob_keys, None, Some(&w.admin)).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let (status, seen) = proxied(&w.sidecar, got.1["key"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen_header(&seen, "x-forwarded-user"), vec!["bob"]);
    for token in [&carol_token, &user_admin] {
        let got = w.call(Method::POST, &bob_keys, None, Some(token)).await;
        assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    }
    let got = w
        .call(
            Method::POST,
            "/api/v2/users/admin/keys",
            None,
            Some(&bob_token),
        )
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    // A key of a scoped token cannot mint a coder:all key.
    let ops = w.sidecar.app.users();
    let bob_user = ops.find("bob").await.unwrap().unwrap();
    let scoped = ops
        .issue_key(
            &bob_user,
            NewKey {
                login_type: LoginType::Token,
                lifetime: Duration::from_secs(3600),
                scopes: vec!["workspace:read".into()],
                token_name: "ro".into(),
                ip_address: String::new(),
                allow_list: Vec::new(),
                not_after: None,
            },
        )
        .await
        .unwrap();
    let got = w
        .call(Method::POST, "/api/v2/users/me/keys", None, Some(&scoped))
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    w.finish().await;
}

on_both_stores!(session_keys =>
    session_keys_with_the_memory_store,
    session_keys_with_redis
);

// === two replicas on one Redis ===

/// Two Portcullis instances on one Redis and key prefix, caches warm and long-lived: a change
/// made through one must reach the other through the invalidation, not the cache TTL.
async fn two_replicas() -> (World, Sidecar) {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let config = config_with_store(
        echo,
        REDIS,
        &prefix,
        "cache_ttl = \"1h\"\nnegative_cache_ttl = \"0s\"\n",
        "",
    );
    let a = Sidecar::start(&config).await;
    let b = Sidecar::start(&config).await;
    (World::with_first_user(a, prefix).await, b)
}

/// Waits (bounded) until `token` is refused on `sidecar` with `detail`.
async fn refused_on(sidecar: &Sidecar, token: &str, detail: &str) {
    eventually("the other replica to refuse the token", || async {
        proxied(sidecar, token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_signed_out(&proxied(sidecar, token).await, detail);
}

#[tokio::test]
async fn a_password_change_revokes_every_token_on_both_replicas() {
    let (w, b) = two_replicas().await;
    let (bob, bob_token) = w.member("bob").await;
    let bob_second = login_ok(b.addr, "bob@example.com", PASSWORD).await;
    // Warm both caches with every token.
    for token in [&bob_token, &bob_second, &w.admin] {
        assert_eq!(proxied(&w.sidecar, token).await.0, StatusCode::OK);
        assert_eq!(proxied(&b, token).await.0, StatusCode::OK);
    }

    // Bob changes his own password on A: every token of his dies on A at once, and on B.
    let got = w
        .call(
            Method::PUT,
            "/api/v2/users/me/password",
            Some(json!({"old_password": PASSWORD, "password": "bobs new passphrase"})),
            Some(&bob_token),
        )
        .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    for token in [&bob_token, &bob_second] {
        assert_signed_out(&proxied(&w.sidecar, token).await, "API key is invalid.");
        refused_on(&b, token, "API key is invalid.").await;
    }
    assert_eq!(proxied(&b, &w.admin).await.0, StatusCode::OK);

    // The admin sets it on B: bob's new session, warm on A, dies on A.
    let fresh = login_ok(w.sidecar.addr, "bob@example.com", "bobs new passphrase").await;
    assert_eq!(proxied(&w.sidecar, &fresh).await.0, StatusCode::OK);
    assert_eq!(proxied(&b, &fresh).await.0, StatusCode::OK);
    let got = call(
        &b,
        Method::PUT,
        &format!("/api/v2/users/{}/password", bob["id"].as_str().unwrap()),
        Some(json!({"password": "set by the admin"})),
        Some(&w.admin),
    )
    .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    refused_on(&w.sidecar, &fresh, "API key is invalid.").await;
    refused_on(&b, &fresh, "API key is invalid.").await;
    b.shutdown().await;
    w.finish().await;
}

#[tokio::test]
async fn a_suspension_or_deletion_on_one_replica_stops_sessions_on_the_other() {
    let (w, b) = two_replicas().await;
    let (bob, bob_token) = w.member("bob").await;
    let (carol, carol_token) = w.member("carol").await;
    for token in [&bob_token, &carol_token] {
        assert_eq!(proxied(&b, token).await.0, StatusCode::OK);
    }
    let got = w
        .call(
            Method::PUT,
            &format!(
                "/api/v2/users/{}/status/suspend",
                bob["id"].as_str().unwrap()
            ),
            None,
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    refused_on(&b, &bob_token, SUSPENDED_DETAIL).await;
    let got = call(
        &b,
        Method::PUT,
        &format!(
            "/api/v2/users/{}/status/activate",
            bob["id"].as_str().unwrap()
        ),
        None,
        Some(&w.admin),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    eventually("the reactivated session to work on A", || async {
        proxied(&w.sidecar, &bob_token).await.0 == StatusCode::OK
    })
    .await;

    let got = w
        .call(
            Method::DELETE,
            &format!("/api/v2/users/{}", carol["id"].as_str().unwrap()),
            None,
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    refused_on(&b, &carol_token, "API key is invalid.").await;
    b.shutdown().await;
    w.finish().await;
}

// === owners are protected: nobody acts on a user with a role they could not grant ===

async fn owners_are_protected_from_user_admins(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let (owner2, owner2_token) = w.with_role("owner2", "owner").await;
    let (_, user_admin) = w.with_role("ua", "user-admin").await;
    let ua = Some(user_admin.as_str());
    let admin_path = format!("/api/v2/users/{}", w.admin_id);
    let new_password = json!({"password": "a brand new passphrase"});

    // A user-admin on an owner: password (Coder's own answer), delete, suspend, activate,
    // site roles and organization roles are all refused.
    let got = w
        .call(
            Method::PUT,
            &format!("{admin_path}/password"),
            Some(new_password.clone()),
            ua,
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Only owners can change the password of another owner.",
    );
    let got = w.call(Method::DELETE, &admin_path, None, ua).await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    let got = w
        .call(
            Method::PUT,
            &format!("{admin_path}/status/suspend"),
            None,
            ua,
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let got = w
        .call(
            Method::PUT,
            &format!("{admin_path}/status/activate"),
            None,
            ua,
        )
        .await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    // Even a "change" that keeps the roles as they are.
    for roles in [json!(["owner"]), json!([])] {
        let got = w
            .call(
                Method::PUT,
                &format!("{admin_path}/roles"),
                Some(json!({ "roles": roles })),
                ua,
            )
            .await;
        assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    }
    let got = w
        .call(
            Method::PUT,
            &format!("/api/v2/organizations/default/members/{}/roles", w.admin_id),
            Some(json!({"roles": []})),
            ua,
        )
        .await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    // The owner is untouched: same password, active, still an owner, still here.
    let still = login_ok(w.sidecar.addr, ADMIN_EMAIL, PASSWORD).await;
    let (status, me, _) = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&still))
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["status"], "active");
    assert_eq!(me["roles"][0]["name"], "owner");

    // The same user-admin on a member: every one of those works.
    let bob_path = format!("/api/v2/users/{}", bob["id"].as_str().unwrap());
    let got = w
        .call(
            Method::PUT,
            &format!("{bob_path}/password"),
            Some(new_password.clone()),
            ua,
        )
        .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        proxied(&w.sidecar, &bob_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    for (method, path, body, status) in [
        (Method::PUT, "/status/suspend", None, StatusCode::OK),
        (Method::PUT, "/status/activate", None, StatusCode::OK),
        (
            Method::PUT,
            "/roles",
            Some(json!({"roles": ["member"]})),
            StatusCode::OK,
        ),
    ] {
        let got = w.call(method, &format!("{bob_path}{path}"), body, ua).await;
        assert_eq!(got.0, status, "{path}: {}", got.1);
    }
    let got = w
        .call(
            Method::PUT,
            &format!(
                "/api/v2/organizations/default/members/{}/roles",
                bob["id"].as_str().unwrap()
            ),
            Some(json!({"roles": ["organization-workspace-access"]})),
            ua,
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let got = w.call(Method::DELETE, &bob_path, None, ua).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);

    // An owner on another owner: password, roles and delete all work.
    let owner2_path = format!("/api/v2/users/{owner2}");
    let got = w
        .call(
            Method::PUT,
            &format!("{owner2_path}/password"),
            Some(new_password),
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        proxied(&w.sidecar, &owner2_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    login_ok(
        w.sidecar.addr,
        "owner2@example.com",
        "a brand new passphrase",
    )
    .await;
    let got = w
        .call(
            Method::PUT,
            &format!("/api/v2/organizations/default/members/{owner2}/roles"),
            Some(json!({"roles": ["organization-auditor"]})),
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let got = w
        .call(
            Method::PUT,
            &format!("{owner2_path}/roles"),
            Some(json!({"roles": ["auditor"]})),
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["roles"][0]["name"], "auditor");
    let got = w
        .call(Method::DELETE, &owner2_path, None, Some(&w.admin))
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    w.finish().await;
}

on_both_stores!(owners_are_protected_from_user_admins =>
    a_user_admin_cannot_touch_an_owner_with_the_memory_store,
    a_user_admin_cannot_touch_an_owner_with_redis
);
