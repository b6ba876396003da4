//! refresh

use super::*;

on_every_store!(refresh => an_oidc_session_refreshes_and_ends_when_the_provider_refuses);

pub(super) async fn refresh(store_url: &str) {
    let options = Options {
        accounts: alice(),
        access_token_ttl: 1,
        ..Options::default()
    };
    let w = World::start(store_url, options, "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);
    assert_eq!(w.provider.refreshes().await, 0);

    // The provider's access token expires; the next request refreshes it and goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, me) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(w.provider.refreshes().await, 1);
    let (status, _) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w.provider.refreshes().await,
        1,
        "a fresh token is not refreshed again"
    );

    // The user is removed at the provider: the next refresh fails and ends the session.
    w.provider.delete_account("alice").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = w.call(Method::GET, "/dashboard", None, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["message"], SIGNED_OUT);
    assert_eq!(
        body["detail"],
        "You must re-authenticate with the login provider."
    );
    let (status, body) = w.me(&token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "API key is invalid.");
    w.finish().await;
}

#[tokio::test]
async fn two_replicas_refresh_a_shared_session_once() {
    let options = Options {
        accounts: alice(),
        access_token_ttl: 1,
        ..Options::default()
    };
    let w = World::start(REDIS, options, "").await;
    let echo = start_echo().await;
    let toml = config_with_store(echo, REDIS, &w.prefix, "", &w.provider.config(""));
    let replica = Sidecar::start(&toml).await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let me = || api_request(Method::GET, "/api/v2/users/me", None, Some(&token));
    let (a, b) = tokio::join!(
        call_json(w.sidecar.addr, me()),
        call_json(replica.addr, me())
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
    assert_eq!(
        w.provider.refreshes().await,
        1,
        "one refresh for both replicas"
    );
    replica.shutdown().await;
    w.finish().await;
}
