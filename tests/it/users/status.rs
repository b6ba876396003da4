//! PUT /users/{user}/status/...

use super::*;

pub(super) async fn suspension(store_url: &str) {
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

on_every_store!(suspension => suspension_and_activation);
