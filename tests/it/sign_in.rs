//! The sign-in and sign-out pages over HTTP, without a browser: the redirect rule (browsers to
//! the page, API clients keep Coder's 401), the form's CSRF token, the login through the API's
//! code path (the same cookie, message, status and limits), sign-out on every replica,
//! `session.cookie_domain`, and forward-auth's answers to a browser. `tests/it/browser/`
//! drives the same pages in Chromium.

use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use crate::common::world::*;
use crate::common::*;

/// A Portcullis on `memory://` with its first user, with `lines` added to its config's
/// `table` (`"[session]\n"`, which the common config already has).
async fn start(table: &str, lines: &str) -> World {
    let prefix = random_key_prefix();
    let config = config_with_store(start_echo().await, MEMORY, &prefix, "", "").replacen(
        table,
        &format!("{table}{lines}"),
        1,
    );
    World::with_first_user(Sidecar::start(&config).await, prefix).await
}

/// What Chromium sends when it loads a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
     image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

/// A request to `w` with `headers`, and a form `body` when given: status, headers, body text.
async fn send_to(
    w: &World,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f.to_owned()));
    let resp = send(w.sidecar.addr, request_with(method, path, headers, body)).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, body_string(resp).await)
}

/// Posts the sign-out form with the session `token` and a right CSRF token: the response
/// headers.
async fn post_sign_out(w: &World, token: &str) -> (StatusCode, HeaderMap) {
    let csrf = csrf(w).await;
    let cookies = format!("coder_session_token={token}; csrf_token={csrf}");
    let form = format!("csrf_token={csrf}");
    let (status, headers, _) = send_to(
        w,
        Method::POST,
        "/.portcullis/sign-out",
        &[("cookie", &cookies)],
        Some(&form),
    )
    .await;
    (status, headers)
}

/// The `Set-Cookie` line of cookie `name`, if set.
fn set_cookie_line(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value of cookie `name` as set.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let line = set_cookie_line(headers, name)?;
    let value = line[name.len() + 1..].split(';').next().unwrap().to_owned();
    Some(value)
}

/// Loads the sign-in page: its `csrf_token` cookie (also the form's field).
async fn csrf(w: &World) -> String {
    let (status, headers, body) = send_to(w, Method::GET, "/.portcullis/sign-in", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = set_cookie(&headers, "csrf_token").expect("a csrf_token cookie");
    assert!(
        body.contains(&format!("name=\"csrf_token\" value=\"{token}\"")),
        "{body}"
    );
    token
}

/// Posts the sign-in form with the right CSRF token.
async fn post_sign_in(
    w: &World,
    email: &str,
    password: &str,
    rd: &str,
) -> (StatusCode, HeaderMap, String) {
    let token = csrf(w).await;
    let form = format!(
        "email={}&password={}&rd={}&csrf_token={token}",
        enc(email),
        enc(password),
        enc(rd)
    );
    let cookie = format!("csrf_token={token}");
    send_to(
        w,
        Method::POST,
        "/.portcullis/sign-in",
        &[("cookie", &cookie)],
        Some(&form),
    )
    .await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn browsers_are_sent_to_sign_in_and_api_clients_keep_coders_401() {
    let w = World::start(MEMORY, "").await;
    let path = "/reports/q3?tab=1&x=%2F";
    let location = "/.portcullis/sign-in?rd=%2Freports%2Fq3%3Ftab%3D1%26x%3D%252F";
    for accept in [
        BROWSER_ACCEPT,
        "text/html",
        "text/html;q=0.9, application/json;q=0.5",
    ] {
        for method in [Method::GET, Method::HEAD] {
            let (status, headers, _) =
                send_to(&w, method.clone(), path, &[("accept", accept)], None).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{method} {accept}");
            assert_eq!(headers["location"], location);
        }
    }
    // A session that no longer exists is "no session" too.
    let gone = "coder_session_token=AAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbb";
    let (status, headers, _) = send_to(
        &w,
        Method::GET,
        path,
        &[("accept", BROWSER_ACCEPT), ("cookie", gone)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], location);
    // API clients, and anything but a page load, keep Coder's 401.
    for (method, accept) in [
        (Method::GET, "application/json"),
        (Method::GET, "*/*"),
        (Method::GET, ""),
        (Method::GET, "application/json, text/html"),
        (Method::GET, "text/html;q=0.5, application/json"),
        (Method::GET, "text/html;q=0"),
        (Method::GET, "image/webp,text/html"),
        (Method::GET, "*/*, text/html;q=0.5"),
        (Method::POST, BROWSER_ACCEPT),
        (Method::DELETE, BROWSER_ACCEPT),
    ] {
        let (status, headers, body) =
            send_to(&w, method.clone(), path, &[("accept", accept)], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {accept:?}");
        assert!(headers.get("location").is_none());
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["message"], SIGNED_OUT);
    }
    // A signed-in browser that may not see a route gets the 403, not a sign-in loop.
    w.finish().await;
}

#[tokio::test]
async fn the_page_is_self_contained_and_carries_the_forms_exact_names() {
    let w = World::start(MEMORY, "").await;
    let (status, headers, body) = send_to(
        &w,
        Method::GET,
        "/.portcullis/sign-in?rd=%2Fdashboard%3Fa%3D1",
        &[("accept", BROWSER_ACCEPT)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    for part in [
        r#"<form method="post" action="/.portcullis/sign-in""#,
        r#"name="email""#,
        r#"name="password" type="password""#,
        r#"<input type="hidden" name="rd" value="/dashboard?a=1">"#,
        r#"name="csrf_token""#,
        r#"<button type="submit""#,
        r#"<meta name="viewport""#,
    ] {
        assert!(body.contains(part), "{part} missing:\n{body}");
    }
    assert!(!body.contains("<script"));
    // No OIDC configured: no button.
    assert!(!body.contains("oidc/callback"));
    // A second visit keeps the browser's token rather than replacing it.
    let token = set_cookie(&headers, "csrf_token").unwrap();
    let cookie = format!("csrf_token={token}");
    let (_, again, body) = send_to(
        &w,
        Method::GET,
        "/.portcullis/sign-in",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert!(set_cookie(&again, "csrf_token").is_none());
    assert!(body.contains(&format!("value=\"{token}\"")));
    w.finish().await;
}

#[tokio::test]
async fn a_form_sign_in_sets_the_api_logins_cookie_and_goes_to_rd() {
    let w = World::start(MEMORY, "").await;
    let (status, headers, body) = post_sign_in(&w, ADMIN_EMAIL, PASSWORD, "/dashboard?tab=2").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], "/dashboard?tab=2");
    let line = set_cookie_line(&headers, "coder_session_token").expect("the session cookie");
    let token = set_cookie(&headers, "coder_session_token").unwrap();
    // The very cookie POST /users/login sets: the same attributes.
    let (_, _, api) = call_json(
        w.sidecar.addr,
        api_request(
            Method::POST,
            "/api/v2/users/login",
            Some(&serde_json::json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
            None,
        ),
    )
    .await;
    let api_line = set_cookie_line(&api, "coder_session_token").unwrap();
    let attributes = |l: &str| l.split_once(';').unwrap().1.to_owned();
    assert_eq!(attributes(&line), attributes(&api_line));
    // A working session, which the upstream sees as the user.
    let (status, seen) = proxied(&w.sidecar, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen_header(&seen, "x-forwarded-email"), [ADMIN_EMAIL]);
    // Signed in already: the page goes straight on to rd.
    let cookie = format!("coder_session_token={token}");
    let (status, headers, _) = send_to(
        &w,
        Method::GET,
        "/.portcullis/sign-in?rd=%2Fnext",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/next");
    w.finish().await;
}

#[tokio::test]
async fn an_off_site_or_own_page_rd_lands_on_the_root_and_an_allowed_host_is_followed() {
    let w = start(
        "[session]\n",
        "allowed_redirect_hosts = [\"*.corp.example\"]\n",
    )
    .await;
    for rd in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%2f%2fevil.example",
        // Its own pages would send a signed-in browser round in a loop.
        "/.portcullis/sign-in?rd=%2F.portcullis%2Fsign-in",
        "/.portcullis/sign-out",
    ] {
        let (status, headers, _) = post_sign_in(&w, ADMIN_EMAIL, PASSWORD, rd).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{rd}");
        assert_eq!(headers["location"], "/", "{rd}");
    }
    let (_, headers, _) =
        post_sign_in(&w, ADMIN_EMAIL, PASSWORD, "https://wiki.corp.example/a?b=1").await;
    assert_eq!(headers["location"], "https://wiki.corp.example/a?b=1");
    w.finish().await;
}

#[tokio::test]
async fn a_wrong_password_is_a_401_page_with_coders_message_and_no_cookie() {
    let w = World::start(MEMORY, "").await;
    let (status, headers, body) = post_sign_in(&w, ADMIN_EMAIL, "wrong password", "/x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("Incorrect email or password."), "{body}");
    assert!(body.contains(r#"value="admin@example.com""#), "{body}");
    assert!(
        !body.contains("wrong password"),
        "the password is never echoed"
    );
    assert!(set_cookie(&headers, "coder_session_token").is_none());
    // An empty form: Coder's validation, as a sentence.
    let (status, _, body) = post_sign_in(&w, "", "", "/").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("Enter your email address and your password."),
        "{body}"
    );
    w.finish().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_or_from_another_site_is_refused() {
    let w = World::start(MEMORY, "").await;
    let token = csrf(&w).await;
    let form = |t: &str| {
        format!(
            "email={}&password={}&rd=%2F&csrf_token={t}",
            enc(ADMIN_EMAIL),
            enc(PASSWORD)
        )
    };
    let cookie = format!("csrf_token={token}");
    for (headers, body) in [
        (vec![], form(&token)),
        (vec![("cookie", cookie.as_str())], form("")),
        (vec![("cookie", cookie.as_str())], form("wrong")),
        (
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "https://evil.example"),
            ],
            form(&token),
        ),
        (
            vec![
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            form(&token),
        ),
    ] {
        let (status, got, page) = send_to(
            &w,
            Method::POST,
            "/.portcullis/sign-in",
            &headers,
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?} {body}");
        assert!(set_cookie(&got, "coder_session_token").is_none());
        assert!(page.contains("This form has expired"), "{page}");
    }
    // The same form from this site passes.
    let (status, _, _) = send_to(
        &w,
        Method::POST,
        "/.portcullis/sign-in",
        &[("cookie", &cookie), ("origin", "http://app.test")],
        Some(&form(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    w.finish().await;
}

#[tokio::test]
async fn the_form_shares_the_apis_login_limit() {
    let w = World::start(MEMORY, "[rate_limit]\nlogin_per_minute = 4\n").await;
    // World's first user and its login are counted already; one more, then the form.
    let (status, _) = login(w.sidecar.addr, ADMIN_EMAIL, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post_sign_in(&w, ADMIN_EMAIL, "wrong", "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, body) = post_sign_in(&w, ADMIN_EMAIL, PASSWORD, "/").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(set_cookie(&headers, "coder_session_token").is_none());
    assert!(body.contains("role=\"alert\""), "{body}");
    // ... and the API sees the form's attempts.
    let (status, _) = login(w.sidecar.addr, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    w.finish().await;
}

#[tokio::test]
async fn sign_out_ends_the_session_on_every_replica_and_clears_the_cookie() {
    let (w, replica) = World::with_replica(REDIS).await;
    let replica = replica.expect("a replica on Redis");
    let (status, headers, _) = post_sign_in(&w, ADMIN_EMAIL, PASSWORD, "/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let token = set_cookie(&headers, "coder_session_token").unwrap();
    // Both replicas know (and cache) the session.
    assert_eq!(proxied(&w.sidecar, &token).await.0, StatusCode::OK);
    assert_eq!(proxied(&replica, &token).await.0, StatusCode::OK);

    // GET only asks; it changes nothing.
    let csrf = csrf(&w).await;
    let cookies = format!("coder_session_token={token}; csrf_token={csrf}");
    let (status, _, page) = send_to(
        &w,
        Method::GET,
        "/.portcullis/sign-out",
        &[("cookie", &cookies)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"action="/.portcullis/sign-out""#), "{page}");
    assert_eq!(proxied(&w.sidecar, &token).await.0, StatusCode::OK);
    // Without the token: refused, still signed in.
    let (status, _, _) = send_to(
        &w,
        Method::POST,
        "/.portcullis/sign-out",
        &[("cookie", &cookies)],
        Some("csrf_token=wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(proxied(&w.sidecar, &token).await.0, StatusCode::OK);

    let (status, headers) = post_sign_out(&w, &token).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/.portcullis/sign-in?signed-out");
    let cleared = set_cookie_line(&headers, "coder_session_token").unwrap();
    assert!(cleared.starts_with("coder_session_token=;") && cleared.contains("Max-Age=0"));
    assert_eq!(
        proxied(&w.sidecar, &token).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The other replica's cache was told (its cache TTL is an hour).
    eventually("the replica forgets the session", || async {
        proxied(&replica, &token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    replica.shutdown().await;
    w.finish().await;
}

#[tokio::test]
async fn cookie_domain_names_the_sessions_cookie_domain() {
    let w = start("[session]\n", "cookie_domain = \".Example.com\"\n").await;
    let (_, headers, _) = post_sign_in(&w, ADMIN_EMAIL, PASSWORD, "/").await;
    let line = set_cookie_line(&headers, "coder_session_token").unwrap();
    assert!(line.contains("; Domain=example.com"), "{line}");
    let token = set_cookie(&headers, "coder_session_token").unwrap();
    let (_, headers) = post_sign_out(&w, &token).await;
    let cleared = set_cookie_line(&headers, "coder_session_token").unwrap();
    assert!(cleared.contains("; Domain=example.com"), "{cleared}");
    w.finish().await;
}

#[tokio::test]
async fn forward_auth_sends_browsers_to_sign_in_in_each_edges_form() {
    let w = start("[server]\n", "trusted_proxies = [\"127.0.0.1\"]\n").await;
    let location = "/.portcullis/sign-in?rd=%2Fapp%3Fq%3D1";
    // Traefik / Caddy: the 303 itself, which they pass to the client.
    let traefik = [
        ("x-forwarded-uri", "/app?q=1"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", "app.test"),
    ];
    let mut headers = traefik.to_vec();
    headers.push(("accept", BROWSER_ACCEPT));
    let (status, got, _) = send_to(&w, Method::GET, "/.portcullis/verify", &headers, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(got["location"], format!("http://app.test{location}"));
    // nginx: the 401 (all auth_request passes on), naming the page for error_page.
    let nginx = [
        ("x-original-uri", "/app?q=1"),
        ("x-original-method", "GET"),
        ("accept", BROWSER_ACCEPT),
    ];
    let (status, got, _) = send_to(&w, Method::GET, "/.portcullis/verify", &nginx, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(got["x-portcullis-sign-in"], location);
    // API clients: Coder's 401 and nothing else, in both forms.
    for headers in [&traefik[..], &nginx[..2]] {
        let mut headers = headers.to_vec();
        headers.push(("accept", "application/json"));
        let (status, got, _) =
            send_to(&w, Method::GET, "/.portcullis/verify", &headers, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(got.get("location").is_none() && got.get("x-portcullis-sign-in").is_none());
    }
    w.finish().await;
}
