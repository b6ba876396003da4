//! Shared helpers for the black-box tests: Portcullis in-process on `127.0.0.1:0`, the real
//! binary as a child process, upstreams served in-process by hyper (the echo upstream and
//! purpose-built ones), HTTP/1.1, HTTP/2 and raw-socket clients, and the test TLS material in
//! `tests/certs/` (see `gen.sh` there).
//!
//! Nothing here uses a fixed port. Every wait is bounded by [`BOUND`] so that a hung test fails
//! instead of hanging CI; no assertion is made about how fast anything is.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

pub mod world;

/// The longest any single step of a test may take before the test is failed as hung.
pub const BOUND: Duration = Duration::from_secs(30);

/// 256 MiB, the size of the streamed transfers.
pub const BIG: u64 = 256 * 1024 * 1024;

/// The request and response body type the test clients and upstreams use.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// Fails the test with `what` if `fut` does not finish within [`BOUND`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {BOUND:?}: {what}"),
    }
}

/// Polls `check` every 50 ms until it holds; fails the test after [`BOUND`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    bounded(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

// === config ===

/// A config for an in-process Portcullis forwarding to `upstream` (a URL), with extra lines in
/// `[server]` and `[upstream]`. `server` may end with a `[server.tls]` table.
pub fn config(upstream: &str, server: &str, upstream_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\n\
         [upstream]\nurl = \"{upstream}\"\n{upstream_extra}\n\n\
         [policy]\ndefault = \"public\"\n"
    )
}

/// `http://ADDR`.
pub fn http_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

// === in-process Portcullis ===

/// A Portcullis running in this process, serving on `127.0.0.1:0`.
pub struct Sidecar {
    /// The main listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The running app.
    pub app: Arc<portcullis::App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sidecar {
    /// Starts Portcullis with the config `toml` (relative paths resolve against the current
    /// directory).
    pub async fn start(toml: &str) -> Sidecar {
        Sidecar::start_in(toml, Path::new(".")).await
    }

    /// Starts Portcullis with the config `toml`, resolving relative paths against `base`.
    pub async fn start_in(toml: &str, base: &Path) -> Sidecar {
        let config = portcullis::Config::from_toml(toml, Vec::<(String, String)>::new(), base)
            .unwrap_or_else(|e| panic!("test config does not load: {e}\n{toml}"));
        let app = portcullis::App::new(config).unwrap_or_else(|e| panic!("App::new: {e}"));
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = main.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portcullis::server::run(
            app.clone(),
            portcullis::server::Listeners { main, admin },
            async move {
                let _ = stopped.await;
            },
        ));
        Sidecar {
            addr,
            admin: admin_addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Tells the server to shut down and waits until `run` returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            bounded("server::run to return after shutdown", task)
                .await
                .unwrap();
        }
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = send(self.admin, get("admin.test", "/metrics")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        body_string(resp).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

// === upstreams ===

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
    serve_with(auto::Builder::new(TokioExecutor::new()), handler).await
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
    )
    .await
}

async fn serve_with<F, Fut, B>(builder: auto::Builder<TokioExecutor>, handler: F) -> SocketAddr
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
/// never handed to another test by this function.
pub fn dead_port() -> SocketAddr {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
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

// === bodies ===

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body of `total` bytes produced lazily in 64 KiB chunks (one shared buffer), so that a
/// 256 MiB transfer never holds more than one chunk in memory.
pub fn pattern(total: u64) -> TestBody {
    Pattern {
        remaining: total,
        chunk: Bytes::from(vec![0x5a; 64 * 1024]),
    }
    .boxed()
}

struct Pattern {
    remaining: u64,
    chunk: Bytes,
}

impl http_body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads a body to its end, counting bytes without keeping them.
pub async fn count_body(mut body: Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("response body frame");
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    n
}

/// The whole body as text.
pub async fn body_string(resp: Response<Incoming>) -> String {
    let bytes = bounded("reading a response body", resp.into_body().collect())
        .await
        .expect("response body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// The whole body as JSON.
pub async fn body_json(resp: Response<Incoming>) -> Value {
    let text = body_string(resp).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

// === what the echo upstream saw ===

/// Every value of header `name` (any case) in an echo report, in order.
pub fn seen_header(seen: &Value, name: &str) -> Vec<String> {
    seen["headers"]
        .as_array()
        .expect("echo report has headers")
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// Every header name in an echo report, lowercase.
pub fn seen_header_names(seen: &Value) -> Vec<String> {
    seen["headers"]
        .as_array()
        .expect("echo report has headers")
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_ascii_lowercase())
        .collect()
}

// === HTTP/1.1 client ===

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

// === HTTP/2 client ===

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

// === WebSocket client ===

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

// === raw sockets ===

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes `request` as-is on a new connection to `addr` and reads one response. Write errors
/// are ignored (a server may answer and close before reading everything we send).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let _ = stream.write_all(request).await;
    bounded("reading a raw response", read_response(&mut stream)).await
}

/// Reads one HTTP/1.x response from `stream`: the head, then a body delimited by
/// `Content-Length`, chunked encoding, or the end of the stream.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !read_more(stream, &mut buf).await {
            panic!(
                "connection closed before a full response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = value("content-length") {
        let len: usize = len.parse().unwrap();
        while rest.len() < len {
            assert!(read_more(stream, &mut rest).await, "body cut short");
        }
        rest.truncate(len);
        rest
    } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&rest, b"\r\n") {
                    break i;
                }
                assert!(read_more(stream, &mut rest).await, "chunked body cut short");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            while rest.len() < line_end + 2 + size + 2 {
                assert!(read_more(stream, &mut rest).await, "chunked body cut short");
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        while read_more(stream, &mut rest).await {}
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// === TLS ===

/// A file in `tests/certs/`.
pub fn cert_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// The first certificate in a PEM file, as DER.
pub fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A rustls client config (ring) that trusts only the test CA and offers `alpn`.
pub fn tls_client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der(&cert_file("ca.pem"))).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects to `addr` with TLS as `localhost`, offering `alpn`, verifying against the test CA.
pub async fn tls_connect(addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(alpn));
    bounded(
        "TLS handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake")
}

/// The certificate a new TLS connection to `addr` is served.
pub async fn served_cert(addr: SocketAddr) -> CertificateDer<'static> {
    let tls = tls_connect(addr, &[b"http/1.1"]).await;
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server sent a certificate")[0]
        .clone()
        .into_owned()
}

// === the real binary ===

/// The `portcullis` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A `portcullis` command with a clean environment for its config: no `PORTCULLIS_*` override
/// and no `RUST_LOG` from the caller.
pub fn command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// A running `portcullis serve` process.
pub struct Process {
    /// The child.
    pub child: tokio::process::Child,
    /// Its main listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child is running")
    }

    /// Its peak resident set size (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }

    /// Sends SIGTERM, with the shell's own `kill` (no extra package needed).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.pid()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Runs `portcullis serve --config CONFIG` and waits until both listeners log `listening`.
pub async fn spawn_serve(config: &Path) -> Process {
    let mut child = command()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = oneshot::channel();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let (mut main, mut admin) = (None, None);
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                let addr = listen_addr(&line);
                if line.contains("listener=\"main\"") {
                    main = addr;
                } else if line.contains("listener=\"admin\"") {
                    admin = addr;
                }
            }
            log2.lock().unwrap().push_str(&line);
            log2.lock().unwrap().push('\n');
            if let (Some(m), Some(a)) = (main, admin) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send((m, a));
                }
            }
        }
    });
    match tokio::time::timeout(BOUND, rx).await {
        Ok(Ok((addr, admin))) => Process {
            child,
            addr,
            admin,
            log,
        },
        _ => {
            let _ = child.start_kill();
            panic!(
                "portcullis serve did not log its listeners; stderr:\n{}",
                log.lock().unwrap()
            );
        }
    }
}

fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    rest.split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

// === identity: the store, Redis, JSON API calls ===

/// The shared test Redis, which `.ci/run` starts. Tests on it use a key prefix of their own
/// ([`random_key_prefix`]) and delete it afterwards ([`delete_redis_keys`]).
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A fresh key prefix, `portcullis-test:UUID:`, so that tests sharing one Redis never see one
/// another's keys.
pub fn random_key_prefix() -> String {
    format!("portcullis-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A config for an in-process Portcullis on the store at `store_url` under key prefix
/// `prefix`, forwarding to `upstream`: `policy.default = "authenticated"`, extra `[store]`
/// lines `store_extra`, fast argon2 parameters (the tests are about behaviour, not hashing
/// cost), insecure session cookies, and extra TOML `extra` at the end.
pub fn config_with_store(
    upstream: SocketAddr,
    store_url: &str,
    prefix: &str,
    store_extra: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [upstream]\nurl = \"http://{upstream}\"\n\n\
         [store]\nurl = \"{store_url}\"\nkey_prefix = \"{prefix}\"\n{store_extra}\n\n\
         [passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
         [session]\ncookie_secure = false\n\n\
         {extra}\n"
    )
}

/// Declares two tests running `async fn $scenario(store_url: &str)`: `$memory` on `memory://`
/// and `$redis` on the shared test Redis ([`REDIS`]).
macro_rules! on_both_stores {
    ($scenario:ident => $memory:ident, $redis:ident) => {
        #[tokio::test]
        async fn $memory() {
            $scenario("memory://").await;
        }

        #[tokio::test]
        async fn $redis() {
            $scenario($crate::common::REDIS).await;
        }
    };
}
pub(crate) use on_both_stores;

/// Deletes every key under `prefix` on the Redis at `url` (a standalone one; elsewhere, or
/// when it does not answer, the keys are left).
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<i64, _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    }
}

/// How many clients are subscribed to `channel` on the Redis behind `conn` (`PUBSUB NUMSUB`).
pub async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB");
    counts.first().map_or(0, |(_, n)| *n)
}

/// A request to `app.test` for `path`, carrying `token` in `Coder-Session-Token` when given,
/// and `body` as JSON when given (no body otherwise).
pub fn api_request(
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "app.test");
    if let Some(t) = token {
        b = b.header("coder-session-token", t);
    }
    match body {
        Some(body) => b
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .unwrap(),
        None => b.body(empty()).unwrap(),
    }
}

/// Sends `req` to `addr` on a new connection: the status, the body as JSON (a JSON string
/// when it is not JSON), and the response headers.
pub async fn call_json(addr: SocketAddr, req: Request<TestBody>) -> (StatusCode, Value, HeaderMap) {
    let resp = send(addr, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = body_string(resp).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, headers)
}

// === a private redis-server ===

/// A port nothing listens on now, for a server to start on (bound, then released).
pub fn free_port() -> u16 {
    dead_port().port()
}

/// A private `redis-server` on `127.0.0.1:PORT`, killed by PID when dropped.
pub struct RedisServer {
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one keeping nothing on disk: started again after a kill, it is empty.
    pub async fn start(port: u16) -> RedisServer {
        RedisServer::spawn(port, &["--save", "", "--appendonly", "no"], None).await
    }

    /// Starts one persisting every write in `dir` (append-only file, fsync on every write),
    /// so that a server started again on `dir` after a kill has the same data.
    pub async fn start_persistent(port: u16, dir: &Path) -> RedisServer {
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        RedisServer::spawn(port, &args, Some(dir)).await
    }

    async fn spawn(port: u16, args: &[&str], dir: Option<&Path>) -> RedisServer {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args);
        if let Some(dir) = dir {
            cmd.arg("--dir").arg(dir);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install the redis-server package)");
        let server = RedisServer { child: Some(child) };
        let started = tokio::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < BOUND,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server by PID: a stopped server keeps its
    /// sockets open and answers nothing, like a hung or partitioned Redis.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no goodbye to the clients, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// === the first user, logins, and the identity assertion ===

/// The password of the users the tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The email of the first user the tests create, `admin`.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// Creates the first user (`admin`, an owner: [`ADMIN_EMAIL`], [`PASSWORD`]) through the API
/// at `addr` (Portcullis itself, or an edge in front of it): the answer (`user_id`,
/// `organization_id`).
pub async fn create_admin(addr: SocketAddr) -> Value {
    let first = serde_json::json!({
        "email": ADMIN_EMAIL, "username": "admin", "password": PASSWORD,
    });
    let (status, body, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users/first", Some(&first), None),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// `POST /api/v2/users/login` at `addr`: the status and the body.
pub async fn login(addr: SocketAddr, email: &str, password: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({"email": email, "password": password});
    let (status, body, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users/login", Some(&body), None),
    )
    .await;
    (status, body)
}

/// Logs in at `addr`, which must succeed: the session token.
pub async fn login_ok(addr: SocketAddr, email: &str, password: &str) -> String {
    let (status, body) = login(addr, email, password).await;
    assert_eq!(status, StatusCode::CREATED, "login {email}: {body}");
    body["session_token"].as_str().expect("a token").to_owned()
}

/// Logs in at `addr` as the first user ([`create_admin`]): the session token.
pub async fn admin_token(addr: SocketAddr) -> String {
    login_ok(addr, ADMIN_EMAIL, PASSWORD).await
}

/// Creates the first user ([`create_admin`]) at `addr` and logs in as them: the user's id and
/// the session token.
pub async fn first_user_token(addr: SocketAddr) -> (String, String) {
    let body = create_admin(addr).await;
    let user_id = body["user_id"].as_str().expect("a user id").to_owned();
    (user_id, admin_token(addr).await)
}

/// The `field` of each entry of a 400's `validations`, in order.
pub fn validation_fields(body: &Value) -> Vec<&str> {
    body["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect()
}

/// A file in `tests/keys/` (see `gen.sh` there).
pub fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// The RFC 7638 thumbprint of a test key, as `tests/keys/gen.sh` worked it out with openssl.
pub fn key_kid(name: &str) -> String {
    std::fs::read_to_string(key_file(&format!("{name}.kid")))
        .unwrap()
        .trim()
        .to_owned()
}

/// Checks an identity assertion as an upstream would: fetches the JWKS from the Portcullis at
/// `addr` (no credentials), picks the key the JWT's `kid` names, and verifies the ES256
/// signature, `exp`, `aud` and `iss` with the `jsonwebtoken` crate. Returns the `kid` and the
/// claims; fails the test if anything does not verify.
pub async fn verify_assertion(
    addr: SocketAddr,
    jwt: &str,
    aud: &str,
    iss: &str,
) -> (String, Value) {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let resp = send(addr, get("app.test", "/.portcullis/jwks.json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let jwks = body_json(resp).await;
    let header = decode_header(jwt).unwrap_or_else(|e| panic!("not a JWT ({e}): {jwt}"));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("the assertion names its key");
    let jwk = jwks["keys"]
        .as_array()
        .expect("a key set")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .expect("an EC public key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let claims = decode::<Value>(jwt, &key, &validation)
        .unwrap_or_else(|e| panic!("the assertion does not verify ({e}): {jwt}"))
        .claims;
    (kid, claims)
}
