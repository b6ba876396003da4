//! The connection limits of docs/behaviour.md's "Limits" section and the HTTP/2 keep-alive: the
//! HTTP/2 settings Portcullis announces (256 concurrent streams, the header list limit), its
//! PING every 30 s and the 20 s it waits for the answer, an upgrade refused `503` when every
//! connection permit is taken, and the accept loop surviving EMFILE (the real binary, with a
//! low open-files limit).

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::*;

/// The client connection preface and an empty SETTINGS frame (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// An empty SETTINGS frame with the ACK flag.
const SETTINGS_ACK: &[u8] = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

/// One HTTP/2 frame: its type, flags and payload; `None` once the server has closed.
async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    match io.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading a frame: {e}"),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// An h2c connection to `addr` with the handshake done both ways: the server's first
/// SETTINGS (as id → value pairs) and the stream, at the instant our last frame was written.
async fn h2c_handshake(addr: std::net::SocketAddr) -> (Vec<(u16, u32)>, TcpStream, Instant) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    let settings = bounded("the server's SETTINGS", async {
        loop {
            let (kind, flags, payload) = read_frame(&mut stream).await.expect("open");
            if kind == SETTINGS && flags & 1 == 0 {
                return payload
                    .chunks(6)
                    .map(|p| {
                        let id = u16::from_be_bytes([p[0], p[1]]);
                        (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
                    })
                    .collect::<Vec<_>>();
            }
        }
    })
    .await;
    stream.write_all(SETTINGS_ACK).await.unwrap();
    (settings, stream, Instant::now())
}

#[tokio::test]
async fn h2_announces_256_concurrent_streams_and_the_header_list_limit() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "max_header_bytes = 16384", "")).await;
    let (settings, _stream, _) = h2c_handshake(sidecar.addr).await;
    let setting = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    // SETTINGS_MAX_CONCURRENT_STREAMS.
    assert_eq!(setting(0x3), Some(256), "{settings:?}");
    // SETTINGS_MAX_HEADER_LIST_SIZE: four times max_header_bytes, above which the HTTP/2
    // layer resets a stream; between the two the router answers 431.
    assert_eq!(setting(0x6), Some(4 * 16384), "{settings:?}");
}

/// A silent HTTP/2 connection gets a PING 30 s after the last frame it sent (not sooner), and
/// is closed when the PING has gone unanswered for 20 s (not sooner). The idle timer is an
/// hour here, so only the keep-alive can close it. This test takes about 50 s.
#[tokio::test]
async fn an_unanswered_h2_ping_closes_the_connection() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "idle_timeout = \"1h\"", "")).await;
    let (_, mut stream, quiet_since) = h2c_handshake(sidecar.addr).await;

    let ping_bound = Duration::from_secs(30) + BOUND;
    let pinged = tokio::time::timeout(ping_bound, async {
        loop {
            let (kind, flags, _) = read_frame(&mut stream).await.expect("open until the PING");
            if kind == PING && flags & 1 == 0 {
                return Instant::now();
            }
        }
    })
    .await
    .expect("a PING within 30 s and the bound");
    let waited = pinged - quiet_since;
    assert!(waited >= Duration::from_secs(30), "PING after {waited:?}");

    let closed = tokio::time::timeout(Duration::from_secs(20) + BOUND, async {
        while let Some((kind, _, _)) = read_frame(&mut stream).await {
            assert!(
                matches!(kind, GOAWAY | PING),
                "frame type {kind} before the close"
            );
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "still open 20 s and the bound after an unanswered PING"
    );
    let unanswered = pinged.elapsed();
    assert!(
        unanswered >= Duration::from_secs(20),
        "closed {unanswered:?} after an unanswered PING"
    );
}

/// A WebSocket upgrade through Portcullis is a client connection of its own: with every
/// permit of `server.max_connections` taken (here the one permit, by the upgrading client's
/// own connection) it is refused `503`; with a permit free, it is tunnelled. (The accept loop
/// holds a permit while it waits for the next connection, so with the upgrading client's own
/// connection open, a tunnel needs a third: `max_connections = 2` refuses it too.)
#[tokio::test]
async fn an_upgrade_with_no_connection_permit_left_is_refused_503() {
    let echo = start_echo().await;
    let full = Sidecar::start(&config(&http_url(echo), "max_connections = 1", "")).await;
    let upgrade = b"GET /socket HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let resp = raw(full.addr, upgrade).await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.json()["detail"], "Too many open connections.");

    let room = Sidecar::start(&config(&http_url(echo), "max_connections = 3", "")).await;
    let resp = raw(room.addr, upgrade).await;
    assert_eq!(resp.status, 101, "{resp:?}");
}

/// The real binary, allowed few open files, accepts client connections until it runs out
/// (EMFILE); the accept loop logs it, waits, and goes on: once the clients leave, it serves
/// again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_stop_the_server() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(echo), "", "")).unwrap();
    let proc = spawn_serve_limited(&path, 64).await;

    // Hold connections until the server has said that accept failed.
    let mut held = Vec::new();
    bounded("accept to fail for want of file descriptors", async {
        while !proc.log().contains("accept failed") {
            if held.len() < 256 {
                if let Ok(stream) = TcpStream::connect(proc.addr).await {
                    held.push(stream);
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    assert!(proc.log().contains("Too many open files"), "{}", proc.log());
    drop(held);

    eventually("the server to answer again", || async {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(proc.addr)).await
        else {
            return false;
        };
        let _ = stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer));
        matches!(read.await, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
    })
    .await;
    let resp = send(proc.addr, get("app.test", "/after")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
