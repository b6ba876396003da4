//! POST /users

use super::*;

pub(super) async fn admin_creates_users(store_url: &str) {
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

on_every_store!(admin_creates_users);

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
