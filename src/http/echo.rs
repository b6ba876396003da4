//! `portcullis echo`: a small upstream that answers every request with a JSON description of
//! what it received — `{"method", "path", "query", "headers": [[name, value], ...],
//! "body_bytes", "body_sha256", "body"}`, headers in the order received with duplicates kept —
//! and completes WebSocket upgrades by echoing every frame. Operators put it behind Portcullis
//! to see what is forwarded. Request bodies are hashed as they stream; only the first
//! [`MAX_BODY_TEXT`] bytes are held, and `body` is that text when the whole body is UTF-8 and
//! no longer (else `null`).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::http::body::Body;
use crate::http::error::json_response;

/// The longest body echo reports as text.
pub const MAX_BODY_TEXT: usize = 64 * 1024;

#[derive(Serialize)]
struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, String)>,
    body_bytes: u64,
    /// Hex SHA-256 of the whole body.
    body_sha256: String,
    /// The body as text: `None` when longer than [`MAX_BODY_TEXT`] or not UTF-8.
    body: Option<String>,
}

/// Serves echo on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(error) => {
                    tracing::warn!(%error, "echo: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let conn =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handle));
            if let Err(error) = conn.await {
                tracing::debug!(%error, "echo: connection error");
            }
        });
    }
}

/// Answers one request (also usable in-process, for tests).
pub async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(key) = websocket_key(&req) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => echo_frames(upgraded).await,
                Err(error) => tracing::debug!(%error, "echo: websocket upgrade failed"),
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        return Ok(resp);
    }

    let (parts, mut body) = req.into_parts();
    let mut body_bytes = 0u64;
    let mut hash = Sha256::new();
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
                    hash.update(data);
                    let room = (MAX_BODY_TEXT + 1).saturating_sub(text.len());
                    text.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "echo: request body ended early");
                break;
            }
        }
    }
    let seen = Seen {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_bytes,
        body_sha256: hex::encode(hash.finalize()),
        body: (text.len() <= MAX_BODY_TEXT)
            .then(|| String::from_utf8(text).ok())
            .flatten(),
    };
    Ok(json_response(StatusCode::OK, &seen))
}

fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get(UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    Some(
        req.headers()
            .get(SEC_WEBSOCKET_KEY)?
            .to_str()
            .ok()?
            .to_owned(),
    )
}

async fn echo_frames(upgraded: hyper::upgrade::Upgraded) {
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m) if m.is_text() || m.is_binary() => {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            Ok(m) if m.is_close() => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
