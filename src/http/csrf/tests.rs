use super::*;

const SESSION: &str = "AAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbb";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

// A table of (method, uri, headers, checks, expected): clearer inline than a named struct.
#[allow(clippy::type_complexity)]
#[test]
fn cookie_writes_need_the_token_and_the_exemptions_hold() {
    let cookie = format!("coder_session_token={SESSION}; csrf_token=tok123");
    let only_session = format!("coder_session_token={SESSION}");
    let query = format!("/api/v2/users?coder_session_token={SESSION}");
    use Checks::*;
    use Refusal::*;
    let cases: &[(&str, &str, &[(&str, &str)], Checks, Result<(), Refusal>)] = &[
        // Safe methods and requests without the session cookie are never checked.
        ("GET", "/x", &[("cookie", &cookie)], TokenAndSite, Ok(())),
        (
            "HEAD",
            "/x",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
            TokenAndSite,
            Ok(()),
        ),
        ("POST", "/x", &[], TokenAndSite, Ok(())),
        (
            "POST",
            "/x",
            &[("cookie", "csrf_token=tok123")],
            TokenAndSite,
            Ok(()),
        ),
        // The double submit.
        (
            "POST",
            "/x",
            &[("cookie", &cookie)],
            TokenAndSite,
            Err(Token),
        ),
        (
            "POST",
            "/x",
            &[("cookie", &only_session), ("x-csrf-token", "tok123")],
            TokenAndSite,
            Err(Token),
        ),
        (
            "PUT",
            "/x",
            &[("cookie", &cookie), ("x-csrf-token", "tok124")],
            TokenAndSite,
            Err(Token),
        ),
        (
            "DELETE",
            "/x",
            &[("cookie", &cookie), ("x-csrf-token", "")],
            TokenAndSite,
            Err(Token),
        ),
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("x-csrf-token", "tok123")],
            TokenAndSite,
            Ok(()),
        ),
        // Proxied requests get the site check only.
        ("POST", "/x", &[("cookie", &cookie)], Site, Ok(())),
        // The header or query parameter equal to the cookie: a client that holds the token.
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("coder-session-token", SESSION)],
            TokenAndSite,
            Ok(()),
        ),
        ("POST", &query, &[("cookie", &cookie)], TokenAndSite, Ok(())),
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("coder-session-token", "other")],
            TokenAndSite,
            Err(Token),
        ),
        // Same site: Origin's host is the request's (Host, X-Forwarded-Host), any port.
        (
            "POST",
            "/x",
            &[
                ("cookie", &cookie),
                ("x-csrf-token", "tok123"),
                ("host", "app.test"),
                ("origin", "https://APP.test:8443"),
                ("sec-fetch-site", "same-origin"),
            ],
            TokenAndSite,
            Ok(()),
        ),
        (
            "POST",
            "/x",
            &[
                ("cookie", &cookie),
                ("host", "10.0.0.1:8080"),
                ("x-forwarded-host", "app.test"),
                ("origin", "https://app.test"),
            ],
            Site,
            Ok(()),
        ),
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("sec-fetch-site", "same-site")],
            Site,
            Ok(()),
        ),
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("sec-fetch-site", "none")],
            Site,
            Ok(()),
        ),
        // Cross site, whatever the token says.
        (
            "POST",
            "/x",
            &[
                ("cookie", &cookie),
                ("x-csrf-token", "tok123"),
                ("host", "app.test"),
                ("origin", "https://evil.example"),
            ],
            TokenAndSite,
            Err(CrossSite),
        ),
        (
            "POST",
            "/x",
            &[
                ("cookie", &cookie),
                ("host", "app.test"),
                ("origin", "https://app.test.evil.example"),
            ],
            Site,
            Err(CrossSite),
        ),
        (
            "POST",
            "/x",
            &[
                ("cookie", &cookie),
                ("host", "app.test"),
                ("origin", "null"),
            ],
            Site,
            Err(CrossSite),
        ),
        (
            "PATCH",
            "/x",
            &[
                ("cookie", &cookie),
                ("x-csrf-token", "tok123"),
                ("sec-fetch-site", "cross-site"),
            ],
            TokenAndSite,
            Err(CrossSite),
        ),
        (
            "POST",
            "/x",
            &[("cookie", &cookie), ("sec-fetch-site", "Cross-Site")],
            Site,
            Err(CrossSite),
        ),
    ];
    for (method, uri, pairs, checks, expected) in cases {
        let method: Method = method.parse().unwrap();
        let uri: Uri = uri.parse().unwrap();
        assert_eq!(
            check(&method, &uri, &headers(pairs), *checks),
            *expected,
            "{method} {uri} {pairs:?} {checks:?}"
        );
    }
}

#[test]
fn the_token_cookie_is_issued_to_browsers_with_a_session_and_none_yet() {
    let login = headers(&[("set-cookie", "coder_session_token=abc; Path=/; HttpOnly")]);
    let logout = headers(&[("set-cookie", "coder_session_token=; Path=/; Max-Age=0")]);
    let nothing = HeaderMap::new();
    let cases = [
        ("coder_session_token=abc", &nothing, true),
        ("coder_session_token=abc; csrf_token=t", &nothing, false),
        ("other=1", &nothing, false),
        ("other=1", &login, true),
        ("csrf_token=t", &login, false),
        ("other=1", &logout, false),
    ];
    for (cookie, response, expected) in cases {
        let carried = Carried::of(&headers(&[("cookie", cookie)]));
        assert_eq!(
            carried.wants_token(response),
            expected,
            "{cookie} {response:?}"
        );
    }
}

#[test]
fn a_bad_token_gets_coders_exact_plain_text() {
    let resp = Refusal::Token.into_response();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(
        Refusal::CrossSite.into_response().status(),
        StatusCode::FORBIDDEN
    );
    let token = new_token().unwrap();
    assert_eq!(token.len(), 32);
    assert_ne!(token, new_token().unwrap());
}
