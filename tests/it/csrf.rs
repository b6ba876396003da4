//! CSRF defence for cookie-authenticated writes, end to end on every store: Coder's
//! double submit on the API (spec/coder-api.md §0.4: `csrf_token` cookie, `X-CSRF-TOKEN`
//! header, its exemptions, the plain-text 400), and the refusal of cross-site writes
//! (`Origin`, `Sec-Fetch-Site`) on the API and on proxied requests. Clients that send the token
//! in a header are unaffected.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::common::world::*;
use crate::common::*;

const BAD_TOKEN: &str = "Something is wrong with your CSRF token. Please refresh the page. If this error persists, try clearing your cookies.\n";

/// A request to `app.test` with `headers`, and `body` as JSON when given.
async fn send_with(
    w: &World,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let body = body.map(|b| ("text/plain", b.to_string()));
    let req = request_with(method, path, headers, body);
    call_json(w.sidecar.addr, req).await
}

/// The value of cookie `name` among `headers`' `Set-Cookie`s.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().unwrap();
        let value = v.strip_prefix(&format!("{name}="))?;
        Some(value.split(';').next().unwrap().to_owned())
    })
}

fn new_user(n: u32) -> Value {
    json!({"email": format!("u{n}@example.com"), "username": format!("u{n}"), "password": PASSWORD})
}

async fn cookie_writes(store_url: &str) {
    let w = World::start(store_url, "").await;

    // Login sets the session cookie and a readable csrf_token beside it.
    let (status, body, headers) = send_with(
        &w,
        Method::POST,
        "/api/v2/users/login",
        Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        set_cookie(&headers, "coder_session_token").as_ref(),
        Some(&session)
    );
    let csrf = set_cookie(&headers, "csrf_token").expect("a csrf_token cookie at login");
    let csrf_line = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("csrf_token="))
        .unwrap();
    assert!(csrf_line.contains("Path=/"), "{csrf_line}");
    assert!(!csrf_line.contains("HttpOnly"), "{csrf_line}");
    let cookies = format!("coder_session_token={session}; csrf_token={csrf}");

    // A cookie write without the token: Coder's plain text, nothing created.
    let only_cookies = [("cookie", cookies.as_str())];
    let got = send_with(
        &w,
        Method::POST,
        "/api/v2/users",
        Some(new_user(1)),
        &only_cookies,
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    assert_eq!(got.1, Value::String(BAD_TOKEN.into()));
    assert_eq!(got.2["content-type"], "text/plain; charset=utf-8");
    let got = w
        .call(Method::GET, "/api/v2/users/u1", None, Some(&w.admin))
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
    // A wrong token is the same; the right one works.
    let wrong = [
        ("cookie", cookies.as_str()),
        ("x-csrf-token", "not-the-token"),
    ];
    let got = send_with(&w, Method::POST, "/api/v2/users", Some(new_user(1)), &wrong).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    assert_eq!(got.1, Value::String(BAD_TOKEN.into()));
    let right = [
        ("cookie", cookies.as_str()),
        ("x-csrf-token", csrf.as_str()),
    ];
    let got = send_with(&w, Method::POST, "/api/v2/users", Some(new_user(1)), &right).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);

    // The exemptions of §0.4: safe methods; the Coder-Session-Token header or the query
    // parameter equal to the cookie; /users/first; no session cookie at all.
    let got = send_with(&w, Method::GET, "/api/v2/users/me", None, &only_cookies).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let same_header = [
        ("cookie", cookies.as_str()),
        ("coder-session-token", session.as_str()),
    ];
    let got = send_with(
        &w,
        Method::POST,
        "/api/v2/users",
        Some(new_user(2)),
        &same_header,
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let got = send_with(
        &w,
        Method::POST,
        &format!("/api/v2/users?coder_session_token={session}"),
        Some(new_user(3)),
        &only_cookies,
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let got = send_with(
        &w,
        Method::POST,
        "/api/v2/users/first",
        Some(json!({"email": "x@example.com", "username": "x", "password": PASSWORD})),
        &only_cookies,
    )
    .await;
    assert_message(
        &got,
        StatusCode::CONFLICT,
        "The initial user has already been created.",
    );
    for auth in [
        ("coder-session-token", session.clone()),
        ("authorization", format!("Bearer {session}")),
    ] {
        let got = send_with(
            &w,
            Method::POST,
            "/api/v2/users",
            Some(new_user(4)),
            &[(auth.0, &auth.1)],
        )
        .await;
        assert!(
            got.0 == StatusCode::CREATED || got.0 == StatusCode::CONFLICT,
            "{}",
            got.1
        );
    }
    // A different header token does not exempt the cookie.
    let other = [
        ("cookie", cookies.as_str()),
        ("coder-session-token", w.admin.as_str()),
    ];
    let got = send_with(&w, Method::POST, "/api/v2/users", Some(new_user(5)), &other).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);

    // Cross site is refused even with the right token; same origin is fine.
    let evil = ("origin", "https://evil.example");
    for refused in [
        vec![right[0], right[1], evil],
        vec![right[0], right[1], ("sec-fetch-site", "cross-site")],
    ] {
        let got = send_with(
            &w,
            Method::POST,
            "/api/v2/users",
            Some(new_user(6)),
            &refused,
        )
        .await;
        assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    }
    let same_origin = [
        right[0],
        right[1],
        ("origin", "http://app.test"),
        ("sec-fetch-site", "same-origin"),
    ];
    let got = send_with(
        &w,
        Method::POST,
        "/api/v2/users",
        Some(new_user(6)),
        &same_origin,
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    // A header-token client from anywhere is not a browser replaying a cookie.
    let got = send_with(
        &w,
        Method::POST,
        "/api/v2/users",
        Some(new_user(7)),
        &[
            ("coder-session-token", &session),
            evil,
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);

    // Proxied writes: a cookie from another site is refused, the same site and header
    // tokens go through; reads are never refused.
    let session_cookie = format!("coder_session_token={session}");
    for (headers, status) in [
        (
            vec![("cookie", session_cookie.as_str()), evil],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("cookie", session_cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("cookie", session_cookie.as_str()),
                ("origin", "http://app.test"),
            ],
            StatusCode::OK,
        ),
        (vec![("cookie", session_cookie.as_str())], StatusCode::OK),
        (
            vec![("coder-session-token", session.as_str()), evil],
            StatusCode::OK,
        ),
    ] {
        let got = send_with(&w, Method::POST, "/app/form", Some(json!({})), &headers).await;
        assert_eq!(got.0, status, "{headers:?}: {}", got.1);
    }
    let got = send_with(
        &w,
        Method::GET,
        "/app/page",
        None,
        &[("cookie", &session_cookie), evil],
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);

    // An API response to a browser with a session cookie and no token issues one.
    let got = send_with(
        &w,
        Method::GET,
        "/api/v2/users/me",
        None,
        &[("cookie", &session_cookie)],
    )
    .await;
    assert_eq!(got.0, StatusCode::OK);
    let issued = set_cookie(&got.2, "csrf_token").expect("a csrf_token for a cookie session");
    assert_ne!(issued, csrf);
    let got = send_with(&w, Method::GET, "/api/v2/users/me", None, &only_cookies).await;
    assert!(set_cookie(&got.2, "csrf_token").is_none());
    let got = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&session))
        .await;
    assert!(set_cookie(&got.2, "csrf_token").is_none());
    w.finish().await;
}

on_every_store!(cookie_writes => cookie_writes_need_the_csrf_token_and_come_from_this_site);
