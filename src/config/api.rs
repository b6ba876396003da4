//! `[api]`: where the Coder-compatible API is served.

use http::uri::PathAndQuery;
use serde::Deserialize;

use super::ConfigError;

/// `[api]`: where the Coder-compatible API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Path prefix of the API (`prefix`, default `/api/v2`); starts with `/`, no trailing `/`.
    pub prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileApi {
    prefix: Option<String>,
}

/// Validates `[api]`.
pub(super) fn parse(file: FileApi) -> Result<ApiConfig, ConfigError> {
    let prefix = file.prefix.unwrap_or_else(|| "/api/v2".to_owned());
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.parse::<PathAndQuery>().is_err()
    {
        return Err(ConfigError::invalid(
            "api.prefix",
            format!("{prefix:?} must start with / and not end with one"),
        ));
    }
    Ok(ApiConfig { prefix })
}
