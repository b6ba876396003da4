//! Organization membership (`GET /organizations/{organization}/members`, `POST` and `DELETE`
//! `/organizations/{organization}/members/{user}`, checked as `organization_member` actions in
//! that organization) and assigning roles: `PUT /users/{user}/roles` (site roles) and
//! `PUT /organizations/{organization}/members/{user}/roles` (organization roles), with Coder's
//! rules (spec/coder-api.md §11.3): nobody changes their own roles; every role added or
//! removed needs the `assign_role` (`assign_org_role` within the organization) `assign` or
//! `unassign` permission *and* a role of the caller that may assign that role (owner: all;
//! user-admin: `member` and the default organization member roles; organization-admin: every
//! organization role in its own organization; organization-user-admin: the default member
//! roles). Implicit roles (`member`, `organization-member`) are accepted and not stored. And
//! nobody changes the roles of a user who holds a role they could not grant
//! ([`roles::may_act_on`]: a user-admin leaves an owner's roles alone).

use std::sync::Arc;

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::session::Authenticated;
use crate::http::api::users::{self, RoleJson, UserJson};
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::rbac::roles::{self, Kind, Role};
use crate::rbac::{org_roles, Action, Object, Resource};
use crate::store::{Membership, Organization, User};

/// `codersdk.UpdateRoles`.
#[derive(Debug, Deserialize)]
struct UpdateRoles {
    #[serde(default)]
    roles: Vec<String>,
}

/// `codersdk.OrganizationMember`.
#[derive(Debug, Serialize)]
struct OrganizationMemberJson {
    user_id: Uuid,
    organization_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    roles: Vec<OrgRoleJson>,
}

#[derive(Debug, Serialize)]
struct OrgRoleJson {
    name: String,
    display_name: &'static str,
    organization_id: Uuid,
}

/// `PUT /users/{user}/roles`: `200` with the updated `User`.
pub async fn set_site_roles(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    if user.id == auth.subject().id {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            "You cannot change your own roles.",
            "",
        ));
    }
    let body: UpdateRoles = api::json_body(req).await?;
    let actor: Vec<_> = roles::site_roles(&auth.session().user.roles).collect();
    let object = Object::new(Resource::ASSIGN_ROLE);
    let wanted: Vec<String> = body
        .roles
        .into_iter()
        .filter(|r| r != roles::MEMBER)
        .collect();
    if let Some(unknown) = wanted.iter().find(|r| roles::find(r, Kind::Site).is_none()) {
        return Err(invalid_role(unknown, "site"));
    }
    if !users::may_act_on(&auth, &user) || !may_change(&auth, &actor, &object, &user.roles, &wanted)
    {
        return Err(Error::Forbidden);
    }
    let ops = app.users();
    let user = ops.set_roles(user.id, &wanted).await?;
    let memberships = app.store.memberships_of(user.id).await?;
    api::json(StatusCode::OK, &UserJson::new(&user, &memberships))
}

/// `PUT /organizations/{organization}/members/{user}/roles`: `200` with the updated
/// `OrganizationMember`.
pub async fn set_member_roles(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    org_param: &str,
    user_param: &str,
) -> ApiResult {
    let (auth, org, user, membership) = membership(app, &req, org_param, user_param).await?;
    if membership.user_id == auth.subject().id {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            "You cannot change your own organization roles.",
            "",
        ));
    }
    let body: UpdateRoles = api::json_body(req).await?;
    let wanted: Vec<String> = body
        .roles
        .into_iter()
        .filter(|r| r != roles::ORG_MEMBER)
        .collect();
    if let Some(unknown) = wanted.iter().find(|r| roles::find(r, Kind::Org).is_none()) {
        return Err(invalid_role(unknown, "organization"));
    }
    let mut actor: Vec<&'static Role> = roles::site_roles(&auth.session().user.roles).collect();
    if let Some(own) = auth
        .session()
        .memberships
        .iter()
        .find(|m| m.organization_id == org.id)
    {
        actor.extend(org_roles(own));
    }
    let object = Object {
        org: Some(org.id),
        ..Object::new(Resource::ASSIGN_ORG_ROLE)
    };
    // The rule of `roles::may_act_on` on both the user's site roles and its roles here.
    if !roles::may_act_on(&actor, &user.roles, Kind::Site)
        || !roles::may_act_on(&actor, &membership.roles, Kind::Org)
        || !may_change(&auth, &actor, &object, &membership.roles, &wanted)
    {
        return Err(Error::Forbidden);
    }
    let updated = app.users().set_org_roles(membership, &wanted).await?;
    api::json(StatusCode::OK, &member_json(&updated))
}

/// `codersdk.OrganizationMemberWithUserData`.
#[derive(Debug, Serialize)]
struct MemberWithUserJson {
    #[serde(flatten)]
    member: OrganizationMemberJson,
    username: String,
    name: String,
    email: String,
    avatar_url: String,
    global_roles: Vec<RoleJson>,
}

/// `GET /organizations/{organization}/members`: every member the caller may read, with user
/// data, oldest first.
pub async fn list_members(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    org_param: &str,
) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let org = organization(app, &auth, org_param).await?;
    let mut members = app.store.members_of(org.id).await?;
    members.sort_by_key(|m| (m.created_at, m.user_id));
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        if !api::allowed(
            &auth,
            Action::READ,
            &member_object(m.user_id, m.organization_id),
        ) {
            continue;
        }
        let Some(user) = app.store.user(m.user_id).await? else {
            continue;
        };
        out.push(MemberWithUserJson {
            member: member_json(&m),
            username: user.username,
            name: user.name,
            email: user.email,
            avatar_url: user.avatar_url,
            global_roles: user.roles.iter().map(|r| RoleJson::site(r)).collect(),
        });
    }
    api::json(StatusCode::OK, &out)
}

/// `POST /organizations/{organization}/members/{user}`: `200` with the new
/// `OrganizationMember`; `409` when the user already is one.
pub async fn add_member(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    org_param: &str,
    user_param: &str,
) -> ApiResult {
    let (auth, user) = users::target(app, &req, user_param).await?;
    let org = organization(app, &auth, org_param).await?;
    if !api::allowed(&auth, Action::CREATE, &member_object(user.id, org.id)) {
        return Err(Error::Forbidden);
    }
    match app.users().add_member(user.id, org.id).await {
        Ok(m) => api::json(StatusCode::OK, &member_json(&m)),
        Err(crate::users::UserError::Conflict(_)) => Err(Error::coder(
            StatusCode::CONFLICT,
            "User is already a member of this organization.",
            "",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /organizations/{organization}/members/{user}`: `204`; the user's sessions lose the
/// organization's roles at once. Nobody removes themselves.
pub async fn remove_member(
    app: &Arc<App>,
    req: Request<impl ReqBody>,
    org_param: &str,
    user_param: &str,
) -> ApiResult {
    let (auth, org, _, membership) = membership(app, &req, org_param, user_param).await?;
    if membership.user_id == auth.subject().id {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            "You cannot remove yourself from an organization.",
            "",
        ));
    }
    if !api::allowed(
        &auth,
        Action::DELETE,
        &member_object(membership.user_id, org.id),
    ) {
        return Err(Error::Forbidden);
    }
    app.users()
        .remove_member(membership.user_id, org.id)
        .await?;
    api::no_content()
}

/// The `organization_member` object of `user`'s membership of `org`.
fn member_object(user: Uuid, org: Uuid) -> Object {
    Object {
        owner: Some(user),
        org: Some(org),
        ..Object::new(Resource::ORGANIZATION_MEMBER)
    }
}

/// Authenticates, resolves `{organization}` and `{user}` (each 404 when missing or not
/// readable) and loads the membership (404 when the user is not a member).
async fn membership(
    app: &App,
    req: &Request<impl ReqBody>,
    org_param: &str,
    user_param: &str,
) -> Result<(Authenticated, Organization, User, Membership), Error> {
    let (auth, user) = users::target(app, req, user_param).await?;
    let org = organization(app, &auth, org_param).await?;
    let membership = app
        .store
        .membership(user.id, org.id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok((auth, org, user, membership))
}

/// Whether the caller may go from `old` to `new`: each role added needs `assign` and each
/// removed `unassign` on `object`, and a role of the caller's that may assign it.
fn may_change(
    auth: &Authenticated,
    actor: &[&'static Role],
    object: &Object,
    old: &[String],
    new: &[String],
) -> bool {
    let added = new.iter().filter(|r| !old.contains(r));
    let removed = old.iter().filter(|r| !new.contains(r));
    let permitted = |action: Action, role: &String| {
        api::allowed(auth, action, object) && roles::may_assign(actor.iter().copied(), role)
    };
    added.into_iter().all(|r| permitted(Action::ASSIGN, r))
        && removed.into_iter().all(|r| permitted(Action::UNASSIGN, r))
}

/// Resolves `{organization}`: an id, a name, or `default`; 404 when there is none or the
/// caller may not read it.
pub async fn organization(
    app: &App,
    auth: &Authenticated,
    param: &str,
) -> Result<Organization, Error> {
    let found = crate::users::org_by_id_or_name(&app.store, param).await?;
    match found {
        Some(org)
            if auth
                .subject()
                .allows(Action::READ, &Object::organization(org.id)) =>
        {
            Ok(org)
        }
        _ => Err(Error::NotFound),
    }
}

fn member_json(m: &Membership) -> OrganizationMemberJson {
    OrganizationMemberJson {
        user_id: m.user_id,
        organization_id: m.organization_id,
        created_at: m.created_at,
        updated_at: m.updated_at,
        roles: m
            .roles
            .iter()
            .map(|name| OrgRoleJson {
                name: name.clone(),
                display_name: roles::find(name, Kind::Org).map_or("", |r| r.display_name),
                organization_id: m.organization_id,
            })
            .collect(),
    }
}

fn invalid_role(role: &str, kind: &str) -> Error {
    Error::coder(
        StatusCode::BAD_REQUEST,
        "Invalid role.",
        format!("{role:?} is not a built-in {kind} role"),
    )
}

/// `codersdk.UserRoles`: the stored site roles, and the stored roles in each organization.
#[derive(Debug, Serialize)]
struct UserRolesJson {
    roles: Vec<String>,
    organization_roles: std::collections::BTreeMap<Uuid, Vec<String>>,
}

/// `GET /users/{user}/roles`: `200` with the user's stored site roles and organization roles,
/// to whoever may read the user (`404` otherwise, as Coder hides what the caller cannot see).
pub async fn user_roles(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (_, user) = users::target(app, &req, param).await?;
    let memberships = app.store.memberships_of(user.id).await?;
    let organization_roles = memberships
        .into_iter()
        .map(|m| (m.organization_id, m.roles))
        .collect();
    api::json(
        StatusCode::OK,
        &UserRolesJson {
            roles: user.roles,
            organization_roles,
        },
    )
}
