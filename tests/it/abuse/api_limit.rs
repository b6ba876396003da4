//! `rate_limit.api_per_minute` (spec/coder-api.md §0.3): the routes Portcullis serves count
//! requests per user when the caller carries a valid credential, else per client, in the store
//! (so every replica shares the count); past the limit, Coder's `429`. And the login group's
//! client buckets: an IPv6 client is its /64.

use std::net::IpAddr;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::h1_from;
use crate::common::*;

/// `GET /api/v2/auth/scopes` on `sender`'s connection, with `token` if given.
async fn scopes(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    token: Option<&str>,
) -> (StatusCode, Value, http::HeaderMap) {
    send_on(
        sender,
        api_request(Method::GET, "/api/v2/auth/scopes", None, token),
    )
    .await
}

/// Sends `req` on `sender`'s connection: the status, the body as JSON (a JSON string when it
/// is not JSON), and the headers.
async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    req: Request<TestBody>,
) -> (StatusCode, Value, http::HeaderMap) {
    let resp = bounded("waiting for a response", sender.send_request(req))
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = body_string(resp).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// With the default limit (512 per minute), an anonymous client's 513th call in a minute is
/// `429` with Coder's message and a `Retry-After`, and another client is not affected.
async fn the_513th_api_call_in_a_minute_is_a_429(store_url: &str) {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let sidecar = Sidecar::start(&config_with_store(echo, store_url, &prefix, "", "")).await;
    let mut client = h1_from(sidecar.addr, ip("127.0.0.2")).await;
    for n in 1..=512 {
        let (status, body, _) = scopes(&mut client, None).await;
        assert_eq!(status, StatusCode::OK, "call {n}: {body}");
    }
    let (status, body, headers) = scopes(&mut client, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        body["message"],
        "You've been rate limited for sending more than 512 requests in 1m0s."
    );
    assert_eq!(headers["retry-after"], "60");
    let mut other = h1_from(sidecar.addr, ip("127.0.0.3")).await;
    let (status, body, _) = scopes(&mut other, None).await;
    assert_eq!(status, StatusCode::OK, "another client: {body}");
    sidecar.shutdown().await;
    delete_redis_keys(store_url, &prefix).await;
}
on_every_store!(the_513th_api_call_in_a_minute_is_a_429);

/// A caller with a valid session is counted as its user, wherever it calls from: five calls
/// from three addresses use up a limit of 5 (after which that user gets `429` from a fourth
/// address), while an anonymous caller at that fourth address still gets through.
#[tokio::test]
async fn an_authenticated_caller_is_counted_per_user_across_addresses() {
    let (sidecar, prefix) = on_redis("[rate_limit]\napi_per_minute = 5\n").await;
    // The set-up's calls (create the first user, log in) come from 127.0.0.1.
    let token = admin_token_after_first_user(sidecar.addr).await;
    for from in [
        "127.0.0.2",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.4",
    ] {
        let mut c = h1_from(sidecar.addr, ip(from)).await;
        let (status, body, _) = scopes(&mut c, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "from {from}: {body}");
    }
    let mut c = h1_from(sidecar.addr, ip("127.0.0.5")).await;
    let (status, body, _) = scopes(&mut c, Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body, _) = scopes(&mut c, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "anonymous at the same address: {body}"
    );
    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

/// A Portcullis on the shared Redis under a fresh key prefix, with `extra` TOML: it and the
/// prefix.
async fn on_redis(extra: &str) -> (Sidecar, String) {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let sidecar = Sidecar::start(&config_with_store(echo, REDIS, &prefix, "", extra)).await;
    (sidecar, prefix)
}

/// Creates the first user and logs in as them: the session token.
async fn admin_token_after_first_user(addr: std::net::SocketAddr) -> String {
    create_admin(addr).await;
    admin_token(addr).await
}

/// `api_per_minute = 0` turns the limit off; the routes the upstream serves are never counted
/// by Portcullis (they are the application's to limit).
#[tokio::test]
async fn the_api_limit_counts_only_portcullis_routes_and_can_be_turned_off() {
    let (sidecar, prefix) =
        on_redis("[rate_limit]\napi_per_minute = 2\n\n[policy]\ndefault = \"public\"\n").await;
    let mut c = h1_from(sidecar.addr, ip("127.0.0.2")).await;
    for _ in 0..5 {
        let req = api_request(Method::GET, "/api/v2/workspaces", None, None);
        let (status, body, _) = send_on(&mut c, req).await;
        assert_eq!(status, StatusCode::OK, "a proxied API route: {body}");
    }
    for _ in 0..2 {
        assert_eq!(scopes(&mut c, None).await.0, StatusCode::OK);
    }
    assert_eq!(scopes(&mut c, None).await.0, StatusCode::TOO_MANY_REQUESTS);
    sidecar.shutdown().await;

    delete_redis_keys(REDIS, &prefix).await;

    let (off, prefix) = on_redis("[rate_limit]\napi_per_minute = 0\n").await;
    let mut c = h1_from(off.addr, ip("127.0.0.2")).await;
    for _ in 0..5 {
        assert_eq!(scopes(&mut c, None).await.0, StatusCode::OK);
    }
    off.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

/// Login-group limits count an IPv6 client by its /64 (one subscriber's network): two
/// addresses of one /64, named by a trusted proxy in `X-Forwarded-For`, share one bucket of
/// `login_per_minute`, and an address of the next /64 has its own.
#[tokio::test]
async fn ipv6_clients_of_one_64_share_a_login_bucket() {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let extra = "[rate_limit]\nlogin_per_minute = 2\n";
    let toml = config_with_store(echo, REDIS, &prefix, "", extra).replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    let sidecar = Sidecar::start(&toml).await;
    let login_from = |client: &'static str| {
        let addr = sidecar.addr;
        async move {
            let body = json!({"email": "nobody@example.com", "password": "wrong"});
            let req = Request::builder()
                .method(Method::POST)
                .uri("/api/v2/users/login")
                .header("host", "app.test")
                .header("content-type", "application/json")
                .header("x-forwarded-for", client)
                .body(full(body.to_string()))
                .unwrap();
            call_json(addr, req).await.0
        }
    };
    assert_eq!(
        login_from("2001:db8:1:2::1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from("2001:db8:1:2:ffff::9").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from("[2001:db8:1:2::abcd]:51234").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from("2001:db8:1:3::1").await,
        StatusCode::UNAUTHORIZED
    );
    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

/// A request the store cannot count is refused `503`: never let through uncounted, and never a
/// `429` the client did not earn.
#[tokio::test]
async fn an_api_call_the_store_cannot_count_is_a_503() {
    let port = free_port();
    let mut redis = RedisServer::start(port).await;
    let echo = start_echo().await;
    let url = format!("redis://127.0.0.1:{port}");
    let store = "command_timeout = \"300ms\"";
    let sidecar = Sidecar::start(&config_with_store(
        echo,
        &url,
        &random_key_prefix(),
        store,
        "",
    ))
    .await;
    let mut c = h1_from(sidecar.addr, ip("127.0.0.2")).await;
    assert_eq!(scopes(&mut c, None).await.0, StatusCode::OK);
    redis.kill();
    let (status, body, _) = scopes(&mut c, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["message"], "Service unavailable.", "{body}");
    sidecar.shutdown().await;
}
