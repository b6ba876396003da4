//! two replicas on one Redis

use super::*;

/// Two Portcullis instances on one Redis ([`World::with_replica`]).
pub(super) async fn two_replicas() -> (World, Sidecar) {
    let (w, b) = World::with_replica(REDIS).await;
    (w, b.expect("a shared store"))
}

/// Waits (bounded) until `token` is refused on `sidecar` with `detail`.
pub(super) async fn refused_on(sidecar: &Sidecar, token: &str, detail: &str) {
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
