//! A revocation answers success only once every replica has been told, and its retry tells
//! them again.

use serde_json::Value;

use super::*;

/// The Redis user of the replica that may not `PUBLISH`.
const MUTE: &str = "mute";
/// A strong password other than [`PASSWORD`].
const NEW_PASSWORD: &str = "another horse battery staple";

/// Three replicas on one private Redis, their caches an hour long: `mute`, whose Redis user
/// may not `PUBLISH` (a change it makes is stored, but it cannot tell the others), `teller`,
/// which has none of the revoked tokens cached, and `watcher`, which has them all cached. Each
/// way to revoke is made through `mute`: it must answer an error (success would be a lie:
/// `watcher` still accepts the token, as nobody told it), and tried again through `teller`,
/// it gets the answer of a change already made (a 401 for the logout, a 404 for the deleted
/// key or user, a 400 for the same password) — and must tell the replicas all the same, so
/// that `watcher` refuses the token from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_cannot_tell_the_other_replicas_fails_and_its_retry_tells_them() {
    let port = free_port();
    let mute_user = format!("{MUTE} on >secret ~* &* +@all -publish");
    let mut args = vec!["--user"];
    args.extend(mute_user.split(' '));
    let _redis = RedisServer::start_with(port, &args).await;
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let config = |url: String| replica_config(echo, &url, &prefix);
    let mute = Sidecar::start(&config(format!("redis://{MUTE}:secret@127.0.0.1:{port}"))).await;
    let teller = Sidecar::start(&config(format!("redis://127.0.0.1:{port}"))).await;
    let watcher = Sidecar::start(&config(format!("redis://127.0.0.1:{port}"))).await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{prefix}invalidate");
    eventually("the three replicas to subscribe", || {
        let (mut conn, channel) = (conn.clone(), channel.clone());
        async move { subscribers(&mut conn, &channel).await == 3 }
    })
    .await;
    let admin = first_user_token(watcher.addr).await.1;
    let on = |sidecar: &Sidecar, method: Method, path: String, body: Option<Value>, token: &str| {
        call_json(
            sidecar.addr,
            api_request(method, &path, body.as_ref(), Some(token)),
        )
    };

    for (n, (what, retried)) in [
        ("logout", StatusCode::UNAUTHORIZED),
        ("key deletion", StatusCode::NOT_FOUND),
        ("key expiry", StatusCode::NO_CONTENT),
        ("suspension", StatusCode::OK),
        ("password change", StatusCode::BAD_REQUEST),
        ("user deletion", StatusCode::NOT_FOUND),
    ]
    .into_iter()
    .enumerate()
    {
        let (user, session) = make_member(watcher.addr, &admin, &format!("m{n}")).await;
        let uid = user["id"].as_str().expect("an id").to_owned();
        let key = make_token(watcher.addr, &session, json!({"token_name": "t"})).await;
        let key_id = key.split('-').next().expect("a key id").to_owned();
        // The call, made by the member or the admin, and the token it must end.
        let (method, path, body, caller, doomed) = match what {
            "logout" => (
                Method::POST,
                "/api/v2/users/logout".into(),
                None,
                &session,
                &session,
            ),
            "key deletion" => (
                Method::DELETE,
                format!("/api/v2/users/me/keys/{key_id}"),
                None,
                &session,
                &key,
            ),
            "key expiry" => (
                Method::PUT,
                format!("/api/v2/users/me/keys/{key_id}/expire"),
                None,
                &session,
                &key,
            ),
            "suspension" => (
                Method::PUT,
                format!("/api/v2/users/{uid}/status/suspend"),
                None,
                &admin,
                &session,
            ),
            "password change" => (
                Method::PUT,
                format!("/api/v2/users/{uid}/password"),
                Some(json!({"password": NEW_PASSWORD})),
                &admin,
                &session,
            ),
            _ => (
                Method::DELETE,
                format!("/api/v2/users/{uid}"),
                None,
                &admin,
                &session,
            ),
        };
        assert_eq!(proxied(&watcher, doomed).await.0, StatusCode::OK, "{what}");

        let (status, answer, _) =
            on(&mute, method.clone(), path.clone(), body.clone(), caller).await;
        assert!(
            status.is_server_error(),
            "a {what} nobody else was told of answered {status} {answer}"
        );
        assert_eq!(
            proxied(&mute, doomed).await.0,
            StatusCode::UNAUTHORIZED,
            "{what}: the replica that made it refuses the token"
        );
        assert_eq!(
            proxied(&watcher, doomed).await.0,
            StatusCode::OK,
            "{what}: the watcher was not told"
        );

        let (status, answer, _) = on(&teller, method, path, body, caller).await;
        assert_eq!(status, retried, "the {what} tried again: {answer}");
        eventually("the watcher to be told by the retry", || async {
            proxied(&watcher, doomed).await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
    }
    for sidecar in [mute, teller, watcher] {
        sidecar.shutdown().await;
    }
}
