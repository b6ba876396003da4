//! Heap allocations on the authenticated hot path (issue 18): a session's proxied request on a
//! cache hit, under a policy of 50 route rules, identity headers on, over HTTP/1.1, HTTP/1.1
//! over TLS and HTTP/2 over TLS.
//!
//! A test binary of its own, because it installs a counting global allocator. Portcullis runs
//! in-process on a runtime of its own; the client and the upstream run on another runtime whose
//! threads are not counted, so the count is Portcullis's alone (its runtime's threads, tokio's
//! blocking pool and whatever else the process starts). Each test warms the connection, the
//! upstream pool and the key cache up, then counts the allocations of a few thousand requests
//! on one kept-alive connection and asserts an upper bound per request. The bounds are the
//! counts measured when they were set plus a little slack for the background (cache upkeep,
//! timers): a change that adds an allocation per request fails here. Counts, never time.
//!
//! `cargo test --test alloc -- --nocapture` prints the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === the counting allocator ===

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the client's and the upstream's threads: their allocations are not Portcullis's.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if !UNCOUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged; counting touches only an
// atomic and a const-initialised thread-local without destructor, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// === the tests ===

const WARMUP: u64 = 2_000;
const MEASURED: u64 = 5_000;
const PATH: &str = "/app/v1/items/42";

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    TlsHttp1,
    TlsHttp2,
}

/// HTTP/1.1, plain: at most this many allocations per request.
#[test]
fn an_authenticated_http1_request_allocates_at_most_the_bound() {
    let per_request = measure(Protocol::Http1);
    assert!(
        per_request <= 10.0,
        "{per_request:.2} allocations per request over plain HTTP/1.1"
    );
}

/// HTTP/1.1 over TLS: at most this many allocations per request.
#[test]
fn an_authenticated_tls_http1_request_allocates_at_most_the_bound() {
    let per_request = measure(Protocol::TlsHttp1);
    assert!(
        per_request <= 12.0,
        "{per_request:.2} allocations per request over HTTP/1.1 with TLS"
    );
}

/// HTTP/2 over TLS: at most this many allocations per request.
#[test]
fn an_authenticated_tls_http2_request_allocates_at_most_the_bound() {
    let per_request = measure(Protocol::TlsHttp2);
    assert!(
        per_request <= 18.0,
        "{per_request:.2} allocations per request over HTTP/2 with TLS"
    );
}

/// Starts Portcullis and an upstream, makes a session, warms up, and returns Portcullis's
/// allocations per request over `MEASURED` requests on one connection.
///
/// The tests of this binary run one at a time (a lock), since the counter is process-wide.
fn measure(protocol: Protocol) -> f64 {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(|| UNCOUNTED.with(|u| u.set(true)))
        .build()
        .unwrap();
    UNCOUNTED.with(|u| u.set(true));
    let upstream = client_rt.block_on(Upstream::start());
    // The client runtime's own thread is this one: keep it uncounted, and drive the server on
    // a runtime of its own (two workers, as on two cores).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| UNCOUNTED.with(|u| u.set(false)))
        .build()
        .unwrap();
    let tls = !matches!(protocol, Protocol::Http1);
    let (addr, stop) = server_rt.block_on(start_portcullis(upstream.addr, tls));

    let per_request = client_rt.block_on(async {
        let token = first_session(addr, tls).await;
        let mut client = Client::connect(addr, protocol).await;
        for _ in 0..WARMUP {
            client.get(&token).await;
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..MEASURED {
            client.get(&token).await;
        }
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        (after - before) as f64 / MEASURED as f64
    });
    let identified = upstream.identified.load(Ordering::SeqCst);
    assert!(
        identified >= WARMUP + MEASURED,
        "the upstream saw {identified} requests with the session's identity headers"
    );
    println!(
        "{}: {per_request:.2} allocations per authenticated request",
        match protocol {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::TlsHttp1 => "HTTP/1.1 over TLS",
            Protocol::TlsHttp2 => "HTTP/2 over TLS",
        }
    );
    let _ = stop.send(());
    server_rt.shutdown_background();
    per_request
}

/// The config: 50 route rules (49 that share the first two segments of `PATH` and fail on the
/// third, then `/app/**` requiring `user:read`, as `benches/run.sh`'s `routes50`), identity
/// headers on (`forwarded`, the default), the assertion off, the memory store.
fn config(upstream: SocketAddr, tls: bool) -> String {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    let tls = if tls {
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.join("a.pem").display(),
            certs.join("a.key").display()
        )
    } else {
        String::new()
    };
    let mut rules = String::new();
    for i in 1..50 {
        rules.push_str(&format!(
            "[[policy.route]]\npath = \"/app/v1/r{i}/{{id}}\"\nmethods = [\"GET\", \"POST\"]\n\
             require = \"workspace:read\"\n"
        ));
    }
    rules.push_str("[[policy.route]]\npath = \"/app/**\"\nrequire = \"user:read\"\n");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{tls}\n\
         [upstream]\nurl = \"http://{upstream}\"\n\n\
         [store]\nurl = \"memory://\"\n\n\
         [session]\ncookie_secure = false\n\n\
         [rate_limit]\napi_per_minute = 0\nlogin_per_minute = 0\n\n\
         [passwords]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n\n\
         [policy]\ndefault = \"authenticated\"\n{rules}"
    )
}

async fn start_portcullis(
    upstream: SocketAddr,
    tls: bool,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = portcullis::Config::from_toml(
        &config(upstream, tls),
        Vec::<(String, String)>::new(),
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("the test config does not load: {e}"));
    let app = portcullis::App::new(config).unwrap_or_else(|e| panic!("App::new: {e}"));
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis::server::run(
        app,
        portcullis::server::Listeners { main, admin },
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

// === the upstream ===

/// An HTTP/1.1 upstream that answers every request head with the same 128-byte body, and
/// counts the heads that carry the session's identity (`x-forwarded-user: admin`).
struct Upstream {
    addr: SocketAddr,
    identified: Arc<AtomicU64>,
}

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 128\r\n\r\n\
    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identified = Arc::new(AtomicU64::new(0));
        let seen = identified.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Upstream::serve(stream, seen.clone()));
            }
        });
        Upstream { addr, identified }
    }

    async fn serve(mut stream: TcpStream, identified: Arc<AtomicU64>) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut filled = 0;
        loop {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
            while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let head = buf[..end].to_ascii_lowercase();
                if find(&head, b"\r\nx-forwarded-user: admin").is_some() {
                    identified.fetch_add(1, Ordering::Relaxed);
                }
                if stream.write_all(ANSWER).await.is_err() {
                    return;
                }
                buf.copy_within(end + 4..filled, 0);
                filled -= end + 4;
            }
            assert!(filled < buf.len(), "a request head larger than 64 KiB");
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// === the client ===

fn client_tls(alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs/ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

enum Client {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    async fn connect(addr: SocketAddr, protocol: Protocol) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let localhost = ServerName::try_from("localhost").unwrap();
        match protocol {
            Protocol::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Client::H1(send)
            }
            Protocol::TlsHttp1 => {
                let tls = client_tls(b"http/1.1")
                    .connect(localhost, tcp)
                    .await
                    .unwrap();
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Client::H1(send)
            }
            Protocol::TlsHttp2 => {
                let tls = client_tls(b"h2").connect(localhost, tcp).await.unwrap();
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                Client::H2(send)
            }
        }
    }

    /// One proxied GET with the session's token, which must come back 200 with the upstream's
    /// whole body.
    async fn get(&mut self, token: &str) {
        let req = Request::get(PATH)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap();
        let resp = match self {
            Client::H1(send) => {
                send.ready().await.unwrap();
                send.send_request(req).await.unwrap()
            }
            Client::H2(send) => {
                send.ready().await.unwrap();
                send.send_request(req).await.unwrap()
            }
        };
        assert_eq!(
            resp.status(),
            200,
            "the proxied request was not let through"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 128);
    }
}

/// Creates the first user over the API (one connection per call, plain or TLS) and logs in:
/// the session token.
async fn first_session(addr: SocketAddr, tls: bool) -> String {
    let first =
        r#"{"email":"admin@example.com","username":"admin","password":"correct horse battery"}"#;
    let (status, _) = api_call(addr, tls, "/api/v2/users/first", first).await;
    assert_eq!(status, 201);
    let login = r#"{"email":"admin@example.com","password":"correct horse battery"}"#;
    let (status, body) = api_call(addr, tls, "/api/v2/users/login", login).await;
    assert_eq!(status, 201, "{body:?}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body["session_token"].as_str().expect("a token").to_owned()
}

async fn api_call(addr: SocketAddr, tls: bool, path: &str, json: &str) -> (u16, Bytes) {
    let req = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::copy_from_slice(
            json.as_bytes(),
        )))
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let resp = if tls {
        let localhost = ServerName::try_from("localhost").unwrap();
        let tls = client_tls(b"http/1.1")
            .connect(localhost, tcp)
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}
