//! Authorization: may this subject do this action on this object (spec/coder-api.md §11).
//!
//! - [`catalog`]: resource types and actions.
//! - [`perms`]: a level's permissions folded into masks, and the vote.
//! - [`roles`]: the built-in site and organization roles, and who may assign which.
//! - [`scopes`]: the external scope names and what each grants.
//! - [`explain`]: the roles and scopes behind a vote, for `portcullis explain`.
//! - [`intern`]: one shared copy of the permission sets equal roles or equal scopes fold to.
//!
//! A [`Subject`] is built once per cached session (the user's roles and memberships, the key's
//! scopes and allow list) and answers [`Subject::allows`] with no store round trip and no
//! allocation: effective permission = roles ∩ key scopes ∩ allow list (§11.4). Objects carry
//! no ACLs: the objects Portcullis decides on (users, organizations, API keys, and objects a
//! route policy describes) have none.

pub mod catalog;
pub mod explain;
pub mod intern;
pub mod perms;
pub mod roles;
pub mod scopes;

use std::sync::{Arc, LazyLock};

use uuid::Uuid;

pub use catalog::{Action, Resource};
pub use perms::{PermSet, Vote};

use crate::model::{AllowListEntry, Membership, SessionKey, User};

/// What is acted on (Coder's RBAC object, without ACLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The resource type.
    pub resource: Resource,
    /// Its id, when one object is meant.
    pub id: Option<Uuid>,
    /// Its owner, when it has one.
    pub owner: Option<Uuid>,
    /// The organization it belongs to, when it belongs to one.
    pub org: Option<Uuid>,
    /// "In any organization the subject is a member of" (§2.3 `any_org`).
    pub any_org: bool,
}

/// Who is asking: the permissions of the user's roles per level, and the key's scopes and
/// allow list.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user id.
    pub id: Uuid,
    /// Shared by every subject with the same roles and memberships ([`intern`]).
    roles: Arc<RolePerms>,
    /// Shared by every subject with the same scopes.
    scope: Arc<scopes::Grant>,
    allow_list: AllowList,
}

/// The permissions of a user's roles, per level.
#[derive(Debug)]
struct RolePerms {
    site: PermSet,
    user: PermSet,
    orgs: Vec<OrgPerms>,
}

/// What [`RolePerms`] are folded from: the site roles, and each membership's organization and
/// roles, in order.
type RolesOf = (Vec<String>, Vec<(Uuid, Vec<String>)>);

static ROLE_PERMS: LazyLock<intern::Interner<RolesOf, RolePerms>> =
    LazyLock::new(intern::Interner::new);
static SCOPE_GRANTS: LazyLock<intern::Interner<Vec<String>, scopes::Grant>> =
    LazyLock::new(intern::Interner::new);

#[derive(Debug, Clone)]
struct OrgPerms {
    id: Uuid,
    org: PermSet,
    member: PermSet,
}

/// Where in the role walk (§11.4) a vote was cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The site permissions of the user's roles (organization roles' site part included).
    Site,
    /// The organization permissions of the roles held in that organization.
    Org(Uuid),
    /// The member permissions (own objects) of the roles held in that organization.
    Member(Uuid),
    /// The user permissions (own objects outside organizations) of the site roles.
    User,
}

/// One step of a decision by [`Subject::decide`], in the order taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The resource type has no such action: never allowed.
    NoSuchAction,
    /// A level of the role walk voted.
    Roles(Level, Vote),
    /// The object is in an organization the subject is not a member of.
    NotMember(Uuid),
    /// The object is not the subject's own, and no site permission allowed it.
    NotOwner,
    /// The key's scopes voted: site-wide (`own: false`) or on the owner's own objects.
    Scope {
        /// The own-objects grant (`coder:apikeys.manage_self`).
        own: bool,
        /// How.
        vote: Vote,
    },
    /// Whether the key's allow list admits the object.
    AllowList(bool),
}

/// Receives the steps of [`Subject::decide`]. `()` ignores them (the evaluator of every
/// request); a `Vec<Step>` keeps them.
pub trait Trace {
    /// One step.
    fn step(&mut self, step: Step);
}

/// A key's allow list: which objects it may touch at all. `None` parts are `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// It holds `*:*`, the list of nearly every key: admits every object, whatever else it
    /// holds. Costs no allocation (one per cached key otherwise: issue 18).
    Everything,
    /// Only these entries (none: nothing).
    Only(Box<[(Option<Resource>, Option<Uuid>)]>),
}

// === impl Object ===

impl Object {
    /// An object of type `resource` with nothing else known (site-wide, no owner).
    pub fn new(resource: Resource) -> Self {
        Object {
            resource,
            id: None,
            owner: None,
            org: None,
            any_org: false,
        }
    }

    /// A user record: owned by itself, in no organization.
    pub fn user(id: Uuid) -> Self {
        Object {
            id: Some(id),
            owner: Some(id),
            ..Object::new(Resource::USER)
        }
    }

    /// An API key of `owner`: keys belong to no organization (§11.3 note).
    pub fn api_key(owner: Uuid) -> Self {
        Object {
            owner: Some(owner),
            ..Object::new(Resource::API_KEY)
        }
    }

    /// An organization: it belongs to itself.
    pub fn organization(id: Uuid) -> Self {
        Object {
            id: Some(id),
            org: Some(id),
            ..Object::new(Resource::ORGANIZATION)
        }
    }

    /// The same object as another resource type (for example the `assign_role` object of a
    /// change of roles).
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = resource;
        self
    }
}

// === impl Subject ===

impl Subject {
    /// The subject of `key`, used by `user` with `memberships`. Role names that are not built in
    /// grant nothing.
    pub fn new(user: &User, memberships: &[Membership], key: &SessionKey) -> Self {
        let roles_of = (
            user.roles.clone(),
            memberships
                .iter()
                .map(|m| (m.organization_id, m.roles.clone()))
                .collect(),
        );
        Subject {
            id: user.id,
            roles: ROLE_PERMS.get(roles_of, |_| RolePerms::new(user, memberships)),
            scope: SCOPE_GRANTS.get(key.scopes.to_vec(), |scopes| scopes::expand_all(scopes)),
            allow_list: AllowList::new(&key.allow_list),
        }
    }

    /// Whether the subject may do `action` on `object`: its roles allow it, its key's scopes
    /// allow it, and the object is on the key's allow list. An action the resource type does
    /// not have is never allowed.
    #[inline]
    pub fn allows(&self, action: Action, object: &Object) -> bool {
        self.decide(action, object, &mut ())
    }

    /// [`Subject::allows`], reporting each step that decided to `trace` (`()` reports nothing
    /// and compiles to the plain evaluator: `allows` is this function).
    #[inline]
    pub fn decide<T: Trace>(&self, action: Action, object: &Object, trace: &mut T) -> bool {
        if !object.resource.has(action) {
            trace.step(Step::NoSuchAction);
            return false;
        }
        self.roles_decide(action, object, trace) && self.scope_decide(action, object, trace) && {
            let admitted = self.allow_list.admits(object);
            trace.step(Step::AllowList(admitted));
            admitted
        }
    }

    /// Whether the key's scopes allow it: a site-wide grant, or a grant on the owner's own
    /// objects outside organizations.
    #[inline]
    fn scope_decide<T: Trace>(&self, action: Action, object: &Object, trace: &mut T) -> bool {
        let vote = self.scope.site.vote(object.resource, action);
        trace.step(Step::Scope { own: false, vote });
        match vote {
            Vote::Allow => true,
            Vote::Deny => false,
            Vote::Abstain => {
                let own = object.org.is_none() && !object.any_org && object.owner == Some(self.id);
                if !own {
                    return false;
                }
                let vote = self.scope.own.vote(object.resource, action);
                trace.step(Step::Scope { own: true, vote });
                vote == Vote::Allow
            }
        }
    }

    /// Whether the roles alone allow it (scopes and allow list aside): the level walk of
    /// §11.4. A denial at a level ends the walk; an abstention passes to the next level.
    pub fn roles_allow(&self, action: Action, object: &Object) -> bool {
        self.roles_decide(action, object, &mut ())
    }

    #[inline]
    fn roles_decide<T: Trace>(&self, action: Action, object: &Object, trace: &mut T) -> bool {
        let resource = object.resource;
        let vote = self.roles.site.vote(resource, action);
        trace.step(Step::Roles(Level::Site, vote));
        match vote {
            Vote::Allow => return true,
            Vote::Deny => return false,
            Vote::Abstain => {}
        }
        let owned = object.owner == Some(self.id);
        let mut in_org = |o: &OrgPerms| {
            let vote = o.org.vote(resource, action);
            trace.step(Step::Roles(Level::Org(o.id), vote));
            match vote {
                Vote::Allow => true,
                Vote::Deny => false,
                Vote::Abstain if !owned => false,
                Vote::Abstain => {
                    let vote = o.member.vote(resource, action);
                    trace.step(Step::Roles(Level::Member(o.id), vote));
                    vote == Vote::Allow
                }
            }
        };
        if object.any_org {
            return self.roles.orgs.iter().any(in_org);
        }
        match object.org {
            // Not a member: only site permissions could have allowed it.
            Some(org) => match self.roles.orgs.iter().find(|o| o.id == org) {
                Some(o) => in_org(o),
                None => {
                    trace.step(Step::NotMember(org));
                    false
                }
            },
            None if !owned => {
                trace.step(Step::NotOwner);
                false
            }
            None => {
                let vote = self.roles.user.vote(resource, action);
                trace.step(Step::Roles(Level::User, vote));
                vote == Vote::Allow
            }
        }
    }

    /// The first permission `wanted` grants that the key's scopes do not (`None`: covered).
    /// A site-wide grant covers an own-objects grant, not the other way round.
    pub fn scope_not_covering(&self, wanted: &scopes::Grant) -> Option<(Resource, Action)> {
        let mut own = self.scope.own.clone();
        own.union(&self.scope.site);
        self.scope
            .site
            .first_not_covering(&wanted.site)
            .or_else(|| own.first_not_covering(&wanted.own))
    }

    /// Whether the key is unrestricted: `coder:all` (or `*:*`) scope and a `*:*` allow list.
    pub fn unrestricted(&self) -> bool {
        self.allow_list.is_everything()
            && self
                .scope
                .site
                .first_not_covering(&PermSet::everything())
                .is_none()
    }

    /// The organizations the subject is a member of.
    pub fn org_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.roles.orgs.iter().map(|o| o.id)
    }
}

// === impl RolePerms ===

impl RolePerms {
    /// Folds the permissions of `user`'s site roles and of its roles in each of `memberships`.
    fn new(user: &User, memberships: &[Membership]) -> Self {
        let mut site = PermSet::empty();
        let mut own = PermSet::empty();
        for role in roles::site_roles(&user.roles) {
            site.union(&role.site);
            own.union(&role.user);
        }
        let orgs = memberships
            .iter()
            .map(|m| {
                let mut perms = OrgPerms {
                    id: m.organization_id,
                    org: PermSet::empty(),
                    member: PermSet::empty(),
                };
                for role in org_roles(m) {
                    site.union(&role.site);
                    perms.org.union(&role.org);
                    perms.member.union(&role.member);
                }
                perms
            })
            .collect();
        RolePerms {
            site,
            user: own,
            orgs,
        }
    }
}

/// The organization roles of a membership, the implicit ones included.
pub fn org_roles(m: &Membership) -> impl Iterator<Item = &'static roles::Role> + '_ {
    m.roles
        .iter()
        .map(String::as_str)
        .chain([roles::ORG_MEMBER, "organization-workspace-access"])
        .filter_map(|name| roles::find(name, roles::Kind::Org))
}

// === impl Trace ===

impl Trace for () {
    #[inline(always)]
    fn step(&mut self, _: Step) {}
}

impl Trace for Vec<Step> {
    fn step(&mut self, step: Step) {
        self.push(step);
    }
}

// === impl AllowList ===

impl AllowList {
    /// From a key's stored entries. An entry that does not parse admits nothing.
    pub fn new(entries: &[AllowListEntry]) -> Self {
        let parsed = entries
            .iter()
            .filter_map(|e| {
                let resource = match e.resource_type.as_str() {
                    "*" => None,
                    name => Some(Resource::parse(name)?),
                };
                let id = match e.id.as_str() {
                    "*" => None,
                    id => Some(Uuid::parse_str(id).ok()?),
                };
                Some((resource, id))
            })
            .collect::<Box<[_]>>();
        if parsed.contains(&(None, None)) {
            AllowList::Everything
        } else {
            AllowList::Only(parsed)
        }
    }

    /// Whether it admits every object (`*:*`).
    pub fn is_everything(&self) -> bool {
        matches!(self, AllowList::Everything)
    }

    /// Whether `object` matches an entry: `*:*`, `<type>:*` or `<type>:<its id>`.
    pub fn admits(&self, object: &Object) -> bool {
        match self {
            AllowList::Everything => true,
            AllowList::Only(entries) => entries.iter().any(|(resource, id)| {
                resource.is_none_or(|r| r == object.resource)
                    && id.is_none_or(|i| object.id == Some(i))
            }),
        }
    }
}

#[cfg(test)]
mod tests;
