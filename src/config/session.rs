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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSession {
    lifetime: Option<String>,
    cookie_secure: Option<bool>,
    cookie_same_site: Option<String>,
    revoke_open_connections: Option<bool>,
}

/// Validates `[session]`.
pub(super) fn parse(file: FileSession) -> Result<SessionConfig, ConfigError> {
    Ok(SessionConfig {
        lifetime: duration("session.lifetime", file.lifetime.as_deref(), "24h")?,
        cookie_secure: file.cookie_secure.unwrap_or(true),
        cookie_same_site: same_site(file.cookie_same_site.as_deref().unwrap_or("lax"))?,
        revoke_open_connections: file.revoke_open_connections.unwrap_or(true),
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
