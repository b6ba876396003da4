//! hyper's floor as Portcullis uses it: a reverse proxy with nothing between its two
//! connections. No authentication, no route policy, no header hygiene, no identity headers, no
//! metrics, no access log: the request goes upstream as it came (an HTTP/2 one as HTTP/1.1, with
//! a Host), the response comes back as it came. The same hyper builders, the same settings and
//! the same runtime as `portcullis serve` with one worker. What this costs per request is what
//! Portcullis cannot go below while it keeps hyper's server and client (issue 18: "if hyper's
//! HTTP/1 server itself sets the ceiling, show it with numbers"). `benches/run.sh`
//! (MODES=floor) and `benches/profile.sh` (FLOOR=pooled|spawned|in-task) measure it;
//! `benches/results/floor-2026-12-05.md` is what they found.
//!
//! ```text
//! hyper_floor pooled|spawned|in-task LISTEN_ADDR UPSTREAM_ADDR [CERT_PEM KEY_PEM]
//! ```
//!
//! - `pooled`: Portcullis's own pool and bodies (`portcullis::upstream::Pool`, `RequestBody`,
//!   `portcullis::http::body::Body`, with the default `[upstream]` settings): one stack of idle
//!   upstream HTTP/1.1 connections shared by every client connection, a connection leased to a
//!   response until its body ends. With a certificate and key, the listener is TLS (rustls with
//!   ring, ALPN h2 and http/1.1, as Portcullis's), so HTTP/2 clients' streams share the pool too.
//! - `spawned` and `in-task` (plain HTTP/1.1 only): each client connection gets an upstream
//!   connection of its own, opened when the client connects (HTTP/1.1 without pipelining has
//!   one exchange at a time), driven by a task of its own (`spawned`) or by the client
//!   connection's task (`in-task`: issue 18's lead "drive the upstream connection in the client
//!   connection's task", measured before building it into the pool).
//!
//! A benchmark tool, not a product: it has no timeouts beyond hyper's header-read timeout and
//! stops at the first error of a connection. It serves connections without hyper's upgrade
//! support (`serve_connection`, where Portcullis has `serve_connection_with_upgrades`), one
//! wrapper less than Portcullis polls: if anything, the floor is slightly optimistic.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use portcullis::config::UpstreamConfig;
use portcullis::http::body::Body;
use portcullis::upstream::{Pool, RequestBody};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Upstream = client::SendRequest<Incoming>;
type Answer = Response<Body>;
type Failure = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pooled,
    Spawned,
    InTask,
}

/// What every connection shares.
struct Shared {
    mode: Mode,
    upstream: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    pool: Arc<Pool>,
}

/// Portcullis's `server.idle_timeout` default: how long a request body may stall.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: hyper_floor pooled|spawned|in-task LISTEN_ADDR UPSTREAM_ADDR [CERT_PEM KEY_PEM]";
    let fail = |why: &str| -> ! {
        eprintln!("{usage}{why}");
        std::process::exit(2)
    };
    let (mode, listen, upstream, tls) = match &args[..] {
        [_, m, l, u] => (m, l, u, None),
        [_, m, l, u, c, k] => (m, l, u, Some((c, k))),
        _ => fail(""),
    };
    let mode = match mode.as_str() {
        "pooled" => Mode::Pooled,
        "spawned" => Mode::Spawned,
        "in-task" => Mode::InTask,
        _ => fail(""),
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse()) else {
        fail(": addresses are IP:PORT");
    };
    if tls.is_some() && mode != Mode::Pooled {
        fail(": TLS only with pooled");
    }
    let tls =
        tls.map(|(cert, key)| acceptor(cert, key).unwrap_or_else(|e| fail(&format!(": {e}"))));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Portcullis's settings (src/server.rs, the defaults of server.*).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(4 * 64 * 1024)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let pool = Pool::new(&upstream_config(upstream)).unwrap_or_else(|e| fail(&format!(": {e}")));
    let shared = Arc::new(Shared {
        mode,
        upstream,
        builder,
        tls,
        pool: Arc::new(pool),
    });
    // As `portcullis serve` with `server.workers = 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Until SIGINT (a background job of a script ignores it unless it is handled) or SIGTERM.
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            () = serve(shared, listen) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}

/// `[upstream] url = "http://<upstream>"` with every other setting at Portcullis's default.
fn upstream_config(upstream: SocketAddr) -> UpstreamConfig {
    UpstreamConfig {
        scheme: Scheme::HTTP,
        authority: Authority::try_from(upstream.to_string()).expect("an address is an authority"),
        base_path: String::new(),
        http2: false,
        ca_file: None,
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(60),
        pool_idle_timeout: Duration::from_secs(90),
        pool_max_idle: 256,
        pass_token: false,
        upgrade_protocols: vec!["websocket".into()],
        danger_pass_override_headers: false,
    }
}

/// Portcullis's TLS server config (src/tls.rs): ring, TLS 1.3 and 1.2, ALPN h2 then http/1.1.
fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, Failure> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(shared: Arc<Shared>, listen: SocketAddr) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = match &shared.tls {
                None => connection(&shared, stream).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => connection(&shared, tls).await,
                    Err(e) => Err(e.into()),
                },
            };
        });
    }
}

async fn connection<IO>(shared: &Arc<Shared>, io: IO) -> Result<(), Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if shared.mode == Mode::Pooled {
        let pool = shared.clone();
        let service = service_fn(move |req| pooled(pool.clone(), req));
        return shared
            .builder
            .serve_connection(TokioIo::new(io), service)
            .await;
    }
    let (sender, up_conn) = connect(shared.upstream).await?;
    let sender = Arc::new(Mutex::new(Some(sender)));
    let service = service_fn(move |req| own(sender.clone(), req));
    let down_conn = shared.builder.serve_connection(TokioIo::new(io), service);
    if shared.mode == Mode::Spawned {
        tokio::spawn(up_conn);
        return down_conn.await;
    }
    // Each connection with a waker of its own, so that a wake-up of one polls only that one
    // (`tokio::join!` polls both on every wake-up of the task: measured at 36,553 instructions
    // per request against the spawned mode's 33,513). The client connection ends first (the
    // service, and with it the sender, drop), then the upstream connection sees its sender
    // gone and ends too.
    let mut both: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
        FuturesUnordered::new();
    both.push(Box::pin(async move {
        let _ = down_conn.await;
    }));
    both.push(Box::pin(async move {
        let _ = up_conn.await;
    }));
    while both.next().await.is_some() {}
    Ok(())
}

/// A new upstream connection, with Portcullis's upstream builder (src/upstream.rs); the
/// connection future is the caller's to drive.
async fn connect(
    upstream: SocketAddr,
) -> Result<(Upstream, client::Connection<TokioIo<TcpStream>, Incoming>), Failure> {
    let up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    Ok(client::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(up))
        .await?)
}

/// `pooled`: what Portcullis's `Upstream::forward` does with a request, without the rest: the
/// body wrapped, sent through the pool, the response streamed with its lease; 502 when that
/// fails. An HTTP/2 request goes upstream as HTTP/1.1, in origin form, with its authority as
/// the Host header (HTTP/1.1 requires one; Portcullis sets it the same way).
async fn pooled(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let (mut parts, body) = req.into_parts();
    parts.version = http::Version::HTTP_11;
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(http::header::HOST, host);
        }
    }
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = pq.into();
    }
    let (req, _) = RequestBody::wrap(Request::from_parts(parts, body), IDLE_TIMEOUT);
    Ok(match shared.pool.send(req).await {
        Ok((resp, lease)) => resp.map(|body| Body::stream(body, lease)),
        Err(_) => bad_gateway(),
    })
}

/// `spawned` and `in-task`: sends `req` on the connection's own upstream connection,
/// unchanged; 502 when that fails.
async fn own(
    sender: Arc<Mutex<Option<Upstream>>>,
    req: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let taken = sender.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut upstream) = taken else {
        return Ok(bad_gateway());
    };
    if upstream.ready().await.is_err() {
        return Ok(bad_gateway());
    }
    let response = upstream.send_request(req);
    *sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    Ok(match response.await {
        Ok(resp) => resp.map(|body| Body::stream(body, None)),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Answer {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
