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
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    RedisConnectionInfo, RedisError, RedisFuture, TlsCertificates, TlsMode, Value,
};
use tokio::sync::watch;

use crate::config::{read_secret_file, ConfigError, RedisTopology, RedisUrl, StoreConfig};
use crate::store::StoreError;

/// Who Portcullis is to Redis and whom it trusts: the credentials (from the URL, or
/// `store.username` and `store.password_file`) and, under TLS, the CA bundle and client
/// certificate of `store.ca_file`, `store.cert_file` and `store.key_file`, read once at open.
pub(super) struct Access {
    username: Option<String>,
    password: Option<String>,
    certs: Option<TlsCertificates>,
}

// === impl Access ===

impl Access {
    /// Reads the files `cfg` names; a missing or empty one is an error naming its key.
    pub(super) fn read(cfg: &StoreConfig, url: &RedisUrl) -> Result<Access, StoreError> {
        let file_error = |e: ConfigError| StoreError::unavailable(e.to_string());
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| StoreError::unavailable(format!("{key}: {}: {e}", path.display())))
        };
        let password = match &cfg.password_file {
            Some(path) => Some(
                read_secret_file("store.password_file", path)
                    .map_err(file_error)?
                    .expose()
                    .to_owned(),
            ),
            None => url.password.as_ref().map(|p| p.expose().to_owned()),
        };
        let root_cert = cfg
            .ca_file
            .as_deref()
            .map(|p| read("store.ca_file", p))
            .transpose()?;
        let client_tls = match &cfg.client_cert {
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: read("store.cert_file", cert)?,
                client_key: read("store.key_file", key)?,
            }),
            None => None,
        };
        let certs = (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        });
        Ok(Access {
            username: cfg.username.clone().or_else(|| url.username.clone()),
            password,
            certs,
        })
    }
}

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
    pub(super) fn new(
        url: &RedisUrl,
        access: Access,
        timeout: Duration,
    ) -> Result<Connector, StoreError> {
        let build_error = |e: RedisError| StoreError::unavailable_because("redis client", e);
        let redis_info = RedisConnectionInfo {
            db: url.db,
            username: access.username.clone(),
            password: access.password.clone(),
            ..RedisConnectionInfo::default()
        };
        let addr = |(host, port): &(String, u16)| {
            if url.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        };
        let node = |hp: &(String, u16)| ConnectionInfo {
            addr: addr(hp),
            redis: redis_info.clone(),
        };
        // A client for one node, with the configured CA and client certificate under TLS.
        let client = |info: ConnectionInfo| match &access.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone()),
            None => Client::open(info),
        };
        match &url.topology {
            RedisTopology::Standalone => {
                let first = url
                    .nodes
                    .first()
                    .ok_or_else(|| StoreError::unavailable("store.url names no Redis host"))?;
                client(node(first))
                    .map(Connector::Standalone)
                    .map_err(build_error)
            }
            RedisTopology::Sentinel { service } => {
                let sentinels = url.nodes.iter().map(addr);
                let mut builder = SentinelClientBuilder::new(
                    sentinels,
                    service.clone(),
                    SentinelServerType::Master,
                )
                .map_err(build_error)?
                .set_client_to_redis_db(url.db);
                if url.tls {
                    builder = builder
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_tls_mode(TlsMode::Secure);
                    if let Some(certs) = &access.certs {
                        builder = builder
                            .set_client_to_sentinel_certificates(certs.clone())
                            .set_client_to_redis_certificates(certs.clone());
                    }
                }
                if let Some(user) = &access.username {
                    builder = builder.set_client_to_redis_username(user.clone());
                }
                if let Some(password) = &access.password {
                    builder = builder.set_client_to_redis_password(password.clone());
                }
                let client = builder.build().map_err(build_error)?;
                Ok(Connector::Sentinel(tokio::sync::Mutex::new(client)))
            }
            RedisTopology::Cluster => {
                let seeds: Vec<ConnectionInfo> = url.nodes.iter().map(node).collect();
                let mut builder = ClusterClient::builder(seeds.clone())
                    .connection_timeout(connect_deadline(timeout))
                    .response_timeout(timeout)
                    .retries(2);
                if let Some(certs) = &access.certs {
                    builder = builder.certs(certs.clone());
                }
                let cluster = builder.build().map_err(build_error)?;
                let seeds = seeds
                    .into_iter()
                    .map(client)
                    .collect::<Result<_, _>>()
                    .map_err(build_error)?;
                Ok(Connector::Cluster {
                    client: cluster,
                    seeds,
                })
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
