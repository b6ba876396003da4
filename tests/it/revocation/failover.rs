//! a Sentinel failover under traffic

use std::collections::BTreeSet;
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
        // A folder each: each may receive a copy of the other's data.
        let (master_dir, replica_dir) = (dir.path().join("master"), dir.path().join("replica"));
        for d in [&master_dir, &replica_dir] {
            std::fs::create_dir(d).unwrap();
        }
        let mut servers = vec![RedisServer::start_in(master, &master_dir).await];
        // The first sync at once, not after the default 5 s wait for more replicas.
        redis_cli(master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        servers.push(RedisServer::start_replica(replica, master, &replica_dir).await);
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

    /// Whether the replica confirms a write (it does not until its first acknowledgement,
    /// up to a second after its sync: a Sentinel store's writes wait for it), and the
    /// sentinel knows it (only then can it fail over).
    async fn replica_ready(&self) -> bool {
        let known = redis_cli(self.sentinel, &["SENTINEL", "replicas", SERVICE]);
        known.contains(&self.replica.to_string()) && confirms_writes(self.master).await
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
    /// yet; returns once the replica is a master. The old master is one too until the sentinel
    /// demotes it, some seconds later ([`SentinelSet::await_demotion`]).
    async fn start_failover(&self) {
        eventually("the sentinel to accept SENTINEL FAILOVER", || async {
            redis_cli(self.sentinel, &["SENTINEL", "FAILOVER", SERVICE]).trim() == "OK"
        })
        .await;
        eventually("the replica to be promoted", || async {
            redis_cli(self.replica, &["ROLE"]).starts_with("master")
        })
        .await;
    }

    /// Whether the old master still takes writes.
    fn old_master_writable(&self) -> bool {
        redis_cli(self.master, &["ROLE"]).starts_with("master")
    }

    /// Waits until the sentinel names the new master and has made the old one its replica.
    async fn await_demotion(&self) {
        eventually("the old master to be demoted", || async {
            self.named_master() == Some(self.replica)
                && redis_cli(self.master, &["ROLE"]).starts_with("slave")
        })
        .await;
    }
}

/// Whether a write to the master on `port` is confirmed by a replica at once (`WAIT 1`).
async fn confirms_writes(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let probe = redis::cmd("SET")
        .arg("failover-test-probe")
        .arg(1)
        .query_async::<()>(&mut conn)
        .await;
    let acked = redis::cmd("WAIT")
        .arg(1)
        .arg(100)
        .query_async::<i64>(&mut conn)
        .await;
    probe.is_ok() && acked.is_ok_and(|n| n > 0)
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
    revoked_accepted: BTreeSet<String>,
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
                        seen.lock().unwrap().revoked_accepted.insert(token);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// One way to revoke access, with the tokens it ends.
enum Revocation {
    /// `POST /users/logout` with a session, which also ends its user's application_connect key.
    Logout { session: String, app: String },
    /// `DELETE /users/me/keys/{id}` of one of the admin's tokens.
    Delete { token: String },
    /// `PUT /users/{id}/status/suspend`, which ends the user's session.
    Suspend { user: String, session: String },
}

impl Revocation {
    /// Makes one of each kind, for `name` (a fresh member, and a token of the admin's).
    async fn each(w: &World, name: &str) -> [Revocation; 3] {
        let (_, session) = w.member(&format!("{name}-out")).await;
        let app = w
            .token(
                &session,
                json!({"token_name": "app", "scope": "application_connect"}),
            )
            .await;
        let token = w
            .token(&w.admin, json!({"token_name": format!("{name}-token")}))
            .await;
        let (user, suspended) = w.member(&format!("{name}-suspended")).await;
        [
            Revocation::Logout { session, app },
            Revocation::Delete { token },
            Revocation::Suspend {
                user: user["id"].as_str().expect("an id").to_owned(),
                session: suspended,
            },
        ]
    }

    fn tokens(&self) -> Vec<String> {
        match self {
            Revocation::Logout { session, app } => vec![session.clone(), app.clone()],
            Revocation::Delete { token } => vec![token.clone()],
            Revocation::Suspend { session, .. } => vec![session.clone()],
        }
    }

    /// Makes the call on `via`, as the admin where it takes one: whether it answered success
    /// (true), or an error that leaves it undone as far as the caller knows (false). Anything
    /// else fails the test, but on a `retry` the answer of a call whose earlier attempt did its
    /// work though it answered an error (a logout whose session is gone: 401; a deletion of a
    /// deleted token: 404) counts as success.
    async fn run(&self, w: &World, via: &Sidecar, retry: bool) -> bool {
        let (method, path, token) = match self {
            Revocation::Logout { session, .. } => {
                (Method::POST, "/api/v2/users/logout".to_owned(), session)
            }
            Revocation::Delete { token } => {
                let id = token.split('-').next().expect("a key id");
                (
                    Method::DELETE,
                    format!("/api/v2/users/me/keys/{id}"),
                    &w.admin,
                )
            }
            Revocation::Suspend { user, .. } => (
                Method::PUT,
                format!("/api/v2/users/{user}/status/suspend"),
                &w.admin,
            ),
        };
        let (status, body, _) = call(via, method, &path, None, Some(token)).await;
        let done_before = match self {
            Revocation::Logout { .. } => StatusCode::UNAUTHORIZED,
            Revocation::Delete { .. } => StatusCode::NOT_FOUND,
            Revocation::Suspend { .. } => StatusCode::OK,
        };
        if retry && status == done_before {
            return true;
        }
        assert!(
            status.is_success() || status.is_server_error(),
            "{path}: {status} {body}"
        );
        status.is_success()
    }
}

/// Two replicas on a Sentinel set, under steady traffic with valid tokens and with every token
/// revoked so far. Tokens are revoked in every way there is (logout with its
/// application_connect key, token deletion, suspension): before the failover, and while it
/// runs (the replica promoted, the old master not yet demoted: both take writes then). A
/// revocation counts once it has answered success; one that answers an error is retried after
/// the failover, as a client would. No revoked token is ever let through by either replica;
/// both recover without a restart, and a revocation after the failover holds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_traffic_loses_no_revocation() {
    let set = SentinelSet::start().await;
    let (w, b) = World::with_replica(&set.url()).await;
    let b = b.expect("a shared store");
    let addrs = vec![w.sidecar.addr, b.addr];
    let before = Revocation::each(&w, "before").await;
    let during = Revocation::each(&w, "during").await;
    let (_, late) = w.member("late").await;
    let after = Revocation::Logout {
        app: w
            .token(
                &late,
                json!({"token_name": "app", "scope": "application_connect"}),
            )
            .await,
        session: late,
    };
    let (_, keeper) = w.member("keeper").await;
    let valid = vec![w.admin.clone(), keeper];
    let mut everyone: Vec<String> = valid.clone();
    for r in before.iter().chain(&during).chain([&after]) {
        everyone.extend(r.tokens());
    }
    for &addr in &addrs {
        for token in &everyone {
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
    let revoke = |r: &Revocation| revoked.lock().unwrap().extend(r.tokens());

    // Before the failover: every revocation answers success.
    for (n, r) in before.iter().enumerate() {
        let via = if n % 2 == 0 { &w.sidecar } else { &b };
        assert!(
            r.run(&w, via, false).await,
            "a revocation before the failover"
        );
        revoke(r);
    }

    // During it: success means revoked for good; an error, that it did not happen.
    set.start_failover().await;
    let mut retry = Vec::new();
    let mut in_window = 0;
    for r in &during {
        in_window += usize::from(set.old_master_writable());
        if r.run(&w, &b, false).await {
            revoke(r);
        } else {
            retry.push(r);
        }
    }
    assert!(
        in_window > 0,
        "a revocation was made while both were masters"
    );
    set.await_demotion().await;

    // Both replicas recover by themselves: the valid tokens work again, and the revocations
    // that failed during the failover succeed when tried again, as does one made after it.
    for &addr in &addrs {
        for token in &valid {
            eventually("a valid token to work again after the failover", || async {
                status_of(addr, token).await == StatusCode::OK
            })
            .await;
        }
    }
    for r in retry.into_iter().chain([&after]) {
        eventually("a revocation after the failover to succeed", || {
            r.run(&w, &w.sidecar, true)
        })
        .await;
        revoke(r);
    }
    for &addr in &addrs {
        for token in after.tokens() {
            eventually(
                "the revocation after the failover to reach every replica",
                || async { status_of(addr, &token).await == StatusCode::UNAUTHORIZED },
            )
            .await;
        }
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
