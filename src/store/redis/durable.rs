//! Writes that survive a Sentinel failover: on `redis+sentinel://`, a write answers success only
//! once a replica has it (`WAIT 1`), see the parent module doc, "Failover".

use std::cell::Cell;
use std::future::Future;

use super::conn::store_error;
use super::RedisStore;
use crate::store::StoreError;

tokio::task_local! {
    /// The lowest and highest connection generation the commands of one [`RedisStore::durably`]
    /// call used; `None` until one is sent.
    static USED: Cell<Option<(u64, u64)>>;
}

/// Notes that a command went out on the connection of `generation`, for the
/// [`RedisStore::durably`] call it is part of (if any).
pub(super) fn note(generation: u64) {
    let _ = USED.try_with(|used| {
        used.set(Some(match used.get() {
            None => (generation, generation),
            Some((lo, hi)) => (lo.min(generation), hi.max(generation)),
        }));
    });
}

// === impl RedisStore ===

impl RedisStore {
    /// Runs `write`, the commands of one store operation; on a store that confirms writes
    /// (Sentinel), then waits until a replica has everything they changed (`WAIT 1`), and fails
    /// with [`StoreError::Unavailable`] when none has it within half of `store.command_timeout`,
    /// or when the commands did not all go out on the connection still in use (a reconnect
    /// in between: what went to the old one cannot be confirmed).
    ///
    /// `WAIT` covers every write sent earlier on the connection it is sent on, so one `WAIT`
    /// after the operation covers all of its commands. A failed confirmation does not undo
    /// the write: it may still hold, or be lost with the master it went to. The caller must
    /// treat it as "unknown" (a revocation is retried; an invalidation is still sent).
    pub(in crate::store) async fn durably<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.confirm_writes {
            return write.await;
        }
        let (outcome, used) = USED
            .scope(Cell::new(None), async {
                let outcome = write.await;
                (outcome, USED.with(Cell::get))
            })
            .await;
        let value = outcome?;
        match used {
            None => Ok(value),
            Some((lo, hi)) if lo == hi => self.confirm(lo).await.map(|()| value),
            Some(_) => Err(StoreError::unavailable(
                "the connection to redis changed during a write, which cannot be confirmed on a \
                 replica",
            )),
        }
    }

    /// `WAIT 1` on the connection of `generation`; see [`RedisStore::durably`].
    async fn confirm(&self, generation: u64) -> Result<(), StoreError> {
        let wait = self.timeout / 2;
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let op = async {
            let (current, mut conn) = self.slot.get().await?;
            if current != generation {
                return Err(StoreError::unavailable(
                    "the connection to redis changed after a write, which cannot be confirmed \
                     on a replica",
                ));
            }
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(millis)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            if acked < 1 {
                return Err(StoreError::unavailable(format!(
                    "no redis replica confirmed a write within {wait:?} (a failover may be \
                     under way; the write may be lost with its master)"
                )));
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable(format!(
                    "no answer from redis to WAIT within {:?}",
                    self.timeout
                )))
            })
    }
}
