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
//! restarts and its removal with the user), a rotated signing key, the login metric, and the
//! sign-in page's button in Chromium. The
//! flows that keep state in the store run on every store: memory, and the standalone Redis,
//! Sentinel set and Cluster that `scripts/test` starts (each under a random key prefix).

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

/// A provider with the accounts above that issues access tokens of one second (until
/// [`Provider::set_access_token_ttl`]), for the refresh tests.
fn one_second_tokens() -> Options {
    Options {
        accounts: alice(),
        access_token_ttl: 1,
        ..Options::default()
    }
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

mod chromium;
mod convert_login;
mod linking;
mod login;
mod refresh;
use linking::user_id_of;
mod keys;
mod metrics;
mod refresh_id_token;
mod replicas;
