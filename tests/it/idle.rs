//! The idle timer (`server.idle_timeout`): a connection with no request in flight and none
//! started is closed (EOF or reset, never just any read error), whatever bytes it moves, and
//! not before one idle timeout has passed without use; a request in flight is never cut,
//! however long it takes; an upgraded tunnel with no bytes moving is closed too, also not
//! before one idle timeout. (The upper bounds, 1.5 and 2 idle timeouts, are not asserted: on a
//! loaded machine a timer may fire late. [`CLOSE_BOUND`] only catches a timer that never fires.)

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Channel;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::*;

/// The idle timeout of these tests.
const IDLE: Duration = Duration::from_millis(300);

/// A config forwarding to `upstream` with `server.idle_timeout` = [`IDLE`].
fn idle_config(upstream: std::net::SocketAddr) -> String {
    config(
        &http_url(upstream),
        &format!("idle_timeout = \"{}ms\"", IDLE.as_millis()),
        "",
    )
}

/// Well under `header_read_timeout` (30 s), so that only the idle timer can pass these tests.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Fails the test unless the server closes `stream` (EOF or reset) within [`CLOSE_BOUND`], and
/// no sooner than [`IDLE`] after `since`, a moment at or before the connection's last use.
async fn assert_closed_when_idle(stream: &mut TcpStream, since: Instant, what: &str) {
    assert_closed_after(stream, since, IDLE, CLOSE_BOUND, what).await;
}

#[tokio::test]
async fn connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&idle_config(echo)).await;

    let connecting = Instant::now();
    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    assert_closed_when_idle(&mut stream, connecting, "a connection that sent nothing").await;
}

#[tokio::test]
async fn keep_alive_connection_is_closed_when_idle_after_its_response() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&idle_config(echo)).await;

    // The request ends, at the server, after `sending`.
    let (mut stream, sending) = kept_alive_after_one_request(sidecar.addr).await;
    assert_closed_when_idle(&mut stream, sending, "an idle keep-alive connection").await;
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
    let sidecar = Sidecar::start(&idle_config(upstream)).await;

    let resp = send(sidecar.addr, get("app.test", "/slow")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_string(resp).await, "one two three");
}

/// The same over HTTP/2, where the idle timer is the only guard against a silent connection.
#[tokio::test]
async fn h2_request_in_flight_longer_than_the_idle_timeout_is_not_cut() {
    let upstream = serve(slow_upstream).await;
    let sidecar = Sidecar::start(&idle_config(upstream)).await;

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

/// An HTTP/2 connection that only ever exchanges connection-level frames (SETTINGS, PING) is
/// idle: bytes without requests do not keep it open.
#[tokio::test]
async fn h2_connection_without_requests_is_closed_after_the_idle_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&idle_config(echo)).await;

    let connecting = Instant::now();
    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Keep sending PINGs faster than the idle timeout: they must not count as activity.
    let (mut read, mut write) = stream.into_split();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00pingping";
            if write.write_all(ping).await.is_err() {
                return;
            }
        }
    });
    let what = "an h2 connection with only PINGs";
    assert_closed_after(&mut read, connecting, IDLE, CLOSE_BOUND, what).await;
}

/// A WebSocket tunnel counts as an open connection while it lives, and one that moves no
/// bytes for the idle timeout is closed.
#[tokio::test]
async fn idle_websocket_tunnel_is_counted_then_closed() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&idle_config(echo)).await;

    // The tunnel starts, and its last byte moves, after this.
    let upgrading = Instant::now();
    let mut ws = websocket(sidecar.addr).await;
    eventually("the tunnel to be counted as an open connection", || async {
        metric(&sidecar.metrics().await, "portcullis_open_connections") >= 1.0
    })
    .await;
    let ended = async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
        loop {
            match ws.next().await {
                None
                | Some(Err(Error::ConnectionClosed))
                | Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => return,
                Some(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return
                }
                Some(Err(e)) => panic!("reading until the tunnel closes: {e}"),
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    };
    let what = "an idle websocket tunnel";
    let closed = tokio::time::timeout(CLOSE_BOUND, ended).await;
    assert!(closed.is_ok(), "{what}: still open after {CLOSE_BOUND:?}");
    assert_not_sooner(upgrading, IDLE, what);
    eventually("the tunnel to leave the open-connections gauge", || async {
        metric(&sidecar.metrics().await, "portcullis_open_connections") == 0.0
    })
    .await;
}
