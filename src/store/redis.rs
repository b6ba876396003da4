//! The Redis backend: standalone (`redis://`, `rediss://`), Sentinel (`redis+sentinel://`) and
//! Cluster (`redis+cluster://`).
//!
//! Needs Redis 6.2 or later (`GETDEL`, `SET … PXAT`).
//!
//! This file holds [`RedisStore`] and its command plumbing (one command under its deadline);
//! the rest is split by concern:
//!
//! - `conn`: reaching Redis (standalone, Sentinel, Cluster) and the shared command connection;
//! - `pubsub`: publishing invalidations and the subscriber task;
//! - `script`: the Lua scripts and `EVALSHA`;
//! - `record`: JSON records, read one or many, changed by compare-and-replace;
//! - `session`: what a key id resolves to for the key cache, in one round trip (two on a
//!   Cluster);
//! - `index`: the uniqueness indexes (claim, take over, release);
//! - `directory`: the index behind the user directory, and its queries;
//! - `users`, `orgs` (with memberships), `api_keys`, `values` (counters, single-use values,
//!   claims): the store's operations on each kind of data.
//!
//! # Key layout
//! Every key starts with `store.key_prefix`; the names, and the table of what each holds, are
//! in [`super::keys`].
//!
//! # Atomicity
//! The `{u:…}` and `{o:…}` hash tags keep a user's (an organization's) keys in one Cluster
//! slot, so that the steps touching several of them run as one Lua script. (A `key_prefix`
//! with a `{…}` of its own puts every key in one slot, which is also correct.) Steps across
//! slots are single-key atomic commands with compensation on failure:
//!
//! - Uniqueness indexes (`email:`, `username:`, `org_name:`, `default_org`, `oidc:`) are claimed with
//!   `SET NX` after the record they point to is written, and released with a compare-and-delete.
//!   So an index entry is valid only when its record exists and still has that value; a claim
//!   that finds an invalid entry takes it over with a compare-and-set. Of concurrent claims
//!   exactly one wins, and a crash between steps leaves at worst an invalid entry that the next
//!   claim reclaims, never a lock-out. Lookups through an index check the record too.
//! - Token names are claimed the same way in `key_names`, inside the script that adds the key
//!   id to the user's set. Records of expired keys vanish by themselves; the ids they leave in
//!   `keys` are dropped when [`RedisStore::keys_of`] meets them.
//! - Changes of some fields of a user or key record ([`RedisStore::modify_user`],
//!   [`RedisStore::modify_key`]) are a compare-and-replace of the whole JSON record: a script
//!   writes the new value only if the record still holds the bytes the change was computed
//!   from (the bytes are the version); otherwise the change is recomputed on the fresh record,
//!   at most 32 times. A writer never puts back a stale copy of fields it did not mean to change.
//!
//! Each operation that touches more than one key, with its slots (`U` the user's `{u:…}`, `O`
//! the organization's `{o:…}`, `*` a key of its own slot), in the order of its steps:
//!
//! | operation | steps | why it is safe |
//! |---|---|---|
//! | `create_user`, `create_org` | record `SET NX` (U/O); each index claim (`*`); `SADD users`/`orgs` (`*`) | the record is written first, and an index is valid only while its record says so; a failed step releases the claims made and deletes the record |
//! | `update_user` | record `SET XX` (U); claim new indexes (`*`); release old ones (`*`) | as above; a refused claim restores the old record and releases the new claims |
//! | `update_org` | record `SET XX` (O); claim the new name (`*`); release the old one (`*`) | as `update_user` |
//! | `delete_org` | `SREM orgs`; release the indexes (`*`); `remove_member` per member; one `DEL` of the record and member set (O) | memberships go before the record; after a crash part-way, deleting again finishes |
//! | `link_oidc` | `HSETNX` the user's link (U); claim the subject's index (`*`) | the index is valid only while the user's side names the subject; a lost claim removes the side this call wrote |
//! | `delete_user` | `SREM users`; release the indexes (`*`); `delete_keys_of`; `remove_member` per organization; one `DEL` of the rest (U) | the keys die before the user record, so no session outlives it; after a crash part-way the user is findable by id only, and deleting it again finishes |
//! | `insert_key` | record `SET NX PXAT` (`*`); script: `SADD keys`, claim the name in `key_names` (U, one slot) | a failed attach deletes the record; a name held by an invalid key is taken over |
//! | `delete_key` | `DEL` record (`*`); script: `SREM keys`, `HDEL` its name (U) | the record goes first: the key stops working at once; the rest is bookkeeping, redone by the next `keys_of` or claim |
//! | `delete_keys_of` | `SMEMBERS keys` (U); `DEL` each record (`*`); script: `SREM` those ids, `HDEL` their names (U) | only the ids deleted leave the list: a key stored meanwhile stays listed for the next revocation (a login racing a password change keeps its session, as if it had come just after) |
//! | `keys_of` | `SMEMBERS keys` (U); `GET` each record (`*`); `SREM` the ids without one (U) | reads; the clean-up only drops ids whose record has expired |
//! | `session` (a key cache miss) | standalone, Sentinel: one script reads the key record (`*`) and, by the user id in it, the user, `orgs` and memberships (U); Cluster: `GET` the key record (`*`); script: user, `orgs`, memberships (U) | reads; on one Redis the script is one snapshot; on a Cluster, as the separate reads were before (a key deleted between the steps is caught by the cache's invalidation sequence) |
//! | `add_member` | script: membership record, `SADD orgs` (U, one slot); `SADD members` (O) | `members_of` reads each membership record and skips ids without one, so the two sets may disagree for a moment without anyone gaining a role |
//! | `remove_member` | script: `DEL` membership, `SREM orgs` (U); `SREM members` (O) | the record, which is what grants roles, goes first |
//! | `modify_user`, `modify_key` | compare-and-replace of one record (one key) | see above |
//! | every user write (`create_user`, `update_user`, `modify_user` when it changes a directory field, `delete_user`) | then: `GET` the record (U); script: move the directory entry if still as read (`{dir}`); `GET` the record again (U), from the top if it changed | see `directory`: the last sync leaves the entry as the record is; a crash between leaves one entry stale, which readers check against the record |
//! | counters, single-use values, claims | one key, one command or script each | — |
//!
//! Invalidations (`PUBLISH` on the prefix's channel) are not stored: on a Cluster the command
//! goes to the node of the channel's slot and Redis forwards it to every node over the cluster
//! bus, so a subscriber on any node receives it, a little after the publisher has its answer.
//! A replica must therefore drop what it revoked from its own cache itself, before answering,
//! rather than wait for its own message to come back.
//!
//! # Deadlines and reconnects
//! Every command runs under its own `tokio::time::timeout` of `store.command_timeout`: the
//! client's own timeouts do not bound reconnects. Commands share one multiplexed connection
//! (a cluster connection for Cluster); a command that fails with a connection error or misses
//! its deadline drops it, and the next command starts a new connect in a background task
//! (bounded by four command deadlines, at least 2 s) that concurrent commands wait on until their own deadline.
//! A Sentinel store asks the sentinels for the master on every connect, and drops the
//! connection on `READONLY`, so it follows a failover.
//!
//! # Failover
//! Redis replicates asynchronously, so a write a master has acknowledged can still be lost
//! when a replica takes over. With Sentinel the window is long: a failover promotes the
//! replica, and the old master keeps taking writes until the sentinel demotes it, some seconds
//! later, and then replaces its data with the new master's. A revocation written there in
//! between would be answered success and then undone. So on `redis+sentinel://` every store
//! operation that writes (all but the counters, whose loss only moves a rate limit for one
//! window) is followed by `WAIT 1` on the connection it used, and answers
//! success only once a replica has its writes; otherwise it fails with
//! [`StoreError::Unavailable`] (a 5xx), and the client tries again, reaching the new master.
//! During a failover, the old master has no replica left, so nothing written there is
//! confirmed. This needs a replica: with none reachable, writes fail (reads go on). With more
//! than one replica per master, one that still follows the old master for a moment could
//! confirm a write that is then lost: run one replica per master, or set
//! `min-replicas-to-write` on the masters to the number of replicas. Standalone and Cluster
//! stores do not wait (a Cluster's automatic failover after a master is lost may drop the
//! writes of its last moments, within the replication delay).
//!
//! The invalidation subscriber is a task of its own with its own connection. It re-subscribes
//! with backoff (50 ms doubling to 2 s) when the connection drops or stops answering `PING`,
//! and sends [`Invalidation::All`] after every subscription. It numbers its subscriptions
//! ([`RedisStore::subscription`]; none while it has lost one), so that the key cache serves
//! only what it read under the live one.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{Cmd, FromRedisValue, RedisError};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::keys::Keys;
use super::{Invalidation, StoreError};
use crate::config::{RedisTopology, RedisUrl, StoreConfig, StoreUrl};
use crate::metrics::Metrics;

mod api_keys;
mod conn;
mod directory;
mod durable;
mod health;
mod index;
mod orgs;
mod pubsub;
mod record;
mod script;
mod session;
mod users;
mod values;

use conn::{breaks_connection, store_error, Access, Connector, Slot};
pub use health::HealthReport;
use health::{Admit, Health};
use pubsub::subscribe_forever;
use script::Scripts;
use session::UserKeys;

/// The store on Redis; see the module doc.
pub(super) struct RedisStore {
    keys: Keys,
    /// The form of a user's key names, for the session script.
    user_keys: UserKeys,
    slot: Arc<Slot>,
    timeout: Duration,
    events: broadcast::Sender<Invalidation>,
    subscriber: AbortHandle,
    /// The number of the live subscription to the invalidation channel, 0 while there is none.
    subscription: Arc<AtomicU64>,
    scripts: Scripts,
    shown: String,
    health: Health,
    metrics: Arc<Metrics>,
    /// Whether writes wait for a replica (`redis+sentinel://`): see the module doc, "Failover".
    confirm_writes: bool,
    /// Whether this replica has seen the directory index complete (see `directory`).
    directory_built: AtomicBool,
    /// Whether Redis is a Cluster, where one script cannot read keys of several slots.
    cluster: bool,
}

/// Settles a command's [`Admit`] with [`Health`]: answered, timed out, failed quickly, or
/// abandoned when the command's future is dropped first (so a dropped probe does not keep
/// the store down).
struct Verdict<'a> {
    health: &'a Health,
    admitted: Option<Admit>,
}

impl<'a> Verdict<'a> {
    fn new(health: &'a Health, admitted: Admit) -> Self {
        Verdict {
            health,
            admitted: Some(admitted),
        }
    }

    fn settle(mut self, how: Settled) {
        if let Some(admitted) = self.admitted.take() {
            match how {
                Settled::Answered => self.health.answered(&admitted),
                Settled::TimedOut => self.health.failed(&admitted),
                Settled::Failed => self.health.failed_fast(&admitted),
            }
        }
    }
}

/// How a command ended, for [`Health`].
enum Settled {
    /// Redis answered (an error reply included).
    Answered,
    /// No answer within the deadline: Redis may hang, so it is marked down.
    TimedOut,
    /// The connection failed quickly (refused, reset): the next command may try again.
    Failed,
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        if let Some(admitted) = self.admitted.take() {
            self.health.abandoned(&admitted);
        }
    }
}

// === impl RedisStore ===

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (prefix {:?})", self.shown, self.keys.prefix())
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl RedisStore {
    /// Builds the clients and starts the subscriber; does no I/O here.
    pub(super) fn open(
        cfg: &StoreConfig,
        url: &RedisUrl,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore, StoreError> {
        let (prefix, timeout) = (cfg.key_prefix.as_str(), cfg.command_timeout);
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::unavailable_because(
                "the Redis store must be opened inside a Tokio runtime",
                e,
            )
        })?;
        let connector = Arc::new(Connector::new(url, Access::read(cfg, url)?, timeout)?);
        let slot = Arc::new(Slot::new(connector.clone(), timeout));
        let keys = Keys::new(prefix);
        let events = broadcast::channel(capacity).0;
        let subscription = Arc::new(AtomicU64::new(0));
        let subscriber = runtime
            .spawn(subscribe_forever(
                connector,
                keys.channel(),
                events.clone(),
                subscription.clone(),
                timeout,
            ))
            .abort_handle();
        Ok(RedisStore {
            user_keys: UserKeys::new(&keys),
            keys,
            slot,
            timeout,
            events,
            subscriber,
            subscription,
            scripts: Scripts::new(),
            shown: StoreUrl::Redis(url.clone()).to_string(),
            health: Health::new(),
            metrics,
            confirm_writes: matches!(url.topology, RedisTopology::Sentinel { .. }),
            directory_built: AtomicBool::new(false),
            cluster: matches!(url.topology, RedisTopology::Cluster),
        })
    }

    /// Runs one command under the deadline; see the module doc.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.attempt(cmd).await?.map_err(store_error)
    }

    /// Runs one command under the deadline; the outer error is a failure to get an answer,
    /// the inner one the answer Redis gave. While Redis is marked down (see [`health`]), fails
    /// at once.
    async fn attempt<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Result<Result<T, RedisError>, StoreError> {
        let admitted = self.health.admit();
        if admitted == Admit::FailFast {
            return Err(StoreError::unavailable(format!(
                "redis gave no answer lately; failing at once for up to {:?}",
                health::BACKOFF
            )));
        }
        let verdict = Verdict::new(&self.health, admitted);
        let started = std::time::Instant::now();
        let used = AtomicU64::new(0);
        // The client's own deadline (a cluster connection has one, as long as ours) may pass
        // just before ours: that too is a command that got no answer.
        let client_timed_out = AtomicBool::new(false);
        let op = async {
            let (generation, mut conn) = self.slot.get().await?;
            used.store(generation, Ordering::Relaxed);
            durable::note(generation);
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if breaks_connection(&e) => {
                    client_timed_out.store(e.is_timeout(), Ordering::Relaxed);
                    self.slot.reset(generation);
                    Err(store_error(e))
                }
                answer => Ok(answer),
            }
        };
        let mut timed_out = false;
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => {
                timed_out = true;
                // A connection that stops answering may be half-open; start afresh.
                self.slot.reset(used.load(Ordering::Relaxed));
                Err(StoreError::unavailable(format!(
                    "no answer from redis within {:?}",
                    self.timeout
                )))
            }
        };
        let timed_out = timed_out || client_timed_out.load(Ordering::Relaxed);
        verdict.settle(match (&result, timed_out) {
            (Ok(_), _) => Settled::Answered,
            (Err(_), true) => Settled::TimedOut,
            // Refused or reset: that was quick, and says nothing about the next connection.
            (Err(_), false) => Settled::Failed,
        });
        self.metrics
            .store_command(command_name(cmd), started.elapsed());
        result
    }

    /// How Redis looks to the command path now.
    pub(super) fn health(&self) -> HealthReport {
        self.health.report()
    }

    /// The members of the set `set`.
    async fn members(&self, set: &str) -> Result<Vec<String>, StoreError> {
        self.query(redis::cmd("SMEMBERS").arg(set)).await
    }

    /// Deletes keys one command each (they may live in different slots); how many existed.
    async fn delete(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        try_join_all(
            keys.iter()
                .map(|k| async move { self.query::<i64>(redis::cmd("DEL").arg(k)).await }),
        )
        .await
        .map(|n| n.into_iter().map(|n| n > 0).collect())
    }

    /// Runs a compensation step: its failure is logged, not returned, since the caller is
    /// already returning the error that made it necessary.
    async fn compensate(
        &self,
        what: &str,
        step: impl std::future::Future<Output = Result<(), StoreError>>,
    ) {
        if let Err(e) = step.await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                step = what,
                "store: compensation failed"
            );
        }
    }

    /// Redis's `maxmemory-policy` (`None`: Redis gave no value), or Redis's refusal to tell
    /// (`CONFIG` renamed or refused, as on some managed services).
    pub(super) async fn eviction_policy(
        &self,
    ) -> Result<Result<Option<String>, String>, StoreError> {
        let cmd = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .clone();
        Ok(match self.attempt::<Vec<String>>(&cmd).await? {
            Ok(pair) => Ok(pair.into_iter().nth(1)),
            Err(refused) => Err(refused.to_string()),
        })
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

// === helpers ===

/// The metric label of a command: its name, from the fixed set the store sends.
fn command_name(cmd: &Cmd) -> &'static str {
    const NAMES: [&str; 20] = [
        "CONFIG", "DEL", "EVAL", "EVALSHA", "GET", "GETDEL", "HDEL", "HGET", "HGETALL", "HKEYS",
        "HSETNX", "MGET", "PING", "PUBLISH", "SADD", "SCARD", "SET", "SMEMBERS", "SREM", "WAIT",
    ];
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => NAMES
            .iter()
            .find(|n| n.as_bytes().eq_ignore_ascii_case(name))
            .copied()
            .unwrap_or("other"),
        _ => "other",
    }
}

/// Milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis refuses 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Unix time in milliseconds for `PXAT`, at least 1 (a time in the past expires at once).
fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
        .max(1)
}
