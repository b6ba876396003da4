//! Organizations: list, read (by id, name or `default`), create, rename and delete, in
//! Coder's `codersdk.Organization` shape (`coderd/organizations.go`,
//! `enterprise/coderd/organizations.go`). Each step is the RBAC evaluator's answer for the
//! organization object: `organization:read` to see one (404 otherwise), `organization:create`
//! (owners), `organization:update` and `organization:delete`.

use std::sync::Arc;

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::coder::{tag_failed, Validation};
use crate::http::api::roles::organization;
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::rbac::{Action, Object, Resource};
use crate::store::{Invalidation, Membership, Organization, StoreError};
use crate::users::is_name;

/// The name that always means the default organization, and that no organization may take.
const RESERVED: &str = "default";

/// `codersdk.Organization`.
#[derive(Debug, Serialize)]
pub struct OrgJson {
    id: Uuid,
    name: String,
    display_name: String,
    description: String,
    icon: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    is_default: bool,
}

/// `codersdk.CreateOrganizationRequest`.
#[derive(Deserialize)]
struct CreateOrg {
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
}

/// `codersdk.UpdateOrganizationRequest`.
#[derive(Deserialize)]
struct UpdateOrg {
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: Option<String>,
}

// === impl OrgJson ===

impl OrgJson {
    /// The API view of a stored organization (Portcullis keeps no icon).
    pub fn new(org: &Organization) -> Self {
        OrgJson {
            id: org.id,
            name: org.name.clone(),
            display_name: org.display_name.clone(),
            description: org.description.clone(),
            icon: String::new(),
            created_at: org.created_at,
            updated_at: org.updated_at,
            is_default: org.is_default,
        }
    }
}

/// `GET /organizations`: the organizations the caller may read, oldest first.
pub async fn list(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let mut orgs: Vec<Organization> = app
        .store
        .orgs()
        .await?
        .into_iter()
        .filter(|o| api::allowed(&auth, Action::READ, &Object::organization(o.id)))
        .collect();
    orgs.sort_by_key(|o| (o.created_at, o.id));
    let orgs: Vec<OrgJson> = orgs.iter().map(OrgJson::new).collect();
    api::json(StatusCode::OK, &orgs)
}

/// `GET /organizations/{organization}`.
pub async fn get(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let org = organization(app, &auth, param).await?;
    api::json(StatusCode::OK, &OrgJson::new(&org))
}

/// `POST /organizations`: `201` with the organization; the creator becomes a member with no
/// organization roles, as in Coder.
pub async fn create(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    if !api::allowed(&auth, Action::CREATE, &Object::new(Resource::ORGANIZATION)) {
        return Err(Error::Forbidden);
    }
    let body: CreateOrg = api::json_body(req).await?;
    validate(&body.name, &body.display_name, true)?;
    let now = OffsetDateTime::now_utc();
    let org = Organization {
        id: Uuid::new_v4(),
        display_name: if body.display_name.is_empty() {
            body.name.clone()
        } else {
            body.display_name
        },
        name: body.name,
        description: body.description,
        is_default: false,
        created_at: now,
        updated_at: now,
    };
    match app.store.create_org(&org).await {
        Err(StoreError::Conflict { .. }) => {
            return Err(Error::coder(
                StatusCode::CONFLICT,
                "Organization already exists with that name.",
                "",
            ))
        }
        other => other?,
    }
    let creator = auth.session().user.id;
    app.store
        .add_member(&Membership {
            user_id: creator,
            organization_id: org.id,
            roles: Vec::new(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    app.users().forget(Invalidation::User(creator)).await?;
    api::json(StatusCode::CREATED, &OrgJson::new(&org))
}

/// `PATCH /organizations/{organization}`: a new name, display name or description (empty
/// name and display name leave them as they are; `description` only when present).
pub async fn update(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let org = organization(app, &auth, param).await?;
    let (parts, body) = req.into_parts();
    let body: UpdateOrg = api::json_body(Request::from_parts(parts, body)).await?;
    validate(&body.name, &body.display_name, false)?;
    if !api::allowed(&auth, Action::UPDATE, &Object::organization(org.id)) {
        return Err(Error::Forbidden);
    }
    let mut new = org;
    if !body.name.is_empty() {
        new.name = body.name.clone();
    }
    if !body.display_name.is_empty() {
        new.display_name = body.display_name;
    }
    if let Some(description) = body.description {
        new.description = description;
    }
    new.updated_at = OffsetDateTime::now_utc();
    match app.store.update_org(&new).await {
        Ok(true) => api::json(StatusCode::OK, &OrgJson::new(&new)),
        Ok(false) => Err(Error::NotFound),
        Err(StoreError::Conflict { .. }) => Err(Error::with_validations(
            StatusCode::CONFLICT,
            format!("Organization already exists with the name {:?}.", body.name),
            vec![Validation {
                field: "name".to_owned(),
                detail: "This value is already in use and should be unique.".to_owned(),
            }],
        )),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /organizations/{organization}`: never the default organization. Its memberships
/// go with it, and the former members' sessions drop the organization at once.
pub async fn delete(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let org = organization(app, &auth, param).await?;
    if !api::allowed(&auth, Action::DELETE, &Object::organization(org.id)) {
        return Err(Error::Forbidden);
    }
    if org.is_default {
        return Err(Error::bad_request(
            "Default organization cannot be deleted.",
            "",
        ));
    }
    let members = app.store.delete_org(org.id).await?.unwrap_or_default();
    for member in members {
        app.users().forget(Invalidation::User(member)).await?;
    }
    api::json(
        StatusCode::OK,
        &json!({ "message": "Organization has been deleted." }),
    )
}

/// Coder's rules for an organization's `name` (`organization_name`: [`is_name`]; required on
/// create, else empty means unchanged) and `display_name` (optional; at most 64 characters, no
/// surrounding white space): `400 Validation failed.`; then the reserved name `default`.
fn validate(name: &str, display_name: &str, name_required: bool) -> Result<(), Error> {
    let mut invalid = Vec::new();
    if name.is_empty() && name_required {
        invalid.push(tag_failed("name", "required", ""));
    } else if !name.is_empty() && !is_name(name) {
        invalid.push(tag_failed("name", "organization_name", name));
    }
    if display_name.chars().count() > 64 || display_name.trim() != display_name {
        invalid.push(tag_failed("display_name", "display_name", display_name));
    }
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    if name == RESERVED {
        return Err(Error::bad_request(
            format!("Organization name {RESERVED:?} is reserved."),
            "",
        ));
    }
    Ok(())
}
