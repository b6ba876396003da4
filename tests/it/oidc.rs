//! Single sign-on end to end against a real OpenID Connect provider: the `oidc-provider`
//! package on Node.js, started by each test on `127.0.0.1` and a free port (`tests/oidc/`), and
//! a browser-like client that keeps cookies and follows every redirect of the flow.
//!
//! Covered: the whole redirect chain from a protected page to a working Portcullis session,
//! first-login provisioning with mapped roles, the refusals (a domain not allowed, signups
//! off, a password user, a tampered or foreign `state`, a replayed code, an expired ID token,
//! an unreachable provider), convert-login from a password account (§6) with its errors, the
//! refresh of §8.4 and its ID token checks, accounts linked by (issuer, subject) rather than
//! email (`email_verified` variants, a second subject with a linked email, the link across
//! restarts and its removal with the user), a rotated signing key, and the login metric. The
//! flows that keep state in the store run on both backends, the real
//! Redis included (`127.0.0.1:6379`, under a random key prefix).

mod provider;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::world::SIGNED_OUT;
use crate::common::*;
use provider::{query_of, Browser, Options, Page, Provider};

fn alice() -> Value {
    json!({
        "alice": {
            "email": "alice@example.com",
            "email_verified": true,
            "preferred_username": "alice",
            "name": "Alice Liddell",
            "groups": ["admins", "staff"],
        },
        "mallory": {"email": "mallory@evil.example", "email_verified": true},
        "unverified": {"email": "unverified@example.com", "email_verified": false},
        "carol": {"email": "carol@example.com", "email_verified": true, "preferred_username": "carol"},
        "dave": {"email": "dave@example.com", "email_verified": true},
        // Another account of the provider (another `sub`) with alice's verified email.
        "alice-again": {"email": "alice@example.com", "email_verified": true},
        "no-claim": {"email": "no-claim@example.com"},
        "string-false": {"email": "string-false@example.com", "email_verified": "false"},
        "string-true": {"email": "string-true@example.com", "email_verified": "true"},
    })
}

/// A provider with the accounts above, and Portcullis in front of the echo upstream using it.
struct World {
    provider: Provider,
    sidecar: Sidecar,
    base: String,
    store_url: String,
    prefix: String,
}

impl World {
    async fn start(store_url: &str, options: Options, oidc_extra: &str) -> World {
        let provider = Provider::start(options).await;
        let echo = start_echo().await;
        let prefix = random_key_prefix();
        let toml = config_with_store(echo, store_url, &prefix, "", &provider.config(oidc_extra));
        let sidecar = Sidecar::start(&toml).await;
        let base = http_url(sidecar.addr);
        World {
            provider,
            sidecar,
            base,
            store_url: store_url.to_owned(),
            prefix,
        }
    }

    async fn with_accounts(store_url: &str, oidc_extra: &str) -> World {
        let options = Options {
            accounts: alice(),
            ..Options::default()
        };
        World::start(store_url, options, oidc_extra).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts a login at `start` (a Portcullis URL), signs in as `account` at the provider,
    /// and returns the URL the provider sends the browser back to (unvisited).
    async fn to_provider_and_back(
        &self,
        browser: &mut Browser,
        start: &str,
        account: &str,
    ) -> String {
        let form = browser.open(&self.url(start)).await;
        assert!(
            form.url
                .starts_with(&format!("{}/interaction/", self.provider.issuer)),
            "expected the provider's login form, got {form:?}"
        );
        let back = browser.sign_in_at_provider(&form, account).await;
        assert!(
            back.starts_with(&self.url("/api/v2/users/oidc/callback?code=")),
            "{back}"
        );
        back
    }

    /// Starts a plain login in `browser`, signs in as `account` at the provider, and returns
    /// the callback URL the provider sends the browser back to (unvisited).
    async fn login_until_back(&self, browser: &mut Browser, account: &str) -> String {
        self.to_provider_and_back(browser, "/api/v2/users/oidc/callback", account)
            .await
    }

    /// Signs `account` in through the whole flow and returns the page it lands on.
    async fn sign_in(&self, browser: &mut Browser, account: &str) -> Page {
        let back = self.login_until_back(browser, account).await;
        browser.open(&back).await
    }

    /// `GET /users/me` with `token`.
    async fn me(&self, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, "/api/v2/users/me", None, Some(token))
            .await
    }

    /// Creates the first user (an owner) with a password.
    async fn first_user(&self, email: &str, username: &str) {
        let body = json!({"email": email, "username": username, "password": PASSWORD});
        let (status, answer) = self
            .call(Method::POST, "/api/v2/users/first", Some(body), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    /// Logs in with a password and returns the session token.
    async fn password_login(&self, email: &str) -> String {
        login_ok(self.sidecar.addr, email, PASSWORD).await
    }

    /// Asks to convert the password user of `token` to OIDC; returns the `convert-` state.
    async fn start_convert(&self, token: &str) -> String {
        let (status, pending) = self
            .call(
                Method::POST,
                "/api/v2/users/me/convert-login",
                Some(json!({"to_type": "oidc", "password": PASSWORD})),
                Some(token),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pending}");
        pending["state_string"].as_str().unwrap().to_owned()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, value, _) = call_json(
            self.sidecar.addr,
            api_request(method, path, body.as_ref(), token),
        )
        .await;
        (status, value)
    }

    async fn finish(self) {
        self.sidecar.shutdown().await;
        if self.store_url != "memory://" {
            delete_redis_keys(&self.store_url, &self.prefix).await;
        }
    }
}

fn session_of(browser: &Browser) -> String {
    browser
        .cookie("127.0.0.1", "coder_session_token")
        .expect("a session cookie")
}

// === login ===

on_both_stores!(browser_login_from_a_protected_page => browser_login_ends_with_a_working_session_on_memory, browser_login_ends_with_a_working_session_on_redis);

async fn browser_login_from_a_protected_page(store_url: &str) {
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
            w.url("/api/v2/users/oidc/callback?redirect=%2Fdashboard%3Ftab%3D1")
                .as_str()
        )
    );
    let (status, methods) = w
        .call(Method::GET, "/api/v2/users/authmethods", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(methods["oidc"]["enabled"], true);

    // The whole chain: Portcullis → provider (PKCE, state, nonce) → login form → Portcullis.
    let back = w
        .to_provider_and_back(&mut browser, "/dashboard?tab=1", "alice")
        .await;
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
    let refused = |page: &Page, status: StatusCode, message: &str| {
        assert_eq!(page.status, status, "{page:?}");
        assert_eq!(page.json()["message"], message, "{page:?}");
    };

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

on_both_stores!(tampered_and_foreign_states => a_tampered_or_foreign_state_is_refused_on_memory, a_tampered_or_foreign_state_is_refused_on_redis);

async fn tampered_and_foreign_states(store_url: &str) {
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

on_both_stores!(replayed_code => a_replayed_code_is_refused_on_memory, a_replayed_code_is_refused_on_redis);

async fn replayed_code(store_url: &str) {
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

// === convert-login ===

on_both_stores!(convert_end_to_end => convert_login_end_to_end_on_memory, convert_login_end_to_end_on_redis);

async fn convert_end_to_end(store_url: &str) {
    let w = World::with_accounts(store_url, "").await;
    w.first_user("carol@example.com", "carol").await;
    let login = json!({"email": "carol@example.com", "password": PASSWORD});
    let token = w.password_login("carol@example.com").await;
    let convert = |to: &str, password: &str| json!({"to_type": to, "password": password});

    // Every check of §6.2, in order.
    let cases = [
        (
            convert("oidc", "wrong password"),
            StatusCode::UNAUTHORIZED,
            "Incorrect email or password.",
        ),
        (
            convert("password", PASSWORD),
            StatusCode::BAD_REQUEST,
            "Cannot convert to login type \"password\".",
        ),
        (
            convert("token", PASSWORD),
            StatusCode::BAD_REQUEST,
            "Cannot convert to login type \"token\".",
        ),
        (
            convert("none", PASSWORD),
            StatusCode::BAD_REQUEST,
            "Cannot convert to login type \"none\".",
        ),
        (
            convert("saml", PASSWORD),
            StatusCode::BAD_REQUEST,
            "Unknown login type \"saml\".",
        ),
        (
            convert("", PASSWORD),
            StatusCode::BAD_REQUEST,
            "Validation failed.",
        ),
    ];
    for (body, status, message) in cases {
        let (got, answer) = w
            .call(
                Method::POST,
                "/api/v2/users/me/convert-login",
                Some(body.clone()),
                Some(&token),
            )
            .await;
        assert_eq!(
            (got, answer["message"].as_str().unwrap()),
            (status, message),
            "{body}"
        );
    }
    let (status, answer) = w
        .call(
            Method::POST,
            "/api/v2/users/me/convert-login",
            Some(convert("oidc", PASSWORD)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    let (status, pending) = w
        .call(
            Method::POST,
            "/api/v2/users/carol/convert-login",
            Some(convert("oidc", PASSWORD)),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pending}");
    let state = pending["state_string"].as_str().unwrap().to_owned();
    assert!(
        state.starts_with("convert-") && state.len() == 8 + 32,
        "{state}"
    );
    assert!(state[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(pending["to_type"], "oidc");
    let (_, me) = w.me(&token).await;
    assert_eq!(pending["user_id"], me["id"]);
    let expires = time::OffsetDateTime::parse(
        pending["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(4) && left <= time::Duration::minutes(5),
        "{left}"
    );

    // The callback leg, in the browser that holds the password session.
    let mut browser = Browser::new();
    browser.set_cookie("127.0.0.1", "coder_session_token", &token);
    let back = w
        .to_provider_and_back(
            &mut browser,
            &format!("/api/v2/users/oidc/callback?oidc_merge_state={state}&redirect=%2Fconverted"),
            "carol",
        )
        .await;
    let done = browser.request(Method::GET, &back, None).await;
    assert_eq!(done.status, StatusCode::TEMPORARY_REDIRECT, "{done:?}");
    assert_eq!(done.location.as_deref(), Some(w.url("/converted").as_str()));
    assert!(
        browser.cookie("127.0.0.1", "coder_session_token").is_none(),
        "session cookie cleared"
    );

    // The password session is gone, password login is refused, the provider's works.
    let (status, _) = w.me(&token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refused) = w
        .call(Method::POST, "/api/v2/users/login", Some(login), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused["message"],
        "Incorrect login type, attempting to use \"password\" but user is of login type \"oidc\""
    );
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "carol").await.status,
        StatusCode::OK
    );
    let (_, after) = w.me(&session_of(&browser)).await;
    assert_eq!(after["id"], me["id"]);
    assert_eq!(after["login_type"], "oidc");
    assert_eq!(after["roles"], me["roles"], "the owner stays owner");

    // The state was single use.
    let page = Browser::new()
        .request(
            Method::GET,
            &w.url(&format!(
                "/api/v2/users/oidc/callback?oidc_merge_state={state}"
            )),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        page.json()["message"],
        "Request to convert login type failed. State mismatch."
    );
    w.finish().await;
}

#[tokio::test]
async fn convert_login_refuses_an_expired_state_and_another_email() {
    let w = World::with_accounts("memory://", "convert_state_ttl = \"1s\"").await;
    w.first_user("carol@example.com", "carol").await;
    let token = w.password_login("carol@example.com").await;
    let start = || w.start_convert(&token);

    // Past its lifetime the state is refused before anyone is sent to the provider.
    let state = start().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = Browser::new()
        .request(
            Method::GET,
            &w.url(&format!(
                "/api/v2/users/oidc/callback?oidc_merge_state={state}"
            )),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert_eq!(
        page.json()["message"],
        "Request to convert login type failed. State mismatch."
    );

    // Signing in at the provider as someone else: the email must be the account's.
    let state = start().await;
    let mut browser = Browser::new();
    let back = w
        .to_provider_and_back(
            &mut browser,
            &format!("/api/v2/users/oidc/callback?oidc_merge_state={state}"),
            "dave",
        )
        .await;
    let page = browser.request(Method::GET, &back, None).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert_eq!(
        page.json()["message"],
        "The oidc account with the email \"dave@example.com\" does not match the email of the account you are trying to convert. Contact your administrator to resolve this issue."
    );
    let (status, me) = w.me(&token).await;
    assert_eq!(
        (status, me["login_type"].as_str()),
        (StatusCode::OK, Some("password"))
    );
    w.finish().await;
}

// === refresh ===

on_both_stores!(refresh => an_oidc_session_refreshes_and_ends_when_the_provider_refuses_on_memory, an_oidc_session_refreshes_and_ends_when_the_provider_refuses_on_redis);

async fn refresh(store_url: &str) {
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

// === accounts linked by (issuer, subject) ===

const VERIFY_EMAIL: &str = "email address on your OIDC provider to authenticate!";

/// The user id of the session in `browser`.
async fn user_id_of(w: &World, browser: &Browser) -> String {
    let (status, me) = w.me(&session_of(browser)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"].as_str().unwrap().to_owned()
}

on_both_stores!(same_email_other_subject => same_email_with_another_subject_is_refused_on_memory, same_email_with_another_subject_is_refused_on_redis);

async fn same_email_other_subject(store_url: &str) {
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

on_both_stores!(link_deleted_with_user => deleting_a_user_deletes_its_link_on_memory, deleting_a_user_deletes_its_link_on_redis);

async fn link_deleted_with_user(store_url: &str) {
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

async fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap()
}

// === keys ===

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up() {
    let mut w = World::with_accounts("memory://", "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;

    // The provider now signs with a key id Portcullis has not seen.
    let before = w.provider.signing_kid().await;
    w.provider.restart(alice()).await;
    assert_ne!(w.provider.signing_kid().await, before);

    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(user_id_of(&w, &browser).await, alice_id);
    w.finish().await;
}

// === refresh: the ID token ===

#[tokio::test]
async fn a_refresh_with_a_bad_or_foreign_id_token_ends_the_session() {
    let options = Options {
        accounts: alice(),
        access_token_ttl: 1,
        ..Options::default()
    };
    let w = World::start("memory://", options, "").await;
    for mode in ["other-sub", "bad-signature"] {
        w.provider.tamper_refresh_id_tokens("none").await;
        let mut browser = Browser::new();
        assert_eq!(
            w.sign_in(&mut browser, "alice").await.status,
            StatusCode::OK
        );
        let token = session_of(&browser);
        w.provider.tamper_refresh_id_tokens(mode).await;
        let refreshes = w.provider.refreshes().await;

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (status, body) = w.call(Method::GET, "/dashboard", None, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{mode}: {body}");
        assert_eq!(
            body["detail"], "You must re-authenticate with the login provider.",
            "{mode}"
        );
        assert_eq!(w.provider.refreshes().await, refreshes + 1, "{mode}");
        let (status, _) = w.me(&token).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{mode}: the session ended"
        );
    }
    w.finish().await;
}

// === metrics ===

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
