//! owners are protected: nobody acts on a user with a role they could not grant

use super::*;

pub(super) async fn owners_are_protected_from_user_admins(store_url: &str) {
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

on_every_store!(owners_are_protected_from_user_admins => a_user_admin_cannot_touch_an_owner);
