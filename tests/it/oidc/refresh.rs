//! refresh
//!
//! The provider issues access tokens of one second at sign-in, and the tests sleep past that:
//! a sleep is never shorter than asked, so the token has surely expired. What must not expire
//! during a check (the refreshed token) is issued for an hour, so that no check races a
//! lifetime on a slow machine.

use super::*;

on_every_store!(refresh => an_oidc_session_refreshes_and_ends_when_the_provider_refuses);

/// Longer than any test: a token issued for this long never expires during one.
const HOUR: u64 = 3600;

/// How long the tests wait for a one-second access token to have expired.
const PAST_EXPIRY: Duration = Duration::from_millis(1500);

pub(super) async fn refresh(store_url: &str) {
    let options = one_second_tokens();
    let w = World::start(store_url, options, "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);
    // (A slow sign-in may already have refreshed once, with another one-second token.)
    w.provider.set_access_token_ttl(HOUR).await;
    let before = w.provider.refreshes().await;

    // The provider's access token expires; the next request refreshes it and goes on.
    tokio::time::sleep(PAST_EXPIRY).await;
    let (status, me) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(w.provider.refreshes().await, before + 1);
    let (status, _) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w.provider.refreshes().await,
        before + 1,
        "a fresh token is not refreshed again"
    );

    // The user is removed at the provider: the next refresh fails and ends the session.
    w.provider.set_access_token_ttl(1).await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);
    w.provider.delete_account("alice").await;
    tokio::time::sleep(PAST_EXPIRY).await;
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

/// Two replicas see one session's expired access token at the same time, for certain: the
/// provider holds replica A's refresh at its token endpoint until replica B has answered.
/// B must not ask the provider too (it goes on with the session meanwhile), and once A's
/// refresh is let through there was one refresh for both.
#[tokio::test]
async fn two_replicas_refresh_a_shared_session_once() {
    let options = one_second_tokens();
    // Longer than the test may hold A's refresh: it must not give up meanwhile.
    let oidc_extra = "request_timeout = \"5m\"";
    let w = World::start(REDIS, options, oidc_extra).await;
    let echo = start_echo().await;
    let toml = config_with_store(echo, REDIS, &w.prefix, "", &w.provider.config(oidc_extra));
    let replica = Sidecar::start(&toml).await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);
    w.provider.set_access_token_ttl(HOUR).await;
    tokio::time::sleep(PAST_EXPIRY).await;

    let me = || api_request(Method::GET, "/api/v2/users/me", None, Some(&token));
    let (refreshes, asked) = (
        w.provider.refreshes().await,
        w.provider.token_requests().await,
    );
    w.provider.hold_token().await;
    let on_a = tokio::spawn(call_json(w.sidecar.addr, me()));
    eventually("replica A's refresh to reach the provider", || async {
        w.provider.held_token_requests().await == 1
    })
    .await;

    // A's refresh is in flight: B answers without one of its own.
    let asked_twice = async {
        while w.provider.token_requests().await <= asked + 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let b = bounded("replica B's answer", async {
        tokio::select! {
            b = call_json(replica.addr, me()) => b,
            () = asked_twice => panic!("replica B asked the provider while A's refresh was in flight"),
        }
    })
    .await;
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(w.provider.token_requests().await, asked + 1);

    w.provider.release_token().await;
    let a = bounded("replica A's answer", on_a).await.expect("ran");
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(
        w.provider.refreshes().await,
        refreshes + 1,
        "one refresh for both replicas"
    );
    assert_eq!(w.provider.token_requests().await, asked + 1);
    replica.shutdown().await;
    w.finish().await;
}

/// The provider cannot answer when a session's access token has expired (its token endpoint
/// hangs past `oidc.request_timeout`): the request goes on with the session, which is not
/// ended, and the next request does not ask the provider again at once (it waits 10 s): an
/// outage signs nobody out.
#[tokio::test]
async fn a_provider_that_cannot_refresh_signs_nobody_out() {
    let options = one_second_tokens();
    let w = World::start("memory://", options, "request_timeout = \"1s\"").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let token = session_of(&browser);
    tokio::time::sleep(PAST_EXPIRY).await;

    w.provider.hold_token().await;
    let asked = w.provider.token_requests().await;
    let trying = std::time::Instant::now();
    let (status, body) = w.call(Method::GET, "/dashboard", None, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        w.provider.token_requests().await,
        asked + 1,
        "a refresh was tried"
    );
    let (status, me) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");
    // (Only while the 10 s surely have not passed: a loaded machine may be past them.)
    if trying.elapsed() < Duration::from_secs(10) {
        assert_eq!(
            w.provider.token_requests().await,
            asked + 1,
            "tried again at once"
        );
    }
    w.finish().await;
}
