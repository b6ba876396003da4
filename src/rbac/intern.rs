//! One shared copy of what many subjects fold the same way. A [`Subject`](super::Subject)'s
//! permission sets take about a kilobyte each (two masks per resource type); the sets of a
//! user's roles are the same for every key of that user, and for every user with the same
//! roles, and those of a key's scopes are the same for every key with the same scopes. A cached
//! session holds an [`Arc`] to the one copy instead of its own (issue 18: memory per cached
//! session).
//!
//! The table maps what the value is folded from to a [`Weak`] of it, so it never keeps a value
//! alive: the values live as long as the subjects that hold them. [`Interner::share`] serves
//! values that are not a function of their key (a user's record, by user id): the live value is
//! shared only when it equals the one wanted, and is otherwise replaced. Dead slots are swept when the
//! table has doubled since the last sweep, so it holds at most about twice the live values. It
//! is only touched when a subject is built (a cache miss), never on the hit path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

/// The table of shared values, by what they are made from.
#[derive(Debug)]
pub struct Interner<K, V: ?Sized> {
    inner: Mutex<Table<K, V>>,
}

#[derive(Debug)]
struct Table<K, V: ?Sized> {
    map: HashMap<K, Weak<V>>,
    sweep_at: usize,
}

/// The table's size below which it is never swept.
const MIN_SWEEP: usize = 64;

// === impl Interner ===

impl<K: Hash + Eq, V: ?Sized> Interner<K, V> {
    /// An empty table.
    pub fn new() -> Self {
        Interner {
            inner: Mutex::new(Table {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// The shared value made from `key`: the live one if there is one, else `make(&key)`, kept
    /// for the next caller.
    pub fn get(&self, key: K, make: impl FnOnce(&K) -> V) -> Arc<V>
    where
        V: Sized,
    {
        self.share(key, |_| true, |key| Arc::new(make(key)))
    }

    /// The live value kept for `key` if `same` accepts it, else `make(&key)`, kept for the next
    /// caller in place of the other: for values that `key` names but does not determine, so
    /// two callers share only a value equal to the one each wanted.
    pub fn share(
        &self,
        key: K,
        same: impl FnOnce(&V) -> bool,
        make: impl FnOnce(&K) -> Arc<V>,
    ) -> Arc<V> {
        // A panic under the lock cannot leave the map inconsistent: each change is one insert
        // or one retain.
        let mut table = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = table.map.get(&key).and_then(Weak::upgrade) {
            if same(&live) {
                return live;
            }
        }
        if table.map.len() >= table.sweep_at {
            table.map.retain(|_, value| value.strong_count() > 0);
            table.sweep_at = (table.map.len() * 2).max(MIN_SWEEP);
        }
        let value = make(&key);
        table.map.insert(key, Arc::downgrade(&value));
        value
    }

    /// How many slots the table holds, live or not yet swept.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.inner.lock().map(|t| t.map.len()).unwrap_or(0)
    }
}

impl<K: Hash + Eq, V: ?Sized> Default for Interner<K, V> {
    fn default() -> Self {
        Interner::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_share_one_value_and_different_keys_do_not() {
        let table = Interner::new();
        let a = table.get("a", |k| k.to_string());
        let again = table.get("a", |_| unreachable!("a live value is made again"));
        let b = table.get("b", |k| k.to_string());
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(*b, "b");
    }

    #[test]
    fn a_value_no_subject_holds_is_made_again() {
        let table = Interner::new();
        drop(table.get(1, |_| "first"));
        assert_eq!(*table.get(1, |_| "second"), "second");
    }

    #[test]
    fn a_shared_value_is_served_only_while_it_is_the_one_wanted() {
        let table: Interner<u32, str> = Interner::new();
        let a = table.share(1, |_| unreachable!("nothing is live"), |_| Arc::from("a"));
        let again = table.share(1, |live| live == "a", |_| Arc::from("a"));
        assert!(Arc::ptr_eq(&a, &again));
        // Another value under the same key replaces it for later callers; holders of the old
        // one keep theirs.
        let b = table.share(1, |live| live == "b", |_| Arc::from("b"));
        assert_eq!((&*a, &*b), ("a", "b"));
        assert!(Arc::ptr_eq(
            &b,
            &table.share(1, |live| live == "b", |_| Arc::from("b"))
        ));
        // Equal values under other keys are not shared.
        let other = table.share(2, |live| live == "b", |_| Arc::from("b"));
        assert!(!Arc::ptr_eq(&b, &other));
    }

    #[test]
    fn dead_slots_are_swept_so_the_table_stays_bounded() {
        let table = Interner::new();
        let kept: Vec<_> = (0..10).map(|i| table.get(i, |i| *i)).collect();
        for i in 10..10_000 {
            drop(table.get(i, |i| *i));
        }
        assert!(table.slots() <= 2 * MIN_SWEEP, "{} slots", table.slots());
        for (i, value) in kept.iter().enumerate() {
            assert!(Arc::ptr_eq(value, &table.get(i, |_| usize::MAX)));
        }
    }
}
