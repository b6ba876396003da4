//! {user} resolution (§0.6)

use super::*;

pub(super) async fn user_parameter(store_url: &str) {
    let w = World::start(store_url, "").await;
    // `me` without a session: every {user} route needs one, so Coder's session check answers.
    w.assert_sessions_needed(&[
        (Method::GET, "/api/v2/users/me"),
        (Method::DELETE, "/api/v2/users/me"),
        (Method::PUT, "/api/v2/users/me/password"),
        (Method::PUT, "/api/v2/users/me/status/suspend"),
        (Method::PUT, "/api/v2/users/me/status/activate"),
        (Method::POST, "/api/v2/users/me/keys"),
    ])
    .await;
    // An unknown username or id: not found, on every route.
    let unknown_id = format!("/api/v2/users/{}", Uuid::new_v4());
    for base in ["/api/v2/users/nobody", unknown_id.as_str()] {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::PUT, "/password"),
            (Method::PUT, "/status/suspend"),
            (Method::PUT, "/status/activate"),
            (Method::POST, "/keys"),
        ] {
            let path = format!("{base}{suffix}");
            let got = w
                .call(
                    method.clone(),
                    &path,
                    Some(json!({"password": "a new passphrase"})),
                    Some(&w.admin),
                )
                .await;
            assert_message(&got, StatusCode::NOT_FOUND, NOT_FOUND);
        }
    }
    // A user id and a username (any case) name the same user.
    let (bob, _) = w.member("bob").await;
    for name in [bob["id"].as_str().unwrap(), "bob", "BOB"] {
        let (status, seen, _) = w
            .call(
                Method::GET,
                &format!("/api/v2/users/{name}"),
                None,
                Some(&w.admin),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(seen["id"], bob["id"]);
    }
    w.finish().await;
}

on_every_store!(user_parameter => the_user_parameter);
