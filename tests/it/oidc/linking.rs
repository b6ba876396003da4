//! accounts linked by (issuer, subject)

use super::*;

pub(super) const VERIFY_EMAIL: &str = "email address on your OIDC provider to authenticate!";

/// The user id of the session in `browser`.
pub(super) async fn user_id_of(w: &World, browser: &Browser) -> String {
    let (status, me) = w.me(&session_of(browser)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"].as_str().unwrap().to_owned()
}

on_every_store!(same_email_other_subject => same_email_with_another_subject_is_refused);

pub(super) async fn same_email_other_subject(store_url: &str) {
    let w = World::with_accounts(store_url, "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;

    // Another account of the provider with the same verified email does not get alice.
    let mut intruder = Browser::new();
    let page = w.sign_in(&mut intruder, "alice-again").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert_eq!(
        page.json()["message"],
        "The user with the email \"alice@example.com\" is linked to another account of the OIDC provider."
    );
    assert!(intruder
        .cookie("127.0.0.1", "coder_session_token")
        .is_none());
    assert_eq!(w.sidecar.app.store.users().await.unwrap().len(), 1);

    // Alice's own account still signs in as alice.
    let mut again = Browser::new();
    assert_eq!(w.sign_in(&mut again, "alice").await.status, StatusCode::OK);
    assert_eq!(user_id_of(&w, &again).await, alice_id);
    w.finish().await;
}

#[tokio::test]
async fn email_verified_must_be_the_boolean_true() {
    let w = World::with_accounts("memory://", "").await;
    for (account, email, detail) in [
        ("unverified", "unverified@example.com", ""),
        (
            "no-claim",
            "no-claim@example.com",
            "The provider did not send the email_verified claim. If it never does, set oidc.ignore_email_verified = true.",
        ),
        (
            "string-false",
            "string-false@example.com",
            "email_verified must be the JSON boolean true; the provider sent \"false\".",
        ),
        (
            "string-true",
            "string-true@example.com",
            "email_verified must be the JSON boolean true; the provider sent \"true\".",
        ),
    ] {
        let mut browser = Browser::new();
        let page = w.sign_in(&mut browser, account).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{account}: {page:?}");
        assert_eq!(
            page.json()["message"],
            format!("Verify the \"{email}\" {VERIFY_EMAIL}"),
            "{account}"
        );
        assert_eq!(
            page.json()["detail"].as_str().unwrap_or(""),
            detail,
            "{account}"
        );
        assert!(browser.cookie("127.0.0.1", "coder_session_token").is_none());
    }
    assert!(w.sidecar.app.store.users().await.unwrap().is_empty());
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    w.finish().await;
}

#[tokio::test]
async fn ignore_email_verified_accepts_a_provider_without_the_claim() {
    let w = World::with_accounts("memory://", "ignore_email_verified = true").await;
    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "no-claim").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let (_, me) = w.me(&session_of(&browser)).await;
    assert_eq!(me["email"], "no-claim@example.com");
    w.finish().await;
}

/// The link is in Redis: after a restart of Portcullis, and with the provider now sending
/// another email without `email_verified`, the same subject is the same user.
#[tokio::test]
async fn a_link_outlives_a_restart_and_follows_the_subject_not_the_email() {
    let mut w = World::with_accounts(REDIS, "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;

    let echo = start_echo().await;
    let toml = config_with_store(echo, REDIS, &w.prefix, "", &w.provider.config(""));
    let old = std::mem::replace(&mut w.sidecar, Sidecar::start(&toml).await);
    old.shutdown().await;
    w.base = http_url(w.sidecar.addr);
    let mut accounts = alice();
    accounts["alice"] = json!({"email": "alice@new.example", "preferred_username": "alice"});
    w.provider.restart(accounts).await;

    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    assert_eq!(user_id_of(&w, &browser).await, alice_id);
    w.finish().await;
}

on_every_store!(link_deleted_with_user => deleting_a_user_deletes_its_link);

pub(super) async fn link_deleted_with_user(store_url: &str) {
    let w = World::with_accounts(store_url, "").await;
    w.first_user("owner@example.com", "owner").await;
    let owner = w.password_login("owner@example.com").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;

    let (status, body) = w
        .call(
            Method::DELETE,
            &format!("/api/v2/users/{alice_id}"),
            None,
            Some(&owner),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    if store_url != "memory://" {
        // The user's side (`{u:<id>}:oidc`) and the subject's index (`oidc:<hash>`).
        for pattern in [
            format!("{}{{u:*}}:oidc", w.prefix),
            format!("{}oidc:*", w.prefix),
        ] {
            let left = redis_keys(store_url, &pattern).await;
            assert!(left.is_empty(), "the link is gone from Redis: {left:?}");
        }
    }

    // The provider account is free again: its next login is a new user.
    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_ne!(user_id_of(&w, &browser).await, alice_id);
    w.finish().await;
}
