//! a private Redis Cluster

use super::*;

/// How long a cluster node may be unreachable before the others count it failed (and its
/// replica takes over), in milliseconds.
const NODE_TIMEOUT_MS: &str = "2000";

/// A private Redis Cluster of three masters and a replica each (the shared one serves other
/// tests, which killing a master would disturb), each node on a free port whose cluster bus
/// port (port + 10000) is free too, keeping nothing on disk but its `nodes.conf`; killed when
/// dropped.
pub struct RedisCluster {
    /// Every node's port, the three masters first (as `redis-cli --cluster create` was told).
    pub ports: Vec<u16>,
    servers: Vec<Option<RedisServer>>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..6).map(|_| free_cluster_port()).collect();
        let mut servers = Vec::new();
        for &port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                "--repl-diskless-sync-delay",
                "0",
            ];
            servers.push(Some(
                RedisServer::start_in_with(port, &node_dir, &args).await,
            ));
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            ports,
            servers,
            _dir: dir,
        };
        eventually(
            "the cluster to be healthy, every replica in sync",
            || async { cluster.healthy() },
        )
        .await;
        cluster
    }

    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.ports[..3]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Whether every live node sees a healthy cluster of three masters, and every live
    /// replica's link to its master is up.
    fn healthy(&self) -> bool {
        self.live().all(|port| {
            let info = redis_cli(port, &["CLUSTER", "INFO"]);
            let replication = redis_cli(port, &["INFO", "replication"]);
            info.contains("cluster_state:ok")
                && info.contains("cluster_size:3")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        })
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.servers)
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| *p)
    }

    /// The port of the master serving the slot of `key`, as a live node sees it now.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let asked = self.live().next()?;
        let slot: u16 = redis_cli(asked, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .ok()?;
        // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges>…`
        redis_cli(asked, &["CLUSTER", "NODES"])
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2)?;
                if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                    return None;
                }
                let serves = fields.get(8..)?.iter().any(|range| {
                    let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                    match (ends.next().flatten(), ends.next()) {
                        (Some(from), Some(Some(to))) => (from..=to).contains(&slot),
                        (Some(only), None) => only == slot,
                        _ => false,
                    }
                });
                serves.then(|| fields[1].split(['@', ':']).nth(1)?.parse().ok())?
            })
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node on `port`.
    pub fn signal(&self, port: u16, signal: &str) {
        let at = self.ports.iter().position(|p| *p == port).expect("a node");
        self.servers[at]
            .as_ref()
            .expect("a live node")
            .signal(signal);
    }

    /// SIGKILL to the node on `port`, as in a crash.
    pub fn kill(&mut self, port: u16) {
        let at = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut server) = self.servers[at].take() {
            server.kill();
        }
    }

    /// Waits until the live nodes agree that the cluster is healthy again and a live master
    /// serves the slot of `key` (the killed master's replica, promoted).
    pub async fn await_promotion(&self, key: &str) {
        eventually(
            "a replica to take over the killed master's slots",
            || async {
                let serving = self.master_of(key);
                serving.is_some_and(|p| self.live().any(|l| l == p))
                    && self.live().all(|port| {
                        redis_cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    })
            },
        )
        .await;
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}
