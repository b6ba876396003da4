//! The route policy for proxied traffic (DESIGN §4): `[[policy.route]]` rules tried in order,
//! the first whose path and method match decides; `policy.default` decides the rest.
//!
//! A rule's `path` is matched segment by segment: a literal, `*` (any one segment), `{name}`
//! (any one segment, captured) and a trailing `/**` (any suffix, none included). Captures
//! `{owner}`, `{org}` and `{id}` describe the object a `require = "resource:action"` rule
//! checks: its owner (`me` is the caller; a user id or a username), its organization (an id or
//! a name) and its id (for allow lists). The check is the same evaluator as `POST /authcheck`.
//!
//! Request paths are judged as the upstream will see them: each segment is percent-decoded
//! before matching, empty segments are skipped (`//admin` is `/admin`), and a path with a `.`
//! or `..` segment, or an encoded `/` or `\` inside a segment, is refused with 400 — so no
//! spelling of a path can reach the upstream under a rule meant for another path.

use std::borrow::Cow;
use std::fmt;

use http::Method;

use crate::rbac::{Action, Resource};

/// The rules, validated.
#[derive(Clone, Default)]
pub struct Policy {
    routes: Vec<Route>,
}

/// One `[[policy.route]]`.
#[derive(Clone)]
struct Route {
    pattern: Vec<Segment>,
    /// The pattern ends in `/**`.
    any_suffix: bool,
    /// `None`: every method.
    methods: Option<Vec<Method>>,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    Capture(Capture),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Owner,
    Org,
    Id,
    Other,
}

/// What a matched route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Forward without asking who the caller is.
    Public,
    /// A valid session.
    Authenticated,
    /// A session allowed `action` on the described object.
    Require(Resource, Action),
}

/// A rule as written in the config file, before validation.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    /// `path`.
    pub path: String,
    /// `methods`.
    pub methods: Option<Vec<String>>,
    /// `public`.
    pub public: bool,
    /// `authenticated`.
    pub authenticated: bool,
    /// `require`.
    pub require: Option<String>,
}

/// The route that matched a request, with its captures.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    /// What it needs.
    pub rule: Rule,
    /// The `{owner}` segment.
    pub owner: Option<Cow<'a, str>>,
    /// The `{org}` segment.
    pub org: Option<Cow<'a, str>>,
    /// The `{id}` segment.
    pub id: Option<Cow<'a, str>>,
}

/// A request path no rule may be asked about: `.`/`..` segments or an encoded separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request path has a dot segment or an encoded path separator")]
pub struct AmbiguousPath;

// === impl Policy ===

impl Policy {
    /// Validates `specs`; the error names the rule (`policy.route[2].require`) and the reason.
    pub fn new(specs: &[RuleSpec]) -> Result<Policy, (String, String)> {
        let routes = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Route::new(spec).map_err(|(key, why)| (format!("policy.route[{i}].{key}"), why))
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { routes })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The first rule matching `method` and `path`; `Ok(None)` when none does (the default
    /// decides).
    pub fn find<'a>(
        &self,
        method: &Method,
        path: &'a str,
    ) -> Result<Option<Matched<'a>>, AmbiguousPath> {
        if self.routes.is_empty() {
            return Ok(None);
        }
        let segments = segments(path)?;
        Ok(self
            .routes
            .iter()
            .filter(|r| r.methods.as_ref().is_none_or(|m| m.contains(method)))
            .find_map(|r| r.matches(&segments)))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("routes", &self.routes.len())
            .finish()
    }
}

// === impl Route ===

impl Route {
    fn new(spec: &RuleSpec) -> Result<Route, (&'static str, String)> {
        let path = spec.path.as_str();
        if !path.starts_with('/') {
            return Err(("path", format!("{path:?} does not start with '/'")));
        }
        let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let any_suffix = parts.last() == Some(&"**");
        if any_suffix {
            parts.pop();
        }
        let mut pattern = Vec::with_capacity(parts.len());
        for part in parts {
            pattern.push(match part {
                "*" => Segment::Any,
                "**" => return Err(("path", format!("{path:?}: '**' may only end the path"))),
                "." | ".." => return Err(("path", format!("{path:?} has a dot segment"))),
                _ if part.starts_with('{') && part.ends_with('}') && part.len() > 2 => {
                    Segment::Capture(match &part[1..part.len() - 1] {
                        "owner" => Capture::Owner,
                        "org" => Capture::Org,
                        "id" => Capture::Id,
                        _ => Capture::Other,
                    })
                }
                _ if part.contains(['*', '{', '}']) => {
                    return Err((
                        "path",
                        format!("{path:?}: '*' and '{{name}}' must be whole segments"),
                    ))
                }
                literal => Segment::Literal(
                    decode(literal)
                        .map_err(|_| {
                            (
                                "path",
                                format!("{path:?} has an encoded separator or a bad escape"),
                            )
                        })?
                        .into_owned(),
                ),
            });
        }
        let methods = match &spec.methods {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| ("methods", format!("{m:?} is not an HTTP method")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let rule = match (spec.public, spec.authenticated, &spec.require) {
            (true, false, None) => Rule::Public,
            (false, true, None) => Rule::Authenticated,
            (false, false, Some(require)) => {
                let (resource, action) = require.split_once(':').ok_or((
                    "require",
                    format!("{require:?} is not \"resource:action\""),
                ))?;
                let resource = Resource::parse(resource)
                    .ok_or(("require", format!("unknown resource {resource:?}")))?;
                let action = Action::parse(action)
                    .ok_or(("require", format!("unknown action {action:?}")))?;
                if !resource.has(action) {
                    return Err((
                        "require",
                        format!("{resource} has no action {:?}", action.name()),
                    ));
                }
                Rule::Require(resource, action)
            }
            _ => {
                return Err((
                    "require",
                    "a rule needs exactly one of public = true, authenticated = true or require = \"resource:action\"".into(),
                ))
            }
        };
        Ok(Route {
            pattern,
            any_suffix,
            methods,
            rule,
        })
    }

    fn matches<'a>(&self, path: &[Cow<'a, str>]) -> Option<Matched<'a>> {
        if path.len() < self.pattern.len() || (!self.any_suffix && path.len() != self.pattern.len())
        {
            return None;
        }
        let mut found = Matched {
            rule: self.rule,
            owner: None,
            org: None,
            id: None,
        };
        for (want, got) in self.pattern.iter().zip(path) {
            match want {
                Segment::Literal(l) if l != got => return None,
                Segment::Literal(_) | Segment::Any => {}
                Segment::Capture(c) => {
                    let slot = match c {
                        Capture::Owner => &mut found.owner,
                        Capture::Org => &mut found.org,
                        Capture::Id => &mut found.id,
                        Capture::Other => continue,
                    };
                    *slot = Some(got.clone());
                }
            }
        }
        Some(found)
    }
}

/// The decoded, non-empty segments of a request path.
fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, AmbiguousPath> {
    let mut out = Vec::with_capacity(8);
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let segment = decode(raw)?;
        if segment == "." || segment == ".." {
            return Err(AmbiguousPath);
        }
        out.push(segment);
    }
    Ok(out)
}

/// Percent-decodes one segment; an encoded `/` or `\`, a bad escape or invalid UTF-8 is
/// refused.
fn decode(raw: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    if !raw.contains('%') {
        if raw.contains('\\') {
            return Err(AmbiguousPath);
        }
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(AmbiguousPath)?;
            let text = std::str::from_utf8(hex).map_err(|_| AmbiguousPath)?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| AmbiguousPath)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&b'/') || out.contains(&b'\\') {
        return Err(AmbiguousPath);
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| AmbiguousPath)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, methods: Option<&[&str]>, require: Option<&str>) -> RuleSpec {
        RuleSpec {
            path: path.into(),
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            public: require.is_none(),
            authenticated: false,
            require: require.map(str::to_owned),
        }
    }

    fn policy() -> Policy {
        Policy::new(&[
            rule("/health", None, None),
            rule(
                "/api/v2/users/{owner}/workspaces",
                Some(&["get"]),
                Some("workspace:read"),
            ),
            rule(
                "/api/v2/organizations/{org}/templates/*",
                None,
                Some("template:read"),
            ),
            rule(
                "/api/v2/workspaces/{id}/**",
                Some(&["POST"]),
                Some("workspace:update"),
            ),
            rule("/static/**", None, None),
        ])
        .expect("valid")
    }

    fn find<'a>(p: &Policy, method: Method, path: &'a str) -> Option<Matched<'a>> {
        p.find(&method, path).expect("unambiguous")
    }

    #[test]
    fn patterns_match_by_segment_and_the_first_match_wins() {
        let p = policy();
        assert_eq!(find(&p, Method::GET, "/health").unwrap().rule, Rule::Public);
        assert!(find(&p, Method::GET, "/health/x").is_none());
        assert!(find(&p, Method::GET, "/healthz").is_none());
        let m = find(&p, Method::GET, "/api/v2/users/me/workspaces").unwrap();
        assert_eq!(m.owner.as_deref(), Some("me"));
        assert!(
            matches!(m.rule, Rule::Require(r, a) if r.name() == "workspace" && a.name() == "read")
        );
        // Methods: GET only.
        assert!(find(&p, Method::POST, "/api/v2/users/me/workspaces").is_none());
        let m = find(&p, Method::GET, "/api/v2/organizations/acme/templates/t1").unwrap();
        assert_eq!(m.org.as_deref(), Some("acme"));
        assert!(find(&p, Method::GET, "/api/v2/organizations/acme/templates").is_none());
        let m = find(&p, Method::POST, "/api/v2/workspaces/42/builds/7").unwrap();
        assert_eq!(m.id.as_deref(), Some("42"));
        assert!(find(&p, Method::POST, "/api/v2/workspaces/42").is_some());
        assert!(find(&p, Method::GET, "/static").is_some());
        assert!(find(&p, Method::GET, "/static/a/b/c.css").is_some());
        assert!(find(&p, Method::GET, "/other").is_none());
    }

    #[test]
    fn paths_are_judged_as_the_upstream_sees_them() {
        let p = policy();
        // Empty segments are skipped; escapes are decoded before matching.
        assert!(find(&p, Method::GET, "//health").is_some());
        assert!(find(&p, Method::GET, "/%68ealth").is_some());
        // Dot segments and encoded separators are refused, encoded or not.
        for bad in [
            "/static/../admin",
            "/static/./x",
            "/static/%2e%2e/admin",
            "/static/%2E/admin",
            "/static%2F..%2Fadmin",
            "/static/a%5cb",
            "/static/a\\b",
            "/static/%zz",
            "/static/%c3",
        ] {
            assert_eq!(p.find(&Method::GET, bad), Err(AmbiguousPath), "{bad}");
        }
        // With no rules nothing is judged (the default decides).
        assert_eq!(Policy::default().find(&Method::GET, "/a/../b"), Ok(None));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        for (spec, key, reason) in [
            (
                rule("api", None, None),
                "policy.route[0].path",
                "does not start with '/'",
            ),
            (
                rule("/a/**/b", None, None),
                "policy.route[0].path",
                "'**' may only end",
            ),
            (
                rule("/a/x*", None, None),
                "policy.route[0].path",
                "whole segments",
            ),
            (
                rule("/a", None, Some("workspaces:read")),
                "policy.route[0].require",
                "unknown resource \"workspaces\"",
            ),
            (
                rule("/a", None, Some("workspace:fly")),
                "policy.route[0].require",
                "unknown action \"fly\"",
            ),
            (
                rule("/a", None, Some("template:ssh")),
                "policy.route[0].require",
                "template has no action \"ssh\"",
            ),
            (
                rule("/a", None, Some("workspace")),
                "policy.route[0].require",
                "is not \"resource:action\"",
            ),
            (
                rule("/a", Some(&["G ET"]), None),
                "policy.route[0].methods",
                "is not an HTTP method",
            ),
            (
                RuleSpec {
                    path: "/a".into(),
                    public: true,
                    authenticated: true,
                    ..RuleSpec::default()
                },
                "policy.route[0].require",
                "exactly one of",
            ),
            (
                RuleSpec {
                    path: "/a".into(),
                    ..RuleSpec::default()
                },
                "policy.route[0].require",
                "exactly one of",
            ),
        ] {
            let (got_key, got_reason) = Policy::new(&[spec]).expect_err("refused");
            assert_eq!(got_key, key);
            assert!(
                got_reason.contains(reason),
                "{got_reason} should say {reason}"
            );
        }
    }
}
