//! The route policy's path canonicaliser and matcher (`policy::canonicalize`, `Policy::find`).
//!
//! Input: the first line is the request path; each further line (at most 8) is a rule,
//! `<path>` or `<path> <METHOD>,<METHOD>`, with `=` or `~` before the path for a rule that is
//! (or is not) case-sensitive whatever the policy says. Without rule lines, a fixed rule set
//! (admin area, captures, `/**`) is used. Each rule i requires its own permission, so the rule
//! that matched can be told apart.
//!
//! Properties, beyond no panic:
//! - canonicalising is idempotent: the canonical form is accepted and borrowed unchanged, and a
//!   path is borrowed exactly when it is already canonical;
//! - a canonical path has none of the spellings the module refuses (empty, dot, `;` or
//!   trailing-dot segments, encoded separators, double encoding, control characters and raw
//!   spaces, escapes of unreserved characters, lower-case hex) and each segment decodes to UTF-8;
//! - a path the canonicaliser refuses, or accepts only by changing it, matches no rule:
//!   `find` refuses it (whatever the rules, methods and options);
//! - on a canonical path, `find` answers what a plain model of the documented matching says:
//!   the first rule whose methods and segments match (literals decoded, in any ASCII case
//!   unless case-sensitive), its captures, and, when it matched only by ignoring case, the
//!   first rule that matches with case respected.

#![no_main]

use std::borrow::Cow;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis::policy::path::decode;
use portcullis::policy::{canonicalize, Found, Matched, Options, Policy, Rule, RuleSpec};
use portcullis::rbac::{Action, Resource};

/// One permission per rule, so that `Matched::rule` names the rule.
const REQUIRES: [&str; 8] = [
    "workspace:read",
    "workspace:update",
    "template:read",
    "user:create",
    "user:delete",
    "organization:read",
    "api_key:read",
    "group:update",
];

/// The rules when the input names none.
const FIXED: [&str; 7] = [
    "/admin/**",
    "/api/v2/users/{owner}/workspaces GET",
    "/api/v2/organizations/{org}/templates/*",
    "/api/v2/workspaces/{id}/** POST,PUT",
    "=/Static/**",
    "/caf%C3%A9/{id}/x",
    "/**",
];

const METHODS: [Method; 4] = [Method::GET, Method::HEAD, Method::POST, Method::DELETE];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default();
    let mut rules: Vec<&str> = lines.take(REQUIRES.len()).collect();
    if rules.is_empty() {
        rules = FIXED.to_vec();
    }

    let canonical = canonicalize(path);
    if let Ok(c) = &canonical {
        assert_eq!(
            matches!(c, Cow::Borrowed(_)),
            c == path,
            "{path:?} -> {c:?}"
        );
        let again = canonicalize(c);
        assert!(
            matches!(&again, Ok(Cow::Borrowed(a)) if a == c),
            "not idempotent: {path:?} -> {c:?} -> {again:?}"
        );
        assert_shape(c);
    }

    let specs: Vec<RuleSpec> = rules
        .iter()
        .zip(REQUIRES)
        .map(|(r, q)| spec(r, q))
        .collect();
    for options in [
        Options::default(),
        Options {
            case_sensitive: true,
            head_as_get: true,
        },
        Options {
            case_sensitive: false,
            head_as_get: false,
        },
    ] {
        let Ok(policy) = Policy::new(&specs, options) else {
            continue;
        };
        let model: Vec<ModelRule> = specs
            .iter()
            .enumerate()
            .map(|(index, s)| ModelRule::new(index, s, options))
            .collect();
        for method in &METHODS {
            let found = policy.find(method, path);
            match &canonical {
                Ok(Cow::Borrowed(c)) => {
                    let found = found.unwrap_or_else(|e| panic!("{c:?} refused: {e}"));
                    assert_eq!(found, model_find(&model, method, c), "{method} {c:?}");
                }
                _ => assert!(found.is_err(), "{path:?} ({canonical:?}) matched {found:?}"),
            }
        }
    }
});

fn spec(line: &str, require: &str) -> RuleSpec {
    let (case_sensitive, line) = match line.as_bytes().first() {
        Some(b'=') => (Some(true), &line[1..]),
        Some(b'~') => (Some(false), &line[1..]),
        _ => (None, line),
    };
    let (path, methods) = match line.split_once(' ') {
        Some((path, methods)) => (path, Some(methods.split(',').map(str::to_owned).collect())),
        None => (line, None),
    };
    RuleSpec {
        path: path.to_owned(),
        methods,
        require: Some(require.to_owned()),
        case_sensitive,
        ..RuleSpec::default()
    }
}

/// What the module promises a canonical path looks like.
fn assert_shape(c: &str) {
    if c == "*" {
        return;
    }
    assert!(c.starts_with('/'), "{c:?}");
    assert!(!c.contains("//"), "{c:?} has an empty segment");
    assert!(
        !c.bytes()
            .any(|b| b == b';' || b == b'\\' || b <= 0x20 || b == 0x7f),
        "{c:?} has ';', '\\', a control character or a raw space"
    );
    for segment in c.split('/').filter(|s| !s.is_empty()) {
        assert!(segment != "." && segment != "..", "{c:?} has a dot segment");
        assert!(
            !segment.ends_with('.') && !segment.ends_with("%20"),
            "{c:?} has a segment ending in '.' or a space"
        );
        let bytes = segment.as_bytes();
        for (i, _) in segment.match_indices('%') {
            let escape = bytes.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                escape.len() == 2
                    && escape
                        .iter()
                        .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
                "{c:?}: a malformed or lower-case escape"
            );
            let v = u8::from_str_radix(std::str::from_utf8(escape).unwrap_or("zz"), 16)
                .expect("two hex digits");
            assert!(
                !(v.is_ascii_alphanumeric() || b"-._~/\\;".contains(&v) || v < 0x20 || v == 0x7f),
                "{c:?}: an escape of {v:#04x} should have been decoded or refused"
            );
            let after = bytes.get(i + 3..i + 5).unwrap_or_default();
            assert!(
                !(v == b'%' && after.len() == 2 && after.iter().all(u8::is_ascii_hexdigit)),
                "{c:?} is percent-encoded twice"
            );
        }
        assert!(
            decode(segment).is_ok(),
            "{c:?}: {segment:?} does not decode"
        );
    }
}

/// A rule as the model reads it from the same spec `Policy::new` accepted.
struct ModelRule {
    segments: Vec<ModelSegment>,
    any_suffix: bool,
    case_sensitive: bool,
    methods: Option<Vec<Method>>,
    rule: Rule,
    /// Its position among the rules.
    index: usize,
}

enum ModelSegment {
    Literal(String),
    Any,
    Capture(String),
}

impl ModelRule {
    fn new(index: usize, spec: &RuleSpec, options: Options) -> ModelRule {
        let canonical = canonicalize(&spec.path).expect("an accepted rule's path is canonical");
        let mut parts: Vec<&str> = canonical.split('/').filter(|s| !s.is_empty()).collect();
        let any_suffix = parts.last() == Some(&"**");
        if any_suffix {
            parts.pop();
        }
        let segments = parts
            .iter()
            .map(|p| match *p {
                "*" => ModelSegment::Any,
                p if p.len() > 2 && p.starts_with('{') && p.ends_with('}') => {
                    ModelSegment::Capture(p[1..p.len() - 1].to_owned())
                }
                p => ModelSegment::Literal(decode(p).expect("decodes").into_owned()),
            })
            .collect();
        let methods = spec.methods.as_ref().map(|ms| {
            let mut ms: Vec<Method> = ms
                .iter()
                .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).expect("a method"))
                .collect();
            if options.head_as_get && ms.contains(&Method::GET) {
                ms.push(Method::HEAD);
            }
            ms
        });
        let (resource, action) = spec
            .require
            .as_deref()
            .and_then(|r| r.split_once(':'))
            .expect("resource:action");
        ModelRule {
            segments,
            any_suffix,
            case_sensitive: spec.case_sensitive.unwrap_or(options.case_sensitive),
            methods,
            rule: Rule::Require(
                Resource::parse(resource).expect("a resource"),
                Action::parse(action).expect("an action"),
            ),
            index,
        }
    }

    /// The captures when `path` matches, literals compared exactly or in any ASCII case.
    fn matches<'a>(&self, path: &[Cow<'a, str>], any_case: bool) -> Option<Matched<'a>> {
        let fits = if self.any_suffix {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        if !fits {
            return None;
        }
        let mut found = Matched {
            rule: self.rule,
            index: self.index,
            owner: None,
            org: None,
            id: None,
        };
        for (want, got) in self.segments.iter().zip(path) {
            match want {
                ModelSegment::Literal(l) => {
                    if !(l == got || (any_case && l.eq_ignore_ascii_case(got))) {
                        return None;
                    }
                }
                ModelSegment::Any => {}
                ModelSegment::Capture(name) => match name.as_str() {
                    "owner" => found.owner = Some(got.clone()),
                    "org" => found.org = Some(got.clone()),
                    "id" => found.id = Some(got.clone()),
                    _ => {}
                },
            }
        }
        Some(found)
    }
}

fn model_find<'a>(rules: &[ModelRule], method: &Method, path: &'a str) -> Found<'a> {
    let segments: Vec<Cow<'a, str>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode(s).expect("a canonical segment decodes"))
        .collect();
    let applying = || {
        rules
            .iter()
            .filter(|r| r.methods.as_ref().is_none_or(|m| m.contains(method)))
    };
    let first = applying().find_map(|r| r.matches(&segments, !r.case_sensitive).map(|m| (r, m)));
    let Some((rule, matched)) = first else {
        return Found::default();
    };
    let folded = rule.matches(&segments, false).is_none();
    Found {
        rule: Some(matched),
        also: folded.then(|| applying().find_map(|r| r.matches(&segments, false))),
    }
}
