//! One-time passcodes for password reset (spec/coder-api.md §4, with the corrections of
//! issue 5, which win where the spec differs): issuing a code, checking and consuming it, and
//! handing it to the configured delivery ([`delivery`]).
//!
//! # Security choices
//! - A code is 26 symbols of Crockford's base32 (130 bits) from the operating system's CSPRNG,
//!   not a UUID. It is read back case-insensitively, ignoring spaces and hyphens, with `O` as
//!   `0` and `I`/`L` as `1`, so that a code copied by hand still works.
//! - Only SHA-256 of the code is stored (a 130-bit random value needs no slow hash), and the
//!   comparison is constant-time. The code in the clear exists only on its way to delivery.
//! - A code lives `otp.lifetime` (default 10 minutes), is single use, and a new request
//!   replaces the previous code of the user.
//! - At most [`MAX_ATTEMPTS`] wrong codes per code: only a wrong code counts, and the one that
//!   reaches the limit voids the code. A right code uses up nothing and is accepted while
//!   fewer than [`MAX_ATTEMPTS`] wrong ones have been counted, so that concurrent changes with
//!   the right code cannot void it for each other (one of them wins the consume, below).
//!   Guesses in flight on several replicas are counted when they finish, so a burst can have
//!   a few more than [`MAX_ATTEMPTS`] compared; each still succeeds with probability 2^-130.
//! - A request does the same work whether or not a password user has the email (look-up,
//!   code, hash, one store write — to a decoy record when there is nobody); only the delivery
//!   differs, and it runs in a task of its own after the answer. The per-email limit counts
//!   every address, known or not.
//!
//! # State
//! All of it lives in the store, so that every replica sees it, on both backends:
//!
//! | name | primitive | holds |
//! |---|---|---|
//! | `otp:code:<user id>` | ephemeral, TTL `otp.lifetime` | the [`Record`] of the user's current code |
//! | `otp:code:none` | ephemeral | the decoy written for emails of nobody |
//! | `otp:tries:<record id>` | counter, window `otp.lifetime` | wrong codes checked against one code |
//! | `otp:requests:<SHA-256 of the email>` | counter, window `otp.request_window` | requests for one address |
//!
//! Consuming a code is a compare-and-delete of the very record that was checked
//! ([`Store::take_ephemeral_if`]): of two concurrent changes with one code, one wins; a code
//! replaced in the meantime is not consumed by a check of the old one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::auth::token::RngError;
use crate::config::{ConfigError, OtpConfig};
use crate::metrics::{Metrics, OtpRequestResult};
use crate::report::ErrorChain;
use crate::store::{keys, LoginType, Store, StoreError, User};

pub mod delivery;
mod smtp;
mod webhook;

pub use delivery::{Delivery, Message};

/// Wrong codes allowed against one code; the one that reaches this count voids it.
pub const MAX_ATTEMPTS: u64 = 5;

/// Symbols in a code: 26 × 5 bits = 130 bits.
pub const CODE_LEN: usize = 26;

/// Crockford's base32: no `I`, `L`, `O`, `U`.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A one-time passcode in the clear. Its `Debug` is redacted; it leaves the process only
/// through the delivery.
#[derive(Clone)]
pub struct Code(String);

/// What the store keeps of a code.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Random, names the attempt counter of this code.
    id: String,
    /// Hex SHA-256 of the normalized code.
    hash: String,
    /// Unix milliseconds; the store's TTL ends the record at the same time.
    expires_at: i64,
}

/// A code that matched, to consume with [`Otp::consume`].
#[derive(Debug)]
pub struct Checked {
    name: String,
    record: Vec<u8>,
}

/// Issues, checks and consumes codes, and delivers them.
pub struct Otp {
    lifetime: Duration,
    requests_per_email: u64,
    request_window: Duration,
    delivery: Option<Arc<Delivery>>,
    delivery_timeout: Duration,
    metrics: Arc<Metrics>,
}

// === impl Code ===

impl Code {
    /// A new code from the operating system's CSPRNG. 32 divides 256, so five bits of each
    /// random byte pick a symbol without bias.
    ///
    /// # Errors
    /// [`RngError`] when the operating system cannot supply randomness.
    pub fn generate() -> Result<Code, RngError> {
        let mut bytes = [0u8; CODE_LEN];
        getrandom::fill(&mut bytes)?;
        let code = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 0x1f)]))
            .collect();
        Ok(Code(code))
    }

    /// The code, for the one message that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

/// SHA-256 of a presented code after normalization: upper case, spaces and hyphens dropped,
/// `O` read as `0` and `I`/`L` as `1` (Crockford's decoding).
fn hash_code(presented: &str) -> [u8; 32] {
    let normalized: String = presented
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    Sha256::digest(normalized.as_bytes()).into()
}

// === impl Otp ===

impl std::fmt::Debug for Otp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otp")
            .field("lifetime", &self.lifetime)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Otp {
    /// Builds the delivery `config` names, reading its secret files and CA bundle.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose file does not load.
    pub fn new(config: &OtpConfig, metrics: Arc<Metrics>) -> Result<Otp, ConfigError> {
        let delivery = config
            .delivery
            .as_ref()
            .map(|d| Delivery::new(d, config.delivery_timeout).map(Arc::new))
            .transpose()?;
        if delivery.is_none() {
            tracing::warn!(
                "no otp.delivery is configured: password reset is unavailable \
                 (POST /users/otp/request still answers 204, but no code is sent)"
            );
        }
        Ok(Otp {
            lifetime: config.lifetime,
            requests_per_email: config.requests_per_email,
            request_window: config.request_window,
            delivery,
            delivery_timeout: config.delivery_timeout,
            metrics,
        })
    }

    /// Whether codes go anywhere (`otp.delivery` is set).
    pub fn can_deliver(&self) -> bool {
        self.delivery.is_some()
    }

    /// The work behind `POST /users/otp/request` for a valid `email`: a new code for the
    /// password user with that email, replacing any earlier one, handed to the delivery in a
    /// task of its own. Never fails: the caller answers `204` whatever happened, and this
    /// logs and counts (`portcullis_otp_requests_total`).
    pub async fn request(&self, store: &Store, email: &str) -> OtpRequestResult {
        let result = match self.issue(store, email).await {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "could not issue a one-time passcode");
                OtpRequestResult::Error
            }
        };
        self.metrics.otp_request(result);
        result
    }

    async fn issue(&self, store: &Store, email: &str) -> Result<OtpRequestResult, IssueError> {
        let user = user_by_email(store, email)
            .await?
            .filter(|u| u.login_type == LoginType::Password);
        let code = Code::generate()?;
        let expires_at = OffsetDateTime::now_utc() + self.lifetime;
        let record = serde_json::to_vec(&Record {
            id: hex::encode(random_id()?),
            hash: hex::encode(hash_code(code.expose())),
            expires_at: unix_millis(expires_at),
        })
        .map_err(|e| StoreError::corrupt_because("otp record", e))?;
        if !self.within_request_limit(store, email).await? {
            return Ok(OtpRequestResult::Limited);
        }
        // Nobody's requests write the decoy: the same store work as a real one.
        let name = code_name(user.as_ref());
        store.put_ephemeral(&name, &record, self.lifetime).await?;
        let Some(user) = user else {
            return Ok(OtpRequestResult::Unknown);
        };
        self.deliver(Message {
            email: user.email,
            code,
            expires_at,
            user_id: user.id,
        });
        Ok(OtpRequestResult::Issued)
    }

    /// Counts a request for `email` and tells whether it is within `otp.requests_per_email`.
    async fn within_request_limit(&self, store: &Store, email: &str) -> Result<bool, StoreError> {
        if self.requests_per_email == 0 {
            return Ok(true);
        }
        let n = store
            .incr_window(&keys::otp_requests(email), self.request_window)
            .await?;
        Ok(n <= self.requests_per_email)
    }

    /// Hands `message` to the delivery in a task of its own, bounded by
    /// `otp.delivery_timeout`; the outcome is logged and counted
    /// (`portcullis_otp_deliveries_total`), never seen by the caller.
    fn deliver(&self, message: Message) {
        delivery::spawn(
            self.delivery.clone(),
            message,
            self.delivery_timeout,
            self.metrics.clone(),
        );
    }

    /// Checks `presented` against the current code of `user` (`None`: nobody has the email,
    /// which is checked against the decoy and never matches). A wrong code counts towards
    /// [`MAX_ATTEMPTS`] for the code, and the one that reaches it voids the code; a right code
    /// counts nothing, and is refused only once the wrong ones have reached the limit. Returns
    /// what to consume when the code matches, is live, and belongs to a password user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (the caller answers 500 or 503).
    pub async fn check(
        &self,
        store: &Store,
        user: Option<&User>,
        presented: &str,
    ) -> Result<Option<Checked>, StoreError> {
        let user = user.filter(|u| u.login_type == LoginType::Password);
        let name = code_name(user);
        let raw = store.get_ephemeral(&name).await?;
        let record: Option<Record> = raw.as_deref().and_then(|r| serde_json::from_slice(r).ok());
        let tries = keys::otp_tries(record.as_ref().map(|r| r.id.as_str()));
        let stored: [u8; 32] = record
            .as_ref()
            .and_then(|r| hex::decode(&r.hash).ok())
            .and_then(|h| h.try_into().ok())
            .unwrap_or([0; 32]);
        let same = bool::from(hash_code(presented).ct_eq(&stored));
        let live = record
            .as_ref()
            .is_some_and(|r| r.expires_at > unix_millis(OffsetDateTime::now_utc()));
        match raw {
            Some(record) if user.is_some() && same && live => {
                // One store read, like the wrong code's one increment.
                let wrong = store.counter(&tries).await?;
                Ok((wrong < MAX_ATTEMPTS).then_some(Checked { name, record }))
            }
            raw => {
                let wrong = store.incr_window(&tries, self.lifetime).await?;
                if let Some(raw) = raw.filter(|_| user.is_some() && wrong >= MAX_ATTEMPTS) {
                    // Compare-and-delete: only the record that was checked; a newer code stays.
                    if store.take_ephemeral_if(&name, &raw).await? {
                        tracing::info!(
                            user_id = ?user.map(|u| u.id),
                            "one-time passcode voided after {MAX_ATTEMPTS} wrong codes"
                        );
                    }
                }
                Ok(None)
            }
        }
    }

    /// Consumes a checked code; false when another request consumed or replaced it first.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn consume(&self, store: &Store, checked: Checked) -> Result<bool, StoreError> {
        store
            .take_ephemeral_if(&checked.name, &checked.record)
            .await
    }
}

/// The user with `email`, with as many store reads when there is none as when there is one:
/// a Redis look-up of a known email reads the index and then the record, so an unknown one
/// reads a record too (the nil id's, which never exists).
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn user_by_email(store: &Store, email: &str) -> Result<Option<User>, StoreError> {
    let user = store.user_by_email(email).await?;
    if user.is_none() {
        store.user(uuid::Uuid::nil()).await?;
    }
    Ok(user)
}

/// The store name of the code of `user`, or of the decoy.
fn code_name(user: Option<&User>) -> String {
    keys::otp_code(user.map(|u| u.id))
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn random_id() -> Result<[u8; 16], RngError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)?;
    Ok(id)
}

/// Why a code could not be issued.
#[derive(Debug, thiserror::Error)]
enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rng(#[from] RngError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_26_crockford_symbols_and_differ() {
        let a = Code::generate().unwrap();
        let b = Code::generate().unwrap();
        assert_eq!(a.expose().len(), CODE_LEN);
        assert!(a.expose().bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "Code(<redacted>)");
    }

    #[test]
    fn presented_codes_are_read_as_crockford_base32() {
        let stored = hash_code("0123ABCD1XYZ");
        for same in ["0123abcd1xyz", "O123-ABCD-IXYZ", " 0123 abcd lxyz "] {
            assert_eq!(hash_code(same), stored, "{same}");
        }
        for other in ["0123ABCD1XY", "0123ABCD1XYZ0", "0123ABCD2XYZ", ""] {
            assert_ne!(hash_code(other), stored, "{other}");
        }
    }

    #[test]
    fn every_symbol_is_used_over_many_codes() {
        let mut seen = [false; 32];
        for _ in 0..200 {
            for b in Code::generate().unwrap().expose().bytes() {
                seen[ALPHABET.iter().position(|a| *a == b).unwrap()] = true;
            }
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
