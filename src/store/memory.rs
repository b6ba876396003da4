//! The `memory://` backend: the store as maps in this process, behind one `std` mutex that is
//! never held across an `.await` (every method here is synchronous).
//!
//! Expiry uses `tokio::time::Instant`, so tests can drive it with `tokio::time::pause()`. An
//! expired entry is invisible at once and freed by a sweep that runs at most once a minute,
//! on whichever call comes first.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::time::Instant;
use uuid::Uuid;

use super::directory::{UserPage, UserQuery};
use super::{fold, ApiKey, Invalidation, Membership, OidcLink, Organization, StoreError, User};

const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub(super) struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Invalidation>,
}

#[derive(Default)]
struct State {
    users: HashMap<Uuid, User>,
    emails: HashMap<String, Uuid>,
    usernames: HashMap<String, Uuid>,
    orgs: HashMap<Uuid, Organization>,
    org_names: HashMap<String, Uuid>,
    default_org: Option<Uuid>,
    /// Boxed to keep the store handle small (clippy's `large_enum_variant` on the backend).
    oidc: Box<OidcLinks>,
    /// By (user, organization).
    members: HashMap<(Uuid, Uuid), Membership>,
    /// Key records with the instant they vanish.
    keys: HashMap<String, (ApiKey, Instant)>,
    counters: HashMap<String, (u64, Instant)>,
    ephemeral: HashMap<String, (Vec<u8>, Instant)>,
    claims: HashMap<String, (Vec<u8>, Option<Instant>)>,
    next_sweep: Option<Instant>,
}

/// OpenID Connect links.
#[derive(Default)]
struct OidcLinks {
    /// (issuer, subject) → user.
    by_subject: HashMap<(String, String), Uuid>,
    /// User → issuer → subject.
    by_user: HashMap<Uuid, HashMap<String, String>>,
}

// === impl MemoryStore ===

impl MemoryStore {
    pub(super) fn new(capacity: usize) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            events: broadcast::channel(capacity).0,
        }
    }

    /// Locks the state, sweeping expired entries when a sweep is due. A panic while the lock
    /// was held cannot leave the maps half-updated in a way that matters more than losing the
    /// store, so a poisoned lock is used as it is.
    fn state(&self) -> (MutexGuard<'_, State>, Instant) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.next_sweep.is_none_or(|at| now >= at) {
            s.keys.retain(|_, (_, until)| *until > now);
            s.counters.retain(|_, (_, until)| *until > now);
            s.ephemeral.retain(|_, (_, until)| *until > now);
            s.claims
                .retain(|_, (_, until)| until.is_none_or(|until| until > now));
            s.next_sweep = Some(now + SWEEP_EVERY);
        }
        (s, now)
    }

    // --- users ---

    pub(super) fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let (mut s, _) = self.state();
        let (email, username) = (fold(&user.email), fold(&user.username));
        if s.emails.contains_key(&email) {
            return Err(StoreError::Conflict { field: "email" });
        }
        if s.usernames.contains_key(&username) {
            return Err(StoreError::Conflict { field: "username" });
        }
        if s.users.contains_key(&user.id) {
            return Err(StoreError::Conflict { field: "id" });
        }
        s.emails.insert(email, user.id);
        s.usernames.insert(username, user.id);
        s.users.insert(user.id, user.clone());
        Ok(())
    }

    pub(super) fn user(&self, id: Uuid) -> Option<User> {
        self.state().0.users.get(&id).cloned()
    }

    pub(super) fn user_by_email(&self, email: &str) -> Option<User> {
        let (s, _) = self.state();
        let id = s.emails.get(&fold(email))?;
        s.users.get(id).cloned()
    }

    pub(super) fn user_by_username(&self, username: &str) -> Option<User> {
        let (s, _) = self.state();
        let id = s.usernames.get(&fold(username))?;
        s.users.get(id).cloned()
    }

    pub(super) fn users(&self) -> Vec<User> {
        self.state().0.users.values().cloned().collect()
    }

    /// Filters every user under the lock: one replica's users, where a scan is cheap.
    pub(super) fn list_users(&self, query: &UserQuery) -> UserPage {
        let (s, _) = self.state();
        let cursor = query.after_id.and_then(|id| s.users.get(&id));
        let users: Vec<User> = s
            .users
            .values()
            .filter(|u| query.matches(u))
            .cloned()
            .collect();
        query.answer(users, cursor)
    }

    pub(super) fn has_users(&self) -> bool {
        !self.state().0.users.is_empty()
    }

    /// Runs `change` on the stored user under the lock: nothing can come in between.
    pub(super) fn modify_user(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut User) -> bool,
    ) -> Option<User> {
        let (mut s, _) = self.state();
        let stored = s.users.get_mut(&id)?;
        let mut user = stored.clone();
        if change(&mut user) {
            *stored = user;
        }
        Some(stored.clone())
    }

    pub(super) fn update_user(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        let (mut s, _) = self.state();
        let Some(old) = s.users.get(&id) else {
            return Ok(None);
        };
        let mut user = old.clone();
        if !change(&mut user) {
            return Ok(Some(user));
        }
        let (old_email, old_username) = (fold(&old.email), fold(&old.username));
        let (email, username) = (fold(&user.email), fold(&user.username));
        if s.emails.get(&email).is_some_and(|id| *id != user.id) {
            return Err(StoreError::Conflict { field: "email" });
        }
        if s.usernames.get(&username).is_some_and(|id| *id != user.id) {
            return Err(StoreError::Conflict { field: "username" });
        }
        s.emails.remove(&old_email);
        s.usernames.remove(&old_username);
        s.emails.insert(email, user.id);
        s.usernames.insert(username, user.id);
        s.users.insert(user.id, user.clone());
        Ok(Some(user))
    }

    pub(super) fn delete_user(&self, id: Uuid) -> Vec<String> {
        let (mut s, now) = self.state();
        if let Some(old) = s.users.remove(&id) {
            s.emails.remove(&fold(&old.email));
            s.usernames.remove(&fold(&old.username));
        }
        for (issuer, subject) in s.oidc.by_user.remove(&id).unwrap_or_default() {
            s.oidc.by_subject.remove(&(issuer, subject));
        }
        s.members.retain(|(user, _), _| *user != id);
        take_keys_of(&mut s, id, now)
    }

    pub(super) fn user_by_oidc(&self, issuer: &str, subject: &str) -> Option<User> {
        let (s, _) = self.state();
        let id = s
            .oidc
            .by_subject
            .get(&(issuer.to_owned(), subject.to_owned()))?;
        s.users.get(id).cloned()
    }

    pub(super) fn link_oidc(&self, user: Uuid, issuer: &str, subject: &str) -> OidcLink {
        let (mut s, _) = self.state();
        if !s.users.contains_key(&user) {
            return OidcLink::NoSuchUser;
        }
        // In the order of the Redis backend: the user's side, then the subject's.
        let oidc = &mut *s.oidc;
        let linked = oidc.by_user.get(&user).and_then(|l| l.get(issuer));
        if linked.is_some_and(|linked| linked != subject) {
            return OidcLink::UserHasOtherSubject;
        }
        let pair = (issuer.to_owned(), subject.to_owned());
        if oidc.by_subject.get(&pair).is_some_and(|id| *id != user) {
            return OidcLink::SubjectTaken;
        }
        oidc.by_user
            .entry(user)
            .or_default()
            .insert(issuer.to_owned(), subject.to_owned());
        oidc.by_subject.insert(pair, user);
        OidcLink::Linked
    }

    pub(super) fn set_if_absent(&self, name: &str, value: &[u8], ttl: Option<Duration>) -> bool {
        let (mut s, now) = self.state();
        let live = s
            .claims
            .get(name)
            .is_some_and(|(_, until)| until.is_none_or(|until| until > now));
        if live {
            return false;
        }
        s.claims
            .insert(name.to_owned(), (value.to_vec(), ttl.map(|t| now + t)));
        true
    }

    // --- organizations and memberships ---

    pub(super) fn create_org(&self, org: &Organization) -> Result<(), StoreError> {
        let (mut s, _) = self.state();
        let name = fold(&org.name);
        if s.org_names.contains_key(&name) {
            return Err(StoreError::Conflict { field: "name" });
        }
        if org.is_default && s.default_org.is_some() {
            return Err(StoreError::Conflict {
                field: "is_default",
            });
        }
        if s.orgs.contains_key(&org.id) {
            return Err(StoreError::Conflict { field: "id" });
        }
        if org.is_default {
            s.default_org = Some(org.id);
        }
        s.org_names.insert(name, org.id);
        s.orgs.insert(org.id, org.clone());
        Ok(())
    }

    pub(super) fn update_org(&self, org: &Organization) -> Result<bool, StoreError> {
        let (mut s, _) = self.state();
        let Some(old) = s.orgs.get(&org.id).cloned() else {
            return Ok(false);
        };
        let (before, after) = (fold(&old.name), fold(&org.name));
        if before != after && s.org_names.contains_key(&after) {
            return Err(StoreError::Conflict { field: "name" });
        }
        s.org_names.remove(&before);
        s.org_names.insert(after, org.id);
        let mut new = org.clone();
        new.is_default = old.is_default;
        s.orgs.insert(org.id, new);
        Ok(true)
    }

    pub(super) fn delete_org(&self, id: Uuid) -> Option<Vec<Uuid>> {
        let (mut s, _) = self.state();
        let old = s.orgs.remove(&id)?;
        s.org_names.remove(&fold(&old.name));
        if s.default_org == Some(id) {
            s.default_org = None;
        }
        let members: Vec<Uuid> = s
            .members
            .keys()
            .filter(|(_, org)| *org == id)
            .map(|(user, _)| *user)
            .collect();
        s.members.retain(|(_, org), _| *org != id);
        Some(members)
    }

    pub(super) fn org(&self, id: Uuid) -> Option<Organization> {
        self.state().0.orgs.get(&id).cloned()
    }

    pub(super) fn org_by_name(&self, name: &str) -> Option<Organization> {
        let (s, _) = self.state();
        let id = s.org_names.get(&fold(name))?;
        s.orgs.get(id).cloned()
    }

    pub(super) fn default_org(&self) -> Option<Organization> {
        let (s, _) = self.state();
        s.orgs.get(&s.default_org?).cloned()
    }

    pub(super) fn orgs(&self) -> Vec<Organization> {
        self.state().0.orgs.values().cloned().collect()
    }

    pub(super) fn add_member(&self, m: &Membership) {
        let (mut s, _) = self.state();
        s.members.insert((m.user_id, m.organization_id), m.clone());
    }

    pub(super) fn membership(&self, user: Uuid, org: Uuid) -> Option<Membership> {
        self.state().0.members.get(&(user, org)).cloned()
    }

    pub(super) fn memberships_of(&self, user: Uuid) -> Vec<Membership> {
        let (s, _) = self.state();
        s.members
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub(super) fn members_of(&self, org: Uuid) -> Vec<Membership> {
        let (s, _) = self.state();
        s.members
            .iter()
            .filter(|((_, o), _)| *o == org)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub(super) fn remove_member(&self, user: Uuid, org: Uuid) -> bool {
        self.state().0.members.remove(&(user, org)).is_some()
    }

    // --- API keys ---

    pub(super) fn insert_key(
        &self,
        key: &ApiKey,
        expire_record_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (mut s, now) = self.state();
        let live = |(k, until): &(ApiKey, Instant)| *until > now && k.user_id == key.user_id;
        if !key.token_name.is_empty()
            && s.keys
                .values()
                .any(|e| live(e) && e.0.token_name == key.token_name)
        {
            return Err(StoreError::Conflict { field: "name" });
        }
        if s.keys.get(&key.id).is_some_and(|(_, until)| *until > now) {
            return Err(StoreError::Conflict { field: "id" });
        }
        s.keys.insert(
            key.id.clone(),
            (key.clone(), instant_at(now, expire_record_at)),
        );
        Ok(())
    }

    pub(super) fn key(&self, id: &str) -> Option<ApiKey> {
        let (s, now) = self.state();
        s.keys
            .get(id)
            .filter(|(_, until)| *until > now)
            .map(|(k, _)| k.clone())
    }

    pub(super) fn keys_of(&self, user: Uuid) -> Vec<ApiKey> {
        let (s, now) = self.state();
        s.keys
            .values()
            .filter(|(k, until)| *until > now && k.user_id == user)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(super) fn key_by_name(&self, user: Uuid, name: &str) -> Option<ApiKey> {
        if name.is_empty() {
            return None;
        }
        let (s, now) = self.state();
        s.keys
            .values()
            .find(|(k, until)| *until > now && k.user_id == user && k.token_name == name)
            .map(|(k, _)| k.clone())
    }

    /// Runs `change` on the live stored key under the lock; when it returns a record expiry,
    /// the changed key is kept until then.
    pub(super) fn modify_key(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ApiKey) -> Option<OffsetDateTime>,
    ) -> Option<ApiKey> {
        let (mut s, now) = self.state();
        let (stored, until) = s.keys.get_mut(id).filter(|(_, until)| *until > now)?;
        let mut key = stored.clone();
        if let Some(expire_record_at) = change(&mut key) {
            *stored = key;
            *until = instant_at(now, expire_record_at);
        }
        Some(stored.clone())
    }

    pub(super) fn delete_key(&self, id: &str) -> bool {
        let (mut s, now) = self.state();
        s.keys.remove(id).is_some_and(|(_, until)| until > now)
    }

    pub(super) fn delete_keys_of(&self, user: Uuid) -> Vec<String> {
        let (mut s, now) = self.state();
        take_keys_of(&mut s, user, now)
    }

    // --- counters ---

    pub(super) fn incr_window(&self, name: &str, window: Duration) -> u64 {
        let (mut s, now) = self.state();
        let entry = s
            .counters
            .entry(name.to_owned())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        entry.0
    }

    pub(super) fn counter(&self, name: &str) -> u64 {
        let (s, now) = self.state();
        s.counters
            .get(name)
            .filter(|(_, until)| *until > now)
            .map_or(0, |(n, _)| *n)
    }

    pub(super) fn reset_counter(&self, name: &str) {
        self.state().0.counters.remove(name);
    }

    // --- single-use values ---

    pub(super) fn put_ephemeral(&self, name: &str, value: &[u8], ttl: Duration) {
        let (mut s, now) = self.state();
        s.ephemeral
            .insert(name.to_owned(), (value.to_vec(), now + ttl));
    }

    pub(super) fn take_ephemeral(&self, name: &str) -> Option<Vec<u8>> {
        let (mut s, now) = self.state();
        s.ephemeral
            .remove(name)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v)
    }

    pub(super) fn take_ephemeral_if(&self, name: &str, expected: &[u8]) -> bool {
        let (mut s, now) = self.state();
        let holds = s
            .ephemeral
            .get(name)
            .is_some_and(|(v, until)| *until > now && v == expected);
        if holds {
            s.ephemeral.remove(name);
        }
        holds
    }

    pub(super) fn get_ephemeral(&self, name: &str) -> Option<Vec<u8>> {
        let (s, now) = self.state();
        s.ephemeral
            .get(name)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    // --- invalidation ---

    pub(super) fn publish(&self, what: Invalidation) {
        // No receiver is not an error: nobody caches anything.
        let _ = self.events.send(what);
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.events.subscribe()
    }
}

/// Removes every live key of `user`; returns their ids.
fn take_keys_of(s: &mut State, user: Uuid, now: Instant) -> Vec<String> {
    let ids: Vec<String> = s
        .keys
        .iter()
        .filter(|(_, (k, _))| k.user_id == user)
        .map(|(id, _)| id.clone())
        .collect();
    ids.into_iter()
        .filter(|id| s.keys.remove(id).is_some_and(|(_, until)| until > now))
        .collect()
}

/// The instant at which wall-clock time `at` comes, measured from now (at once if it has
/// passed).
fn instant_at(now: Instant, at: OffsetDateTime) -> Instant {
    let left = Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
    // Beyond what an Instant can hold is as good as never.
    now.checked_add(left)
        .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)))
}
