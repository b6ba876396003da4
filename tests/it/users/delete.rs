//! DELETE /users/{user}

use super::*;

pub(super) async fn deleting_users(store_url: &str) {
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

on_every_store!(deleting_users);
