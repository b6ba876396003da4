//! The RBAC vocabulary: resource types and the actions each one has (spec/coder-api.md §11.1,
//! §11.2), as small indices so that a permission check is array look-ups and bit tests.
//!
//! A name that is not here is not a resource or action Portcullis knows: `/authcheck` answers
//! `false` for it, the route policy refuses to load it, and token creation refuses it in an
//! allow list. A (resource, action) pair where the action is not one of the resource's is
//! never allowed, whatever wildcard a role holds (Coder's rego would match `template:*`
//! against any action string; this is the safer reading §2.3 recommends).

use std::fmt;
use std::sync::LazyLock;

/// An action, as a bit index into an [`Actions`] mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action(u8);

/// A set of actions; the all-ones mask is `*`.
pub type Actions = u32;

/// A resource type, as an index into [`RESOURCES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(u8);

/// Every action (§11.1), in bit order.
pub const ACTIONS: [&str; 19] = [
    "create",
    "read",
    "update",
    "delete",
    "use",
    "ssh",
    "application_connect",
    "view_insights",
    "start",
    "stop",
    "assign",
    "unassign",
    "read_personal",
    "update_personal",
    "create_agent",
    "delete_agent",
    "update_agent",
    "share",
    "use_shared",
];

/// `*`: every action.
pub const ALL_ACTIONS: Actions = u32::MAX;

const CRUD: &[&str] = &["create", "read", "update", "delete"];
const WORKSPACE: &[&str] = &[
    "create",
    "read",
    "update",
    "delete",
    "start",
    "stop",
    "ssh",
    "application_connect",
    "create_agent",
    "delete_agent",
    "update_agent",
    "share",
];

/// Every resource type and its actions (§11.2, the newest list including the volatile names).
pub const RESOURCES: &[(&str, &[&str])] = &[
    ("workspace", WORKSPACE),
    ("workspace_dormant", WORKSPACE),
    ("prebuilt_workspace", &["update", "delete"]),
    (
        "template",
        &["create", "read", "update", "delete", "use", "view_insights"],
    ),
    (
        "user",
        &[
            "create",
            "read",
            "update",
            "delete",
            "read_personal",
            "update_personal",
        ],
    ),
    ("organization", CRUD),
    ("organization_member", CRUD),
    ("api_key", CRUD),
    ("group", CRUD),
    ("group_member", &["read"]),
    ("file", &["create", "read"]),
    ("assign_role", &["assign", "unassign", "read"]),
    (
        "assign_org_role",
        &["assign", "unassign", "create", "read", "update", "delete"],
    ),
    ("audit_log", &["create", "read"]),
    ("connection_log", &["read", "update"]),
    ("license", &["create", "read", "delete"]),
    ("deployment_config", &["read", "update"]),
    ("deployment_stats", &["read"]),
    ("replicas", &["read"]),
    ("debug_info", &["read"]),
    ("provisioner_daemon", CRUD),
    ("provisioner_jobs", &["create", "read", "update"]),
    ("system", CRUD),
    ("oauth2_app", CRUD),
    ("oauth2_app_secret", CRUD),
    ("oauth2_app_code_token", &["create", "read", "delete"]),
    ("notification_message", CRUD),
    ("notification_template", &["read", "update"]),
    ("notification_preference", &["read", "update"]),
    ("inbox_notification", &["create", "read", "update"]),
    ("webpush_subscription", &["create", "read", "delete"]),
    ("crypto_key", CRUD),
    ("idpsync_settings", &["read", "update"]),
    ("tailnet_coordinator", CRUD),
    ("workspace_proxy", CRUD),
    ("user_secret", CRUD),
    ("user_skill", CRUD),
    ("task", CRUD),
    ("chat", CRUD),
    ("chat_project", CRUD),
    (
        "chat_model_config",
        &["create", "read", "update", "delete", "share"],
    ),
    ("chat_automation", CRUD),
    (
        "organization_skill",
        &["create", "read", "update", "delete", "share"],
    ),
    ("ai_gateway_key", CRUD),
    ("ai_provider", CRUD),
    ("ai_model_price", CRUD),
    ("ai_seat", CRUD),
    ("aibridge_interception", &["create", "read", "update"]),
    ("boundary_log", &["create", "read", "delete"]),
    ("boundary_usage", &["read", "update", "delete"]),
    ("usage_event", &["create", "read", "update"]),
    (
        "workspace_agent_resource_monitor",
        &["create", "read", "update"],
    ),
    ("workspace_agent_devcontainers", &["create"]),
    (
        "workspace_build_orchestration",
        &["create", "read", "update"],
    ),
    ("mcp_server_config", CRUD),
];

/// How many resource types there are.
pub const RESOURCE_COUNT: usize = RESOURCES.len();

/// Whether two strings are equal, in a const context.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of action `name` in [`ACTIONS`], in a const context.
const fn action_index(name: &str) -> Option<u8> {
    let mut i = 0;
    while i < ACTIONS.len() {
        if same(ACTIONS[i], name) {
            return Some(i as u8);
        }
        i += 1;
    }
    None
}

/// The index of resource type `name` in [`RESOURCES`], in a const context.
const fn resource_index(name: &str) -> Option<u8> {
    let mut i = 0;
    while i < RESOURCES.len() {
        if same(RESOURCES[i].0, name) {
            return Some(i as u8);
        }
        i += 1;
    }
    None
}

// Every action a resource lists is in `ACTIONS`: checked when the crate compiles, so the
// tables cannot name an action that does not exist.
const _: () = {
    let mut r = 0;
    while r < RESOURCES.len() {
        let actions = RESOURCES[r].1;
        let mut a = 0;
        while a < actions.len() {
            assert!(
                action_index(actions[a]).is_some(),
                "a resource in RESOURCES lists an action that is not in ACTIONS"
            );
            a += 1;
        }
        r += 1;
    }
};

// === impl Action ===

impl Action {
    /// `create`.
    pub const CREATE: Action = Action::named("create");
    /// `read`.
    pub const READ: Action = Action::named("read");
    /// `update`.
    pub const UPDATE: Action = Action::named("update");
    /// `delete`.
    pub const DELETE: Action = Action::named("delete");
    /// `use`.
    pub const USE: Action = Action::named("use");
    /// `ssh`.
    pub const SSH: Action = Action::named("ssh");
    /// `application_connect`.
    pub const APPLICATION_CONNECT: Action = Action::named("application_connect");
    /// `view_insights`.
    pub const VIEW_INSIGHTS: Action = Action::named("view_insights");
    /// `start`.
    pub const START: Action = Action::named("start");
    /// `stop`.
    pub const STOP: Action = Action::named("stop");
    /// `assign`.
    pub const ASSIGN: Action = Action::named("assign");
    /// `unassign`.
    pub const UNASSIGN: Action = Action::named("unassign");
    /// `read_personal`.
    pub const READ_PERSONAL: Action = Action::named("read_personal");
    /// `update_personal`.
    pub const UPDATE_PERSONAL: Action = Action::named("update_personal");
    /// `create_agent`.
    pub const CREATE_AGENT: Action = Action::named("create_agent");
    /// `delete_agent`.
    pub const DELETE_AGENT: Action = Action::named("delete_agent");
    /// `update_agent`.
    pub const UPDATE_AGENT: Action = Action::named("update_agent");
    /// `share`.
    pub const SHARE: Action = Action::named("share");
    /// `use_shared`.
    pub const USE_SHARED: Action = Action::named("use_shared");

    /// The action named `name`, for the constants above: a name that is not an action fails
    /// the build, since constants are evaluated when the crate compiles.
    const fn named(name: &str) -> Action {
        match action_index(name) {
            Some(i) => Action(i),
            None => panic!("not an action in ACTIONS"),
        }
    }

    /// The action named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Action> {
        let i = ACTIONS.iter().position(|a| *a == name)?;
        Some(Action(i as u8))
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        ACTIONS[usize::from(self.0)]
    }

    /// Every action.
    pub fn all() -> impl Iterator<Item = Action> {
        (0..ACTIONS.len()).map(|i| Action(i as u8))
    }

    /// Its bit.
    pub fn bit(self) -> Actions {
        1 << self.0
    }

    /// An action of the built-in tables by name (checked against `ACTIONS` at compile time).
    fn of_table(name: &str) -> Action {
        Action::parse(name).unwrap_or(Action(0))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Resource ===

impl Resource {
    /// `workspace`.
    pub const WORKSPACE: Resource = Resource::named("workspace");
    /// `template`.
    pub const TEMPLATE: Resource = Resource::named("template");
    /// `user`.
    pub const USER: Resource = Resource::named("user");
    /// `organization`.
    pub const ORGANIZATION: Resource = Resource::named("organization");
    /// `organization_member`.
    pub const ORGANIZATION_MEMBER: Resource = Resource::named("organization_member");
    /// `api_key`.
    pub const API_KEY: Resource = Resource::named("api_key");
    /// `assign_role`.
    pub const ASSIGN_ROLE: Resource = Resource::named("assign_role");
    /// `assign_org_role`.
    pub const ASSIGN_ORG_ROLE: Resource = Resource::named("assign_org_role");
    /// `debug_info`: only owners read it (Coder's `/debug` endpoints; `/portcullis/explain`).
    pub const DEBUG_INFO: Resource = Resource::named("debug_info");

    /// The resource type named `name`, for the constants above: a name that is not a resource
    /// type fails the build.
    const fn named(name: &str) -> Resource {
        match resource_index(name) {
            Some(i) => Resource(i),
            None => panic!("not a resource type in RESOURCES"),
        }
    }

    /// The resource type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Resource> {
        let i = RESOURCES.iter().position(|(r, _)| *r == name)?;
        Some(Resource(i as u8))
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        RESOURCES[self.index()].0
    }

    /// Its index into [`RESOURCES`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Every resource type.
    pub fn all() -> impl Iterator<Item = Resource> {
        (0..RESOURCE_COUNT).map(|i| Resource(i as u8))
    }

    /// The actions this resource has, as a mask.
    pub fn actions(self) -> Actions {
        static MASKS: LazyLock<[Actions; RESOURCE_COUNT]> = LazyLock::new(|| {
            std::array::from_fn(|i| {
                RESOURCES[i]
                    .1
                    .iter()
                    .fold(0, |mask, a| mask | Action::of_table(a).bit())
            })
        });
        MASKS[self.index()]
    }

    /// Whether `action` is one of this resource's.
    pub fn has(self, action: Action) -> bool {
        self.actions() & action.bit() != 0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_action_is_a_known_action_and_names_are_unique() {
        assert!(ACTIONS.len() <= 32);
        for (resource, actions) in RESOURCES {
            for a in *actions {
                assert!(Action::parse(a).is_some(), "{resource}:{a}");
            }
        }
        let mut names: Vec<_> = RESOURCES.iter().map(|(r, _)| *r).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RESOURCE_COUNT);
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        let ws = Resource::parse("workspace").unwrap();
        assert_eq!(ws.name(), "workspace");
        assert!(ws.has(Action::parse("ssh").unwrap()));
        assert!(!Resource::parse("template")
            .unwrap()
            .has(Action::parse("ssh").unwrap()));
        assert_eq!(Resource::parse("workspaces"), None);
        assert_eq!(Action::parse("fly"), None);
        assert_eq!(Action::parse("*"), None);
    }
}
