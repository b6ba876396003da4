//! The per-phase timeouts of docs/behaviour.md's table that no other test reaches: the TLS handshake
//! (`server.tls_handshake_timeout`), the request head and the keep-alive wait for the next
//! one (`server.header_read_timeout`), and the upstream connect (`upstream.connect_timeout`).
//! (The idle timers are in `idle`, the API body in `abuse::slow_bodies`, the upstream response
//! in `request_errors`, the drain at shutdown in `shutdown`.)
//!
//! Each is set to 300 ms, and the others are left far longer than [`BOUND`], so only the one
//! under test can end the phase. What is asserted: it ends, and no sooner than its timeout
//! after an instant taken before the phase began (a timer never fires early, and a slow
//! machine only makes it later); how much later is not asserted.

use std::time::Duration;

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::common::*;

/// The timeout under test.
const TIMEOUT: Duration = Duration::from_millis(300);

/// Fails the test unless the server closes `stream` within [`BOUND`], no sooner than
/// [`TIMEOUT`] after `since`.
async fn assert_closed_after_the_timeout(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    since: Instant,
    what: &str,
) {
    assert_closed_after(stream, since, TIMEOUT, BOUND, what).await;
}

/// Portcullis in front of `upstream` with `header_read_timeout` = [`TIMEOUT`].
async fn with_header_timeout(upstream: std::net::SocketAddr) -> Sidecar {
    let server = format!("header_read_timeout = \"{}ms\"", TIMEOUT.as_millis());
    Sidecar::start(&config(&http_url(upstream), &server, "")).await
}

#[tokio::test]
async fn a_tls_handshake_that_does_not_complete_is_cut_at_the_handshake_timeout() {
    let echo = start_echo().await;
    let server =
        "tls_handshake_timeout = \"300ms\"\n[server.tls]\ncert = \"a.pem\"\nkey = \"a.key\"";
    let sidecar = Sidecar::start_in(&config(&http_url(echo), server, ""), &cert_file("")).await;

    // A client that connects and never says hello.
    let connecting = Instant::now();
    let mut silent = TcpStream::connect(sidecar.addr).await.unwrap();
    assert_closed_after_the_timeout(&mut silent, connecting, "a silent TLS client").await;
    let text = sidecar.metrics().await;
    assert_eq!(
        metric(
            &text,
            r#"portcullis_tls_handshakes_total{result="timeout"}"#
        ),
        1.0,
        "{text}"
    );

    // The listener goes on: a real handshake works.
    let tls = tls_connect(sidecar.addr, &[b"http/1.1"]).await;
    assert!(tls.get_ref().1.peer_certificates().is_some());
}

#[tokio::test]
async fn a_request_head_that_does_not_complete_is_cut_at_the_header_read_timeout() {
    let echo = start_echo().await;
    let sidecar = with_header_timeout(echo).await;

    // Half a head, then nothing (the idle timeout, 60 s, is far away).
    let connecting = Instant::now();
    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    assert_closed_after_the_timeout(&mut stream, connecting, "half a request head").await;
}

#[tokio::test]
async fn a_kept_alive_connection_waits_for_its_next_request_no_longer_than_the_header_read_timeout()
{
    let echo = start_echo().await;
    let sidecar = with_header_timeout(echo).await;

    // The wait for the next head starts after the response, so after `sending`.
    let (mut stream, sending) = kept_alive_after_one_request(sidecar.addr).await;
    assert_closed_after_the_timeout(&mut stream, sending, "a kept-alive wait").await;
}

/// A listener whose accept queue is full, so that the kernel drops further connection
/// attempts (SYNs) instead of completing them: a connect to it hangs. Returns its address and
/// what keeps it full.
async fn unanswering_listener() -> (
    std::net::SocketAddr,
    Vec<TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Connect until a connect does not complete: the queue is full.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connecting to a listener that does not accept: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (addr, queued, listener)
}

#[tokio::test]
async fn an_upstream_that_does_not_complete_the_connect_is_answered_504_at_the_connect_timeout() {
    let (upstream, _queued, _listener) = unanswering_listener().await;
    // The response timeout (which also covers connecting) is far longer: only the connect
    // timeout can answer within the test's bound.
    let sidecar = Sidecar::start(&config(
        &http_url(upstream),
        "",
        "connect_timeout = \"300ms\"\nresponse_timeout = \"1h\"",
    ))
    .await;

    let sending = Instant::now();
    let resp = send(sidecar.addr, get("app.test", "/")).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_not_sooner(sending, TIMEOUT, "the connect");
    let body = body_json(resp).await;
    assert_eq!(body["message"], "Gateway timeout.", "{body}");
}
