//! The Redis backend: standalone (`redis://`, `rediss://`), Sentinel (`redis+sentinel://`) and
//! Cluster (`redis+cluster://`).
//!
//! Needs Redis 6.2 or later (`GETDEL`, `SET … PXAT`).
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
//! # Deadlines and reconnects
//! Every command runs under its own `tokio::time::timeout` of `store.command_timeout`: the
//! client's own timeouts do not bound reconnects. Commands share one multiplexed connection
//! (a cluster connection for Cluster); a command that fails with a connection error or misses
//! its deadline drops it, and the next command starts a new connect in a background task
//! (bounded by four command deadlines, at least 2 s) that concurrent commands wait on until their own deadline.
//! A Sentinel store asks the sentinels for the master on every connect, and drops the
//! connection on `READONLY`, so it follows a failover.
//!
//! The invalidation subscriber is a task of its own with its own connection. It re-subscribes
//! with backoff (50 ms doubling to 2 s) when the connection drops or stops answering `PING`,
//! and sends [`Invalidation::All`] after every subscription.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ToRedisArgs};
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::keys::Keys;
use super::{fold, ApiKey, Invalidation, Membership, OidcLink, Organization, StoreError, User};
use crate::config::{RedisUrl, StoreUrl};

mod conn;

use conn::{breaks_connection, encode, store_error, subscribe_forever, Connector, Slot};

/// Of a `SET NX` loop against invalid index entries: how many takeovers to try before giving
/// up with a conflict (each retry means another writer raced this one).
const CLAIM_ATTEMPTS: usize = 4;

/// Of a compare-and-replace loop ([`RedisStore::modify`]): how many times to recompute a change
/// on a record that other writers keep changing before giving up. A lost attempt waits a
/// random 0 to `attempt` ms (at most 8) first, so that racing writers spread out.
const MODIFY_ATTEMPTS: u8 = 32;

/// `INCR`, and `PEXPIRE` when the key has no expiry yet (the first increment of a window).
const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";
/// Replace the value of KEYS[1] with ARGV[2] if it is ARGV[1].
const COMPARE_AND_SET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0";
/// Replace the value of KEYS[1] with ARGV[2] if it is still ARGV[1] (the bytes a change was
/// computed from), expiring at Unix milliseconds ARGV[3] when that is not empty, else never.
const COMPARE_AND_REPLACE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3]) end
return 1";
/// Delete KEYS[1] if its value is ARGV[1].
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";
/// Add key ARGV[1] to the user's set KEYS[1] and claim its name ARGV[2] in KEYS[2], taking
/// over the entry only if it is free, already ours, or the invalid holder ARGV[3]. Returns ''
/// on success, else the id holding the name.
const KEY_ATTACH: &str = r"
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[2], ARGV[2])
  if cur and cur ~= ARGV[1] and cur ~= ARGV[3] then return cur end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('SADD', KEYS[1], ARGV[1])
return ''";
/// Remove key ARGV[1] from the user's set KEYS[1], and its name ARGV[2] from KEYS[2] if it
/// still points at it.
const KEY_DETACH: &str = r"
redis.call('SREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1";
/// Write the membership KEYS[1] = ARGV[1] and add org ARGV[2] to the user's set KEYS[2].
const MEMBER_PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1";
/// Delete the membership KEYS[1] and org ARGV[1] from the user's set KEYS[2].
const MEMBER_DELETE: &str = r"
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n";

pub(super) struct RedisStore {
    keys: Keys,
    slot: Arc<Slot>,
    timeout: Duration,
    events: broadcast::Sender<Invalidation>,
    subscriber: AbortHandle,
    scripts: Scripts,
    shown: String,
}

/// The Lua scripts with their SHA-1, for `EVALSHA`.
struct Scripts {
    incr_window: Script,
    compare_and_set: Script,
    compare_and_replace: Script,
    compare_and_delete: Script,
    key_attach: Script,
    key_detach: Script,
    member_put: Script,
    member_delete: Script,
}

struct Script {
    body: &'static str,
    sha: String,
}

/// Which uniqueness index a claim is about, to check whether its holder is still valid.
#[derive(Clone, Copy)]
enum Index {
    Email,
    Username,
    OrgName,
    DefaultOrg,
    /// The value is `issuer` + `\n` + `subject`.
    OidcSubject,
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
        url: &RedisUrl,
        prefix: &str,
        timeout: Duration,
        capacity: usize,
    ) -> Result<RedisStore, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Unavailable("the Redis store must be opened inside a Tokio runtime".into())
        })?;
        let connector = Arc::new(Connector::new(url, timeout)?);
        let slot = Arc::new(Slot::new(connector.clone(), timeout));
        let keys = Keys::new(prefix);
        let events = broadcast::channel(capacity).0;
        let subscriber = runtime
            .spawn(subscribe_forever(
                connector,
                keys.channel(),
                events.clone(),
                timeout,
            ))
            .abort_handle();
        Ok(RedisStore {
            keys,
            slot,
            timeout,
            events,
            subscriber,
            scripts: Scripts::new(),
            shown: StoreUrl::Redis(url.clone()).to_string(),
        })
    }

    // --- plumbing ---

    /// Runs one command under the deadline; see the module doc.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.attempt(cmd).await?.map_err(|e| store_error(&e))
    }

    /// Runs one command under the deadline; the outer error is a failure to get an answer,
    /// the inner one the answer Redis gave.
    async fn attempt<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Result<Result<T, RedisError>, StoreError> {
        let used = AtomicU64::new(0);
        let op = async {
            let (generation, mut conn) = self.slot.get().await?;
            used.store(generation, Ordering::Relaxed);
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if breaks_connection(&e) => {
                    self.slot.reset(generation);
                    Err(store_error(&e))
                }
                answer => Ok(answer),
            }
        };
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => {
                // A connection that stops answering may be half-open; start afresh.
                self.slot.reset(used.load(Ordering::Relaxed));
                Err(StoreError::Unavailable(format!(
                    "no answer from redis within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// Runs a script by `EVALSHA`, loading it with `EVAL` when the server does not know it.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[impl ToRedisArgs],
    ) -> Result<T, StoreError> {
        let build = |verb: &str, first: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(first).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self.attempt(&build("EVALSHA", &script.sha)).await? {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                self.query(&build("EVAL", script.body)).await
            }
            answer => answer.map_err(|e| store_error(&e)),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        raw.map(|raw| {
            serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
        })
        .transpose()
    }

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

    /// Applies `change` to the JSON record `record` by compare-and-replace: read the bytes,
    /// decode, change, and write only if the stored bytes are still the ones read, else start
    /// again from the fresh record. `change` returns `None` to leave the record alone, or
    /// `Some(expire_at)` to write it (expiring then, or never for `None`). Returns the record
    /// as stored after the call; `None` when there is none.
    async fn modify<T: Serialize + DeserializeOwned>(
        &self,
        record: &str,
        mut change: impl FnMut(&mut T) -> Option<Option<OffsetDateTime>>,
    ) -> Result<Option<T>, StoreError> {
        for attempt in 0..MODIFY_ATTEMPTS {
            if attempt > 0 {
                let spread = u64::from(Uuid::new_v4().as_bytes()[0] % attempt.min(8));
                tokio::time::sleep(Duration::from_millis(spread)).await;
            }
            let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(record)).await?;
            let Some(raw) = raw else { return Ok(None) };
            let mut value: T = serde_json::from_slice(&raw)
                .map_err(|e| StoreError::Corrupt(format!("{record}: {e}")))?;
            let Some(expire_at) = change(&mut value) else {
                return Ok(Some(value));
            };
            let expire_at = expire_at.map_or_else(String::new, |at| unix_millis(at).to_string());
            let replaced: i64 = self
                .eval(
                    &self.scripts.compare_and_replace,
                    &[record],
                    &[raw, json(&value)?.into_bytes(), expire_at.into_bytes()],
                )
                .await?;
            if replaced == 1 {
                return Ok(Some(value));
            }
        }
        Err(StoreError::Unavailable(format!(
            "{record} kept changing during {MODIFY_ATTEMPTS} attempts to update it"
        )))
    }

    /// Runs a compensation step: its failure is logged, not returned, since the caller is
    /// already returning the error that made it necessary.
    async fn compensate(
        &self,
        what: &str,
        step: impl std::future::Future<Output = Result<(), StoreError>>,
    ) {
        if let Err(e) = step.await {
            tracing::warn!(error = %e, step = what, "store: compensation failed");
        }
    }

    /// Writes a new record (`SET NX`: an existing id is a conflict), claims its uniqueness
    /// indexes in order, and adds its id to the `all` set; if a step fails, the claims made and
    /// the record are undone, so nothing half-created stays behind.
    async fn insert_indexed(
        &self,
        record: &str,
        value: String,
        id: &str,
        claims: &[(Index, &str, &str)],
        all: &str,
    ) -> Result<(), StoreError> {
        let written: Option<String> = self
            .query(redis::cmd("SET").arg(record).arg(value).arg("NX"))
            .await?;
        if written.is_none() {
            return Err(StoreError::Conflict { field: "id" });
        }
        let mut claimed: Vec<&str> = Vec::new();
        let outcome = async {
            for &(index, key, folded) in claims {
                self.claim(index, key, folded, id).await?;
                claimed.push(key);
            }
            self.query::<i64>(redis::cmd("SADD").arg(all).arg(id))
                .await
                .map(drop)
        }
        .await;
        if let Err(e) = outcome {
            for key in claimed {
                self.compensate("release index", self.release(key, id))
                    .await;
            }
            self.compensate("delete record", async {
                self.query::<i64>(redis::cmd("DEL").arg(record))
                    .await
                    .map(drop)
            })
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// Claims the uniqueness index `key` for `id`; see the module doc.
    async fn claim(
        &self,
        index: Index,
        key: &str,
        value: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let set: Option<String> = self
                .query(redis::cmd("SET").arg(key).arg(id).arg("NX"))
                .await?;
            if set.is_some() {
                return Ok(());
            }
            let holder: Option<String> = self.query(redis::cmd("GET").arg(key)).await?;
            let Some(holder) = holder else { continue };
            if holder == id {
                return Ok(());
            }
            if self.holds(index, &holder, value).await? {
                return Err(StoreError::Conflict {
                    field: index.field(),
                });
            }
            let swapped: i64 = self
                .eval(&self.scripts.compare_and_set, &[key], &[&holder, id])
                .await?;
            if swapped == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Conflict {
            field: index.field(),
        })
    }

    /// Whether `holder` validly holds the index entry for `value`.
    async fn holds(&self, index: Index, holder: &str, value: &str) -> Result<bool, StoreError> {
        let Ok(id) = holder.parse::<Uuid>() else {
            return Ok(false);
        };
        Ok(match index {
            Index::Email => self
                .user(id)
                .await?
                .is_some_and(|u| fold(&u.email) == value),
            Index::Username => self
                .user(id)
                .await?
                .is_some_and(|u| fold(&u.username) == value),
            Index::OrgName => self.org(id).await?.is_some_and(|o| fold(&o.name) == value),
            Index::DefaultOrg => self.org(id).await?.is_some_and(|o| o.is_default),
            Index::OidcSubject => {
                let Some((issuer, subject)) = value.split_once('\n') else {
                    return Ok(false);
                };
                let linked: Option<String> = self
                    .query(redis::cmd("HGET").arg(self.keys.user_oidc(id)).arg(issuer))
                    .await?;
                linked.as_deref() == Some(subject) && self.user(id).await?.is_some()
            }
        })
    }

    /// Releases the index `key` if `id` holds it.
    async fn release(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.eval::<i64>(&self.scripts.compare_and_delete, &[key], &[id])
            .await
            .map(drop)
    }

    /// Reads `ids` through `record_key` concurrently, leaving out the missing ones; returns
    /// the found records and the ids that had none.
    async fn records<T: DeserializeOwned>(
        &self,
        ids: &[String],
        record_key: impl Fn(&str) -> Option<String>,
    ) -> Result<(Vec<T>, Vec<String>), StoreError> {
        let found = try_join_all(ids.iter().map(|id| {
            let key = record_key(id);
            async move {
                match key {
                    Some(key) => self.get_json::<T>(&key).await,
                    None => Ok(None),
                }
            }
        }))
        .await?;
        let mut records = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        for (id, record) in ids.iter().zip(found) {
            match record {
                Some(r) => records.push(r),
                None => missing.push(id.clone()),
            }
        }
        Ok((records, missing))
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    // --- users ---

    pub(super) async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let (email, username) = (fold(&user.email), fold(&user.username));
        let (email_key, username_key) = (self.keys.email(&email), self.keys.username(&username));
        self.insert_indexed(
            &self.keys.user(user.id),
            json(user)?,
            &user.id.to_string(),
            &[
                (Index::Email, email_key.as_str(), email.as_str()),
                (Index::Username, username_key.as_str(), username.as_str()),
            ],
            &self.keys.users(),
        )
        .await
    }

    pub(super) async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.get_json(&self.keys.user(id)).await
    }

    async fn user_by_index(
        &self,
        key: &str,
        matches: impl Fn(&User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        let holder: Option<String> = self.query(redis::cmd("GET").arg(key)).await?;
        let Some(id) = holder.and_then(|h| h.parse::<Uuid>().ok()) else {
            return Ok(None);
        };
        Ok(self.user(id).await?.filter(matches))
    }

    pub(super) async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let email = fold(email);
        self.user_by_index(&self.keys.email(&email), |u| fold(&u.email) == email)
            .await
    }

    pub(super) async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        let username = fold(username);
        self.user_by_index(&self.keys.username(&username), |u| {
            fold(&u.username) == username
        })
        .await
    }

    pub(super) async fn users(&self) -> Result<Vec<User>, StoreError> {
        let ids = self.members(&self.keys.users()).await?;
        let (users, _) = self
            .records(&ids, |id| id.parse().ok().map(|id| self.keys.user(id)))
            .await?;
        Ok(users)
    }

    pub(super) async fn modify_user(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        self.modify(&self.keys.user(id), |user| change(user).then_some(None))
            .await
    }

    pub(super) async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let Some(old) = self.user(user.id).await? else {
            return Ok(false);
        };
        let id = user.id.to_string();
        let record = self.keys.user(user.id);
        // The record is written before the new index entries are claimed, so that a
        // concurrent claimer sees them as valid (module doc, "Atomicity").
        let written: Option<String> = self
            .query(redis::cmd("SET").arg(&record).arg(json(user)?).arg("XX"))
            .await?;
        if written.is_none() {
            return Ok(false);
        }
        let changes = [
            (Index::Email, fold(&old.email), fold(&user.email)),
            (Index::Username, fold(&old.username), fold(&user.username)),
        ];
        let mut claimed: Vec<String> = Vec::new();
        let mut released: Vec<String> = Vec::new();
        let mut outcome = Ok(());
        for (index, before, after) in &changes {
            if before == after {
                continue;
            }
            let key = index.key(&self.keys, after);
            match self.claim(*index, &key, after, &id).await {
                Ok(()) => {
                    claimed.push(key);
                    released.push(index.key(&self.keys, before));
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = outcome {
            self.compensate("restore user record", async {
                self.query::<Option<String>>(
                    redis::cmd("SET").arg(&record).arg(json(&old)?).arg("XX"),
                )
                .await
                .map(drop)
            })
            .await;
            for key in &claimed {
                self.compensate("release index", self.release(key, &id))
                    .await;
            }
            return Err(e);
        }
        for key in &released {
            self.compensate("release old index", self.release(key, &id))
                .await;
        }
        Ok(true)
    }

    pub(super) async fn user_by_oidc(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let value = oidc_link(issuer, subject);
        let key = Index::OidcSubject.key(&self.keys, &value);
        let holder: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        let Some(holder) = holder else {
            return Ok(None);
        };
        match holder.parse::<Uuid>() {
            Ok(id) if self.holds(Index::OidcSubject, &holder, &value).await? => self.user(id).await,
            _ => Ok(None),
        }
    }

    /// Writes the user's side of the link first (`HSETNX`: a user keeps its subject), then
    /// claims the subject's index as the email index is claimed; a lost claim undoes the
    /// user's side when this call wrote it.
    pub(super) async fn link_oidc(
        &self,
        user: Uuid,
        issuer: &str,
        subject: &str,
    ) -> Result<OidcLink, StoreError> {
        if self.user(user).await?.is_none() {
            return Ok(OidcLink::NoSuchUser);
        }
        let links = self.keys.user_oidc(user);
        let wrote: i64 = self
            .query(redis::cmd("HSETNX").arg(&links).arg(issuer).arg(subject))
            .await?;
        if wrote == 0 {
            let linked: Option<String> = self
                .query(redis::cmd("HGET").arg(&links).arg(issuer))
                .await?;
            if linked.as_deref() != Some(subject) {
                return Ok(OidcLink::UserHasOtherSubject);
            }
        }
        let value = oidc_link(issuer, subject);
        let key = Index::OidcSubject.key(&self.keys, &value);
        match self
            .claim(Index::OidcSubject, &key, &value, &user.to_string())
            .await
        {
            Ok(()) => Ok(OidcLink::Linked),
            Err(e) => {
                if wrote == 1 {
                    self.compensate("unlink oidc subject", async {
                        self.query::<i64>(redis::cmd("HDEL").arg(&links).arg(issuer))
                            .await
                            .map(drop)
                    })
                    .await;
                }
                match e {
                    StoreError::Conflict { .. } => Ok(OidcLink::SubjectTaken),
                    e => Err(e),
                }
            }
        }
    }

    pub(super) async fn delete_user(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        let old = self.user(id).await?;
        let sid = id.to_string();
        self.query::<i64>(redis::cmd("SREM").arg(self.keys.users()).arg(&sid))
            .await?;
        if let Some(old) = &old {
            self.release(&self.keys.email(&fold(&old.email)), &sid)
                .await?;
            self.release(&self.keys.username(&fold(&old.username)), &sid)
                .await?;
        }
        let links: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(self.keys.user_oidc(id)))
            .await?;
        for (issuer, subject) in links {
            let key = Index::OidcSubject.key(&self.keys, &oidc_link(&issuer, &subject));
            self.release(&key, &sid).await?;
        }
        let deleted = self.delete_keys_of(id).await?;
        let orgs = self.members(&self.keys.user_orgs(id)).await?;
        for org in orgs.iter().filter_map(|o| o.parse::<Uuid>().ok()) {
            self.remove_member(id, org).await?;
        }
        self.query::<i64>(
            redis::cmd("DEL")
                .arg(self.keys.user_orgs(id))
                .arg(self.keys.user_oidc(id))
                .arg(self.keys.user(id)),
        )
        .await?;
        Ok(deleted)
    }

    pub(super) async fn set_if_absent(
        &self,
        name: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.claim(name)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        Ok(self.query::<Option<String>>(&cmd).await?.is_some())
    }

    // --- organizations and memberships ---

    pub(super) async fn create_org(&self, org: &Organization) -> Result<(), StoreError> {
        let name = fold(&org.name);
        let name_key = self.keys.org_name(&name);
        let default_key = self.keys.default_org();
        let mut claims = vec![(Index::OrgName, name_key.as_str(), name.as_str())];
        if org.is_default {
            claims.push((Index::DefaultOrg, default_key.as_str(), ""));
        }
        self.insert_indexed(
            &self.keys.org(org.id),
            json(org)?,
            &org.id.to_string(),
            &claims,
            &self.keys.orgs(),
        )
        .await
    }

    pub(super) async fn org(&self, id: Uuid) -> Result<Option<Organization>, StoreError> {
        self.get_json(&self.keys.org(id)).await
    }

    pub(super) async fn org_by_name(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        let name = fold(name);
        let holder: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.org_name(&name)))
            .await?;
        let Some(id) = holder.and_then(|h| h.parse::<Uuid>().ok()) else {
            return Ok(None);
        };
        Ok(self.org(id).await?.filter(|o| fold(&o.name) == name))
    }

    pub(super) async fn default_org(&self) -> Result<Option<Organization>, StoreError> {
        let holder: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.default_org()))
            .await?;
        let Some(id) = holder.and_then(|h| h.parse::<Uuid>().ok()) else {
            return Ok(None);
        };
        Ok(self.org(id).await?.filter(|o| o.is_default))
    }

    pub(super) async fn orgs(&self) -> Result<Vec<Organization>, StoreError> {
        let ids = self.members(&self.keys.orgs()).await?;
        let (orgs, _) = self
            .records(&ids, |id| id.parse().ok().map(|id| self.keys.org(id)))
            .await?;
        Ok(orgs)
    }

    pub(super) async fn add_member(&self, m: &Membership) -> Result<(), StoreError> {
        let (user, org) = (m.user_id, m.organization_id);
        self.eval::<i64>(
            &self.scripts.member_put,
            &[&self.keys.member(user, org), &self.keys.user_orgs(user)],
            &[&json(m)?, &org.to_string()],
        )
        .await?;
        self.query::<i64>(
            redis::cmd("SADD")
                .arg(self.keys.org_members(org))
                .arg(user.to_string()),
        )
        .await
        .map(drop)
    }

    pub(super) async fn membership(
        &self,
        user: Uuid,
        org: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        self.get_json(&self.keys.member(user, org)).await
    }

    pub(super) async fn memberships_of(&self, user: Uuid) -> Result<Vec<Membership>, StoreError> {
        let orgs = self.members(&self.keys.user_orgs(user)).await?;
        let (found, _) = self
            .records(&orgs, |org| {
                org.parse().ok().map(|org| self.keys.member(user, org))
            })
            .await?;
        Ok(found)
    }

    pub(super) async fn members_of(&self, org: Uuid) -> Result<Vec<Membership>, StoreError> {
        let users = self.members(&self.keys.org_members(org)).await?;
        let (found, _) = self
            .records(&users, |user| {
                user.parse().ok().map(|user| self.keys.member(user, org))
            })
            .await?;
        Ok(found)
    }

    pub(super) async fn remove_member(&self, user: Uuid, org: Uuid) -> Result<bool, StoreError> {
        let removed: i64 = self
            .eval(
                &self.scripts.member_delete,
                &[&self.keys.member(user, org), &self.keys.user_orgs(user)],
                &[&org.to_string()],
            )
            .await?;
        self.query::<i64>(
            redis::cmd("SREM")
                .arg(self.keys.org_members(org))
                .arg(user.to_string()),
        )
        .await?;
        Ok(removed > 0)
    }

    // --- API keys ---

    pub(super) async fn insert_key(
        &self,
        key: &ApiKey,
        expire_record_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let record = self.keys.api_key(&key.id);
        let written: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(&record)
                    .arg(json(key)?)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(unix_millis(expire_record_at)),
            )
            .await?;
        if written.is_none() {
            return Err(StoreError::Conflict { field: "id" });
        }
        let outcome = self.attach_key(key).await;
        if outcome.is_err() {
            self.compensate("delete key record", async {
                self.query::<i64>(redis::cmd("DEL").arg(&record))
                    .await
                    .map(drop)
            })
            .await;
        }
        outcome
    }

    /// Adds a freshly written key to its user's set and claims its name.
    async fn attach_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let (set, names) = (
            self.keys.user_keys(key.user_id),
            self.keys.user_key_names(key.user_id),
        );
        let mut invalid_holder = String::new();
        for _ in 0..CLAIM_ATTEMPTS {
            let holder: String = self
                .eval(
                    &self.scripts.key_attach,
                    &[&set, &names],
                    &[&key.id, &key.token_name, &invalid_holder],
                )
                .await?;
            if holder.is_empty() {
                return Ok(());
            }
            let valid = self
                .key(&holder)
                .await?
                .is_some_and(|k| k.user_id == key.user_id && k.token_name == key.token_name);
            if valid {
                return Err(StoreError::Conflict { field: "name" });
            }
            invalid_holder = holder;
        }
        Err(StoreError::Conflict { field: "name" })
    }

    pub(super) async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.get_json(&self.keys.api_key(id)).await
    }

    pub(super) async fn keys_of(&self, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let set = self.keys.user_keys(user);
        let ids = self.members(&set).await?;
        let (keys, gone) = self
            .records::<ApiKey>(&ids, |id| Some(self.keys.api_key(id)))
            .await?;
        if !gone.is_empty() {
            // Ids of records that expired; their names are taken over on the next claim.
            self.compensate("forget expired key ids", async {
                self.query::<i64>(redis::cmd("SREM").arg(&set).arg(&gone))
                    .await
                    .map(drop)
            })
            .await;
        }
        Ok(keys.into_iter().filter(|k| k.user_id == user).collect())
    }

    pub(super) async fn key_by_name(
        &self,
        user: Uuid,
        name: &str,
    ) -> Result<Option<ApiKey>, StoreError> {
        if name.is_empty() {
            return Ok(None);
        }
        let id: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys.user_key_names(user))
                    .arg(name),
            )
            .await?;
        let Some(id) = id else { return Ok(None) };
        Ok(self
            .key(&id)
            .await?
            .filter(|k| k.user_id == user && k.token_name == name))
    }

    pub(super) async fn modify_key(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ApiKey) -> Option<OffsetDateTime>,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.modify(&self.keys.api_key(id), |key| change(key).map(Some))
            .await
    }

    pub(super) async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let Some(key) = self.key(id).await? else {
            return Ok(false);
        };
        let deleted = self.delete(&[self.keys.api_key(id)]).await?;
        self.eval::<i64>(
            &self.scripts.key_detach,
            &[
                &self.keys.user_keys(key.user_id),
                &self.keys.user_key_names(key.user_id),
            ],
            &[id, &key.token_name],
        )
        .await?;
        Ok(deleted.first().copied().unwrap_or(false))
    }

    pub(super) async fn delete_keys_of(&self, user: Uuid) -> Result<Vec<String>, StoreError> {
        let ids = self.members(&self.keys.user_keys(user)).await?;
        let records: Vec<String> = ids.iter().map(|id| self.keys.api_key(id)).collect();
        let existed = self.delete(&records).await?;
        self.query::<i64>(
            redis::cmd("DEL")
                .arg(self.keys.user_keys(user))
                .arg(self.keys.user_key_names(user)),
        )
        .await?;
        Ok(ids
            .into_iter()
            .zip(existed)
            .filter_map(|(id, existed)| existed.then_some(id))
            .collect())
    }

    // --- counters ---

    pub(super) async fn incr_window(
        &self,
        name: &str,
        window: Duration,
    ) -> Result<u64, StoreError> {
        self.eval(
            &self.scripts.incr_window,
            &[&self.keys.counter(name)],
            &[&millis(window).to_string()],
        )
        .await
    }

    pub(super) async fn counter(&self, name: &str) -> Result<u64, StoreError> {
        let n: Option<u64> = self
            .query(redis::cmd("GET").arg(self.keys.counter(name)))
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub(super) async fn reset_counter(&self, name: &str) -> Result<(), StoreError> {
        self.delete(&[self.keys.counter(name)]).await.map(drop)
    }

    // --- single-use values ---

    pub(super) async fn put_ephemeral(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.query::<String>(
            redis::cmd("SET")
                .arg(self.keys.ephemeral(name))
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
        .map(drop)
    }

    pub(super) async fn take_ephemeral(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GETDEL").arg(self.keys.ephemeral(name)))
            .await
    }

    pub(super) async fn get_ephemeral(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(self.keys.ephemeral(name)))
            .await
    }

    pub(super) async fn take_ephemeral_if(
        &self,
        name: &str,
        expected: &[u8],
    ) -> Result<bool, StoreError> {
        let taken: i64 = self
            .eval(
                &self.scripts.compare_and_delete,
                &[&self.keys.ephemeral(name)],
                &[expected],
            )
            .await?;
        Ok(taken > 0)
    }

    // --- invalidation ---

    pub(super) async fn publish(&self, what: &Invalidation) -> Result<(), StoreError> {
        self.query::<i64>(
            redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(encode(what)),
        )
        .await
        .map(drop)
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.events.subscribe()
    }
}

// === impl Index ===

impl Index {
    /// The index entry for `value` (for [`Index::OidcSubject`], the issuer, a newline and
    /// the subject).
    fn key(self, keys: &Keys, value: &str) -> String {
        match self {
            Index::Email => keys.email(value),
            Index::Username => keys.username(value),
            Index::OrgName => keys.org_name(value),
            Index::DefaultOrg => keys.default_org(),
            Index::OidcSubject => keys.oidc(value),
        }
    }

    fn field(self) -> &'static str {
        match self {
            Index::Email => "email",
            Index::Username => "username",
            Index::OrgName => "name",
            Index::DefaultOrg => "is_default",
            Index::OidcSubject => "oidc_subject",
        }
    }
}

// === impl Scripts ===

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            incr_window: Script::new(INCR_WINDOW),
            compare_and_set: Script::new(COMPARE_AND_SET),
            compare_and_replace: Script::new(COMPARE_AND_REPLACE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            key_attach: Script::new(KEY_ATTACH),
            key_detach: Script::new(KEY_DETACH),
            member_put: Script::new(MEMBER_PUT),
            member_delete: Script::new(MEMBER_DELETE),
        }
    }
}

impl Script {
    fn new(body: &'static str) -> Script {
        Script {
            body,
            sha: redis::Script::new(body).get_hash().to_owned(),
        }
    }
}

// === helpers ===

/// The value of an OpenID Connect subject's index entry: `issuer`, a newline, `subject`.
fn oidc_link(issuer: &str, subject: &str) -> String {
    format!("{issuer}\n{subject}")
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
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
