//! `[passwords]`: password login, the argon2id costs and concurrency of hashing, and the
//! optional rules on top of Coder's strength rule for new passwords.
//!
//! The data types live here and the services that use them in `auth`: a config holds no live
//! hasher. The argon2 costs are judged at load time by `argon2::Params::new`, the same check the
//! hasher makes when it is built, so that a bad value stops start-up naming `passwords`.

use serde::Deserialize;

use super::{positive, ConfigError};

/// Coder's maximum password length, in characters (Unicode scalar values).
pub const MAX_PASSWORD_CHARS: usize = 64;

/// `[passwords]`: password login and hashing.
#[derive(Debug, Clone)]
pub struct PasswordsConfig {
    /// Refuse password logins (`disable_password_auth`, default false).
    pub disable_password_auth: bool,
    /// argon2id and concurrency parameters (`argon2_memory_kib` 19456, `argon2_iterations` 2,
    /// `argon2_parallelism` 1, `max_concurrent` = CPUs, `queue` 64).
    pub params: PasswordParams,
    /// Rules on top of Coder's strength rule for new passwords (`min_length`, 0 = off;
    /// `blocklist`, `reject_user_info`, both false): all off by default, for Coder's verdicts.
    pub policy: PasswordPolicy,
}

/// How passwords are hashed, and how many hashes may run and wait at once.
///
/// [`Default`] is OWASP's argon2id choice, one hash per CPU, and 64 waiting callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// argon2 memory cost `m`, in KiB.
    pub memory_kib: u32,
    /// argon2 time cost `t`.
    pub iterations: u32,
    /// argon2 lanes `p`.
    pub parallelism: u32,
    /// At most this many hashes or verifies run at once; at least 1.
    pub max_concurrent: usize,
    /// At most this many callers wait for a slot; one more is refused as busy (a 503).
    pub queue: usize,
}

/// The stricter rules of `[passwords]`; the default is Coder's rule alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Shortest password accepted, in characters (`min_length`; 0 = no minimum beyond
    /// Coder's entropy rule); at most [`MAX_PASSWORD_CHARS`].
    pub min_length: usize,
    /// Refuse the bundled most common passwords, case-insensitively (`blocklist`).
    pub blocklist: bool,
    /// Refuse a password containing the username or the email's local part
    /// (case-insensitively, when that is at least three characters long)
    /// (`reject_user_info`).
    pub reject_user_info: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePasswords {
    #[serde(default)]
    disable_password_auth: bool,
    argon2_memory_kib: Option<u32>,
    argon2_iterations: Option<u32>,
    argon2_parallelism: Option<u32>,
    max_concurrent: Option<usize>,
    queue: Option<usize>,
    #[serde(default)]
    min_length: usize,
    #[serde(default)]
    blocklist: bool,
    #[serde(default)]
    reject_user_info: bool,
}

// === impl PasswordParams ===

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(1, usize::from),
            queue: 64,
        }
    }
}

// === impl PasswordPolicy ===

impl PasswordPolicy {
    /// Coder's rule alone: what Portcullis applies unless `[passwords]` asks for more.
    pub const CODER: PasswordPolicy = PasswordPolicy {
        min_length: 0,
        blocklist: false,
        reject_user_info: false,
    };
}

/// Validates `[passwords]`.
pub(super) fn parse(pw: FilePasswords) -> Result<PasswordsConfig, ConfigError> {
    let defaults = PasswordParams::default();
    let params = PasswordParams {
        memory_kib: pw.argon2_memory_kib.unwrap_or(defaults.memory_kib),
        iterations: pw.argon2_iterations.unwrap_or(defaults.iterations),
        parallelism: pw.argon2_parallelism.unwrap_or(defaults.parallelism),
        max_concurrent: positive(
            "passwords.max_concurrent",
            pw.max_concurrent,
            defaults.max_concurrent,
        )?,
        queue: pw.queue.unwrap_or(defaults.queue),
    };
    // Let argon2 judge the costs now, so that a bad value names its key at start-up. The text
    // is the one the hasher's own refusal would give.
    argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| {
        ConfigError::invalid(
            "passwords",
            format!("argon2 parameters refused: invalid password hashing parameters: {e}"),
        )
    })?;
    if pw.min_length > MAX_PASSWORD_CHARS {
        return Err(ConfigError::invalid(
            "passwords.min_length",
            format!(
                "{} is more than the {MAX_PASSWORD_CHARS}-character maximum: no password could \
                 be set",
                pw.min_length,
            ),
        ));
    }
    Ok(PasswordsConfig {
        disable_password_auth: pw.disable_password_auth,
        params,
        policy: PasswordPolicy {
            min_length: pw.min_length,
            blocklist: pw.blocklist,
            reject_user_info: pw.reject_user_info,
        },
    })
}
