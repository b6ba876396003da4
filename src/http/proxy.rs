//! Forwarding to the upstream: target and `Host` rewriting, header hygiene, the pooled client,
//! timeouts, streamed bodies both ways, and protocol upgrades (WebSocket) handed to a
//! [`Tunnel`]. A session's streaming response or tunnel is watched ([`crate::http::watch`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST, UPGRADE, VIA};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::auth::session::Authenticated;
use crate::auth::token;
use crate::config::UpstreamConfig;
use crate::headers;
use crate::http::admit;
use crate::http::app::App;
use crate::http::body::Body;
use crate::http::error::{Error, Result};
use crate::http::peer::Peer;
use crate::http::tunnel::Tunnel;
use crate::http::watch::{Ticket, Watch};
use crate::metrics::Outcome;
use crate::tls::TlsError;
use crate::upstream::{Pool, RequestBody};

/// The upstream and the pool of connections that reach it.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    /// `Host` for clients that sent none (HTTP/1.0): the upstream's own authority.
    host: HeaderValue,
    http2: bool,
    response_timeout: Duration,
    via: Via,
}

/// This process's entries for `Via` (RFC 9110 §7.6.3): the protocol version the message was
/// received with, then a pseudonym drawn at start-up, which names no host and no version.
/// Seeing its own pseudonym on a request means the request went round a loop.
#[derive(Debug)]
struct Via {
    pseudonym: String,
    h10: HeaderValue,
    h11: HeaderValue,
    h2: HeaderValue,
}

// === impl Via ===

impl Via {
    fn new() -> Via {
        let mut bytes = [0u8; 4];
        // Uniqueness, not secrecy: should the OS generator fail, the process id and the
        // clock still tell two processes apart.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            bytes = (std::process::id() ^ nanos).to_le_bytes();
        }
        let pseudonym = format!("portcullis-{}", hex::encode(bytes));
        let entry = |proto: &str| {
            HeaderValue::from_str(&format!("{proto} {pseudonym}"))
                .expect("a version and a hex pseudonym are a valid header value")
        };
        Via {
            h10: entry("1.0"),
            h11: entry("1.1"),
            h2: entry("2"),
            pseudonym,
        }
    }

    /// Our entry for a message received with `version`.
    fn entry(&self, version: Version) -> HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => self.h10.clone(),
            Version::HTTP_2 | Version::HTTP_3 => self.h2.clone(),
            _ => self.h11.clone(),
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
            host: HeaderValue::from_str(cfg.authority.as_str())
                .expect("a parsed authority is a valid header value"),
            http2: cfg.http2,
            response_timeout: cfg.response_timeout,
            via: Via::new(),
        })
    }

    /// Whether the upstream accepts a connection now (see [`Pool::accepts_connections`]).
    pub async fn accepts_connections(&self) -> bool {
        self.pool.accepts_connections().await
    }

    /// `508` when the request already passed through this process: its `Via` names our
    /// pseudonym, so the upstream leads back here. Checked before anything else is done, so a
    /// loop costs one extra hop and no more.
    pub fn check_loop(&self, headers: &http::HeaderMap) -> Result<()> {
        for value in headers.get_all(VIA) {
            let Ok(text) = value.to_str() else { continue };
            let ours = text
                .split(',')
                .any(|hop| hop.split_whitespace().nth(1) == Some(&self.via.pseudonym));
            if ours {
                return Err(Error::Loop);
            }
        }
        Ok(())
    }

    /// Forwards `req` and returns the upstream's response with a streamed body. Identity and
    /// hop-by-hop headers are cleaned first (see [`headers::sanitize_request`]); then an
    /// authenticated request gets its session's identity headers, and the identity assertion
    /// when `identity.assertion_key` is set.
    ///
    /// The response timeout starts once the request, body included, has been handed to the
    /// upstream connection: a slow upload is not a slow upstream.
    ///
    /// With a `ticket` (a session's request), a tunnel or a streaming response is watched and
    /// closed when the session no longer allows it.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        app: &App,
        auth: Option<&Authenticated>,
        ticket: Option<Ticket>,
    ) -> Result<(Response<Body>, Outcome)> {
        let cleaned = self.prepare(&mut req, peer, app, auth, &mut ())?;

        let client_upgrade = cleaned
            .upgrade
            .clone()
            .map(|offered| (offered, hyper::upgrade::on(&mut req)));

        let started = Instant::now();
        let (req, body_sent) = RequestBody::wrap(req, app.config.server.idle_timeout);
        let send = self.pool.send(req);
        let answer = match body_sent {
            None => tokio::time::timeout(self.response_timeout, send).await.ok(),
            Some(body_sent) => {
                let deadline = async {
                    // Resolves when the body has been sent, or has failed.
                    let _ = body_sent.await;
                    tokio::time::sleep(self.response_timeout).await;
                };
                tokio::select! {
                    answer = send => Some(answer),
                    () = deadline => None,
                }
            }
        };
        let (mut resp, lease) = match answer {
            Some(Ok(answer)) => answer,
            // A client body that broke the exchange (bad chunked encoding, cut off, stalled)
            // is the client's fault: see `Error::from(upstream::Error)`.
            Some(Err(e)) => return Err(e.into()),
            None => return Err(Error::UpstreamTimeout("response headers")),
        };
        app.metrics.upstream_response(started.elapsed());

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::sanitize_response(resp.headers_mut(), switching);
        let answered = self.via.entry(resp.version());
        resp.headers_mut().append(VIA, answered);
        if switching {
            // The connection now belongs to the tunnel, never to the pool.
            if let Some(lease) = lease {
                lease.discard();
            }
            let Some((offered, client_upgrade)) = client_upgrade else {
                return Err(Error::UpstreamUnavailable(
                    "upstream switched protocols without being asked".into(),
                ));
            };
            if !headers::upgrade_agrees(&offered, resp.headers().get(UPGRADE)) {
                return Err(Error::UpstreamUnavailable(
                    "upstream switched to a protocol the client did not offer".into(),
                ));
            }
            // A tunnel is a client connection too: it takes a permit of its own.
            let permit = app
                .connections
                .clone()
                .try_acquire_owned()
                .map_err(|_| Error::Overloaded)?;
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let websocket = resp
                .headers()
                .get(UPGRADE)
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
            let tunnel = Tunnel::new(
                app.config.server.idle_timeout,
                app.metrics.clone(),
                permit,
                ticket,
                websocket,
            );
            tokio::spawn(tunnel.run(client_upgrade, upstream_upgrade));
            return Ok((resp.map(|b| Body::stream(b, None)), Outcome::Upgraded));
        }
        let resp = resp.map(|b| {
            let body = Body::stream(b, lease);
            match ticket {
                Some(ticket) => body.watched(Watch::new(ticket)),
                None => body,
            }
        });
        Ok((resp, Outcome::Forwarded))
    }

    /// Rewrites the head of `req` into what the upstream receives: header hygiene
    /// ([`headers::sanitize_request_traced`], each removal told to `trace`), `Via`, the
    /// client's Portcullis token removed (unless `upstream.pass_token`), `X-Forwarded-*`, the
    /// identity headers and assertion of `auth`, `Host`, the upstream target and version.
    /// [`Upstream::forward`] sends what this made; `portcullis explain` shows it.
    pub fn prepare<B, T: headers::Removals>(
        &self,
        req: &mut Request<B>,
        peer: &Peer,
        app: &App,
        auth: Option<&Authenticated>,
        trace: &mut T,
    ) -> Result<headers::Sanitized> {
        let host = effective_host(req)?;
        let upstream = &app.config.upstream;
        let cleaned = headers::sanitize_request_traced(
            req.headers_mut(),
            headers::Hygiene {
                trusted_peer: peer.trusted,
                upgrade_protocols: &upstream.upgrade_protocols,
                pass_overrides: upstream.danger_pass_override_headers,
            },
            trace,
        );
        let received = self.via.entry(req.version());
        req.headers_mut().append(VIA, received);
        if !app.config.upstream.pass_token {
            let before = T::ACTIVE.then(|| req.headers().clone());
            let mut uri = std::mem::take(req.uri_mut());
            token::strip_credentials(req.headers_mut(), &mut uri);
            *req.uri_mut() = uri;
            for (name, value) in before.iter().flatten() {
                let after = req.headers().get_all(name);
                if !after.iter().any(|v| v == value) {
                    trace.removed(name, headers::Removed::Credentials);
                }
            }
        }
        if cleaned.spoofed_identity > 0 || cleaned.overrides > 0 {
            tracing::debug!(
                identity = cleaned.spoofed_identity,
                overrides = cleaned.overrides,
                peer = %peer.addr,
                "removed identity or override headers sent by the client"
            );
        }
        let proto = if peer.tls { "https" } else { "http" };
        headers::set_forwarded(req.headers_mut(), &peer.ip, proto, host.as_ref());
        // An HTTP/1.0 client may send no Host; the upstream gets HTTP/1.1, which requires one.
        let host = host.unwrap_or_else(|| self.host.clone());
        if let Some(auth) = auth {
            let https = headers::forwarded_https(req.headers(), peer.tls);
            admit::identify(
                req.headers_mut(),
                auth,
                &app.config.identity,
                Some(&host),
                https,
            )?;
        }
        req.headers_mut().insert(HOST, host);
        *req.uri_mut() = self.target(req.uri())?;
        *req.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        Ok(cleaned)
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
                .map_err(|e| Error::internal(format!("joining the upstream path: {e}")))?
        };
        let mut parts = http::uri::Parts::default();
        if self.http2 {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
        }
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts)
            .map_err(|e| Error::internal(format!("building the upstream uri: {e}")))
    }
}

/// The host the client asked for, checked (RFC 9112 §3.2, RFC 9113 §8.3.1):
/// - more than one `Host` → 400;
/// - userinfo (`user@`) in `Host` or in the target's authority → 400: it is no part of a host
///   (RFC 9110 §4.2.4, §7.2), and a reader that stops at `@` sees another host than one that
///   does not;
/// - an absolute-form target or an HTTP/2 `:authority` wins over `Host` (HTTP/2: a `Host` that
///   names another host → 400);
/// - HTTP/1.1 without either → 400; HTTP/1.0 without either → `None` (the upstream's own).
fn effective_host<B>(req: &Request<B>) -> Result<Option<HeaderValue>> {
    let mut all = req.headers().get_all(HOST).iter();
    let header = all.next();
    if all.next().is_some() {
        return Err(Error::HostConflict);
    }
    if header.is_some_and(|h| h.as_bytes().contains(&b'@')) {
        return Err(Error::HostInvalid);
    }
    if let Some(authority) = req.uri().authority() {
        if authority.as_str().contains('@') {
            return Err(Error::HostInvalid);
        }
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

/// Answers 431 for an HTTP/2 request head over `max` bytes, counted as HPACK does (RFC 9113
/// §6.5.2: name + value + 32 per field). hyper enforces the limit itself on HTTP/1.1.
pub fn check_head_size(req: &Request<Incoming>, max: usize) -> Result<()> {
    if req.version() != Version::HTTP_2 {
        return Ok(());
    }
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    if fields + req.uri().to_string().len() > max {
        return Err(Error::HeadersTooLarge);
    }
    Ok(())
}

/// Refuses methods a reverse proxy must not forward: `TRACE` would reflect the client's
/// credentials back (and identity headers we add), `CONNECT` would open a tunnel anywhere.
pub fn check_method(method: &Method) -> Result<()> {
    if method == Method::TRACE || method == Method::CONNECT {
        return Err(Error::MethodNotAllowed(method.clone()));
    }
    Ok(())
}
