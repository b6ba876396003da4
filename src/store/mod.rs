//! The store: users, organizations, memberships, API keys, rate-limit counters and single-use
//! values, behind one concrete [`Store`] over two backends chosen by `store.url`.
//!
//! - `memory://` (module `memory`): in-process maps with real expiry; one replica, lost on restart.
//! - `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` ([`redis`]): shared by
//!   every replica. The key layout is documented in [`keys`], where every key name is built.
//!
//! Both backends keep the same rules, and `tests/it/store/` runs one suite against each:
//! emails and usernames are unique case-insensitively, and so are organization names; a
//! non-empty token name is unique per user; two concurrent creates of the same email never both
//! succeed. API key records vanish at the absolute time their writer names, single-use values
//! and counters at the end of their TTL.
//!
//! # Atomicity of writes
//! A write changes only what it means to change, so that no writer puts back a stale copy of
//! what another one changed meanwhile:
//!
//! - [`Store::modify_user`] and [`Store::modify_key`] apply a change to the record *as it is
//!   stored now*: in memory under the store's lock; in Redis as a compare-and-swap of the
//!   whole record (a Lua script writes the new value only if the stored bytes are still the
//!   ones the change was computed from, and the change is recomputed on the fresh record
//!   otherwise). The change itself decides from the fresh record, e.g. "activate only if
//!   still dormant", "replace the hash only if it is still the one that was verified",
//!   "extend the expiry only if the key has not expired".
//! - [`Store::update_user`] replaces a whole record, last writer wins: only for moving a
//!   user's email or username (uniqueness indexes); nothing on the request paths uses it.
//! - Creates, deletes and index claims are described per method and in the Redis module doc.
//!
//! Every operation's writes are atomic on its own slot of a Redis Cluster: the keys that one
//! Lua script or one command touches share a hash tag (`{u:<user id>}`, `{o:<org id>}`), or
//! are a single key; operations that span slots are sequences of such steps, ordered and
//! compensated so that a crash between two steps leaves nothing that a reader takes for valid
//! (see the Redis module doc, "Atomicity", where each one is argued).
//!
//! On `redis+sentinel://`, a write (anything but the counters) answers success only once a
//! replica has it, so that a failover cannot undo a revocation that was answered: see the Redis
//! module doc, "Failover".
//!
//! # Failure
//! [`Store::open`] never waits for Redis. Every Redis call has its own deadline
//! (`store.command_timeout`); a call that misses it, or finds Redis unreachable, fails with
//! [`StoreError::Unavailable`], and the next call tries to reconnect, so the store recovers by
//! itself when Redis comes back. Callers must turn `Unavailable` into a 503, never a 401.
//! A [`StoreError`] says what failed; the Redis or JSON error behind it is its `source()`, so
//! log the whole chain.
//!
//! # Invalidation
//! [`Store::publish`] tells every replica (every `Store` on the same Redis and key prefix) to
//! drop a cached key or user; [`Store::subscribe`] hands out a receiver. When the Redis
//! subscription is lost, messages published meanwhile are lost too, so after every
//! (re-)subscription the receivers get [`Invalidation::All`]; a receiver that lags behind the
//! channel (`RecvError::Lagged`) must likewise drop everything. A cache in front of the store
//! serves only what it read while the subscription live now ([`Store::subscription`]) was
//! already made: while there is none, every look-up reads the store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::config::{StoreConfig, StoreUrl};
use crate::metrics::Metrics;

pub mod cache;
pub mod directory;
mod error;
pub mod keys;
mod memory;

mod redis;

pub use crate::model::{
    AllowListEntry, ApiKey, KeyId, LoginType, Membership, Organization, Session, SessionKey, User,
    UserStatus,
};
pub use directory::{UserPage, UserQuery};
pub use error::{Corrupt, StoreError, Unavailable};
pub use redis::HealthReport;

/// How many invalidations a slow receiver may fall behind before it sees `Lagged`.
const INVALIDATION_CAPACITY: usize = 1024;

/// What [`Store::link_oidc`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcLink {
    /// The user is now linked to the (issuer, subject), or already was.
    Linked,
    /// There is no such user.
    NoSuchUser,
    /// The user is already linked to another subject of this issuer; nothing changed.
    UserHasOtherSubject,
    /// Another user is linked to this (issuer, subject); nothing changed.
    SubjectTaken,
}

/// What every replica should drop from its cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// One API key, by key id.
    Key(String),
    /// Everything cached about one user, its keys included.
    User(Uuid),
    /// Everything.
    All,
}

/// The store. Cheap to clone: clones share one backend. When the last clone is dropped, the
/// Redis subscriber task stops.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

// === impl Store ===

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.backend {
            Backend::Memory(_) => f.write_str("Store(memory://)"),
            Backend::Redis(r) => write!(f, "Store({r:?})"),
        }
    }
}

impl Store {
    /// Opens the store named by `config.url`. Returns at once: a Redis store connects on first
    /// use and starts its invalidation subscriber in the background, so this must be called
    /// inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the Redis client cannot be built from the URL.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_observed(config, Arc::new(Metrics::new()))
    }

    /// [`Store::open`], timing every Redis command into `metrics`
    /// (`portcullis_store_command_seconds`).
    pub fn open_observed(config: &StoreConfig, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
        let backend = match &config.url {
            StoreUrl::Memory => Backend::Memory(memory::MemoryStore::new(INVALIDATION_CAPACITY)),
            StoreUrl::Redis(url) => Backend::Redis(redis::RedisStore::open(
                config,
                url,
                INVALIDATION_CAPACITY,
                metrics,
            )?),
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// How Redis looks to the command path now (see `redis::health`); `None` for the memory
    /// store, which is always there.
    pub fn health(&self) -> Option<HealthReport> {
        match &*self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(r) => Some(r.health()),
        }
    }

    /// A warning for the operator when Redis may evict Portcullis's keys: under memory pressure
    /// any `maxmemory-policy` but `noeviction` can drop rate-limit and attempt counters (a
    /// brute-force limit reset), single-use values and records; with `noeviction` a full Redis
    /// refuses writes instead, which Portcullis answers 503. `None` when the policy is right,
    /// the store is not Redis, or Redis cannot be reached now (its errors speak for it then).
    pub async fn eviction_warning(&self) -> Option<String> {
        let Backend::Redis(r) = &*self.backend else {
            return None;
        };
        match r.eviction_policy().await {
            Ok(Ok(Some(policy))) if policy == "noeviction" => None,
            Ok(Ok(Some(policy))) => Some(format!(
                "Redis maxmemory-policy is {policy:?}: under memory pressure Redis may evict \
                 rate-limit and attempt counters and other records of Portcullis; set it to \
                 \"noeviction\""
            )),
            Ok(Ok(None)) => Some(
                "Redis did not report its maxmemory-policy; make sure it is \"noeviction\"".into(),
            ),
            Ok(Err(refused)) => Some(format!(
                "could not read Redis's maxmemory-policy ({refused}); make sure it is \"noeviction\""
            )),
            Err(_) => None,
        }
    }

    /// A fresh in-memory store, as `memory://` opens.
    pub fn memory() -> Store {
        Store {
            backend: Arc::new(Backend::Memory(memory::MemoryStore::new(
                INVALIDATION_CAPACITY,
            ))),
        }
    }

    /// Whether this store is shared through Redis (as opposed to this process's memory).
    pub fn is_shared(&self) -> bool {
        matches!(&*self.backend, Backend::Redis(_))
    }

    /// Checks that the store answers; for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r.ping().await,
        }
    }

    // --- users ---

    /// Creates a user. Its email and username must not belong to anyone else, compared
    /// case-insensitively; of concurrent creates with the same email (or username) exactly one
    /// succeeds.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `field` `"email"` or `"username"`.
    pub async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => m.create_user(user),
            Backend::Redis(r) => r.durably(r.create_user(user)).await,
        }
    }

    /// The user with this id.
    pub async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.user(id)),
            Backend::Redis(r) => r.user(id).await,
        }
    }

    /// The user with this email, compared case-insensitively.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.user_by_email(email)),
            Backend::Redis(r) => r.user_by_email(email).await,
        }
    }

    /// The user with this username, compared case-insensitively.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.user_by_username(username)),
            Backend::Redis(r) => r.user_by_username(username).await,
        }
    }

    /// Whether any user exists: one cheap question, whatever the number of users.
    pub async fn has_users(&self) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.has_users()),
            Backend::Redis(r) => r.has_users().await,
        }
    }

    /// Every user, in no particular order.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.users()),
            Backend::Redis(r) => r.users().await,
        }
    }

    /// One page of the users `query` selects, in Coder's order (see [`directory`]). On Redis
    /// this reads the directory index, not every user (`docs/directory.md` gives the costs).
    pub async fn list_users(&self, query: &UserQuery) -> Result<UserPage, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.list_users(query)),
            Backend::Redis(r) => r.list_users(query).await,
        }
    }

    /// Changes the user `id` atomically (see the module doc, "Atomicity of writes"): `change`
    /// gets the stored user and returns whether it changed it; only then is it written, and
    /// only if the record did not change meanwhile, else `change` runs again on the fresh
    /// record. Returns the user as stored after the call (changed or not); `None` when there is
    /// no such user. `change` cannot move the id, email or username (it gets them back as they
    /// were): use [`Store::update_user`] for that.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] also when the record kept changing under every attempt.
    pub async fn modify_user(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut User) -> bool + Send,
    ) -> Result<Option<User>, StoreError> {
        let change = move |user: &mut User| {
            let (email, username) = (user.email.clone(), user.username.clone());
            let changed = change(user);
            (user.id, user.email, user.username) = (id, email, username);
            changed
        };
        match &*self.backend {
            Backend::Memory(m) => Ok(m.modify_user(id, change)),
            Backend::Redis(r) => r.durably(r.modify_user(id, change)).await,
        }
    }

    /// [`Store::modify_user`] for a change that may also change the email or username: a new
    /// one must be free, as in [`Store::create_user`], and moves the uniqueness index. The
    /// change is applied to the record as it is stored (compare-and-replace on Redis), so a
    /// concurrent change of other fields (a suspension) is never undone. Returns the user as
    /// stored after the call; `None` when there is no such user.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `field` `"email"` or `"username"`; the email and
    /// username are then as they were.
    pub async fn update_user(
        &self,
        id: Uuid,
        change: impl FnMut(&mut User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => m.update_user(id, change),
            Backend::Redis(r) => r.durably(r.update_user(id, change)).await,
        }
    }

    /// Deletes a user with its API keys, memberships and OpenID Connect links; returns the ids of the keys deleted
    /// (so the caller can publish their invalidation). Deleting a missing user is not an error.
    pub async fn delete_user(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.delete_user(id)),
            Backend::Redis(r) => r.durably(r.delete_user(id)).await,
        }
    }

    /// The user linked to the OpenID Connect `subject` of `issuer` (Coder's `user_links`).
    pub async fn user_by_oidc(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.user_by_oidc(issuer, subject)),
            Backend::Redis(r) => r.user_by_oidc(issuer, subject).await,
        }
    }

    /// Links `user` to the OpenID Connect `subject` of `issuer`. A user has at most one
    /// subject per issuer and a subject at most one user; of concurrent links of one subject
    /// to several users exactly one wins. The link goes with [`Store::delete_user`].
    pub async fn link_oidc(
        &self,
        user: Uuid,
        issuer: &str,
        subject: &str,
    ) -> Result<OidcLink, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.link_oidc(user, issuer, subject)),
            Backend::Redis(r) => r.durably(r.link_oidc(user, issuer, subject)).await,
        }
    }

    /// Sets `name` to `value` unless it is already set, optionally for `ttl`; true when this
    /// call set it. A single-winner claim, such as the right to create the first user.
    pub async fn set_if_absent(
        &self,
        name: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.set_if_absent(name, value, ttl)),
            Backend::Redis(r) => r.durably(r.set_if_absent(name, value, ttl)).await,
        }
    }

    // --- organizations and memberships ---

    /// Creates an organization. Its name must be free (case-insensitively), and at most one
    /// organization may be the default.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `field` `"name"` or `"is_default"`.
    pub async fn create_org(&self, org: &Organization) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => m.create_org(org),
            Backend::Redis(r) => r.durably(r.create_org(org)).await,
        }
    }

    /// Replaces the organization with `org.id` (last writer wins; its `is_default` cannot
    /// change); returns false when there is none. A new name must be free, as in
    /// [`Store::create_org`].
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `field` `"name"`; the stored organization is then
    /// unchanged.
    pub async fn update_org(&self, org: &Organization) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => m.update_org(org),
            Backend::Redis(r) => r.durably(r.update_org(org)).await,
        }
    }

    /// Deletes an organization with its memberships; returns the users who were members (so
    /// the caller can publish their invalidation), `None` when there was no such organization.
    pub async fn delete_org(&self, id: Uuid) -> Result<Option<Vec<Uuid>>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.delete_org(id)),
            Backend::Redis(r) => r.durably(r.delete_org(id)).await,
        }
    }

    /// The organization with this id.
    pub async fn org(&self, id: Uuid) -> Result<Option<Organization>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.org(id)),
            Backend::Redis(r) => r.org(id).await,
        }
    }

    /// The organization with this name, compared case-insensitively.
    pub async fn org_by_name(&self, name: &str) -> Result<Option<Organization>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.org_by_name(name)),
            Backend::Redis(r) => r.org_by_name(name).await,
        }
    }

    /// The default organization, once one exists.
    pub async fn default_org(&self) -> Result<Option<Organization>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.default_org()),
            Backend::Redis(r) => r.default_org().await,
        }
    }

    /// Every organization, in no particular order.
    pub async fn orgs(&self) -> Result<Vec<Organization>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.orgs()),
            Backend::Redis(r) => r.orgs().await,
        }
    }

    /// Adds a membership, or replaces the one of the same user and organization.
    pub async fn add_member(&self, membership: &Membership) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.add_member(membership);
                Ok(())
            }
            Backend::Redis(r) => r.durably(r.add_member(membership)).await,
        }
    }

    /// The membership of `user` in `org`.
    pub async fn membership(
        &self,
        user: Uuid,
        org: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.membership(user, org)),
            Backend::Redis(r) => r.membership(user, org).await,
        }
    }

    /// Every membership of `user`.
    pub async fn memberships_of(&self, user: Uuid) -> Result<Vec<Membership>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.memberships_of(user)),
            Backend::Redis(r) => r.memberships_of(user).await,
        }
    }

    /// Every membership of `org`.
    pub async fn members_of(&self, org: Uuid) -> Result<Vec<Membership>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.members_of(org)),
            Backend::Redis(r) => r.members_of(org).await,
        }
    }

    /// Removes a membership; true when there was one.
    pub async fn remove_member(&self, user: Uuid, org: Uuid) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.remove_member(user, org)),
            Backend::Redis(r) => r.durably(r.remove_member(user, org)).await,
        }
    }

    // --- API keys ---

    /// Stores a new API key. The record disappears by itself at `expire_record_at` (callers
    /// pass the key's expiry plus a retention period, so that expired keys can still be
    /// listed). A non-empty `token_name` must be free for that user.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `field` `"name"`.
    pub async fn insert_key(
        &self,
        key: &ApiKey,
        expire_record_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => m.insert_key(key, expire_record_at),
            Backend::Redis(r) => r.durably(r.insert_key(key, expire_record_at)).await,
        }
    }

    /// The API key with this id (whether or not it has expired, while its record lasts).
    pub async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.key(id)),
            Backend::Redis(r) => r.key(id).await,
        }
    }

    /// Every API key record of `user`, in no particular order.
    pub async fn keys_of(&self, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.keys_of(user)),
            Backend::Redis(r) => r.keys_of(user).await,
        }
    }

    /// The API key of `user` named `name`.
    pub async fn key_by_name(&self, user: Uuid, name: &str) -> Result<Option<ApiKey>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.key_by_name(user, name)),
            Backend::Redis(r) => r.key_by_name(user, name).await,
        }
    }

    /// Changes the API key `id` atomically, as [`Store::modify_user`] does users: `change`
    /// gets the stored key and returns whether it changed it; a changed key is written only if
    /// the record did not change meanwhile, and its record then vanishes at its (new)
    /// `expires_at` plus `retention`. Returns the key as stored after the call; `None` when
    /// the record no longer exists. `change` cannot move the id, owner or token name.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] also when the record kept changing under every attempt.
    pub async fn modify_key(
        &self,
        id: &str,
        retention: time::Duration,
        mut change: impl FnMut(&mut ApiKey) -> bool + Send,
    ) -> Result<Option<ApiKey>, StoreError> {
        let change = move |key: &mut ApiKey| {
            let (kid, owner, name) = (key.id.clone(), key.user_id, key.token_name.clone());
            let changed = change(key);
            (key.id, key.user_id, key.token_name) = (kid, owner, name);
            changed.then(|| key.expires_at + retention)
        };
        match &*self.backend {
            Backend::Memory(m) => Ok(m.modify_key(id, change)),
            Backend::Redis(r) => r.durably(r.modify_key(id, change)).await,
        }
    }

    /// What the API key `id` resolves to for the key cache: the key, its user and the user's
    /// memberships; `None` when there is no such key, or its user is gone. On Redis this is
    /// one round trip (one script, so one snapshot), two on a Cluster (the key, then its
    /// user's slot): a cache miss pays for it on the request path.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.key(id).and_then(|key| {
                let user = m.user(key.user_id)?;
                let memberships = m.memberships_of(key.user_id);
                Session::new(key, user, memberships)
            })),
            Backend::Redis(r) => r.session(id).await,
        }
    }

    /// Deletes an API key; true when it existed.
    pub async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.delete_key(id)),
            Backend::Redis(r) => r.durably(r.delete_key(id)).await,
        }
    }

    /// Deletes every API key of `user`; returns the ids deleted.
    pub async fn delete_keys_of(&self, user: Uuid) -> Result<Vec<String>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.delete_keys_of(user)),
            Backend::Redis(r) => r.durably(r.delete_keys_of(user)).await,
        }
    }

    // --- counters ---

    /// Adds one to the fixed-window counter `name` and returns the new count. The first
    /// increment starts a window of length `window`; the counter vanishes when it ends.
    pub async fn incr_window(&self, name: &str, window: Duration) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.incr_window(name, window)),
            Backend::Redis(r) => r.incr_window(name, window).await,
        }
    }

    /// The current count of `name` (0 when absent or expired).
    pub async fn counter(&self, name: &str) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.counter(name)),
            Backend::Redis(r) => r.counter(name).await,
        }
    }

    /// Removes the counter `name`.
    pub async fn reset_counter(&self, name: &str) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.reset_counter(name);
                Ok(())
            }
            Backend::Redis(r) => r.reset_counter(name).await,
        }
    }

    // --- single-use values ---

    /// Stores `value` under `name` for `ttl`, replacing any earlier value.
    pub async fn put_ephemeral(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.put_ephemeral(name, value, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.durably(r.put_ephemeral(name, value, ttl)).await,
        }
    }

    /// Removes and returns the value under `name`: of concurrent takes, one gets it.
    pub async fn take_ephemeral(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.take_ephemeral(name)),
            Backend::Redis(r) => r.durably(r.take_ephemeral(name)).await,
        }
    }

    /// Removes the value under `name` if it is still `expected`; true when this call removed
    /// it. A compare-and-delete: of concurrent calls for one value, exactly one gets true, and
    /// a value that was replaced meanwhile is left alone (a one-time passcode is consumed only
    /// if it is the one that was checked).
    pub async fn take_ephemeral_if(&self, name: &str, expected: &[u8]) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.take_ephemeral_if(name, expected)),
            Backend::Redis(r) => r.durably(r.take_ephemeral_if(name, expected)).await,
        }
    }

    /// Returns the value under `name`, leaving it in place.
    pub async fn get_ephemeral(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.get_ephemeral(name)),
            Backend::Redis(r) => r.get_ephemeral(name).await,
        }
    }

    // --- invalidation ---

    /// Tells every replica's cache to drop what `what` names. With Redis the message reaches
    /// the replicas subscribed at that moment (see the module doc for what happens to the
    /// others).
    pub async fn publish(&self, what: Invalidation) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.publish(what);
                Ok(())
            }
            Backend::Redis(r) => r.publish(&what).await,
        }
    }

    /// A receiver of the invalidations published from now on, by any replica. On
    /// `RecvError::Lagged`, treat it as [`Invalidation::All`].
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        match &*self.backend {
            Backend::Memory(m) => m.subscribe(),
            Backend::Redis(r) => r.subscribe(),
        }
    }

    /// The subscription to the invalidation channel live now: a number that changes each time
    /// it is lost and made again, `None` while there is none. What was read from the store
    /// after a subscription was made is kept up to date by the invalidations as long as that
    /// subscription is still the live one; anything else may have missed one. (A connection
    /// that dies silently counts as live until the subscriber's `PING` finds out.) The memory
    /// store delivers every invalidation: always the same number.
    pub fn subscription(&self) -> Option<u64> {
        match &*self.backend {
            Backend::Memory(_) => Some(1),
            Backend::Redis(r) => r.subscription(),
        }
    }
}

/// Lower-cased form used for case-insensitive uniqueness of emails, usernames and
/// organization names.
fn fold(s: &str) -> String {
    s.to_lowercase()
}
