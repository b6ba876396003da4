//! What an API key id resolves to for the key cache — the key, its user, the user's
//! memberships — read in as few round trips as the topology allows: a cache miss pays for
//! them on the request path.
//!
//! - Standalone and Sentinel: one script run reads all three (`SESSION`), so a miss costs one
//!   round trip, and what it returns is one snapshot of the store. The script reaches the
//!   user's keys through the user id in the key record, keys it could not declare in advance;
//!   a single Redis serves every key, so that is allowed there.
//! - Cluster: the key record lives in a slot of its own and the user's records in the user's
//!   (`{u:…}`), possibly on another node, so the key is read first (`GET`), then the user and
//!   memberships by one script in the user's slot (`SESSION_USER`): two round trips.
//!
//! Either way the result is the one the separate reads would give: no key → `None`; a key
//! whose user is gone → `None`; membership ids that are not UUIDs, or without a record, are
//! left out (as [`RedisStore::memberships_of`] does).

use uuid::Uuid;

use super::RedisStore;
use crate::model::Session;
use crate::store::keys::Keys;
use crate::store::{ApiKey, Membership, StoreError, User};

/// The names of a user's keys around the user id, as [`Keys`] builds them (`P{u:` and `}:`),
/// for the script that learns the id only from the key record, and appends `user`, `orgs` or
/// `member:<org id>`.
pub(super) struct UserKeys {
    before: String,
    after: String,
}

// === impl RedisStore ===

impl RedisStore {
    /// What the key `id` resolves to; see the module doc.
    pub(in crate::store) async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let record = self.keys.api_key(id);
        if self.cluster {
            let Some(key) = self.get_json::<ApiKey>(&record).await? else {
                return Ok(None);
            };
            return self.session_of(key).await;
        }
        let mut reply: Vec<Vec<u8>> = self
            .eval(
                &self.scripts.session,
                &[&record],
                &[self.user_keys.before(), self.user_keys.after()],
            )
            .await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let rest = reply.split_off(1);
        let key: ApiKey = decode(&record, &reply[0])?;
        // The script found the user id by pattern, serde by decoding the same JSON: a mismatch
        // (or none found) means a record written in some other form (an upper-case id, say).
        // What the script read is dropped, and the user's side read by the typed id, as on a
        // Cluster.
        match rest.split_first() {
            Some((used, user_side)) if *used == key.user_id.to_string().as_bytes() => {
                self.assemble(key, user_side)
            }
            _ => self.session_of(key).await,
        }
    }

    /// The user and memberships of `key`'s owner, by one script in the user's slot.
    async fn session_of(&self, key: ApiKey) -> Result<Option<Session>, StoreError> {
        let user = key.user_id;
        let reply: Vec<Vec<u8>> = self
            .eval(
                &self.scripts.session_user,
                &[&self.keys.user(user), &self.keys.user_orgs(user)],
                &[self.user_keys.member_prefix(user)],
            )
            .await?;
        self.assemble(key, &reply)
    }

    /// A session from what `SESSION_USER` (or the tail of `SESSION`) returned: the user
    /// record (empty when there is none), then organization ids each followed by its
    /// membership record (empty when there is none).
    fn assemble(&self, key: ApiKey, reply: &[Vec<u8>]) -> Result<Option<Session>, StoreError> {
        let Some((user, pairs)) = reply.split_first() else {
            return Err(StoreError::corrupt("the session script returned nothing"));
        };
        if user.is_empty() {
            return Ok(None);
        }
        let user: User = decode(&self.keys.user(key.user_id), user)?;
        let mut memberships = Vec::with_capacity(pairs.len() / 2);
        for pair in pairs.chunks(2) {
            let [org, record] = pair else {
                return Err(StoreError::corrupt(
                    "the session script returned an odd list",
                ));
            };
            let Some(org) = std::str::from_utf8(org)
                .ok()
                .and_then(|o| o.parse::<Uuid>().ok())
            else {
                continue;
            };
            if !record.is_empty() {
                memberships.push(decode::<Membership>(
                    &self.keys.member(key.user_id, org),
                    record,
                )?);
            }
        }
        Ok(Session::new(key, user, memberships))
    }
}

// === impl UserKeys ===

impl UserKeys {
    /// The form of [`Keys`]'s user keys, `P{u:<user id>}:<what>` (the unit test below holds
    /// the two together).
    pub(super) fn new(keys: &Keys) -> UserKeys {
        UserKeys {
            before: format!("{}{{u:", keys.prefix()),
            after: "}:".to_owned(),
        }
    }

    pub(super) fn before(&self) -> &str {
        &self.before
    }

    pub(super) fn after(&self) -> &str {
        &self.after
    }

    /// The names of `user`'s membership records up to the organization id.
    fn member_prefix(&self, user: Uuid) -> String {
        format!("{}{user}{}member:", self.before, self.after)
    }
}

/// The JSON record read from `name`.
fn decode<T: serde::de::DeserializeOwned>(name: &str, raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::corrupt_because(name.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the session script builds are the ones [`Keys`] builds.
    #[test]
    fn the_scripts_key_names_are_the_stores() {
        for prefix in ["portcullis:", "", "{tenant}:"] {
            let keys = Keys::new(prefix);
            let names = UserKeys::new(&keys);
            let (user, org) = (Uuid::new_v4(), Uuid::new_v4());
            let of_user = |what: &str| format!("{}{user}{}{what}", names.before(), names.after());
            assert_eq!(of_user("user"), keys.user(user));
            assert_eq!(of_user("orgs"), keys.user_orgs(user));
            assert_eq!(
                format!("{}{org}", names.member_prefix(user)),
                keys.member(user, org)
            );
        }
    }
}
