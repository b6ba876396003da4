//! Revocations are never lost, on every store: what `POST /users/logout` revokes (the session
//! and the user's `coder:application_connect` keys, spec/coder-api.md §7.1) is refused from the
//! moment the logout has answered, on the replica that served it and, through the
//! invalidation, on the others; a Sentinel failover loses no revocation; and a revocation
//! closes the WebSockets and streaming responses it concerns (`connections`).

use http::{Method, StatusCode};
use serde_json::json;

use crate::common::world::*;
use crate::common::*;

mod connections;
mod failover;
mod publication;
mod subscription;

/// Logouts in a row: the loss this guards against was intermittent (seen in 5 runs of 12 on
/// Cluster; here, with the checks sent the moment the logout answers, in most runs on every
/// Redis kind).
const ROUNDS: usize = 20;

/// The config of one of several replicas on `store_url` under `prefix`, forwarding to
/// `upstream`: caches an hour long and no negative cache (so that only an invalidation explains
/// a refusal), no rate limits (the tests make many calls from one address).
fn replica_config(upstream: std::net::SocketAddr, store_url: &str, prefix: &str) -> String {
    config_with_store(
        upstream,
        store_url,
        prefix,
        "cache_ttl = \"1h\"\nnegative_cache_ttl = \"0s\"\n",
        "[rate_limit]\napi_per_minute = 0\nlogin_per_minute = 0\n",
    )
}

/// A fresh session logs out, [`ROUNDS`] times: at the moment `POST /users/logout` answers, that
/// session and the application_connect key made with it are refused on the replica that
/// served the logout; the other replica refuses them as soon as the invalidation reaches it;
/// and a token of another scope, and the admin's other session, still work on both.
async fn logout_revokes_the_session_and_application_connect_keys(store_url: &str) {
    let (w, b) = World::with_replica(store_url).await;
    let both = || std::iter::once(&w.sidecar).chain(b.as_ref());
    let keeper = w.token(&w.admin, json!({"token_name": "keeper"})).await;
    for round in 0..ROUNDS {
        let session = admin_token(w.sidecar.addr).await;
        let app = w
            .token(
                &session,
                json!({"token_name": format!("app{round}"), "scope": "application_connect"}),
            )
            .await;
        // Every key is warm in every cache.
        for key in [&session, &app, &keeper] {
            for replica in both() {
                assert_eq!(proxied(replica, key).await.0, StatusCode::OK);
            }
        }

        // The checks go out the moment the logout has answered, on connections opened before.
        let mut checks = Vec::new();
        for _ in 0..2 {
            checks.push(h1(w.sidecar.addr).await);
        }
        let logout = send(
            w.sidecar.addr,
            api_request(Method::POST, "/api/v2/users/logout", None, Some(&session)),
        )
        .await;
        assert_eq!(logout.status(), StatusCode::OK, "round {round}");
        for ((what, key), mut check) in [
            ("the application_connect key", &app),
            ("the session", &session),
        ]
        .into_iter()
        .zip(checks)
        {
            let req = api_request(Method::GET, "/app", None, Some(key));
            let got = bounded("a check", check.send_request(req)).await.unwrap();
            assert_eq!(
                got.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}: {what} still works on the replica that logged it out"
            );
            if let Some(b) = &b {
                eventually("the other replica to refuse it", || async {
                    proxied(b, key).await.0 == StatusCode::UNAUTHORIZED
                })
                .await;
            }
        }
        for key in [&keeper, &w.admin] {
            for replica in both() {
                assert_eq!(proxied(replica, key).await.0, StatusCode::OK);
            }
        }
    }
    if let Some(b) = b {
        b.shutdown().await;
    }
    w.finish().await;
}

on_every_store!(logout_revokes_the_session_and_application_connect_keys);
