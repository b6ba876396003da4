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
    /// The line in the config file where each rule starts (from 1), for `portcullis explain`;
    /// empty when unknown (rules that came from an environment override).
    pub lines: Vec<usize>,
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
pub(super) fn parse(file: FilePolicy, text: &str) -> Result<PolicyConfig, ConfigError> {
    let count = file.route.len();
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
        lines: Some(rule_lines(text))
            .filter(|lines| lines.len() == count)
            .unwrap_or_default(),
    })
}

/// The line where each `[[policy.route]]` (or inline route table) starts in `text`: the
/// document is read a second time, keeping only the spans of the rules. Text that does not
/// read that way gives no lines.
fn rule_lines(text: &str) -> Vec<usize> {
    #[derive(Deserialize, Default)]
    struct Doc {
        #[serde(default)]
        policy: Rules,
    }
    #[derive(Deserialize, Default)]
    struct Rules {
        #[serde(default)]
        route: Vec<toml::Spanned<serde::de::IgnoredAny>>,
    }
    let Ok(doc) = toml::from_str::<Doc>(text) else {
        return Vec::new();
    };
    doc.policy
        .route
        .iter()
        .map(|rule| {
            let start = rule.span().start.min(text.len());
            text[..start].bytes().filter(|b| *b == b'\n').count() + 1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn each_rule_keeps_the_line_it_starts_on_unless_an_override_replaced_the_rules() {
        let text =
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[policy]\ndefault = \"deny\"\n\n\
                    [[policy.route]]\npath = \"/a\"\npublic = true\n\n\
                    # a comment\n[[policy.route]]\npath = \"/b\"\nauthenticated = true\n";
        let base = std::path::Path::new(".");
        let config = Config::from_toml(text, Vec::new(), base).expect("valid");
        assert_eq!(config.policy.lines, [7, 12]);
        let env = [(
            "PORTCULLIS_POLICY__ROUTE".to_owned(),
            "[{path = \"/c\", public = true}, {path = \"/d\", public = true}]".to_owned(),
        )];
        let config = Config::from_toml(text, env, base).expect("valid");
        assert!(config.policy.lines.is_empty());
    }
}
