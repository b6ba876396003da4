//! Writes that race end to end, on every store: a login (which activates a dormant
//! user and upgrades an old password hash) racing a suspension, and an `expire` racing the
//! sliding refresh (`touch`) of the key it expires. Each write changes only the fields it
//! means to change, on the record as stored, so neither undoes the other.
//!
//! The Redis runs use `127.0.0.1:6379` under a random key prefix each. Forced rehashes come
//! from a second Portcullis on the same prefix with other argon2 parameters (as after a
//! restart with new ones); on `memory://`, where a restart loses everything, from a hash with
//! other parameters written into the user's record.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::common::world::*;
use crate::common::*;
use portcullis::auth::password::{PasswordParams, Passwords};
use portcullis::store::UserStatus;

/// How many races each test runs.
const RACES: usize = 20;

/// The argon2 iterations of the second Portcullis (the first one's are 1).
const OTHER_ITERATIONS: u32 = 2;

/// The user's stored password hash.
async fn stored_hash(sidecar: &Sidecar, id: Uuid) -> String {
    let user = sidecar.app.store.user(id).await.unwrap().expect("the user");
    user.hashed_password.expect("a password hash")
}

async fn a_suspension_racing_logins_that_rehash_always_wins(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, _) = w.member("bob").await;
    let bob_id: Uuid = bob["id"].as_str().unwrap().parse().unwrap();
    let email = "bob@example.com";
    // The second Portcullis: same store, other argon2 parameters, so that a login there
    // upgrades a hash made here, and the other way round.
    let other = if w.sidecar.app.store.is_shared() {
        let config = config_with_store(start_echo().await, store_url, &w.prefix, "", "").replace(
            "argon2_iterations = 1",
            &format!("argon2_iterations = {OTHER_ITERATIONS}"),
        );
        Some(Sidecar::start(&config).await)
    } else {
        None
    };
    let old_params = Passwords::new(PasswordParams {
        memory_kib: 1024,
        iterations: OTHER_ITERATIONS,
        parallelism: 1,
        max_concurrent: 1,
        queue: 4,
    })
    .unwrap();

    for race in 0..RACES {
        // A login that will find a hash made with parameters it does not use.
        let here_made = stored_hash(&w.sidecar, bob_id).await.contains(",t=1,");
        let login_at = match &other {
            Some(other) if here_made => other,
            _ => &w.sidecar,
        };
        if other.is_none() {
            let old = old_params.hash(PASSWORD).await.unwrap();
            w.sidecar
                .app
                .store
                .modify_user(bob_id, |u| {
                    u.hashed_password = Some(old.clone());
                    true
                })
                .await
                .unwrap();
        }
        let before = stored_hash(&w.sidecar, bob_id).await;

        // The suspension lands 0-15 ms into the login (while it verifies and rehashes).
        let logging_in = login(login_at.addr, email, PASSWORD);
        let suspend = async {
            tokio::time::sleep(Duration::from_millis((race % 16) as u64)).await;
            let path = format!("/api/v2/users/{bob_id}/status/suspend");
            let got = w.call(Method::PUT, &path, None, Some(&w.admin)).await;
            assert_eq!(got.0, StatusCode::OK, "race {race}: {}", got.1);
        };
        let ((status, body), ()) = bounded("login and suspension", async {
            tokio::join!(logging_in, suspend)
        })
        .await;

        let user = w.sidecar.app.store.user(bob_id).await.unwrap().unwrap();
        assert_eq!(
            user.status,
            UserStatus::Suspended,
            "race {race}: {status} {body}"
        );
        // No session works once the suspension has returned: not one the login made.
        if status == StatusCode::CREATED {
            let token = body["session_token"].as_str().unwrap();
            for sidecar in std::iter::once(&w.sidecar).chain(&other) {
                assert_signed_out(&proxied(sidecar, token).await, SUSPENDED_DETAIL);
            }
        }
        let (status, body) = login(login_at.addr, email, PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "race {race}: {body}");

        let path = format!("/api/v2/users/{bob_id}/status/activate");
        let got = w.call(Method::PUT, &path, None, Some(&w.admin)).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        // The hash was upgraded, or left for the next login: never lost or reverted.
        let after = stored_hash(&w.sidecar, bob_id).await;
        assert!(after == before || after.contains(",t=1,") != before.contains(",t=1,"));
    }
    // And after all that the user still logs in everywhere.
    login_ok(w.sidecar.addr, email, PASSWORD).await;
    if let Some(other) = other {
        login_ok(other.addr, email, PASSWORD).await;
        other.shutdown().await;
    }
    w.finish().await;
}

on_every_store!(a_suspension_racing_logins_that_rehash_always_wins);

async fn an_expire_racing_the_sliding_refresh_leaves_the_key_expired(store_url: &str) {
    let w = World::start(store_url, "").await;
    for race in 0..RACES {
        let (status, body, _) = w
            .call(
                Method::POST,
                "/api/v2/users/me/keys/tokens",
                Some(json!({"token_name": format!("race{race}")})),
                Some(&w.admin),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["key"].as_str().unwrap().to_owned();
        let id = &token[..10];

        // The first use of a new token records its use (`touch`, off the request path) from
        // the copy it cached; the expire lands 0-15 ms into that.
        let used = proxied(&w.sidecar, &token);
        let expire = async {
            tokio::time::sleep(Duration::from_millis((race % 16) as u64)).await;
            let path = format!("/api/v2/users/me/keys/{id}/expire");
            let got = w.call(Method::PUT, &path, None, Some(&w.admin)).await;
            assert_eq!(got.0, StatusCode::NO_CONTENT, "race {race}: {}", got.1);
        };
        bounded("use and expire", async { tokio::join!(used, expire) }).await;

        // Whenever the refresh lands, the key stays expired.
        for _ in 0..5 {
            let key = w.sidecar.app.store.key(id).await.unwrap().expect("kept");
            assert!(
                key.expires_at <= time::OffsetDateTime::now_utc(),
                "race {race}: the key was un-expired: {:?}",
                key.expires_at
            );
            let got = proxied(&w.sidecar, &token).await;
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "race {race}: {}", got.1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    w.finish().await;
}

on_every_store!(an_expire_racing_the_sliding_refresh_leaves_the_key_expired);
