//! `[otp]`: one-time passcodes for password reset (spec/coder-api.md §4): how long a code
//! lives, how often one email address may ask for one, and how codes reach their owner —
//! `smtp`, `webhook`, or `log` (development only, behind `danger_log_codes`).
//!
//! Secret files (`password_file`, `secret_file`) and CA bundles are named here and read when
//! the delivery is built (`otp::Otp::new`), like the TLS files, so that `check-config` and
//! `serve` report a missing one by its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use lettre::message::Mailbox;
use serde::Deserialize;

use super::{duration, http_url, name_of, some_name_of, ConfigError, Secret};

/// The longest `otp.lifetime` accepted: a code that lives longer is a second password.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// `[otp]`, validated.
#[derive(Debug, Clone)]
pub struct OtpConfig {
    /// How long a code is valid (`lifetime`, default 10 m, at most 24 h).
    pub lifetime: Duration,
    /// How codes are delivered (`delivery`); `None` when the key is absent: requests are still
    /// answered `204`, but nobody receives a code (a warning is logged at start-up).
    pub delivery: Option<OtpDelivery>,
    /// Code requests per email address within `request_window` (`requests_per_email`,
    /// default 3; 0 = no limit). Requests past it are answered `204` and send nothing.
    pub requests_per_email: u64,
    /// The window of `requests_per_email` (`request_window`, default 15 m).
    pub request_window: Duration,
    /// Time allowed for one delivery, connect to last byte (`delivery_timeout`, default 10 s).
    pub delivery_timeout: Duration,
}

/// Where codes go.
#[derive(Debug, Clone)]
pub enum OtpDelivery {
    /// An email through an SMTP server (`delivery = "smtp"`, `[otp.smtp]`).
    Smtp(SmtpConfig),
    /// A signed JSON POST (`delivery = "webhook"`, `[otp.webhook]`).
    Webhook(WebhookConfig),
    /// The log, at warn (`delivery = "log"`; refused unless `danger_log_codes = true`).
    Log,
}

/// `[otp.smtp]`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The server's host name (`host`, required); also the name its certificate must carry.
    pub host: String,
    /// The server's port (`port`; default 587 for `starttls`, 465 for `tls`, 25 for `none`).
    pub port: u16,
    /// How the connection is secured (`tls`, default `starttls`).
    pub tls: SmtpTls,
    /// The user to authenticate as (`username`); set together with `password_file`.
    pub username: Option<String>,
    /// The file holding the password (`password_file`), surrounding white space ignored.
    pub password_file: Option<PathBuf>,
    /// The sender (`from`, required): `noreply@example.com` or `Name <noreply@example.com>`.
    pub from: Mailbox,
    /// Trust only this CA bundle for the server's certificate (`ca_file`); default: the system
    /// roots.
    pub ca_file: Option<PathBuf>,
}

/// `otp.smtp.tls`: `"starttls"` (the default), `"tls"` or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which is required (`starttls`).
    #[default]
    StartTls,
    /// TLS from the first byte, "SMTPS" (`tls`).
    Tls,
    /// No TLS at all (`none`): only for a relay on the same host or pod.
    None,
}

/// `[otp.webhook]`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port.
    pub authority: Authority,
    /// Path and query the POST goes to.
    pub path: PathAndQuery,
    /// The file holding the HMAC-SHA256 key (`secret_file`), surrounding white space ignored;
    /// when set, every POST carries `X-Portcullis-Signature: sha256=<hex>`.
    pub secret_file: Option<PathBuf>,
    /// Trust only this CA bundle for an `https://` URL (`ca_file`); default: the system roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileOtp {
    lifetime: Option<String>,
    #[serde(default, deserialize_with = "some_name_of")]
    delivery: Option<DeliveryMethod>,
    #[serde(default)]
    danger_log_codes: bool,
    requests_per_email: Option<u64>,
    request_window: Option<String>,
    delivery_timeout: Option<String>,
    webhook: Option<FileWebhook>,
    smtp: Option<FileSmtp>,
}

/// `otp.delivery` as written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeliveryMethod {
    Smtp,
    Webhook,
    Log,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: Option<String>,
    secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSmtp {
    host: Option<String>,
    port: Option<u16>,
    #[serde(default, deserialize_with = "name_of")]
    tls: SmtpTls,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    ca_file: Option<PathBuf>,
}

/// Validates `[otp]`; relative paths are resolved against `base`. A section given for a
/// method that `delivery` does not name is still checked, so that switching is safe.
pub(super) fn parse(file: FileOtp, base: &Path) -> Result<OtpConfig, ConfigError> {
    let lifetime = duration("otp.lifetime", file.lifetime.as_deref(), "10m")?;
    if lifetime > MAX_LIFETIME {
        return Err(ConfigError::invalid("otp.lifetime", "must be at most 24h"));
    }
    let webhook = file.webhook.map(|w| webhook(w, base)).transpose()?;
    let smtp = file.smtp.map(|s| smtp(s, base)).transpose()?;
    let delivery = match file.delivery {
        None => None,
        Some(DeliveryMethod::Webhook) => Some(OtpDelivery::Webhook(webhook.ok_or_else(|| {
            ConfigError::invalid("otp.webhook", "delivery = \"webhook\" needs [otp.webhook]")
        })?)),
        Some(DeliveryMethod::Smtp) => Some(OtpDelivery::Smtp(smtp.ok_or_else(|| {
            ConfigError::invalid("otp.smtp", "delivery = \"smtp\" needs [otp.smtp]")
        })?)),
        Some(DeliveryMethod::Log) if file.danger_log_codes => Some(OtpDelivery::Log),
        Some(DeliveryMethod::Log) => {
            return Err(ConfigError::invalid(
                "otp.delivery",
                "\"log\" writes every code to the log, which lets anyone who reads it reset \
                 any password; set otp.danger_log_codes = true to allow it (development only)",
            ))
        }
    };
    Ok(OtpConfig {
        lifetime,
        delivery,
        requests_per_email: file.requests_per_email.unwrap_or(3),
        request_window: duration("otp.request_window", file.request_window.as_deref(), "15m")?,
        delivery_timeout: duration(
            "otp.delivery_timeout",
            file.delivery_timeout.as_deref(),
            "10s",
        )?,
    })
}

/// Reads the secret in the file at `path`, named by the config key `key` in errors; white
/// space around it (a trailing newline) is not part of it. An empty file is refused.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret(secret.to_owned()))
}

fn webhook(w: FileWebhook, base: &Path) -> Result<WebhookConfig, ConfigError> {
    let key = "otp.webhook.url";
    let (scheme, authority, uri) = http_url(key, &required(key, w.url)?)?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok(WebhookConfig {
        scheme,
        authority,
        path,
        secret_file: w.secret_file.map(|p| base.join(p)),
        ca_file: w.ca_file.map(|p| base.join(p)),
    })
}

fn smtp(s: FileSmtp, base: &Path) -> Result<SmtpConfig, ConfigError> {
    let host = required("otp.smtp.host", s.host)?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(ConfigError::invalid(
            "otp.smtp.host",
            format!("{host:?} is not a host name"),
        ));
    }
    let tls = s.tls;
    let port = match s.port {
        Some(0) => return Err(ConfigError::invalid("otp.smtp.port", "must not be 0")),
        Some(p) => p,
        None => match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        },
    };
    match (&s.username, &s.password_file) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "otp.smtp.password_file",
                "is required with otp.smtp.username",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "otp.smtp.username",
                "is required with otp.smtp.password_file",
            ))
        }
        _ => {}
    }
    let from = required("otp.smtp.from", s.from)?;
    let from: Mailbox = from.parse().map_err(|e| {
        ConfigError::invalid(
            "otp.smtp.from",
            format!("{from:?} is not an email address ({e})"),
        )
    })?;
    Ok(SmtpConfig {
        host,
        port,
        tls,
        username: s.username,
        password_file: s.password_file.map(|p| base.join(p)),
        from,
        ca_file: s.ca_file.map(|p| base.join(p)),
    })
}

fn required(key: &str, value: Option<String>) -> Result<String, ConfigError> {
    value.ok_or_else(|| ConfigError::invalid(key, "is required"))
}
