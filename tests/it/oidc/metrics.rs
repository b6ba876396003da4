//! metrics

use super::*;

#[tokio::test]
async fn oidc_logins_are_counted_by_result() {
    let w = World::with_accounts("memory://", "create_users = false").await;
    w.first_user("carol@example.com", "carol").await;
    let count = |text: &str, result: &str| {
        metric(
            text,
            &format!("portcullis_logins_total{{result=\"{result}\"}}"),
        )
    };
    let before = w.sidecar.metrics().await;

    // Refused: signups off (403), and a replayed state (401).
    let mut browser = Browser::new();
    let back = w.login_until_back(&mut browser, "alice").await;
    assert_eq!(
        browser.request(Method::GET, &back, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        browser.request(Method::GET, &back, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A conversion is not a login; carol's login after it is.
    let token = w.password_login("carol@example.com").await;
    let state = w.start_convert(&token).await;
    let mut browser = Browser::new();
    let back = w
        .to_provider_and_back(
            &mut browser,
            &format!("/api/v2/users/oidc/callback?oidc_merge_state={state}"),
            "carol",
        )
        .await;
    assert!(browser
        .request(Method::GET, &back, None)
        .await
        .status
        .is_redirection());
    assert_eq!(
        w.sign_in(&mut Browser::new(), "carol").await.status,
        StatusCode::OK
    );

    let after = w.sidecar.metrics().await;
    for (result, added) in [
        ("ok", 2.0), // carol's password login and her OIDC login
        ("forbidden", 1.0),
        ("bad_credentials", 1.0),
        ("suspended", 0.0),
        ("error", 0.0),
    ] {
        assert_eq!(
            count(&after, result) - count(&before, result),
            added,
            "{result} in:\n{after}"
        );
    }
    w.finish().await;
}
