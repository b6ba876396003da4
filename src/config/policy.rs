//! `[policy]` and `[[policy.route]]`: what proxied requests need. The rules are compiled here,
//! at load time, by [`crate::policy::Policy::new`], so that a bad rule stops start-up naming
//! its index and key.

use serde::Deserialize;

use super::{name_of, ConfigError};
use crate::policy::{Options, Policy, RuleSpec};

/// `[policy]`: what proxied requests need.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// What an unmatched route needs (`default`).
    pub default: PolicyDefault,
    /// The `[[policy.route]]` rules, first match wins.
    pub routes: Policy,
}

/// The policy for routes no rule names (`policy.default`: `"public"`, `"deny"` or
/// `"authenticated"`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDefault {
    /// Forward without asking who the caller is.
    Public,
    /// Refuse with 403.
    Deny,
    /// Require a valid session (401 without one).
    #[default]
    Authenticated,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePolicy {
    #[serde(default, deserialize_with = "name_of")]
    default: PolicyDefault,
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

/// Validates `[policy]`: compiles the route rules, first match wins.
pub(super) fn parse(file: FilePolicy) -> Result<PolicyConfig, ConfigError> {
    let specs: Vec<RuleSpec> = file
        .route
        .into_iter()
        .map(|r| RuleSpec {
            path: r.path,
            methods: r.methods,
            public: r.public,
            authenticated: r.authenticated,
            require: r.require,
            case_sensitive: r.case_sensitive,
        })
        .collect();
    let options = Options {
        case_sensitive: file.case_sensitive,
        head_as_get: file.head_as_get.unwrap_or(true),
    };
    Ok(PolicyConfig {
        routes: Policy::new(&specs, options)
            .map_err(|(key, reason)| ConfigError::invalid(&key, reason))?,
        default: file.default,
    })
}
