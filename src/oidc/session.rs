//! OIDC sessions after login: the provider's refresh token kept with the session, the refresh
//! of spec/coder-api.md §8.4, and the sign-in redirect of browsers.
//!
//! # Refresh
//! A session created by an OIDC login whose provider issued a refresh token and an access
//! token expiry is linked to both: a store record `oidc-link:<key id>` (the refresh token is
//! never logged and never part of any API answer). On each authenticated request of such a
//! session, once the provider's access token has expired, Portcullis refreshes it:
//!
//! - the provider answers with new tokens: the link is updated, the request goes on;
//! - the provider refuses (`invalid_grant`: the user was removed, the grant revoked), or its
//!   answer carries an ID token that fails verification (signature, `iss`, `aud`, `exp`) or
//!   names another `sub` than the session's (a session recorded before its `sub` was kept
//!   counts as another): the session ends (its key is deleted on every replica) and the request gets 401 with Coder's
//!   detail `You must re-authenticate with the login provider.`;
//! - the provider cannot be reached: the request goes on and the refresh is tried again after
//!   [`RETRY_AFTER`](super::RETRY_AFTER). A provider outage signs nobody out; it delays the
//!   discovery of a revocation until the provider is back.
//!
//! Concurrent requests, on one replica or several, refresh a given token once: the refresher
//! claims `oidc-refresh:<key id>:<expiry>` in the store first, and the others go on with the
//! session meanwhile. A session without a refresh token (or without an expiry from the
//! provider) is never refreshed and lasts its Portcullis lifetime, as a password session.
//!
//! # Cost
//! Password sessions and named tokens never get here past a comparison of their login type:
//! no store call. An OIDC session costs one in-process cache look-up per request, and one
//! store read per `store.cache_ttl`.

use std::time::Duration;

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Oidc, OidcError, RETRY_AFTER};
use crate::auth::session::{AuthError, Authenticated, KEY_RETENTION};
use crate::auth::token::Token;
use crate::model::SessionKey;
use crate::report::ErrorChain;
use crate::store::cache::KeyCache;
use crate::store::{keys, Invalidation, LoginType, Store, StoreError};

/// Cached link states at most.
const CAPACITY: u64 = 100_000;

/// The provider side of one session, stored under `oidc-link:<key id>`.
#[derive(Clone, Serialize, Deserialize)]
struct Link {
    refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// The `sub` the session signed in as: a refreshed ID token must name it. `None` in a
    /// record written before it was kept.
    #[serde(default)]
    subject: Option<String>,
}

/// What a replica remembers of a session's link, for `store.cache_ttl`.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// When the provider's access token expires; `None`: nothing to refresh.
    expires_at: Option<OffsetDateTime>,
    /// A refresh failed for want of the provider: not before this again.
    retry_at: Option<Instant>,
}

/// Per-replica cache of link expiries, by key id.
pub(super) struct Links {
    known: Cache<String, Known>,
}

// === impl Link ===

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("refresh_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("subject", &self.subject)
            .finish()
    }
}

// === impl Links ===

impl Links {
    pub(super) fn new(ttl: Duration) -> Self {
        Links {
            known: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }
}

/// The OIDC session bookkeeping of one process: what it reads and writes, and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    /// Where links and keys live.
    pub store: &'a Store,
    /// This process's key cache, cleared directly when a session ends.
    pub keys: &'a KeyCache,
    /// The provider, when `[oidc]` is configured.
    pub oidc: Option<&'a Oidc>,
    /// `session.lifetime`: how long a link outlives its last refresh.
    pub session_lifetime: Duration,
}

// === impl Sessions ===

impl Sessions<'_> {
    /// Records the provider tokens of a new OIDC session (`token` as issued) of `subject`. A
    /// failure is logged: the session then lives without refresh.
    pub async fn remember(
        &self,
        oidc: &Oidc,
        token: &str,
        subject: &str,
        refresh_token: &str,
        expires_at: OffsetDateTime,
    ) {
        let Ok(token) = Token::parse(token) else {
            return;
        };
        let id = token.id().as_str();
        let link = Link {
            refresh_token: refresh_token.to_owned(),
            expires_at,
            subject: Some(subject.to_owned()),
        };
        if let Err(error) = self.store_link(id, &link).await {
            tracing::warn!(error = %ErrorChain(&error), "could not store an oidc session's refresh token; it will not be refreshed");
            return;
        }
        oidc.links
            .known
            .insert(
                id.to_owned(),
                Known {
                    expires_at: Some(expires_at),
                    retry_at: None,
                },
            )
            .await;
    }

    /// Drops the provider tokens of an ended session (logout).
    pub async fn forget(&self, key: &SessionKey) {
        if key.login_type != LoginType::Oidc {
            return;
        }
        if let Err(error) = self.store.take_ephemeral(&link_key(key.id.as_str())).await {
            tracing::debug!(error = %ErrorChain(&error), "could not delete an oidc session's refresh token; it expires by itself");
        }
        if let Some(oidc) = self.oidc {
            oidc.links.known.invalidate(key.id.as_str()).await;
        }
    }

    /// Follows an authenticated session's provider token (§8.4, see the module doc): `auth` back
    /// when the request may go on, [`AuthError::Reauthenticate`] when the session was ended, and
    /// [`AuthError::Store`] when the store could not answer.
    pub async fn follow(&self, auth: Authenticated) -> Result<Authenticated, AuthError> {
        let key = &auth.session().key;
        if key.login_type != LoginType::Oidc {
            return Ok(auth);
        }
        // Without [oidc] there is nothing to refresh against: the session lives its lifetime.
        let Some(oidc) = self.oidc else {
            return Ok(auth);
        };
        let now = OffsetDateTime::now_utc();
        let known = match oidc.links.known.get(key.id.as_str()).await {
            Some(known) => known,
            None => {
                let known = Known {
                    expires_at: self.read_link(key.id.as_str()).await?.map(|l| l.expires_at),
                    retry_at: None,
                };
                oidc.links.known.insert(key.id.to_string(), known).await;
                known
            }
        };
        match known.expires_at {
            Some(at) if at <= now && known.retry_at.is_none_or(|t| t <= Instant::now()) => {
                // Boxed: rare, and its future (the provider call) would otherwise be part of
                // every authenticated request's.
                Box::pin(self.refresh(oidc, key)).await?;
                Ok(auth)
            }
            _ => Ok(auth),
        }
    }

    /// Refreshes the provider token of `key`'s session, once across replicas.
    async fn refresh(&self, oidc: &Oidc, key: &SessionKey) -> Result<(), AuthError> {
        let now = OffsetDateTime::now_utc();
        // Another replica may have refreshed it since this one cached the expiry.
        let Some(link) = self.read_link(key.id.as_str()).await? else {
            remember_known(oidc, key.id.as_str(), None, None).await;
            return Ok(());
        };
        if link.expires_at > now {
            remember_known(oidc, key.id.as_str(), Some(link.expires_at), None).await;
            return Ok(());
        }
        let claim = keys::oidc_refresh(key.id.as_str(), link.expires_at);
        let hold = oidc.config.request_timeout + Duration::from_secs(5);
        if !self.store.set_if_absent(&claim, b"1", Some(hold)).await? {
            // Someone else is refreshing this very token; this request goes on meanwhile.
            return Ok(());
        }
        match oidc
            .refresh(&link.refresh_token, link.subject.as_deref())
            .await
        {
            Ok(refreshed) => {
                let Some(expires_at) = refreshed.expires_at else {
                    // No expiry given: nothing to refresh against from now on.
                    let _ = self.store.take_ephemeral(&link_key(key.id.as_str())).await;
                    remember_known(oidc, key.id.as_str(), None, None).await;
                    return Ok(());
                };
                let link = Link {
                    refresh_token: refreshed.refresh_token.unwrap_or(link.refresh_token),
                    expires_at,
                    subject: link.subject,
                };
                self.store_link(key.id.as_str(), &link).await?;
                remember_known(oidc, key.id.as_str(), Some(expires_at), None).await;
                tracing::debug!(user_id = %key.user_id, "oidc session refreshed");
                Ok(())
            }
            Err(OidcError::Refused { error, description }) => {
                tracing::info!(user_id = %key.user_id, %error, %description, "the provider refused to refresh an oidc session; ending it");
                self.end(oidc, key).await?;
                Err(AuthError::Reauthenticate)
            }
            Err(OidcError::IdToken(error)) => {
                tracing::warn!(user_id = %key.user_id, %error, "the refreshed id token failed verification; ending the oidc session");
                self.end(oidc, key).await?;
                Err(AuthError::Reauthenticate)
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "could not refresh an oidc session; trying again shortly");
                remember_known(
                    oidc,
                    key.id.as_str(),
                    Some(link.expires_at),
                    Some(Instant::now() + RETRY_AFTER),
                )
                .await;
                Ok(())
            }
        }
    }

    /// Ends a session whose provider refused it: the key and its link go, on every replica.
    async fn end(&self, oidc: &Oidc, key: &SessionKey) -> Result<(), StoreError> {
        self.store.delete_key(key.id.as_str()).await?;
        let _ = self.store.take_ephemeral(&link_key(key.id.as_str())).await;
        oidc.links.known.invalidate(key.id.as_str()).await;
        let what = Invalidation::Key(key.id.to_string());
        self.keys.apply(&what);
        if let Err(error) = self.store.publish(what).await {
            tracing::warn!(error = %ErrorChain(&error), "could not publish a key invalidation");
        }
        Ok(())
    }

    /// Tells this replica's cache and every other replica that `user` changed.
    pub async fn invalidate_user(&self, user: Uuid) {
        let what = Invalidation::User(user);
        self.keys.apply(&what);
        if let Err(error) = self.store.publish(what).await {
            tracing::warn!(error = %ErrorChain(&error), "could not publish a user invalidation");
        }
    }

    async fn read_link(&self, id: &str) -> Result<Option<Link>, StoreError> {
        let Some(bytes) = self.store.get_ephemeral(&link_key(id)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::corrupt_because("oidc link", e))
    }

    /// Writes a link to outlive its session: the session lifetime (which slides with use, and a
    /// used session refreshes its link at least once per provider token lifetime) plus the key
    /// retention.
    async fn store_link(&self, id: &str, link: &Link) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(link).map_err(|e| StoreError::corrupt_because("oidc link", e))?;
        let keep = self.session_lifetime
            + Duration::try_from(KEY_RETENTION).unwrap_or(Duration::from_secs(7 * 24 * 3600));
        self.store.put_ephemeral(&link_key(id), &bytes, keep).await
    }
}

async fn remember_known(
    oidc: &Oidc,
    id: &str,
    expires_at: Option<OffsetDateTime>,
    retry_at: Option<Instant>,
) {
    oidc.links
        .known
        .insert(
            id.to_owned(),
            Known {
                expires_at,
                retry_at,
            },
        )
        .await;
}

fn link_key(id: &str) -> String {
    keys::oidc_link(id)
}
