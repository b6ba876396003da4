//! The access log and the audit log of the real binary, read from its stderr in JSON
//! (`log.format = "json"`): each request's access line carries the fields docs/logging.md
//! names with the right values, no secret the client sent (a token in a header, a cookie or
//! the query, a password, a query string, an `Authorization` value) appears anywhere in stderr,
//! the access log is silent when off, and logins, failed logins, logouts and password resets
//! are audited with their user (or the email tried), reason and client address, as are an
//! owner's `explain` calls.

use std::net::SocketAddr;
use std::path::Path;

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::world::make_member;
use crate::common::*;

const ACCESS: &str = "portcullis::access";
const AUDIT: &str = "portcullis::audit";

/// A password no test sends as the right one.
const WRONG_PASSWORD: &str = "wrong horse staple";
/// A query parameter's value that must never reach the log.
const QUERY_SECRET: &str = "q-secret-7f3a9c";
/// An `Authorization` value that must never reach the log.
const AUTHORIZATION_SECRET: &str = "Basic YXV0aC1zZWNyZXQtOWQyYg==";

/// A config for `portcullis serve` in front of `upstream`: JSON lines, the access log as
/// `access` says, `/public/**` public (rule 0), `/app/**` for a session (rule 1), the account
/// throttle after `account_failures` failed logins, and the test client on 127.0.0.1 a trusted
/// proxy (so forward-auth answers it, and its `X-Forwarded-For` names the client).
fn logging_config(upstream: SocketAddr, access: bool, account_failures: u32) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [upstream]\nurl = \"{}\"\n\n\
         [store]\nurl = \"memory://\"\n\n\
         [log]\nformat = \"json\"\naccess = {access}\n\n\
         [rate_limit]\naccount_failures = {account_failures}\n\n\
         [policy]\ndefault = \"authenticated\"\n\n\
         [[policy.route]]\npath = \"/public/**\"\npublic = true\n\n\
         [[policy.route]]\npath = \"/app/**\"\nauthenticated = true\n",
        http_url(upstream)
    )
}

async fn serve_with(dir: &Path, toml: &str) -> Process {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    spawn_serve(&path).await
}

/// A GET of `path` to `app.test` with `X-Request-Id: rid` and the extra `headers`.
fn get_with(path: &str, rid: &str, headers: &[(http::HeaderName, String)]) -> Request<TestBody> {
    let mut b = Request::builder()
        .uri(path)
        .header(HOST, "app.test")
        .header("x-request-id", rid);
    for (name, value) in headers {
        b = b.header(name, value);
    }
    b.body(empty()).unwrap()
}

/// Waits until `proc` has logged a line on `target` for which `pick` holds, and returns it.
async fn line(proc: &Process, target: &str, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    eventually(what, || {
        found = json_events(&proc.log(), target).into_iter().find(&pick);
        let done = found.is_some();
        async move { done }
    })
    .await;
    found.expect("found")
}

/// The access line of the request with `X-Request-Id: rid`.
async fn access_line(proc: &Process, rid: &str) -> Value {
    let what = format!("the access line of {rid}");
    line(proc, ACCESS, &what, |e| e["fields"]["request_id"] == rid).await["fields"].clone()
}

/// Asserts the access line `fields` says `expected` (a JSON object of the fields that must
/// be there with these values), and has a duration and the client's address.
fn assert_fields(fields: &Value, expected: Value) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&fields[key], value, "{key} in {fields}");
    }
    assert!(
        fields["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{fields}"
    );
    assert_eq!(fields["client_ip"], "127.0.0.1", "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_name_each_request_and_no_secret_reaches_the_log() {
    let upstream = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let proc = serve_with(dir.path(), &logging_config(upstream, true, 10)).await;
    let addr = proc.addr;
    let (user_id, token) = first_user_token(addr).await;
    let secret = token.split_once('-').expect("id-secret").1.to_owned();
    assert!(secret.len() >= 20, "{token}");
    let (status, _) = login(addr, ADMIN_EMAIL, WRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The session token in each place a client may carry it, each with a query string.
    let header = [(
        http::HeaderName::from_static("coder-session-token"),
        token.clone(),
    )];
    let resp = send(
        addr,
        get_with(
            &format!("/app/header?x={QUERY_SECRET}"),
            "rid-header",
            &header,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = [(COOKIE, format!("coder_session_token={token}; theme=dark"))];
    let resp = send(addr, get_with("/app/cookie", "rid-cookie", &cookie)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let in_query = format!("/app/query?coder_session_token={token}&x={QUERY_SECRET}");
    let resp = send(addr, get_with(&in_query, "rid-query", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // No session, a public route, an API endpoint, and an Authorization header.
    let authorization = [(AUTHORIZATION, AUTHORIZATION_SECRET.to_owned())];
    let resp = send(addr, get_with("/app/none", "rid-none", &authorization)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send(addr, get_with("/public/page?x=1", "rid-public", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(addr, get_with("/api/v2/users/me", "rid-api", &header)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(addr, get_with("/elsewhere", "rid-default", &[])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Forward-auth from an edge, for a client behind it: the line is the original request's.
    let edge = [
        (
            http::HeaderName::from_static("x-original-uri"),
            format!("/app/edge?coder_session_token={token}&x={QUERY_SECRET}"),
        ),
        (
            http::HeaderName::from_static("x-original-method"),
            "POST".to_owned(),
        ),
        (
            http::HeaderName::from_static("x-forwarded-for"),
            "198.51.100.23".to_owned(),
        ),
    ];
    let resp = send(addr, get_with("/.portcullis/verify", "rid-verify", &edge)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let allowed = |path: &str| {
        json!({
            "kind": "proxy", "method": "GET", "path": path, "status": 200,
            "decision": "allow", "rule": "policy.route[1]", "user_id": user_id,
        })
    };
    let header_line = access_line(&proc, "rid-header").await;
    assert_fields(&header_line, allowed("/app/header"));
    assert_fields(
        &access_line(&proc, "rid-cookie").await,
        allowed("/app/cookie"),
    );
    assert_fields(
        &access_line(&proc, "rid-query").await,
        allowed("/app/query"),
    );
    let none = access_line(&proc, "rid-none").await;
    assert_fields(
        &none,
        json!({
            "kind": "proxy", "path": "/app/none", "status": 401,
            "decision": "unauthenticated", "rule": "policy.route[1]",
        }),
    );
    assert!(none.get("user_id").is_none(), "{none}");
    assert_fields(
        &access_line(&proc, "rid-public").await,
        json!({
            "kind": "proxy", "path": "/public/page", "status": 200,
            "decision": "public", "rule": "policy.route[0]",
        }),
    );
    assert_fields(
        &access_line(&proc, "rid-api").await,
        json!({
            "kind": "api", "path": "/api/v2/users/me", "status": 200,
            "decision": "api", "user_id": user_id,
        }),
    );
    assert_fields(
        &access_line(&proc, "rid-default").await,
        json!({"status": 401, "decision": "unauthenticated", "rule": "policy.default"}),
    );
    let verify = access_line(&proc, "rid-verify").await;
    for (key, value) in [
        ("kind", json!("verify")),
        ("method", json!("POST")),
        ("path", json!("/app/edge")),
        ("status", json!(200)),
        ("decision", json!("allow")),
        ("rule", json!("policy.route[1]")),
        ("user_id", json!(user_id)),
        ("client_ip", json!("198.51.100.23")),
    ] {
        assert_eq!(verify[key], value, "{key} in {verify}");
    }

    // The audit lines of both logins are there too: the log is complete up to here.
    line(&proc, AUDIT, "the failed login's audit line", |e| {
        e["fields"]["reason"] == "wrong_password"
    })
    .await;
    let log = proc.log();
    for (what, secret) in [
        ("the token", token.as_str()),
        ("the token's secret", secret.as_str()),
        ("the password", PASSWORD),
        ("the wrong password", WRONG_PASSWORD),
        ("a query value", QUERY_SECRET),
        ("a query string", "?x="),
        ("a query string", "&x="),
        ("a cookie", "theme=dark"),
        ("an Authorization value", "YXV0aC1zZWNyZXQtOWQyYg"),
    ] {
        assert!(
            !log.contains(secret),
            "{what} ({secret}) is in the log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_access_log_off_no_access_line_is_written() {
    let upstream = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let proc = serve_with(dir.path(), &logging_config(upstream, false, 10)).await;
    let resp = send(proc.addr, get_with("/public/page", "rid-off", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(proc.addr, get_with("/app/x", "rid-off-2", &[])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A failed login's audit line, written after both requests were answered, marks the point
    // the log is complete up to.
    let (status, _) = login(proc.addr, "nobody@example.com", WRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    line(&proc, AUDIT, "the failed login's audit line", |e| {
        e["fields"]["event"] == "login"
    })
    .await;
    let log = proc.log();
    assert!(json_events(&log, ACCESS).is_empty(), "{log}");
    assert!(!log.contains("rid-off"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_failures_logouts_resets_and_explain_calls_are_audited_with_user_reason_and_client()
{
    let upstream = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let proc = serve_with(dir.path(), &logging_config(upstream, false, 2)).await;
    let addr = proc.addr;
    let (admin_id, admin) = first_user_token(addr).await;
    let audit = |event: &'static str, outcome: &'static str, email: &'static str| {
        move |e: &Value| {
            let f = &e["fields"];
            f["event"] == event && f["outcome"] == outcome && f["email"] == email
        }
    };

    let ok = line(
        &proc,
        AUDIT,
        "the login",
        audit("login", "success", ADMIN_EMAIL),
    )
    .await;
    assert_eq!(ok["level"], "INFO");
    let ok = &ok["fields"];
    assert_eq!(ok["method"], "password", "{ok}");
    assert_eq!(ok["user_id"], admin_id, "{ok}");
    assert_eq!(ok["client_ip"], "127.0.0.1", "{ok}");
    assert!(ok.get("reason").is_none(), "{ok}");

    // Each reason class of a refused password login.
    let (member, _) = make_member(addr, &admin, "mallory").await;
    let member_id = member["id"].as_str().unwrap().to_owned();
    // From a client behind the trusted proxy: the audit line names the client.
    let body = json!({"email": "mallory@example.com", "password": WRONG_PASSWORD});
    let mut req = api_request(Method::POST, "/api/v2/users/login", Some(&body), None);
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
    let (status, _, _) = call_json(addr, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let suspend = format!("/api/v2/users/{member_id}/status/suspend");
    let (status, body, _) =
        call_json(addr, api_request(Method::PUT, &suspend, None, Some(&admin))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = login(addr, "mallory@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Two failures for an unknown account, then its throttle.
    for _ in 0..2 {
        let (status, _) = login(addr, "ghost@example.com", WRONG_PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login(addr, "ghost@example.com", WRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // A password typed into the email field is a validation failure, and not logged.
    let (status, _) = login(addr, WRONG_PASSWORD, WRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let reasons = |email: &str| {
        json_events(&proc.log(), AUDIT)
            .into_iter()
            .filter(|e| e["fields"]["event"] == "login" && e["fields"]["outcome"] == "failure")
            .filter(|e| e["fields"]["email"].as_str().unwrap_or("") == email)
            .map(|e| e["fields"]["reason"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually("the invalid login's audit line", || {
        let done = reasons("") == ["invalid"];
        async move { done }
    })
    .await;
    assert_eq!(
        reasons("mallory@example.com"),
        ["wrong_password", "suspended"]
    );
    let wrong = line(&proc, AUDIT, "the wrong password", |e| {
        e["fields"]["reason"] == "wrong_password"
    })
    .await;
    assert_eq!(wrong["fields"]["client_ip"], "198.51.100.7", "{wrong}");
    assert_eq!(wrong["fields"]["method"], "password", "{wrong}");
    assert_eq!(
        reasons("ghost@example.com"),
        ["unknown_user", "unknown_user", "rate_limited"]
    );

    // An owner's explain call names its caller and what was asked, never the token.
    let question = json!({
        "method": "GET", "path": format!("/app/x?x={QUERY_SECRET}"), "token": admin,
    });
    let (status, body, _) = call_json(
        addr,
        api_request(
            Method::POST,
            "/api/v2/portcullis/explain",
            Some(&question),
            Some(&admin),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let explain = line(&proc, AUDIT, "the explain call", |e| {
        e["fields"]["event"] == "explain"
    })
    .await;
    let f = &explain["fields"];
    assert_eq!(f["outcome"], "success", "{explain}");
    assert_eq!(f["actor_id"], admin_id, "{explain}");
    assert_eq!(f["request_path"], "/app/x", "{explain}");
    assert_eq!(f["with_token"], true, "{explain}");
    assert_eq!(f["client_ip"], "127.0.0.1", "{explain}");

    // A logout names the user whose session ended.
    let (status, body, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users/logout", None, Some(&admin)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = line(
        &proc,
        AUDIT,
        "the logout",
        audit("logout", "success", ADMIN_EMAIL),
    )
    .await;
    assert_eq!(out["fields"]["user_id"], admin_id, "{out}");
    assert_eq!(out["fields"]["client_ip"], "127.0.0.1", "{out}");

    // A password reset with a wrong code names the email tried.
    let change = json!({
        "email": "ghost2@example.com", "one_time_passcode": "12345678",
        "password": "a much longer new passphrase",
    });
    let (status, body, _) = call_json(
        addr,
        api_request(
            Method::POST,
            "/api/v2/users/otp/change-password",
            Some(&change),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let reset = line(
        &proc,
        AUDIT,
        "the failed reset",
        audit("password_reset", "failure", "ghost2@example.com"),
    )
    .await;
    assert_eq!(reset["fields"]["reason"], "bad_code", "{reset}");

    let log = proc.log();
    let token_secret = admin.split_once('-').expect("id-secret").1;
    for secret in [
        PASSWORD,
        WRONG_PASSWORD,
        "12345678",
        "a much longer new passphrase",
        token_secret,
        QUERY_SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
