//! Protocols end to end: HTTP/2 from clients (TLS with ALPN `h2`, and h2c prior knowledge on a
//! plain listener), WebSocket upgrades tunnelled to the upstream, and HTTP/2 to an h2c upstream
//! (`upstream.http2 = true`).

use std::convert::Infallible;
use std::path::PathBuf;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn certs_dir() -> PathBuf {
    cert_file("")
}

const TLS_A: &str = "[server.tls]\ncert = \"a.pem\"\nkey = \"a.key\"";

#[tokio::test]
async fn http2_over_tls_is_negotiated_with_alpn_and_forwarded() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start_in(&config(&http_url(echo), TLS_A, ""), &certs_dir()).await;
    let authority = format!("localhost:{}", sidecar.addr.port());

    let tls = tls_connect(sidecar.addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = h2(tls).await;

    let req = Request::builder()
        .uri(format!("https://{authority}/over/h2?q=1"))
        .body(empty())
        .unwrap();
    let resp = bounded("h2 GET", client.send_request(req)).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/over/h2");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), [authority.as_str()]);
    assert_eq!(seen_header(&seen, "host"), [authority.as_str()]);

    // A second stream on the same connection, with a body.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("https://{authority}/upload"))
        .body(full(vec![1u8; 300_000]))
        .unwrap();
    let resp = bounded("h2 POST", client.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body_bytes"], 300_000);
}

#[tokio::test]
async fn http11_over_tls_is_negotiated_with_alpn_and_forwarded() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start_in(&config(&http_url(echo), TLS_A, ""), &certs_dir()).await;

    let tls = tls_connect(sidecar.addr, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut client, conn) =
        hyper::client::conn::http1::handshake::<_, TestBody>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let resp = bounded(
        "GET over TLS",
        client.send_request(get("localhost", "/tls")),
    )
    .await
    .unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;
    assert_eq!(seen["path"], "/tls");
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_on_the_plain_listener() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let tcp = TcpStream::connect(sidecar.addr).await.unwrap();
    let mut client = h2(tcp).await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("http://app.test/h2c?plain=yes")
        .body(full("twelve bytes"))
        .unwrap();
    let resp = bounded("h2c POST", client.send_request(req)).await.unwrap();

    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/h2c");
    assert_eq!(seen["query"], "plain=yes");
    assert_eq!(seen["body_bytes"], 12);
    assert_eq!(seen_header(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_header(&seen, "x-forwarded-host"), ["app.test"]);
}

#[tokio::test]
async fn websocket_text_and_binary_frames_round_trip_through_the_proxy() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let mut ws = websocket(sidecar.addr).await;

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    for msg in [
        Message::text("hello through portcullis"),
        Message::binary(binary),
        Message::text("second text frame"),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let back = bounded("echoed frame", ws.next())
            .await
            .expect("socket open")
            .unwrap();
        assert_eq!(back, msg);
    }
    ws.close(None).await.unwrap();
}

/// The upstream reports the HTTP version it was spoken to with.
async fn versioned_echo(
    req: Request<Incoming>,
) -> Result<Response<portcullis::http::body::Body>, Infallible> {
    let version = format!("{:?}", req.version());
    let mut resp = portcullis::http::echo::handle(req).await?;
    resp.headers_mut()
        .insert("x-upstream-version", version.parse().unwrap());
    Ok(resp)
}

#[tokio::test]
async fn upstream_http2_speaks_prior_knowledge_to_an_h2c_only_upstream() {
    // This upstream speaks only HTTP/2: an HTTP/1.1 request would fail.
    let upstream = serve_h2_only(versioned_echo).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "http2 = true")).await;

    let resp = send(sidecar.addr, get("app.test", "/grpc.Service/Method")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
    let seen = body_json(resp).await;
    assert_eq!(seen["path"], "/grpc.Service/Method");

    let resp = send(
        sidecar.addr,
        request(Method::POST, "app.test", "/post", full(vec![9u8; 200_000])),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
    assert_eq!(body_json(resp).await["body_bytes"], 200_000);
}

/// An upstream that speaks both (like the echo upstream) is spoken to in HTTP/2, over one
/// connection shared by every request: the first requests, from several client connections at
/// once, make one connection between them.
#[tokio::test]
async fn upstream_http2_shares_one_connection_to_an_upstream_that_speaks_both() {
    let (upstream, accepted) = serve_counting_connections(versioned_echo).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "http2 = true")).await;

    let requests = (0..4).map(|i| {
        let addr = sidecar.addr;
        async move {
            let resp = send(addr, get("app.test", &format!("/at-once/{i}"))).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
            body_json(resp).await;
        }
    });
    futures_util::future::join_all(requests).await;

    let resp = send(sidecar.addr, get("app.test", "/via/h2c?a=b")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
    let seen = body_json(resp).await;
    assert_eq!(seen["path"], "/via/h2c");
    assert_eq!(seen["query"], "a=b");
    assert_eq!(seen_header(&seen, "x-forwarded-host"), ["app.test"]);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The default, for contrast: HTTP/1.1 to the same upstream.
#[tokio::test]
async fn upstream_http11_is_the_default() {
    let upstream = serve(versioned_echo).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "")).await;

    let resp = send(sidecar.addr, get("app.test", "/")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream-version"], "HTTP/1.1");
}
