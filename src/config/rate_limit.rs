//! `[rate_limit]`: abuse limits on the API and on login, shared by every replica through the
//! store.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

/// `[rate_limit]`: abuse limits shared by every replica through the store.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// API requests per user (per client IP when anonymous) per minute (`api_per_minute`,
    /// default 512 as Coder's `--api-rate-limit`; 0 = off).
    pub api_per_minute: u64,
    /// Login-group requests per client IP per minute (`login_per_minute`, default 60; 0 = off).
    pub login_per_minute: u64,
    /// Failed logins per account within `account_window` before it is throttled
    /// (`account_failures`, default 10; 0 = off).
    pub account_failures: u64,
    /// The window of `account_failures` (`account_window`, default 5 m).
    pub account_window: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    api_per_minute: Option<u64>,
    login_per_minute: Option<u64>,
    account_failures: Option<u64>,
    account_window: Option<String>,
}

/// Validates `[rate_limit]`.
pub(super) fn parse(file: FileRateLimit) -> Result<RateLimitConfig, ConfigError> {
    Ok(RateLimitConfig {
        api_per_minute: file.api_per_minute.unwrap_or(512),
        login_per_minute: file.login_per_minute.unwrap_or(60),
        account_failures: file.account_failures.unwrap_or(10),
        account_window: duration(
            "rate_limit.account_window",
            file.account_window.as_deref(),
            "5m",
        )?,
    })
}
