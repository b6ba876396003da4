//! What Portcullis would do with a request, without sending anything upstream: `portcullis
//! explain` and `POST {api.prefix}/portcullis/explain`.
//!
//! Nothing here decides. The request is judged by [`admit::admit_traced`] (the route decision
//! of every proxied request, with a trace that records instead of one that does nothing), its
//! RBAC checks by [`crate::rbac::Subject::decide`] (the evaluator itself), and its head is
//! rewritten by [`crate::http::proxy::Upstream::prepare`] (what `forward` sends). This module
//! records those steps and renders them, as JSON or as text for a human.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64ct::{Base64UrlUnpadded, Encoding};
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::assertion;
use crate::auth::session::Authenticated;
use crate::auth::token::SESSION_TOKEN_HEADER;
use crate::config::PolicyDefault;
use crate::headers::{Removals, Removed};
use crate::http::admit::{self, Trace};
use crate::http::api;
use crate::http::app::App;
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::http::proxy;
use crate::http::router;
use crate::model::{AllowListEntry, ApiKey, LoginType, Session};
use crate::policy::{Matched, Rule};
use crate::rbac::{self, explain as voters, Action, Level, Object, Step, Vote};

mod text;

/// The client address a question is asked for when it names none: a documentation address
/// (RFC 5737), so an untrusted peer unless `server.trusted_proxies` says otherwise.
pub const DEFAULT_PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

/// The request to explain (the API's body; the command line builds the same).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The method.
    pub method: String,
    /// The request target: a path, optionally with a query.
    pub path: String,
    /// The client's headers: a name to a value, or to a list of values.
    #[serde(default)]
    pub headers: BTreeMap<String, Values>,
    /// A session token to authenticate, sent as `Coder-Session-Token`.
    #[serde(default)]
    pub token: Option<String>,
    /// Judge as this user's session with full scope (a username, an email or a user id)
    /// instead of authenticating the request.
    #[serde(default)]
    pub user: Option<String>,
    /// The client's address (default [`DEFAULT_PEER`]).
    #[serde(default)]
    pub peer: Option<IpAddr>,
}

/// A header's value or values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Values {
    /// One value.
    One(String),
    /// Several, in order.
    Many(Vec<String>),
}

/// What Portcullis would do, step by step.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The method asked about.
    pub method: String,
    /// The request target asked about.
    pub path: String,
    /// Who answers: `proxy` (the route policy, then the upstream), `api` (Portcullis's own
    /// API, no route policy), `portcullis` (forward-auth, the JWKS) or `refused` (before any
    /// of those).
    pub handled_by: &'static str,
    /// The canonical path the rules were asked about.
    pub canonical: Option<String>,
    /// The rules applied, in order (a second one when the first matched only by ignoring
    /// case).
    pub rules: Vec<RuleReport>,
    /// The session judged, or the user given.
    pub subject: Option<SubjectReport>,
    /// The RBAC checks of a `require` rule.
    pub checks: Vec<CheckReport>,
    /// The answer.
    pub decision: Decision,
    /// What the upstream would receive, when the request goes there.
    pub upstream: Option<UpstreamReport>,
}

/// One rule applied.
#[derive(Debug, Serialize)]
pub struct RuleReport {
    /// `policy.route[N]`, or `policy.default`.
    pub source: String,
    /// The line of the rule in the config file.
    pub line: Option<usize>,
    /// The rule's path as written.
    pub path: Option<String>,
    /// The methods it governs (`None`: all).
    pub methods: Option<Vec<String>>,
    /// What it needs: `public`, `authenticated`, `require resource:action` or `deny`.
    pub needs: String,
    /// Judged because the first rule matched only by ignoring case, as the rule that governs
    /// the path with case respected.
    pub exact_case: bool,
    /// Its captures.
    pub captures: BTreeMap<&'static str, String>,
}

/// The subject.
#[derive(Debug, Serialize)]
pub struct SubjectReport {
    /// `token` (authenticated from the request) or `user` (given, full scope).
    pub source: &'static str,
    /// Username.
    pub username: String,
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Stored site roles (plus the implicit `member`).
    pub roles: Vec<String>,
    /// Organization roles as `<role>:<organization id>`.
    pub org_roles: Vec<String>,
    /// The key's scopes.
    pub scopes: Vec<String>,
    /// The key's allow list, `type:id`.
    pub allow_list: Vec<String>,
    /// The key id (`None` for a given user).
    pub key_id: Option<String>,
}

/// One RBAC check.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// `resource:action`.
    pub permission: String,
    /// The object: owner, organization, id, "any organization".
    pub object: BTreeMap<&'static str, String>,
    /// The answer.
    pub allowed: bool,
    /// Each step, as a sentence naming the roles or scopes that voted.
    pub steps: Vec<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Decision {
    /// Whether the request goes on (upstream, or to Portcullis's own handler).
    pub allowed: bool,
    /// The status a refusal is answered with (`None` when it goes on).
    pub status: Option<u16>,
    /// The refusal's message.
    pub message: Option<String>,
    /// The refusal's detail.
    pub detail: Option<String>,
}

/// What the upstream receives.
#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    /// The method.
    pub method: String,
    /// The request target at the upstream.
    pub target: String,
    /// Every header, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The headers removed from the client's request, and why.
    pub removed: Vec<RemovedReport>,
    /// The identity assertion's claims, when `identity.assertion_key` is set.
    pub assertion_claims: Option<Value>,
}

/// A removed header.
#[derive(Debug, Serialize)]
pub struct RemovedReport {
    /// Its name as received.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

/// The trace that records [`admit::admit_traced`].
struct Recorder<'a> {
    app: &'a App,
    canonical: Option<String>,
    rules: Vec<RuleReport>,
    subject: Option<Authenticated>,
    checks: Vec<(Action, Object, Vec<Step>)>,
}

// === impl Question ===

impl Question {
    fn header_map(&self) -> Result<HeaderMap, Error> {
        let bad =
            |what: String| Error::coder(StatusCode::BAD_REQUEST, "Invalid explain request.", what);
        let mut map = HeaderMap::new();
        for (name, values) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("{name:?} is not a header name")))?;
            let values = match values {
                Values::One(v) => std::slice::from_ref(v),
                Values::Many(v) => v.as_slice(),
            };
            for value in values {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| bad(format!("the value of {name} is not a header value")))?;
                map.append(name.clone(), value);
            }
        }
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(token)
                .map_err(|_| bad("the token is not a header value".into()))?;
            map.insert(SESSION_TOKEN_HEADER.clone(), value);
        }
        if !map.contains_key(HOST) {
            map.insert(HOST, HeaderValue::from_static("localhost"));
        }
        Ok(map)
    }
}

// === impl Trace for Recorder ===

impl Trace for Recorder<'_> {
    type Rbac = Vec<Step>;

    fn canonical(&mut self, path: &str) {
        self.canonical = Some(path.to_owned());
    }

    fn rule(&mut self, route: Option<&Matched<'_>>, exact_case: bool) {
        let policy = &self.app.config.policy;
        let report = match route {
            None => RuleReport {
                source: "policy.default".into(),
                line: None,
                path: None,
                methods: None,
                needs: match policy.default {
                    PolicyDefault::Public => "public",
                    PolicyDefault::Authenticated => "authenticated",
                    PolicyDefault::Deny => "deny",
                }
                .into(),
                exact_case,
                captures: BTreeMap::new(),
            },
            Some(m) => {
                let written = policy.routes.describe(m.index);
                let captures = [("owner", &m.owner), ("org", &m.org), ("id", &m.id)]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.as_deref()?.to_owned())))
                    .collect();
                RuleReport {
                    source: format!("policy.route[{}]", m.index),
                    line: policy.lines.get(m.index).copied(),
                    path: written.map(|(path, _, _)| path.to_owned()),
                    methods: written
                        .and_then(|(_, methods, _)| methods)
                        .map(|list| list.iter().map(|m| m.to_string()).collect()),
                    needs: needs(m.rule),
                    exact_case,
                    captures,
                }
            }
        };
        self.rules.push(report);
    }

    fn subject(&mut self, auth: &Authenticated) {
        self.subject = Some(auth.clone());
    }

    fn check(&mut self, action: Action, object: &Object) -> &mut Vec<Step> {
        self.checks.push((action, object.clone(), Vec::new()));
        let last = self.checks.len() - 1;
        &mut self.checks[last].2
    }
}

fn needs(rule: Rule) -> String {
    match rule {
        Rule::Public => "public".into(),
        Rule::Authenticated => "authenticated".into(),
        Rule::Require(r, a) => format!("require {}:{}", r.name(), a.name()),
    }
}

/// The removals [`proxy::Upstream::prepare`] reports.
#[derive(Default)]
struct Removal(Vec<(String, Removed)>);

impl Removals for Removal {
    fn removed(&mut self, name: &HeaderName, why: Removed) {
        if !self.0.iter().any(|(n, _)| n == name.as_str()) {
            self.0.push((name.as_str().to_owned(), why));
        }
    }
}

/// Explains `question` on `app`. `Err` only for a question that is not a request (a bad
/// method, header or target: `400`) or a `user` that does not exist (`404`); every answer the
/// request itself would get is in the [`Decision`].
pub async fn explain(app: &App, question: &Question) -> Result<Explanation, Error> {
    let bad =
        |what: String| Error::coder(StatusCode::BAD_REQUEST, "Invalid explain request.", what);
    let method = Method::from_bytes(question.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad(format!("{:?} is not a method", question.method)))?;
    if !question.path.starts_with('/') && question.path != "*" {
        return Err(bad("the path must start with '/'".into()));
    }
    let uri: Uri = question
        .path
        .parse()
        .map_err(|e| bad(format!("the path is not a request target: {e}")))?;
    if question.token.is_some() && question.user.is_some() {
        return Err(bad("give a token or a user, not both".into()));
    }
    let headers = question.header_map()?;
    let given = match &question.user {
        None => None,
        Some(who) => Some(session_of(app, who).await?),
    };
    let mut out = Explanation {
        method: method.to_string(),
        path: question.path.clone(),
        handled_by: "proxy",
        canonical: None,
        rules: Vec::new(),
        subject: given.as_ref().map(|a| subject_report(a, "user")),
        checks: Vec::new(),
        decision: Decision {
            allowed: true,
            status: None,
            message: None,
            detail: None,
        },
        upstream: None,
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    *req.version_mut() = Version::HTTP_11;
    // The router's own refusals and hand-offs, before the route policy.
    let early = proxy::check_method(req.method())
        .and_then(|()| crate::headers::check_framing(req.headers()).map_err(Error::from))
        .and_then(|()| router::canonical_target(&mut req));
    if let Err(e) = early {
        out.handled_by = "refused";
        out.decision = refusal(e);
        return Ok(out);
    }
    let path = req.uri().path().to_owned();
    out.canonical = Some(path.clone());
    if path.starts_with(router::OWN_PREFIX) {
        out.handled_by = "portcullis";
        return Ok(out);
    }
    if router::api_path(&app.config.api.prefix, &path).is_some_and(api::serves) {
        out.handled_by = "api";
        return Ok(out);
    }
    let mut recorder = Recorder {
        app,
        canonical: None,
        rules: Vec::new(),
        subject: None,
        checks: Vec::new(),
    };
    let request = (req.method(), req.uri(), req.headers());
    let admitted = admit::admit_traced(app, request, given.as_ref(), &mut recorder).await;
    out.canonical = recorder.canonical.or(out.canonical);
    out.rules = recorder.rules;
    if let Some(auth) = &recorder.subject {
        let source = if given.is_some() { "user" } else { "token" };
        out.subject = Some(subject_report(auth, source));
    }
    let judged = recorder.subject.as_ref().or(given.as_ref());
    out.checks = recorder
        .checks
        .iter()
        .map(|(action, object, steps)| check_report(judged, *action, object, steps))
        .collect();
    let auth = match admitted {
        Ok(auth) => auth,
        Err(e) => {
            out.decision = refusal(e);
            return Ok(out);
        }
    };
    let ip = question.peer.unwrap_or(DEFAULT_PEER);
    let trusted = app
        .config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&ip));
    let peer = Peer::new(SocketAddr::new(ip, 50000), app.tls.is_some(), trusted);
    let mut removals = Removal::default();
    if let Err(e) = app
        .upstream
        .prepare(&mut req, &peer, app, auth.as_ref(), &mut removals)
    {
        out.decision = refusal(e);
        return Ok(out);
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let assertion_claims = req
        .headers()
        .get(&assertion::HEADER)
        .and_then(|v| claims(v.as_bytes()));
    out.upstream = Some(UpstreamReport {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers,
        removed: removals
            .0
            .into_iter()
            .map(|(name, why)| RemovedReport {
                name,
                reason: why.reason(),
            })
            .collect(),
        assertion_claims,
    });
    Ok(out)
}

/// The session of `who` with full scope: a `coder:all` key, allow list `*:*`, never stored.
async fn session_of(app: &App, who: &str) -> Result<Authenticated, Error> {
    let user = app
        .users()
        .find(who)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .ok_or_else(|| {
            Error::coder(
                StatusCode::NOT_FOUND,
                "No such user.",
                format!("no user matches {who:?} (give a username, an email or a user id)"),
            )
        })?;
    let memberships = app
        .store
        .memberships_of(user.id)
        .await
        .map_err(Error::StoreUnavailable)?;
    let now = OffsetDateTime::now_utc();
    let key = ApiKey {
        id: "explainkey".into(),
        hashed_secret: [0; 32],
        user_id: user.id,
        last_used: now,
        expires_at: now + time::Duration::hours(1),
        created_at: now,
        updated_at: now,
        login_type: LoginType::Password,
        lifetime_seconds: 3600,
        ip_address: String::new(),
        token_name: String::new(),
        scopes: Arc::new([rbac::scopes::ALL.to_owned()]),
        allow_list: Arc::new([AllowListEntry {
            resource_type: "*".into(),
            id: "*".into(),
        }]),
        not_after: None,
    };
    let session = Session::new(key, user, memberships)
        .ok_or_else(|| Error::internal("the explained session's key id is not a key id"))?;
    Ok(Authenticated::detached(session))
}

fn subject_report(auth: &Authenticated, source: &'static str) -> SubjectReport {
    let s = auth.session();
    let mut roles = s.user.roles.clone();
    roles.push(rbac::roles::MEMBER.to_owned());
    SubjectReport {
        source,
        username: s.user.username.clone(),
        user_id: s.user.id.to_string(),
        email: s.user.email.clone(),
        roles,
        org_roles: s
            .memberships
            .iter()
            .flat_map(|m| {
                rbac::org_roles(m).map(move |r| format!("{}:{}", r.name, m.organization_id))
            })
            .collect(),
        scopes: s.key.scopes.to_vec(),
        allow_list: s
            .key
            .allow_list
            .iter()
            .map(|e| format!("{}:{}", e.resource_type, e.id))
            .collect(),
        key_id: (source == "token").then(|| s.key.id.to_string()),
    }
}

fn check_report(
    auth: Option<&Authenticated>,
    action: Action,
    object: &Object,
    steps: &[Step],
) -> CheckReport {
    let resource = object.resource;
    let mut described = BTreeMap::new();
    if let Some(owner) = object.owner {
        described.insert("owner", owner.to_string());
    }
    if let Some(org) = object.org {
        described.insert("organization", org.to_string());
    }
    if object.any_org {
        described.insert("organization", "any the subject is a member of".into());
    }
    if let Some(id) = object.id {
        described.insert("id", id.to_string());
    }
    let empty = Vec::new();
    let (site_roles, memberships, scopes) = match auth {
        Some(a) => (
            &a.session().user.roles,
            &a.session().memberships[..],
            &a.session().key.scopes[..],
        ),
        None => (&empty, &[][..], &empty[..]),
    };
    let list = |names: Vec<String>| {
        if names.is_empty() {
            "no role".to_owned()
        } else {
            names.join(", ")
        }
    };
    let vote_word = |v: Vote| match v {
        Vote::Allow => "allows",
        Vote::Deny => "denies",
        Vote::Abstain => "abstains on",
    };
    let steps = steps
        .iter()
        .map(|step| match *step {
            Step::NoSuchAction => format!("{} has no action {}", resource.name(), action.name()),
            Step::Roles(level, vote) => {
                let at = match level {
                    Level::Site => "site permissions".to_owned(),
                    Level::User => "user permissions (own objects)".to_owned(),
                    Level::Org(org) => format!("organization {org} permissions"),
                    Level::Member(org) => format!("organization {org} member permissions"),
                };
                let who = if vote == Vote::Abstain {
                    "none of the roles grants or negates it".to_owned()
                } else {
                    format!(
                        "by {}",
                        list(voters::roles_voting(
                            site_roles,
                            memberships,
                            level,
                            resource,
                            action,
                            vote
                        ))
                    )
                };
                format!(
                    "roles: {at} {} {}:{} ({who})",
                    vote_word(vote),
                    resource.name(),
                    action.name()
                )
            }
            Step::NotMember(org) => format!("roles: not a member of organization {org}"),
            Step::NotOwner => "roles: not the subject's own object".to_owned(),
            Step::Scope { own, vote } => {
                let scope_of = if own { "own-object scope" } else { "scope" };
                let who = if vote == Vote::Abstain {
                    format!("no {scope_of} of the key covers it")
                } else {
                    format!(
                        "by {}",
                        voters::scopes_voting(scopes, own, resource, action, vote).join(", ")
                    )
                };
                format!(
                    "key {scope_of}s {} {}:{} ({who})",
                    vote_word(vote),
                    resource.name(),
                    action.name()
                )
            }
            Step::AllowList(true) => "allow list admits the object".to_owned(),
            Step::AllowList(false) => "allow list does not admit the object".to_owned(),
        })
        .collect();
    let allowed = auth.is_some_and(|a| a.subject().allows(action, object));
    CheckReport {
        permission: format!("{}:{}", resource.name(), action.name()),
        object: described,
        allowed,
        steps,
    }
}

/// A refusal's status, message and detail, as the client would get them.
fn refusal(e: Error) -> Decision {
    let status = e.status();
    let body = e
        .into_response()
        .into_body()
        .into_full_bytes()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let text = |key: &str| {
        body.as_ref()
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Decision {
        allowed: false,
        status: Some(status.as_u16()),
        message: text("message"),
        detail: text("detail"),
    }
}

/// The claims of a JWT (its middle part), unverified: it was signed here a moment ago.
fn claims(jwt: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(jwt).ok()?;
    let payload = text.split('.').nth(1)?;
    let bytes = Base64UrlUnpadded::decode_vec(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}
