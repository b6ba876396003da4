//! Forwarding to the upstream: target and `Host` rewriting, header hygiene, the pooled client,
//! timeouts, streamed bodies both ways, and protocol upgrades (WebSocket) tunnelled as raw bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::{Error, Result};
use crate::headers;
use crate::metrics::{Metrics, Outcome};
use crate::tls::TlsError;
use crate::upstream::Pool;

/// The upstream and the pool of connections that reach it.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    http2: bool,
    response_timeout: Duration,
}

/// What the proxy knows about the client connection a request came on. Built once per
/// connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address as seen on the socket.
    pub addr: SocketAddr,
    /// Whether the connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// Whether `addr` is in `server.trusted_proxies`.
    pub trusted: bool,
    /// `addr`'s IP as a header value, rendered once per connection for `X-Forwarded-For`.
    pub ip: HeaderValue,
}

// === impl Peer ===

impl Peer {
    /// Describes a client connection from `addr`.
    pub fn new(addr: SocketAddr, tls: bool, trusted: bool) -> Peer {
        let ip = HeaderValue::from_maybe_shared(bytes::Bytes::from(addr.ip().to_string()))
            .expect("an IP address is a valid header value");
        Peer {
            addr,
            tls,
            trusted,
            ip,
        }
    }
}

// === impl Upstream ===

impl Upstream {
    /// Builds the connection pool: keep-alive, connect timeout, TLS for `https://` (custom CA
    /// or system roots), HTTP/2 when configured.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, TlsError> {
        Ok(Upstream {
            pool: Arc::new(Pool::new(cfg)?),
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            base_path: cfg.base_path.clone(),
            http2: cfg.http2,
            response_timeout: cfg.response_timeout,
        })
    }

    /// Forwards `req` and returns the upstream's response with a streamed body. Identity and
    /// hop-by-hop headers are cleaned first; see [`headers::sanitize_request`].
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
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
        headers::set_forwarded(req.headers_mut(), &peer.ip, proto, host.as_ref());
        if let Some(host) = host {
            req.headers_mut().insert(HOST, host);
        }
        *req.uri_mut() = self.target(req.uri())?;
        *req.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };

        let client_upgrade = cleaned
            .upgrade
            .is_some()
            .then(|| hyper::upgrade::on(&mut req));

        let started = Instant::now();
        let sent = tokio::time::timeout(self.response_timeout, self.pool.send(req)).await;
        metrics.upstream_response(started.elapsed());
        let (mut resp, lease) = match sent {
            Ok(answer) => answer?,
            Err(_) => return Err(Error::UpstreamTimeout("response headers")),
        };

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::sanitize_response(resp.headers_mut(), switching);
        if switching {
            // The connection now belongs to the tunnel, never to the pool.
            if let Some(lease) = lease {
                lease.discard();
            }
            let Some(client_upgrade) = client_upgrade else {
                return Err(Error::UpstreamUnavailable(
                    "upstream switched protocols without being asked".into(),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            return Ok((resp.map(|b| Body::stream(b, None)), Outcome::Upgraded));
        }
        Ok((resp.map(|b| Body::stream(b, lease)), Outcome::Forwarded))
    }

    /// The request target at the upstream: the base path, then the client's path and query
    /// unchanged. HTTP/1.1 takes it in origin form; HTTP/2 also needs scheme and authority.
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
        if self.http2 {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
        }
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
