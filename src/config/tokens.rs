//! `[tokens]`: lifetimes of API keys that are not login sessions (spec §7.3, §7.5).

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

/// The longest key lifetime a config may name (1000 years): any expiry it gives is a valid
/// timestamp.
const MAX_KEY_LIFETIME: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTokens {
    default_lifetime: Option<String>,
    max_lifetime: Option<String>,
    max_admin_lifetime: Option<String>,
}

/// Validates `[tokens]`: every lifetime positive and at most 1000 years, and the default no
/// longer than the maximum.
pub(super) fn parse(file: FileTokens) -> Result<TokensConfig, ConfigError> {
    let tokens = TokensConfig {
        default_lifetime: duration(
            "tokens.default_lifetime",
            file.default_lifetime.as_deref(),
            "168h",
        )?,
        max_lifetime: duration(
            "tokens.max_lifetime",
            file.max_lifetime.as_deref(),
            "876600h",
        )?,
        max_admin_lifetime: duration(
            "tokens.max_admin_lifetime",
            file.max_admin_lifetime.as_deref(),
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
    Ok(tokens)
}
