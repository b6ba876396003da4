//! The route policy for proxied traffic (DESIGN §4): `[[policy.route]]` rules tried in order,
//! the first whose path and method match decides; `policy.default` decides the rest.
//!
//! A rule's `path` is matched segment by segment: a literal, `*` (any one segment), `{name}`
//! (any one segment, captured) and a trailing `/**` (any suffix, none included). Captures
//! `{owner}`, `{org}` and `{id}` describe the object a `require = "resource:action"` rule
//! checks: its owner (`me` is the caller; a user id or a username), its organization (an id or
//! a name) and its id (for allow lists). The check is the same evaluator as `POST /authcheck`.
//!
//! Rules are asked about canonical paths only ([`path::canonicalize`]: the form the upstream
//! receives, with every ambiguous spelling refused), each segment percent-decoded before it is
//! compared. Literals match without regard to ASCII case by default, because Express, ASP.NET
//! and others route that way (`policy.case_sensitive = true`, or `case_sensitive` on a rule,
//! for applications known to be case-sensitive). `HEAD` is `GET` for matching (RFC 9110
//! §9.3.2: servers answer HEAD with their GET handler), unless `policy.head_as_get = false`.

use std::borrow::Cow;
use std::fmt;

use http::Method;
use smallvec::SmallVec;

use crate::rbac::{Action, Resource};

pub mod path;

pub use path::canonicalize;

/// The rules, validated.
#[derive(Clone, Default)]
pub struct Policy {
    routes: Vec<Route>,
    index: Index,
    warnings: Vec<String>,
}

/// Which rules can match a path, found without trying each: a trie over the rules' patterns,
/// literal segments folded to ASCII lower case. A walk yields every rule whose pattern could
/// match the path (a superset: a case-sensitive rule is reached by any case of its literals),
/// and [`Route::matches`] decides each, in rule order. With 50 rules that share their first
/// segments, a look-up tries one or two rules instead of fifty.
#[derive(Clone, Default)]
struct Index {
    /// `nodes[0]` is the root: the empty pattern.
    nodes: Vec<Node>,
}

/// The patterns that share a prefix of segments.
#[derive(Clone, Default)]
struct Node {
    /// The next segment when it is a literal, folded to lower case, sorted by that folding.
    literals: Vec<(String, usize)>,
    /// The next segment when it is `*` or a capture.
    wild: Option<usize>,
    /// Rules whose pattern ends here.
    ends: Vec<usize>,
    /// Rules whose pattern ends here followed by `/**`.
    suffix: Vec<usize>,
}

/// One `[[policy.route]]`.
#[derive(Clone)]
struct Route {
    pattern: Vec<Segment>,
    /// The pattern ends in `/**`.
    any_suffix: bool,
    /// Literals must match in case too.
    case_sensitive: bool,
    /// `None`: every method.
    methods: Option<Vec<Method>>,
    rule: Rule,
    /// The `path` as written, for `portcullis explain`.
    written: String,
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
    /// `case_sensitive`: `None` follows `policy.case_sensitive`.
    pub case_sensitive: Option<bool>,
}

/// The `[policy]` settings every rule shares.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `policy.case_sensitive` (default false).
    pub case_sensitive: bool,
    /// `policy.head_as_get` (default true): a rule listing `GET` governs `HEAD` too.
    pub head_as_get: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            case_sensitive: false,
            head_as_get: true,
        }
    }
}

/// The route that matched a request, with its captures.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    /// What it needs.
    pub rule: Rule,
    /// Its position in `[[policy.route]]` (from 0).
    pub index: usize,
    /// The `{owner}` segment.
    pub owner: Option<Cow<'a, str>>,
    /// The `{org}` segment.
    pub org: Option<Cow<'a, str>>,
    /// The `{id}` segment.
    pub id: Option<Cow<'a, str>>,
}

/// What decides a request. A case-insensitive rule that matched only by ignoring case (a
/// request for `/ADMIN/x` against `/admin/**`) might be the wrong rule for a case-sensitive
/// application, where `/ADMIN/x` is another path that another rule, or the default, governs;
/// so the request must then pass both: the rule as matched, and what governs the path with
/// case respected. Whichever way the application reads the case, the request was judged for
/// it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found<'a> {
    /// The first matching rule; `None`: `policy.default` decides.
    pub rule: Option<Matched<'a>>,
    /// When `rule` matched only by ignoring case: the first rule that matches with case
    /// respected (`Some(None)`: none does, `policy.default` decides).
    pub also: Option<Option<Matched<'a>>>,
}

/// How literals are compared in one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// As the rule's `case_sensitive` says.
    AsRuleSays,
    /// Exactly.
    Exact,
}

/// A request path no rule may be asked about, with the reason (a sentence a client is shown):
/// see [`path`] for what is refused and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous request path: {0}")]
pub struct AmbiguousPath(pub &'static str);

// === impl Policy ===

impl Policy {
    /// Validates `specs`; the error names the rule (`policy.route[2].require`) and the reason.
    pub fn new(specs: &[RuleSpec], options: Options) -> Result<Policy, (String, String)> {
        let routes: Vec<Route> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Route::new(spec, options)
                    .map_err(|(key, why)| (format!("policy.route[{i}].{key}"), why))
            })
            .collect::<Result<_, _>>()?;
        let warnings = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                !options.head_as_get
                    && r.methods
                        .as_ref()
                        .is_some_and(|m| m.contains(&Method::GET) && !m.contains(&Method::HEAD))
            })
            .map(|(i, _)| {
                format!(
                    "policy.route[{i}].methods: lists GET without HEAD while policy.head_as_get \
                     = false, so HEAD requests fall through to later rules or policy.default; \
                     most frameworks answer HEAD with their GET handler"
                )
            })
            .collect();
        let index = Index::new(&routes);
        Ok(Policy {
            routes,
            index,
            warnings,
        })
    }

    /// What `check-config` and start-up warn about: legal rules that are likely mistakes.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Rule `index` as written: its path, its methods (`None`: every method; `HEAD` added when
    /// `GET` governs it) and what it needs.
    pub fn describe(&self, index: usize) -> Option<(&str, Option<&[Method]>, Rule)> {
        let r = self.routes.get(index)?;
        Some((r.written.as_str(), r.methods.as_deref(), r.rule))
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rules that decide `method` on `path`, a canonical path ([`canonicalize`]): the
    /// first matching rule, and, when that rule matched only by ignoring case, the first rule
    /// that matches with case respected (see [`Found`]).
    pub fn find<'a>(&self, method: &Method, path: &'a str) -> Result<Found<'a>, AmbiguousPath> {
        if self.routes.is_empty() {
            return Ok(Found::default());
        }
        let segments = segments(path)?;
        let mut folded = false;
        let rule = self.first_match(method, &segments, Case::AsRuleSays, &mut folded);
        let also = folded.then(|| self.first_match(method, &segments, Case::Exact, &mut false));
        Ok(Found { rule, also })
    }

    /// The first rule, in order, that governs `method` on `segments` with literals compared as
    /// `case` says; `folded` is set when it matched only by ignoring case.
    fn first_match<'a>(
        &self,
        method: &Method,
        segments: &[Cow<'a, str>],
        case: Case,
        folded: &mut bool,
    ) -> Option<Matched<'a>> {
        let mut best: Option<(Matched<'a>, bool)> = None;
        self.index.walk(0, 0, segments, &mut |i| {
            if best.as_ref().is_some_and(|(m, _)| m.index < i) {
                return;
            }
            let route = &self.routes[i];
            if !route.methods.as_ref().is_none_or(|m| m.contains(method)) {
                return;
            }
            let mut fold = false;
            if let Some(m) = route.matches(i, segments, case, &mut fold) {
                best = Some((m, fold));
            }
        });
        let (matched, fold) = best?;
        *folded |= fold;
        Some(matched)
    }

    /// [`Policy::find`] the plain way, every rule tried in order: what the index must agree
    /// with.
    #[cfg(test)]
    fn find_linear<'a>(&self, method: &Method, path: &'a str) -> Result<Found<'a>, AmbiguousPath> {
        let segments = segments(path)?;
        let applies = |r: &&Route| r.methods.as_ref().is_none_or(|m| m.contains(method));
        let mut folded = false;
        let rule = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| applies(r))
            .find_map(|(i, r)| r.matches(i, &segments, Case::AsRuleSays, &mut folded));
        let also = folded.then(|| {
            self.routes
                .iter()
                .enumerate()
                .filter(|(_, r)| applies(r))
                .find_map(|(i, r)| r.matches(i, &segments, Case::Exact, &mut false))
        });
        Ok(Found { rule, also })
    }
}

// === impl Index ===

impl Index {
    fn new(routes: &[Route]) -> Index {
        let mut index = Index {
            nodes: vec![Node::default()],
        };
        for (i, route) in routes.iter().enumerate() {
            let mut node = 0;
            for segment in &route.pattern {
                node = match segment {
                    Segment::Literal(l) => index.literal_child(node, l),
                    Segment::Any | Segment::Capture(_) => index.wild_child(node),
                };
            }
            let end = &mut index.nodes[node];
            if route.any_suffix {
                end.suffix.push(i);
            } else {
                end.ends.push(i);
            }
        }
        index
    }

    fn literal_child(&mut self, node: usize, literal: &str) -> usize {
        let folded = literal.to_ascii_lowercase();
        let at = self.nodes[node]
            .literals
            .binary_search_by(|(l, _)| folded_cmp(l, &folded));
        match at {
            Ok(at) => self.nodes[node].literals[at].1,
            Err(at) => {
                let child = self.push();
                self.nodes[node].literals.insert(at, (folded, child));
                child
            }
        }
    }

    fn wild_child(&mut self, node: usize) -> usize {
        if let Some(child) = self.nodes[node].wild {
            return child;
        }
        let child = self.push();
        self.nodes[node].wild = Some(child);
        child
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Calls `found` with every rule whose pattern could match `path` from `node`, at segment
    /// `depth` (each once, in no particular order).
    fn walk(
        &self,
        node: usize,
        depth: usize,
        path: &[Cow<'_, str>],
        found: &mut impl FnMut(usize),
    ) {
        let node = &self.nodes[node];
        node.suffix.iter().for_each(|&i| found(i));
        let Some(segment) = path.get(depth) else {
            node.ends.iter().for_each(|&i| found(i));
            return;
        };
        if let Ok(at) = node
            .literals
            .binary_search_by(|(l, _)| folded_cmp(l, segment))
        {
            self.walk(node.literals[at].1, depth + 1, path, found);
        }
        if let Some(wild) = node.wild {
            self.walk(wild, depth + 1, path, found);
        }
    }
}

/// `a` and `b` compared as if folded to ASCII lower case.
fn folded_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
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
    fn new(spec: &RuleSpec, options: Options) -> Result<Route, (&'static str, String)> {
        let path = spec.path.as_str();
        if !path.starts_with('/') {
            return Err(("path", format!("{path:?} does not start with '/'")));
        }
        // A literal no canonical request path can spell would never match.
        let canonical = canonicalize(path).map_err(|AmbiguousPath(why)| {
            ("path", format!("{path:?} can never match a request: {why}"))
        })?;
        let mut parts: Vec<&str> = canonical.split('/').filter(|s| !s.is_empty()).collect();
        let any_suffix = parts.last() == Some(&"**");
        if any_suffix {
            parts.pop();
        }
        let mut pattern = Vec::with_capacity(parts.len());
        for part in parts {
            pattern.push(match part {
                "*" => Segment::Any,
                "**" => return Err(("path", format!("{path:?}: '**' may only end the path"))),
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
                    path::decode(literal)
                        .map_err(|AmbiguousPath(why)| ("path", format!("{path:?}: {why}")))?
                        .into_owned(),
                ),
            });
        }
        let methods = match &spec.methods {
            None => None,
            Some(list) => {
                let mut methods = list
                    .iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| ("methods", format!("{m:?} is not an HTTP method")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // Decided once here, so matching is a plain `contains`.
                if options.head_as_get
                    && methods.contains(&Method::GET)
                    && !methods.contains(&Method::HEAD)
                {
                    methods.push(Method::HEAD);
                }
                Some(methods)
            }
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
            case_sensitive: spec.case_sensitive.unwrap_or(options.case_sensitive),
            methods,
            rule,
            written: spec.path.clone(),
        })
    }

    /// The captures when `path` matches; `folded` is set when a literal matched only by
    /// ignoring case.
    fn matches<'a>(
        &self,
        index: usize,
        path: &[Cow<'a, str>],
        case: Case,
        folded: &mut bool,
    ) -> Option<Matched<'a>> {
        if path.len() < self.pattern.len() || (!self.any_suffix && path.len() != self.pattern.len())
        {
            return None;
        }
        let mut fold = false;
        let mut found = Matched {
            rule: self.rule,
            index,
            owner: None,
            org: None,
            id: None,
        };
        for (want, got) in self.pattern.iter().zip(path) {
            match want {
                Segment::Literal(l) if l.as_str() != got.as_ref() => {
                    if case == Case::Exact || self.case_sensitive || !l.eq_ignore_ascii_case(got) {
                        return None;
                    }
                    fold = true;
                }
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
        *folded |= fold;
        Some(found)
    }
}

/// The decoded, non-empty segments of a canonical request path. A path that is not canonical
/// is refused here too, so no caller can skip [`canonicalize`].
/// Up to eight segments stay on the stack: no allocation for a request's look-up.
fn segments(path: &str) -> Result<SmallVec<[Cow<'_, str>; 8]>, AmbiguousPath> {
    let Cow::Borrowed(path) = canonicalize(path)? else {
        return Err(AmbiguousPath("The path is not in its canonical form."));
    };
    let mut out = SmallVec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        out.push(path::decode(raw)?);
    }
    Ok(out)
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
            case_sensitive: None,
        }
    }

    fn policy() -> Policy {
        Policy::new(
            &[
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
            ],
            Options::default(),
        )
        .expect("valid")
    }

    fn find<'a>(p: &Policy, method: Method, path: &'a str) -> Option<Matched<'a>> {
        p.find(&method, path).expect("unambiguous").rule
    }

    /// The index finds what trying every rule in order finds: the same rule, captures and
    /// exact-case rule, for thousands of generated policies and paths (literals in both cases
    /// and percent-encoded, `*`, captures, `/**`, methods, per-rule case sensitivity).
    #[test]
    fn the_index_finds_what_trying_every_rule_in_order_finds() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        const RULE_SEGMENTS: [&str; 8] = ["a", "A", "b", "app", "%61", "*", "{id}", "{owner}"];
        const PATH_SEGMENTS: [&str; 6] = ["a", "A", "b", "APP", "app", "x"];
        let methods = [Method::GET, Method::POST, Method::HEAD, Method::DELETE];
        let mut compared = 0;
        for _ in 0..400 {
            let mut specs = Vec::new();
            for _ in 0..1 + next(12) {
                let mut path = String::new();
                for _ in 0..next(4) {
                    path.push('/');
                    path.push_str(RULE_SEGMENTS[next(RULE_SEGMENTS.len())]);
                }
                if next(3) == 0 {
                    path.push_str("/**");
                }
                if path.is_empty() {
                    path.push('/');
                }
                let mut spec = rule(
                    &path,
                    [None, Some(&["GET"][..]), Some(&["POST", "DELETE"][..])][next(3)],
                    None,
                );
                spec.case_sensitive = [None, Some(true), Some(false)][next(3)];
                specs.push(spec);
            }
            let options = Options {
                case_sensitive: next(2) == 0,
                head_as_get: next(2) == 0,
            };
            let p = Policy::new(&specs, options).expect("valid rules");
            for _ in 0..40 {
                let mut path = String::new();
                for _ in 0..next(5) {
                    path.push('/');
                    path.push_str(PATH_SEGMENTS[next(PATH_SEGMENTS.len())]);
                }
                if path.is_empty() {
                    path.push('/');
                }
                for method in &methods {
                    let indexed = p.find(method, &path).expect("canonical");
                    let linear = p.find_linear(method, &path).expect("canonical");
                    assert_eq!(indexed, linear, "{method} {path} under {specs:?}");
                    compared += usize::from(linear.rule.is_some());
                }
            }
        }
        assert!(
            compared > 10_000,
            "too few paths matched a rule: {compared}"
        );
    }

    /// The index is what makes a look-up cheap (issue 18): under 50 rules that share their
    /// first two segments, a path is offered only the rules that could match it, not all 50.
    /// (The test above checks the results, which an index offering every rule would also get
    /// right: mutation testing found that gap.)
    #[test]
    fn the_index_offers_a_path_only_the_rules_that_could_match_it() {
        let mut specs: Vec<RuleSpec> = (1..50)
            .map(|i| {
                rule(
                    &format!("/app/v1/r{i}/{{id}}"),
                    Some(&["GET", "POST"][..]),
                    Some("workspace:read"),
                )
            })
            .collect();
        specs.push(rule("/app/**", None, Some("user:read")));
        let p = Policy::new(&specs, Options::default()).expect("valid rules");
        let offered = |path: &str| {
            let segments = segments(path).expect("canonical");
            let mut found = Vec::new();
            p.index.walk(0, 0, &segments, &mut |i| found.push(i));
            found.sort_unstable();
            found
        };
        assert_eq!(offered("/app/v1/items/42"), [49]);
        assert_eq!(offered("/APP/V1/R7/42"), [6, 49]);
        assert_eq!(offered("/app/v1/r7/42/more"), [49]);
        assert_eq!(offered("/other/v1/r7/42"), Vec::<usize>::new());
    }

    /// The index names the rule as written in `[[policy.route]]` (explain shows its line),
    /// also when rules before it are for other methods.
    #[test]
    fn a_match_names_its_rule_by_its_position_among_all_rules() {
        let p = policy();
        // Rules 1 (GET only) and 3 (POST only) come before /static/** (rule 4).
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let found = find(&p, method.clone(), "/static/app.js").expect("a match");
            assert_eq!(found.index, 4, "{method}");
        }
        let found = find(&p, Method::POST, "/api/v2/workspaces/w/start").expect("a match");
        assert_eq!(found.index, 3);
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
        // Escapes are decoded before matching.
        let m = find(&p, Method::GET, "/api/v2/users/caf%C3%A9/workspaces").unwrap();
        assert_eq!(m.owner.as_deref(), Some("caf\u{e9}"));
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
            assert!(p.find(&Method::GET, bad).is_err(), "{bad}");
        }
        // With no rules nothing is judged (the default decides).
        assert_eq!(
            Policy::default().find(&Method::GET, "/a/../b"),
            Ok(Found::default())
        );
    }

    #[test]
    fn literals_match_in_any_case_unless_told_otherwise() {
        let p = policy();
        assert!(find(&p, Method::GET, "/HEALTH").is_some());
        assert!(find(&p, Method::GET, "/Static/a.css").is_some());
        assert!(find(&p, Method::GET, "/API/V2/users/me/workspaces").is_some());
        // An exact match needs nothing more; a folded one is judged with case respected too.
        assert_eq!(p.find(&Method::GET, "/static/a.css").unwrap().also, None);
        assert_eq!(
            p.find(&Method::GET, "/Static/a.css").unwrap().also,
            Some(None)
        );
        let both = Policy::new(
            &[
                rule("/admin/**", None, Some("user:create")),
                rule("/ADMIN/**", None, None),
            ],
            Options::default(),
        )
        .unwrap();
        let found = both.find(&Method::GET, "/ADMIN/x").unwrap();
        assert!(matches!(found.rule.unwrap().rule, Rule::Require(..)));
        assert_eq!(found.also.unwrap().unwrap().rule, Rule::Public);
        let strict = Policy::new(
            &[rule("/admin/**", None, Some("user:create"))],
            Options {
                case_sensitive: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert!(find(&strict, Method::GET, "/admin/x").is_some());
        assert!(find(&strict, Method::GET, "/ADMIN/x").is_none());
        // A rule's own setting wins over the policy's.
        let mut loose = rule("/admin/**", None, Some("user:create"));
        loose.case_sensitive = Some(false);
        let mixed = Policy::new(
            &[loose],
            Options {
                case_sensitive: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert!(find(&mixed, Method::GET, "/Admin/x").is_some());
    }

    #[test]
    fn head_is_get_for_matching_unless_kept_apart() {
        let reports = [rule("/reports/*", Some(&["GET"]), Some("user:create"))];
        let p = Policy::new(&reports, Options::default()).unwrap();
        assert!(find(&p, Method::HEAD, "/reports/q3").is_some());
        assert!(find(&p, Method::POST, "/reports/q3").is_none());
        assert!(p.warnings().is_empty());
        let apart = Options {
            head_as_get: false,
            ..Options::default()
        };
        let p = Policy::new(&reports, apart).unwrap();
        assert!(find(&p, Method::HEAD, "/reports/q3").is_none());
        assert_eq!(p.warnings().len(), 1);
        assert!(p.warnings()[0].starts_with("policy.route[0].methods"));
    }

    #[test]
    fn only_canonical_paths_are_matched() {
        let p = policy();
        // A caller that skipped `canonicalize` is refused rather than answered.
        assert!(p.find(&Method::GET, "//health").is_err());
        assert!(p.find(&Method::GET, "/%68ealth").is_err());
        assert!(find(&p, Method::GET, "/health").is_some());
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
                rule("/a;x/b", None, None),
                "policy.route[0].path",
                "can never match",
            ),
            (
                rule("/a/../b", None, None),
                "policy.route[0].path",
                "can never match",
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
            let (got_key, got_reason) =
                Policy::new(&[spec], Options::default()).expect_err("refused");
            assert_eq!(got_key, key);
            assert!(
                got_reason.contains(reason),
                "{got_reason} should say {reason}"
            );
        }
    }
}
