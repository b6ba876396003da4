//! WebSocket client

use super::*;

/// Opens a WebSocket to `ws://app.test/socket` through the Portcullis at `addr` (tunnelled to
/// its upstream), asserting the `101`.
pub async fn websocket(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = bounded(
        "websocket handshake",
        tokio_tungstenite::client_async("ws://app.test/socket", tcp),
    )
    .await
    .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}
