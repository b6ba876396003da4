//! The sign-in page's OIDC button in headless Chromium (see `crate::browser`), against the
//! test provider: the button (with `oidc.sign_in_text`) starts the provider's login and comes
//! back to the page the browser first asked for, signed in.

use super::*;
use crate::browser::{self, webdriver};

#[tokio::test]
async fn the_oidc_button_signs_in_through_the_provider_and_lands_on_the_page() {
    let Some(driver) = browser::driver().await else {
        return;
    };
    let w = World::with_accounts("memory://", "sign_in_text = \"Sign in with Example SSO\"").await;
    let chromium: webdriver::Browser = driver.browser().await;
    let target = "/dashboard?tab=1";

    chromium.open(&w.url(target)).await;
    chromium
        .wait_for_url(&w.url("/.portcullis/sign-in?rd=%2Fdashboard%3Ftab%3D1"))
        .await;
    assert_eq!(chromium.text("#oidc").await, "Sign in with Example SSO");
    assert_eq!(chromium.count("input[name=password]").await, 1);
    let png = chromium.screenshot().await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sign-in-oidc.png");
    std::fs::write(out, png).unwrap();
    chromium.click("#oidc").await;
    // The provider's own login form.
    chromium.wait_for("input[name=login]").await;
    assert!(chromium.url().await.starts_with(&w.provider.issuer));
    chromium.fill("input[name=login]", "alice").await;
    chromium.click("button").await;

    chromium.wait_for_url(&w.url(target)).await;
    let seen = chromium.json().await;
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["alice"]);
    assert_eq!(
        seen_header(&seen, "x-forwarded-email"),
        ["alice@example.com"]
    );
    chromium.quit().await;
}
