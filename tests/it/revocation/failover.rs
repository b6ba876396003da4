//! a Sentinel failover under traffic

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

const SERVICE: &str = "mymaster";

/// A private Sentinel set (the shared one serves other tests, which a failover would disturb):
/// a master, its replica and one sentinel, each on a free port, killed when dropped.
struct SentinelSet {
    master: u16,
    replica: u16,
    sentinel: u16,
    _servers: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    async fn start() -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        let mut servers = vec![RedisServer::start(master).await];
        // The first sync at once, not after the default 5 s wait for more replicas.
        redis_cli(master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        servers.push(RedisServer::start_replica(replica, master, dir.path()).await);
        servers.push(RedisServer::start_sentinel(sentinel, master, SERVICE, dir.path()).await);
        let set = SentinelSet {
            master,
            replica,
            sentinel,
            _servers: servers,
            _dir: dir,
        };
        eventually(
            "the replica to be in sync and known to the sentinel",
            || set.replica_ready(),
        )
        .await;
        set
    }

    fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{SERVICE}", self.sentinel)
    }

    async fn replica_ready(&self) -> bool {
        let info = redis_cli(self.replica, &["INFO", "replication"]);
        let known = redis_cli(self.sentinel, &["SENTINEL", "replicas", SERVICE]);
        info.contains("master_link_status:up") && known.contains(&self.replica.to_string())
    }

    /// The port of the master the sentinel names now.
    fn named_master(&self) -> Option<u16> {
        let answer = redis_cli(
            self.sentinel,
            &["SENTINEL", "get-master-addr-by-name", SERVICE],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL FAILOVER` through `redis-cli`, retried while the sentinel is not ready for it
    /// yet; then waits until the replica is the master the sentinel names, and the old master
    /// has become its replica.
    async fn failover(&self) {
        eventually("the sentinel to accept SENTINEL FAILOVER", || async {
            redis_cli(self.sentinel, &["SENTINEL", "FAILOVER", SERVICE]).trim() == "OK"
        })
        .await;
        eventually(
            "the replica to be promoted and the old master demoted",
            || async {
                self.named_master() == Some(self.replica)
                    && redis_cli(self.replica, &["ROLE"]).starts_with("master")
                    && redis_cli(self.master, &["ROLE"]).starts_with("slave")
            },
        )
        .await;
    }
}

/// What `redis-cli -p PORT ARGS` prints ("" when it fails).
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs (install redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status of a proxied request with `token` to the Portcullis at `addr`.
async fn status_of(addr: SocketAddr, token: &str) -> StatusCode {
    call_json(addr, api_request(Method::GET, "/app", None, Some(token)))
        .await
        .0
}

/// What the traffic saw: every revoked token that was let through (must stay empty), and how
/// many requests with a valid token were answered, and how many of those with 503.
#[derive(Default)]
struct Seen {
    revoked_accepted: Vec<String>,
    valid: usize,
    unavailable: usize,
}

/// Requests in a loop to every replica in `addrs` until `stop`: with each of `valid` (answered
/// 200, or 503 while the store fails over) and each token in `revoked` (never 200).
fn traffic(
    addrs: Vec<SocketAddr>,
    valid: Vec<String>,
    revoked: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            for &addr in &addrs {
                for token in &valid {
                    let status = status_of(addr, token).await;
                    let mut seen = seen.lock().unwrap();
                    seen.valid += 1;
                    match status {
                        StatusCode::OK => {}
                        StatusCode::SERVICE_UNAVAILABLE => seen.unavailable += 1,
                        other => panic!("a valid token got {other} on {addr}"),
                    }
                }
                let revoked = revoked.lock().unwrap().clone();
                for token in revoked {
                    let status = status_of(addr, &token).await;
                    if status == StatusCode::OK {
                        seen.lock().unwrap().revoked_accepted.push(token);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Two replicas on a Sentinel set, under steady traffic. Tokens are revoked in every way there
/// is (logout with its application_connect key, token deletion, suspension), each counted as
/// revoked once its call has answered; then `SENTINEL FAILOVER` promotes the replica. No revoked
/// token is ever let through by either replica, before, during or after the failover; both
/// recover without a restart, and a revocation made after the failover holds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_traffic_loses_no_revocation_issued_before_it() {
    let set = SentinelSet::start().await;
    let (w, b) = World::with_replica(&set.url()).await;
    let b = b.expect("a shared store");
    let addrs = vec![w.sidecar.addr, b.addr];

    // Who will be revoked, and how.
    let mut sessions = Vec::new();
    let mut app_keys = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let (_, session) = w.member(name).await;
        let app = w
            .token(
                &session,
                json!({"token_name": "app", "scope": "application_connect"}),
            )
            .await;
        sessions.push(session);
        app_keys.push(app);
    }
    let mut tokens = Vec::new();
    for n in 0..3 {
        tokens.push(
            w.token(&w.admin, json!({"token_name": format!("t{n}")}))
                .await,
        );
    }
    let (dan, dan_session) = w.member("dan").await;
    let (_, keeper) = w.member("keeper").await;
    let (_, late) = w.member("late").await;
    let valid = vec![w.admin.clone(), keeper];
    let everyone: Vec<&String> = sessions
        .iter()
        .chain(&app_keys)
        .chain(&tokens)
        .chain([&dan_session, &late])
        .chain(&valid)
        .collect();
    for &addr in &addrs {
        for &token in &everyone {
            assert_eq!(status_of(addr, token).await, StatusCode::OK);
        }
    }

    let revoked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        addrs.clone(),
        valid.clone(),
        revoked.clone(),
        seen.clone(),
        stop.clone(),
    );

    // The revocations, each counted once it has answered.
    for (session, app) in sessions.iter().zip(&app_keys) {
        let (status, body, _) = w
            .call(Method::POST, "/api/v2/users/logout", None, Some(session))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        revoked
            .lock()
            .unwrap()
            .extend([session.clone(), app.clone()]);
    }
    for token in &tokens {
        let id = token.split('-').next().expect("a key id");
        let path = format!("/api/v2/users/me/keys/{id}");
        let (status, body, _) = call(&b, Method::DELETE, &path, None, Some(&w.admin)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        revoked.lock().unwrap().push(token.clone());
    }
    let path = format!(
        "/api/v2/users/{}/status/suspend",
        dan["id"].as_str().unwrap()
    );
    let (status, body, _) = w.call(Method::PUT, &path, None, Some(&w.admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    revoked.lock().unwrap().push(dan_session.clone());

    // At once: the failover.
    set.failover().await;

    // Both replicas recover by themselves: the valid tokens work again.
    for &addr in &addrs {
        for token in &valid {
            eventually("a valid token to work again after the failover", || async {
                status_of(addr, token).await == StatusCode::OK
            })
            .await;
        }
    }
    // A revocation on the new master holds too (retried while a replica's first store call
    // after the failover finds its connection closed and answers 503).
    eventually("a logout after the failover to answer", || async {
        let (status, _, _) = w
            .call(Method::POST, "/api/v2/users/logout", None, Some(&late))
            .await;
        assert!(
            [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&status),
            "{status}"
        );
        status == StatusCode::OK
    })
    .await;
    revoked.lock().unwrap().push(late.clone());
    for &addr in &addrs {
        eventually(
            "the logout after the failover to reach every replica",
            || async { status_of(addr, &late).await == StatusCode::UNAUTHORIZED },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("the traffic ran without a surprise");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.revoked_accepted.is_empty(),
        "revoked tokens let through: {:?}",
        seen.revoked_accepted
    );
    assert!(seen.valid > 0, "the traffic ran");
    eprintln!(
        "failover: {} requests with valid tokens, {} answered 503",
        seen.valid, seen.unavailable
    );
    let revoked = revoked.lock().unwrap().clone();
    for &addr in &addrs {
        for token in &revoked {
            assert_eq!(status_of(addr, token).await, StatusCode::UNAUTHORIZED);
        }
    }
    b.shutdown().await;
    w.sidecar.shutdown().await;
}
