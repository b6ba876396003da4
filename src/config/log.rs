//! `[log]`: the format of log lines and the default filter.

use serde::Deserialize;

use super::ConfigError;

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    format: Option<String>,
    filter: Option<String>,
}

/// Validates `[log]`. A filter `tracing` cannot read falls back to [`DEFAULT_LOG_FILTER`]
/// when logging starts.
pub(super) fn parse(file: FileLog) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        format: match file.format.as_deref().unwrap_or("plain") {
            "plain" => LogFormat::Plain,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("{other:?} is not one of \"plain\", \"json\""),
                ))
            }
        },
        filter: file.filter.unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()),
    })
}
