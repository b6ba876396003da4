//! The built-in roles and their permissions (spec/coder-api.md §11.3), and who may assign which.
//!
//! Site roles carry `site` and `user` permissions; organization roles (`<name>:<org id>` in
//! Coder's notation, stored here as the name on a membership) carry `org` and `member`
//! permissions for the organization they are held in, and some also a few `site` ones (an
//! organization admin may read every user). `member` is implied for every user and
//! `organization-member` plus `organization-workspace-access` (Coder's default member role)
//! for every membership; they are never stored.

use std::sync::LazyLock;

use super::catalog::{Resource, ALL_ACTIONS};
use super::perms::PermSet;

/// Site-wide or per organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A site role (`owner`, `member`, ...).
    Site,
    /// An organization role (`organization-admin`, ...).
    Org,
}

/// A built-in role.
#[derive(Debug)]
pub struct Role {
    /// Its name.
    pub name: &'static str,
    /// Its display name.
    pub display_name: &'static str,
    /// Site or organization.
    pub kind: Kind,
    /// Held by every user (site) or every member (org) without being stored.
    pub implicit: bool,
    /// Permissions on every object.
    pub site: PermSet,
    /// Organization roles: on the organization's objects.
    pub org: PermSet,
    /// Organization roles: on the holder's own objects in the organization.
    pub member: PermSet,
    /// Site roles: on the holder's own objects outside organizations.
    pub user: PermSet,
    /// The roles a holder may assign to others (organization roles within the organization
    /// it is held in).
    pub assigns: &'static [&'static str],
}

/// The site role every user holds.
pub const MEMBER: &str = "member";
/// The site role that may do everything.
pub const OWNER: &str = "owner";
/// The organization role every member holds.
pub const ORG_MEMBER: &str = "organization-member";

/// Every built-in role's name: the site roles, then the organization roles ([`ORG_ROLES`]).
const ROLE_NAMES: &[&str] = &[
    "owner",
    "member",
    "auditor",
    "template-admin",
    "user-admin",
    "organization-admin",
    "organization-member",
    "organization-auditor",
    "organization-user-admin",
    "organization-template-admin",
    "organization-workspace-creation-ban",
    "organization-workspace-access",
];

/// The organization roles' names.
const ORG_ROLES: &[&str] = ROLE_NAMES.split_at(5).1;

/// Every built-in role.
pub fn all() -> &'static [Role] {
    static ROLES: LazyLock<Vec<Role>> = LazyLock::new(build);
    &ROLES
}

/// The built-in role named `name`, of `kind`.
pub fn find(name: &str, kind: Kind) -> Option<&'static Role> {
    all().iter().find(|r| r.name == name && r.kind == kind)
}

/// The site roles a user can be given and stored with (spec §11.3), in the table's order:
/// every built-in site role but the implicit `member`.
pub fn explicit_site_roles() -> impl Iterator<Item = &'static Role> {
    all().iter().filter(|r| r.kind == Kind::Site && !r.implicit)
}

/// Whether a holder of `actor` roles may assign `role` (§11.3 role assignment). For
/// organization roles, pass the roles the actor holds in that organization plus its site roles.
pub fn may_assign<'a>(actor: impl IntoIterator<Item = &'a Role>, role: &str) -> bool {
    actor.into_iter().any(|r| r.assigns.contains(&role))
}

/// The site roles named in `names` with `member`, which every user holds; names that are
/// not built-in site roles grant nothing and are skipped.
pub fn site_roles(names: &[String]) -> impl Iterator<Item = &'static Role> + '_ {
    names
        .iter()
        .map(String::as_str)
        .chain([MEMBER])
        .filter_map(|name| find(name, Kind::Site))
}

/// Whether a holder of `actor` roles may act on a user who holds the `held` roles of `kind`:
/// delete, suspend or activate them, change their password, or change their roles. Only when
/// it could grant every one of those roles itself ([`may_assign`]), so that nobody takes over
/// or removes a user with more power than they could hand out (a user-admin cannot reset an
/// owner's password). Names that are not built-in roles of `kind` grant nothing, so they
/// protect nothing. The one rule every endpoint that acts on another user asks.
pub fn may_act_on(actor: &[&Role], held: &[String], kind: Kind) -> bool {
    held.iter()
        .filter(|name| find(name, kind).is_some())
        .all(|name| may_assign(actor.iter().copied(), name))
}

fn build() -> Vec<Role> {
    let p = |specs: &[&str]| PermSet::parse(specs).expect("built-in permissions parse");
    let every_role = ROLE_NAMES;
    let site = |name, display_name, site: PermSet, user: PermSet, assigns| Role {
        name,
        display_name,
        kind: Kind::Site,
        implicit: name == MEMBER,
        site,
        org: PermSet::empty(),
        member: PermSet::empty(),
        user,
        assigns,
    };
    let org = |name, display_name, site: PermSet, org: PermSet, member: PermSet, assigns| Role {
        name,
        display_name,
        kind: Kind::Org,
        implicit: name == ORG_MEMBER || name == "organization-workspace-access",
        site,
        org,
        member,
        user: PermSet::empty(),
        assigns,
    };
    vec![
        site(OWNER, "Owner", owner_site(), PermSet::empty(), every_role),
        site(
            MEMBER,
            "Member",
            p(&["assign_role:read", "oauth2_app:read", "workspace_proxy:read"]),
            member_user(),
            &[],
        ),
        site(
            "auditor",
            "Auditor",
            p(&[
                "template:read,view_insights",
                "user:read",
                "organization:read",
                "audit_log:read",
                "connection_log:read",
            ]),
            PermSet::empty(),
            &[],
        ),
        site(
            "template-admin",
            "Template Admin",
            p(&[
                "workspace:read",
                "template:*",
                "user:read",
                "organization:read",
                "file:create,read",
                "provisioner_daemon:*",
                "provisioner_jobs:read",
                "prebuilt_workspace:update,delete",
                "group:read",
                "group_member:read",
                "organization_member:read",
            ]),
            PermSet::empty(),
            &[],
        ),
        site(
            "user-admin",
            "User Admin",
            p(&[
                "user:create,read,update,delete,read_personal,update_personal",
                "organization:read",
                "assign_role:assign,unassign,read",
                "assign_org_role:assign,unassign,read",
                "group:*",
                "group_member:*",
                "organization_member:*",
                "idpsync_settings:read,update",
            ]),
            PermSet::empty(),
            &[MEMBER, ORG_MEMBER, "organization-workspace-access"],
        ),
        org(
            "organization-admin",
            "Organization Admin",
            p(&["user:read"]),
            p(&[
                "workspace:create,read,update,delete,start,stop,create_agent,delete_agent,update_agent,share",
                "workspace_dormant:create,read,update,delete,start,stop,create_agent,delete_agent,update_agent,share",
                "template:*",
                "organization:*",
                "organization_member:*",
                "api_key:*",
                "group:*",
                "group_member:*",
                "assign_org_role:*",
                "provisioner_daemon:*",
                "provisioner_jobs:*",
                "file:create,read",
                "audit_log:read",
                "idpsync_settings:read,update",
            ]),
            PermSet::empty(),
            ORG_ROLES,
        ),
        org(
            ORG_MEMBER,
            "Organization Member",
            PermSet::empty(),
            p(&["organization:read", "organization_member:read"]),
            p(&["api_key:*", "!workspace:share"]),
            &[],
        ),
        org(
            "organization-workspace-access",
            "Organization Workspace Access",
            PermSet::empty(),
            PermSet::empty(),
            p(&["workspace:*"]),
            &[],
        ),
        org(
            "organization-auditor",
            "Organization Auditor",
            PermSet::empty(),
            p(&[
                "template:read,view_insights",
                "organization:read",
                "audit_log:read",
            ]),
            PermSet::empty(),
            &[],
        ),
        org(
            "organization-user-admin",
            "Organization User Admin",
            p(&["user:read"]),
            p(&[
                "organization:read",
                "assign_org_role:assign,unassign,read",
                "organization_member:*",
                "group:*",
                "group_member:*",
                "idpsync_settings:read,update",
            ]),
            PermSet::empty(),
            &[ORG_MEMBER, "organization-workspace-access"],
        ),
        org(
            "organization-template-admin",
            "Organization Template Admin",
            PermSet::empty(),
            p(&[
                "workspace:read",
                "template:*",
                "organization:read",
                "file:create,read",
                "provisioner_daemon:*",
                "provisioner_jobs:read",
                "group:read",
                "organization_member:read",
            ]),
            PermSet::empty(),
            &[],
        ),
        org(
            "organization-workspace-creation-ban",
            "Organization Workspace Creation Ban",
            PermSet::empty(),
            p(&["!workspace:create,delete,create_agent,delete_agent"]),
            PermSet::empty(),
            &[],
        ),
    ]
}

/// `owner`: everything on every resource type, except user secrets (none) and user skills
/// (read and delete): an owner administers, it does not read people's secrets.
fn owner_site() -> PermSet {
    let mut set = PermSet::empty();
    for resource in Resource::all() {
        match resource.name() {
            "user_secret" => {}
            "user_skill" => set.add("user_skill:read,delete").expect("built-in"),
            _ => set.allow(Some(resource), ALL_ACTIONS),
        }
    }
    set
}

/// `member` on its own objects outside organizations: its user record's personal parts, and
/// every other resource type except workspaces, users, memberships, chats and the AI/boundary
/// bookkeeping.
fn member_user() -> PermSet {
    const EXCEPT: &[&str] = &[
        "workspace",
        "workspace_dormant",
        "prebuilt_workspace",
        "user",
        "organization_member",
        "chat",
        "chat_project",
        "chat_model_config",
        "chat_automation",
        "boundary_log",
        "boundary_usage",
        "aibridge_interception",
        "ai_seat",
    ];
    let mut set = PermSet::empty();
    for resource in Resource::all().filter(|r| !EXCEPT.contains(&r.name())) {
        set.allow(Some(resource), ALL_ACTIONS);
    }
    set.add("user:read,read_personal,update_personal")
        .expect("built-in");
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_names_are_exactly_the_built_in_roles_and_org_roles_their_org_kind() {
        let names: Vec<&str> = all().iter().map(|r| r.name).collect();
        assert_eq!(names.len(), ROLE_NAMES.len());
        for name in ROLE_NAMES {
            assert!(names.contains(name), "{name}");
        }
        for role in all() {
            assert_eq!(
                ORG_ROLES.contains(&role.name),
                role.kind == Kind::Org,
                "{}",
                role.name
            );
        }
    }

    #[test]
    fn the_built_in_tables_load_and_name_only_built_in_roles() {
        assert_eq!(all().len(), 12);
        for role in all() {
            for assignable in role.assigns {
                assert!(
                    all().iter().any(|r| r.name == *assignable),
                    "{} assigns unknown {assignable}",
                    role.name
                );
            }
        }
        assert!(find("owner", Kind::Site).is_some());
        assert!(find("owner", Kind::Org).is_none());
        assert!(find("organization-admin", Kind::Org).is_some());
    }

    #[test]
    fn explicit_site_roles_are_the_site_roles_but_member() {
        let names: Vec<&str> = explicit_site_roles().map(|r| r.name).collect();
        assert_eq!(names, ["owner", "auditor", "template-admin", "user-admin"]);
    }

    #[test]
    fn who_may_assign_what() {
        fn roles<'a>(names: &'a [&str]) -> impl Iterator<Item = &'static Role> + 'a {
            names
                .iter()
                .filter_map(|n| all().iter().find(|r| r.name == *n))
        }
        assert!(may_assign(roles(&["owner"]), "owner"));
        assert!(may_assign(roles(&["owner"]), "organization-admin"));
        assert!(may_assign(roles(&["user-admin"]), "member"));
        assert!(!may_assign(roles(&["user-admin"]), "auditor"));
        assert!(!may_assign(roles(&["user-admin"]), "owner"));
        assert!(may_assign(
            roles(&["organization-admin"]),
            "organization-auditor"
        ));
        assert!(!may_assign(roles(&["organization-admin"]), "owner"));
        assert!(may_assign(
            roles(&["organization-user-admin"]),
            "organization-member"
        ));
        assert!(!may_assign(
            roles(&["organization-user-admin"]),
            "organization-admin"
        ));
        assert!(!may_assign(
            roles(&["member", "auditor", "template-admin"]),
            "member"
        ));
    }

    #[test]
    fn who_may_act_on_whom() {
        let held = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let owner: Vec<_> = site_roles(&held(&["owner"])).collect();
        let user_admin: Vec<_> = site_roles(&held(&["user-admin"])).collect();
        let member: Vec<_> = site_roles(&[]).collect();
        let org_admin = [find("organization-admin", Kind::Org).unwrap()];
        let cases: &[(&[&Role], &[&str], Kind, bool)] = &[
            (&owner, &["owner"], Kind::Site, true),
            (&owner, &["auditor", "user-admin"], Kind::Site, true),
            (&user_admin, &[], Kind::Site, true),
            (&user_admin, &["owner"], Kind::Site, false),
            (&user_admin, &["auditor"], Kind::Site, false),
            (&user_admin, &["user-admin"], Kind::Site, false),
            (&user_admin, &["no-such-role"], Kind::Site, true),
            (&member, &[], Kind::Site, true),
            (&member, &["auditor"], Kind::Site, false),
            (&org_admin, &["organization-admin"], Kind::Org, true),
            (&user_admin, &["organization-admin"], Kind::Org, false),
            (
                &user_admin,
                &["organization-workspace-access"],
                Kind::Org,
                true,
            ),
        ];
        for (actor, target, kind, expected) in cases {
            let names: Vec<_> = actor.iter().map(|r| r.name).collect();
            assert_eq!(
                may_act_on(actor, &held(target), *kind),
                *expected,
                "{names:?} on {target:?}"
            );
        }
    }
}
