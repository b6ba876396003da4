//! POST /users/{user}/keys

use super::*;

pub(super) async fn session_keys(store_url: &str) {
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

on_every_store!(session_keys);
