//! `POST /authcheck` (spec/coder-api.md §2): "may I (this session or token) do X on Y?" for a
//! batch of checks, answered by the same evaluator that guards the API and the route policy.
//!
//! - Checks are validated in key order (sorted) and the first invalid one fails the whole
//!   request with Coder's 400; the `resource_id` count is checked before any of them.
//! - A `resource_id` is resolved for the objects Portcullis holds (users, organizations),
//!   through the caller's own read permission: an object it may not read, or that does not
//!   exist, answers `false`. Workspaces, templates and groups belong to the upstream, so
//!   Portcullis cannot resolve them and answers `false`, as Coder does for a missing object.
//! - An unknown resource type or action answers `false` (never a 500).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Request, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::session::Authenticated;
use crate::coder::Validation;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::rbac::{Action, Object, Resource};

/// At most this many checks of one request may name a `resource_id`.
const MAX_RESOURCE_IDS: usize = 10;

/// The types whose `resource_id` Coder accepts, plus `organization` (which Portcullis holds).
const RESOLVABLE: [&str; 5] = ["workspace", "template", "user", "group", "organization"];

/// `codersdk.AuthorizationRequest`.
#[derive(Debug, Deserialize)]
struct AuthorizationRequest {
    #[serde(default)]
    checks: BTreeMap<String, Check>,
}

/// `codersdk.AuthorizationCheck`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Check {
    object: CheckObject,
    action: String,
}

/// `codersdk.AuthorizationObject`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckObject {
    resource_type: String,
    owner_id: String,
    organization_id: String,
    resource_id: String,
    any_org: bool,
}

/// `POST /authcheck`: `200 {"<key>": bool, ...}`.
pub async fn check(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let body: AuthorizationRequest = api::json_body(req).await?;
    let with_ids = body
        .checks
        .values()
        .filter(|c| !c.object.resource_id.is_empty())
        .count();
    if with_ids > MAX_RESOURCE_IDS {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            format!(
                "Endpoint only supports using \"resource_id\" field {MAX_RESOURCE_IDS} times, found {with_ids} usages. Remove {} objects with this field set.",
                with_ids - MAX_RESOURCE_IDS
            ),
            "",
        ));
    }
    for (key, check) in &body.checks {
        validate(key, &check.object)?;
    }
    let mut answers = BTreeMap::new();
    for (key, check) in &body.checks {
        answers.insert(key.as_str(), decide(app, &auth, check).await?);
    }
    api::json(StatusCode::OK, &answers)
}

/// Coder's 400s for one check (§2.4).
fn validate(key: &str, object: &CheckObject) -> Result<(), Error> {
    if object.resource_type.is_empty() {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            format!("Object's \"resource_type\" field must be defined for key \"{key}\"."),
            "",
        ));
    }
    if object.resource_id.is_empty() {
        return Ok(());
    }
    if Uuid::parse_str(&object.resource_id).is_err() {
        let message = format!("Object \"{}\" id is not a valid uuid.", object.resource_id);
        return Err(Error::with_validations(
            StatusCode::BAD_REQUEST,
            message.clone(),
            vec![Validation {
                field: "resource_id".into(),
                detail: message.clone(),
            }],
        ));
    }
    if !RESOLVABLE.contains(&object.resource_type.as_str()) {
        let message = format!(
            "Object type \"{}\" does not support \"resource_id\" field.",
            object.resource_type
        );
        return Err(Error::with_validations(
            StatusCode::BAD_REQUEST,
            message.clone(),
            vec![Validation {
                field: "resource_type".into(),
                detail: message.clone(),
            }],
        ));
    }
    Ok(())
}

/// One answer. Only a store that cannot answer is an error (503): a missing object is `false`.
async fn decide(app: &App, auth: &Authenticated, check: &Check) -> Result<bool, Error> {
    let (Some(resource), Some(action)) = (
        Resource::parse(&check.object.resource_type),
        Action::parse(&check.action),
    ) else {
        return Ok(false);
    };
    let subject = auth.subject();
    let object = if check.object.resource_id.is_empty() {
        let me = subject.id;
        Object {
            resource,
            id: None,
            owner: match check.object.owner_id.as_str() {
                "" => None,
                "me" => Some(me),
                other => Some(uuid_or_nobody(other)),
            },
            org: match check.object.organization_id.as_str() {
                "" => None,
                other => Some(uuid_or_nobody(other)),
            },
            any_org: check.object.any_org,
        }
    } else {
        let id = uuid_or_nobody(&check.object.resource_id);
        let found = match resource.name() {
            "user" => app.store.user(id).await?.map(|u| Object::user(u.id)),
            "organization" => app.store.org(id).await?.map(|o| Object::organization(o.id)),
            // Held by the upstream: Portcullis cannot load it, so, as for a missing object,
            // the answer is false.
            _ => None,
        };
        match found {
            Some(object) if subject.allows(Action::READ, &object) => object,
            _ => return Ok(false),
        }
    };
    Ok(subject.allows(action, &object))
}

/// A UUID, or the nil UUID for text that is not one: an owner or organization nobody is.
fn uuid_or_nobody(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or(Uuid::nil())
}
