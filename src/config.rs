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

mod identity;
mod oidc;
mod otp;

pub use oidc::{OidcConfig, MAX_CONVERT_STATE_TTL};
pub use otp::{read_secret_file, OtpConfig, OtpDelivery, SmtpConfig, SmtpTls, WebhookConfig};

/// The environment variable that names the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "PORTCULLIS_CONFIG";
/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "PORTCULLIS_";

/// The longest key lifetime a config may name (1000 years): any expiry it gives is a valid
/// timestamp.
const MAX_KEY_LIFETIME: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

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
    /// `[store]`.
    pub store: StoreConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[identity]`.
    pub identity: IdentityConfig,
    /// `[passwords]`.
    pub passwords: PasswordsConfig,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitConfig,
    /// `[tokens]`.
    pub tokens: TokensConfig,
    /// `[oidc]`: single sign-on; `None` when the section is absent.
    pub oidc: Option<OidcConfig>,
    /// `[otp]`.
    pub otp: OtpConfig,
}

/// `[api]`: where the Coder-compatible API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Path prefix of the API (`prefix`, default `/api/v2`); starts with `/`, no trailing `/`.
    pub prefix: String,
}

/// `[session]`: browser sessions from password login (spec §3.4-3.5).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long a login session lasts, sliding with use (`lifetime`, default 24 h).
    pub lifetime: Duration,
    /// `Secure` on the session cookie (`cookie_secure`, default true).
    pub cookie_secure: bool,
    /// `SameSite` of the session cookie (`cookie_same_site`: `Lax` (default), `Strict`, `None`).
    pub cookie_same_site: &'static str,
}

/// `[identity]`: what authenticated requests carry upstream.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `headers`: `forwarded` (default), `remote` or `none`.
    pub headers: crate::headers::IdentityStyle,
    /// The signer of `X-Portcullis-Assertion` (`assertion_key`: PEM file(s), the first signs;
    /// `issuer`, default `portcullis`); `None` when no key is configured.
    pub assertion: Option<std::sync::Arc<crate::assertion::Signer>>,
}

/// `[passwords]`: password login and hashing.
#[derive(Debug, Clone)]
pub struct PasswordsConfig {
    /// Refuse password logins (`disable_password_auth`, default false).
    pub disable_password_auth: bool,
    /// argon2id and concurrency parameters (`argon2_memory_kib` 19456, `argon2_iterations` 2,
    /// `argon2_parallelism` 1, `max_concurrent` = CPUs, `queue` 64).
    pub params: crate::auth::PasswordParams,
    /// Rules on top of Coder's strength rule for new passwords (`min_length`, 0 = off;
    /// `blocklist`, `reject_user_info`, both false): all off by default, for Coder's verdicts.
    pub policy: crate::auth::PasswordPolicy,
}

/// `[rate_limit]`: abuse limits shared by every replica through the store.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Login-group requests per client IP per minute (`login_per_minute`, default 60; 0 = off).
    pub login_per_minute: u64,
    /// Failed logins per account within `account_window` before it is throttled
    /// (`account_failures`, default 10; 0 = off).
    pub account_failures: u64,
    /// The window of `account_failures` (`account_window`, default 5 m).
    pub account_window: Duration,
}

/// `[tokens]`: lifetimes of API keys that are not login sessions (spec §7.3, §7.5).
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// Lifetime of a new key when none is asked for (`default_lifetime`, default 168 h): keys
    /// from `POST /users/{user}/keys` and `portcullis token create` without `--lifetime`. At
    /// most `max_lifetime`.
    pub default_lifetime: Duration,
    /// Longest lifetime a token may ask for (`max_lifetime`, default 876600 h, about 100 years).
    pub max_lifetime: Duration,
    /// Longest lifetime a token of a user holding the site role `owner` may ask for
    /// (`max_admin_lifetime`, default 168 h): stricter for admins, as in Coder.
    pub max_admin_lifetime: Duration,
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
    /// The protocols a client may upgrade to through Portcullis (`upgrade_protocols`, default
    /// `["websocket"]`), lower case. Any other `Upgrade` (such as `h2c`) is removed and the
    /// request forwarded as plain HTTP/1.1.
    pub upgrade_protocols: Vec<String>,
    /// Forward headers that make frameworks re-route a request (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, ...; `danger_pass_override_headers`, default false).
    pub danger_pass_override_headers: bool,
}

/// `[policy]`: what proxied requests need.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// What an unmatched route needs (`default`).
    pub default: PolicyDefault,
    /// The `[[policy.route]]` rules, first match wins.
    pub routes: crate::policy::Policy,
}

/// The policy for routes no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDefault {
    /// Forward without asking who the caller is.
    Public,
    /// Refuse with 403.
    Deny,
    /// Require a valid session (401 without one).
    Authenticated,
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

/// `[store]`: where users, keys and counters live, and how long cached answers may be used.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The backend (`url`, default `memory://`).
    pub url: StoreUrl,
    /// Prefix of every key the store writes (`key_prefix`, default `portcullis:`), so that
    /// several deployments can share one Redis.
    pub key_prefix: String,
    /// How long a validated key stays in the in-process cache (`cache_ttl`, default 30 s).
    pub cache_ttl: Duration,
    /// How long a cached key may still be served while the store is unreachable (`max_stale`,
    /// default 30 s; `0s` serves nothing stale).
    pub max_stale: Duration,
    /// How long an unknown key id is remembered as unknown (`negative_cache_ttl`, default 5 s;
    /// `0s` turns the negative cache off).
    pub negative_cache_ttl: Duration,
    /// The deadline of each store call (`command_timeout`, default 500 ms). A call that misses
    /// it fails as "store unavailable"; this also bounds reconnects.
    pub command_timeout: Duration,
}

/// `store.url`, parsed. Its `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: in-process, one replica, lost on restart.
    Memory,
    /// A Redis deployment: `redis://`, `rediss://`, `redis+sentinel://` or `redis+cluster://`.
    Redis(RedisUrl),
}

/// A parsed Redis URL. The forms accepted:
///
/// - `redis://[[user]:password@]host[:port][/db]` and `rediss://…` (TLS, verified against the
///   system roots); port 6379, db 0 by default.
/// - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`: the
///   sentinels (port 26379 by default) and the name of the master they watch. The credentials
///   are for the Redis servers; the sentinels are asked without any.
/// - `redis+cluster://[[user]:password@]host[:port][,host[:port]…]`: seed nodes of a Redis
///   Cluster (db 0 only).
///
/// User and password are percent-decoded. Query strings are refused.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Standalone, Sentinel-managed, or Cluster.
    pub topology: RedisTopology,
    /// Whether to connect with TLS (`rediss://`).
    pub tls: bool,
    /// Host and port of each node named: the server, the sentinels, or the cluster seeds.
    pub nodes: Vec<(String, u16)>,
    /// The database number.
    pub db: i64,
    /// The ACL user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Secret>,
}

/// How a Redis deployment is organized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (`redis://`, `rediss://`).
    Standalone,
    /// A master found through sentinels (`redis+sentinel://`).
    Sentinel {
        /// The master's service name.
        service: String,
    },
    /// A Redis Cluster (`redis+cluster://`).
    Cluster,
}

/// A secret taken from the configuration. `Debug` shows `<redacted>`; read it with
/// [`Secret::expose`] only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

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
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    session: FileSession,
    #[serde(default)]
    identity: FileIdentity,
    #[serde(default)]
    passwords: FilePasswords,
    #[serde(default)]
    rate_limit: FileRateLimit,
    #[serde(default)]
    tokens: FileTokens,
    oidc: Option<oidc::FileOidc>,
    #[serde(default)]
    otp: otp::FileOtp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTokens {
    default_lifetime: Option<String>,
    max_lifetime: Option<String>,
    max_admin_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSession {
    lifetime: Option<String>,
    cookie_secure: Option<bool>,
    cookie_same_site: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    headers: Option<String>,
    assertion_key: Option<identity::KeyPaths>,
    issuer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePasswords {
    #[serde(default)]
    disable_password_auth: bool,
    argon2_memory_kib: Option<u32>,
    argon2_iterations: Option<u32>,
    argon2_parallelism: Option<u32>,
    max_concurrent: Option<usize>,
    queue: Option<usize>,
    #[serde(default)]
    min_length: usize,
    #[serde(default)]
    blocklist: bool,
    #[serde(default)]
    reject_user_info: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRateLimit {
    login_per_minute: Option<u64>,
    account_failures: Option<u64>,
    account_window: Option<String>,
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
    upgrade_protocols: Option<Vec<String>>,
    #[serde(default)]
    danger_pass_override_headers: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    default: Option<String>,
    #[serde(default)]
    case_sensitive: bool,
    head_as_get: Option<bool>,
    #[serde(default)]
    route: Vec<FileRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    path: String,
    methods: Option<Vec<String>>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    authenticated: bool,
    require: Option<String>,
    case_sensitive: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
    filter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<String>,
    key_prefix: Option<String>,
    cache_ttl: Option<String>,
    max_stale: Option<String>,
    negative_cache_ttl: Option<String>,
    command_timeout: Option<String>,
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
            upgrade_protocols: upgrade_protocols(u.upgrade_protocols)?,
            danger_pass_override_headers: u.danger_pass_override_headers,
        };

        let specs: Vec<crate::policy::RuleSpec> = file
            .policy
            .route
            .into_iter()
            .map(|r| crate::policy::RuleSpec {
                path: r.path,
                methods: r.methods,
                public: r.public,
                authenticated: r.authenticated,
                require: r.require,
                case_sensitive: r.case_sensitive,
            })
            .collect();
        let options = crate::policy::Options {
            case_sensitive: file.policy.case_sensitive,
            head_as_get: file.policy.head_as_get.unwrap_or(true),
        };
        let policy = PolicyConfig {
            routes: crate::policy::Policy::new(&specs, options)
                .map_err(|(key, reason)| ConfigError::invalid(&key, reason))?,
            default: match file.policy.default.as_deref().unwrap_or("authenticated") {
                "public" => PolicyDefault::Public,
                "deny" => PolicyDefault::Deny,
                "authenticated" => PolicyDefault::Authenticated,
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

        let st = file.store;
        let store = StoreConfig {
            url: store_url(st.url.as_deref().unwrap_or("memory://"))?,
            key_prefix: match st.key_prefix {
                None => "portcullis:".to_owned(),
                Some(p) if p.is_empty() => {
                    return Err(ConfigError::invalid(
                        "store.key_prefix",
                        "must not be empty",
                    ))
                }
                Some(p) if p.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return Err(ConfigError::invalid(
                        "store.key_prefix",
                        "must not contain spaces or control characters",
                    ))
                }
                Some(p) => p,
            },
            cache_ttl: duration("store.cache_ttl", st.cache_ttl.as_deref(), "30s")?,
            max_stale: duration_or_zero("store.max_stale", st.max_stale.as_deref(), "30s")?,
            negative_cache_ttl: duration_or_zero(
                "store.negative_cache_ttl",
                st.negative_cache_ttl.as_deref(),
                "5s",
            )?,
            command_timeout: duration(
                "store.command_timeout",
                st.command_timeout.as_deref(),
                "500ms",
            )?,
        };

        let prefix = file.api.prefix.unwrap_or_else(|| "/api/v2".to_owned());
        if !prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.parse::<PathAndQuery>().is_err()
        {
            return Err(ConfigError::invalid(
                "api.prefix",
                format!("{prefix:?} must start with / and not end with one"),
            ));
        }
        let api = ApiConfig { prefix };

        let session = SessionConfig {
            lifetime: duration("session.lifetime", file.session.lifetime.as_deref(), "24h")?,
            cookie_secure: file.session.cookie_secure.unwrap_or(true),
            cookie_same_site: match file
                .session
                .cookie_same_site
                .as_deref()
                .unwrap_or("lax")
                .to_ascii_lowercase()
                .as_str()
            {
                "lax" => "Lax",
                "strict" => "Strict",
                "none" => "None",
                other => {
                    return Err(ConfigError::invalid(
                        "session.cookie_same_site",
                        format!("{other:?} is not one of \"lax\", \"strict\", \"none\""),
                    ))
                }
            },
        };

        let identity = IdentityConfig {
            headers: match file.identity.headers.as_deref().unwrap_or("forwarded") {
                "forwarded" => crate::headers::IdentityStyle::Forwarded,
                "remote" => crate::headers::IdentityStyle::Remote,
                "none" => crate::headers::IdentityStyle::None,
                other => {
                    return Err(ConfigError::invalid(
                        "identity.headers",
                        format!("{other:?} is not one of \"forwarded\", \"remote\", \"none\""),
                    ))
                }
            },
            assertion: identity::assertion(
                file.identity.assertion_key,
                file.identity.issuer,
                base,
            )?,
        };

        let pw = file.passwords;
        let defaults = crate::auth::PasswordParams::default();
        let params = crate::auth::PasswordParams {
            memory_kib: pw.argon2_memory_kib.unwrap_or(defaults.memory_kib),
            iterations: pw.argon2_iterations.unwrap_or(defaults.iterations),
            parallelism: pw.argon2_parallelism.unwrap_or(defaults.parallelism),
            max_concurrent: positive(
                "passwords.max_concurrent",
                pw.max_concurrent,
                defaults.max_concurrent,
            )?,
            queue: pw.queue.unwrap_or(defaults.queue),
        };
        // Let argon2 judge the parameters now, so that a bad value names its key at start-up.
        crate::auth::Passwords::new(params).map_err(|e| {
            ConfigError::invalid("passwords", format!("argon2 parameters refused: {e}"))
        })?;
        if pw.min_length > crate::auth::strength::MAX_PASSWORD_CHARS {
            return Err(ConfigError::invalid(
                "passwords.min_length",
                format!(
                    "{} is more than the {}-character maximum: no password could be set",
                    pw.min_length,
                    crate::auth::strength::MAX_PASSWORD_CHARS
                ),
            ));
        }
        let passwords = PasswordsConfig {
            disable_password_auth: pw.disable_password_auth,
            params,
            policy: crate::auth::PasswordPolicy {
                min_length: pw.min_length,
                blocklist: pw.blocklist,
                reject_user_info: pw.reject_user_info,
            },
        };

        let rl = file.rate_limit;
        let rate_limit = RateLimitConfig {
            login_per_minute: rl.login_per_minute.unwrap_or(60),
            account_failures: rl.account_failures.unwrap_or(10),
            account_window: duration(
                "rate_limit.account_window",
                rl.account_window.as_deref(),
                "5m",
            )?,
        };

        let tk = file.tokens;
        let tokens = TokensConfig {
            default_lifetime: duration(
                "tokens.default_lifetime",
                tk.default_lifetime.as_deref(),
                "168h",
            )?,
            max_lifetime: duration("tokens.max_lifetime", tk.max_lifetime.as_deref(), "876600h")?,
            max_admin_lifetime: duration(
                "tokens.max_admin_lifetime",
                tk.max_admin_lifetime.as_deref(),
                "168h",
            )?,
        };
        if tokens.default_lifetime > tokens.max_lifetime {
            return Err(ConfigError::invalid(
                "tokens.default_lifetime",
                "must not be longer than tokens.max_lifetime",
            ));
        }
        // Lifetimes become `time::Duration`s and expiry timestamps; refuse what cannot.
        for (key, d) in [
            ("tokens.default_lifetime", tokens.default_lifetime),
            ("tokens.max_lifetime", tokens.max_lifetime),
            ("tokens.max_admin_lifetime", tokens.max_admin_lifetime),
        ] {
            if d > MAX_KEY_LIFETIME {
                return Err(ConfigError::invalid(key, "must be at most 1000 years"));
            }
        }

        let oidc = file.oidc.map(|o| oidc::parse(o, base)).transpose()?;

        Ok(Config {
            server,
            upstream,
            policy,
            log,
            store,
            api,
            session,
            identity,
            passwords,
            rate_limit,
            tokens,
            oidc,
            otp: OtpConfig::parse(file.otp, base)?,
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

fn duration_or_zero(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    humantime::parse_duration(v)
        .map_err(|e| ConfigError::invalid(key, format!("{v:?} is not a duration ({e})")))
}

fn positive(key: &str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::invalid(key, "must be at least 1")),
        n => Ok(n),
    }
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

fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
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

/// Parses an `http://` or `https://` URL with a host and no credentials, the error naming `key`.
fn http_url(key: &str, url: &str) -> Result<(Scheme, Authority, Uri), ConfigError> {
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
    Ok((scheme, authority, uri))
}

fn store_url(url: &str) -> Result<StoreUrl, ConfigError> {
    parse_store_url(url).map_err(|reason| ConfigError::invalid("store.url", reason))
}

/// Parses `store.url`; the error is the reason, in one line, without the password.
fn parse_store_url(url: &str) -> Result<StoreUrl, String> {
    const SCHEMES: &str =
        "must start with memory://, redis://, rediss://, redis+sentinel:// or redis+cluster://";
    let (scheme, rest) = url.split_once("://").ok_or(SCHEMES)?;
    let (topology, tls, default_port) = match scheme {
        "memory" if rest.is_empty() => return Ok(StoreUrl::Memory),
        "memory" => return Err("memory:// takes nothing after the scheme".into()),
        "redis" => (RedisTopology::Standalone, false, 6379),
        "rediss" => (RedisTopology::Standalone, true, 6379),
        "redis+sentinel" => (
            RedisTopology::Sentinel {
                service: String::new(),
            },
            false,
            26379,
        ),
        "redis+cluster" => (RedisTopology::Cluster, false, 6379),
        _ => return Err(SCHEMES.into()),
    };
    if rest.contains(['?', '#']) {
        return Err("must not have a query or a fragment".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).map_err(|e| format!("user name: {e}"))?;
            let pass = pass
                .map(|p| percent_decode(p).map_err(|e| format!("password: {e}")))
                .transpose()?;
            (
                Some(user).filter(|u| !u.is_empty()),
                pass.filter(|p| !p.is_empty()).map(Secret),
            )
        }
    };
    let nodes = hosts
        .split(',')
        .map(|h| host_port(h, default_port))
        .collect::<Result<Vec<_>, _>>()?;
    let db_of = |s: &str| -> Result<i64, String> {
        s.parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| format!("{s:?} is not a database number"))
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (topology, db) = match (topology, segments.as_slice()) {
        (RedisTopology::Standalone, _) if nodes.len() > 1 => {
            return Err(
                "names more than one host; use redis+sentinel:// or redis+cluster://".into(),
            )
        }
        (RedisTopology::Standalone, []) => (RedisTopology::Standalone, 0),
        (RedisTopology::Standalone, [db]) => (RedisTopology::Standalone, db_of(db)?),
        (RedisTopology::Sentinel { .. }, [service]) => (
            RedisTopology::Sentinel {
                service: (*service).to_owned(),
            },
            0,
        ),
        (RedisTopology::Sentinel { .. }, [service, db]) => (
            RedisTopology::Sentinel {
                service: (*service).to_owned(),
            },
            db_of(db)?,
        ),
        (RedisTopology::Sentinel { .. }, []) => {
            return Err(
                "must name the master service, as in redis+sentinel://host:26379/mymaster".into(),
            )
        }
        (RedisTopology::Cluster, []) => (RedisTopology::Cluster, 0),
        (RedisTopology::Cluster, [db]) if db_of(db)? == 0 => (RedisTopology::Cluster, 0),
        (RedisTopology::Cluster, _) => {
            return Err("a Redis Cluster has only database 0; drop the path".into())
        }
        (_, _) => return Err("has too many path segments".into()),
    };
    Ok(StoreUrl::Redis(RedisUrl {
        topology,
        tls,
        nodes,
        db,
        username,
        password,
    }))
}

fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} is not a host"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{s:?} is not a host")),
            },
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@') {
        return Err(format!("{host:?} is not a host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_owned())
}

// === impl StoreUrl ===

impl fmt::Display for StoreUrl {
    /// The URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = match self {
            StoreUrl::Memory => return f.write_str("memory://"),
            StoreUrl::Redis(r) => r,
        };
        let scheme = match (&r.topology, r.tls) {
            (RedisTopology::Standalone, false) => "redis",
            (RedisTopology::Standalone, true) => "rediss",
            (RedisTopology::Sentinel { .. }, _) => "redis+sentinel",
            (RedisTopology::Cluster, _) => "redis+cluster",
        };
        write!(f, "{scheme}://")?;
        if r.username.is_some() || r.password.is_some() {
            f.write_str(r.username.as_deref().unwrap_or(""))?;
            if r.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        for (i, (host, port)) in r.nodes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{sep}[{host}]:{port}")?;
            } else {
                write!(f, "{sep}{host}:{port}")?;
            }
        }
        match &r.topology {
            RedisTopology::Standalone => write!(f, "/{}", r.db),
            RedisTopology::Sentinel { service } => write!(f, "/{service}/{}", r.db),
            RedisTopology::Cluster => Ok(()),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("topology", &self.topology)
            .field("tls", &self.tls)
            .field("nodes", &self.nodes)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

// === impl Secret ===

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests;
