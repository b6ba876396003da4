//! Configuration: the TOML file schema (`FileConfig`) and the validated, typed [`Config`].
//!
//! Precedence, highest first: environment overrides `PORTCULLIS_<SECTION>__<KEY>` (for example
//! `PORTCULLIS_SERVER__LISTEN` or `PORTCULLIS_SERVER__TLS__CERT`), then the file, then the
//! defaults written beside each field below. An override's value is read as a TOML literal when
//! it is one (`true`, `42`, `["10.0.0.0/8"]`) and as a string otherwise (`0.0.0.0:8443`, `30s`).
//!
//! Only this module sees `FileConfig`. A [`Config`] that exists is valid: every check happens in
//! [`Config::from_toml`], and each failure names the key path it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use ipnet::IpNet;
use serde::Deserialize;

/// The environment variable that names the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "PORTCULLIS_CONFIG";
/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "PORTCULLIS_";

/// Why a configuration could not be loaded. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The io error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, one line.
        reason: String,
    },
    /// An environment override could not be applied.
    #[error("{var}: {reason}")]
    Env {
        /// The variable name.
        var: String,
        /// Why.
        reason: String,
    },
    /// A key has a bad value, is unknown, or is missing.
    #[error("{key}: {reason}")]
    Invalid {
        /// The dotted key path, such as `server.tls.cert`.
        key: String,
        /// Why, in one line.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[policy]`.
    pub policy: PolicyConfig,
    /// `[log]`.
    pub log: LogConfig,
}

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
    /// A connection with no request in flight and no bytes moving for this long is closed
    /// (`idle_timeout`, default 60 s). Covers HTTP/2 and clients that never send a byte.
    pub idle_timeout: Duration,
    /// Largest request head accepted, in bytes; larger gets 431 (`max_header_bytes`, default 65536).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run after SIGTERM (`shutdown_grace`, default 10 s).
    pub shutdown_grace: Duration,
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
}

/// `[policy]`: what proxied requests need.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// What an unmatched route needs (`default`).
    pub default: PolicyDefault,
}

/// The policy for routes no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDefault {
    /// Forward without asking who the caller is.
    Public,
    /// Refuse with 403.
    Deny,
}

/// `[log]`: how Portcullis logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `plain` or `json` (`format`, default `plain`).
    pub format: LogFormat,
    /// An `EnvFilter` directive (`filter`, default [`DEFAULT_LOG_FILTER`]); `RUST_LOG` wins.
    pub filter: String,
}

/// The default log filter.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

// === file schema ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    upstream: Option<FileUpstream>,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
    watch_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
    filter: Option<String>,
}

// === impl Config ===

impl Config {
    /// Reads `path`, applies the overrides found in `env` (pass `std::env::vars()`; tests pass
    /// their own list), and validates. Relative file paths inside the config (certificates,
    /// CA bundles) are resolved against the config file's folder.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Config::from_toml(&text, env, base).map_err(|e| match e {
            ConfigError::Syntax { reason, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base`.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: PathBuf::new(),
                    reason: one_line(&e.to_string()),
                })?;
        apply_env(&mut doc, env)?;
        let file: FileConfig =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Invalid {
                    key: if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    reason: one_line(&e.into_inner().to_string()),
                }
            })?;
        Config::try_from_file(file, base)
    }

    fn try_from_file(file: FileConfig, base: &Path) -> Result<Config, ConfigError> {
        let s = file.server;
        let server = ServerConfig {
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
            tls: s
                .tls
                .map(|t| -> Result<TlsConfig, ConfigError> {
                    Ok(TlsConfig {
                        cert: base.join(t.cert),
                        key: base.join(t.key),
                        watch_interval: duration(
                            "server.tls.watch_interval",
                            t.watch_interval.as_deref(),
                            "5s",
                        )?,
                    })
                })
                .transpose()?,
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
        };

        let u = file
            .upstream
            .ok_or_else(|| ConfigError::invalid("upstream.url", "missing: where to forward"))?;
        let (scheme, authority, base_path) = upstream_url(&u.url)?;
        let upstream = UpstreamConfig {
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
        };

        // The contract's default is "authenticated"; until the identity layer exists it cannot
        // be honoured, so it is refused rather than silently downgraded to "public".
        let policy = PolicyConfig {
            default: match file.policy.default.as_deref().unwrap_or("authenticated") {
                "public" => PolicyDefault::Public,
                "deny" => PolicyDefault::Deny,
                "authenticated" => {
                    return Err(ConfigError::invalid(
                        "policy.default",
                        "\"authenticated\" needs the identity layer, which this build does not \
                         have yet; set \"public\" or \"deny\"",
                    ))
                }
                other => {
                    return Err(ConfigError::invalid(
                        "policy.default",
                        format!("{other:?} is not one of \"deny\", \"authenticated\", \"public\""),
                    ))
                }
            },
        };

        let log = LogConfig {
            format: match file.log.format.as_deref().unwrap_or("plain") {
                "plain" => LogFormat::Plain,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::invalid(
                        "log.format",
                        format!("{other:?} is not one of \"plain\", \"json\""),
                    ))
                }
            },
            filter: file
                .log
                .filter
                .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()),
        };

        Ok(Config {
            server,
            upstream,
            policy,
            log,
        })
    }
}

/// Applies `PORTCULLIS_<SECTION>__<KEY>` overrides to the parsed document.
fn apply_env(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // Sorted so that the outcome never depends on the order the OS lists variables in.
    // Only `PORTCULLIS_<SECTION>__<KEY>` is an override. Other `PORTCULLIS_*` variables are
    // not ours to judge: Kubernetes, for one, injects `PORTCULLIS_SERVICE_HOST` and friends
    // for a Service named portcullis.
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV && k.contains("__"))
        .collect();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                reason: "expected PORTCULLIS_<SECTION>__<KEY>".into(),
            });
        }
        let value = env_value(&raw);
        let (last, sections) = path.split_last().expect("path has at least two parts");
        let mut table = &mut *doc;
        for section in sections {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        reason: format!("{section} is not a section"),
                    })
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(())
}

fn env_value(raw: &str) -> toml::Value {
    let literal = matches!(raw, "true" | "false")
        || raw.starts_with('[')
        || raw.starts_with('"')
        || (!raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()));
    if literal {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_owned())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn addr(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or(default);
    v.parse()
        .map_err(|_| ConfigError::invalid(key, format!("{v:?} is not an IP:port address")))
}

fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    let d = humantime::parse_duration(v)
        .map_err(|e| ConfigError::invalid(key, format!("{v:?} is not a duration ({e})")))?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be longer than zero"));
    }
    Ok(d)
}

fn positive(key: &str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::invalid(key, "must be at least 1")),
        n => Ok(n),
    }
}

fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
}

fn upstream_url(url: &str) -> Result<(Scheme, Authority, String), ConfigError> {
    let key = "upstream.url";
    let uri: Uri = url
        .parse()
        .map_err(|e| ConfigError::invalid(key, format!("{url:?} is not a URL ({e})")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => {
            return Err(ConfigError::invalid(
                key,
                "must start with http:// or https://",
            ))
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::invalid(key, "has no host"))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::invalid(key, "must not carry credentials"));
    }
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

#[cfg(test)]
mod tests;
