//! Connections to Redis: how to reach it ([`Connector`]: standalone, Sentinel or Cluster), and
//! the shared command connection ([`Slot`]), (re)established on demand under a deadline. See
//! the parent module doc, "Deadlines and reconnects".

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    RedisConnectionInfo, RedisError, RedisFuture, Value,
};
use tokio::sync::watch;

use crate::config::{RedisTopology, RedisUrl};
use crate::store::StoreError;

/// How to reach Redis: builds command connections and subscriber connections.
pub(super) enum Connector {
    Standalone(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for the subscriber: a `PUBLISH` on any cluster node
        /// reaches subscribers on every node.
        seeds: Vec<Client>,
    },
}

/// A command connection.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// The shared command connection, (re)established on demand.
pub(super) struct Slot {
    connector: Arc<Connector>,
    config: AsyncConnectionConfig,
    connect_deadline: Duration,
    state: Mutex<SlotState>,
}

enum SlotState {
    Idle {
        generation: u64,
    },
    /// A connect task runs; it sends `Some(error)` on failure, `None` on success.
    Connecting {
        done: watch::Receiver<Option<StoreError>>,
    },
    Ready {
        generation: u64,
        conn: Conn,
    },
}

// === impl Connector ===

impl Connector {
    pub(super) fn new(url: &RedisUrl, timeout: Duration) -> Result<Connector, StoreError> {
        let build_error = |e: RedisError| StoreError::unavailable_because("redis client", e);
        let redis_info = RedisConnectionInfo {
            db: url.db,
            username: url.username.clone(),
            password: url.password.as_ref().map(|p| p.expose().to_owned()),
            ..RedisConnectionInfo::default()
        };
        let node = |(host, port): &(String, u16)| ConnectionInfo {
            addr: if url.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            },
            redis: redis_info.clone(),
        };
        match &url.topology {
            RedisTopology::Standalone => {
                let first = url
                    .nodes
                    .first()
                    .ok_or_else(|| StoreError::unavailable("store.url names no Redis host"))?;
                Client::open(node(first))
                    .map(Connector::Standalone)
                    .map_err(build_error)
            }
            RedisTopology::Sentinel { service } => {
                let sentinels = url
                    .nodes
                    .iter()
                    .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
                let mut builder = SentinelClientBuilder::new(
                    sentinels,
                    service.clone(),
                    SentinelServerType::Master,
                )
                .map_err(build_error)?
                .set_client_to_redis_db(url.db);
                if let Some(user) = &url.username {
                    builder = builder.set_client_to_redis_username(user.clone());
                }
                if let Some(password) = &url.password {
                    builder = builder.set_client_to_redis_password(password.expose().to_owned());
                }
                let client = builder.build().map_err(build_error)?;
                Ok(Connector::Sentinel(tokio::sync::Mutex::new(client)))
            }
            RedisTopology::Cluster => {
                let seeds: Vec<ConnectionInfo> = url.nodes.iter().map(node).collect();
                let client = ClusterClient::builder(seeds.clone())
                    .connection_timeout(connect_deadline(timeout))
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(build_error)?;
                let seeds = seeds
                    .into_iter()
                    .map(Client::open)
                    .collect::<Result<_, _>>()
                    .map_err(build_error)?;
                Ok(Connector::Cluster { client, seeds })
            }
        }
    }

    async fn connect(&self, config: &AsyncConnectionConfig) -> Result<Conn, RedisError> {
        match self {
            Connector::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Single),
            Connector::Sentinel(sentinel) => {
                let master = sentinel.lock().await.async_get_client().await?;
                master
                    .get_multiplexed_async_connection_with_config(config)
                    .await
                    .map(Conn::Single)
            }
            Connector::Cluster { client, .. } => {
                client.get_async_connection().await.map(Conn::Cluster)
            }
        }
    }

    pub(super) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        match self {
            Connector::Standalone(client) => client.get_async_pubsub().await,
            Connector::Sentinel(sentinel) => {
                let master = sentinel.lock().await.async_get_client().await?;
                master.get_async_pubsub().await
            }
            Connector::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match seed.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::ClientError, "no cluster seed nodes"))
                }))
            }
        }
    }
}

// === impl Conn ===

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

// === impl Slot ===

impl Slot {
    pub(super) fn new(connector: Arc<Connector>, command_timeout: Duration) -> Slot {
        let deadline = connect_deadline(command_timeout);
        Slot {
            connector,
            config: AsyncConnectionConfig::new().set_connection_timeout(deadline),
            connect_deadline: deadline,
            state: Mutex::new(SlotState::Idle { generation: 0 }),
        }
    }

    /// The current connection with its generation, connecting first if there is none. Waits
    /// for a connect in progress rather than starting another; the caller's deadline bounds
    /// the wait.
    pub(super) async fn get(self: &Arc<Self>) -> Result<(u64, Conn), StoreError> {
        loop {
            let mut done = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                match &*state {
                    SlotState::Ready { generation, conn } => {
                        return Ok((*generation, conn.clone()))
                    }
                    SlotState::Connecting { done, .. } => done.clone(),
                    SlotState::Idle { generation } => {
                        let generation = generation + 1;
                        let (tx, rx) = watch::channel(None);
                        *state = SlotState::Connecting { done: rx.clone() };
                        // A task of its own, so that a caller giving up at its deadline does
                        // not abandon a connect that others are waiting for.
                        tokio::spawn(self.clone().connect(generation, tx));
                        rx
                    }
                }
            };
            if done.changed().await.is_err() {
                return Err(StoreError::unavailable("redis connect abandoned"));
            }
            let failure = done.borrow().clone();
            if let Some(error) = failure {
                return Err(error);
            }
        }
    }

    async fn connect(self: Arc<Self>, generation: u64, done: watch::Sender<Option<StoreError>>) {
        let outcome =
            tokio::time::timeout(self.connect_deadline, self.connector.connect(&self.config)).await;
        let failure = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(Ok(conn)) => {
                    *state = SlotState::Ready { generation, conn };
                    None
                }
                Ok(Err(e)) => {
                    *state = SlotState::Idle { generation };
                    Some(StoreError::unavailable_because("redis connect", e))
                }
                Err(_) => {
                    *state = SlotState::Idle { generation };
                    Some(StoreError::unavailable(format!(
                        "redis connect: no answer within {:?}",
                        self.connect_deadline
                    )))
                }
            }
        };
        let _ = done.send(failure);
    }

    /// Drops the connection of `generation`, if it is still the current one.
    pub(super) fn reset(&self, generation: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let SlotState::Ready { generation: g, .. } = &*state {
            if *g == generation {
                *state = SlotState::Idle { generation };
            }
        }
    }
}

/// How long one connect may take: longer than one command, since it includes TLS, `AUTH`
/// and `SELECT`, but short enough that a dead address is retried soon.
pub(super) fn connect_deadline(command_timeout: Duration) -> Duration {
    (command_timeout * 4).max(Duration::from_secs(2))
}

/// Whether `e` means the connection is unusable (so the next command reconnects).
pub(super) fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::ReadOnly
}

/// The store's error for what Redis answered a command with: a reply of the wrong type means
/// a corrupt record, anything else an unavailable store.
pub(super) fn store_error(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::TypeError => StoreError::corrupt_because("redis reply", e),
        _ => StoreError::unavailable_because("redis command", e),
    }
}
