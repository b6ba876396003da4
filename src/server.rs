//! Listeners and connections: accept (with a connection cap and EMFILE back-off), TLS
//! handshake with a deadline, HTTP/1.1 and HTTP/2 (ALPN, or prior knowledge on a plain
//! listener) through hyper's auto builder, the idle timer, and graceful shutdown.
//!
//! Timeouts per phase: TLS handshake (`server.tls_handshake_timeout`); request head
//! (`server.header_read_timeout`, hyper's own timer, which on HTTP/1.1 also runs while a
//! keep-alive connection waits for its next request); idle (`server.idle_timeout`: no request
//! started and none in flight — see [`Activity`] — for HTTP/2 and for clients that never send a
//! request at all).
//!
//! Shutdown: when the shutdown future completes, both listeners stop accepting, `/readyz` turns
//! 503, every open connection is told to finish (HTTP/1.1 closes after its current response,
//! HTTP/2 sends GOAWAY), and `run` returns once they are done or `server.shutdown_grace` has
//! passed, whichever comes first.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::http::activity::{Activity, InFlight};
use crate::http::admin;
use crate::http::app::App;
use crate::http::peer::Peer;
use crate::http::router;
use crate::metrics::Handshake;
use crate::tls;

/// Admin connections open at once, at most.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The bound sockets `run` serves. Bound by the caller so that a bad address fails before any
/// work starts, and so that tests can bind `127.0.0.1:0`.
#[derive(Debug)]
pub struct Listeners {
    /// The main listener (proxy and API).
    pub main: TcpListener,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: TcpListener,
}

// === impl Listeners ===

impl Listeners {
    /// Binds both addresses of the configuration.
    pub async fn bind(main: SocketAddr, admin: SocketAddr) -> io::Result<Listeners> {
        Ok(Listeners {
            main: TcpListener::bind(main).await?,
            admin: TcpListener::bind(admin).await?,
        })
    }
}

/// Serves `listeners` until `shutdown` completes, then drains (see the module doc).
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());

    let watcher = match (&app.config.server.tls, &app.tls) {
        (Some(cfg), Some((_, resolver))) => Some(tokio::spawn(tls::watch(
            cfg.clone(),
            resolver.clone(),
            app.metrics.clone(),
        ))),
        _ => None,
    };

    // Every replica drops invalidated keys from its cache as soon as the store says so, then
    // has the open connections they concern checked again.
    let watchlist = app.watchlist.clone();
    let invalidations = tokio::spawn(
        app.keys
            .clone()
            .listen(app.store.clone(), move |what| watchlist.apply(what)),
    );
    // The admin listener keeps answering through the drain, so probes see `/readyz` turn 503.
    let admin = tokio::spawn(admin_loop(app.clone(), listeners.admin, admin_stop_rx));
    let main = tokio::spawn(main_loop(
        app.clone(),
        listeners.main,
        graceful.clone(),
        stop_rx,
    ));
    app.set_ready(true);

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining open ones");
    app.set_ready(false);
    let _ = stop_tx.send(true);
    let _ = main.await;
    if let Some(w) = watcher {
        w.abort();
    }

    let grace = app.config.server.shutdown_grace;
    // The main loop, the only other holder, has returned.
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace = ?grace, "shutdown grace period over; closing remaining connections");
        }
    }
    let _ = admin_stop_tx.send(true);
    let _ = admin.await;
    invalidations.abort();
}

async fn main_loop(
    app: Arc<App>,
    listener: TcpListener,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let limit = app.connections.clone();
    let builder = Arc::new(http_builder(&app));
    while let Some((permit, stream, addr)) = next_connection(&limit, &listener, &mut stop).await {
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            app.metrics.connection_opened();
            serve_main(&app, &builder, watcher, stream, addr).await;
            app.metrics.connection_closed();
            drop(permit);
        });
    }
}

async fn serve_main(
    app: &Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: TcpStream,
    addr: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::default());
    let io = stream;
    let server = &app.config.server;
    let trusted = server
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&addr.ip()));
    let peer = Arc::new(Peer::new(addr, app.tls.is_some(), trusted));
    match &app.tls {
        None => serve_http(app, builder, watcher, io, peer, activity).await,
        Some((acceptor, _)) => {
            match tokio::time::timeout(server.tls_handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    app.metrics.tls_handshake(Handshake::Ok);
                    serve_http(app, builder, watcher, tls, peer, activity).await
                }
                Ok(Err(error)) => {
                    app.metrics.tls_handshake(Handshake::Error);
                    tracing::debug!(peer = %addr, %error, "tls handshake failed");
                }
                Err(_) => {
                    app.metrics.tls_handshake(Handshake::Timeout);
                    tracing::debug!(peer = %addr, "tls handshake timed out");
                }
            }
        }
    }
}

async fn serve_http<IO>(
    app: &Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: IO,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_app = app.clone();
    let svc_activity = activity.clone();
    let svc_peer = peer.clone();
    let service = service_fn(move |req| {
        router::handle(
            svc_app.clone(),
            svc_peer.clone(),
            InFlight::new(&svc_activity),
            req,
        )
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    // See `Activity` for how idleness is sampled.
    let mut tick = tokio::time::interval(app.config.server.idle_timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_ops, mut quiet) = (u64::MAX, 0);
    loop {
        tokio::select! {
            res = &mut conn => {
                if let Err(error) = res {
                    tracing::debug!(peer = %peer.addr, %error, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                let ops = activity.requests();
                let busy = activity.busy();
                quiet = if busy || ops != last_ops { 0 } else { quiet + 1 };
                last_ops = ops;
                if quiet >= 2 {
                    tracing::debug!(peer = %peer.addr, "closing idle connection");
                    return;
                }
            }
        }
    }
}

fn http_builder(app: &App) -> auto::Builder<TokioExecutor> {
    let s = &app.config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        // hyper answers 431 when a request head does not fit in its read buffer, so the
        // buffer's cap is the head's cap.
        .max_buf_size(s.max_header_bytes)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        // h2 refuses a stream whose header list exceeds this with a bare reset; set it above
        // the limit so that the router can answer 431 for heads between the two.
        .max_header_list_size(u32::try_from(s.max_header_bytes * 4).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn admin_loop(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.server.header_read_timeout);
    while let Some((permit, stream, _)) = next_connection(&limit, &listener, &mut stop).await {
        let app = app.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| admin::handle(app.clone(), req)),
        );
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Waits for a connection permit of `limit`, then for a connection on `listener`: `None` once
/// `stop` fires. Waiting for the permit before accepting leaves excess clients in the kernel
/// backlog. A failed accept gives its permit back and is waited out ([`accept_error`]).
async fn next_connection(
    limit: &Arc<Semaphore>,
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.ok()?,
            _ = stop.changed() => return None,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => return Some((permit, stream, addr)),
                Err(e) => accept_error(e, stop).await,
            },
            _ = stop.changed() => return None,
        }
    }
}

/// A failed `accept` never stops the server. Errors about one connection (reset before we
/// took it) are skipped; resource errors (EMFILE, ENFILE, ENOBUFS) are logged and retried after
/// a second, since retrying at once would spin.
async fn accept_error(error: io::Error, stop: &mut watch::Receiver<bool>) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 1s");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = stop.changed() => {}
    }
}
