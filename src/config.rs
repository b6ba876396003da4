//! Configuration: the TOML file schema and the validated, typed [`Config`]. Data only: a
//! [`Config`] holds parsed values (addresses, durations, compiled policy rules, loaded signing
//! keys), never a live service.
//!
//! Precedence, highest first: environment overrides `PORTCULLIS_<SECTION>__<KEY>` (for example
//! `PORTCULLIS_SERVER__LISTEN` or `PORTCULLIS_SERVER__TLS__CERT`), then the file, then the
//! defaults written beside each field. An override's value is read as a TOML literal when
//! it is one (`true`, `42`, `["10.0.0.0/8"]`) and as a string otherwise (`0.0.0.0:8443`, `30s`).
//!
//! Only this module sees the file schema. Each section has its own file holding its typed
//! config, its `File*` schema and one `parse` that validates and converts it: `server`,
//! `upstream`, `policy`, `log`, `store`, `api`, `session`, `identity`, `passwords`,
//! `rate_limit`, `tokens`, `oidc` and `otp`; `env` applies the overrides. A [`Config`] that
//! exists is valid: every check happens in [`Config::from_toml`], and each failure names the
//! key path it is about.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer};

mod api;
mod env;
mod identity;
mod log;
mod oidc;
mod otp;
mod passwords;
mod policy;
mod rate_limit;
mod server;
mod session;
mod store;
mod tokens;
mod upstream;

pub use api::ApiConfig;
pub use identity::IdentityConfig;
pub use log::{LogConfig, LogFormat, DEFAULT_LOG_FILTER};
pub use oidc::{OidcConfig, MAX_CONVERT_STATE_TTL};
pub use otp::{read_secret_file, OtpConfig, OtpDelivery, SmtpConfig, SmtpTls, WebhookConfig};
pub use passwords::{PasswordParams, PasswordPolicy, PasswordsConfig, MAX_PASSWORD_CHARS};
pub use policy::{PolicyConfig, PolicyDefault};
pub use rate_limit::RateLimitConfig;
pub use server::{ServerConfig, TlsConfig};
pub use session::SessionConfig;
pub use store::{RedisTopology, RedisUrl, StoreConfig, StoreUrl};
pub use tokens::TokensConfig;
pub use upstream::UpstreamConfig;

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

/// A secret taken from the configuration. `Debug` shows `<redacted>`; read it with
/// [`Secret::expose`] only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

// === file schema ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: server::FileServer,
    upstream: Option<upstream::FileUpstream>,
    #[serde(default)]
    policy: policy::FilePolicy,
    #[serde(default)]
    log: log::FileLog,
    #[serde(default)]
    store: store::FileStore,
    #[serde(default)]
    api: api::FileApi,
    #[serde(default)]
    session: session::FileSession,
    #[serde(default)]
    identity: identity::FileIdentity,
    #[serde(default)]
    passwords: passwords::FilePasswords,
    #[serde(default)]
    rate_limit: rate_limit::FileRateLimit,
    #[serde(default)]
    tokens: tokens::FileTokens,
    oidc: Option<oidc::FileOidc>,
    #[serde(default)]
    otp: otp::FileOtp,
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
        let routes = |doc: &toml::Table| doc.get("policy").and_then(|p| p.get("route")).cloned();
        let written = routes(&doc);
        env::apply(&mut doc, env)?;
        // Rule lines are the file's: rules an override replaced have none.
        let text = if routes(&doc) == written { text } else { "" };
        let file: FileConfig =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                ConfigError::Invalid {
                    key: key_path(e.path()),
                    reason: one_line(&e.into_inner().to_string()),
                }
            })?;
        Config::try_from_file(file, base, text)
    }

    /// Validates each section in turn; the first failure is returned.
    fn try_from_file(file: FileConfig, base: &Path, text: &str) -> Result<Config, ConfigError> {
        Ok(Config {
            server: server::parse(file.server, base)?,
            upstream: upstream::parse(file.upstream, base)?,
            policy: policy::parse(file.policy, text)?,
            log: log::parse(file.log),
            store: store::parse(file.store, base)?,
            api: api::parse(file.api)?,
            session: session::parse(file.session)?,
            identity: identity::parse(file.identity, base)?,
            passwords: passwords::parse(file.passwords)?,
            rate_limit: rate_limit::parse(file.rate_limit)?,
            tokens: tokens::parse(file.tokens)?,
            oidc: file.oidc.map(|o| oidc::parse(o, base)).transpose()?,
            otp: otp::parse(file.otp, base)?,
        })
    }
}

/// Reads a key whose value names a variant of `T` (a `#[derive(Deserialize)]` enum of unit
/// variants, named as the file writes them) in two steps, so that each mistake gets a clear
/// message: a value that is not a string is "expected a string", an unknown name lists the
/// known ones. Read directly from TOML, an integer or a list would be reported as an
/// "invalid type: unit variant".
fn name_of<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(String::deserialize(d)?.into_deserializer())
}

/// [`name_of`] for an optional key: `#[serde(default, deserialize_with = "some_name_of")]`.
fn some_name_of<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    name_of(d).map(Some)
}

/// The dotted key path of a schema error, as TOML would spell it: a key that cannot be
/// written bare (empty, or with a dot, space, quote or newline) is quoted, so that the message
/// names it unambiguously and stays on one line; the document itself is `(top level)`.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
