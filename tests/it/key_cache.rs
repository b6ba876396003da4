//! The validated-key cache seen from outside, on the real Redis: two replicas sharing one
//! Redis (a logout on one is rejected on the other at once), a Redis outage (cached sessions
//! served up to `max_stale`, everything else 503, never 401, recovery without a restart), and
//! the identity metrics on `/metrics`.
//!
//! The shared tests use the Redis at `127.0.0.1:6379` (which `.ci/run` starts) under a random
//! key prefix each, and fail loudly when it does not answer. The outage test starts a private
//! `redis-server` on a free port and kills it by PID. Every wait is bounded, and no assertion
//! is about speed: how soon a replica drops a logged-out key is measured and printed, not
//! asserted (a loaded machine may take longer; what is asserted is that only the invalidation
//! can explain it).

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::*;

// === harness ===

/// A config with the given store URL and key prefix and extra `[store]` lines (these tests
/// are about the cache, not hashing).
/// The API rate limit is off here: it is one more store call per API request, and these tests
/// count the key cache's store calls and what an outage does to the cache (the limit's own
/// outage answer is tested in `abuse::api_limit`).
fn cache_config(upstream: SocketAddr, store_url: &str, prefix: &str, store_extra: &str) -> String {
    config_with_store(
        upstream,
        store_url,
        prefix,
        store_extra,
        "[rate_limit]\napi_per_minute = 0\n",
    )
}

/// Fails, naming what is missing, unless the shared test Redis answers.
async fn require_redis() {
    let answered = async {
        let client = redis::Client::open(REDIS).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    let pong = tokio::time::timeout(Duration::from_secs(5), answered).await;
    assert!(
        matches!(pong, Ok(Some(_))),
        "Redis at {REDIS} does not answer. These tests need a real Redis: start redis-server \
         (.ci/run does) — they never skip."
    );
}

fn json_request(path: &str, body: &Value, token: Option<&str>) -> Request<TestBody> {
    api_request(Method::POST, path, Some(body), token)
}

/// A proxied (non-API) request carrying `token`, if any.
pub(crate) fn proxied(token: Option<&str>) -> Request<TestBody> {
    api_request(Method::GET, "/app", None, token)
}

pub(crate) async fn call(addr: SocketAddr, req: Request<TestBody>) -> (StatusCode, Value) {
    let (status, body, _) = call_json(addr, req).await;
    (status, body)
}

/// Sends `req` on a kept-alive HTTP/1.1 connection.
async fn call_on(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    req: Request<TestBody>,
) -> (StatusCode, Value) {
    bounded("the connection ready", sender.ready())
        .await
        .expect("connection still open");
    let resp = bounded("a response", sender.send_request(req))
        .await
        .expect("response");
    let status = resp.status();
    (status, body_json(resp).await)
}

pub(crate) async fn readyz(sidecar: &Sidecar) -> StatusCode {
    send(sidecar.admin, get("admin.test", "/readyz"))
        .await
        .status()
}

/// Subscribers of the invalidation channel of `prefix` on the shared Redis.
async fn invalidation_subscribers(prefix: &str) -> i64 {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers");
    subscribers(&mut conn, &format!("{prefix}invalidate")).await
}

// === two replicas ===

/// Two in-process Portcullis on one Redis and key prefix are two replicas. `cache_ttl` is an
/// hour, far beyond the test's [`BOUND`], so only the invalidation (not the TTL) can explain
/// B's rejection. How long it took is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_rejected_on_the_other_through_the_invalidation() {
    require_redis().await;
    let prefix = random_key_prefix();
    let echo = start_echo().await;
    let cfg = cache_config(echo, REDIS, &prefix, "cache_ttl = \"1h\"");
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    // Both replicas listen for invalidations before anything is invalidated.
    eventually("both replicas subscribed", || async {
        invalidation_subscribers(&prefix).await == 2
    })
    .await;

    create_admin(a.addr).await;
    let token = admin_token(a.addr).await;
    // B serves (and so caches) the session A created, over one kept-alive connection.
    let mut on_b = h1(b.addr).await;
    for _ in 0..3 {
        let (status, seen) = call_on(&mut on_b, proxied(Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen_header(&seen, "x-forwarded-user"), vec!["admin"]);
    }
    let text = b.metrics().await;
    let hits = metric(&text, r#"portcullis_key_cache_total{result="hit"}"#);
    assert!(hits >= 2.0, "B served the session from its cache: {text}");

    let (status, body) = call(
        a.addr,
        json_request("/api/v2/users/logout", &json!({}), Some(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logged_out = Instant::now();

    // Poll B from the moment the logout answered: 200 until B has dropped the key, then 401.
    let mut polls = 0;
    let body = bounded("B to refuse the logged-out token", async {
        loop {
            let (status, body) = call_on(&mut on_b, proxied(Some(&token))).await;
            polls += 1;
            match status {
                StatusCode::UNAUTHORIZED => return body,
                StatusCode::OK => {}
                other => panic!("B answered {other} for a just-logged-out token: {body}"),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    eprintln!(
        "replica B rejected the logged-out token {:?} after the logout ({polls} polls; reported, not asserted)",
        logged_out.elapsed()
    );
    assert_eq!(body["detail"], "API key is invalid.");
    // And it stays rejected, on both replicas.
    let (status, _) = call_on(&mut on_b, proxied(Some(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(a.addr, proxied(Some(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    a.shutdown().await;
    b.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

// === Redis outage ===

/// A Portcullis on a private `redis-server` that persists every write (so that it can be
/// killed and started again with its data), with extra `[store]` lines `store_extra`: ready
/// (`/readyz` 200) and with its first user.
pub(crate) struct PrivateRedis {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub server: RedisServer,
    pub sidecar: Sidecar,
}

pub(crate) async fn on_private_redis(store_extra: &str) -> PrivateRedis {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let server = RedisServer::start_persistent(port, dir.path()).await;
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&cache_config(
        echo,
        &format!("redis://127.0.0.1:{port}"),
        &random_key_prefix(),
        store_extra,
    ))
    .await;
    eventually("/readyz 200 with Redis up", || async {
        readyz(&sidecar).await == StatusCode::OK
    })
    .await;
    create_admin(sidecar.addr).await;
    PrivateRedis {
        dir,
        port,
        server,
        sidecar,
    }
}

const CACHE_TTL: Duration = Duration::from_millis(200);
const MAX_STALE: Duration = Duration::from_secs(2);
/// Clock slack around the stale limit (moka's expiry and ours read different clocks).
const SLACK: Duration = Duration::from_millis(50);

/// Redis killed mid-test: the cached token keeps working until `cache_ttl + max_stale` after
/// it was read, then gets 503; an uncached token, a login and `/readyz` get 503 at once; no
/// valid token ever gets 401; and once Redis is back on the same port, everything works
/// again without restarting Portcullis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_serves_cached_sessions_up_to_max_stale_then_503_and_recovers() {
    let PrivateRedis {
        dir,
        port,
        mut server,
        sidecar,
    } = on_private_redis("cache_ttl = \"200ms\"\nmax_stale = \"2s\"\ncommand_timeout = \"300ms\"")
        .await;
    let addr = sidecar.addr;
    let cached = admin_token(addr).await;
    let uncached = admin_token(addr).await;

    // Read the cached token's session once, then kill Redis.
    let before_use = Instant::now();
    let (status, body) = call(addr, proxied(Some(&cached))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_use = Instant::now();
    server.kill();

    // The cached token: 200 while surely within cache_ttl + max_stale of its read, 503 once
    // surely past it, and nothing else ever.
    let limit = CACHE_TTL + MAX_STALE;
    let (mut served_stale, mut refused_past_limit) = (0, false);
    let mut first_refusal = None;
    while !refused_past_limit {
        let started = Instant::now();
        let (status, body) = bounded(
            "a request during the outage",
            call(addr, proxied(Some(&cached))),
        )
        .await;
        let ended = Instant::now();
        match status {
            StatusCode::OK => {
                assert!(
                    started < after_use + limit + SLACK,
                    "a cached key was served {:?} after its read, past cache_ttl + max_stale",
                    started - after_use
                );
                if started > after_use + CACHE_TTL {
                    served_stale += 1;
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    ended + SLACK >= before_use + limit,
                    "a cached key got 503 {:?} after its read, within cache_ttl + max_stale",
                    ended - before_use
                );
                first_refusal.get_or_insert(ended - after_use);
                refused_past_limit = started > after_use + limit + SLACK;
            }
            other => panic!("a valid cached token got {other} during the outage: {body}"),
        }
        assert!(
            before_use.elapsed() < limit + BOUND,
            "the cached token was never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served_stale > 0, "the cached token was never served stale");
    eprintln!(
        "outage: cached token served stale {served_stale} times, first 503 {:?} after its read \
         (limit {limit:?})",
        first_refusal.unwrap_or_default()
    );

    // Never read: 503 on the first try (how soon is printed; `bounded` catches a hang).
    for token in [uncached.clone(), format!("AAAAAAAAAA-{}", "b".repeat(22))] {
        let started = Instant::now();
        let (status, body) = bounded("an uncached token", call(addr, proxied(Some(&token)))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        eprintln!(
            "outage: a never-cached token got 503 in {:?}",
            started.elapsed()
        );
        assert_eq!(body["message"], "Service unavailable.");
    }
    let (status, body) = login(addr, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(readyz(&sidecar).await, StatusCode::SERVICE_UNAVAILABLE);
    let text = sidecar.metrics().await;
    assert!(metric(&text, r#"portcullis_key_cache_total{result="stale"}"#) >= 1.0);
    assert!(metric(&text, "portcullis_store_errors_total") >= 1.0);
    assert!(
        metric(
            &text,
            r#"portcullis_auth_total{result="store_unavailable"}"#
        ) >= 1.0
    );
    assert_eq!(
        metric(&text, r#"portcullis_auth_total{result="invalid"}"#),
        0.0
    );
    assert_eq!(
        metric(&text, r#"portcullis_logins_total{result="error"}"#),
        1.0
    );

    // Redis back on the same port, with its data: the same Portcullis recovers.
    let _server = RedisServer::start_persistent(port, dir.path()).await;
    let restarted = Instant::now();
    eventually("/readyz 200 after Redis is back", || async {
        readyz(&sidecar).await == StatusCode::OK
    })
    .await;
    for token in [&cached, &uncached] {
        eventually("a session works again after Redis is back", || async {
            let (status, body) = call(addr, proxied(Some(token))).await;
            assert!(
                matches!(status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE),
                "a valid token got {status} while Redis came back: {body}"
            );
            status == StatusCode::OK
        })
        .await;
    }
    eprintln!(
        "outage: sessions work {:?} after Redis restarted",
        restarted.elapsed()
    );
    let fresh = admin_token(addr).await;
    let (status, body) = call(addr, proxied(Some(&fresh))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    sidecar.shutdown().await;
}

/// Redis hung (SIGSTOP: connections open, no answers): concurrent requests for one cached key
/// past `cache_ttl` are all served stale after one store call, not queued behind one
/// another's deadlines: the requests that waited for the failing reload take the stale entry
/// without a store call of their own. Counted, not timed: `portcullis_store_errors_total` goes
/// up by one for all of them (queued, it would go up by one each). The deadline is long
/// (3 s), so that every request has surely asked before the one reload fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_serves_concurrent_requests_for_a_cached_key_after_one_store_call() {
    const CONCURRENT: usize = 10;
    let PrivateRedis {
        dir: _dir,
        server,
        sidecar,
        ..
    } = on_private_redis("cache_ttl = \"200ms\"\nmax_stale = \"5m\"\ncommand_timeout = \"3s\"")
        .await;
    let addr = sidecar.addr;
    let token = admin_token(addr).await;
    let (status, body) = call(addr, proxied(Some(&token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let errors = metric(&sidecar.metrics().await, "portcullis_store_errors_total");

    server.signal("STOP");
    tokio::time::sleep(CACHE_TTL + SLACK).await;
    let started = Instant::now();
    let requests: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let token = token.clone();
            tokio::spawn(async move {
                let (status, body) = call(addr, proxied(Some(&token))).await;
                (status, body, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for request in requests {
        let (status, body, took) = bounded("a request during the hang", request)
            .await
            .expect("request task");
        assert_eq!(status, StatusCode::OK, "a cached key during a hang: {body}");
        slowest = slowest.max(took);
    }
    eprintln!(
        "{CONCURRENT} concurrent stale requests during a Redis hang: slowest {slowest:?} (reported, not asserted)"
    );
    let text = sidecar.metrics().await;
    assert_eq!(
        metric(&text, "portcullis_store_errors_total") - errors,
        1.0,
        "{CONCURRENT} requests for one stale key made more than one store call: {text}"
    );
    assert!(metric(&text, r#"portcullis_key_cache_total{result="stale"}"#) >= CONCURRENT as f64);
    server.signal("CONT");
    sidecar.shutdown().await;
}

/// A sidecar of the test's own on the shared Redis (under a fresh key prefix, returned), with
/// the first user created.
async fn alone_on_shared_redis() -> (String, Sidecar) {
    require_redis().await;
    let prefix = random_key_prefix();
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&cache_config(echo, REDIS, &prefix, "")).await;
    create_admin(sidecar.addr).await;
    (prefix, sidecar)
}

// === metrics ===

/// Logins, key cache results and proxied authentication results on `/metrics`, counted
/// exactly (the sidecar is this test's alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_logins_cache_results_and_proxied_auth_results() {
    let (prefix, sidecar) = alone_on_shared_redis().await;
    let addr = sidecar.addr;

    let (status, _) = login(addr, ADMIN_EMAIL, "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = admin_token(addr).await;
    // One miss (the store read), then two hits.
    for _ in 0..3 {
        let (status, body) = call(addr, proxied(Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // No token; a malformed one; an unknown id twice (a miss, then the negative cache).
    let unknown = format!("AAAAAAAAAA-{}", "b".repeat(22));
    for token in [None, Some("short"), Some(&unknown[..]), Some(&unknown[..])] {
        let (status, _) = call(addr, proxied(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let text = sidecar.metrics().await;
    for (series, value) in [
        (r#"portcullis_logins_total{result="ok"}"#, 1.0),
        (r#"portcullis_logins_total{result="bad_credentials"}"#, 1.0),
        (r#"portcullis_logins_total{result="error"}"#, 0.0),
        (r#"portcullis_key_cache_total{result="hit"}"#, 2.0),
        (r#"portcullis_key_cache_total{result="miss"}"#, 2.0),
        (r#"portcullis_key_cache_total{result="unknown"}"#, 1.0),
        (r#"portcullis_key_cache_total{result="stale"}"#, 0.0),
        (r#"portcullis_auth_total{result="ok"}"#, 3.0),
        (r#"portcullis_auth_total{result="missing"}"#, 1.0),
        (r#"portcullis_auth_total{result="invalid"}"#, 3.0),
        (r#"portcullis_auth_total{result="store_unavailable"}"#, 0.0),
        ("portcullis_store_call_seconds_count", 2.0),
        ("portcullis_store_errors_total", 0.0),
    ] {
        assert_eq!(metric(&text, series), value, "{series} in:\n{text}");
    }

    // API requests authenticate through the same cache and the same `authenticate`, and are
    // counted like every other session check.
    let me = api_request(Method::GET, "/api/v2/users/me", None, Some(&token));
    let (status, body) = call(addr, me).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, r#"portcullis_auth_total{result="ok"}"#), 4.0);
    assert_eq!(
        metric(&text, r#"portcullis_key_cache_total{result="hit"}"#),
        3.0
    );

    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

// === revocation racing a load ===

/// How many races [`a_revocation_racing_a_paused_load_is_never_undone`] runs.
const REVOCATION_RACES: usize = 50;

/// A new API key of the first user, made through the API at `addr` with `admin`.
async fn new_key(addr: SocketAddr, admin: &str) -> String {
    let (status, body) = call(
        addr,
        json_request("/api/v2/users/me/keys", &json!({}), Some(admin)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("a key").to_owned()
}

/// A load that read the key before its revocation must not put it back in the cache after
/// the revocation: Redis (a private one) is paused with `CLIENT PAUSE` while replica A loads
/// a key, the key is revoked meanwhile (deleted through A's API, or logged out on replica B),
/// and once the revocation has reached A the key is refused there, every time, also after
/// the paused load finished. `cache_ttl` is a minute: only a stale entry could serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_a_paused_load_is_never_undone() {
    let port = free_port();
    let _server = RedisServer::start(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let (echo, prefix) = (start_echo().await, random_key_prefix());
    let extra = "cache_ttl = \"60s\"\ncommand_timeout = \"5s\"\n";
    let a = Sidecar::start(&cache_config(echo, &url, &prefix, extra)).await;
    let b = Sidecar::start(&cache_config(echo, &url, &prefix, extra)).await;
    for s in [&a, &b] {
        eventually("/readyz 200", || async {
            readyz(s).await == StatusCode::OK
        })
        .await;
    }
    create_admin(a.addr).await;
    let admin = admin_token(a.addr).await;
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the private Redis answers");

    for race in 0..REVOCATION_RACES {
        let victim = new_key(b.addr, &admin).await;
        let id = victim[..10].to_owned();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(300)
            .arg("ALL")
            .query_async(&mut redis)
            .await
            .expect("CLIENT PAUSE");
        // A starts loading the key; its first read waits for the pause to end.
        let in_flight = tokio::spawn(call(a.addr, proxied(Some(&victim))));
        tokio::time::sleep(Duration::from_millis(20)).await;
        if race % 2 == 0 {
            let path = format!("/api/v2/users/me/keys/{id}");
            let req = api_request(Method::DELETE, &path, None, Some(&admin));
            let (status, body) = bounded("delete", call(a.addr, req)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "race {race}: {body}");
            // A applied its own invalidation before answering: refused at once.
            let (status, body) = call(a.addr, proxied(Some(&victim))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "race {race}: {body}");
        } else {
            let req = json_request("/api/v2/users/logout", &json!({}), Some(&victim));
            let (status, body) = bounded("logout", call(b.addr, req)).await;
            assert_eq!(status, StatusCode::OK, "race {race}: {body}");
        }
        // Whatever the load in flight answered (it began before the revocation)...
        bounded("the paused load", in_flight).await.expect("ran");
        // ... once A has the invalidation, the key is refused, and stays refused.
        eventually("A refuses the revoked key", || async {
            call(a.addr, proxied(Some(&victim))).await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
        for _ in 0..3 {
            let (status, body) = call(a.addr, proxied(Some(&victim))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "race {race}: {body}");
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

// === attacker-sized input ===

/// Every key under `prefix` on the shared Redis.
async fn keys_under(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a redis connection");
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS")
}

/// A login with an email longer than any address can be is refused as Coder refuses a
/// malformed email, before the store is touched: no failure counter keyed by it. (A failed
/// login with a real-sized email does leave one: the check can see it.)
#[tokio::test]
async fn an_oversized_email_is_refused_before_it_can_name_a_store_key() {
    let (prefix, sidecar) = alone_on_shared_redis().await;
    let addr = sidecar.addr;

    let (status, _) = login(addr, ADMIN_EMAIL, "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let counted = keys_under(&prefix).await;
    assert!(
        counted.iter().any(|k| k.contains("rl:fail:")),
        "{counted:?}"
    );

    let huge = format!("{}@example.com", "a".repeat(900 * 1024));
    for _ in 0..3 {
        let body = json!({"email": huge, "password": "whatever"});
        let (status, answer) = call(addr, json_request("/api/v2/users/login", &body, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["message"], "Validation failed.");
        assert_eq!(answer["validations"][0]["field"], "email");
    }
    let keys = keys_under(&prefix).await;
    let longest = keys.iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 1024, "a key of {longest} bytes was stored");

    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}
