//! Plain forwarding over real sockets: what the upstream receives for GET and POST, and the
//! `X-Forwarded-*` headers set from what Portcullis saw (believed from trusted proxies only).

use http::Method;

use crate::common::*;

#[tokio::test]
async fn get_reaches_the_upstream_with_its_method_path_and_query() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let resp = send(
        sidecar.addr,
        get("app.example.test:8080", "/some/path?x=1&y=two"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;

    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/some/path");
    assert_eq!(seen["query"], "x=1&y=two");
    assert_eq!(seen["body_bytes"], 0);
    assert_eq!(seen_header(&seen, "host"), ["app.example.test:8080"]);
}

#[tokio::test]
async fn post_body_reaches_the_upstream_whole() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let body = vec![7u8; 100_000];
    let resp = send(
        sidecar.addr,
        request(Method::POST, "app.test", "/submit?draft=0", full(body)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;

    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/submit");
    assert_eq!(seen["query"], "draft=0");
    assert_eq!(seen["body_bytes"], 100_000);
}

#[tokio::test]
async fn forwarded_headers_are_set_from_what_portcullis_saw() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let seen = body_json(send(sidecar.addr, get("app.example.test", "/")).await).await;

    assert_eq!(seen_header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), ["app.example.test"]);
}

/// A client-sent chain from a peer outside `server.trusted_proxies` is thrown away and replaced.
#[tokio::test]
async fn client_forwarded_headers_are_dropped_from_an_untrusted_peer() {
    let echo = start_echo().await;
    // 127.0.0.1 (the test client) is not in this list.
    let sidecar = Sidecar::start(&config(
        &http_url(echo),
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
        "",
    ))
    .await;

    let mut req = get("app.example.test", "/");
    let h = req.headers_mut();
    h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "evil.example".parse().unwrap());
    h.insert("forwarded", "for=203.0.113.9;proto=https".parse().unwrap());
    h.insert("x-real-ip", "203.0.113.9".parse().unwrap());
    let seen = body_json(send(sidecar.addr, req).await).await;

    assert_eq!(seen_header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), ["app.example.test"]);
    assert!(seen_header(&seen, "forwarded").is_empty(), "{seen}");
    assert!(seen_header(&seen, "x-real-ip").is_empty(), "{seen}");
}

/// From a trusted proxy the chain is kept and the peer is appended to `X-Forwarded-For`.
#[tokio::test]
async fn client_forwarded_headers_are_kept_from_a_trusted_peer() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(
        &http_url(echo),
        r#"trusted_proxies = ["127.0.0.1/32"]"#,
        "",
    ))
    .await;

    let mut req = get("internal.test", "/");
    let h = req.headers_mut();
    h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
    let seen = body_json(send(sidecar.addr, req).await).await;

    assert_eq!(
        seen_header(&seen, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), ["app.example.com"]);
}
