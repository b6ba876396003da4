//! HTTP/1.1 client

use super::*;

/// A request for `path` with the given `Host` and no body.
pub fn get(host: &str, path: &str) -> Request<TestBody> {
    request(Method::GET, host, path, empty())
}

/// A request with a `Host` header and a body.
pub fn request(method: Method, host: &str, path: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .body(body)
        .unwrap()
}

/// Opens an HTTP/1.1 connection to `addr`.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// Sends one request on a new HTTP/1.1 connection and returns the response head (the body
/// streams).
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Response<Incoming> {
    let mut sender = h1(addr).await;
    bounded("waiting for a response", sender.send_request(req))
        .await
        .expect("response")
}
