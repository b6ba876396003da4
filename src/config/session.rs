//! `[session]`: browser sessions from password login (spec §3.4-3.5): their lifetime, the
//! attributes of their cookie, and whether a revocation also closes the connections a session
//! opened.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

/// `[session]`: browser sessions from password login (spec §3.4-3.5).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long a login session lasts, sliding with use (`lifetime`, default 24 h).
    pub lifetime: Duration,
    /// `Secure` on the session cookie (`cookie_secure`, default true).
    pub cookie_secure: bool,
    /// `SameSite` of the session cookie (`cookie_same_site`: `Lax` (default), `Strict`, `None`).
    pub cookie_same_site: &'static str,
    /// Whether upgraded tunnels and streaming responses are watched and closed when their
    /// session no longer allows them (`revoke_open_connections`, default true).
    pub revoke_open_connections: bool,
    /// Hosts besides this one that the sign-in page may send a browser back to
    /// (`allowed_redirect_hosts`, default none): an `rd` of `https://<host>/...` is followed
    /// only for a host listed here, compared without case. A leading `*.` allows every
    /// subdomain of the rest (`*.example.com`: `a.example.com`, not `example.com`).
    pub allowed_redirect_hosts: Vec<String>,
    /// `Domain` of the session cookie (`cookie_domain`, default none: host-only), so that one
    /// Portcullis in forward-auth mode signs users in for sibling subdomains.
    pub cookie_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSession {
    lifetime: Option<String>,
    cookie_secure: Option<bool>,
    cookie_same_site: Option<String>,
    revoke_open_connections: Option<bool>,
    #[serde(default)]
    allowed_redirect_hosts: Vec<String>,
    cookie_domain: Option<String>,
}

/// Validates `[session]`.
pub(super) fn parse(file: FileSession) -> Result<SessionConfig, ConfigError> {
    Ok(SessionConfig {
        lifetime: duration("session.lifetime", file.lifetime.as_deref(), "24h")?,
        cookie_secure: file.cookie_secure.unwrap_or(true),
        cookie_same_site: same_site(file.cookie_same_site.as_deref().unwrap_or("lax"))?,
        revoke_open_connections: file.revoke_open_connections.unwrap_or(true),
        allowed_redirect_hosts: file
            .allowed_redirect_hosts
            .iter()
            .map(|h| redirect_host(h))
            .collect::<Result<_, _>>()?,
        cookie_domain: file
            .cookie_domain
            .as_deref()
            .map(cookie_domain)
            .transpose()?,
    })
}

/// One `session.allowed_redirect_hosts` entry, lower-cased: a host name (or `*.` and one),
/// with no scheme, port, path or character a host cannot have.
fn redirect_host(value: &str) -> Result<String, ConfigError> {
    let host = value.strip_prefix("*.").unwrap_or(value);
    if !is_host_name(host) {
        return Err(ConfigError::invalid(
            "session.allowed_redirect_hosts",
            format!(
                "{value:?} is not a host name (such as \"app.example.com\" or \"*.example.com\")"
            ),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// `session.cookie_domain`: a host name, a leading `.` dropped (RFC 6265 §5.2.3 ignores it).
fn cookie_domain(value: &str) -> Result<String, ConfigError> {
    let domain = value.strip_prefix('.').unwrap_or(value);
    if !is_host_name(domain) {
        return Err(ConfigError::invalid(
            "session.cookie_domain",
            format!("{value:?} is not a domain name (such as \"example.com\")"),
        ));
    }
    Ok(domain.to_ascii_lowercase())
}

/// Whether `host` is a DNS name: dot-separated labels of letters, digits and `-`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `session.cookie_same_site`, in any case (`Lax`, `lax`), as the attribute's value. Matched
/// by hand rather than by a serde enum: every spelling of each value is accepted.
fn same_site(value: &str) -> Result<&'static str, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "lax" => Ok("Lax"),
        "strict" => Ok("Strict"),
        "none" => Ok("None"),
        other => Err(ConfigError::invalid(
            "session.cookie_same_site",
            format!("{other:?} is not one of \"lax\", \"strict\", \"none\""),
        )),
    }
}
