//! `[upstream]`: where authorized traffic goes, and how the connection pool to it behaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use serde::Deserialize;

use super::{duration, http_url, ConfigError};

/// `[upstream]`: where authorized traffic goes.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme of the upstream (`http` or `https`).
    pub scheme: Scheme,
    /// Host and port of the upstream.
    pub authority: Authority,
    /// Path prefix prepended to every forwarded path (empty, or starting with `/` and not
    /// ending with one).
    pub base_path: String,
    /// Speak HTTP/2 to the upstream (`http2`, default false): prior knowledge on `http://`,
    /// ALPN on `https://`. For gRPC backends.
    pub http2: bool,
    /// Trust only this CA bundle for an `https://` upstream (`ca_file`); default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed to connect (`connect_timeout`, default 5 s); exceeded → 504.
    pub connect_timeout: Duration,
    /// Time allowed for the response head after the request is sent (`response_timeout`,
    /// default 60 s); exceeded → 504.
    pub response_timeout: Duration,
    /// Idle pooled connections are closed after this long (`pool_idle_timeout`, default 90 s).
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept at most (`pool_max_idle`, default 256).
    pub pool_max_idle: usize,
    /// Forward the client's Portcullis cookie and token too (`pass_token`, default false).
    pub pass_token: bool,
    /// The protocols a client may upgrade to through Portcullis (`upgrade_protocols`, default
    /// `["websocket"]`), lower case. Any other `Upgrade` (such as `h2c`) is removed and the
    /// request forwarded as plain HTTP/1.1.
    pub upgrade_protocols: Vec<String>,
    /// Forward headers that make frameworks re-route a request (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, ...; `danger_pass_override_headers`, default false).
    pub danger_pass_override_headers: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    url: String,
    #[serde(default)]
    http2: bool,
    ca_file: Option<PathBuf>,
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    pool_idle_timeout: Option<String>,
    pool_max_idle: Option<usize>,
    #[serde(default)]
    pass_token: bool,
    upgrade_protocols: Option<Vec<String>>,
    #[serde(default)]
    danger_pass_override_headers: bool,
}

/// Validates `[upstream]`, which is required; a relative `ca_file` resolves against `base`.
pub(super) fn parse(u: Option<FileUpstream>, base: &Path) -> Result<UpstreamConfig, ConfigError> {
    let u = u.ok_or_else(|| ConfigError::invalid("upstream.url", "missing: where to forward"))?;
    let (scheme, authority, base_path) = upstream_url(&u.url)?;
    Ok(UpstreamConfig {
        scheme,
        authority,
        base_path,
        http2: u.http2,
        ca_file: u.ca_file.map(|p| base.join(p)),
        connect_timeout: duration(
            "upstream.connect_timeout",
            u.connect_timeout.as_deref(),
            "5s",
        )?,
        response_timeout: duration(
            "upstream.response_timeout",
            u.response_timeout.as_deref(),
            "60s",
        )?,
        pool_idle_timeout: duration(
            "upstream.pool_idle_timeout",
            u.pool_idle_timeout.as_deref(),
            "90s",
        )?,
        pool_max_idle: u.pool_max_idle.unwrap_or(256),
        pass_token: u.pass_token,
        upgrade_protocols: upgrade_protocols(u.upgrade_protocols)?,
        danger_pass_override_headers: u.danger_pass_override_headers,
    })
}

/// `upstream.upgrade_protocols`: protocol names (RFC 9110 §7.8 tokens, without a version),
/// kept in lower case. `h2c` is refused: a tunnel of HTTP/2 requests would carry requests
/// Portcullis never judged.
fn upgrade_protocols(list: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let key = "upstream.upgrade_protocols";
    let list = list.unwrap_or_else(|| vec!["websocket".to_owned()]);
    list.into_iter()
        .map(|p| {
            let name = p.trim().to_ascii_lowercase();
            if name.is_empty()
                || name.contains(|c: char| !c.is_ascii_graphic() || "/,;".contains(c))
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{p:?} is not a protocol name (a token such as \"websocket\")"),
                ));
            }
            if name == "h2c" || name.starts_with("http") {
                return Err(ConfigError::invalid(
                    key,
                    format!("{p:?} would tunnel HTTP requests that Portcullis never judges"),
                ));
            }
            Ok(name)
        })
        .collect()
}

fn upstream_url(url: &str) -> Result<(Scheme, Authority, String), ConfigError> {
    let key = "upstream.url";
    let (scheme, authority, uri) = http_url(key, url)?;
    if uri.query().is_some() {
        return Err(ConfigError::invalid(key, "must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    // Checked now so that joining it with a request path can never fail later.
    if !base_path.is_empty() && base_path.parse::<PathAndQuery>().is_err() {
        return Err(ConfigError::invalid(key, "has an invalid path"));
    }
    Ok((scheme, authority, base_path))
}
