//! `[server]` and `[server.tls]`: the client-side listeners, their limits and timeouts, the
//! proxies whose forwarding headers are believed, and the certificate files.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{duration, positive, ConfigError};

/// `[server]`: listeners, limits and timeouts of the client side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Main listener address (`listen`, default `0.0.0.0:8443`).
    pub listen: SocketAddr,
    /// Admin listener address (`admin_listen`, default `127.0.0.1:9901`).
    pub admin_listen: SocketAddr,
    /// Peers whose `X-Forwarded-*` headers are believed (`trusted_proxies`, CIDRs or addresses).
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on the main listener (`[server.tls]`); `None` serves plain HTTP (and h2c).
    pub tls: Option<TlsConfig>,
    /// Cap on open client connections (`max_connections`, default 10000).
    pub max_connections: usize,
    /// Worker threads (`workers`, default: the CPUs this process may use, which follows
    /// affinity and cgroup limits). With one worker the runtime is single-threaded, which is
    /// the fastest way to use one core.
    pub workers: usize,
    /// Time allowed for a TLS handshake (`tls_handshake_timeout`, default 10 s).
    pub tls_handshake_timeout: Duration,
    /// Time allowed for a request head once the connection is ready for one
    /// (`header_read_timeout`, default 30 s). On HTTP/1.1 it also bounds an idle keep-alive wait.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and none started for this long is closed, after
    /// one to one and a half times it (`idle_timeout`, default 60 s; bytes alone, such as HTTP/2
    /// PINGs, do not count). Covers HTTP/2 and clients that never send a byte.
    pub idle_timeout: Duration,
    /// Largest request head accepted, in bytes; larger gets 431 (`max_header_bytes`, default 65536).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run after SIGTERM (`shutdown_grace`, default 10 s).
    pub shutdown_grace: Duration,
    /// Whether `/readyz` also needs the upstream to accept a TCP connection
    /// (`ready_requires_upstream`, default false).
    pub ready_requires_upstream: bool,
}

/// `[server.tls]`: certificate and key files, watched for changes.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain (`cert`).
    pub cert: PathBuf,
    /// PEM private key (`key`).
    pub key: PathBuf,
    /// How often the files are checked for a new pair (`watch_interval`, default 5 s).
    pub watch_interval: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    tls: Option<FileTls>,
    max_connections: Option<usize>,
    workers: Option<usize>,
    tls_handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_header_bytes: Option<usize>,
    shutdown_grace: Option<String>,
    ready_requires_upstream: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
    watch_interval: Option<String>,
}

/// Validates `[server]`; relative certificate paths resolve against `base`.
pub(super) fn parse(s: FileServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    Ok(ServerConfig {
        listen: addr("server.listen", s.listen.as_deref(), "0.0.0.0:8443")?,
        admin_listen: addr(
            "server.admin_listen",
            s.admin_listen.as_deref(),
            "127.0.0.1:9901",
        )?,
        trusted_proxies: s
            .trusted_proxies
            .iter()
            .map(|p| cidr(p).map_err(|r| ConfigError::invalid("server.trusted_proxies", r)))
            .collect::<Result<_, _>>()?,
        tls: s.tls.map(|t| tls(t, base)).transpose()?,
        max_connections: positive("server.max_connections", s.max_connections, 10_000)?,
        workers: positive(
            "server.workers",
            s.workers,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )?,
        tls_handshake_timeout: duration(
            "server.tls_handshake_timeout",
            s.tls_handshake_timeout.as_deref(),
            "10s",
        )?,
        header_read_timeout: duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            "30s",
        )?,
        idle_timeout: duration("server.idle_timeout", s.idle_timeout.as_deref(), "60s")?,
        max_header_bytes: match s.max_header_bytes.unwrap_or(64 * 1024) {
            n @ 8192..=1_048_576 => n,
            n => {
                return Err(ConfigError::invalid(
                    "server.max_header_bytes",
                    format!("{n} is outside 8192..=1048576"),
                ))
            }
        },
        shutdown_grace: duration("server.shutdown_grace", s.shutdown_grace.as_deref(), "10s")?,
        ready_requires_upstream: s.ready_requires_upstream.unwrap_or(false),
    })
}

fn tls(t: FileTls, base: &Path) -> Result<TlsConfig, ConfigError> {
    Ok(TlsConfig {
        cert: base.join(t.cert),
        key: base.join(t.key),
        watch_interval: duration(
            "server.tls.watch_interval",
            t.watch_interval.as_deref(),
            "5s",
        )?,
    })
}

fn addr(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or(default);
    v.parse()
        .map_err(|_| ConfigError::invalid(key, format!("{v:?} is not an IP:port address")))
}

fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
}
