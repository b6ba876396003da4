//! Authenticating a request: the token, the cached key behind it, its secret, expiry and user
//! (spec/coder-api.md §8.3-8.5).
//!
//! Every failure that is the client's is a 401 with Coder's signed-out message and a detail
//! naming the reason; a store that cannot answer is a 503 ([`AuthError::Store`]), never a 401.
//! The sliding refresh writes a key's `last_used` and extended expiry at most once an hour per
//! key and replica, off the request path.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};
use time::OffsetDateTime;

use crate::assertion::Signer;
use crate::auth::token::{self, Token, TokenError};
use crate::headers::Identity;
use crate::metrics::{AuthResult, RevokeReason};
use crate::rbac::Subject;
use crate::report::ErrorChain;
use crate::store::cache::{Entry, KeyCache, Session};
use crate::store::{ApiKey, Store, StoreError, UserStatus};

/// How often a key's `last_used` (and sliding expiry) is written back, at most (§8.5).
pub const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// How long a key record outlives its expiry, so that using it answers "expired at …" and
/// listings with `include_expired` still show it.
pub const KEY_RETENTION: time::Duration = time::Duration::days(7);

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token in any of the places one is read from.
    #[error("Cookie \"coder_session_token\" or query parameter must be provided.")]
    Missing,
    /// The token is not `<10-char id>-<22-char secret>`.
    #[error("{0}")]
    Format(#[from] TokenError),
    /// No key with that id (or its user is gone).
    #[error("API key is invalid.")]
    Unknown,
    /// The key exists; the secret is wrong.
    #[error("API key secret is invalid.")]
    BadSecret,
    /// The key has expired.
    #[error("API key expired at {0:?}.")]
    Expired(String),
    /// An OIDC session whose provider token expired, and the provider refused to refresh it
    /// (§8.4): the session has been ended.
    #[error("You must re-authenticate with the login provider.")]
    Reauthenticate,
    /// The user is suspended.
    #[error(
        "User is not active (status = \"suspended\"). Contact an admin to reactivate your account."
    )]
    Suspended,
    /// The store could not answer and nothing usable was cached: 503.
    #[error("store unavailable")]
    Store(#[from] StoreError),
}

/// Why a session that was valid no longer is, as [`reauthenticate`] found it.
#[derive(Debug)]
pub enum Lapsed {
    /// The session ended, for this reason.
    Ended(RevokeReason),
    /// The store could not answer, and nothing usable was cached.
    Store(StoreError),
}

/// An authenticated request's session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    entry: Arc<Entry>,
    from_cookie: bool,
}

// === impl AuthError ===

impl AuthError {
    /// The `result` label this failure is counted under in `portcullis_auth_total`.
    pub fn result(&self) -> AuthResult {
        match self {
            AuthError::Missing => AuthResult::Missing,
            AuthError::Format(_) | AuthError::Unknown | AuthError::BadSecret => AuthResult::Invalid,
            AuthError::Expired(_) | AuthError::Reauthenticate => AuthResult::Expired,
            AuthError::Suspended => AuthResult::Suspended,
            AuthError::Store(_) => AuthResult::StoreUnavailable,
        }
    }
}

// === impl Authenticated ===

impl Authenticated {
    /// A session judged without a token (`portcullis explain --user`): not from a cookie,
    /// never cached.
    pub fn detached(session: Session) -> Authenticated {
        Authenticated {
            entry: Arc::new(Entry::detached(session)),
            from_cookie: false,
        }
    }

    /// The key, user and memberships.
    pub fn session(&self) -> &Session {
        &self.entry.session
    }

    /// Whether the token came from the `coder_session_token` cookie (which a browser attaches
    /// by itself, so the request gets the CSRF checks of [`crate::http::csrf`]).
    pub fn from_cookie(&self) -> bool {
        self.from_cookie
    }

    /// What this session may do.
    pub fn subject(&self) -> &Subject {
        &self.entry.subject
    }

    /// The identity headers this session gives a proxied request.
    pub fn identity(&self) -> &Identity {
        &self.entry.identity
    }

    /// Whether no invalidation of this session's key or user (or of everything) has been
    /// applied to `cache` since the session was read from the store.
    pub fn is_current(&self, cache: &KeyCache) -> bool {
        cache.is_current(&self.entry)
    }

    /// The signed identity assertion for audience `aud` (see [`crate::assertion`]): cached
    /// with the session, signed again when it is half-way through its life. `None` only if
    /// signing fails.
    pub fn assertion(&self, signer: &Signer, aud: &str) -> Option<HeaderValue> {
        self.entry.assertions.get(signer, &self.entry.session, aud)
    }
}

/// Authenticates the token carried by `headers`/`uri`.
pub async fn authenticate(
    store: &Store,
    cache: &KeyCache,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Authenticated, AuthError> {
    let raw = token::extract(headers, uri).ok_or(AuthError::Missing)?;
    let token = Token::parse(&raw)?;
    let entry = cache
        .lookup(store, token.id())
        .await?
        .ok_or(AuthError::Unknown)?;
    let session = &entry.session;
    if !token::verify_secret(token.secret(), &session.key.hashed_secret) {
        return Err(AuthError::BadSecret);
    }
    let now = OffsetDateTime::now_utc();
    if session.key.expires_at <= now {
        let at = session
            .key
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        return Err(AuthError::Expired(at));
    }
    if session.user.status == UserStatus::Suspended {
        return Err(AuthError::Suspended);
    }
    if entry.claim_touch(now.unix_timestamp(), TOUCH_EVERY)
        || session.user.status == UserStatus::Dormant
    {
        tokio::spawn(touch(store.clone(), entry.clone(), now));
    }
    // `extract` reads the cookie first: when there is one, the token is the cookie's.
    let from_cookie = token::cookie(headers, token::SESSION_COOKIE).is_some();
    Ok(Authenticated { entry, from_cookie })
}

/// Reads `auth`'s session again, for a connection it opened that is still open: through the
/// cache, so after an invalidation from the store. The session as it is now, or why it ended:
/// its key gone or made to expire early ([`RevokeReason::Revoked`]), reached its expiry
/// ([`RevokeReason::Expired`]), its user suspended or gone. Nothing is written: a check is not
/// a use of the key.
pub async fn reauthenticate(
    store: &Store,
    cache: &KeyCache,
    auth: &Authenticated,
) -> Result<Authenticated, Lapsed> {
    use RevokeReason::*;
    let before = &auth.entry.session;
    let entry = match cache.lookup(store, &before.key.id).await {
        Ok(Some(entry)) => entry,
        // The key is gone, or its user is (deleting a user deletes its keys): which one?
        Ok(None) => {
            return match store.user(before.user.id).await {
                Ok(Some(_)) => Err(Lapsed::Ended(Revoked)),
                Ok(None) => Err(Lapsed::Ended(Deleted)),
                Err(e) => Err(Lapsed::Store(e)),
            }
        }
        Err(e) => return Err(Lapsed::Store(e)),
    };
    let now = &entry.session;
    // A key id names one key for its whole life; this only guards against a record that was
    // replaced under the same id.
    if now.key.hashed_secret != before.key.hashed_secret || now.user.id != before.user.id {
        return Err(Lapsed::Ended(Revoked));
    }
    if now.key.expires_at <= OffsetDateTime::now_utc() {
        // An expiry moved earlier than the one the session was admitted with is a revocation
        // (`expire_key`); one that was reached, however far it slid, is an expiry.
        let moved_earlier = now.key.expires_at < before.key.expires_at;
        return Err(Lapsed::Ended(if moved_earlier { Revoked } else { Expired }));
    }
    if now.user.status == UserStatus::Suspended {
        return Err(Lapsed::Ended(Suspended));
    }
    Ok(Authenticated {
        entry,
        from_cookie: auth.from_cookie,
    })
}

/// Writes `last_used` and the sliding expiry (§8.5), and re-activates a dormant user (§8.4).
/// Both are atomic changes of the stored records ([`Store::modify_key`],
/// [`Store::modify_user`]), never a write-back of the cached copies: a key expired, deleted or
/// refreshed meanwhile, or a user suspended meanwhile, stays as it is.
async fn touch(store: Store, entry: Arc<Entry>, now: OffsetDateTime) {
    let session = &entry.session;
    let seen = session.key.expires_at;
    let slid = store
        .modify_key(session.key.id.as_str(), KEY_RETENTION, |key| {
            slide(key, seen, now)
        })
        .await;
    if let Err(error) = slid {
        tracing::debug!(error = %ErrorChain(&error), "could not record key use");
    }
    if session.user.status == UserStatus::Dormant {
        let mut activated = false;
        let result = store
            .modify_user(session.user.id, |user| {
                activated = user.status == UserStatus::Dormant;
                if activated {
                    user.status = UserStatus::Active;
                    user.updated_at = now;
                }
                activated
            })
            .await;
        if let Err(error) = result {
            tracing::debug!(error = %ErrorChain(&error), "could not re-activate a dormant user");
        }
        if activated {
            let _ = store
                .publish(crate::store::Invalidation::User(session.user.id))
                .await;
        }
    }
}

/// The sliding refresh of a key used at `now` whose request saw it expire at `seen` (§8.5):
/// `last_used` only moves forward, and `expires_at` only grows (to `now + lifetime`, at most
/// `not_after`, once less than `lifetime - 1h` is left). A key that has expired, or whose
/// expiry was moved earlier since the request saw it (`expire`, whatever the clocks of the
/// replicas say), is left alone: it must stay expired. Returns whether anything changed.
fn slide(key: &mut ApiKey, seen: OffsetDateTime, now: OffsetDateTime) -> bool {
    if key.expires_at <= now || key.expires_at < seen {
        return false;
    }
    let mut changed = false;
    if key.last_used < now {
        key.last_used = now;
        changed = true;
    }
    let lifetime = time::Duration::seconds(key.lifetime_seconds);
    if key.expires_at - now <= lifetime - time::Duration::HOUR {
        let mut until = now + lifetime;
        if let Some(cap) = key.not_after {
            until = until.min(cap);
        }
        if until > key.expires_at {
            key.expires_at = until;
            changed = true;
        }
    }
    changed
}
