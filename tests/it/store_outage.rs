//! What a Redis outage does to requests that need the store, readiness and metrics:
//!
//! - during a hang, every request is answered within about one `store.command_timeout`: loads
//!   of one key do not queue behind each other's deadlines, and after a command gets no answer
//!   the store is marked down for a short back-off, so other requests fail at once (503) rather
//!   than each spending a deadline; the first request after the back-off probes, and a
//!   recovered Redis is in use again without a restart;
//! - `/readyz` stays ready through an outage younger than `store.max_stale` (the replica serves
//!   cached sessions through a blip) and turns not-ready after it;
//! - `/metrics` shows the store's state and every command's round trip.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::common::*;
use crate::key_cache::{call, on_private_redis, proxied, readyz, PrivateRedis};

/// Redis hung (SIGSTOP): 24 concurrent requests for two keys this replica has not cached, and a
/// login, all get 503 — each within about one deadline (300 ms here), not queued one deadline
/// after another (12 loads of one key queued would take 3.6 s). After SIGCONT the same tokens
/// work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_hang_every_request_is_answered_within_about_one_deadline() {
    const CONCURRENT: usize = 24;
    let PrivateRedis {
        dir: _dir,
        server,
        sidecar,
        ..
    } = on_private_redis("cache_ttl = \"100ms\"\nmax_stale = \"0s\"\ncommand_timeout = \"300ms\"")
        .await;
    let addr = sidecar.addr;
    let tokens = [admin_token(addr).await, admin_token(addr).await];
    // Past cache_ttl (+ max_stale 0): neither key is cached any more.
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.signal("STOP");
    let started = Instant::now();
    let slowest = all_unavailable(addr, &tokens, CONCURRENT).await;
    let body = serde_json::json!({"email": ADMIN_EMAIL, "password": PASSWORD});
    let sent = Instant::now();
    let (status, answer) = call(
        addr,
        api_request(Method::POST, "/api/v2/users/login", Some(&body), None),
    )
    .await;
    let login_took = sent.elapsed();
    eprintln!(
        "hang: {CONCURRENT} uncached requests, slowest {slowest:?} (all done {:?}); login {login_took:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        slowest < Duration::from_millis(1500),
        "a request waited {slowest:?} during the hang"
    );
    assert!(login_took < Duration::from_millis(1500), "{login_took:?}");

    server.signal("CONT");
    eventually("the tokens work again after the hang", || {
        let token = tokens[0].clone();
        async move { call(addr, proxied(Some(&token))).await.0 == StatusCode::OK }
    })
    .await;
    sidecar.shutdown().await;
}

/// On a Cluster, a master that hangs (SIGSTOP) costs as little: concurrent requests for a key
/// stored there that this replica has not cached all get 503, and only the first waits for an
/// answer, for one deadline: the store is then marked down, and the others fail at once. (The
/// cluster client has a deadline of its own, as long as Portcullis's; when it passes first,
/// that too is a command that got no answer, not a quick failure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_hung_master_costs_concurrent_requests_about_one_deadline() {
    const CONCURRENT: usize = 24;
    let cluster = RedisCluster::start().await;
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let store = "cache_ttl = \"100ms\"\nmax_stale = \"0s\"\ncommand_timeout = \"300ms\"";
    let config = config_with_store(echo, &cluster.url(), &prefix, store, "");
    let sidecar = Sidecar::start(&config).await;
    let addr = sidecar.addr;
    create_admin(addr).await;
    let token = admin_token(addr).await;
    let id = token.split('-').next().expect("a key id");
    let master = cluster
        .master_of(&format!("{prefix}key:{id}"))
        .expect("a master serves the key");
    // Past cache_ttl (+ max_stale 0): the key is not cached any more.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let gets = r#"portcullis_store_command_seconds_count{command="GET"}"#;
    let before = metric(&sidecar.metrics().await, gets);
    cluster.signal(master, "STOP");
    let slowest = all_unavailable(addr, &[token], CONCURRENT).await;
    let waited = metric(&sidecar.metrics().await, gets) - before;
    cluster.signal(master, "CONT");
    eprintln!("cluster hang: {CONCURRENT} requests for one uncached key, slowest {slowest:?}");
    assert_eq!(
        waited, 1.0,
        "reads of the key that waited for the hung master"
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "a request waited {slowest:?} during the hang"
    );
    sidecar.shutdown().await;
}

/// Sends `n` proxied requests to `addr` at once, with each of `tokens` in turn: each must get
/// 503; how long the slowest took.
async fn all_unavailable(addr: std::net::SocketAddr, tokens: &[String], n: usize) -> Duration {
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let token = tokens[i % tokens.len()].clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let (status, body) = call(addr, proxied(Some(&token))).await;
                (status, body, sent.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for request in requests {
        let (status, body, took) = request.await.expect("request task");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        slowest = slowest.max(took);
    }
    slowest
}

/// `/readyz` stays 200 while the outage is younger than `store.max_stale` (2 s here), then turns
/// 503, and 200 again once Redis is back. `/metrics` shows the store down, how long ago a
/// command last failed, and command round trips by command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_through_an_outage_younger_than_max_stale() {
    let PrivateRedis {
        dir: _dir,
        server,
        sidecar,
        ..
    } = on_private_redis("max_stale = \"2s\"\ncommand_timeout = \"300ms\"").await;
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, "portcullis_store_up"), 1.0, "{text}");
    assert!(
        metric(
            &text,
            r#"portcullis_store_command_seconds_count{command="PING"}"#
        ) >= 1.0,
        "{text}"
    );

    server.signal("STOP");
    let stopped = Instant::now();
    assert_eq!(
        readyz(&sidecar).await,
        StatusCode::OK,
        "a blip is not an outage"
    );
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, "portcullis_store_up"), 0.0, "{text}");
    let age = metric(&text, "portcullis_store_last_error_age_seconds");
    assert!((0.0..2.0).contains(&age), "last error {age} s ago");
    eventually(
        "/readyz 503 once the outage is older than max_stale",
        || async { readyz(&sidecar).await == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "not ready after {:?}, before max_stale",
        stopped.elapsed()
    );

    server.signal("CONT");
    eventually("/readyz 200 once Redis answers", || async {
        readyz(&sidecar).await == StatusCode::OK
    })
    .await;
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, "portcullis_store_up"), 1.0, "{text}");
    sidecar.shutdown().await;
}

/// A replica that has never reached its store is not ready, whatever `max_stale` says: it has
/// no cached session to serve.
#[tokio::test]
async fn a_replica_that_never_reached_its_store_is_not_ready() {
    let echo = start_echo().await;
    let dead = format!("redis://{}", dead_port());
    let config = config_with_store(
        echo,
        &dead,
        &random_key_prefix(),
        "max_stale = \"1h\"\ncommand_timeout = \"200ms\"",
        "",
    );
    let sidecar = Sidecar::start(&config).await;
    assert_eq!(readyz(&sidecar).await, StatusCode::SERVICE_UNAVAILABLE);
    sidecar.shutdown().await;
}

/// With `server.ready_requires_upstream`, `/readyz` is 503 while the upstream refuses
/// connections (an application not up yet) and 200 once it accepts them; without it, the
/// upstream is not asked.
#[tokio::test]
async fn readiness_can_require_the_upstream() {
    let port = free_port();
    let upstream: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let strict = config_with_store(upstream, "memory://", &random_key_prefix(), "", "").replacen(
        "[server]\n",
        "[server]\nready_requires_upstream = true\n",
        1,
    );
    let sidecar = Sidecar::start(&strict).await;
    assert_eq!(readyz(&sidecar).await, StatusCode::SERVICE_UNAVAILABLE);
    let _listener = tokio::net::TcpListener::bind(upstream).await.unwrap();
    assert_eq!(readyz(&sidecar).await, StatusCode::OK);
    sidecar.shutdown().await;

    let lenient = config_with_store(dead_port(), "memory://", &random_key_prefix(), "", "");
    let sidecar = Sidecar::start(&lenient).await;
    assert_eq!(readyz(&sidecar).await, StatusCode::OK);
    sidecar.shutdown().await;
}
