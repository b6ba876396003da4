//! The Redis fault matrix (issue 14): what two Portcullis replicas sharing one store do while
//! Redis misbehaves, one fault per test. Each runs the real `portcullis serve` twice (so the
//! load generator's runtime does not disturb their latencies) with `store.command_timeout =
//! 500ms`, under steady traffic (valid tokens, bogus ones, one lacking the route's scope,
//! and every token revoked so far) and a revocation every 200 ms through each replica in turn
//! (logouts with an application_connect key, token deletions, suspensions), and prints one
//! `FAULT-ROW|…` line; see `driver` for what is counted and asserted.
//!
//! They inject faults and take seconds each, so they are ignored in the regular suite:
//! `benches/faults.sh` runs them one at a time and makes the table
//! (`cargo test --test it faults:: -- --ignored --test-threads=1 --nocapture`).
//!
//! Every Redis here is private, on free ports. The standalone ones persist every write
//! (append-only file, `appendfsync always`), allow `DEBUG` from localhost, and evict nothing
//! (`maxmemory-policy noeviction`, which Portcullis requires).

use std::time::{Duration, Instant};

use crate::common::*;

mod driver;
mod partition;

use driver::{run_fault, Window};
use partition::Partition;

/// How long the faults that have a length last (the kill's outage, the hangs, the partition,
/// the full memory).
const OUTAGE: Duration = Duration::from_secs(5);

/// A private standalone Redis: see the module doc.
struct Standalone {
    port: u16,
    server: RedisServer,
    dir: tempfile::TempDir,
}

impl Standalone {
    const ARGS: [&str; 8] = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--enable-debug-command",
        "local",
        "--maxmemory-policy",
        "noeviction",
    ];

    async fn start() -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = RedisServer::start_in_with(port, dir.path(), &Self::ARGS).await;
        Standalone { port, server, dir }
    }

    /// Starts it again on its port and files (after a kill).
    async fn restart(&mut self) {
        self.server = RedisServer::start_in_with(self.port, self.dir.path(), &Self::ARGS).await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The master crashes (SIGKILL) and is started again 5 s later on the same files: nothing
/// answered success that the append-only file does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn standalone_master_killed_and_restarted() {
    let mut redis = Standalone::start().await;
    let url = redis.url();
    let fault = async {
        redis.server.kill();
        let began = Instant::now();
        tokio::time::sleep(OUTAGE).await;
        redis.restart().await;
        Window::since(began)
    };
    run_fault("kill -9 master, restart", &url, &random_key_prefix(), fault).await;
}

/// Redis hangs: stopped (SIGSTOP) for 5 s, its connections open, then continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn standalone_stopped_and_continued() {
    let redis = Standalone::start().await;
    let fault = async {
        redis.server.signal("STOP");
        let began = Instant::now();
        tokio::time::sleep(OUTAGE).await;
        redis.server.signal("CONT");
        Window::since(began)
    };
    run_fault(
        "SIGSTOP 5 s, SIGCONT",
        &redis.url(),
        &random_key_prefix(),
        fault,
    )
    .await;
}

/// Redis busy in one command for 5 s (`DEBUG SLEEP 5`): it answers nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn standalone_debug_sleep() {
    let redis = Standalone::start().await;
    let port = redis.port;
    let fault = async {
        let began = Instant::now();
        let slept = tokio::task::spawn_blocking(move || redis_cli(port, &["DEBUG", "SLEEP", "5"]))
            .await
            .unwrap();
        assert_eq!(slept.trim(), "OK", "DEBUG SLEEP");
        Window::since(began)
    };
    run_fault("DEBUG SLEEP 5", &redis.url(), &random_key_prefix(), fault).await;
}

/// Every client paused for 5 s (`CLIENT PAUSE 5000 ALL`): commands queue, then all run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn standalone_client_pause() {
    let redis = Standalone::start().await;
    let fault = async {
        let began = Instant::now();
        let paused = redis_cli(redis.port, &["CLIENT", "PAUSE", "5000", "ALL"]);
        assert_eq!(paused.trim(), "OK", "CLIENT PAUSE");
        tokio::time::sleep_until((began + OUTAGE).into()).await;
        Window::since(began)
    };
    run_fault(
        "CLIENT PAUSE 5000 ALL",
        &redis.url(),
        &random_key_prefix(),
        fault,
    )
    .await;
}

/// A Sentinel failover asked for (`SENTINEL FAILOVER`): cleared once the old master has been
/// made the new one's replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn sentinel_failover_command() {
    let set = SentinelSet::start().await;
    let fault = async {
        let began = Instant::now();
        set.start_failover().await;
        set.await_demotion().await;
        Window::since(began)
    };
    run_fault(
        "Sentinel: SENTINEL FAILOVER",
        &set.url(),
        &random_key_prefix(),
        fault,
    )
    .await;
}

/// The Sentinel master crashes (SIGKILL); the sentinel promotes the replica (after its
/// `down-after-milliseconds` of 2 s); the old master is started again at once (empty: these
/// keep nothing on disk) and the sentinel makes it the new master's replica. Cleared at that
/// restart; writes wait for a replica (`WAIT 1`), so they work again once it has synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn sentinel_master_killed() {
    let mut set = SentinelSet::start().await;
    let url = set.url();
    let fault = async {
        set.kill_master();
        let began = Instant::now();
        set.await_promotion().await;
        set.restart_master().await;
        Window::since(began)
    };
    run_fault(
        "Sentinel: kill -9 master",
        &url,
        &random_key_prefix(),
        fault,
    )
    .await;
}

/// A Cluster master crashes (SIGKILL): the one serving the invalidation channel's slot, so
/// publishing fails too until its replica is promoted (after `cluster-node-timeout`, 2 s).
/// Cleared once the cluster is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn cluster_master_killed() {
    let mut cluster = RedisCluster::start().await;
    let url = cluster.url();
    let prefix = random_key_prefix();
    let channel = format!("{prefix}invalidate");
    let fault = async {
        let victim = cluster
            .master_of(&channel)
            .expect("a master serves the channel");
        cluster.kill(victim);
        let began = Instant::now();
        cluster.await_promotion(&channel).await;
        Window::since(began)
    };
    run_fault("Cluster: kill -9 master", &url, &prefix, fault).await;
}

/// Redis full: `maxmemory` set just above what it uses, filled until it refuses writes with
/// OOM (`noeviction`), then lowered by 1 MiB so that what a revocation deletes cannot make
/// room, for 5 s; cleared by lifting the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn standalone_out_of_memory() {
    let redis = Standalone::start().await;
    let fault = async {
        let began = fill(&redis.url()).await;
        tokio::time::sleep(OUTAGE).await;
        let lifted = redis_cli(redis.port, &["CONFIG", "SET", "maxmemory", "0"]);
        assert_eq!(lifted.trim(), "OK");
        Window::since(began)
    };
    let name = "maxmemory reached (noeviction)";
    run_fault(name, &redis.url(), &random_key_prefix(), fault).await;
}

/// Sets `maxmemory` 2 MiB above what the Redis at `url` uses, writes junk until it refuses a
/// write with OOM, then lowers the limit by 1 MiB; when the first write was refused.
async fn fill(url: &str) -> Instant {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let memory: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory names used_memory");
    let limit = used + 2 * 1024 * 1024;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query_async(&mut conn)
        .await
        .unwrap();
    let junk = vec![b'x'; 64 * 1024];
    for n in 0..1000 {
        let set: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(format!("junk:{n}"))
            .arg(&junk)
            .query_async(&mut conn)
            .await;
        match set {
            Ok(()) => {}
            Err(e) if e.code() == Some("OOM") => {
                let full = Instant::now();
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg(limit - 1024 * 1024)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                return full;
            }
            Err(e) => panic!("filling Redis: {e}"),
        }
    }
    panic!("Redis never refused a write");
}

/// The network between both replicas and Redis cut for 5 s (a TCP proxy in this process that
/// holds every byte, both ways, on open and new connections), then whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault matrix: benches/faults.sh"]
async fn network_partition() {
    let redis = Standalone::start().await;
    let proxy = Partition::start(([127, 0, 0, 1], redis.port).into()).await;
    let fault = async {
        proxy.cut();
        let began = Instant::now();
        tokio::time::sleep(OUTAGE).await;
        proxy.heal();
        Window::since(began)
    };
    let through = format!("redis://{}", proxy.addr);
    run_fault("network partition", &through, &random_key_prefix(), fault).await;
}
