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
//!   replica's listener drops the entries at once. An entry is served as a hit only while the
//!   subscription to the invalidation channel that was live when its store reads began is
//!   still the live one ([`Store::subscription`]): while this replica is not subscribed (Redis
//!   restarted, a failover, its subscriber reconnecting), and for what it read before it
//!   subscribed again, it could miss an invalidation, so every look-up reads the store; if the
//!   store fails, the entry is served as stale as below. (The subscriber also sends
//!   `Invalidation::All` when it subscribes again.)
//!
//! - Revocation cannot be undone by a load in flight: every invalidation (local, or received
//!   from another replica) takes the next number of a sequence and records it for the key id
//!   or user id it names (in one of [`STRIPES`] slots chosen by hash, so memory stays bounded
//!   and a collision only costs a reload), or for everything. A load notes the sequence
//!   before its first store read; if an invalidation for its key or user (or everything) came
//!   after that, what it read may predate the revocation, so it is thrown away and the store
//!   read again (up to [`LOAD_ATTEMPTS`] times, then the request gets 503). An entry that an
//!   invalidation overtook on its way into the cache is refused on every hit. On the hit
//!   path this costs three atomic loads, no lock and no hashing.
//!
//! - Cached keys of one user share one copy of the user record (without its password hash),
//!   of its memberships and of its identity header values, and keys with the same scopes one
//!   scopes value ([`Shared`]): a load takes the copy the other keys hold only when it equals
//!   what it read, so after a user changes, its keys' reloads get new copies (issue 18: memory
//!   per cached session).
//!
//! Every look-up is counted in `portcullis_key_cache_total` (hit, miss, stale, unknown), and
//! every session read from the store is timed (`portcullis_store_call_seconds`) and, when it
//! fails, counted (`portcullis_store_errors_total`): atomic adds on handles made up front.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use tokio::time::Instant;
use uuid::Uuid;

use crate::assertion::Issued;
use crate::config::StoreConfig;
use crate::headers::{Identity, UserIdentity};
use crate::metrics::{CacheResult, Metrics};
use crate::model::{AllowListEntry, KeyId, Membership, User};
use crate::rbac::intern::Interner;
use crate::rbac::Subject;
use crate::report::ErrorChain;
use crate::store::{Invalidation, Store, StoreError};

/// Cached entries at most.
const CAPACITY: u64 = 100_000;

/// Slots of invalidation numbers for key ids, and as many for user ids.
pub const STRIPES: usize = 4096;
const _: () = assert!(STRIPES <= 1 << 16, "an entry holds its slots as u16");

/// Store reads of one load that invalidations may overtake before the request gets 503.
pub const LOAD_ATTEMPTS: usize = 3;

pub use crate::model::Session;

/// A cached [`Session`] and when it was read from the store.
#[derive(Debug)]
pub struct Entry {
    /// The session.
    pub session: Session,
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
    /// The invalidation sequence before the store reads this entry came from, and the slots of
    /// its key id and user id: see [`Generations`].
    read_at: u64,
    /// The subscription to the invalidation channel that was live before those reads.
    subscription: Option<u64>,
    key_slot: u16,
    user_slot: u16,
}

/// The numbers of the latest invalidations: for everything, and per slot of key ids and of
/// user ids. Written only by invalidations; read with plain atomic loads.
#[derive(Debug)]
struct Generations {
    /// The last number handed out.
    sequence: AtomicU64,
    all: AtomicU64,
    keys: Box<[AtomicU64]>,
    users: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
}

/// What cached entries share: per user id, the user record, its memberships and its identity
/// values; per scope list, the list and its header value; per allow list, the list. A value is shared only while it equals what a
/// new load read (the user id is the key, the whole value is compared), so no user is ever
/// given another's, and a user changed in the store gets new copies from the first reload on.
/// The tables hold [`Weak`](std::sync::Weak)s: a copy lives as long as the entries that hold it.
#[derive(Debug, Default)]
struct Shared {
    users: Interner<Uuid, User>,
    memberships: Interner<Uuid, [Membership]>,
    identities: Interner<Uuid, UserIdentity>,
    scopes: Interner<Vec<String>, HeaderValue>,
    scope_lists: Interner<Vec<String>, [String]>,
    allow_lists: Interner<Vec<AllowListEntry>, [AllowListEntry]>,
}

/// The cache.
#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<KeyId, Arc<Entry>>,
    unknown: Option<Cache<KeyId, ()>>,
    generations: Generations,
    shared: Shared,
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
    /// An entry for a session that is not in the cache (`portcullis explain --user`): the
    /// identity and subject a cached one would have. No invalidation reaches it.
    pub fn detached(session: Session) -> Entry {
        let read = Read {
            sequence: 0,
            subscription: None,
        };
        Entry::new(session, read, &Generations::new(), &Shared::default())
    }

    fn new(session: Session, read: Read, gens: &Generations, shared: &Shared) -> Self {
        let (key_slot, user_slot) = gens.slots(session.key.id.as_str(), session.user.id);
        let touched = session.key.last_used.unix_timestamp();
        let session = shared.session(session);
        let identity = shared.identity(&session);
        let subject = Subject::new(&session.user, &session.memberships, &session.key);
        Entry {
            identity,
            subject,
            assertions: Issued::default(),
            session,
            loaded: Instant::now(),
            touched: AtomicI64::new(touched),
            failed: AtomicU64::new(0),
            read_at: read.sequence,
            subscription: read.subscription,
            key_slot,
            user_slot,
        }
    }

    /// Whether every invalidation published since this entry's store reads began has reached
    /// this replica: the subscription live then is still the live one.
    fn followed(&self, store: &Store) -> bool {
        self.subscription.is_some() && self.subscription == store.subscription()
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

// === impl Shared ===

impl Shared {
    /// `session` with the shared copies of its key's scope and allow lists, and of its user and
    /// memberships where they are equal.
    fn session(&self, session: Session) -> Session {
        let Session {
            mut key,
            user,
            memberships,
        } = session;
        key.scopes =
            self.scope_lists
                .share(key.scopes.to_vec(), |_| true, |list| Arc::from(&list[..]));
        key.allow_list = self.allow_lists.share(
            key.allow_list.to_vec(),
            |_| true,
            |list| Arc::from(&list[..]),
        );
        let id = user.id;
        let user = self
            .users
            .share(id, |live| *live == *user, |_| Arc::clone(&user));
        let memberships = self.memberships.share(
            id,
            |live| *live == *memberships,
            |_| Arc::clone(&memberships),
        );
        Session {
            key,
            user,
            memberships,
        }
    }

    /// The identity headers of `session`, with the shared copies of its user's values and of
    /// its scopes value.
    fn identity(&self, session: &Session) -> Identity {
        let user = &session.user;
        let values = Arc::new(UserIdentity::new(
            &user.username,
            &user.email,
            &user.id.to_string(),
            &user.name,
            session.role_names(),
        ));
        let values =
            self.identities
                .share(user.id, |live| *live == *values, |_| Arc::clone(&values));
        let scopes = self.scopes.get(session.key.scopes.to_vec(), |scopes| {
            Identity::scopes_value(scopes)
        });
        Identity::from_parts(values, scopes)
    }
}

// === impl Generations ===

impl Generations {
    fn new() -> Self {
        let slots = || (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        Generations {
            sequence: AtomicU64::new(0),
            all: AtomicU64::new(0),
            keys: slots(),
            users: slots(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The sequence now: note it before reading the store.
    fn now(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    fn slot(&self, what: impl Hash) -> u16 {
        // The remainder is below STRIPES, so it fits a u16 (two bytes per entry, not eight).
        u16::try_from(self.hasher.hash_one(what) % STRIPES as u64).unwrap_or(0)
    }

    /// The slots of a key id and a user id.
    fn slots(&self, key: &str, user: Uuid) -> (u16, u16) {
        (self.slot(key), self.slot(user))
    }

    /// Records an invalidation: it gets the next number, which its slot keeps (the highest
    /// wins when two race).
    fn bump(&self, what: &Invalidation) {
        let n = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let slot = match what {
            Invalidation::Key(id) => &self.keys[usize::from(self.slot(id.as_str()))],
            Invalidation::User(user) => &self.users[usize::from(self.slot(user))],
            Invalidation::All => &self.all,
        };
        slot.fetch_max(n, Ordering::SeqCst);
    }

    /// Whether an invalidation for this key slot or user slot (or everything) came after
    /// `read_at`.
    fn overtaken(&self, read_at: u64, key_slot: u16, user_slot: u16) -> bool {
        let after = |n: &AtomicU64| n.load(Ordering::SeqCst) > read_at;
        after(&self.all)
            || after(&self.keys[usize::from(key_slot)])
            || after(&self.users[usize::from(user_slot)])
    }

    /// Whether `entry` may still be served: no invalidation came after its store reads.
    fn holds(&self, entry: &Entry) -> bool {
        !self.overtaken(entry.read_at, entry.key_slot, entry.user_slot)
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
            generations: Generations::new(),
            shared: Shared::default(),
            ttl: cfg.cache_ttl,
            max_stale: cfg.max_stale,
            metrics,
        }
    }

    /// Resolves a key id: `Ok(None)` when no such key (or its user) exists.
    pub async fn lookup(
        &self,
        store: &Store,
        id: &KeyId,
    ) -> Result<Option<Arc<Entry>>, StoreError> {
        if let Some(entry) = self.entries.get(id).await {
            if entry.loaded.elapsed() < self.ttl
                && self.generations.holds(&entry)
                && entry.followed(store)
            {
                self.metrics.key_cache(CacheResult::Hit);
                return Ok(Some(entry));
            }
        } else if let Some(unknown) = &self.unknown {
            if unknown.contains_key(id) {
                self.metrics.key_cache(CacheResult::Unknown);
                return Ok(None);
            }
        }
        // Boxed: a miss's future (the store reads) would otherwise be part of every hit's.
        Box::pin(self.load(store, id)).await
    }

    /// The slow path: one load per key at a time; the stale entry is kept if the store fails
    /// and it is still within `max_stale`.
    async fn load(&self, store: &Store, id: &KeyId) -> Result<Option<Arc<Entry>>, StoreError> {
        let ttl = self.ttl;
        let stale_limit = self.ttl + self.max_stale;
        let metrics = &self.metrics;
        let gens = &self.generations;
        let shared = &self.shared;
        let asked = Instant::now();
        let result = self
            .entries
            .entry(*id)
            .and_try_compute_with(|existing| {
                // An entry an invalidation overtook is as good as none.
                let existing = existing.filter(|e| gens.holds(e.value()));
                async move {
                    if let Some(e) = &existing {
                        let e = e.value();
                        // Another caller reloaded it while we waited.
                        if e.loaded.elapsed() < ttl && e.followed(store) {
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
                    let loaded = load_fresh(store, id.as_str(), gens).await;
                    metrics.store_call(started.elapsed(), loaded.is_err());
                    match loaded {
                        Ok(Some((session, read))) => {
                            metrics.key_cache(CacheResult::Miss);
                            Ok(Op::Put(Arc::new(Entry::new(session, read, gens, shared))))
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
                    unknown.insert(*id, ()).await;
                }
                None
            }
        })
    }

    /// Applies an invalidation from this or another replica. From its return on, no entry or
    /// load that read the store before it is served.
    pub fn apply(&self, what: &Invalidation) {
        self.generations.bump(what);
        match what {
            // An id that is not a key id's shape names no cached entry (the generation bump
            // above still refuses a load of it in flight).
            Invalidation::Key(id) => {
                if let Some(id) = KeyId::parse(id) {
                    let entries = self.entries.clone();
                    // `invalidate` is async in moka's future cache; it only touches memory.
                    tokio::spawn(async move { entries.invalidate(&id).await });
                }
            }
            Invalidation::User(user) => {
                let user: Uuid = *user;
                if let Err(error) = self
                    .entries
                    .invalidate_entries_if(move |_, e| e.session.user.id == user)
                {
                    tracing::error!(error = %ErrorChain(&error), "could not invalidate a user's cached keys; clearing all");
                    self.entries.invalidate_all();
                }
            }
            Invalidation::All => self.entries.invalidate_all(),
        }
    }

    /// Whether no invalidation for `entry`'s key or user (or everything) has been applied
    /// since its store reads: three atomic loads. A collision of slots may answer false for
    /// an entry that still holds, never true for one that was overtaken.
    pub fn is_current(&self, entry: &Entry) -> bool {
        self.generations.holds(entry)
    }

    /// Applies every invalidation the store delivers, until the store's channel closes, and
    /// hands each to `then` once the cache has applied it (so that whoever `then` tells reads
    /// the store again rather than this cache's old entry).
    pub async fn listen(self: Arc<Self>, store: Store, then: impl Fn(&Invalidation)) {
        let mut rx = store.subscribe();
        loop {
            let what = match rx.recv().await {
                Ok(what) => what,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Invalidation::All,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            self.apply(&what);
            then(&what);
        }
    }
}

/// What was noted before a load's store reads: the invalidation sequence and the live
/// subscription.
struct Read {
    sequence: u64,
    subscription: Option<u64>,
}

/// Reads what a key id resolves to, with the invalidation sequence and the live subscription
/// noted before the reads: read again when an invalidation for the key or its user came
/// meanwhile (what was read may predate it); [`StoreError::Unavailable`] when that happens
/// [`LOAD_ATTEMPTS`] times.
async fn load_fresh(
    store: &Store,
    id: &str,
    gens: &Generations,
) -> Result<Option<(Session, Read)>, StoreError> {
    for _ in 0..LOAD_ATTEMPTS {
        let read = Read {
            subscription: store.subscription(),
            sequence: gens.now(),
        };
        let Some(session) = load_session(store, id).await? else {
            return Ok(None);
        };
        let (key_slot, user_slot) = gens.slots(id, session.user.id);
        if !gens.overtaken(read.sequence, key_slot, user_slot) {
            return Ok(Some((session, read)));
        }
    }
    Err(StoreError::unavailable(format!(
        "key {id} was invalidated during each of {LOAD_ATTEMPTS} reads"
    )))
}

/// Reads what a key id resolves to: the key, its user and the user's memberships, in one
/// store round trip ([`Store::session`]).
async fn load_session(store: &Store, id: &str) -> Result<Option<Session>, StoreError> {
    store.session(id).await
}

#[cfg(test)]
mod tests;
