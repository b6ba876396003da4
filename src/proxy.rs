//! Forwarding to the upstream: target and `Host` rewriting, header hygiene, the pooled client,
//! timeouts, streamed bodies both ways, and protocol upgrades (WebSocket) tunnelled as raw bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::{Error, Result};
use crate::headers;
use crate::metrics::{Metrics, Outcome};
use crate::tls::{self, TlsError};

/// The upstream and the pooled client that reaches it.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    version: Version,
    response_timeout: Duration,
}

/// What the proxy knows about the client connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address as seen on the socket.
    pub addr: SocketAddr,
    /// Whether the connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// Whether `addr` is in `server.trusted_proxies`.
    pub trusted: bool,
}

// === impl Upstream ===

impl Upstream {
    /// Builds the client: keep-alive pool, connect timeout, TLS for `https://` (custom CA or
    /// system roots), HTTP/2 when configured.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::upstream_client_config(cfg.ca_file.as_deref())?)
            .https_or_http();
        let connector = if cfg.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .http2_only(cfg.http2)
            // The client's own Host is kept; never replace it with the upstream's.
            .set_host(false)
            .build(connector);
        Ok(Upstream {
            client,
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            base_path: cfg.base_path.clone(),
            version: if cfg.http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            response_timeout: cfg.response_timeout,
        })
    }

    /// Forwards `req` and returns the upstream's response with a streamed body. Identity and
    /// hop-by-hop headers are cleaned first; see [`headers::sanitize_request`].
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: Peer,
        metrics: &Metrics,
    ) -> Result<(Response<Body>, Outcome)> {
        let host = effective_host(&req)?;
        let cleaned = headers::sanitize_request(req.headers_mut(), peer.trusted);
        if cleaned.spoofed_identity > 0 {
            tracing::debug!(
                count = cleaned.spoofed_identity,
                peer = %peer.addr,
                "removed identity headers sent by the client"
            );
        }
        let proto = if peer.tls { "https" } else { "http" };
        headers::set_forwarded(req.headers_mut(), peer.addr.ip(), proto, host.as_ref());
        if let Some(host) = host {
            req.headers_mut().insert(HOST, host);
        }
        *req.uri_mut() = self.target(req.uri())?;
        *req.version_mut() = self.version;

        let client_upgrade = cleaned
            .upgrade
            .is_some()
            .then(|| hyper::upgrade::on(&mut req));

        let started = Instant::now();
        let sent = tokio::time::timeout(self.response_timeout, self.client.request(req)).await;
        metrics.upstream_response(started.elapsed());
        let mut resp = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(classify(e)),
            Err(_) => return Err(Error::UpstreamTimeout("response headers")),
        };

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::sanitize_response(resp.headers_mut(), switching);
        let mut outcome = Outcome::Forwarded;
        if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
            outcome = Outcome::Upgraded;
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
        }
        Ok((resp.map(Body::stream), outcome))
    }

    /// The request target at the upstream: its scheme and authority, the base path, then the
    /// client's path and query unchanged.
    fn target(&self, uri: &Uri) -> Result<Uri> {
        let pq = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let pq = if self.base_path.is_empty() {
            pq
        } else {
            let joined = format!("{}{}", self.base_path, pq.as_str());
            PathAndQuery::try_from(joined)
                .map_err(|e| Error::Internal(format!("joining the upstream path: {e}")))?
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts)
            .map_err(|e| Error::Internal(format!("building the upstream uri: {e}")))
    }
}

/// The host the client asked for, checked (RFC 9112 §3.2, RFC 9113 §8.3.1):
/// - more than one `Host` → 400;
/// - an absolute-form target or an HTTP/2 `:authority` wins over `Host` (HTTP/2: a `Host` that
///   names another host → 400);
/// - HTTP/1.1 without either → 400; HTTP/1.0 without either → `None` (the upstream's own).
fn effective_host(req: &Request<Incoming>) -> Result<Option<HeaderValue>> {
    let mut all = req.headers().get_all(HOST).iter();
    let header = all.next();
    if all.next().is_some() {
        return Err(Error::HostConflict);
    }
    if let Some(authority) = req.uri().authority() {
        if req.version() == Version::HTTP_2 {
            if let Some(h) = header {
                if !h
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
                {
                    return Err(Error::HostConflict);
                }
                return Ok(Some(h.clone()));
            }
        }
        let host = match authority.port() {
            Some(port) => format!("{}:{}", authority.host(), port),
            None => authority.host().to_owned(),
        };
        return HeaderValue::try_from(host)
            .map(Some)
            .map_err(|_| Error::HostInvalid);
    }
    match header {
        Some(h) if Authority::try_from(h.as_bytes()).is_ok() && !h.is_empty() => {
            Ok(Some(h.clone()))
        }
        Some(_) => Err(Error::HostInvalid),
        None if req.version() <= Version::HTTP_10 => Ok(None),
        None => Err(Error::HostMissing),
    }
}

/// Refuses methods a reverse proxy must not forward: `TRACE` would reflect the client's
/// credentials back (and identity headers we add), `CONNECT` would open a tunnel anywhere.
pub fn check_method(method: &Method) -> Result<()> {
    if method == Method::TRACE || method == Method::CONNECT {
        return Err(Error::MethodNotAllowed(method.clone()));
    }
    Ok(())
}

fn classify(e: hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Error::UpstreamTimeout("connect");
            }
        }
        source = s.source();
    }
    Error::UpstreamUnavailable(Box::new(e))
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections until
/// either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
            }
        }
        Err(error) => tracing::debug!(%error, "protocol upgrade did not complete"),
    }
}
