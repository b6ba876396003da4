//! `[log]`: the format of log lines, the default filter, and whether the access log is on.

use serde::Deserialize;

use super::name_of;

/// `[log]`: how Portcullis logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `plain` or `json` (`format`, default `plain`).
    pub format: LogFormat,
    /// An `EnvFilter` directive (`filter`, default [`DEFAULT_LOG_FILTER`]); `RUST_LOG` wins.
    pub filter: String,
    /// One line per request on the target `portcullis::access` (`access`, default `false`).
    pub access: bool,
}

/// The default log filter.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Log line format (`log.format`: `"plain"`, the default, or `"json"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    #[serde(default, deserialize_with = "name_of")]
    format: LogFormat,
    filter: Option<String>,
    #[serde(default)]
    access: bool,
}

/// `[log]` has no check beyond its types: a filter `tracing` cannot read falls back to
/// [`DEFAULT_LOG_FILTER`] when logging starts.
pub(super) fn parse(file: FileLog) -> LogConfig {
    LogConfig {
        format: file.format,
        filter: file.filter.unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()),
        access: file.access,
    }
}
