//! JSON records in Redis: reading one or many, and changing one by compare-and-replace (see
//! the parent module doc, "Atomicity").

use std::time::Duration;

use futures_util::future::try_join_all;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{unix_millis, RedisStore};
use crate::store::StoreError;

/// Of a compare-and-replace loop ([`RedisStore::modify`]): how many times to recompute a change
/// on a record that other writers keep changing before giving up. A lost attempt waits a
/// random 0 to `attempt` ms (at most 8) first, so that racing writers spread out.
const MODIFY_ATTEMPTS: u8 = 32;

// === impl RedisStore ===

impl RedisStore {
    /// The JSON record at `key`, decoded; `None` when there is none.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        raw.map(|raw| {
            serde_json::from_slice(&raw).map_err(|e| StoreError::corrupt_because(key.to_owned(), e))
        })
        .transpose()
    }

    /// Reads `ids` through `record_key` concurrently, leaving out the missing ones; returns
    /// the found records and the ids that had none.
    pub(super) async fn records<T: DeserializeOwned>(
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

    /// Applies `change` to the JSON record `record` by compare-and-replace: read the bytes,
    /// decode, change, and write only if the stored bytes are still the ones read, else start
    /// again from the fresh record. `change` returns `None` to leave the record alone, or
    /// `Some(expire_at)` to write it (expiring then, or never for `None`). Returns the record
    /// as stored after the call; `None` when there is none.
    pub(super) async fn modify<T: Serialize + DeserializeOwned>(
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
                .map_err(|e| StoreError::corrupt_because(record.to_owned(), e))?;
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
        Err(StoreError::unavailable(format!(
            "{record} kept changing during {MODIFY_ATTEMPTS} attempts to update it"
        )))
    }
}

// === helpers ===

pub(super) fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt_because("encoding", e))
}
