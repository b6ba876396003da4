//! Slow bodies: an API body must arrive whole within `server.header_read_timeout`; a proxied
//! upload may take as long as it likes while bytes keep coming, but one that sends nothing for
//! `server.idle_timeout` is answered `408` and its connection closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Sends `head` on a new connection, then one byte of body every `every` (for at most `bytes`
/// bytes) until the server answers; returns the answer and how many bytes were sent.
async fn trickle(
    addr: SocketAddr,
    head: &str,
    every: Duration,
    bytes: usize,
) -> (RawResponse, usize) {
    let mut stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    let answered = loop {
        tokio::select! {
            ready = stream.readable() => { ready.unwrap(); break true; }
            () = tokio::time::sleep(every), if sent < bytes => {
                if stream.write_all(b"x").await.is_err() {
                    break false;
                }
                sent += 1;
            }
        }
    };
    assert!(
        answered || sent > 0,
        "the connection failed before any answer"
    );
    let resp = bounded("reading the answer", read_response(&mut stream)).await;
    (resp, sent)
}

/// Whether the server closes `stream` (after its answer) within the test bound.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    bounded("waiting for the close", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
}

fn login_head(len: usize) -> String {
    format!(
        "POST /api/v2/users/login HTTP/1.1\r\nHost: portcullis.test\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Four clients trickling API bodies (a byte every 200 ms) on a listener capped at four
/// connections do not keep a fifth client out: each is answered `408` once
/// `header_read_timeout` (1 s here) has passed, its connection is closed, and the fifth client
/// gets its answer.
#[tokio::test]
async fn four_trickling_api_clients_do_not_starve_a_fifth() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(
        &http_url(echo),
        "max_connections = 4\nheader_read_timeout = \"1s\"",
        "",
    ))
    .await;
    let addr = sidecar.addr;
    let trickles: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                trickle(addr, &login_head(1000), Duration::from_millis(200), 1000).await
            })
        })
        .collect();
    // Let the four take every connection slot first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fifth = raw(
        addr,
        b"GET /api/v2/auth/scopes HTTP/1.1\r\nHost: portcullis.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(fifth.status, 200, "{fifth:?}");
    for t in trickles {
        let (resp, sent) = t.await.unwrap();
        assert_eq!(resp.status, 408, "{resp:?}");
        assert_eq!(resp.json()["message"], "Request timeout.");
        assert_eq!(resp.header("connection"), ["close"], "{resp:?}");
        assert!(sent < 1000, "the whole body went through: {sent} bytes");
    }
    sidecar.shutdown().await;
}

/// A proxied upload that stops sending is answered `408 Request timeout.` after
/// `server.idle_timeout` without a byte, with `Connection: close`, and the connection closes
/// (the upstream, which got the head and the first bytes, sees its request cut off).
#[tokio::test]
async fn a_proxied_upload_that_stops_sending_is_a_408_after_the_idle_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "idle_timeout = \"1s\"", "")).await;
    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nten bytes.",
        )
        .await
        .unwrap();
    let resp = bounded("waiting for the 408", read_response(&mut stream)).await;
    assert_eq!(resp.status, 408, "{resp:?}");
    let body = resp.json();
    assert_eq!(body["message"], "Request timeout.");
    assert_eq!(
        body["detail"],
        "No byte of the request body arrived for server.idle_timeout."
    );
    assert_eq!(resp.header("connection"), ["close"], "{resp:?}");
    assert!(closes(&mut stream).await);
    sidecar.shutdown().await;
}

/// The idle timeout is about silence, not length: an upload sending a byte every 250 ms for
/// about three seconds (three idle timeouts of 1 s) goes through whole.
#[tokio::test]
async fn a_slow_but_steady_proxied_upload_goes_through() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "idle_timeout = \"1s\"", "")).await;
    let head = "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 12\r\n\
                Connection: close\r\n\r\n";
    let (resp, sent) = trickle(sidecar.addr, head, Duration::from_millis(250), 12).await;
    assert_eq!(sent, 12);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["body_bytes"], 12, "{}", resp.json());
    sidecar.shutdown().await;
}
