//! a private Sentinel set, and `redis-cli`

use super::*;

const SERVICE: &str = "mymaster";

/// A private Sentinel set (the shared one serves other tests, which a failover would disturb):
/// a master, its replica and one sentinel, each on a free port, killed when dropped.
pub struct SentinelSet {
    /// The port of the server that was the master at start.
    pub master: u16,
    /// The port of the server that was its replica at start.
    pub replica: u16,
    sentinel: u16,
    /// The master's process (`None` once killed), then the replica's, then the sentinel's.
    servers: Vec<Option<RedisServer>>,
    dir: tempfile::TempDir,
}

impl SentinelSet {
    pub async fn start() -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        // A folder each: each may receive a copy of the other's data.
        for d in ["master", "replica"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let mut servers = vec![Some(
            RedisServer::start_in(master, &dir.path().join("master")).await,
        )];
        // The first sync at once, not after the default 5 s wait for more replicas.
        redis_cli(master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        servers.push(Some(
            RedisServer::start_replica(replica, master, &dir.path().join("replica")).await,
        ));
        servers.push(Some(
            RedisServer::start_sentinel(sentinel, master, SERVICE, dir.path()).await,
        ));
        let set = SentinelSet {
            master,
            replica,
            sentinel,
            servers,
            dir,
        };
        eventually(
            "the replica to be in sync and known to the sentinel",
            || set.replica_ready(),
        )
        .await;
        set
    }

    pub fn url(&self) -> String {
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
    pub fn named_master(&self) -> Option<u16> {
        let answer = redis_cli(
            self.sentinel,
            &["SENTINEL", "get-master-addr-by-name", SERVICE],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL FAILOVER` through `redis-cli`, retried while the sentinel is not ready for it
    /// yet; returns once the replica is a master. The old master is one too until the sentinel
    /// demotes it, some seconds later ([`SentinelSet::await_demotion`]).
    pub async fn start_failover(&self) {
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
    pub fn old_master_writable(&self) -> bool {
        redis_cli(self.master, &["ROLE"]).starts_with("master")
    }

    /// Waits until the sentinel names the new master and has made the old one its replica.
    pub async fn await_demotion(&self) {
        eventually("the old master to be demoted", || async {
            self.named_master() == Some(self.replica)
                && redis_cli(self.master, &["ROLE"]).starts_with("slave")
        })
        .await;
    }

    /// SIGKILL to the master, as in a crash.
    pub fn kill_master(&mut self) {
        if let Some(mut server) = self.servers[0].take() {
            server.kill();
        }
    }

    /// Waits until the sentinel has promoted the replica (after its `down-after-milliseconds`
    /// of 2 s and an election).
    pub async fn await_promotion(&self) {
        eventually("the sentinel to promote the replica", || async {
            self.named_master() == Some(self.replica)
                && redis_cli(self.replica, &["ROLE"]).starts_with("master")
        })
        .await;
    }

    /// Starts the killed master again, on its port and folder (empty: it keeps nothing on
    /// disk); the sentinel then makes it a replica of the new master.
    pub async fn restart_master(&mut self) {
        let server = RedisServer::start_in(self.master, &self.dir.path().join("master")).await;
        self.servers[0] = Some(server);
    }
}

/// Whether a write to the master on `port` is confirmed by a replica at once (`WAIT 1`).
pub async fn confirms_writes(port: u16) -> bool {
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
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs (install redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
