//! login

use super::*;

on_every_store!(browser_login_from_a_protected_page => browser_login_ends_with_a_working_session);

pub(super) async fn browser_login_from_a_protected_page(store_url: &str) {
    let w = World::with_accounts(
        store_url,
        "default_roles = [\"auditor\"]\nrole_claim = \"groups\"\nrole_map = { admins = \"owner\", staff = [\"template-admin\"] }",
    )
    .await;

    // An API client without a session gets 401; a browser loading a page is sent to sign in.
    let (status, body) = w.call(Method::GET, "/dashboard", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], SIGNED_OUT);
    let mut browser = Browser::new();
    let first = browser
        .request(Method::GET, &w.url("/dashboard?tab=1"), None)
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(
        first.location.as_deref(),
        Some(
            w.url("/.portcullis/sign-in?rd=%2Fdashboard%3Ftab%3D1")
                .as_str()
        )
    );
    // The sign-in page has the password form and the provider's button, which starts the
    // login that comes back to the same page.
    let page = browser
        .request(Method::GET, first.location.as_deref().unwrap(), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let start = "/api/v2/users/oidc/callback?redirect=%2Fdashboard%3Ftab%3D1";
    assert!(
        page.body.contains(&format!("href=\"{start}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"password\""), "{}", page.body);
    let (status, methods) = w
        .call(Method::GET, "/api/v2/users/authmethods", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(methods["oidc"]["enabled"], true);

    // The whole chain: Portcullis → provider (PKCE, state, nonce) → login form → Portcullis.
    let back = w.to_provider_and_back(&mut browser, start, "alice").await;
    let landed = browser.open(&back).await;
    assert_eq!(landed.url, w.url("/dashboard?tab=1"));
    assert_eq!(landed.status, StatusCode::OK);
    let seen = landed.json();
    assert_eq!(seen["path"], "/dashboard");
    assert_eq!(
        seen_header(&seen, "x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["alice"]);
    assert_eq!(
        seen_header(&seen, "x-forwarded-roles"),
        ["auditor,owner,template-admin"]
    );
    assert!(
        browser.cookie("127.0.0.1", "portcullis_oidc").is_none(),
        "the binding cookie is cleared once used"
    );

    // First-login provisioning: an active OIDC user with the mapped roles, usable by token.
    let token = session_of(&browser);
    let (status, me) = w.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["name"], "Alice Liddell");
    assert_eq!(me["login_type"], "oidc");
    assert_eq!(me["status"], "active");
    let roles: Vec<&str> = me["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["auditor", "owner", "template-admin"]);

    // A second login finds the same user; logout ends the session.
    let mut other = Browser::new();
    let page = w.sign_in(&mut other, "alice").await;
    assert_eq!(page.url, w.url("/"), "no redirect given: the site's root");
    let (_, again) = w.me(&session_of(&other)).await;
    assert_eq!(again["id"], me["id"]);
    let (status, _) = w
        .call(Method::POST, "/api/v2/users/logout", None, Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = w.me(&token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    w.finish().await;
}

#[tokio::test]
async fn refusals_with_coders_messages() {
    let w = World::with_accounts(
        "memory://",
        "allowed_domains = [\"example.com\", \"@Example.org\"]",
    )
    .await;
    let page = w.sign_in(&mut Browser::new(), "mallory").await;
    refused(
        &page,
        StatusCode::FORBIDDEN,
        "Your email \"mallory@evil.example\" is not in domains [\"example.com\" \"example.org\"]!",
    );
    let page = w.sign_in(&mut Browser::new(), "unverified").await;
    refused(
        &page,
        StatusCode::FORBIDDEN,
        "Verify the \"unverified@example.com\" email address on your OIDC provider to authenticate!",
    );

    // A password user may not sign in through the provider.
    w.first_user("carol@example.com", "carol").await;
    let page = w.sign_in(&mut Browser::new(), "carol").await;
    refused(
        &page,
        StatusCode::FORBIDDEN,
        "Incorrect login type, attempting to use \"oidc\" but user is of login type \"password\"",
    );

    // A suspended OIDC user is refused.
    let mut browser = Browser::new();
    assert_eq!(w.sign_in(&mut browser, "dave").await.status, StatusCode::OK);
    let (_, me) = w.me(&session_of(&browser)).await;
    let id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    w.sidecar
        .app
        .users()
        .set_status(id, portcullis::store::UserStatus::Suspended)
        .await
        .unwrap();
    let page = w.sign_in(&mut Browser::new(), "dave").await;
    refused(
        &page,
        StatusCode::UNAUTHORIZED,
        "Your account is suspended. Contact an admin to reactivate your account.",
    );

    // Only paths on this site are landing places.
    let page = Browser::new()
        .request(
            Method::GET,
            &w.url("/api/v2/users/oidc/callback?redirect=%2F%2Fevil.example%2F"),
            None,
        )
        .await;
    refused(&page, StatusCode::BAD_REQUEST, "Invalid redirect.");
    w.finish().await;
}

#[tokio::test]
async fn signups_off_refuses_unknown_users() {
    let w = World::with_accounts("memory://", "create_users = false").await;
    let page = w.sign_in(&mut Browser::new(), "alice").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        page.json()["message"],
        "Signups are not allowed for login type \"oidc\""
    );
    let users = w.sidecar.app.store.users().await.unwrap();
    assert!(users.is_empty(), "no user was created: {users:?}");
    w.finish().await;
}

on_every_store!(tampered_and_foreign_states => a_tampered_or_foreign_state_is_refused);

pub(super) async fn tampered_and_foreign_states(store_url: &str) {
    let w = World::with_accounts(store_url, "").await;
    let mut browser = Browser::new();
    let back = w.login_until_back(&mut browser, "alice").await;
    let state = query_of(&back)["state"].clone();

    // A state changed in transit matches no login in progress.
    let mut tampered = state.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let page = browser
        .request(Method::GET, &back.replace(&state, &tampered), None)
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
    assert_eq!(page.json()["message"], "State mismatched.");

    // The right state from another browser (without the binding cookie) is refused...
    let page = Browser::new().request(Method::GET, &back, None).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
    assert_eq!(
        page.json()["message"],
        "Cookie \"portcullis_oidc\" must be provided."
    );
    let mut thief = Browser::new();
    thief.set_cookie(
        "127.0.0.1",
        "portcullis_oidc",
        "guessed-binding-value-0123456789ab",
    );
    let page = thief.request(Method::GET, &back, None).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.json()["message"], "State mismatched.");
    assert!(thief.cookie("127.0.0.1", "coder_session_token").is_none());

    // ...and none of that spent it: the browser that started the login completes it.
    let landed = browser.open(&back).await;
    assert_eq!(landed.status, StatusCode::OK, "{landed:?}");
    assert!(browser.cookie("127.0.0.1", "coder_session_token").is_some());
    w.finish().await;
}

on_every_store!(replayed_code => a_replayed_code_is_refused);

pub(super) async fn replayed_code(store_url: &str) {
    let w = World::with_accounts(store_url, "").await;
    let mut browser = Browser::new();
    let back = w.login_until_back(&mut browser, "alice").await;
    let binding = browser
        .cookie("127.0.0.1", "portcullis_oidc")
        .expect("a binding cookie");
    assert_eq!(browser.open(&back).await.status, StatusCode::OK);
    let session = session_of(&browser);

    // The same callback again, binding cookie and all: its state was single use.
    browser.set_cookie_at(
        "127.0.0.1",
        "/api/v2/users/oidc/callback",
        "portcullis_oidc",
        &binding,
    );
    let page = browser.request(Method::GET, &back, None).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
    assert_eq!(page.json()["message"], "State mismatched.");
    assert_eq!(session_of(&browser), session, "no new session");

    // The used code under a fresh state of the same browser: the provider refuses it.
    let start = browser
        .request(Method::GET, &w.url("/api/v2/users/oidc/callback"), None)
        .await;
    assert_eq!(start.status, StatusCode::TEMPORARY_REDIRECT);
    let binding = start
        .set_cookies
        .iter()
        .find(|c| c.starts_with("portcullis_oidc="))
        .expect("the start leg binds the login to this browser");
    for attribute in [
        "Path=/api/v2/users/oidc/callback",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(binding.contains(attribute), "{binding}");
    }
    let authorize = query_of(start.location.as_deref().unwrap());
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert!(!authorize["nonce"].is_empty());
    let fresh_state = query_of(start.location.as_deref().unwrap())["state"].clone();
    let code = query_of(&back)["code"].clone();
    let forged = w.url(&format!(
        "/api/v2/users/oidc/callback?code={code}&state={fresh_state}"
    ));
    let page = browser.request(Method::GET, &forged, None).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert_eq!(page.json()["message"], "Failed exchanging Oauth code.");
    assert!(
        page.json()["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{page:?}"
    );
    w.finish().await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    // The provider's clock runs two hours behind: every ID token it signs expired an hour ago
    // by Portcullis's clock.
    let options = Options {
        accounts: alice(),
        clock_skew: -7200,
        ..Options::default()
    };
    let w = World::start("memory://", options, "").await;
    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "alice").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert_eq!(page.json()["message"], "Failed to verify OIDC token.");
    assert!(
        page.json()["detail"].as_str().unwrap().contains("Expired"),
        "{page:?}"
    );
    assert!(browser.cookie("127.0.0.1", "coder_session_token").is_none());
    w.finish().await;
}

#[tokio::test]
async fn an_unreachable_provider_answers_503_and_password_login_still_works() {
    let echo = start_echo().await;
    let dead = dead_port();
    let toml = config_with_store(
        echo,
        "memory://",
        &random_key_prefix(),
        "",
        &format!(
            "[oidc]\nissuer = \"http://{dead}\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrequest_timeout = \"2s\""
        ),
    );
    let sidecar = Sidecar::start(&toml).await;
    let (status, body, _) = call_json(
        sidecar.addr,
        api_request(Method::GET, "/api/v2/users/oidc/callback", None, None),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["message"], "Service unavailable.");
    let (status, _, _) = call_json(
        sidecar.addr,
        api_request(
            Method::POST,
            "/api/v2/users/first",
            Some(&json!({"email": "a@example.com", "username": "a", "password": PASSWORD})),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = call_json(
        sidecar.addr,
        api_request(
            Method::POST,
            "/api/v2/users/login",
            Some(&json!({"email": "a@example.com", "password": PASSWORD})),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    sidecar.shutdown().await;
}

/// The start of a login stores a record until `oidc.login_timeout`, so it is bounded: a
/// `redirect` over 2048 bytes is `400 Invalid redirect.` with nothing stored (one of exactly
/// 2048 is fine), and starts count in the login group's per-client limit
/// (`login_per_minute = 3` here): the fourth is `429`.
#[tokio::test]
async fn the_login_start_is_bounded_and_rate_limited() {
    let w = World::with_accounts(REDIS, "\n[rate_limit]\nlogin_per_minute = 3\n").await;
    let start = |redirect: String| {
        let url = w.url(&format!("/api/v2/users/oidc/callback?redirect={redirect}"));
        async move { Browser::new().request(Method::GET, &url, None).await }
    };
    let too_long = format!("/{}", "a".repeat(2048));
    let page = start(too_long).await;
    refused(&page, StatusCode::BAD_REQUEST, "Invalid redirect.");
    let flows = redis_keys(REDIS, &format!("{}*oidc-flow*", w.prefix)).await;
    assert!(flows.is_empty(), "a refused start stored {flows:?}");

    let longest = format!("/{}", "a".repeat(2047));
    assert_eq!(start(longest).await.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        start("/".into()).await.status,
        StatusCode::TEMPORARY_REDIRECT
    );
    let page = start("/".into()).await;
    refused(
        &page,
        StatusCode::TOO_MANY_REQUESTS,
        "You've been rate limited for sending more than 3 requests in 1m0s.",
    );
    w.finish().await;
}

/// Fails unless `page` is an answer of `status` with Coder's `message`.
fn refused(page: &Page, status: StatusCode, message: &str) {
    assert_eq!(page.status, status, "{page:?}");
    assert_eq!(page.json()["message"], message, "{page:?}");
}
