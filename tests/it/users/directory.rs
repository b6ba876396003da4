//! The directory endpoints: `GET /users` (Coder's search and paging), `GET
//! /users/{user}/login-type`, `GET /users/{user}/organizations`, `PUT /users/{user}/profile`
//! and the organizations, with Coder's bodies and what each caller may see.

use super::*;

const NOT_FOUND: &str = "Resource not found or you do not have access to this resource";

fn usernames(body: &Value) -> Vec<String> {
    body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("a users list: {body}"))
        .iter()
        .map(|u| u["username"].as_str().expect("a username").to_owned())
        .collect()
}

pub(super) async fn directory_listing(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let (carol, _) = w.member("carol").await;
    let (_, auditor) = w.with_role("aud", "auditor").await;
    let (bob_id, carol_id) = (bob["id"].as_str().unwrap(), carol["id"].as_str().unwrap());
    let get = |path: String, token: String| {
        let w = &w;
        async move { w.call(Method::GET, &path, None, Some(&token)).await }
    };

    // The owner sees everyone, in username order, in Coder's shape.
    let (status, body, _) = get("/api/v2/users".into(), w.admin.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(usernames(&body), ["admin", "aud", "bob", "carol"]);
    assert_eq!(body["count"], 4);
    let first = &body["users"][0];
    assert_eq!(first["email"], ADMIN_EMAIL);
    assert_eq!(first["organization_ids"], json!([w.org]));
    assert_eq!(first["roles"][0]["name"], "owner");
    assert!(first.get("hashed_password").is_none(), "{first}");

    // Search and paging.
    let cases = [
        ("q=status:active&limit=2", vec!["admin", "aud"], 4),
        ("q=role:auditor", vec!["aud"], 1),
        ("q=role:member", vec!["admin", "aud", "bob", "carol"], 4),
        ("q=login_type:oidc", vec![], 0),
        ("q=CAR", vec!["carol"], 1),
        ("q=example.com%20status:active&offset=3", vec!["carol"], 4),
        ("q=username:BOB", vec!["bob"], 1),
        ("q=email:carol@example.com", vec!["carol"], 1),
        ("limit=1&offset=1", vec!["aud"], 4),
        (&*format!("after_id={bob_id}"), vec!["carol"], 1),
        (&*format!("after_id={}", Uuid::new_v4()), vec![], 0),
        ("offset=10", vec![], 0),
        ("limit=0", vec!["admin", "aud", "bob", "carol"], 4),
    ];
    for (query, want, count) in cases {
        let (status, body, _) = get(format!("/api/v2/users?{query}"), w.admin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(usernames(&body), want, "{query}");
        assert_eq!(body["count"], count, "{query}");
    }

    // A member sees itself only; an auditor (site user:read) everyone.
    let (_, body, _) = get("/api/v2/users".into(), bob_token.clone()).await;
    assert_eq!(
        (usernames(&body), body["count"].clone()),
        (vec!["bob".to_owned()], json!(1))
    );
    let (_, body, _) = get("/api/v2/users?q=carol".into(), bob_token.clone()).await;
    assert_eq!(
        (usernames(&body), body["count"].clone()),
        (vec![], json!(0))
    );
    let (_, body, _) = get("/api/v2/users".into(), auditor).await;
    assert_eq!(body["count"], 4);
    // An owner's token limited to one user by its allow list sees that user only.
    let narrow = w
        .token(
            &w.admin,
            json!({"allow_list": [{"type": "user", "id": carol_id}]}),
        )
        .await;
    let (status, body, _) = get("/api/v2/users".into(), narrow).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(usernames(&body), ["carol"]);
    // A token whose scope does not cover user:read sees nobody, not even its owner.
    let scoped = w
        .token(&w.admin, json!({"scopes": ["workspace:read"]}))
        .await;
    let (status, body, _) = get("/api/v2/users".into(), scoped).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"users": [], "count": 0}));

    // Bad parameters: Coder's 400 bodies.
    let bad = [
        ("q=status:gone", "Invalid user search query.", "status", "Query param \"status\" has invalid values: gone"),
        ("q=colour:red", "Invalid user search query.", "colour", "Query param \"colour\" is not a valid query param"),
        ("q=a:b:c", "Invalid user search query.", "q", "Query element \"a:b:c\" can only contain 1 ':'"),
        ("limit=x", "Query parameters have invalid values.", "limit", "Query param \"limit\" must be a valid integer (strconv.Atoi: parsing \"x\": invalid syntax)"),
        ("after_id=nope", "Query parameters have invalid values.", "after_id", "Query param \"after_id\" must be a valid uuid"),
        ("offset=-1", "Query parameters have invalid values.", "offset", "Query param \"offset\" must be a valid integer (a negative value is not allowed)"),
    ];
    for (query, message, field, detail) in bad {
        let got = get(format!("/api/v2/users?{query}"), w.admin.clone()).await;
        assert_message(&got, StatusCode::BAD_REQUEST, message);
        assert_eq!(
            got.1["validations"],
            json!([{"field": field, "detail": detail}]),
            "{query}"
        );
    }
    w.assert_sessions_needed(&[(Method::GET, "/api/v2/users")])
        .await;
    w.finish().await;
}

pub(super) async fn login_types_and_organizations_of_users(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (_, bob_token) = w.member("bob").await;
    let (carol, _) = w.member("carol").await;
    let carol_id = carol["id"].as_str().unwrap();

    let got = w
        .call(
            Method::GET,
            "/api/v2/users/me/login-type",
            None,
            Some(&bob_token),
        )
        .await;
    assert_eq!(
        (got.0, got.1),
        (StatusCode::OK, json!({"login_type": "password"}))
    );
    let path = format!("/api/v2/users/{carol_id}/login-type");
    let got = w.call(Method::GET, &path, None, Some(&w.admin)).await;
    assert_eq!(
        (got.0, got.1),
        (StatusCode::OK, json!({"login_type": "password"}))
    );
    let got = w.call(Method::GET, &path, None, Some(&bob_token)).await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    let got = w
        .call(
            Method::GET,
            "/api/v2/users/me/organizations",
            None,
            Some(&bob_token),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1.as_array().map(Vec::len), Some(1), "{}", got.1);
    assert_eq!(got.1[0]["id"], w.org.as_str());
    assert_eq!(got.1[0]["is_default"], true);
    assert_eq!(got.1[0]["icon"], "");
    let path = format!("/api/v2/users/{carol_id}/organizations");
    let got = w.call(Method::GET, &path, None, Some(&bob_token)).await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let got = w.call(Method::GET, &path, None, Some(&w.admin)).await;
    assert_eq!(got.1[0]["id"], w.org.as_str(), "{}", got.1);
    w.finish().await;
}

pub(super) async fn profile_changes(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    w.member("carol").await;
    let bob_id = bob["id"].as_str().unwrap();
    let path = format!("/api/v2/users/{bob_id}/profile");

    // Bob may change his name, not his username.
    let got = w
        .call(
            Method::PUT,
            "/api/v2/users/me/profile",
            Some(json!({"username": "bob", "name": "Bob B"})),
            Some(&bob_token),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(
        (got.1["name"].clone(), got.1["username"].clone()),
        (json!("Bob B"), json!("bob"))
    );
    let got = w
        .call(
            Method::PUT,
            "/api/v2/users/me/profile",
            Some(json!({"username": "bobby"})),
            Some(&bob_token),
        )
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    // The owner renames him; his session keeps working and shows the new name at once.
    let got = w
        .call(
            Method::PUT,
            &path,
            Some(json!({"username": "Robert", "name": "Bob B"})),
            Some(&w.admin),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["username"], "Robert");
    let got = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&bob_token))
        .await;
    assert_eq!(
        (got.0, got.1["username"].clone()),
        (StatusCode::OK, json!("Robert"))
    );
    let (status, echo) = proxied(&w.sidecar, &bob_token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo.to_string().contains("Robert"), "{echo}");
    let (_, body, _) = w
        .call(
            Method::GET,
            "/api/v2/users?q=username:robert",
            None,
            Some(&w.admin),
        )
        .await;
    assert_eq!(usernames(&body), ["Robert"]);

    // A taken username, or a bad one.
    let got = w
        .call(
            Method::PUT,
            &path,
            Some(json!({"username": "CAROL"})),
            Some(&w.admin),
        )
        .await;
    assert_message(&got, StatusCode::CONFLICT, "User already exists.");
    assert_eq!(
        got.1["validations"],
        json!([{"field": "username", "detail": "this value is already in use and should be unique"}])
    );
    let got = w
        .call(
            Method::PUT,
            &path,
            Some(json!({"username": "no good", "name": " x"})),
            Some(&w.admin),
        )
        .await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Validation failed.");
    let fields: Vec<&str> = got.1["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "name"]);
    w.finish().await;
}

pub(super) async fn organizations(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (_, bob_token) = w.member("bob").await;
    let list = |token: String| {
        let w = &w;
        async move {
            let (status, body, _) = w
                .call(Method::GET, "/api/v2/organizations", None, Some(&token))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(w.admin.clone()).await, ["coder"]);
    assert_eq!(list(bob_token.clone()).await, ["coder"]);

    // Only an owner creates; names are validated, unique and never "default".
    let create = |body: Value, token: String| {
        let w = &w;
        async move {
            w.call(
                Method::POST,
                "/api/v2/organizations",
                Some(body),
                Some(&token),
            )
            .await
        }
    };
    let got = create(json!({"name": "acme"}), bob_token.clone()).await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    let got = create(
        json!({"name": "acme", "description": "Acme Corp."}),
        w.admin.clone(),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["display_name"], "acme");
    assert_eq!(got.1["is_default"], false);
    let acme_id = got.1["id"].as_str().unwrap().to_owned();
    let got = create(json!({"name": "ACME"}), w.admin.clone()).await;
    assert_message(
        &got,
        StatusCode::CONFLICT,
        "Organization already exists with that name.",
    );
    let got = create(json!({"name": "default"}), w.admin.clone()).await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Organization name \"default\" is reserved.",
    );
    let got = create(json!({"name": "not ok"}), w.admin.clone()).await;
    assert_message(&got, StatusCode::BAD_REQUEST, "Validation failed.");
    assert_eq!(got.1["validations"][0]["field"], "name");
    assert_eq!(list(w.admin.clone()).await, ["coder", "acme"]);
    // Bob is no member of acme: it does not exist for him.
    assert_eq!(list(bob_token.clone()).await, ["coder"]);

    // By id, by name, and "default".
    for param in [acme_id.as_str(), "acme", "ACME"] {
        let got = w
            .call(
                Method::GET,
                &format!("/api/v2/organizations/{param}"),
                None,
                Some(&w.admin),
            )
            .await;
        assert_eq!(
            (got.0, got.1["id"].clone()),
            (StatusCode::OK, json!(acme_id)),
            "{param}"
        );
    }
    let got = w
        .call(
            Method::GET,
            "/api/v2/organizations/default",
            None,
            Some(&bob_token),
        )
        .await;
    assert_eq!((got.0, got.1["id"].clone()), (StatusCode::OK, json!(w.org)));
    let got = w
        .call(
            Method::GET,
            "/api/v2/organizations/acme",
            None,
            Some(&bob_token),
        )
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);

    // Changes: a member of the default org may not; the owner may; names stay unique.
    let patch = |org: &str, body: Value, token: String| {
        let (w, path) = (&w, format!("/api/v2/organizations/{org}"));
        async move { w.call(Method::PATCH, &path, Some(body), Some(&token)).await }
    };
    let got = patch(
        "default",
        json!({"display_name": "Mine"}),
        bob_token.clone(),
    )
    .await;
    assert_message(&got, StatusCode::FORBIDDEN, "Forbidden.");
    let got = patch(
        "acme",
        json!({"name": "acme-2", "display_name": "Acme Inc"}),
        w.admin.clone(),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(
        (got.1["name"].clone(), got.1["display_name"].clone()),
        (json!("acme-2"), json!("Acme Inc"))
    );
    assert_eq!(got.1["description"], "Acme Corp.");
    let got = patch("acme-2", json!({"name": "coder"}), w.admin.clone()).await;
    assert_message(
        &got,
        StatusCode::CONFLICT,
        "Organization already exists with the name \"coder\".",
    );
    assert_eq!(
        got.1["validations"],
        json!([{"field": "name", "detail": "This value is already in use and should be unique."}])
    );
    let got = patch("acme-2", json!({"name": "default"}), w.admin.clone()).await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Organization name \"default\" is reserved.",
    );

    // Deletion: never the default; not by a stranger; then gone.
    let got = w
        .call(
            Method::DELETE,
            "/api/v2/organizations/default",
            None,
            Some(&w.admin),
        )
        .await;
    assert_message(
        &got,
        StatusCode::BAD_REQUEST,
        "Default organization cannot be deleted.",
    );
    let got = w
        .call(
            Method::DELETE,
            "/api/v2/organizations/acme-2",
            None,
            Some(&bob_token),
        )
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let got = w
        .call(
            Method::DELETE,
            "/api/v2/organizations/acme-2",
            None,
            Some(&w.admin),
        )
        .await;
    assert_eq!(
        (got.0, got.1),
        (
            StatusCode::OK,
            json!({"message": "Organization has been deleted."})
        )
    );
    let got = w
        .call(
            Method::GET,
            &format!("/api/v2/organizations/{acme_id}"),
            None,
            Some(&w.admin),
        )
        .await;
    assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
    let (_, me, _) = w
        .call(Method::GET, "/api/v2/users/me", None, Some(&w.admin))
        .await;
    assert_eq!(me["organization_ids"], json!([w.org]));
    w.finish().await;
}

on_every_store!(directory_listing);
on_every_store!(login_types_and_organizations_of_users);
on_every_store!(profile_changes);
on_every_store!(organizations);
