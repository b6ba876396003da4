//! Attacker-sized input is refused before it reaches the store: every field that could become
//! part of a store key or value is bounded, and the refusal is Coder's `400`. Proven on Redis
//! by looking at every key the run left behind.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::world::*;
use crate::common::*;

/// 200 KB of one letter.
fn huge() -> String {
    "a".repeat(200 * 1024)
}

fn assert_400(world_call: (StatusCode, Value, http::HeaderMap), what: &str) {
    let (status, body, _) = world_call;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
}

/// Every key under `prefix` on the shared Redis, with the bytes Redis uses for it.
async fn keys_and_sizes(prefix: &str) -> Vec<(String, u64)> {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let size: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((key, size.unwrap_or(0)));
    }
    out
}

/// Logins, code requests, the first user, new users and named tokens with 200 KB fields are
/// each `400`, and afterwards no key under the run's prefix is longer than 1 KB or holds more
/// than 16 KB.
#[tokio::test]
async fn attacker_sized_fields_are_400s_and_never_reach_the_store() {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let sidecar = Sidecar::start(&config_with_store(echo, REDIS, &prefix, "", "")).await;
    let big = huge();
    let big_email = format!("{big}@example.com");

    let first = json!({"email": big_email, "username": big, "name": big, "password": PASSWORD});
    assert_400(
        call(
            &sidecar,
            Method::POST,
            "/api/v2/users/first",
            Some(first),
            None,
        )
        .await,
        "first user",
    );
    let world = World::with_first_user(sidecar, prefix.clone()).await;
    for _ in 0..3 {
        let login = json!({"email": big_email, "password": "wrong"});
        let got = world
            .call(Method::POST, "/api/v2/users/login", Some(login), None)
            .await;
        assert_eq!(got.1["message"], "Validation failed.", "{}", got.1);
        assert_400(got, "login");
    }
    let otp = json!({"email": big_email});
    assert_400(
        world
            .call(Method::POST, "/api/v2/users/otp/request", Some(otp), None)
            .await,
        "code request",
    );
    let user = json!({"email": big_email, "username": "ok", "name": big, "password": PASSWORD});
    assert_400(
        world
            .call(
                Method::POST,
                "/api/v2/users",
                Some(user),
                Some(&world.admin),
            )
            .await,
        "new user",
    );
    let token = json!({"token_name": big});
    let got = world
        .call(
            Method::POST,
            "/api/v2/users/me/keys/tokens",
            Some(token),
            Some(&world.admin),
        )
        .await;
    assert_eq!(got.1["validations"][0]["field"], "token_name", "{}", got.1);
    assert_400(got, "token name");
    let password = json!({"old_password": PASSWORD, "password": format!("{big}1!A")});
    assert_400(
        world
            .call(
                Method::PUT,
                "/api/v2/users/me/password",
                Some(password),
                Some(&world.admin),
            )
            .await,
        "new password",
    );

    let keys = keys_and_sizes(&prefix).await;
    assert!(!keys.is_empty(), "the run stored nothing at all?");
    for (key, size) in &keys {
        assert!(
            key.len() <= 1024,
            "a key of {} bytes: {}…",
            key.len(),
            &key[..80]
        );
        assert!(*size <= 16 * 1024, "{key} holds {size} bytes");
    }
    world.finish().await;
}
