//! The watchlist: the open connections a session authorized (upgraded tunnels, streaming
//! responses), by key id and by user id, so that an invalidation reaches them and not only the
//! key cache.
//!
//! The list only knows who is watched and pokes them; deciding whether a poked connection may
//! stay open is its watcher's business (`http::watch`), which reads the session again and
//! judges its route again.
//!
//! Cost: a watched connection is one entry in one of [`SHARDS`] maps (chosen by its key id),
//! indexed by key id and by user id: registration and removal are O(1) (hash-map and hash-set
//! inserts and removes) under that shard's lock, which is a std `Mutex` held for no `.await`.
//! An invalidation of a key locks one shard; of a user, or of everything, each shard in turn.
//! A poke is a [`Notify`] permit: a watcher busy elsewhere finds it when it next waits, so no
//! poke is lost.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::store::Invalidation;

/// Independent locks of the watchlist: registrations of different keys rarely meet.
pub const SHARDS: usize = 64;

/// The watched connections of this process.
#[derive(Debug)]
pub struct Watchlist {
    shards: Box<[Mutex<Shard>]>,
    next: AtomicU64,
    hasher: RandomState,
}

/// One watched connection's place on the list: dropping it takes the connection off.
#[derive(Debug)]
pub struct Watched {
    list: Arc<Watchlist>,
    shard: usize,
    id: u64,
    poke: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u64, Entry>,
    keys: HashMap<Box<str>, HashSet<u64>>,
    users: HashMap<Uuid, HashSet<u64>>,
}

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    user: Uuid,
    poke: Arc<Notify>,
}

// === impl Watchlist ===

impl Default for Watchlist {
    fn default() -> Self {
        Watchlist::new()
    }
}

impl Watchlist {
    /// An empty list.
    pub fn new() -> Self {
        Watchlist {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next: AtomicU64::new(0),
            hasher: RandomState::new(),
        }
    }

    /// Puts a connection of key `key` (of user `user`) on the list until the returned
    /// [`Watched`] is dropped.
    pub fn watch(self: &Arc<Self>, key: &str, user: Uuid) -> Watched {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shard = self.shard_of(key);
        let poke = Arc::new(Notify::new());
        let mut s = self.lock(shard);
        match s.keys.get_mut(key) {
            Some(ids) => {
                ids.insert(id);
            }
            None => {
                s.keys.insert(key.into(), HashSet::from([id]));
            }
        }
        s.users.entry(user).or_default().insert(id);
        let entry = Entry {
            key: key.into(),
            user,
            poke: poke.clone(),
        };
        s.entries.insert(id, entry);
        drop(s);
        Watched {
            list: self.clone(),
            shard,
            id,
            poke,
        }
    }

    /// Pokes every watched connection that `what` may concern.
    pub fn apply(&self, what: &Invalidation) {
        match what {
            Invalidation::Key(key) => {
                let s = self.lock(self.shard_of(key));
                for id in s.keys.get(key.as_str()).into_iter().flatten() {
                    s.poke(*id);
                }
            }
            Invalidation::User(user) => {
                for shard in 0..SHARDS {
                    let s = self.lock(shard);
                    for id in s.users.get(user).into_iter().flatten() {
                        s.poke(*id);
                    }
                }
            }
            Invalidation::All => {
                for shard in 0..SHARDS {
                    for entry in self.lock(shard).entries.values() {
                        entry.poke.notify_one();
                    }
                }
            }
        }
    }

    /// How many connections are on the list.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).entries.len()).sum()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, key: &str) -> usize {
        // The remainder is below SHARDS, so it fits a usize.
        usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic under the lock leaves maps that are still consistent enough to read and
        // remove from: every change is a single insert or remove.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl Shard ===

impl Shard {
    fn poke(&self, id: u64) {
        if let Some(entry) = self.entries.get(&id) {
            entry.poke.notify_one();
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        if let Some(ids) = self.keys.get_mut(&entry.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.keys.remove(&entry.key);
            }
        }
        if let Some(ids) = self.users.get_mut(&entry.user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.users.remove(&entry.user);
            }
        }
    }
}

// === impl Watched ===

impl Watched {
    /// Resolves when an invalidation that may concern this connection has been applied since
    /// the last time it resolved (or since the connection was put on the list).
    pub async fn poked(&self) {
        self.poke.notified().await;
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.list.lock(self.shard).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether `w` was poked (without waiting for a poke to come).
    async fn was_poked(w: &Watched) -> bool {
        tokio::time::timeout(Duration::ZERO, w.poked())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_invalidation_pokes_the_connections_of_its_key_or_user_and_no_others() {
        let list = Arc::new(Watchlist::new());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = list.watch("aaaaaaaaaa", alice);
        let a1_again = list.watch("aaaaaaaaaa", alice);
        let a2 = list.watch("aaaaaaaaab", alice);
        let b1 = list.watch("bbbbbbbbbb", bob);
        let cases: [(Invalidation, [bool; 4]); 4] = [
            (
                Invalidation::Key("aaaaaaaaaa".into()),
                [true, true, false, false],
            ),
            (Invalidation::Key("cccccccccc".into()), [false; 4]),
            (Invalidation::User(alice), [true, true, true, false]),
            (Invalidation::All, [true; 4]),
        ];
        for (what, expected) in cases {
            list.apply(&what);
            let mut got = [false; 4];
            for (g, w) in got.iter_mut().zip([&a1, &a1_again, &a2, &b1]) {
                *g = was_poked(w).await;
            }
            assert_eq!(got, expected, "{what:?}");
        }
    }

    #[tokio::test]
    async fn a_dropped_watch_leaves_the_list_and_its_indexes() {
        let list = Arc::new(Watchlist::new());
        let user = Uuid::new_v4();
        let first = list.watch("aaaaaaaaaa", user);
        let second = list.watch("aaaaaaaaaa", user);
        assert_eq!(list.len(), 2);
        drop(first);
        assert_eq!(list.len(), 1);
        list.apply(&Invalidation::Key("aaaaaaaaaa".into()));
        assert!(was_poked(&second).await);
        drop(second);
        assert!(list.is_empty());
        let shard = list.lock(list.shard_of("aaaaaaaaaa"));
        assert!(shard.keys.is_empty() && shard.users.is_empty());
    }
}
