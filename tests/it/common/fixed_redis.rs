//! the shared Sentinel set and Redis Cluster that `scripts/test` starts, and key clean-up on
//! every kind of Redis

use super::*;

/// The shared Sentinel set: master `127.0.0.1:6390`, replica `:6391`, one sentinel on `:26390`
/// watching `mymaster` (see `scripts/test`, which names the same ports).
pub const SENTINEL: &str = "redis+sentinel://127.0.0.1:26390/mymaster";

/// The shared Redis Cluster: masters on `127.0.0.1:7380`-`7382`, a replica each on `7383`-`7385`.
pub const CLUSTER: &str = "redis+cluster://127.0.0.1:7380,127.0.0.1:7381,127.0.0.1:7382";

/// Every port the shared sets use, the cluster bus ports (port + 10000) included:
/// [`dead_port`] and [`free_port`] never hand one out.
pub const RESERVED_PORTS: &[u16] = &[
    6390, 6391, 26390, 7380, 7381, 7382, 7383, 7384, 7385, 17380, 17381, 17382, 17383, 17384, 17385,
];

/// The `redis://` address of every server that holds writable keys behind `url`: the server of
/// a `redis://` URL, the master a sentinel names, every master of a cluster. Empty for
/// `memory://` or when nothing answers.
pub async fn redis_masters(url: &str) -> Vec<String> {
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        // `sentinel[,sentinel…]/service[/db]`: the first sentinel is asked.
        let mut parts = rest.split('/');
        let sentinel = parts.next().unwrap_or("").split(',').next().unwrap_or("");
        let service = parts.next().unwrap_or("");
        let Some(mut conn) = connect(&format!("redis://{sentinel}")).await else {
            return Vec::new();
        };
        let addr: Result<(String, u16), _> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(service)
            .query_async(&mut conn)
            .await;
        return addr
            .map(|(host, port)| vec![format!("redis://{host}:{port}")])
            .unwrap_or_default();
    }
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        for seed in rest.split(',') {
            let Some(mut conn) = connect(&format!("redis://{seed}")).await else {
                continue;
            };
            let nodes: Result<String, _> = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await;
            let Ok(nodes) = nodes else { continue };
            // `<id> <ip:port@bus> <flags> ...`, one node a line.
            return nodes
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split(' ');
                    let addr = fields.nth(1)?.split('@').next()?;
                    let flags = fields.next()?;
                    (flags.split(',').any(|f| f == "master") && !flags.contains("fail"))
                        .then(|| format!("redis://{addr}"))
                })
                .collect();
        }
        return Vec::new();
    }
    if url.starts_with("redis://") {
        return vec![url.to_owned()];
    }
    Vec::new()
}

async fn connect(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    tokio::time::timeout(BOUND, client.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()
}

/// Deletes every key under `prefix` behind `url` (`redis://`, `redis+sentinel://`: on the
/// master; `redis+cluster://`: on every master). Keys on a server that does not answer are
/// left; `memory://` has nothing to delete.
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    for server in redis_masters(url).await {
        let Some(mut conn) = connect(&server).await else {
            continue;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        // One DEL per key: on a cluster node, a DEL of keys in several slots is refused.
        for key in keys {
            let _: Result<i64, _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
        }
    }
}

/// The keys matching the `KEYS` pattern `pattern` behind `url`, on every master, sorted.
pub async fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    let mut all = Vec::new();
    for server in redis_masters(url).await {
        let mut conn = connect(&server).await.expect("a master answers");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        all.extend(keys);
    }
    all.sort();
    all
}
