//! The idle timer (`server.idle_timeout`): a connection with no request in flight and none
//! started is closed, whatever bytes it moves; a request in flight is never cut, however long
//! it takes; an upgraded tunnel with no bytes moving is closed too.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Channel;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

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

/// An HTTP/2 connection that only ever exchanges connection-level frames (SETTINGS, PING) is
/// idle: bytes without requests do not keep it open.
#[tokio::test]
async fn h2_connection_without_requests_is_closed_after_the_idle_timeout() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), IDLE, "")).await;

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
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(CLOSE_BOUND, closed).await.is_err() {
        panic!("an h2 connection with only PINGs: still open after {CLOSE_BOUND:?}");
    }
}

/// A WebSocket tunnel counts as an open connection while it lives, and one that moves no
/// bytes for the idle timeout is closed.
#[tokio::test]
async fn idle_websocket_tunnel_is_counted_then_closed() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), IDLE, "")).await;

    let mut ws = websocket(sidecar.addr).await;
    eventually("the tunnel to be counted as an open connection", || async {
        metric(&sidecar.metrics().await, "portcullis_open_connections") >= 1.0
    })
    .await;
    let ended = async {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    };
    if tokio::time::timeout(CLOSE_BOUND, ended).await.is_err() {
        panic!("an idle websocket tunnel: still open after {CLOSE_BOUND:?}");
    }
    eventually("the tunnel to leave the open-connections gauge", || async {
        metric(&sidecar.metrics().await, "portcullis_open_connections") == 0.0
    })
    .await;
}
