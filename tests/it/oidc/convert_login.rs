//! convert-login

use super::*;

on_every_store!(convert_end_to_end => convert_login_end_to_end);

pub(super) async fn convert_end_to_end(store_url: &str) {
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

/// Past its lifetime the state is refused before anyone is sent to the provider. (A sleep is
/// never shorter than asked, so the state has surely expired.)
#[tokio::test]
async fn convert_login_refuses_an_expired_state() {
    let w = World::with_accounts("memory://", "convert_state_ttl = \"1s\"").await;
    w.first_user("carol@example.com", "carol").await;
    let token = w.password_login("carol@example.com").await;

    let state = w.start_convert(&token).await;
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
    w.finish().await;
}

/// Signing in at the provider as someone else: the email must be the account's. (The state
/// lives its default 5 minutes here, so a slow round trip through the provider cannot expire
/// it and turn this into the test above.)
#[tokio::test]
async fn convert_login_refuses_another_email() {
    let w = World::with_accounts("memory://", "").await;
    w.first_user("carol@example.com", "carol").await;
    let token = w.password_login("carol@example.com").await;

    let state = w.start_convert(&token).await;
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
