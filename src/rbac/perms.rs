//! A set of permissions at one level (site, org, org-member or user), folded so that a vote is
//! two array reads and a bit test (spec/coder-api.md §11.4).
//!
//! Coder computes a level's vote over the list of every role's permissions at that level: −1
//! if any matching permission is negated, else 1 if any matching one is positive, else 0. The
//! union of the allowed actions and the union of the denied actions per resource give the same
//! answer, so that is what is kept: one mask pair per resource type plus one for the `*` type.

use std::fmt;

use super::catalog::{Action, Actions, Resource, ALL_ACTIONS, RESOURCE_COUNT};

/// The slot of the `*` resource type.
const WILDCARD: usize = RESOURCE_COUNT;

/// Allowed and denied actions per resource type.
#[derive(Clone, PartialEq, Eq)]
pub struct PermSet {
    allow: [Actions; RESOURCE_COUNT + 1],
    deny: [Actions; RESOURCE_COUNT + 1],
}

/// A level's vote on one (resource, action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vote {
    /// A matching negated permission.
    Deny,
    /// Nothing matches.
    Abstain,
    /// A matching permission and no negation.
    Allow,
}

/// A permission written in the built-in tables: `resource:action,action`, `resource:*`,
/// `*:*`, with a leading `!` for a negated one.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a permission (resource:action)")]
pub struct BadPermission(pub String);

// === impl PermSet ===

impl Default for PermSet {
    fn default() -> Self {
        PermSet {
            allow: [0; RESOURCE_COUNT + 1],
            deny: [0; RESOURCE_COUNT + 1],
        }
    }
}

impl PermSet {
    /// Nothing allowed, nothing denied.
    pub fn empty() -> Self {
        Self::default()
    }

    /// `*:*`.
    pub fn everything() -> Self {
        let mut set = Self::default();
        set.allow(None, ALL_ACTIONS);
        set
    }

    /// Parses permissions in the form of the built-in tables (see [`BadPermission`]).
    pub fn parse(specs: &[&str]) -> Result<Self, BadPermission> {
        let mut set = PermSet::empty();
        for spec in specs {
            set.add(spec)?;
        }
        Ok(set)
    }

    /// Adds one permission written as `[!]resource:action[,action...]` (either part may be
    /// `*`).
    pub fn add(&mut self, spec: &str) -> Result<(), BadPermission> {
        let bad = || BadPermission(spec.to_owned());
        let (negate, rest) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let (resource, actions) = rest.split_once(':').ok_or_else(bad)?;
        let resource = match resource {
            "*" => None,
            name => Some(Resource::parse(name).ok_or_else(bad)?),
        };
        let mut mask = 0;
        for action in actions.split(',') {
            mask |= match action {
                "*" => ALL_ACTIONS,
                name => Action::parse(name).ok_or_else(bad)?.bit(),
            };
        }
        if negate {
            self.deny(resource, mask);
        } else {
            self.allow(resource, mask);
        }
        Ok(())
    }

    /// Allows `actions` on `resource` (`None`: every type).
    pub fn allow(&mut self, resource: Option<Resource>, actions: Actions) {
        self.allow[slot(resource)] |= actions;
    }

    /// Denies `actions` on `resource` (`None`: every type).
    pub fn deny(&mut self, resource: Option<Resource>, actions: Actions) {
        self.deny[slot(resource)] |= actions;
    }

    /// Adds everything `other` allows and denies.
    pub fn union(&mut self, other: &PermSet) {
        for (a, b) in self.allow.iter_mut().zip(&other.allow) {
            *a |= b;
        }
        for (a, b) in self.deny.iter_mut().zip(&other.deny) {
            *a |= b;
        }
    }

    /// The vote on `action` over `resource`.
    #[inline]
    pub fn vote(&self, resource: Resource, action: Action) -> Vote {
        let bit = action.bit();
        let r = resource.index();
        if (self.deny[r] | self.deny[WILDCARD]) & bit != 0 {
            Vote::Deny
        } else if (self.allow[r] | self.allow[WILDCARD]) & bit != 0 {
            Vote::Allow
        } else {
            Vote::Abstain
        }
    }

    /// Whether nothing is allowed or denied.
    pub fn is_empty(&self) -> bool {
        self.allow.iter().chain(&self.deny).all(|m| *m == 0)
    }

    /// The first (resource, action) `other` allows that this set does not (`None` when this
    /// set covers `other`). Only actions a resource has are compared.
    pub fn first_not_covering(&self, other: &PermSet) -> Option<(Resource, Action)> {
        Resource::all().find_map(|resource| {
            let wanted =
                (other.allow[resource.index()] | other.allow[WILDCARD]) & resource.actions();
            Action::all()
                .filter(|action| wanted & action.bit() != 0)
                .find(|&action| self.vote(resource, action) != Vote::Allow)
                .map(|action| (resource, action))
        })
    }
}

impl fmt::Debug for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let name = |i: usize| {
            if i == WILDCARD {
                "*"
            } else {
                crate::rbac::catalog::RESOURCES[i].0
            }
        };
        for (i, mask) in self.allow.iter().enumerate().filter(|(_, m)| **m != 0) {
            list.entry(&format_args!("{}:{mask:#x}", name(i)));
        }
        for (i, mask) in self.deny.iter().enumerate().filter(|(_, m)| **m != 0) {
            list.entry(&format_args!("!{}:{mask:#x}", name(i)));
        }
        list.finish()
    }
}

fn slot(resource: Option<Resource>) -> usize {
    resource.map_or(WILDCARD, Resource::index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(set: &PermSet, r: &str, a: &str) -> Vote {
        set.vote(Resource::parse(r).unwrap(), Action::parse(a).unwrap())
    }

    #[test]
    fn a_negation_outvotes_a_grant_and_wildcards_match_every_type_and_action() {
        let set =
            PermSet::parse(&["workspace:*", "!workspace:create,delete", "template:read"]).unwrap();
        assert_eq!(vote(&set, "workspace", "ssh"), Vote::Allow);
        assert_eq!(vote(&set, "workspace", "create"), Vote::Deny);
        assert_eq!(vote(&set, "template", "read"), Vote::Allow);
        assert_eq!(vote(&set, "template", "update"), Vote::Abstain);
        let all = PermSet::parse(&["*:*"]).unwrap();
        assert_eq!(vote(&all, "license", "delete"), Vote::Allow);
    }

    #[test]
    fn malformed_permissions_are_refused() {
        for bad in [
            "workspace",
            "workspaces:read",
            "workspace:fly",
            ":read",
            "!",
        ] {
            assert!(PermSet::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage_names_the_first_missing_permission() {
        let have = PermSet::parse(&["workspace:read,update", "template:*"]).unwrap();
        let want = PermSet::parse(&["workspace:read", "template:use"]).unwrap();
        assert_eq!(have.first_not_covering(&want), None);
        let more = PermSet::parse(&["workspace:read,delete"]).unwrap();
        assert_eq!(
            have.first_not_covering(&more),
            Some((
                Resource::parse("workspace").unwrap(),
                Action::parse("delete").unwrap()
            ))
        );
        let everything = PermSet::parse(&["*:*"]).unwrap();
        assert!(have.first_not_covering(&everything).is_some());
        assert_eq!(everything.first_not_covering(&have), None);
    }
}
