//! API keys of a user (spec/coder-api.md §7.3-7.5): session keys for the CLI-style login, named
//! tokens with scopes, an allow list and a lifetime, and their listing, lookup, expiry and
//! deletion.
//!
//! Who may do what is the RBAC evaluator's answer for the `api_key` object owned by the key's
//! user. A token made by a caller whose own key is restricted (not `coder:all` with a `*:*`
//! allow list) inherits that key's scopes and allow list when it asks for none, is refused
//! anything beyond them, and never outlives that key.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::auth::session::Authenticated;
use crate::auth::token;
use crate::coder::tag_failed;
use crate::http::api::users;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::rbac::scopes as scope;
use crate::rbac::{Action, Object, Resource};
use crate::store::{AllowListEntry, ApiKey, Invalidation, LoginType};
use crate::users::{NewKey, UserError};

/// The most entries an allow list may have (§7.3).
const MAX_ALLOW_LIST: usize = 128;

/// How many generated names are tried before giving up on a free one.
const NAME_ATTEMPTS: usize = 8;

/// `codersdk.CreateTokenRequest`.
#[derive(Debug, Default, Deserialize)]
struct CreateToken {
    /// Nanoseconds (Go's `time.Duration`); 0 or absent: the default.
    #[serde(default)]
    lifetime: i64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    token_name: String,
    #[serde(default)]
    allow_list: Option<Vec<AllowListInput>>,
}

/// An allow-list entry as a client may send it: `{"type","id"}` or the legacy `"type:id"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AllowListInput {
    Entry {
        #[serde(rename = "type")]
        resource_type: String,
        id: String,
    },
    Legacy(String),
}

/// Coder's `APIKey` JSON (§7.4).
#[derive(Debug, Serialize)]
struct ApiKeyJson<'a> {
    id: &'a str,
    user_id: uuid::Uuid,
    #[serde(with = "time::serde::rfc3339")]
    last_used: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    login_type: &'static str,
    scope: &'a str,
    scopes: &'a [String],
    token_name: &'a str,
    lifetime_seconds: i64,
    allow_list: &'a [AllowListEntry],
}

// === impl ApiKeyJson ===

impl<'a> ApiKeyJson<'a> {
    fn new(key: &'a ApiKey) -> Self {
        let has = |s: &str| key.scopes.iter().any(|k| k == s);
        let legacy = if has(scope::ALL) {
            "all"
        } else if has("coder:application_connect") {
            "application_connect"
        } else {
            key.scopes.first().map_or("", String::as_str)
        };
        ApiKeyJson {
            id: &key.id,
            user_id: key.user_id,
            last_used: key.last_used,
            expires_at: key.expires_at,
            created_at: key.created_at,
            updated_at: key.updated_at,
            login_type: key.login_type.as_str(),
            scope: legacy,
            scopes: &key.scopes,
            token_name: &key.token_name,
            lifetime_seconds: key.lifetime_seconds,
            allow_list: &key.allow_list,
        }
    }
}

/// `POST /users/{user}/keys`: `201 {"key": "<id>-<secret>"}`, a `coder:all` key with login
/// type `password` lasting `tokens.default_lifetime` (§7.5).
pub async fn create_key(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    param: &str,
) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    if !api::allowed(&auth, Action::CREATE, &Object::api_key(user.id)) {
        // Coder answers a key it may not create for this user as not found.
        return Err(Error::NotFound);
    }
    let ops = app.users();
    let new = NewKey {
        login_type: LoginType::Password,
        lifetime: ops.default_token_lifetime(),
        scopes: vec![scope::ALL.to_owned()],
        token_name: String::new(),
        ip_address: peer.addr.ip().to_string(),
        allow_list: Vec::new(),
        not_after: None,
    };
    let new = within_caller(&auth, new, false, false)?;
    let key = ops.issue_key(&user, new).await?;
    api::json(StatusCode::CREATED, &json!({ "key": key }))
}

/// The longest token name, in characters (Coder's names of things are at most 128).
const MAX_TOKEN_NAME_CHARS: usize = 128;

/// `POST /users/{user}/keys/tokens` (§7.3).
pub async fn create_token(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<impl ReqBody>,
    param: &str,
) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    let body: CreateToken = api::json_body(req).await?;
    if !api::allowed(&auth, Action::CREATE, &Object::api_key(user.id)) {
        // Coder answers a key it may not create for this user as not found.
        return Err(Error::NotFound);
    }
    let ops = app.users();
    if body.lifetime < 0 {
        return Err(invalid_request(
            "lifetime must be positive number greater than 0",
        ));
    }
    if body.token_name.chars().count() > MAX_TOKEN_NAME_CHARS {
        // The name is stored with the key and indexed per user: its size is bounded first.
        return Err(Error::validation(vec![tag_failed(
            "token_name",
            "max",
            &body.token_name,
        )]));
    }
    let lifetime = ops.token_lifetime(&user, Some(Duration::from_nanos(body.lifetime as u64)))?;
    let asked_scopes = match (body.scopes, body.scope) {
        (Some(list), _) if !list.is_empty() => list,
        (_, Some(one)) if !one.is_empty() => vec![one],
        _ => Vec::new(),
    };
    let mut scopes = Vec::with_capacity(asked_scopes.len());
    for name in &asked_scopes {
        let canonical =
            scope::canonical(name).ok_or_else(|| UserError::UnknownScope(name.clone()))?;
        if !scopes.iter().any(|s| s == canonical) {
            scopes.push(canonical.to_owned());
        }
    }
    let allow_list = match body.allow_list {
        Some(entries) if !entries.is_empty() => normalize_allow_list(entries)?,
        _ => Vec::new(),
    };
    let inherit_scopes = scopes.is_empty();
    let inherit_allow_list = allow_list.is_empty();
    let new = NewKey {
        login_type: LoginType::Token,
        lifetime,
        scopes,
        token_name: body.token_name,
        ip_address: peer.addr.ip().to_string(),
        allow_list,
        not_after: None,
    };
    let mut new = within_caller(&auth, new, inherit_scopes, inherit_allow_list)?;
    if !new.token_name.is_empty() {
        let key = ops.issue_key(&user, new).await?;
        return api::json(StatusCode::CREATED, &json!({ "key": key }));
    }
    // An unnamed token gets a generated name; names are unique per user, so a taken one is
    // tried again with another.
    let mut attempts = 1;
    let key = loop {
        new.token_name = generated_name()?;
        match ops.issue_key(&user, new.clone()).await {
            Err(UserError::TokenNameTaken(_)) if attempts < NAME_ATTEMPTS => attempts += 1,
            result => break result?,
        }
    };
    api::json(StatusCode::CREATED, &json!({ "key": key }))
}

/// `GET /users/{user}/keys/tokens`: the user's named tokens, newest first; expired ones only
/// with `?include_expired=true` (§7.4).
pub async fn list_tokens(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    if !api::allowed(&auth, Action::READ, &Object::api_key(user.id)) {
        return Err(Error::NotFound);
    }
    // Go's strconv.ParseBool spellings of true.
    let include_expired = token::query_value(req.uri(), "include_expired")
        .is_some_and(|v| matches!(&*v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    let now = OffsetDateTime::now_utc();
    let mut keys: Vec<ApiKey> = app
        .store
        .keys_of(user.id)
        .await?
        .into_iter()
        .filter(|k| k.login_type == LoginType::Token)
        .filter(|k| include_expired || k.expires_at > now)
        .collect();
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let body: Vec<ApiKeyJson<'_>> = keys.iter().map(ApiKeyJson::new).collect();
    api::json(StatusCode::OK, &body)
}

/// `GET /users/{user}/keys/tokens/tokenconfig`: `{"max_token_lifetime": <ns>}`, the longest
/// token that user may have (§7.4).
pub async fn token_config(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (_, user) = users::target(app, &req, param).await?;
    let max = app.users().max_token_lifetime(&user);
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    api::json(StatusCode::OK, &json!({ "max_token_lifetime": nanos }))
}

/// `GET /users/{user}/keys/tokens/{name}`: the user's token of that name, or 404.
pub async fn token_by_name(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    param: &str,
    name: &str,
) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    let key = app
        .store
        .key_by_name(user.id, name)
        .await?
        .filter(|k| api::allowed(&auth, Action::READ, &Object::api_key(k.user_id)))
        .ok_or(Error::NotFound)?;
    api::json(StatusCode::OK, &ApiKeyJson::new(&key))
}

/// What a request on `/users/{user}/keys/{id}` does with the key.
#[derive(Debug, Clone, Copy)]
pub enum KeyOp {
    /// `GET`: the key, found by id alone and authorized by its owner, as in Coder; 404 when
    /// missing or not readable.
    Get,
    /// `DELETE`: 204; the key stops working on every replica at once.
    Delete,
    /// `PUT .../expire`: sets the expiry to now (idempotent); 204.
    Expire,
}

/// `/users/{user}/keys/{id}` (`GET`, `DELETE`) and `/users/{user}/keys/{id}/expire` (`PUT`):
/// the key after [`key_for`]'s checks, for the action `op` needs.
pub async fn key(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    param: &str,
    id: &str,
    op: KeyOp,
) -> ApiResult {
    let action = match op {
        KeyOp::Get => Action::READ,
        KeyOp::Delete => Action::DELETE,
        KeyOp::Expire => Action::UPDATE,
    };
    let (_, key) = match key_for(app, &req, param, id, action).await {
        // A deletion or expiry that was stored but could not tell the other replicas answered
        // an error, and this may be the client's retry: the key is gone, so this one answers
        // 404. Tell the replicas again first, so that the 404 means gone everywhere.
        Err(Error::NotFound) if !matches!(op, KeyOp::Get) && id.parse::<token::KeyId>().is_ok() => {
            app.users().forget(Invalidation::Key(id.to_owned())).await?;
            return Err(Error::NotFound);
        }
        found => found?,
    };
    match op {
        KeyOp::Get => api::json(StatusCode::OK, &ApiKeyJson::new(&key)),
        KeyOp::Delete => {
            app.users().delete_key(&key.id).await?;
            api::no_content()
        }
        KeyOp::Expire if app.users().expire_key(key).await? => api::no_content(),
        KeyOp::Expire => Err(Error::NotFound),
    }
}

/// Authenticates, resolves `{user}`, loads key `id` and checks `action` on it: 404 when the key
/// is missing or the caller may not see it, 403 when it may see it but not do `action`.
async fn key_for(
    app: &App,
    req: &Request<impl ReqBody>,
    param: &str,
    id: &str,
    action: Action,
) -> Result<(Authenticated, ApiKey), Error> {
    let (auth, _) = users::target(app, req, param).await?;
    let key = app.store.key(id).await?.ok_or(Error::NotFound)?;
    let object = Object::api_key(key.user_id);
    if !api::allowed(&auth, Action::READ, &object) {
        return Err(Error::NotFound);
    }
    if !api::allowed(&auth, action, &object) {
        return Err(Error::Forbidden);
    }
    Ok((auth, key))
}

/// Keeps a new key within the caller's own key when that one is restricted (not `coder:all`
/// with `*:*`): scopes and allow list inherited when none were asked for, refused when they go
/// beyond the caller's, and the expiry capped at the caller's.
fn within_caller(
    auth: &Authenticated,
    mut new: NewKey,
    inherit_scopes: bool,
    inherit_allow_list: bool,
) -> Result<NewKey, Error> {
    let subject = auth.subject();
    if subject.unrestricted() {
        return Ok(new);
    }
    let caller = &auth.session().key;
    if inherit_scopes {
        new.scopes = caller.scopes.to_vec();
    }
    if inherit_allow_list {
        new.allow_list = caller.allow_list.to_vec();
    }
    for name in &new.scopes {
        let grant = scope::expand(name).unwrap_or_default();
        if subject.scope_not_covering(&grant).is_some() {
            return Err(exceeds(&format!(
                "scope {name:?} is not among its scopes {:?}",
                caller.scopes
            )));
        }
    }
    let requested = if new.allow_list.is_empty() {
        vec![everything()]
    } else {
        new.allow_list.clone()
    };
    if let Some(entry) = requested.iter().find(|e| !covered(&caller.allow_list, e)) {
        return Err(exceeds(&format!(
            "allow list entry \"{}:{}\" is not covered by its allow list",
            entry.resource_type, entry.id
        )));
    }
    let cap = caller
        .not_after
        .map_or(caller.expires_at, |n| n.min(caller.expires_at));
    new.not_after = Some(new.not_after.map_or(cap, |n| n.min(cap)));
    Ok(new)
}

fn exceeds(detail: &str) -> Error {
    Error::coder(
        StatusCode::BAD_REQUEST,
        "Failed to create API key.",
        format!("exceeds the creating API key: {detail}"),
    )
}

/// Whether an entry of `list` covers `entry`: `*` covers anything in its place.
fn covered(list: &[AllowListEntry], entry: &AllowListEntry) -> bool {
    list.iter().any(|have| {
        (have.resource_type == "*" || have.resource_type == entry.resource_type)
            && (have.id == "*" || have.id == entry.id)
    })
}

fn everything() -> AllowListEntry {
    AllowListEntry {
        resource_type: "*".into(),
        id: "*".into(),
    }
}

/// Validates and normalizes an allow list (§7.3): each type `*` or a resource type, each id
/// `*` or a UUID (written in canonical form); at most 128 entries; `*:*` anywhere leaves only
/// `*:*`; `type:*` absorbs that type's single entries; sorted and without repeats.
fn normalize_allow_list(entries: Vec<AllowListInput>) -> Result<Vec<AllowListEntry>, Error> {
    if entries.len() > MAX_ALLOW_LIST {
        return Err(invalid_allow_list(&format!(
            "allow_list has {} entries; at most {MAX_ALLOW_LIST} are allowed",
            entries.len()
        )));
    }
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let (resource_type, id) = match entry {
            AllowListInput::Entry { resource_type, id } => (resource_type, id),
            AllowListInput::Legacy(text) => match text.split_once(':') {
                Some((t, i)) => (t.to_owned(), i.to_owned()),
                None => {
                    return Err(invalid_allow_list(&format!(
                        "allow_list entry {text:?} is not \"type:id\""
                    )))
                }
            },
        };
        if resource_type != "*" && Resource::parse(&resource_type).is_none() {
            return Err(invalid_allow_list(&format!(
                "allow_list entry has unknown resource type {resource_type:?}"
            )));
        }
        let id = if id == "*" {
            id
        } else {
            match uuid::Uuid::parse_str(&id) {
                Ok(uuid) => uuid.to_string(),
                Err(_) => {
                    return Err(invalid_allow_list(&format!(
                        "allow_list entry id {id:?} must be a UUID or \"*\""
                    )))
                }
            }
        };
        parsed.push(AllowListEntry { resource_type, id });
    }
    if parsed.iter().any(|e| e.resource_type == "*" && e.id == "*") {
        return Ok(vec![everything()]);
    }
    let wide: Vec<String> = parsed
        .iter()
        .filter(|e| e.id == "*")
        .map(|e| e.resource_type.clone())
        .collect();
    parsed.retain(|e| e.id == "*" || !wide.contains(&e.resource_type));
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

fn invalid_allow_list(detail: &str) -> Error {
    Error::coder(
        StatusCode::BAD_REQUEST,
        "Failed to create API key.",
        detail.to_owned(),
    )
}

fn invalid_request(detail: &str) -> Error {
    Error::coder(
        StatusCode::BAD_REQUEST,
        "Failed to validate create API key request.",
        detail.to_owned(),
    )
}

/// A random `adjective_surname` token name, as Coder's generator makes.
fn generated_name() -> Result<String, Error> {
    const ADJECTIVES: &[&str] = &[
        "admiring",
        "bold",
        "brave",
        "calm",
        "clever",
        "cool",
        "eager",
        "elegant",
        "fervent",
        "focused",
        "gallant",
        "gifted",
        "happy",
        "hopeful",
        "jolly",
        "keen",
        "kind",
        "lucid",
        "modest",
        "nifty",
        "optimistic",
        "patient",
        "quirky",
        "relaxed",
        "serene",
        "sharp",
        "stoic",
        "tender",
        "trusting",
        "vibrant",
        "wizardly",
        "zealous",
    ];
    const NAMES: &[&str] = &[
        "babbage", "bardeen", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "fermat",
        "feynman", "galileo", "hamilton", "hopper", "hypatia", "kepler", "knuth", "lamport",
        "lovelace", "maxwell", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
        "thompson", "torvalds", "turing", "wiles", "wozniak", "wu", "yonath",
    ];
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).map_err(Error::internal)?;
    Ok(format!(
        "{}_{}{}",
        ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()],
        NAMES[usize::from(bytes[1]) % NAMES.len()],
        bytes[2] % 100
    ))
}
