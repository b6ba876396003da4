//! HTTP/2 client

use super::*;

/// Starts an HTTP/2 connection over `io` (TLS with ALPN h2, or plain TCP for h2c).
pub async fn h2<IO>(io: IO) -> hyper::client::conn::http2::SendRequest<TestBody>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}
