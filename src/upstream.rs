//! The connection pool to the one upstream, on hyper's connection-level client.
//!
//! There is a single upstream, so the pool is a stack of idle HTTP/1.1 connections with no keys
//! to hash, or one shared multiplexed HTTP/2 connection. A connection leased for a request
//! travels with the response body ([`Lease`]) and goes back on the stack the moment the body
//! has been read to the end — no background task per request. The most recently used
//! connection is reused first, so a quiet period lets the older ones expire.
//!
//! A request that fails on a reused connection before a byte of it was written (the upstream
//! closed the idle connection at that instant) is retried once on a fresh connection; anything
//! else is reported, never retried, since the request may have had effects.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

use crate::config::UpstreamConfig;
use crate::tls::{self, TlsError};

/// The pool of connections to the upstream.
pub struct Pool {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    connecting_h2: tokio::sync::Mutex<()>,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// An HTTP/1.1 connection on loan to one response. Dropping it after the response body ended
/// returns the connection to the pool; dropping it earlier closes the connection (its state
/// is unknown).
pub struct Lease {
    pool: Arc<Pool>,
    sender: Option<http1::SendRequest<RequestBody>>,
}

enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

// === impl Pool ===

impl Pool {
    /// A pool for `cfg`'s upstream. Connections are opened on demand.
    pub fn new(cfg: &UpstreamConfig) -> Result<Pool, TlsError> {
        let host = cfg
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let https = cfg.scheme == Scheme::HTTPS;
        let port = cfg
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = tls::upstream_client_config(cfg.ca_file.as_deref())?;
            config.alpn_protocols = if cfg.http2 {
                vec![b"h2".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::Pem {
                path: Default::default(),
                reason: format!("{host:?} is not a valid TLS server name"),
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Pool {
            host: host.to_owned(),
            port,
            tls,
            http2: cfg.http2,
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.pool_idle_timeout,
            max_idle: cfg.pool_max_idle,
            idle: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
            connecting_h2: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends `req` (already in its upstream form) and returns the response head, with the
    /// lease the response body must carry for an HTTP/1.1 connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), Error> {
        if self.http2 {
            let mut sender = self.h2_sender().await?;
            let resp = sender.send_request(req).await.map_err(unavailable)?;
            return Ok((resp, None));
        }
        let mut retried = false;
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(s) => (s, true),
                // Boxed: connecting (TCP, TLS, handshake) is rare next to reuse, and its future
                // would otherwise be part of every request's.
                None => match Box::pin(self.connect()).await? {
                    Sender::H1(s) => (s, false),
                    Sender::H2(_) => return Err(Error::Internal("h2 connection in h1 pool")),
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        pool: self.clone(),
                        sender: Some(sender),
                    };
                    return Ok((resp, Some(lease)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused && !retried => {
                        tracing::debug!(error = %e.error(), "reused upstream connection failed; retrying");
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(unavailable(e.into_error())),
                },
            }
        }
    }

    /// The most recently returned idle connection that is still open and ready.
    async fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        loop {
            let Idle { sender, since } = self.lock_idle().pop()?;
            if sender.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // Returned a moment ago: its connection task has not yet run to mark it ready.
            tokio::task::yield_now().await;
            if sender.is_ready() {
                return Some(sender);
            }
            // Still busy (an upload the upstream answered early, say): dropping the sender
            // lets that connection close once its exchange ends.
        }
    }

    fn checkin(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() >= self.max_idle {
            // Drop the oldest: the stack's bottom is the least recently used.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // No code panics while holding this lock; a poisoned one still holds a valid Vec.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn h2_sender(&self) -> Result<http2::SendRequest<RequestBody>, Error> {
        let usable = |s: &Option<http2::SendRequest<RequestBody>>| {
            s.as_ref()
                .filter(|s| !s.is_closed() && s.is_ready())
                .cloned()
        };
        if let Some(s) = usable(&self.shared_h2.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(s);
        }
        // One connect at a time; whoever waited finds the fresh connection.
        let _connecting = self.connecting_h2.lock().await;
        if let Some(s) = usable(&self.shared_h2.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(s);
        }
        match Box::pin(self.connect()).await? {
            Sender::H2(s) => {
                *self.shared_h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                Ok(s)
            }
            Sender::H1(_) => Err(Error::Internal("h1 connection for an h2 upstream")),
        }
    }

    /// Opens a connection (TCP, TLS when `https`, then the HTTP handshake) within
    /// `connect_timeout`, and spawns the task that drives it.
    /// Whether the upstream accepts a TCP connection within the connect timeout (for
    /// `/readyz` with `server.ready_requires_upstream`); the connection is closed at once.
    pub async fn accepts_connections(&self) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        matches!(
            tokio::time::timeout(self.connect_timeout, connect).await,
            Ok(Ok(_))
        )
    }

    async fn connect(&self) -> Result<Sender, Error> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| Error::Timeout("connect"))?
    }

    async fn connect_inner(&self) -> Result<Sender, Error> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(unavailable)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(unavailable)?;
                self.handshake(tls).await
            }
        }
    }

    async fn handshake<IO>(&self, io: IO) -> Result<Sender, Error>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if self.http2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .handshake(io)
                .await
                .map_err(unavailable)?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "upstream h2 connection closed with an error");
                }
            });
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new()
                .writev(false)
                .handshake(io)
                .await
                .map_err(unavailable)?;
            tokio::spawn(async move {
                if let Err(error) = conn.with_upgrades().await {
                    tracing::debug!(%error, "upstream connection closed with an error");
                }
            });
            Ok(Sender::H1(sender))
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

// === impl Lease ===

impl Lease {
    /// Returns the connection to the pool: the response body it carried has ended.
    pub fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.checkin(sender);
        }
    }

    /// Gives up the connection (for a protocol upgrade, or a body abandoned midway).
    pub fn discard(mut self) {
        self.sender.take();
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

/// A request body on its way upstream: a client's, streamed (without its trailer fields), or
/// one Portcullis wrote itself (a webhook's JSON). A client's body that is not empty from the start reports when it has
/// been sent in full (or has failed), which is when the response timeout starts; and it fails
/// with [`BodyError::Stalled`] when the client sends nothing for its idle limit while it is
/// being waited for (nginx's `client_body_timeout`), so a trickle that stops cannot hold a
/// connection and an upstream connection for ever.
#[derive(Debug)]
pub struct RequestBody {
    body: Source,
    sent: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
enum Source {
    Client(Client),
    /// The whole body, until its one frame is taken.
    Full(Option<bytes::Bytes>),
}

#[derive(Debug)]
struct Client {
    body: Incoming,
    idle: Duration,
    /// Armed when a read finds nothing to read (made then: a body that never waits, such as
    /// an empty one, costs no timer), fired `idle` later unless a frame came first.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the last read found nothing: the timer runs.
    waiting: bool,
}

/// Why a client's request body failed on its way upstream.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading it from the client failed.
    #[error(transparent)]
    Client(#[from] hyper::Error),
    /// The client sent no byte of it for this long.
    #[error("no byte of the request body arrived for {0:?}")]
    Stalled(Duration),
}

// === impl RequestBody ===

impl RequestBody {
    /// Wraps a client's request body, which fails once the client has sent nothing for
    /// `idle` while the upstream waits for more. The receiver, present when the body is not
    /// empty, resolves once the body has been sent (or dropped).
    pub fn wrap(
        req: Request<Incoming>,
        idle: Duration,
    ) -> (Request<RequestBody>, Option<oneshot::Receiver<()>>) {
        let (tx, rx) = if req.body().is_end_stream() {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let req = req.map(|body| RequestBody {
            body: Source::Client(Client {
                body,
                idle,
                timer: None,
                waiting: false,
            }),
            sent: tx,
        });
        (req, rx)
    }

    /// A body of Portcullis's own, sent in one frame.
    pub fn full(bytes: bytes::Bytes) -> RequestBody {
        RequestBody {
            body: Source::Full(Some(bytes).filter(|b| !b.is_empty())),
            sent: None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
        let client = match &mut self.body {
            Source::Client(client) => client,
            Source::Full(bytes) => {
                return Poll::Ready(bytes.take().map(|b| Ok(http_body::Frame::data(b))))
            }
        };
        let frame = match Pin::new(&mut client.body).poll_frame(cx) {
            // A client's trailer fields are never forwarded: they are the last frame, and an
            // HTTP/2 upstream would get them as a trailing HEADERS frame that no hygiene cleaned
            // (an identity header among them). An HTTP/1.1 upstream never gets them either,
            // since `Trailer` is removed.
            Poll::Ready(Some(Ok(f))) if f.is_trailers() => {
                client.waiting = false;
                None
            }
            Poll::Ready(frame) => {
                client.waiting = false;
                frame
            }
            Poll::Pending => {
                let idle = client.idle;
                let timer = match &mut client.timer {
                    Some(timer) => {
                        // Armed afresh when the wait begins; a wait in progress keeps its end.
                        if !client.waiting {
                            timer.as_mut().reset(tokio::time::Instant::now() + idle);
                        }
                        timer
                    }
                    None => client.timer.insert(Box::pin(tokio::time::sleep(idle))),
                };
                client.waiting = true;
                return match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Stalled(idle)))),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        if matches!(frame, None | Some(Err(_))) || client.body.is_end_stream() {
            if let Some(sent) = self.sent.take() {
                let _ = sent.send(());
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(BodyError::Client)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Source::Client(client) => client.body.is_end_stream(),
            Source::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.body {
            Source::Client(client) => client.body.size_hint(),
            Source::Full(bytes) => {
                http_body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream could not be reached or broke the exchange; the cause is kept for the log.
    #[error("upstream unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The upstream did not connect or answer in time; names the phase.
    #[error("upstream timed out during {0}")]
    Timeout(&'static str),
    /// The pool handed out a connection of the wrong protocol (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// The upstream could not be reached or broke the exchange; the cause is kept for the log.
fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Unavailable(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_host_and_port_come_from_the_url_with_scheme_defaults() {
        let cfg = |url: &str| {
            let text = format!("[upstream]\nurl = \"{url}\"\n[policy]\ndefault = \"public\"\n");
            crate::Config::from_toml(&text, Vec::new(), std::path::Path::new("."))
                .expect("valid")
                .upstream
        };
        let p = Pool::new(&cfg("http://127.0.0.1:3000")).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.tls.is_some()),
            ("127.0.0.1", 3000, false)
        );
        let p = Pool::new(&cfg("http://[::1]")).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 80));
        let p = Pool::new(&cfg("https://app.internal")).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.tls.is_some()),
            ("app.internal", 443, true)
        );
    }
}
