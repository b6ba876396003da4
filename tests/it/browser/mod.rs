//! The sign-in page in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` by the small WebDriver client in [`webdriver`]) in front of an in-process
//! Portcullis and the echo upstream, inline and through nginx, Traefik and Caddy
//! forward-auth.
//!
//! `scripts/test` installs both packages. Without them each test says so and passes without
//! running: the only skip in this suite, so that a developer's `cargo test` works on a machine
//! with no browser.

pub mod webdriver;

use std::net::SocketAddr;

use serde_json::Value;

use crate::common::world::*;
use crate::common::*;
use crate::edges;
use webdriver::{Browser, Driver};

/// `None` (and a message) when Chromium is not installed.
pub async fn driver() -> Option<Driver> {
    if !webdriver::installed() {
        eprintln!(
            "SKIPPED: /usr/bin/chromium and /usr/bin/chromedriver are not installed \
             (scripts/test installs the Debian packages chromium and chromium-driver)"
        );
        return None;
    }
    Some(Driver::start().await)
}

/// A browser and a Portcullis (with its first user) in front of the echo upstream, and the
/// Portcullis's base URL; `None` without Chromium.
async fn inline() -> Option<(Driver, World, String, Browser)> {
    let driver = driver().await?;
    let w = World::start(MEMORY, "").await;
    let base = http_url(w.sidecar.addr);
    let browser = driver.browser().await;
    Some((driver, w, base, browser))
}

/// Signs out through the sign-out page at `base`, and waits for the sign-in page it ends on.
async fn sign_out(browser: &Browser, base: &str) {
    browser.open(&format!("{base}/.portcullis/sign-out")).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_url(&format!("{base}/.portcullis/sign-in?signed-out"))
        .await;
}

/// Signs in on the sign-in page the browser shows.
async fn sign_in(browser: &Browser, email: &str, password: &str) {
    browser.fill("input[name=email]", email).await;
    browser.fill("input[name=password]", password).await;
    browser.click("button[type=submit]").await;
}

/// The echo report's identity headers (`x-forwarded-*`).
fn identity(seen: &Value) -> (Vec<String>, Vec<String>) {
    (
        seen_header(seen, "x-forwarded-email"),
        seen_header(seen, "x-forwarded-user"),
    )
}

/// The sign-in page, at `base`, that comes back to `target`.
fn sign_in_url(base: &str, target: &str) -> String {
    let rd: String = portcullis_rd(target);
    format!("{base}/.portcullis/sign-in?rd={rd}")
}

fn portcullis_rd(target: &str) -> String {
    portcullis::http::sign_in::sign_in_location(target)
        .trim_start_matches("/.portcullis/sign-in?rd=")
        .to_owned()
}

#[tokio::test]
async fn a_protected_page_signs_in_and_lands_on_the_same_page_with_identity() {
    let Some((_driver, w, base, browser)) = inline().await else {
        return;
    };

    let target = "/reports/q3?tab=summary&from=%2Fhome";
    browser.open(&format!("{base}{target}")).await;
    browser.wait_for_url(&sign_in_url(&base, target)).await;
    assert_eq!(browser.text("h1").await, "Sign in");
    assert!(browser.cookie("coder_session_token").await.is_none());

    sign_in(&browser, ADMIN_EMAIL, PASSWORD).await;
    browser.wait_for_url(&format!("{base}{target}")).await;
    let seen = browser.json().await;
    assert_eq!(seen["path"], "/reports/q3");
    assert_eq!(seen["query"], "tab=summary&from=%2Fhome");
    assert_eq!(
        identity(&seen),
        (vec![ADMIN_EMAIL.to_owned()], vec!["admin".to_owned()])
    );
    let cookie = browser
        .cookie("coder_session_token")
        .await
        .expect("session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");

    browser.quit().await;
    w.finish().await;
}

#[tokio::test]
async fn a_wrong_password_shows_coders_message_and_sets_no_cookie() {
    let Some((_driver, w, base, browser)) = inline().await else {
        return;
    };

    browser.open(&format!("{base}/private")).await;
    browser.wait_for_url(&sign_in_url(&base, "/private")).await;
    sign_in(&browser, ADMIN_EMAIL, "not the password").await;
    // The form posts to the page itself, which answers with the error.
    browser.wait_for("#error").await;
    assert_eq!(browser.text("#error").await, "Incorrect email or password.");
    assert_eq!(
        browser
            .attribute("input[name=email]", "value")
            .await
            .as_deref(),
        Some(ADMIN_EMAIL),
        "the email is kept"
    );
    assert_eq!(
        browser
            .attribute("input[name=rd]", "value")
            .await
            .as_deref(),
        Some("/private"),
        "the way back is kept"
    );
    assert!(browser.cookie("coder_session_token").await.is_none());

    // The right password on the same page still works.
    browser.fill("input[name=password]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_url(&format!("{base}/private")).await;
    browser.quit().await;
    w.finish().await;
}

#[tokio::test]
async fn after_sign_out_a_protected_page_asks_to_sign_in_again() {
    let Some((_driver, w, base, browser)) = inline().await else {
        return;
    };

    browser.open(&format!("{base}/app")).await;
    sign_in(&browser, ADMIN_EMAIL, PASSWORD).await;
    browser.wait_for_url(&format!("{base}/app")).await;
    let session = browser
        .cookie("coder_session_token")
        .await
        .expect("signed in");
    let token = session["value"].as_str().unwrap().to_owned();

    sign_out(&browser, &base).await;
    assert!(browser.cookie("coder_session_token").await.is_none());
    // The session is gone from the store, not only from the browser.
    let (status, _) = proxied(&w.sidecar, &token).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);

    browser.open(&format!("{base}/app")).await;
    browser.wait_for_url(&sign_in_url(&base, "/app")).await;
    browser.quit().await;
    w.finish().await;
}

#[tokio::test]
async fn an_off_site_rd_is_ignored() {
    let Some((_driver, w, base, browser)) = inline().await else {
        return;
    };

    for rd in [
        "%2F%2Fevil.example%2F",
        "https%3A%2F%2Fevil.example%2F",
        "%2F%5Cevil.example",
    ] {
        browser
            .open(&format!("{base}/.portcullis/sign-in?rd={rd}"))
            .await;
        assert_eq!(
            browser
                .attribute("input[name=rd]", "value")
                .await
                .as_deref(),
            Some("/"),
            "{rd}"
        );
    }
    sign_in(&browser, ADMIN_EMAIL, PASSWORD).await;
    browser.wait_for_url(&format!("{base}/")).await;
    assert_eq!(browser.json().await["path"], "/");
    browser.quit().await;
    w.finish().await;
}

/// The whole flow through an edge started by `start` in front of an in-process Portcullis.
async fn through_edge(start: fn(SocketAddr, SocketAddr) -> edges::Edge) {
    let Some(driver) = driver().await else { return };
    let app = start_echo().await;
    let sidecar = edges::portcullis(app, MEMORY).await;
    create_admin(sidecar.addr).await;
    let edge = start(app, sidecar.addr).ready().await;
    let base = http_url(edge.addr);
    let browser = driver.browser().await;

    let target = "/app/page?q=1&r=two";
    browser.open(&format!("{base}{target}")).await;
    browser.wait_for_url(&sign_in_url(&base, target)).await;
    sign_in(&browser, ADMIN_EMAIL, PASSWORD).await;
    browser.wait_for_url(&format!("{base}{target}")).await;
    let seen = browser.json().await;
    assert_eq!(seen["path"], "/app/page", "{}", edge.log());
    assert_eq!(
        identity(&seen),
        (vec![ADMIN_EMAIL.to_owned()], vec!["admin".to_owned()])
    );

    sign_out(&browser, &base).await;
    browser.open(&format!("{base}{target}")).await;
    browser.wait_for_url(&sign_in_url(&base, target)).await;
    browser.quit().await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn nginx_forward_auth_sends_a_browser_to_sign_in_and_back() {
    through_edge(edges::nginx::start).await;
}

#[tokio::test]
async fn traefik_forward_auth_sends_a_browser_to_sign_in_and_back() {
    through_edge(edges::traefik::start).await;
}

#[tokio::test]
async fn caddy_forward_auth_sends_a_browser_to_sign_in_and_back() {
    through_edge(edges::caddy::start).await;
}

#[tokio::test]
async fn a_screenshot_of_the_sign_in_page() {
    let Some((_driver, w, base, browser)) = inline().await else {
        return;
    };
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (name, width, height, wrong) in [
        ("sign-in.png", 1280, 800, false),
        ("sign-in-error.png", 1280, 800, true),
        ("sign-in-phone.png", 390, 844, false),
    ] {
        browser.resize(width, height).await;
        browser.open(&format!("{base}/dashboard")).await;
        if wrong {
            sign_in(&browser, ADMIN_EMAIL, "wrong").await;
            browser.wait_for("#error").await;
        }
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(out.join(name), png).unwrap();
    }
    browser.quit().await;
    w.finish().await;
}
