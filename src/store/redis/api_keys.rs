//! API key records in Redis: each with its absolute expiry, listed in its user's set, its token
//! name claimed in the user's `key_names`.

use time::OffsetDateTime;
use uuid::Uuid;

use super::index::CLAIM_ATTEMPTS;
use super::record::json;
use super::{unix_millis, RedisStore};
use crate::store::{ApiKey, StoreError};

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn insert_key(
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

    pub(in crate::store) async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.get_json(&self.keys.api_key(id)).await
    }

    pub(in crate::store) async fn keys_of(&self, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
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

    pub(in crate::store) async fn key_by_name(
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

    pub(in crate::store) async fn modify_key(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ApiKey) -> Option<OffsetDateTime>,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.modify(&self.keys.api_key(id), |key| change(key).map(Some))
            .await
    }

    pub(in crate::store) async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
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

    pub(in crate::store) async fn delete_keys_of(
        &self,
        user: Uuid,
    ) -> Result<Vec<String>, StoreError> {
        let set = self.keys.user_keys(user);
        let ids = self.members(&set).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<String> = ids.iter().map(|id| self.keys.api_key(id)).collect();
        let existed = self.delete(&records).await?;
        // Only the ids deleted here leave the set: a key stored meanwhile (after the set was
        // read) stays listed, so that the next revocation of the user's keys finds it.
        self.eval::<i64>(
            &self.scripts.keys_detach,
            &[&set, &self.keys.user_key_names(user)],
            &ids,
        )
        .await?;
        Ok(ids
            .into_iter()
            .zip(existed)
            .filter_map(|(id, existed)| existed.then_some(id))
            .collect())
    }
}
