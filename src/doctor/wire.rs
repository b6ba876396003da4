//! The doctor's HTTP/1.1 client: requests written as raw bytes over TCP or TLS, so that header
//! spellings go out exactly as written, and answers read until the server closes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Answer, Args, Target, STEP};

/// A raw HTTP/1.1 request: the header lines are written exactly as given.
pub(super) fn request(target: &Target, args: &Args, path: &str, lines: &[String]) -> Vec<u8> {
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCoder-Session-Token: {}\r\n",
        target.host, args.token
    );
    for line in lines {
        raw.push_str(line);
        raw.push_str("\r\n");
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw.into_bytes()
}

pub(super) async fn connect(addr: &str) -> Result<TcpStream, String> {
    tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: connect timed out"))?
        .map_err(|e| format!("{addr}: {e}"))
}

pub(super) async fn exchange(target: &Target, raw: &[u8]) -> Result<Answer, String> {
    let tcp = connect(&target.addr).await?;
    match &target.tls {
        None => talk(tcp, raw).await,
        Some((connector, name)) => {
            let tls = tokio::time::timeout(STEP, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS: {e}"))?;
            talk(tls, raw).await
        }
    }
}

/// Writes `raw`, reads until the server closes, and parses the response.
pub(super) async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    raw: &[u8],
) -> Result<Answer, String> {
    let io = async {
        s.write_all(raw).await?;
        s.flush().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => return Ok(buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A TLS peer that closes without close_notify still sent its answer.
                Err(e) if !buf.is_empty() => {
                    tracing::debug!(error = %e, "the answer ended with an error");
                    return Ok(buf);
                }
                Err(e) => return Err(e),
            }
        }
    };
    let buf = match tokio::time::timeout(STEP, io).await {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no complete answer in time".into()),
    };
    parse(&buf).ok_or_else(|| "not an HTTP response".to_owned())
}

fn parse(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let rest = &buf[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

// === impl Target ===

impl Target {
    pub(super) fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("--url {url:?}: must be http:// or https://")),
        };
        let authority = uri.authority().ok_or(format!("--url {url:?}: no host"))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{host}:{port}"),
        };
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
                {
                    let cert = cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let tls = if https {
            let name =
                ServerName::try_from(host.to_owned()).map_err(|e| format!("--url {url:?}: {e}"))?;
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target {
            host: authority.as_str().to_owned(),
            addr,
            tls,
            roots: Arc::new(roots),
        })
    }
}
