//! Table-driven checks of the evaluator: every built-in role against workspace, template, user,
//! organization and API-key objects (own, another user's, another organization's), then scopes
//! and allow lists.

use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::model::{ApiKey, LoginType};

const ME: Uuid = Uuid::from_u128(0xa);
const OTHER: Uuid = Uuid::from_u128(0xb);
const ORG: Uuid = Uuid::from_u128(0x01);
const OTHER_ORG: Uuid = Uuid::from_u128(0x02);
const WS: Uuid = Uuid::from_u128(0x100);
const WS2: Uuid = Uuid::from_u128(0x101);

fn user(roles: &[&str]) -> User {
    User {
        id: ME,
        ..User::for_test("me", roles)
    }
}

fn key(scopes: &[&str], allow: &[(&str, &str)]) -> SessionKey {
    let now = OffsetDateTime::UNIX_EPOCH;
    SessionKey::of(ApiKey {
        id: "abcdefghij".into(),
        hashed_secret: [0; 32],
        user_id: ME,
        last_used: now,
        expires_at: now,
        created_at: now,
        updated_at: now,
        login_type: LoginType::Password,
        lifetime_seconds: 0,
        ip_address: String::new(),
        token_name: String::new(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        allow_list: allow
            .iter()
            .map(|(t, id)| AllowListEntry {
                resource_type: (*t).into(),
                id: (*id).into(),
            })
            .collect(),
        not_after: None,
    })
    .expect("a key id")
}

/// A subject with `site` roles, a member of ORG with `org` roles, holding a `coder:all` key.
fn subject(site: &[&str], org: &[&str]) -> Subject {
    scoped(site, org, &["coder:all"], &[("*", "*")])
}

fn scoped(site: &[&str], org: &[&str], scopes: &[&str], allow: &[(&str, &str)]) -> Subject {
    let membership = Membership {
        user_id: ME,
        organization_id: ORG,
        roles: org.iter().map(|r| (*r).to_owned()).collect(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
    };
    Subject::new(&user(site), &[membership], &key(scopes, allow))
}

/// The objects of the table, by name.
fn object(name: &str) -> Object {
    let r = |name: &str| Resource::parse(name).unwrap();
    let in_org = |resource: &str, id: Option<Uuid>, owner: Option<Uuid>, org: Uuid| Object {
        resource: r(resource),
        id,
        owner,
        org: Some(org),
        any_org: false,
    };
    match name {
        "ws_own" => in_org("workspace", Some(WS), Some(ME), ORG),
        "ws_own2" => in_org("workspace", Some(WS2), Some(ME), ORG),
        "ws_other" => in_org("workspace", Some(WS2), Some(OTHER), ORG),
        "ws_other_org" => in_org("workspace", Some(WS2), Some(ME), OTHER_ORG),
        "tpl" => in_org("template", None, None, ORG),
        "tpl_other_org" => in_org("template", None, None, OTHER_ORG),
        "tpl_any_org" => Object {
            any_org: true,
            ..Object::new(r("template"))
        },
        "user_self" => Object::user(ME),
        "user_other" => Object::user(OTHER),
        "org_own" => Object::organization(ORG),
        "org_other" => Object::organization(OTHER_ORG),
        "key_own" => Object::api_key(ME),
        "key_other" => Object::api_key(OTHER),
        "secret_own" => Object {
            owner: Some(ME),
            ..Object::new(r("user_secret"))
        },
        "secret_other" => Object {
            owner: Some(OTHER),
            ..Object::new(r("user_secret"))
        },
        other => panic!("no object {other}"),
    }
}

/// One line: site roles, org roles (in ORG), object, action, expected.
type Case = (
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
    &'static str,
    bool,
);

const ROLE_CASES: &[Case] = &[
    // member: its own workspaces (default org member role), its own user record, its keys.
    (&[], &[], "ws_own", "read", true),
    (&[], &[], "ws_own", "ssh", true),
    (&[], &[], "ws_own", "share", false),
    (&[], &[], "ws_other", "read", false),
    (&[], &[], "ws_other_org", "read", false),
    (&[], &[], "tpl", "read", false),
    (&[], &[], "user_self", "read", true),
    (&[], &[], "user_self", "update_personal", true),
    (&[], &[], "user_self", "update", false),
    (&[], &[], "user_other", "read", false),
    (&[], &[], "org_own", "read", true),
    (&[], &[], "org_own", "update", false),
    (&[], &[], "org_other", "read", false),
    (&[], &[], "key_own", "create", true),
    (&[], &[], "key_own", "delete", true),
    (&[], &[], "key_other", "read", false),
    (&[], &[], "secret_own", "read", true),
    (&[], &[], "secret_other", "read", false),
    // owner: everything, in every organization, except other people's secrets.
    (&["owner"], &[], "ws_other", "update", true),
    (&["owner"], &[], "ws_other_org", "ssh", true),
    (&["owner"], &[], "tpl_other_org", "delete", true),
    (&["owner"], &[], "user_other", "delete", true),
    (&["owner"], &[], "org_other", "update", true),
    (&["owner"], &[], "key_other", "delete", true),
    (&["owner"], &[], "secret_own", "read", true),
    (&["owner"], &[], "secret_other", "read", false),
    // auditor: reads templates, users and organizations; changes nothing.
    (&["auditor"], &[], "tpl", "read", true),
    (&["auditor"], &[], "tpl_other_org", "view_insights", true),
    (&["auditor"], &[], "tpl", "update", false),
    (&["auditor"], &[], "user_other", "read", true),
    (&["auditor"], &[], "user_other", "update", false),
    (&["auditor"], &[], "org_other", "read", true),
    (&["auditor"], &[], "ws_other", "read", false),
    (&["auditor"], &[], "key_other", "read", false),
    // template-admin: every template, reads workspaces and users.
    (&["template-admin"], &[], "ws_other", "read", true),
    (&["template-admin"], &[], "ws_other", "update", false),
    (&["template-admin"], &[], "tpl", "update", true),
    (&["template-admin"], &[], "tpl_other_org", "create", true),
    (&["template-admin"], &[], "user_other", "read", true),
    (&["template-admin"], &[], "user_other", "update", false),
    (&["template-admin"], &[], "key_other", "read", false),
    // user-admin: every user; organizations read-only; no workspaces or templates.
    (&["user-admin"], &[], "user_other", "create", true),
    (&["user-admin"], &[], "user_other", "update", true),
    (&["user-admin"], &[], "user_other", "delete", true),
    (&["user-admin"], &[], "org_other", "read", true),
    (&["user-admin"], &[], "org_own", "update", false),
    (&["user-admin"], &[], "tpl", "read", false),
    (&["user-admin"], &[], "ws_other", "read", false),
    (&["user-admin"], &[], "key_other", "read", false),
    // organization-admin: its organization's workspaces (not ssh), templates, the organization.
    (&[], &["organization-admin"], "ws_other", "read", true),
    (&[], &["organization-admin"], "ws_other", "update", true),
    (&[], &["organization-admin"], "ws_other", "ssh", false),
    (&[], &["organization-admin"], "ws_other_org", "read", false),
    (&[], &["organization-admin"], "tpl", "update", true),
    (&[], &["organization-admin"], "tpl_other_org", "read", false),
    (&[], &["organization-admin"], "org_own", "update", true),
    (&[], &["organization-admin"], "org_other", "read", false),
    (&[], &["organization-admin"], "user_other", "read", true),
    (&[], &["organization-admin"], "user_other", "update", false),
    // API keys belong to no organization: an organization's api_key grant is inert.
    (&[], &["organization-admin"], "key_other", "read", false),
    // organization-auditor, -user-admin, -template-admin.
    (&[], &["organization-auditor"], "tpl", "read", true),
    (&[], &["organization-auditor"], "tpl", "update", false),
    (
        &[],
        &["organization-auditor"],
        "tpl_other_org",
        "read",
        false,
    ),
    (&[], &["organization-auditor"], "ws_other", "read", false),
    (
        &[],
        &["organization-user-admin"],
        "user_other",
        "read",
        true,
    ),
    (
        &[],
        &["organization-user-admin"],
        "user_other",
        "update",
        false,
    ),
    (&[], &["organization-user-admin"], "org_own", "read", true),
    (
        &[],
        &["organization-user-admin"],
        "org_own",
        "update",
        false,
    ),
    (
        &[],
        &["organization-template-admin"],
        "ws_other",
        "read",
        true,
    ),
    (
        &[],
        &["organization-template-admin"],
        "ws_other",
        "update",
        false,
    ),
    (&[], &["organization-template-admin"], "tpl", "create", true),
    (
        &[],
        &["organization-template-admin"],
        "tpl_other_org",
        "read",
        false,
    ),
    // A negation at the organization level beats the member-level grant below it.
    (
        &[],
        &["organization-workspace-creation-ban"],
        "ws_own",
        "create",
        false,
    ),
    (
        &[],
        &["organization-workspace-creation-ban"],
        "ws_own",
        "delete",
        false,
    ),
    (
        &[],
        &["organization-workspace-creation-ban"],
        "ws_own",
        "start",
        true,
    ),
    // ... but not a site-level grant above it.
    (
        &["owner"],
        &["organization-workspace-creation-ban"],
        "ws_own",
        "create",
        true,
    ),
    // An action the resource type does not have is never allowed, even for `*`.
    (&["owner"], &[], "tpl", "ssh", false),
    // any_org: allowed in at least one organization the subject belongs to.
    (
        &[],
        &["organization-template-admin"],
        "tpl_any_org",
        "create",
        true,
    ),
    (&[], &[], "tpl_any_org", "create", false),
];

#[test]
fn built_in_roles_decide_as_the_matrix_says() {
    let mut wrong = Vec::new();
    for (site, org, obj, action, want) in ROLE_CASES {
        let got = subject(site, org).allows(Action::parse(action).unwrap(), &object(obj));
        if got != *want {
            wrong.push(format!(
                "{site:?}/{org:?} {action} {obj}: got {got}, want {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Subjects share the permission sets folded from the same roles and the same scopes
/// ([`intern`]); every one of them still decides by its own roles, whatever was folded before it
/// and while the others live.
#[test]
fn subjects_share_what_equal_roles_fold_to_and_decide_by_their_own() {
    let live: Vec<Subject> = ROLE_CASES
        .iter()
        .map(|(site, org, ..)| subject(site, org))
        .collect();
    let mut wrong = Vec::new();
    for ((site, org, obj, action, want), s) in ROLE_CASES.iter().zip(&live) {
        let got = s.allows(Action::parse(action).unwrap(), &object(obj));
        if got != *want {
            wrong.push(format!(
                "{site:?}/{org:?} {action} {obj}: got {got}, want {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let (a, b) = (subject(&["owner"], &[]), subject(&["owner"], &[]));
    assert!(Arc::ptr_eq(&a.roles, &b.roles));
    assert!(Arc::ptr_eq(&a.scope, &b.scope));
    let member = subject(&[], &[]);
    assert!(!Arc::ptr_eq(&a.roles, &member.roles));
    let admin_here = subject(&[], &["organization-admin"]);
    assert!(!Arc::ptr_eq(&member.roles, &admin_here.roles));
    let read_only = scoped(&["owner"], &[], &["workspace:read"], &[("*", "*")]);
    assert!(Arc::ptr_eq(&a.roles, &read_only.roles));
    assert!(!Arc::ptr_eq(&a.scope, &read_only.scope));
}

#[test]
fn a_scoped_owner_token_can_read_but_not_update() {
    let s = scoped(&["owner"], &[], &["workspace:read"], &[("*", "*")]);
    assert!(s.allows(Action::parse("read").unwrap(), &object("ws_other")));
    assert!(!s.allows(Action::parse("update").unwrap(), &object("ws_other")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("tpl")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("user_self")));
}

#[test]
fn scopes_never_grant_beyond_the_roles() {
    let s = scoped(&[], &[], &["coder:all"], &[("*", "*")]);
    assert!(!s.allows(Action::parse("read").unwrap(), &object("user_other")));
    let s = scoped(&[], &[], &["user:*"], &[("*", "*")]);
    assert!(!s.allows(Action::parse("delete").unwrap(), &object("user_other")));
    assert!(s.allows(Action::parse("read").unwrap(), &object("user_self")));
}

#[test]
fn an_allow_listed_token_reaches_only_its_object() {
    let ws = WS.to_string();
    let s = scoped(&[], &[], &["coder:all"], &[("workspace", &ws)]);
    assert!(s.allows(Action::parse("read").unwrap(), &object("ws_own")));
    assert!(s.allows(Action::parse("ssh").unwrap(), &object("ws_own")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("ws_own2")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("user_self")));
    // A type-wide entry admits every object of that type.
    let s = scoped(&[], &[], &["coder:all"], &[("workspace", "*")]);
    assert!(s.allows(Action::parse("read").unwrap(), &object("ws_own2")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("key_own")));
}

#[test]
fn an_allow_list_holding_star_star_admits_everything_whatever_else_it_holds() {
    let ws = WS.to_string();
    let s = scoped(&[], &[], &["coder:all"], &[("workspace", &ws), ("*", "*")]);
    assert!(s.allows(Action::parse("read").unwrap(), &object("ws_own2")));
    assert!(s.allows(Action::parse("read").unwrap(), &object("key_own")));
    let entry = |t: &str, id: &str| AllowListEntry {
        resource_type: t.into(),
        id: id.into(),
    };
    let list = AllowList::new(&[entry("workspace", &ws), entry("*", "*")]);
    assert!(list.is_everything());
    assert_eq!(list, AllowList::Everything);
    assert!(!AllowList::new(&[entry("workspace", "*")]).is_everything());
    // No entries admit nothing.
    assert!(!AllowList::new(&[]).admits(&object("ws_own")));
}

#[test]
fn composite_and_application_connect_scopes() {
    let s = scoped(&[], &[], &["coder:application_connect"], &[("*", "*")]);
    assert!(s.allows(
        Action::parse("application_connect").unwrap(),
        &object("ws_own")
    ));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("ws_own")));
    let s = scoped(&[], &[], &["coder:workspaces.operate"], &[("*", "*")]);
    assert!(s.allows(Action::parse("start").unwrap(), &object("ws_own")));
    assert!(!s.allows(Action::parse("delete").unwrap(), &object("ws_own")));
    let s = scoped(&[], &[], &["coder:apikeys.manage_self"], &[("*", "*")]);
    assert!(s.allows(Action::parse("create").unwrap(), &object("key_own")));
    assert!(!s.allows(Action::parse("read").unwrap(), &object("user_self")));
    // Its grant is on the key owner's own keys only, even for an owner.
    let s = scoped(
        &["owner"],
        &[],
        &["coder:apikeys.manage_self"],
        &[("*", "*")],
    );
    assert!(s.allows(Action::parse("delete").unwrap(), &object("key_own")));
    assert!(!s.allows(Action::parse("create").unwrap(), &object("key_other")));
    let s = scoped(&["owner"], &[], &["api_key:create"], &[("*", "*")]);
    assert!(s.allows(Action::parse("create").unwrap(), &object("key_other")));
}

#[test]
fn unknown_role_names_and_unparsable_allow_list_entries_grant_nothing() {
    let s = subject(&["superuser"], &["organization-superuser"]);
    assert!(!s.allows(Action::parse("read").unwrap(), &object("user_other")));
    let s = scoped(
        &["owner"],
        &[],
        &["coder:all"],
        &[("workspace", "not-a-uuid")],
    );
    assert!(!s.allows(Action::parse("read").unwrap(), &object("ws_own")));
}

/// What the steps of a traced decision say the answer is: the walk's own rules, read back
/// from the trace alone.
fn verdict(steps: &[Step]) -> bool {
    let mut roles = None;
    let mut scope = None;
    let mut allow_list = None;
    for step in steps {
        match *step {
            Step::NoSuchAction => return false,
            Step::Roles(_, Vote::Allow) => roles = Some(true),
            Step::Roles(_, _) | Step::NotMember(_) | Step::NotOwner => {
                roles.get_or_insert(false);
            }
            Step::Scope { vote, .. } => scope = Some(vote == Vote::Allow),
            Step::AllowList(admitted) => allow_list = Some(admitted),
        }
    }
    roles == Some(true) && scope == Some(true) && allow_list == Some(true)
}

#[test]
fn the_explaining_evaluator_agrees_with_the_plain_one_and_its_trace_explains_the_answer() {
    let objects = [
        "ws_own",
        "ws_other",
        "ws_other_org",
        "tpl",
        "tpl_other_org",
        "tpl_any_org",
        "user_self",
        "user_other",
        "org_own",
        "org_other",
        "key_own",
        "key_other",
        "secret_own",
        "secret_other",
    ];
    let subjects = [
        subject(&[], &[]),
        subject(&["owner"], &[]),
        subject(&["user-admin"], &[]),
        subject(&["auditor"], &["organization-admin"]),
        subject(&[], &["organization-workspace-creation-ban"]),
        scoped(&["owner"], &[], &["workspace:read"], &[("*", "*")]),
        scoped(&[], &[], &["coder:apikeys.manage_self"], &[("*", "*")]),
        scoped(&["owner"], &[], &["coder:all"], &[("workspace", "*")]),
    ];
    let (mut allowed, mut denied) = (0, 0);
    for s in &subjects {
        for name in objects {
            let object = object(name);
            for action in Action::all() {
                let mut steps = Vec::new();
                let traced = s.decide(action, &object, &mut steps);
                assert_eq!(traced, s.allows(action, &object), "{name} {action:?}");
                assert_eq!(verdict(&steps), traced, "{name} {action:?}: {steps:?}");
                if traced {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
    }
    assert!(
        allowed > 100 && denied > 100,
        "{allowed} allowed, {denied} denied"
    );
}

#[test]
fn the_roles_and_scopes_behind_a_vote_are_named() {
    let read = Action::parse("read").unwrap();
    let ws = Resource::parse("workspace").unwrap();
    let voters = explain::roles_voting(
        &["owner".into(), "auditor".into()],
        &[],
        Level::Site,
        ws,
        read,
        Vote::Allow,
    );
    assert_eq!(voters, ["owner"]);
    let scopes = explain::scopes_voting(
        &["template:read".into(), "workspace:read".into()],
        false,
        ws,
        read,
        Vote::Allow,
    );
    assert_eq!(scopes, ["workspace:read"]);
}

#[test]
fn user_and_organization_objects_carry_their_id_for_the_allow_list() {
    let (me, org) = (ME.to_string(), ORG.to_string());
    let s = scoped(
        &["owner"],
        &[],
        &["coder:all"],
        &[("user", &me), ("organization", &org)],
    );
    let read = Action::parse("read").unwrap();
    assert!(s.allows(read, &Object::user(ME)));
    assert!(!s.allows(read, &Object::user(OTHER)));
    assert!(s.allows(read, &Object::organization(ORG)));
    assert!(!s.allows(read, &Object::organization(OTHER_ORG)));
}
