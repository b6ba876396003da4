//! PUT /users/{user}/password

use super::*;

pub(super) async fn password_changes(store_url: &str) {
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

on_every_store!(password_changes);
