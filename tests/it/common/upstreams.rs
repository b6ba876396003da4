//! upstreams

use super::*;

/// Serves `portcullis echo` on `127.0.0.1:0` in this process (hyper-util's auto builder:
/// HTTP/1.1, h2c prior knowledge, WebSocket upgrades).
pub async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portcullis::http::echo::run(
        listener,
        std::future::pending(),
    ));
    addr
}

/// Serves `handler` on `127.0.0.1:0` with hyper-util's auto builder (HTTP/1.1 and h2c).
pub async fn serve<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(auto::Builder::new(TokioExecutor::new()), handler, None).await
}

/// Serves `handler` as [`serve`] does, and counts the connections accepted.
pub async fn serve_counting_connections<F, Fut, B>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let accepted = Arc::new(AtomicUsize::new(0));
    let builder = auto::Builder::new(TokioExecutor::new());
    let addr = serve_with(builder, handler, Some(accepted.clone())).await;
    (addr, accepted)
}

/// Serves `handler` on `127.0.0.1:0` speaking HTTP/2 only (prior knowledge): a client that
/// speaks HTTP/1.1 to it fails.
pub async fn serve_h2_only<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(
        auto::Builder::new(TokioExecutor::new()).http2_only(),
        handler,
        None,
    )
    .await
}

async fn serve_with<F, Fut, B>(
    builder: auto::Builder<TokioExecutor>,
    handler: F,
    accepted: Option<Arc<AtomicUsize>>,
) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if let Some(accepted) = &accepted {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
            let (handler, builder) = (handler.clone(), builder.clone());
            tokio::spawn(async move {
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handler))
                    .await;
            });
        }
    });
    addr
}

/// An address on which nothing listens (bound, then released). All the tests share this
/// process, so no two calls return the same port: one test's dead port or [`free_port`] is
/// never handed to another test by this function. Nor is a port of the shared Sentinel set or
/// Cluster ([`RESERVED_PORTS`]), even while they are down.
pub fn dead_port() -> SocketAddr {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        if RESERVED_PORTS.contains(&addr.port()) {
            continue;
        }
        if HANDED_OUT.lock().unwrap().insert(addr.port()) {
            return addr;
        }
    }
}

/// The echo upstream that also counts the requests reaching it.
pub async fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = serve(move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        portcullis::http::echo::handle(req)
    })
    .await;
    (addr, hits)
}
