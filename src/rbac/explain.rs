//! Naming what decided a [`Subject::decide`](super::Subject::decide): a [`Subject`](super::Subject)
//! keeps only folded permission sets, so the roles and scopes behind a vote are found again
//! here, from the user's stored roles and the key's scopes, for `portcullis explain`. Nothing
//! on the request path calls this.

use uuid::Uuid;

use super::catalog::{Action, Resource};
use super::perms::Vote;
use super::{org_roles, roles, scopes, Level};
use crate::model::Membership;

/// The roles whose permissions at `level` vote `vote` on `action` over `resource` (the level's
/// vote is the union of theirs: any one of them casts it). Site-level votes also come from
/// the site part of organization roles, named `<role>:<organization id>`.
pub fn roles_voting(
    site_roles: &[String],
    memberships: &[Membership],
    level: Level,
    resource: Resource,
    action: Action,
    vote: Vote,
) -> Vec<String> {
    let of_org = |org: Uuid| {
        memberships
            .iter()
            .filter(move |m| m.organization_id == org)
            .flat_map(org_roles)
    };
    match level {
        Level::Site => {
            let site = roles::site_roles(site_roles)
                .filter(|r| r.site.vote(resource, action) == vote)
                .map(|r| r.name.to_owned());
            let org = memberships.iter().flat_map(|m| {
                org_roles(m)
                    .filter(|r| r.site.vote(resource, action) == vote)
                    .map(move |r| format!("{}:{}", r.name, m.organization_id))
            });
            site.chain(org).collect()
        }
        Level::User => roles::site_roles(site_roles)
            .filter(|r| r.user.vote(resource, action) == vote)
            .map(|r| r.name.to_owned())
            .collect(),
        Level::Org(org) => of_org(org)
            .filter(|r| r.org.vote(resource, action) == vote)
            .map(|r| format!("{}:{org}", r.name))
            .collect(),
        Level::Member(org) => of_org(org)
            .filter(|r| r.member.vote(resource, action) == vote)
            .map(|r| format!("{}:{org}", r.name))
            .collect(),
    }
}

/// The key's scopes that vote `vote` on `action` over `resource`, site-wide or (`own`) on the
/// owner's own objects.
pub fn scopes_voting(
    key_scopes: &[String],
    own: bool,
    resource: Resource,
    action: Action,
    vote: Vote,
) -> Vec<String> {
    key_scopes
        .iter()
        .filter(|name| {
            let grant = scopes::expand_all(std::iter::once(*name));
            let set = if own { &grant.own } else { &grant.site };
            set.vote(resource, action) == vote
        })
        .cloned()
        .collect()
}
