//! The validated-key cache: what a key id resolves to (the key, its user, the user's
//! memberships), held in a bounded moka cache in front of the store.
//!
//! - A hit younger than `store.cache_ttl` is served without touching the store.
//! - An older entry is reloaded; concurrent requests for the same key wait for one load
//!   (moka's per-key compute), so a hot key costs one store read per `cache_ttl`, not one per
//!   request.
//! - While the store is unreachable, an entry is still served until it is `cache_ttl +
//!   store.max_stale` old; after that, and for keys never cached, the caller gets
//!   [`StoreError::Unavailable`] and answers 503 — never 401, never an allow. Callers that
//!   queued for a key while its reload was failing are served the stale entry when their turn
//!   comes, without a store call of their own: a hung store costs a hot key's requests one
//!   `store.command_timeout`, not one each in turn.
//! - Unknown key ids are remembered for `store.negative_cache_ttl`, so a flood of bad tokens
//!   does not become a flood of store reads.
//! - Logout, revocation, password change and suspension publish an [`Invalidation`]; every
//!   replica's listener drops the entries at once. If the notification channel is down, the
//!   staleness bound is `cache_ttl` (the store subscriber sends `Invalidation::All` when it
//!   re-subscribes, which empties the cache).
//!
//! Every look-up is counted in `portcullis_key_cache_total` (hit, miss, stale, unknown), and
//! every session read from the store is timed (`portcullis_store_call_seconds`) and, when it
//! fails, counted (`portcullis_store_errors_total`): atomic adds on handles made up front.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use tokio::time::Instant;
use uuid::Uuid;

use crate::assertion::Issued;
use crate::config::StoreConfig;
use crate::headers::Identity;
use crate::metrics::{CacheResult, Metrics};
use crate::rbac::Subject;
use crate::store::{ApiKey, Invalidation, Membership, Store, StoreError, User};

/// Cached entries at most.
const CAPACITY: u64 = 100_000;

/// What a valid key id resolves to.
#[derive(Debug)]
pub struct Session {
    /// The key record (its secret only as a hash).
    pub key: ApiKey,
    /// The key's user.
    pub user: User,
    /// The user's organization memberships.
    pub memberships: Vec<Membership>,
}

/// A cached [`Session`] and when it was read from the store.
#[derive(Debug)]
pub struct Entry {
    /// The session.
    pub session: Arc<Session>,
    /// The identity headers it gives a proxied request, rendered once.
    pub identity: Identity,
    /// What the session may do, folded once.
    pub subject: Subject,
    /// The identity assertions it was given, by audience.
    pub assertions: Issued,
    loaded: Instant,
    /// Unix seconds of the last `last_used`/expiry write for this key (claimed with a CAS so
    /// that concurrent requests write at most once).
    touched: AtomicI64,
    /// When a reload of this entry last failed, in nanoseconds after `loaded` (0: never).
    failed: AtomicU64,
}

/// The cache.
#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<String, Arc<Entry>>,
    unknown: Option<Cache<String, ()>>,
    ttl: Duration,
    max_stale: Duration,
    metrics: Arc<Metrics>,
}

// === impl Session ===

impl Session {
    /// The role names the identity headers and the assertion carry: the site roles, then each
    /// organization role as `<role>:<organization id>`.
    pub fn role_names(&self) -> impl Iterator<Item = String> + '_ {
        let org_roles = self.memberships.iter().flat_map(|m| {
            m.roles
                .iter()
                .map(move |r| format!("{r}:{}", m.organization_id))
        });
        self.user.roles.iter().cloned().chain(org_roles)
    }
}

// === impl Entry ===

impl Entry {
    fn new(session: Session) -> Self {
        let touched = session.key.last_used.unix_timestamp();
        let user = &session.user;
        let identity = Identity::new(
            &user.username,
            &user.email,
            &user.id.to_string(),
            &user.name,
            session.role_names(),
            &session.key.scopes,
        );
        let subject = Subject::new(&session.user, &session.memberships, &session.key);
        Entry {
            identity,
            subject,
            assertions: Issued::default(),
            session: Arc::new(session),
            loaded: Instant::now(),
            touched: AtomicI64::new(touched),
            failed: AtomicU64::new(0),
        }
    }

    /// Notes that a reload of this entry failed just now.
    fn reload_failed(&self) {
        let nanos = u64::try_from(self.loaded.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.failed.store(nanos.max(1), Ordering::Release);
    }

    /// Whether a reload of this entry failed at or after `since`.
    fn reload_failed_since(&self, since: Instant) -> bool {
        match self.failed.load(Ordering::Acquire) {
            0 => false,
            nanos => self.loaded + Duration::from_nanos(nanos) >= since,
        }
    }

    /// Claims the right to write this key's `last_used` now: true for exactly one caller once
    /// `every` has passed since the last write.
    pub fn claim_touch(&self, now_unix: i64, every: Duration) -> bool {
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        let last = self.touched.load(Ordering::Acquire);
        now_unix.saturating_sub(last) >= every
            && self
                .touched
                .compare_exchange(last, now_unix, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

// === impl KeyCache ===

impl KeyCache {
    /// A cache with the TTLs of `cfg`, recording into `metrics`.
    pub fn new(cfg: &StoreConfig, metrics: Arc<Metrics>) -> Self {
        let entries = Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_live(cfg.cache_ttl + cfg.max_stale)
            .support_invalidation_closures()
            .build();
        let unknown = (!cfg.negative_cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(cfg.negative_cache_ttl)
                .build()
        });
        KeyCache {
            entries,
            unknown,
            ttl: cfg.cache_ttl,
            max_stale: cfg.max_stale,
            metrics,
        }
    }

    /// Resolves a key id: `Ok(None)` when no such key (or its user) exists.
    pub async fn lookup(&self, store: &Store, id: &str) -> Result<Option<Arc<Entry>>, StoreError> {
        if let Some(entry) = self.entries.get(id).await {
            if entry.loaded.elapsed() < self.ttl {
                self.metrics.key_cache(CacheResult::Hit);
                return Ok(Some(entry));
            }
        } else if let Some(unknown) = &self.unknown {
            if unknown.contains_key(id) {
                self.metrics.key_cache(CacheResult::Unknown);
                return Ok(None);
            }
        }
        self.load(store, id).await
    }

    /// The slow path: one load per key at a time; the stale entry is kept if the store fails
    /// and it is still within `max_stale`.
    async fn load(&self, store: &Store, id: &str) -> Result<Option<Arc<Entry>>, StoreError> {
        let ttl = self.ttl;
        let stale_limit = self.ttl + self.max_stale;
        let metrics = &self.metrics;
        let asked = Instant::now();
        let result = self
            .entries
            .entry(id.to_owned())
            .and_try_compute_with(|existing| {
                async move {
                    if let Some(e) = &existing {
                        let e = e.value();
                        // Another caller reloaded it while we waited.
                        if e.loaded.elapsed() < ttl {
                            metrics.key_cache(CacheResult::Hit);
                            return Ok::<_, StoreError>(Op::Nop);
                        }
                        // Another caller's reload failed while we waited: asking the store
                        // again now would queue every waiter behind one deadline after another.
                        if e.reload_failed_since(asked) && e.loaded.elapsed() < stale_limit {
                            metrics.key_cache(CacheResult::Stale);
                            return Ok(Op::Nop);
                        }
                    }
                    let started = Instant::now();
                    let loaded = load_session(store, id).await;
                    metrics.store_call(started.elapsed(), loaded.is_err());
                    match loaded {
                        Ok(Some(session)) => {
                            metrics.key_cache(CacheResult::Miss);
                            Ok(Op::Put(Arc::new(Entry::new(session))))
                        }
                        Ok(None) => {
                            metrics.key_cache(CacheResult::Miss);
                            Ok(Op::Remove)
                        }
                        Err(e) => match existing {
                            Some(stale) if stale.value().loaded.elapsed() < stale_limit => {
                                stale.value().reload_failed();
                                metrics.key_cache(CacheResult::Stale);
                                tracing::warn!(error = %e, "store unavailable; serving a cached key");
                                Ok(Op::Nop)
                            }
                            _ => {
                                metrics.key_cache(CacheResult::Miss);
                                Err(e)
                            }
                        },
                    }
                }
            })
            .await?;
        Ok(match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                Some(e.into_value())
            }
            CompResult::Removed(_) | CompResult::StillNone(_) => {
                if let Some(unknown) = &self.unknown {
                    unknown.insert(id.to_owned(), ()).await;
                }
                None
            }
        })
    }

    /// Applies an invalidation from this or another replica.
    pub fn apply(&self, what: &Invalidation) {
        match what {
            Invalidation::Key(id) => {
                let entries = self.entries.clone();
                let id = id.clone();
                // `invalidate` is async in moka's future cache; it only touches memory.
                tokio::spawn(async move { entries.invalidate(&id).await });
            }
            Invalidation::User(user) => {
                let user: Uuid = *user;
                if let Err(error) = self
                    .entries
                    .invalidate_entries_if(move |_, e| e.session.user.id == user)
                {
                    tracing::error!(%error, "could not invalidate a user's cached keys; clearing all");
                    self.entries.invalidate_all();
                }
            }
            Invalidation::All => self.entries.invalidate_all(),
        }
    }

    /// Applies every invalidation the store delivers, until the store's channel closes.
    pub async fn listen(self: Arc<Self>, store: Store) {
        let mut rx = store.subscribe();
        loop {
            match rx.recv().await {
                Ok(what) => self.apply(&what),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.entries.invalidate_all();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Reads what a key id resolves to: the key, then its user and memberships together.
async fn load_session(store: &Store, id: &str) -> Result<Option<Session>, StoreError> {
    let Some(key) = store.key(id).await? else {
        return Ok(None);
    };
    let (user, memberships) =
        tokio::try_join!(store.user(key.user_id), store.memberships_of(key.user_id))?;
    Ok(user.map(|user| Session {
        key,
        user,
        memberships,
    }))
}
