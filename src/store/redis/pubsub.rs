//! Invalidation over Redis pub/sub: [`RedisStore::publish`], and the subscriber task that
//! forwards every replica's messages to this one's receivers, with its own connection (see the
//! parent module doc, "Deadlines and reconnects").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::{RedisError, Value};
use tokio::sync::broadcast;

use super::conn::{connect_deadline, Connector};
use super::RedisStore;
use crate::store::{Invalidation, StoreError};

const RESUBSCRIBE_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);
/// How often the subscriber checks its connection with `PING`.
const SUBSCRIBER_PING_EVERY: Duration = Duration::from_secs(5);

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn publish(&self, what: &Invalidation) -> Result<(), StoreError> {
        self.query::<i64>(
            redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(encode(what)),
        )
        .await
        .map(drop)
    }

    pub(in crate::store) fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.events.subscribe()
    }

    /// The live subscription's number, `None` while there is none (see
    /// [`crate::store::Store::subscription`]).
    pub(in crate::store) fn subscription(&self) -> Option<u64> {
        match self.subscription.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }
}

// === subscriber ===

/// Forwards invalidations from Redis into `events` until aborted, keeping in `live` the
/// number of the subscription that is live (0: none); see the module doc.
pub(super) async fn subscribe_forever(
    connector: Arc<Connector>,
    channel: String,
    events: broadcast::Sender<Invalidation>,
    live: Arc<AtomicU64>,
    timeout: Duration,
) {
    let mut backoff = RESUBSCRIBE_MIN;
    let mut healthy = true;
    let mut made = 0;
    loop {
        let subscribed = tokio::time::timeout(connect_deadline(timeout), async {
            let mut pubsub = connector.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                if !healthy {
                    tracing::info!("store: invalidation channel subscribed again");
                }
                backoff = RESUBSCRIBE_MIN;
                made += 1;
                live.store(made, Ordering::Release);
                // Whatever was published while this replica was not subscribed is lost.
                let _ = events.send(Invalidation::All);
                let reason = forward(pubsub, &events, timeout).await;
                live.store(0, Ordering::Release);
                tracing::warn!(reason, "store: invalidation channel lost; resubscribing");
                healthy = false;
            }
            Ok(Err(e)) if healthy => {
                tracing::warn!(error = %e, "store: cannot subscribe to the invalidation channel");
                healthy = false;
            }
            Err(_) if healthy => {
                tracing::warn!("store: cannot subscribe to the invalidation channel: timed out");
                healthy = false;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "store: subscribe failed again"),
            Err(_) => tracing::debug!("store: subscribe timed out again"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
    }
}

/// Forwards messages until the subscription ends or stops answering `PING`; returns why.
async fn forward(
    pubsub: PubSub,
    events: &broadcast::Sender<Invalidation>,
    timeout: Duration,
) -> &'static str {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(SUBSCRIBER_PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    let what = decode(msg.get_payload_bytes());
                    let _ = events.send(what);
                }
                None => return "connection closed",
            },
            _ = ping.tick() => {
                match tokio::time::timeout(timeout.max(Duration::from_secs(1)), sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "ping failed",
                    Err(_) => return "ping timed out",
                }
            }
        }
    }
}

fn encode(what: &Invalidation) -> String {
    match what {
        Invalidation::Key(id) => format!("key:{id}"),
        Invalidation::User(id) => format!("user:{id}"),
        Invalidation::All => "all".to_owned(),
    }
}

/// Anything unreadable counts as "drop everything", the safe reading.
fn decode(payload: &[u8]) -> Invalidation {
    let text = std::str::from_utf8(payload).unwrap_or("");
    if let Some(id) = text.strip_prefix("key:") {
        return Invalidation::Key(id.to_owned());
    }
    if let Some(Ok(id)) = text.strip_prefix("user:").map(str::parse) {
        return Invalidation::User(id);
    }
    Invalidation::All
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn invalidations_round_trip_and_unreadable_ones_mean_all() {
        let user = Uuid::new_v4();
        for what in [
            Invalidation::Key("abcdefghij".into()),
            Invalidation::User(user),
            Invalidation::All,
        ] {
            assert_eq!(decode(encode(&what).as_bytes()), what);
        }
        for junk in [&b"user:not-a-uuid"[..], b"", b"\xff\xfe", b"something"] {
            assert_eq!(decode(junk), Invalidation::All);
        }
    }
}
