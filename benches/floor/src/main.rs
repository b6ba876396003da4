//! hyper's floor as Portcullis uses it: an HTTP/1.1 reverse proxy with nothing between its two
//! connections. No authentication, no route policy, no header hygiene, no identity headers, no
//! metrics, no access log: the request goes upstream as it came, the response comes back as it
//! came. The same hyper builders, the same settings and the same runtime as `portcullis serve`
//! with one worker. What this costs per request is what Portcullis cannot go below while it
//! keeps hyper's HTTP/1 server and client (issue 18: "if hyper's HTTP/1 server itself sets the
//! ceiling, show it with numbers"). `benches/run.sh` (MODES=floor) and `benches/profile.sh`
//! (FLOOR=spawned|in-task) measure it.
//!
//! ```text
//! hyper_floor spawned|in-task LISTEN_ADDR UPSTREAM_ADDR
//! ```
//!
//! Each client connection gets one upstream connection of its own (HTTP/1.1 without
//! pipelining has one exchange at a time), opened when the client connects:
//! - `spawned`: the upstream connection runs in a task of its own, as Portcullis's pool does;
//! - `in-task`: the client connection's task drives it too (one task per pair, no wake-up of a
//!   second task per request): the lead "drive the upstream connection in the client
//!   connection's task", measured before building it into the pool.
//!
//! A benchmark tool, not a product: it has no timeouts beyond hyper's header-read timeout and
//! stops at the first error of a connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

type Sender = Arc<Mutex<Option<client::SendRequest<Incoming>>>>;
type Answer = Response<http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>>;

#[derive(Clone, Copy)]
enum Mode {
    Spawned,
    InTask,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: hyper_floor spawned|in-task LISTEN_ADDR UPSTREAM_ADDR";
    let [_, mode, listen, upstream] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mode = match mode.as_str() {
        "spawned" => Mode::Spawned,
        "in-task" => Mode::InTask,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse()) else {
        eprintln!("{usage}: addresses are IP:PORT");
        std::process::exit(2);
    };
    // As `portcullis serve` with `server.workers = 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Until SIGINT (a background job of a script ignores it unless it is handled).
    runtime.block_on(async {
        tokio::select! {
            () = serve(mode, listen, upstream) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}

async fn serve(mode: Mode, listen: SocketAddr, upstream: SocketAddr) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Portcullis's settings (src/server.rs, the defaults of server.*).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .writev(false);
    let builder = Arc::new(builder);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = connection(mode, &builder, stream, upstream).await;
        });
    }
}

async fn connection(
    mode: Mode,
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    upstream: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = stream.set_nodelay(true);
    let up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    // Portcullis's upstream builder (src/upstream.rs).
    let (sender, up_conn) = client::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(up))
        .await?;
    let sender: Sender = Arc::new(Mutex::new(Some(sender)));
    let service = service_fn(move |req| forward(sender.clone(), req));
    let down_conn = builder.serve_connection(TokioIo::new(stream), service);
    match mode {
        Mode::Spawned => {
            tokio::spawn(up_conn);
            down_conn.await?;
        }
        Mode::InTask => {
            // Each connection with a waker of its own, so that a wake-up of one polls only
            // that one (`tokio::join!` polls both on every wake-up of the task: measured at
            // 36,553 instructions per request against the spawned mode's 33,513). The client
            // connection ends first (the service, and with it the sender, drop), then the
            // upstream connection sees its sender gone and ends too.
            let mut both: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
                FuturesUnordered::new();
            both.push(Box::pin(async move {
                let _ = down_conn.await;
            }));
            both.push(Box::pin(async move {
                let _ = up_conn.await;
            }));
            while both.next().await.is_some() {}
        }
    }
    Ok(())
}

/// Sends `req` on the connection's upstream connection, unchanged; 502 when that fails.
async fn forward(sender: Sender, req: Request<Incoming>) -> Result<Answer, Infallible> {
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
        Ok(resp) => resp.map(http_body_util::Either::Left),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Answer {
    let mut resp = Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
