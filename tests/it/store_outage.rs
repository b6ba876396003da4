//! What a Redis outage does to requests that need the store, readiness and metrics:
//!
//! - during a hang, loads of one key do not queue behind each other's deadlines: after a
//!   command gets no answer the store is marked down for a short back-off, so other requests
//!   fail at once (503) rather than each sending a command and spending a deadline; the first
//!   request after the back-off probes, and a recovered Redis is in use again without a
//!   restart. This is counted (commands sent to the hung Redis), not timed;
//! - `/readyz` stays ready through an outage younger than `store.max_stale` (the replica serves
//!   cached sessions through a blip) and turns not-ready after it;
//! - `/metrics` shows the store's state and every command's round trip.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::common::*;
use crate::key_cache::{call, on_private_redis, proxied, readyz, PrivateRedis};

/// Every Redis command sent so far (`portcullis_store_command_seconds_count`, all commands).
fn commands_sent(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("portcullis_store_command_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Redis hung (SIGSTOP): 24 concurrent requests for two keys this replica has not cached, and a
/// login, all get 503, and only a few commands reach the hung Redis (the first load of each
/// key, the login's, a probe after each back-off), not one per request: 12 loads of one key
/// queued one deadline after another would send 12. Counted, not timed; how long the
/// requests took is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_hang_requests_fail_at_once_instead_of_each_waiting_a_deadline() {
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
    let sent_before = commands_sent(&sidecar.metrics().await);

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
    let text = sidecar.metrics().await;
    let to_hung_redis = commands_sent(&text) - sent_before;
    eprintln!(
        "hang: {CONCURRENT} uncached requests, slowest {slowest:?} (all done {:?}); login \
         {login_took:?}; {to_hung_redis} commands sent to the hung Redis (times reported, not \
         asserted)",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        to_hung_redis < (CONCURRENT / 2) as f64,
        "{to_hung_redis} commands sent to a hung Redis for {CONCURRENT} requests and a login:\n{text}"
    );

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
        let (status, body, took) = bounded("a request during the hang", request)
            .await
            .expect("request task");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        slowest = slowest.max(took);
    }
    slowest
}

/// `/readyz` stays 200 while the outage is younger than `store.max_stale` (2 s here), then turns
/// 503 (never before `max_stale` has passed since Redis last answered), and 200 again once Redis
/// is back. `/metrics` shows the store down, how long ago a
/// command last failed, and command round trips by command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_through_an_outage_younger_than_max_stale() {
    let PrivateRedis {
        dir: _dir,
        server,
        sidecar,
        ..
    } = on_private_redis("max_stale = \"2s\"\ncommand_timeout = \"300ms\"").await;
    const MAX_STALE: Duration = Duration::from_secs(2);
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, "portcullis_store_up"), 1.0, "{text}");
    assert!(
        metric(
            &text,
            r#"portcullis_store_command_seconds_count{command="PING"}"#
        ) >= 1.0,
        "{text}"
    );

    // Redis last answered after this: the ping of this `/readyz`.
    let last_answer_after = Instant::now();
    assert_eq!(readyz(&sidecar).await, StatusCode::OK);
    server.signal("STOP");
    let stopped = Instant::now();
    // Ready, unless a loaded machine is already past max_stale since the last answer.
    let status = readyz(&sidecar).await;
    assert!(
        status == StatusCode::OK || last_answer_after.elapsed() >= MAX_STALE,
        "a blip is not an outage: {status}"
    );
    let text = sidecar.metrics().await;
    assert_eq!(metric(&text, "portcullis_store_up"), 0.0, "{text}");
    // The last error is the ping that got no answer, after the STOP.
    let age = metric(&text, "portcullis_store_last_error_age_seconds");
    assert!(
        age >= 0.0 && age <= stopped.elapsed().as_secs_f64(),
        "last error {age} s ago"
    );
    eventually(
        "/readyz 503 once the outage is older than max_stale",
        || async { readyz(&sidecar).await == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    assert!(
        last_answer_after.elapsed() >= MAX_STALE,
        "not ready {:?} after the last answer, before max_stale",
        last_answer_after.elapsed()
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
