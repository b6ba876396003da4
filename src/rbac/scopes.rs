//! API key scope names: which a new key may carry (spec/coder-api.md §1, §1.1).
//!
//! The external scopes are data, `external-scopes.txt` beside this file (one name a line,
//! Coder's newest list). A name is accepted when, after its alias is resolved (`all` →
//! `coder:all`, `application_connect` → `coder:application_connect`), it is exactly one of
//! them.
//!
//! What a scope grants (§1.2) is a set of site-level permissions: `coder:all` everything,
//! `resource:action` that one permission, a composite the permissions of its group. A key's
//! scopes grant the union of their expansions, and never more than the key's user holds: the
//! evaluator intersects them with the roles.

use super::perms::PermSet;

/// The external scope names, one a line.
const EXTERNAL: &str = include_str!("external-scopes.txt");

/// The scope every key gets when none is asked for.
pub const ALL: &str = "coder:all";

/// Every external scope name, in the order of the data file (sorted).
pub fn external() -> impl Iterator<Item = &'static str> {
    EXTERNAL.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The canonical name of `name` when it is an external scope (aliases resolved), else `None`:
/// `*:*`, internal scopes and unknown names are refused (§1.1).
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = match name {
        "all" => ALL,
        "application_connect" => "coder:application_connect",
        other => other,
    };
    external().find(|s| *s == name)
}

/// The composite scopes and what each expands to (§1.2, newest).
const COMPOSITES: &[(&str, &[&str])] = &[
    (
        "coder:workspaces.create",
        &[
            "template:read,use",
            "workspace:create,update,read,start,stop",
            "organization_member:read",
        ],
    ),
    (
        "coder:workspaces.operate",
        &[
            "template:read",
            "workspace:read,update,start,stop",
            "organization_member:read",
        ],
    ),
    (
        "coder:workspaces.delete",
        &[
            "template:read,use",
            "workspace:read,delete",
            "organization_member:read",
        ],
    ),
    (
        "coder:workspaces.access",
        &[
            "template:read",
            "workspace:read,ssh,application_connect",
            "organization_member:read",
        ],
    ),
    (
        "coder:templates.build",
        &["template:read", "file:create,read", "provisioner_jobs:read"],
    ),
    (
        "coder:templates.author",
        &[
            "template:read,create,update,delete,view_insights",
            "file:create,read",
        ],
    ),
    (
        "coder:apikeys.manage_self",
        &["api_key:read,create,update,delete"],
    ),
];

/// The composite whose permissions hold only on the key owner's own objects.
const SELF_ONLY: &str = "coder:apikeys.manage_self";

/// What a set of scopes grants: permissions on every object, and permissions on the key
/// owner's own objects outside organizations (`coder:apikeys.manage_self`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// On every object.
    pub site: PermSet,
    /// On the key owner's own objects.
    pub own: PermSet,
}

/// What the (canonical) scope `name` grants, or `None` for a name that is not a scope. Accepts
/// `*:*` and any `resource:action` of the catalog, external or not: stored keys are checked
/// against the external list when they are created, not here.
pub fn expand(name: &str) -> Option<Grant> {
    let site = |perms: &[&str]| {
        PermSet::parse(perms).ok().map(|site| Grant {
            site,
            own: PermSet::empty(),
        })
    };
    match name {
        ALL | "*:*" => site(&["*:*"]),
        "coder:application_connect" => site(&["workspace:application_connect"]),
        _ => match COMPOSITES.iter().find(|(n, _)| *n == name) {
            Some((_, perms)) if name == SELF_ONLY => PermSet::parse(perms).ok().map(|own| Grant {
                site: PermSet::empty(),
                own,
            }),
            Some((_, perms)) => site(perms),
            None if name.starts_with("coder:") || name.starts_with('!') => None,
            None => site(&[name]),
        },
    }
}

/// The union of what `names` grant (aliases resolved); names that are not scopes grant
/// nothing.
pub fn expand_all<'a>(names: impl IntoIterator<Item = &'a String>) -> Grant {
    let mut grant = Grant::default();
    for name in names {
        let canonical = match name.as_str() {
            "all" => ALL,
            "application_connect" => "coder:application_connect",
            other => other,
        };
        if let Some(more) = expand(canonical) {
            grant.site.union(&more.site);
            grant.own.union(&more.own);
        }
    }
    grant
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_names_and_aliases_are_accepted_and_nothing_else() {
        assert_eq!(external().count(), 60);
        for (name, want) in [
            ("coder:all", Some("coder:all")),
            ("all", Some("coder:all")),
            ("application_connect", Some("coder:application_connect")),
            ("workspace:read", Some("workspace:read")),
            ("user:*", Some("user:*")),
            ("*:*", None),
            ("no_user_data", None),
            ("workspace:fly", None),
            ("Workspace:read", None),
            ("", None),
        ] {
            assert_eq!(canonical(name), want, "{name}");
        }
    }

    #[test]
    fn every_external_scope_expands_and_composites_grant_their_group() {
        for name in external() {
            let perms = expand(name).unwrap_or_else(|| panic!("{name} does not expand"));
            assert!(!perms.site.is_empty() || !perms.own.is_empty(), "{name}");
        }
        use crate::rbac::catalog::{Action, Resource};
        use crate::rbac::perms::Vote;
        let ws = Resource::parse("workspace").unwrap();
        let create = expand("coder:workspaces.create").unwrap().site;
        assert_eq!(
            create.vote(ws, Action::parse("start").unwrap()),
            Vote::Allow
        );
        assert_eq!(
            create.vote(ws, Action::parse("delete").unwrap()),
            Vote::Abstain
        );
        let read = expand("workspace:read").unwrap().site;
        assert_eq!(read.vote(ws, Action::parse("read").unwrap()), Vote::Allow);
        assert_eq!(
            read.vote(ws, Action::parse("update").unwrap()),
            Vote::Abstain
        );
        assert_eq!(expand("coder:nonsense"), None);
        assert_eq!(expand("workspace:fly"), None);
        let union = expand_all(&["workspace:read".to_owned(), "template:use".to_owned()]);
        assert_eq!(
            union.site.vote(
                Resource::parse("template").unwrap(),
                Action::parse("use").unwrap()
            ),
            Vote::Allow
        );
    }
}
