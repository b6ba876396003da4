//! The directory index on Redis: what [`RedisStore::list_users`] reads instead of every user
//! record (key layout in [`crate::store::keys`]; costs in `docs/directory.md`).
//!
//! Every user has one *entry*, `<lower-cased username>\n<lower-cased email>\n<id>`, in the
//! ordered set `{dir}:users` (all scores 0, so `ZRANGE … BYLEX` walks it in Coder's order, by
//! username) and in one tag set per status, login type and site role it has. A query takes
//! its page straight from the ordered set or from one tag set, or from the intersection of
//! the unions of the tag sets it names, built by one script in the `{dir}` slot. Free text
//! reads the entries after the cursor and matches their username and email here.
//!
//! # Keeping it in step
//! The index lives in its own slot, so it cannot change in the script that writes a user
//! record (on a Cluster): every user write ([`RedisStore::sync_directory`]) is followed by a
//! step that reads the record, moves the entry to match it (a script that applies only if the
//! entry is still the one it read), and reads the record again, starting over when the
//! record changed meanwhile. So once the writes of a user stop, the last of their syncs has
//! left the entry as the record is, whatever the order the syncs ran in. A write answers
//! success only after its sync. A crash between a write and its sync leaves one entry stale
//! until that user is written again; [`RedisStore::list_users`] reads the records of the page
//! and leaves out any that the query does not match, so a stale entry can only drop a user
//! from a result or miscount, never show one that does not match.
//!
//! # Data written before the index existed
//! The key `{dir}:built` says the index holds every user. Until a replica has seen it, its
//! first directory query syncs every user in `users` (and every entry whose user is gone),
//! then sets it: a migration done lazily, because Portcullis never waits for Redis at
//! start-up. Replicas may run it at once; syncs are idempotent. Deleting `{dir}:built` makes
//! the next query (on a replica that has not yet seen it) run it again.

use std::sync::atomic::Ordering;

use futures_util::future::try_join_all;
use uuid::Uuid;

use super::RedisStore;
use crate::store::directory::{UserPage, UserQuery};
use crate::store::{fold, StoreError, User};

/// How many times a sync starts over on a record that keeps changing.
const SYNC_ATTEMPTS: usize = 16;

/// How many entries a free-text scan reads per command.
const SCAN_CHUNK: usize = 2000;

/// How many users the migration syncs at once.
const MIGRATION_BATCH: usize = 64;

// === impl RedisStore ===

impl RedisStore {
    /// Answers a directory query; see the module doc.
    pub(in crate::store) async fn list_users(
        &self,
        query: &UserQuery,
    ) -> Result<UserPage, StoreError> {
        self.ensure_directory().await?;
        let cursor = match query.after_id {
            Some(id) => match self.user(id).await? {
                Some(user) => Some(user),
                None => return Ok(UserPage::default()),
            },
            None => None,
        };
        // A handful of users named outright: read their records.
        let named = match (&query.only, &query.username, &query.email) {
            (Some(only), _, _) => {
                let ids: Vec<String> = only.iter().map(Uuid::to_string).collect();
                Some(
                    self.records::<User>(&ids, |id| id.parse().ok().map(|id| self.keys.user(id)))
                        .await?
                        .0,
                )
            }
            (None, Some(username), _) => {
                Some(Vec::from_iter(self.user_by_username(username).await?))
            }
            (None, None, Some(email)) => Some(Vec::from_iter(self.user_by_email(email).await?)),
            (None, None, None) => None,
        };
        if let Some(users) = named {
            return Ok(query.answer(users, cursor.as_ref()));
        }
        let start = cursor
            .as_ref()
            .map_or_else(|| "-".to_owned(), |c| format!("({}", entry_of(c).0));
        let groups: Vec<Vec<String>> = [
            tags("status", query.status.iter().map(|s| s.as_str())),
            tags("role", query.role_filter().iter().map(String::as_str)),
            tags("login", query.login_types.iter().map(|l| l.as_str())),
        ]
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect();
        let scan = !query.search.is_empty();
        let scratch = self
            .keys
            .directory(&format!("tmp:{}", Uuid::new_v4().simple()));
        let ordered = self.keys.directory("users");
        // Free text over the whole directory, or over one tag set: read it here in chunks,
        // each a short command, rather than in one reply that could hold Redis up.
        if scan && groups.iter().flatten().count() <= 1 {
            let set = groups
                .first()
                .and_then(|g| g.first())
                .map_or(ordered, |t| self.tag_key(t));
            let selected = self.scan_entries(&set, start, &fold(&query.search)).await?;
            let count = selected.len() as u64;
            return self.page_of(query, query.window(selected), count).await;
        }
        let mut keys: Vec<String> = vec![ordered];
        keys.extend(["a", "b", "c"].map(|s| format!("{scratch}:{s}")));
        keys.extend(groups.iter().flatten().map(|t| self.tag_key(t)));
        let limit = if query.limit == 0 {
            "-1".to_owned()
        } else {
            query.limit.to_string()
        };
        let mut args: Vec<String> = vec![
            start,
            query.offset.to_string(),
            limit,
            if scan { "1" } else { "0" }.to_owned(),
        ];
        args.extend(groups.iter().map(|g| g.len().to_string()));
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let answer: Vec<redis::Value> = self
            .eval(&self.scripts.directory_query, &key_refs, &args)
            .await?;
        let mut answer = answer.into_iter();
        let (count, entries): (u64, Vec<String>) = if scan {
            let needle = fold(&query.search);
            let selected: Vec<String> = strings(answer)
                .into_iter()
                .filter(|e| entry_matches(e, &needle))
                .collect();
            let count = selected.len() as u64;
            let page = query.window(selected);
            (count, page)
        } else {
            let count = match answer.next() {
                Some(redis::Value::Int(n)) => u64::try_from(n).unwrap_or(0),
                _ => 0,
            };
            (count, strings(answer))
        };
        self.page_of(query, entries, count).await
    }

    /// The users of the page `entries`, of `count` selected.
    async fn page_of(
        &self,
        query: &UserQuery,
        entries: Vec<String>,
        count: u64,
    ) -> Result<UserPage, StoreError> {
        let ids: Vec<String> = entries
            .iter()
            .filter_map(|e| e.rsplit('\n').next().map(str::to_owned))
            .collect();
        let (users, _) = self
            .records::<User>(&ids, |id| id.parse().ok().map(|id| self.keys.user(id)))
            .await?;
        // A stale entry (see the module doc) leaves its user out rather than showing a user
        // the query does not select.
        let users: Vec<User> = users.into_iter().filter(|u| query.matches(u)).collect();
        Ok(UserPage::new(users, count))
    }

    /// The entries of the sorted set `set` after the bound `start` whose username or email
    /// contains `needle`, read in chunks of [`SCAN_CHUNK`].
    async fn scan_entries(
        &self,
        set: &str,
        mut start: String,
        needle: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut selected = Vec::new();
        loop {
            let chunk: Vec<String> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(set)
                        .arg(&start)
                        .arg("+")
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(SCAN_CHUNK),
                )
                .await?;
            let Some(last) = chunk.last() else {
                return Ok(selected);
            };
            start = format!("({last}");
            let full = chunk.len() == SCAN_CHUNK;
            selected.extend(chunk.into_iter().filter(|e| entry_matches(e, needle)));
            if !full {
                return Ok(selected);
            }
        }
    }

    /// Moves the directory entry of user `id` to match its record (removes it when there is
    /// no record); see the module doc, "Keeping it in step".
    pub(super) async fn sync_directory(&self, id: Uuid) -> Result<(), StoreError> {
        let record = self.keys.user(id);
        let entries = self.keys.directory("entry");
        let ordered = self.keys.directory("users");
        let sid = id.to_string();
        for _ in 0..SYNC_ATTEMPTS {
            let read: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&record)).await?;
            let wanted = match &read {
                Some(raw) => {
                    let user: User = serde_json::from_slice(raw)
                        .map_err(|e| StoreError::corrupt_because(record.clone(), e))?;
                    let (entry, tags) = entry_of(&user);
                    Some((entry, tags))
                }
                None => None,
            };
            let value = wanted
                .as_ref()
                .map_or_else(String::new, |(e, t)| stored(e, t));
            for _ in 0..SYNC_ATTEMPTS {
                let current: Option<String> = self
                    .query(redis::cmd("HGET").arg(&entries).arg(&sid))
                    .await?;
                let current = current.unwrap_or_default();
                if current == value {
                    break;
                }
                let mut old = current.split('\t');
                let old_entry = old.next().unwrap_or("").to_owned();
                let old_tags: Vec<String> = old.map(str::to_owned).collect();
                let mut keys = vec![entries.clone(), ordered.clone()];
                keys.extend(old_tags.iter().map(|t| self.tag_key(t)));
                let new_entry = match &wanted {
                    Some((entry, tags)) => {
                        keys.extend(tags.iter().map(|t| self.tag_key(t)));
                        entry.clone()
                    }
                    None => String::new(),
                };
                let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let args = [
                    sid.clone(),
                    current.clone(),
                    old_tags.len().to_string(),
                    old_entry,
                    value.clone(),
                    new_entry,
                ];
                let moved: i64 = self
                    .eval(&self.scripts.directory_put, &key_refs, &args)
                    .await?;
                if moved == 1 {
                    break;
                }
            }
            let again: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&record)).await?;
            if again == read {
                return Ok(());
            }
        }
        Err(StoreError::unavailable(format!(
            "{record} kept changing during {SYNC_ATTEMPTS} attempts to index it"
        )))
    }

    /// Builds the directory index from the user records once (see the module doc, "Data
    /// written before the index existed").
    async fn ensure_directory(&self) -> Result<(), StoreError> {
        if self.directory_built.load(Ordering::Acquire) {
            return Ok(());
        }
        let marker = self.keys.directory("built");
        let built: Option<String> = self.query(redis::cmd("GET").arg(&marker)).await?;
        if built.is_none() {
            let mut ids = self.members(&self.keys.users()).await?;
            let indexed: Vec<String> = self
                .query(redis::cmd("HKEYS").arg(self.keys.directory("entry")))
                .await?;
            ids.extend(indexed);
            ids.sort();
            ids.dedup();
            let ids: Vec<Uuid> = ids.iter().filter_map(|id| id.parse().ok()).collect();
            for batch in ids.chunks(MIGRATION_BATCH) {
                try_join_all(batch.iter().map(|id| self.sync_directory(*id))).await?;
            }
            self.query::<()>(redis::cmd("SET").arg(&marker).arg("1"))
                .await?;
            tracing::info!(users = ids.len(), "store: built the user directory index");
        }
        self.directory_built.store(true, Ordering::Release);
        Ok(())
    }

    fn tag_key(&self, tag: &str) -> String {
        self.keys.directory(&format!("by:{tag}"))
    }
}

// === helpers ===

/// A user's entry in the ordered sets, and its tags.
fn entry_of(user: &User) -> (String, Vec<String>) {
    let entry = format!(
        "{}\n{}\n{}",
        fold(&user.username),
        fold(&user.email),
        user.id
    );
    let mut tags = vec![
        format!("status:{}", user.status.as_str()),
        format!("login:{}", user.login_type.as_str()),
    ];
    tags.extend(user.roles.iter().map(|r| format!("role:{r}")));
    tags.sort();
    tags.dedup();
    (entry, tags)
}

/// Whether the username or email of an entry contains `needle` (lower-cased).
fn entry_matches(entry: &str, needle: &str) -> bool {
    let mut parts = entry.split('\n');
    let (name, email) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    name.contains(needle) || email.contains(needle)
}

/// What the `entry` hash stores for a user: the entry and its tags, tab-separated.
fn stored(entry: &str, tags: &[String]) -> String {
    let mut value = entry.to_owned();
    for tag in tags {
        value.push('\t');
        value.push_str(tag);
    }
    value
}

/// The tags of one filter group.
fn tags<'a>(kind: &str, values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values.map(|v| format!("{kind}:{v}")).collect()
}

/// The bulk strings of a script's answer.
fn strings(values: impl IntoIterator<Item = redis::Value>) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|v| match v {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
            _ => None,
        })
        .collect()
}
