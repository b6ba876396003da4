//! Status codes a client can rely on (DESIGN §3.5), over real sockets: bad or missing `Host`,
//! oversized heads, refused methods, and a dead or silent upstream.

use std::sync::atomic::Ordering;

use http::Request;
use tokio::net::TcpListener;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;

/// A Coder-shaped error body: a JSON object with a non-empty `message`.
fn assert_message_body(resp: &RawResponse) -> serde_json::Value {
    let body = resp.json();
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {body}"
    );
    body
}

#[tokio::test]
async fn http11_request_without_host_is_answered_400() {
    let (echo, reached) = counting_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let resp = raw(sidecar.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;

    assert_eq!(resp.status, 400, "{resp:?}");
    assert_message_body(&resp);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn request_with_two_host_headers_is_answered_400() {
    let (echo, reached) = counting_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    for hosts in [
        "Host: a.test\r\nHost: b.test\r\n",
        "Host: a.test\r\nHost: a.test\r\n",
    ] {
        let req = format!("GET / HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let resp = raw(sidecar.addr, req.as_bytes()).await;
        assert_eq!(resp.status, 400, "{hosts:?}: {resp:?}");
        assert_message_body(&resp);
    }
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn http10_request_without_host_is_forwarded() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let resp = raw(sidecar.addr, b"GET /old-client?v=1 HTTP/1.0\r\n\r\n").await;

    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = resp.json();
    assert_eq!(seen["path"], "/old-client");
    assert_eq!(seen["query"], "v=1");
    // The upstream is spoken to in HTTP/1.1, which requires a Host: it gets its own.
    assert_eq!(seen_header(&seen, "host"), vec![echo.to_string()]);
}

#[tokio::test]
async fn http2_request_headers_over_64_kib_are_answered_431() {
    let (echo, reached) = counting_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let mut client = h2(TcpStream::connect(sidecar.addr).await.unwrap()).await;
    let req = Request::builder()
        .uri("http://app.test/")
        .header("x-big", "a".repeat(70 * 1024))
        .body(empty())
        .unwrap();
    let resp = bounded("h2 response", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert!(body_string(resp).await.contains("\"message\""));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn request_headers_over_64_kib_are_answered_431() {
    let (echo, reached) = counting_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let big = "a".repeat(70 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n");
    let resp = raw(sidecar.addr, req.as_bytes()).await;

    assert_eq!(resp.status, 431, "{:?}", resp.headers);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

/// The other side of the limit: a head just under 64 KiB is forwarded.
#[tokio::test]
async fn request_headers_under_64_kib_are_forwarded() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let value = "a".repeat(48 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {value}\r\n\r\n");
    let resp = raw(sidecar.addr, req.as_bytes()).await;

    assert_eq!(resp.status, 200, "{:?}", resp.headers);
    assert_eq!(seen_header(&resp.json(), "x-big"), [value]);
}

#[tokio::test]
async fn trace_and_connect_are_answered_405_and_never_forwarded() {
    let (echo, reached) = counting_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    for req in [
        "TRACE / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nConnection: close\r\n\r\n",
    ] {
        let resp = raw(sidecar.addr, req.as_bytes()).await;
        assert_eq!(resp.status, 405, "{req:?}: {resp:?}");
        assert_message_body(&resp);
    }
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_upstream_is_answered_502_with_message_and_detail() {
    let sidecar = Sidecar::start(&config(&http_url(dead_port()), "", "")).await;

    let resp = raw(
        sidecar.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(resp.status, 502, "{resp:?}");
    let body = assert_message_body(&resp);
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail in {body}"
    );
}

/// The response timeout starts when the request has been sent: an upload slower than the
/// timeout to a healthy upstream is not a 504.
#[tokio::test]
async fn slow_upload_is_not_counted_against_the_response_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(
        &http_url(echo),
        "",
        r#"response_timeout = "300ms""#,
    ))
    .await;

    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 8\r\n\r\n")
        .await
        .unwrap();
    for part in [b"abcd", b"efgh"] {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        stream.write_all(part).await.unwrap();
    }
    let resp = bounded("the response", read_response(&mut stream)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["body_bytes"], 8);
}

/// `pool_max_idle = 0` turns pooling off: every request still gets its answer, each over a
/// connection of its own to the upstream. With pooling on (the default), the same requests
/// one after another share one connection, so the count tells the two apart.
#[tokio::test]
async fn pooling_turned_off_opens_an_upstream_connection_per_request() {
    for (upstream_extra, connections) in [("pool_max_idle = 0", 3), ("", 1)] {
        let (upstream, accepted) = serve_counting_connections(portcullis::http::echo::handle).await;
        let sidecar = Sidecar::start(&config(&http_url(upstream), "", upstream_extra)).await;
        for _ in 0..3 {
            let resp = send(sidecar.addr, get("app.test", "/")).await;
            assert_eq!(resp.status(), 200);
            // The whole body read: a pooled connection is back in the pool before its end.
            body_string(resp).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            connections,
            "upstream connections for 3 requests with {upstream_extra:?}"
        );
    }
}

#[tokio::test]
async fn upstream_that_never_answers_is_answered_504() {
    // Accepts connections and holds them open without reading or answering.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let sidecar = Sidecar::start(&config(
        &http_url(silent_addr),
        "",
        r#"response_timeout = "300ms""#,
    ))
    .await;

    let resp = raw(
        sidecar.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(resp.status, 504, "{resp:?}");
    let body = assert_message_body(&resp);
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail in {body}"
    );
}

/// Error answers are for the client, not a fingerprint: none names Portcullis's version.
#[tokio::test]
async fn error_responses_do_not_name_a_version() {
    let sidecar = Sidecar::start(&config(&http_url(dead_port()), "", "")).await;

    let resp = raw(
        sidecar.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(resp.status, 502);
    let version = env!("CARGO_PKG_VERSION");
    assert!(resp.header("server").is_empty(), "{resp:?}");
    assert!(
        !String::from_utf8_lossy(&resp.body).contains(version),
        "{resp:?}"
    );
}

/// An API body that trickles in is cut off at `server.header_read_timeout` with a 408 in
/// Coder's shape, instead of holding the connection and its handler for as long as the client
/// likes. (The default is 30 s; this test sets 1 s.)
#[tokio::test]
async fn an_api_body_that_does_not_arrive_in_time_is_a_408() {
    let echo = start_echo().await;
    let sidecar =
        Sidecar::start(&config(&http_url(echo), "header_read_timeout = \"1s\"", "")).await;
    // The head is whole; of the 100 bytes of body promised, one comes.
    let head = "POST /api/v2/users/login HTTP/1.1\r\nHost: portcullis.test\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let resp = raw(sidecar.addr, head.as_bytes()).await;
    assert_eq!(resp.status, 408);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).expect("a JSON body");
    assert_eq!(body["message"], "Request timeout.");
    sidecar.shutdown().await;
}
