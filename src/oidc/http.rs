//! The HTTP client the OpenID Connect library calls the provider with: hyper's HTTP/1.1
//! connection API over tokio TCP, and rustls (ring) for `https://`, as the upstream pool does.
//!
//! Calls to the provider are rare (discovery, keys, one code exchange per login, refreshes), so
//! each opens its own connection and nothing is pooled. Every call is bounded as a whole by
//! `oidc.request_timeout` (connect, TLS, request, response head and body), and a response body
//! larger than [`MAX_BODY`] is refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Scheme};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{self, TlsError};

/// Largest response body read from the provider.
pub const MAX_BODY: usize = 1024 * 1024;

/// An HTTP client for the provider.
#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    timeout: Duration,
}

/// Why a call to the provider failed. None of these is the provider refusing something: they
/// mean it could not be asked, or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/...`.
    #[error("bad provider URL: {0}")]
    Url(String),
    /// The call did not complete within `oidc.request_timeout`.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS, or the HTTP exchange failed.
    #[error("{0}")]
    Io(String),
    /// The body is larger than [`MAX_BODY`].
    #[error("the provider's response is larger than {MAX_BODY} bytes")]
    TooLarge,
}

// === impl HttpClient ===

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client trusting `ca_file` alone when given, else the system roots.
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<Self, TlsError> {
        let mut config = tls::upstream_client_config(ca_file)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpClient {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// Sends `req` and reads the whole response, within the timeout.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        tokio::time::timeout(self.timeout, self.exchange(req))
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    async fn exchange(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = req.uri().clone();
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(HttpError::Url(uri.to_string())),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| HttpError::Url(uri.to_string()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let (mut parts, body) = req.into_parts();
        parts.uri = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
            .into();
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| HttpError::Url(uri.to_string()))?;
        parts.headers.insert(HOST, host_header);
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Io(format!("connect to {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if https {
            let name =
                ServerName::try_from(host.clone()).map_err(|_| HttpError::Url(uri.to_string()))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Io(format!("tls with {host}: {e}")))?;
            round_trip(tls, req).await
        } else {
            round_trip(tcp, req).await
        }
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// One HTTP/1.1 exchange on `io`, reading the body to its end (at most [`MAX_BODY`]).
async fn round_trip<IO>(io: IO, req: http::Request<Full<Bytes>>) -> Result<HttpResponse, HttpError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io_error = |e: hyper::Error| HttpError::Io(e.to_string());
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(io_error)?;
    // Aborted when this exchange ends, however it ends (the caller's timeout drops it).
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let resp = sender.send_request(req).await.map_err(io_error)?;
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => HttpError::TooLarge,
            Err(e) => HttpError::Io(e.to_string()),
        })?
        .to_bytes();
    Ok(http::Response::from_parts(parts, bytes.to_vec()))
}

/// Aborts the connection task it holds when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
