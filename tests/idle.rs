//! The idle timer (`server.idle_timeout`): a connection with nothing in flight and no bytes
//! moving is closed; a request in flight is never cut, however long it takes.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Channel;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

const IDLE: &str = "idle_timeout = \"300ms\"";

/// Well under `header_read_timeout` (30 s), so that only the idle timer can pass these tests.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Fails the test unless the server closes `stream` within [`CLOSE_BOUND`].
async fn assert_closed_by_server(stream: &mut TcpStream, what: &str) {
    if tokio::time::timeout(CLOSE_BOUND, closed_by_server(stream))
        .await
        .is_err()
    {
        panic!("{what}: still open after {CLOSE_BOUND:?}");
    }
}

/// Reads from `stream` until the server closes it; any bytes sent before are ignored.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), IDLE, "")).await;

    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    assert_closed_by_server(&mut stream, "a connection that sent nothing").await;
}

#[tokio::test]
async fn keep_alive_connection_is_closed_when_idle_after_its_response() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), IDLE, "")).await;

    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let resp = bounded("the response", read_response(&mut stream)).await;
    assert_eq!(resp.status, 200);
    assert_closed_by_server(&mut stream, "an idle keep-alive connection").await;
}

/// Waits about a second (over three idle timeouts) before the response head, then trickles
/// the body with gaps longer than the idle timeout.
async fn slow_upstream(_req: Request<Incoming>) -> Result<Response<Channel<Bytes>>, Infallible> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut tx, body) = Channel::new(1);
    tokio::spawn(async move {
        for part in ["one ", "two ", "three"] {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if tx.send_data(Bytes::from(part)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::new(body))
}

#[tokio::test]
async fn request_in_flight_longer_than_the_idle_timeout_is_not_cut() {
    let upstream = serve(slow_upstream).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), IDLE, "")).await;

    let resp = send(sidecar.addr, get("app.test", "/slow")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_string(resp).await, "one two three");
}

/// The same over HTTP/2, where the idle timer is the only guard against a silent connection.
#[tokio::test]
async fn h2_request_in_flight_longer_than_the_idle_timeout_is_not_cut() {
    let upstream = serve(slow_upstream).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), IDLE, "")).await;

    let mut client = h2(TcpStream::connect(sidecar.addr).await.unwrap()).await;
    let req = Request::builder()
        .uri("http://app.test/slow")
        .body(empty())
        .unwrap();
    let resp = bounded("h2 response", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body_string(resp).await, "one two three");
}
