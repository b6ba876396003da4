//! WebSocket client

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

/// Opens a WebSocket to `ws://app.test/socket` through the Portcullis at `addr` (tunnelled to
/// its upstream), asserting the `101`.
pub async fn websocket(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let req = "ws://app.test/socket".into_client_request().unwrap();
    open_websocket(addr, req).await
}

/// Opens a WebSocket to `ws://app.test{path}` through the Portcullis at `addr` with `token` in
/// `Coder-Session-Token`, asserting the `101`.
pub async fn websocket_as(
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut req = format!("ws://app.test{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("coder-session-token", token.parse().unwrap());
    open_websocket(addr, req).await
}

async fn open_websocket(
    addr: SocketAddr,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = bounded(
        "websocket handshake",
        tokio_tungstenite::client_async(req, tcp),
    )
    .await
    .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}
