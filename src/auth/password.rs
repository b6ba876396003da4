//! Password hashing: argon2id for every new hash, Coder's PBKDF2 format accepted for imported
//! users, and a bound on how much hashing runs at once.
//!
//! Parameters default to OWASP's first argon2id choice (m=19 MiB, t=2, p=1; Password Storage
//! Cheat Sheet). Each hash costs its `m` in memory, so hashing runs on the blocking pool with at
//! most `max_concurrent` at once and at most `queue` callers waiting: past that a call fails
//! at once with [`PasswordError::Busy`] (a 503), and a login flood costs at most
//! `max_concurrent × m` of memory.
//!
//! Unknown users and passwordless accounts go through [`Passwords::verify_dummy`], which
//! spends a real verify's work and never succeeds, so a login's timing does not tell whether
//! the account exists (spec/coder-api.md §3.2, without Coder's `hunter2` quirk).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64ct::{Base64Unpadded, Encoding};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::token::RngError;
pub use crate::config::PasswordParams;

/// The longest password accepted, in bytes. A longer one is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Coder's PBKDF2 hash prefix (spec §9).
const PBKDF2_PREFIX: &str = "$pbkdf2-sha256$";
/// Coder's derived-key length, in bytes.
const PBKDF2_KEY_LEN: usize = 64;
/// Refuse iteration counts that would hold a blocking thread for minutes (Coder uses 65,535).
const PBKDF2_MAX_ITERATIONS: u32 = 1 << 24;
/// Salt length of new argon2 hashes, in bytes (RFC 9106 §3.1 recommends 16).
const SALT_LEN: usize = 16;

/// The outcome of [`Passwords::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Verified {
    /// The password matches the stored hash.
    pub ok: bool,
    /// The stored hash is not argon2id with the configured parameters: after a good login
    /// the caller stores a fresh [`Passwords::hash`] of the password.
    pub needs_rehash: bool,
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_BYTES`]; it was not hashed.
    #[error("password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Every hashing slot is taken and the wait queue is full; answer 503.
    #[error("too many password checks in progress")]
    Busy,
    /// The stored hash is not one this service can check. Holds why, never the hash.
    #[error("stored password hash is malformed: {0}")]
    Malformed(&'static str),
    /// The configured parameters are not usable.
    #[error("invalid password hashing parameters: {0}")]
    Params(String),
    /// No salt could be drawn.
    #[error(transparent)]
    Rng(#[from] RngError),
    /// Hashing failed or its task did not finish.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The password hashing service: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    params: PasswordParams,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// The argon2id PHC string [`Passwords::verify_dummy`] checks against.
    dummy: String,
    /// argon2's working memory (`memory_kib` each), kept and reused. At most `max_concurrent`
    /// jobs run, so at most that many buffers ever exist: the memory logins cost is bounded
    /// and allocated once. (Allocating per hash on whichever blocking thread runs it leaves a
    /// freed 19 MiB chunk in each thread's malloc arena: RSS grew past 240 MiB in a login
    /// benchmark with one job at a time.)
    buffers: std::sync::Mutex<Vec<Vec<Block>>>,
    block_count: usize,
}

/// A place in the wait queue, given back on drop (also when the waiting future is dropped).
struct QueueSlot<'a>(&'a AtomicUsize);

// === impl Passwords ===

impl Passwords {
    /// A service hashing with `params`.
    ///
    /// # Errors
    /// [`PasswordError::Params`] when argon2 refuses the costs (for example `m < 8p`) or
    /// `max_concurrent` is 0.
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        if params.max_concurrent == 0 {
            return Err(PasswordError::Params(
                "max_concurrent must be at least 1".into(),
            ));
        }
        let costs = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        // The dummy needs no real hash behind it, only a PHC string with the configured costs
        // to recompute against: a fixed salt and an all-zero output, which no password can
        // produce short of breaking argon2 (and the result is discarded regardless).
        let dummy = format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Base64Unpadded::encode_string(b"portcullis-dummy"),
            Base64Unpadded::encode_string(&[0u8; Params::DEFAULT_OUTPUT_LEN]),
        );
        let block_count = costs.block_count();
        Ok(Passwords {
            inner: Arc::new(Inner {
                buffers: std::sync::Mutex::new(Vec::new()),
                block_count,
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, costs),
                params,
                slots: Arc::new(Semaphore::new(params.max_concurrent)),
                waiting: AtomicUsize::new(0),
                dummy,
            }),
        })
    }

    /// The parameters this service hashes with.
    pub fn params(&self) -> &PasswordParams {
        &self.inner.params
    }

    /// An argon2id PHC string for `password`, with a fresh 16-byte salt.
    ///
    /// # Errors
    /// [`PasswordError::TooLong`] before any work, [`PasswordError::Busy`] when the queue is
    /// full, [`PasswordError::Rng`] or [`PasswordError::Internal`] on a local failure.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        check_length(password)?;
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(RngError::from)?;
        let password = password.to_owned();
        self.run(move |inner| inner.hash(password.as_bytes(), &salt))
            .await?
    }

    /// Checks `password` against a stored hash: an argon2id PHC string, or Coder's
    /// `$pbkdf2-sha256$<iterations>$<salt>$<key>` (spec §9). Both compare in constant time.
    ///
    /// # Errors
    /// [`PasswordError::Malformed`] when the stored hash cannot be checked (never a silent
    /// false), [`PasswordError::TooLong`] before any work, [`PasswordError::Busy`] when the
    /// queue is full, [`PasswordError::Internal`] on a local failure.
    pub async fn verify(&self, password: &str, stored: &str) -> Result<Verified, PasswordError> {
        check_length(password)?;
        let (password, stored) = (password.to_owned(), stored.to_owned());
        self.run(move |inner| inner.verify(password.as_bytes(), &stored))
            .await?
    }

    /// Spends the work of an argon2 [`verify`](Self::verify) with the configured parameters and
    /// answers `ok: false` whatever the password: the path for unknown users and accounts
    /// without a password, so that they cost what a real account costs. It refuses and queues
    /// exactly as `verify` does, so no error tells the two paths apart either.
    ///
    /// # Errors
    /// As [`verify`](Self::verify), except [`PasswordError::Malformed`].
    pub async fn verify_dummy(&self, password: &str) -> Result<Verified, PasswordError> {
        check_length(password)?;
        let password = password.to_owned();
        self.run(move |inner| {
            // The outcome is discarded: this path must never succeed (unlike Coder's, where
            // `hunter2` matched its dummy hash).
            let _: Verified = inner
                .verify(password.as_bytes(), &inner.dummy)
                .map_err(|_| PasswordError::Internal("the dummy hash is unusable".into()))?;
            Ok(Verified {
                ok: false,
                needs_rehash: false,
            })
        })
        .await?
    }

    /// Runs `job` on the blocking pool once a slot is free, or fails with
    /// [`PasswordError::Busy`] at once if `queue` callers are already waiting.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self.slot().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job(&inner)
        })
        .await
        .map_err(|e| PasswordError::Internal(format!("hashing task: {e}")))
    }

    async fn slot(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        let closed = || PasswordError::Internal("hashing slots closed".into());
        match Arc::clone(&self.inner.slots).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(closed()),
            Err(TryAcquireError::NoPermits) => {}
        }
        let _place = QueueSlot::take(&self.inner.waiting, self.inner.params.queue)
            .ok_or(PasswordError::Busy)?;
        // tokio's semaphore is fair: a freed slot goes to the longest waiter, so no later
        // caller's `try_acquire` can jump the queue.
        Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .map_err(|_| closed())
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.inner.params)
            .field("waiting", &self.inner.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    fn hash(&self, password: &[u8], salt: &[u8]) -> Result<String, PasswordError> {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.with_blocks(self.block_count, |blocks| {
            self.argon2
                .hash_password_into_with_memory(password, salt, &mut out, blocks)
        })
        .map_err(|e| PasswordError::Internal(e.to_string()))?;
        let p = &self.params;
        Ok(format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            p.memory_kib,
            p.iterations,
            p.parallelism,
            Base64Unpadded::encode_string(salt),
            Base64Unpadded::encode_string(&out),
        ))
    }

    /// Runs `f` with `count` blocks of working memory: a pooled buffer when `count` is the
    /// configured size, a one-off otherwise (a stored hash with other parameters).
    fn with_blocks<T>(&self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let pooled = count == self.block_count;
        let mut blocks = pooled
            .then(|| self.lock_buffers().pop())
            .flatten()
            .unwrap_or_else(|| vec![Block::default(); count]);
        let result = f(&mut blocks);
        if pooled {
            self.lock_buffers().push(blocks);
        }
        result
    }

    fn lock_buffers(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // Nothing panics while holding it; a poisoned pool still holds valid buffers.
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verify(&self, password: &[u8], stored: &str) -> Result<Verified, PasswordError> {
        if stored.starts_with(PBKDF2_PREFIX) {
            return Ok(Verified {
                ok: verify_pbkdf2(password, stored)?,
                needs_rehash: true,
            });
        }
        let hash =
            PasswordHash::new(stored).map_err(|_| PasswordError::Malformed("not a PHC string"))?;
        if hash.algorithm != argon2::ARGON2ID_IDENT {
            return Err(PasswordError::Malformed("not argon2id"));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(PasswordError::Malformed("no salt or no hash"));
        }
        let stored_costs = Params::try_from(&hash)
            .map_err(|_| PasswordError::Malformed("bad argon2 parameters"))?;
        let version = match hash.version {
            None => Version::V0x13,
            Some(v) => {
                Version::try_from(v).map_err(|_| PasswordError::Malformed("bad argon2 version"))?
            }
        };
        let mut salt_buf = [0u8; 64];
        let salt = hash
            .salt
            .ok_or(PasswordError::Malformed("no salt or no hash"))?
            .decode_b64(&mut salt_buf)
            .map_err(|_| PasswordError::Malformed("bad argon2 salt"))?;
        let expected = hash
            .hash
            .ok_or(PasswordError::Malformed("no salt or no hash"))?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(Algorithm::Argon2id, version, stored_costs.clone());
        self.with_blocks(stored_costs.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password, salt, &mut out, blocks)
        })
        .map_err(|_| PasswordError::Malformed("bad argon2 hash"))?;
        let ok = bool::from(out.as_slice().ct_eq(expected.as_bytes()));
        let p = &self.params;
        let needs_rehash = hash.version != Some(Version::V0x13.into())
            || stored_costs.m_cost() != p.memory_kib
            || stored_costs.t_cost() != p.iterations
            || stored_costs.p_cost() != p.parallelism
            || stored_costs.output_len() != Some(Params::DEFAULT_OUTPUT_LEN);
        Ok(Verified { ok, needs_rehash })
    }
}

// === impl QueueSlot ===

impl<'a> QueueSlot<'a> {
    /// A place in the queue if fewer than `limit` callers hold one.
    fn take(waiting: &'a AtomicUsize, limit: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn check_length(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Coder's `userpassword.Compare` (spec §9): PBKDF2-HMAC-SHA256 with the stored iteration
/// count and salt, a 64-byte key, base64 without padding, compared in constant time.
fn verify_pbkdf2(password: &[u8], stored: &str) -> Result<bool, PasswordError> {
    let malformed = PasswordError::Malformed;
    if stored.len() < PBKDF2_KEY_LEN {
        return Err(malformed("hash too short"));
    }
    let mut parts = stored.split('$');
    let (Some(""), Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(key), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed("not five $-separated parts"));
    };
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|n| (1..=PBKDF2_MAX_ITERATIONS).contains(n))
        .ok_or(malformed("bad pbkdf2 iteration count"))?;
    let mut salt_buf = [0u8; 64];
    let salt =
        Base64Unpadded::decode(salt, &mut salt_buf).map_err(|_| malformed("bad pbkdf2 salt"))?;
    let mut expected = [0u8; PBKDF2_KEY_LEN];
    match Base64Unpadded::decode(key, &mut expected) {
        Ok(k) if k.len() == PBKDF2_KEY_LEN => {}
        _ => return Err(malformed("bad pbkdf2 key")),
    }
    let mut derived = [0u8; PBKDF2_KEY_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut derived);
    Ok(derived.ct_eq(&expected).into())
}

#[cfg(test)]
mod tests;
