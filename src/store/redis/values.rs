//! Counters, single-use values and claims in Redis: single keys with a TTL.

use std::time::Duration;

use super::{millis, RedisStore};
use crate::store::StoreError;

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn set_if_absent(
        &self,
        name: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.claim(name)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        Ok(self.query::<Option<String>>(&cmd).await?.is_some())
    }

    pub(in crate::store) async fn incr_window(
        &self,
        name: &str,
        window: Duration,
    ) -> Result<u64, StoreError> {
        self.eval(
            &self.scripts.incr_window,
            &[&self.keys.counter(name)],
            &[&millis(window).to_string()],
        )
        .await
    }

    pub(in crate::store) async fn counter(&self, name: &str) -> Result<u64, StoreError> {
        let n: Option<u64> = self
            .query(redis::cmd("GET").arg(self.keys.counter(name)))
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub(in crate::store) async fn reset_counter(&self, name: &str) -> Result<(), StoreError> {
        self.delete(&[self.keys.counter(name)]).await.map(drop)
    }

    pub(in crate::store) async fn put_ephemeral(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.query::<String>(
            redis::cmd("SET")
                .arg(self.keys.ephemeral(name))
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
        .map(drop)
    }

    pub(in crate::store) async fn take_ephemeral(
        &self,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GETDEL").arg(self.keys.ephemeral(name)))
            .await
    }

    pub(in crate::store) async fn get_ephemeral(
        &self,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(self.keys.ephemeral(name)))
            .await
    }

    pub(in crate::store) async fn take_ephemeral_if(
        &self,
        name: &str,
        expected: &[u8],
    ) -> Result<bool, StoreError> {
        let taken: i64 = self
            .eval(
                &self.scripts.compare_and_delete,
                &[&self.keys.ephemeral(name)],
                &[expected],
            )
            .await?;
        Ok(taken > 0)
    }
}
