//! Authorization end to end, over real sockets, on every store: `POST /authcheck` (spec
//! §2) with every 400 of §2.4, scoped and allow-listed tokens, `resource_id` for the objects
//! Portcullis holds; `GET /auth/scopes`; and role assignment (`PUT /users/{user}/roles`,
//! `PUT /organizations/{org}/members/{user}/roles`) with Coder's who-may-assign-what rules,
//! seen at once by the evaluator.

use http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::world::*;
use crate::common::*;

async fn authcheck(w: &World, token: &str, checks: Value) -> (StatusCode, Value) {
    let (status, body, _) = w
        .call(
            Method::POST,
            "/api/v2/authcheck",
            Some(json!({ "checks": checks })),
            Some(token),
        )
        .await;
    (status, body)
}

fn check(resource_type: &str, action: &str, extra: Value) -> Value {
    let mut object = json!({ "resource_type": resource_type });
    if let Value::Object(more) = extra {
        object.as_object_mut().unwrap().extend(more);
    }
    json!({ "object": object, "action": action })
}

async fn set_roles(w: &World, path: &str, token: &str, roles: &[&str]) -> (StatusCode, Value) {
    let (status, body, _) = w
        .call(
            Method::PUT,
            path,
            Some(json!({ "roles": roles })),
            Some(token),
        )
        .await;
    (status, body)
}

// === POST /authcheck ===

async fn authorization_checks(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let (bob, bob_token) = w.member("bob").await;
    let bob_id = bob["id"].as_str().unwrap();
    let org = w.org.as_str();
    let ws = Uuid::new_v4().to_string();

    let checks = json!({
        "own_ws_read": check("workspace", "read", json!({"owner_id": "me", "organization_id": org})),
        "own_ws_ssh": check("workspace", "ssh", json!({"owner_id": "me", "organization_id": org})),
        "other_ws_read": check("workspace", "read", json!({"owner_id": w.admin_id, "organization_id": org})),
        "template_update": check("template", "update", json!({"organization_id": org})),
        "users_create": check("user", "create", json!({})),
        "me_read": check("user", "read", json!({"owner_id": "me"})),
        "own_key_create": check("api_key", "create", json!({"owner_id": "me"})),
        "nonsense_action": check("template", "fly", json!({"organization_id": org})),
        "nonsense_type": check("spaceship", "read", json!({})),
        "wrong_action_for_type": check("template", "ssh", json!({"organization_id": org})),
        "any_org_template_create": check("template", "create", json!({"any_org": true})),
    });
    let (status, owner) = authcheck(&w, admin, checks.clone()).await;
    assert_eq!(status, StatusCode::OK, "{owner}");
    let (status, member) = authcheck(&w, &bob_token, checks).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    for (key, want_owner, want_member) in [
        ("own_ws_read", true, true),
        ("own_ws_ssh", true, true),
        ("other_ws_read", true, false),
        ("template_update", true, false),
        ("users_create", true, false),
        ("me_read", true, true),
        ("own_key_create", true, true),
        ("nonsense_action", false, false),
        ("nonsense_type", false, false),
        ("wrong_action_for_type", false, false),
        ("any_org_template_create", true, false),
    ] {
        assert_eq!(owner[key], want_owner, "owner {key}: {owner}");
        assert_eq!(member[key], want_member, "member {key}: {member}");
    }
    assert_eq!(owner.as_object().unwrap().len(), 11);

    // A `workspace:read` token of the owner reads any workspace but cannot update one.
    let read_only = w.token(admin, json!({"scopes": ["workspace:read"]})).await;
    let (_, got) = authcheck(
        &w,
        &read_only,
        json!({
            "read": check("workspace", "read", json!({"owner_id": bob_id, "organization_id": org})),
            "update": check("workspace", "update", json!({"owner_id": bob_id, "organization_id": org})),
            "users": check("user", "read", json!({})),
        }),
    )
    .await;
    assert_eq!(got, json!({"read": true, "update": false, "users": false}));

    // An allow-listed token reaches only its object.
    let bound = w
        .token(
            admin,
            json!({"allow_list": [{"type": "workspace", "id": ws}]}),
        )
        .await;
    let (_, got) = authcheck(
        &w,
        &bound,
        json!({
            "its": check("workspace", "update", json!({"resource_id": ws})),
            "synthesised": check("workspace", "update", json!({"organization_id": org})),
            "template": check("template", "read", json!({"organization_id": org})),
        }),
    )
    .await;
    // Workspaces belong to the upstream: Portcullis cannot load one, so even its own object
    // answers false (as Coder does for a missing object), and nothing else is reachable.
    assert_eq!(
        got,
        json!({"its": false, "synthesised": false, "template": false})
    );

    // resource_id for users and organizations, through the caller's own read permission.
    let (_, got) = authcheck(
        &w,
        admin,
        json!({
            "bob": check("user", "update", json!({"resource_id": bob_id})),
            "nobody": check("user", "read", json!({"resource_id": Uuid::new_v4().to_string()})),
            "org": check("organization", "update", json!({"resource_id": org})),
        }),
    )
    .await;
    assert_eq!(got, json!({"bob": true, "nobody": false, "org": true}));
    let (_, got) = authcheck(
        &w,
        &bob_token,
        json!({
            "self": check("user", "update_personal", json!({"resource_id": bob_id})),
            "admin": check("user", "read", json!({"resource_id": w.admin_id})),
            "org_read": check("organization", "read", json!({"resource_id": org})),
            "org_update": check("organization", "update", json!({"resource_id": org})),
        }),
    )
    .await;
    assert_eq!(
        got,
        json!({"self": true, "admin": false, "org_read": true, "org_update": false})
    );
    w.finish().await;
}

on_every_store!(authorization_checks);

#[tokio::test]
async fn authcheck_errors_are_coders() {
    let w = World::start(MEMORY, "").await;
    let admin = w.admin.as_str();
    let bad = |got: &(StatusCode, Value), message: &str| {
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
        assert_eq!(got.1["message"], message, "{}", got.1);
    };

    let got = authcheck(&w, admin, json!({"k": {"object": {}, "action": "read"}})).await;
    bad(
        &got,
        "Object's \"resource_type\" field must be defined for key \"k\".",
    );

    let got = authcheck(
        &w,
        admin,
        json!({"k": check("user", "read", json!({"resource_id": "nope"}))}),
    )
    .await;
    bad(&got, "Object \"nope\" id is not a valid uuid.");
    assert_eq!(got.1["validations"][0]["field"], "resource_id");

    let id = Uuid::new_v4().to_string();
    let got = authcheck(
        &w,
        admin,
        json!({"k": check("file", "read", json!({"resource_id": id}))}),
    )
    .await;
    bad(
        &got,
        "Object type \"file\" does not support \"resource_id\" field.",
    );
    assert_eq!(
        got.1["validations"],
        json!([{"field": "resource_type",
                "detail": "Object type \"file\" does not support \"resource_id\" field."}])
    );

    // More than 10 resource_ids: refused before any single check is looked at.
    let mut many = serde_json::Map::new();
    for i in 0..12 {
        many.insert(
            format!("k{i:02}"),
            check(
                "user",
                "read",
                json!({"resource_id": Uuid::new_v4().to_string()}),
            ),
        );
    }
    many.insert("a".into(), json!({"object": {}, "action": "read"}));
    let got = authcheck(&w, admin, Value::Object(many)).await;
    bad(
        &got,
        "Endpoint only supports using \"resource_id\" field 10 times, found 12 usages. Remove 2 objects with this field set.",
    );

    // The first invalid check (in key order) fails the whole request.
    let got = authcheck(
        &w,
        admin,
        json!({
            "a_ok": check("user", "read", json!({})),
            "b_bad": {"object": {"resource_type": ""}, "action": "read"},
        }),
    )
    .await;
    bad(
        &got,
        "Object's \"resource_type\" field must be defined for key \"b_bad\".",
    );

    // Bad JSON, no session.
    let got = w
        .call(
            Method::POST,
            "/api/v2/authcheck",
            Some(json!({"checks": 7})),
            Some(admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    assert_eq!(got.1["message"], "Request body must be valid JSON.");
    let got = w
        .call(
            Method::POST,
            "/api/v2/authcheck",
            Some(json!({"checks": {}})),
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    assert_eq!(got.1["message"], SIGNED_OUT);
    // An empty batch is an empty answer.
    let got = authcheck(&w, admin, json!({})).await;
    assert_eq!(got, (StatusCode::OK, json!({})));
    w.finish().await;
}

#[tokio::test]
async fn auth_scopes_lists_the_external_scopes_without_a_session() {
    let w = World::start(MEMORY, "").await;
    let (status, body, _) = w.call(Method::GET, "/api/v2/auth/scopes", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = body["external"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/rbac/external-scopes.txt"
    ))
    .lines()
    .filter(|l| !l.trim().is_empty())
    .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 60);
    assert!(!listed.contains(&"*:*") && !listed.contains(&"all"));
    w.finish().await;
}

// === role assignment ===

async fn assigning_roles(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let (bob, bob_token) = w.member("bob").await;
    let (carol, carol_token) = w.member("carol").await;
    let bob_roles = format!("/api/v2/users/{}/roles", bob["id"].as_str().unwrap());
    let carol_roles = format!("/api/v2/users/{}/roles", carol["id"].as_str().unwrap());
    let read_admin = |token: &str| {
        let token = token.to_owned();
        let w = &w;
        async move {
            w.call(Method::GET, "/api/v2/users/admin", None, Some(&token))
                .await
                .0
        }
    };

    // Before: bob cannot read the owner.
    assert_eq!(read_admin(&bob_token).await, StatusCode::NOT_FOUND);
    // The owner makes bob an auditor: the answer is the user; bob's live session sees it.
    let (status, user) = set_roles(&w, &bob_roles, admin, &["auditor", "member"]).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        user["roles"],
        json!([{"name": "auditor", "display_name": "Auditor"}])
    );
    assert_eq!(read_admin(&bob_token).await, StatusCode::OK);

    // Nobody changes their own roles.
    let (status, body) = set_roles(&w, "/api/v2/users/me/roles", admin, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "You cannot change your own roles.");

    // Unknown and organization roles are not site roles.
    for bad in ["superuser", "organization-admin"] {
        let (status, body) = set_roles(&w, &carol_roles, admin, &[bad]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["message"], "Invalid role.");
    }

    // An auditor may read carol but not assign anything: 403.
    let (status, body) = set_roles(&w, &carol_roles, &bob_token, &["auditor"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["message"], "Forbidden.");
    // A member cannot even see bob.
    let (status, _) = set_roles(&w, &bob_roles, &carol_token, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A user-admin may assign `member` only: not auditor, not owner, and may not take
    // bob's auditor role away.
    let (_, ua_token) = w.with_role("ua", "user-admin").await;
    let (status, _) = set_roles(&w, &carol_roles, &ua_token, &["member"]).await;
    assert_eq!(status, StatusCode::OK);
    for roles in [&["auditor"][..], &["owner"]] {
        let (status, body) = set_roles(&w, &carol_roles, &ua_token, roles).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{roles:?}: {body}");
    }
    let (status, _) = set_roles(&w, &bob_roles, &ua_token, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A token of the owner without assign scopes cannot assign.
    let scoped = w.token(admin, json!({"scopes": ["user:read"]})).await;
    let (status, _) = set_roles(&w, &carol_roles, &scoped, &["auditor"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The owner takes the role away again.
    let (status, user) = set_roles(&w, &bob_roles, admin, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["roles"], json!([]));
    assert_eq!(read_admin(&bob_token).await, StatusCode::NOT_FOUND);
    w.finish().await;
}

on_every_store!(assigning_roles);

async fn assigning_organization_roles(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let org = w.org.as_str();
    let (bob, bob_token) = w.member("bob").await;
    let (carol, carol_token) = w.member("carol").await;
    let member_roles = |user: &Value| {
        format!(
            "/api/v2/organizations/{org}/members/{}/roles",
            user["id"].as_str().unwrap()
        )
    };
    let template_update =
        json!({"t": check("template", "update", json!({"organization_id": org}))});

    let (_, got) = authcheck(&w, &bob_token, template_update.clone()).await;
    assert_eq!(got["t"], false);
    // The owner makes bob an organization admin (the org by id; `default` names it too).
    let (status, member) = set_roles(&w, &member_roles(&bob), admin, &["organization-admin"]).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["user_id"], bob["id"]);
    assert_eq!(member["organization_id"], org);
    assert_eq!(
        member["roles"],
        json!([{"name": "organization-admin", "display_name": "Organization Admin",
                "organization_id": org}])
    );
    let (_, got) = authcheck(&w, &bob_token, template_update.clone()).await;
    assert_eq!(got["t"], true);

    // The organization admin assigns organization roles in its organization ...
    let carols = format!(
        "/api/v2/organizations/default/members/{}/roles",
        carol["id"].as_str().unwrap()
    );
    let (status, body) = set_roles(&w, &carols, &bob_token, &["organization-auditor"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... but not site roles, and not its own.
    let carol_site = format!("/api/v2/users/{}/roles", carol["id"].as_str().unwrap());
    let (status, _) = set_roles(&w, &carol_site, &bob_token, &["auditor"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = set_roles(&w, &member_roles(&bob), &bob_token, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "You cannot change your own organization roles."
    );

    // A plain member may assign nothing (it cannot even see other users); site roles are not
    // organization roles; an unknown organization is not found.
    let (status, _) = set_roles(&w, &member_roles(&bob), &carol_token, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = set_roles(&w, &carols, admin, &["auditor"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "Invalid role.");
    let nowhere = format!(
        "/api/v2/organizations/{}/members/{}/roles",
        Uuid::new_v4(),
        carol["id"].as_str().unwrap()
    );
    let (status, _) = set_roles(&w, &nowhere, admin, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Removing the role ends the permission at once.
    let (status, _) = set_roles(&w, &member_roles(&bob), admin, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = authcheck(&w, &bob_token, template_update).await;
    assert_eq!(got["t"], false);
    w.finish().await;
}

on_every_store!(assigning_organization_roles);

async fn organization_membership(store_url: &str) {
    let w = World::start(store_url, "").await;
    let admin = w.admin.as_str();
    let org = w.org.as_str();
    let (bob, bob_token) = w.member("bob").await;
    let bob_id = bob["id"].as_str().unwrap();
    let members = format!("/api/v2/organizations/{org}/members");
    let bobs = format!("/api/v2/organizations/{org}/members/{bob_id}");
    let own_workspace =
        json!({"w": check("workspace", "read", json!({"owner_id": "me", "organization_id": org}))});

    // Members see each other, with user data and site roles.
    let (status, list, _) = w.call(Method::GET, &members, None, Some(&bob_token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert_eq!(
        list[0]["global_roles"],
        json!([{"name": "owner", "display_name": "Owner"}])
    );
    assert_eq!(list[1]["organization_id"], org);

    // A member may not remove another, nor themselves.
    let admins = format!("/api/v2/organizations/{org}/members/{}", w.admin_id);
    let got = w
        .call(Method::DELETE, &admins, None, Some(&bob_token))
        .await;
    assert_eq!(
        got.0,
        StatusCode::NOT_FOUND,
        "bob cannot see the owner: {}",
        got.1
    );
    let got = w.call(Method::DELETE, &bobs, None, Some(&bob_token)).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.1["message"],
        "You cannot remove yourself from an organization."
    );

    // The owner removes bob: his session loses the organization at once.
    let (_, got) = authcheck(&w, &bob_token, own_workspace.clone()).await;
    assert_eq!(got["w"], true);
    let got = w.call(Method::DELETE, &bobs, None, Some(admin)).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    let (_, got) = authcheck(&w, &bob_token, own_workspace.clone()).await;
    assert_eq!(got["w"], false);
    let (status, _, _) = w.call(Method::GET, &members, None, Some(&bob_token)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no longer a member: the organization is gone"
    );
    let got = w.call(Method::DELETE, &bobs, None, Some(admin)).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);

    // ... and adds him back; twice is a conflict.
    let got = w.call(Method::POST, &bobs, None, Some(admin)).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["user_id"], bob_id);
    assert_eq!(got.1["roles"], json!([]));
    let got = w.call(Method::POST, &bobs, None, Some(admin)).await;
    assert_eq!(got.0, StatusCode::CONFLICT, "{}", got.1);
    let (_, got) = authcheck(&w, &bob_token, own_workspace).await;
    assert_eq!(got["w"], true);
    w.finish().await;
}

on_every_store!(organization_membership);
