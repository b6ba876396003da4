//! Password login (spec/coder-api.md §3.2) and session issuing: the checks a login runs and the
//! key it ends with, for `POST /users/login`, convert-login and single sign-on. No HTTP here:
//! the API turns a [`LoginError`] into Coder's answer and its metric label.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::{NewKey, UserError, Users};
use crate::auth::{PasswordError, Passwords};
use crate::limits::{LimitError, Limits};
use crate::rbac::scopes as scope;
use crate::store::{LoginType, Store, StoreError, User, UserStatus};

/// Why a password login was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The account failed too often lately (or the store could not count).
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// No such user, or the wrong password: the same answer for both (which one is for the
    /// audit log only).
    #[error("incorrect email or password")]
    BadCredentials(Unmatched),
    /// `passwords.disable_password_auth` is set.
    #[error("password authentication is disabled")]
    Disabled,
    /// The user signs in another way (holds the user's login type).
    #[error("the user's login type is {:?}", .0.as_str())]
    WrongLoginType(LoginType),
    /// The right credentials of a suspended user.
    #[error("the user is suspended")]
    Suspended,
    /// Every password-checking slot is taken.
    #[error("too many password checks at once")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Checking the password failed.
    #[error(transparent)]
    Password(PasswordError),
}

/// What did not match in a refused login. The client is told neither; the audit log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// No user has the email (or it was deleted while logging in).
    UnknownUser,
    /// The user exists and the password is not theirs.
    WrongPassword,
}

/// The password login of one process: what it reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct Logins<'a> {
    /// Users, keys and the failure counters.
    pub store: &'a Store,
    /// Password hashing.
    pub passwords: &'a Passwords,
    /// The account throttle.
    pub limits: &'a Limits,
    /// `passwords.disable_password_auth`.
    pub disabled: bool,
}

// === impl Logins ===

impl Logins<'_> {
    /// Coder's password-login checks (§3.2 steps 2-7) for `email` and `password`: the account
    /// throttle, the password (a dummy hash for unknown users, never a success), disabled password
    /// auth, the login type, suspension; then a dormant user is activated and an old hash
    /// upgraded. `POST /users/login` and `POST /users/{user}/convert-login` (§6.2) both run it.
    pub async fn check_password(&self, email: &str, password: &str) -> Result<User, LoginError> {
        let account = email.to_lowercase();
        self.limits.account_allowed(self.store, &account).await?;

        let user = self.store.user_by_email(email).await?;
        let hash = user.as_ref().and_then(|u| u.hashed_password.as_deref());
        let verified = match hash {
            Some(hash) if !hash.is_empty() => self.passwords.verify(password, hash).await,
            // Same work as a real check, and never a success (unlike Coder's `hunter2` quirk).
            _ => self.passwords.verify_dummy(password).await,
        };
        let unmatched = if user.is_some() {
            Unmatched::WrongPassword
        } else {
            Unmatched::UnknownUser
        };
        let verified = verified.map_err(|e| match e {
            PasswordError::Busy => LoginError::Busy,
            // Longer than any password can be: no user has it.
            PasswordError::TooLong => LoginError::BadCredentials(unmatched),
            other => LoginError::Password(other),
        })?;
        // A user who signs in another way (OIDC, GitHub, none) has no password to match: after the
        // same work as a real check, the login-type answer below, as Coder gives for a converted
        // account (§6.4). That answer tells such an email exists; unknown emails still get 401.
        let passwordless = user
            .as_ref()
            .is_some_and(|u| u.login_type != LoginType::Password);
        let Some(user) = user.filter(|_| verified.ok || passwordless) else {
            self.limits.account_failed(self.store, &account).await;
            return Err(LoginError::BadCredentials(unmatched));
        };
        if self.disabled {
            return Err(LoginError::Disabled);
        }
        if user.login_type != LoginType::Password {
            return Err(LoginError::WrongLoginType(user.login_type));
        }
        if user.status == UserStatus::Suspended {
            return Err(LoginError::Suspended);
        }
        self.limits.account_succeeded(self.store, &account).await;

        let upgraded = if verified.needs_rehash {
            self.passwords
                .hash(password)
                .await
                .inspect_err(|error| tracing::warn!(%error, "could not upgrade a password hash"))
                .ok()
        } else {
            None
        };
        if user.status != UserStatus::Dormant && upgraded.is_none() {
            return Ok(user);
        }
        // Only the fields meant, on the stored user as it is now (an administrator may have
        // suspended it, or someone changed its password, while the hashes ran).
        let (verified_hash, now) = (user.hashed_password.clone(), OffsetDateTime::now_utc());
        let user = self
            .store
            .modify_user(user.id, |stored| {
                let mut changed = false;
                if stored.status == UserStatus::Dormant {
                    stored.status = UserStatus::Active;
                    changed = true;
                }
                if upgraded.is_some() && stored.hashed_password == verified_hash {
                    stored.hashed_password.clone_from(&upgraded);
                    changed = true;
                }
                if changed {
                    stored.updated_at = now;
                }
                changed
            })
            .await?;
        match user {
            Some(user) if user.status == UserStatus::Suspended => Err(LoginError::Suspended),
            Some(user) => Ok(user),
            // Deleted while logging in.
            None => Err(LoginError::BadCredentials(Unmatched::UnknownUser)),
        }
    }
}

// === impl Users ===

impl Users<'_> {
    /// Creates and stores a `coder:all` session key for `user` (§3.2 step 8) with
    /// `login_type` (`password`, or `oidc` for single sign-on), lasting `lifetime`, from the
    /// client at `ip`; returns the token, the only time its secret exists in the clear.
    pub async fn issue_session(
        &self,
        user: &User,
        login_type: LoginType,
        lifetime: Duration,
        ip: IpAddr,
    ) -> Result<String, UserError> {
        let key = NewKey {
            login_type,
            lifetime,
            scopes: vec![scope::ALL.to_owned()],
            token_name: String::new(),
            ip_address: ip.to_string(),
            allow_list: Vec::new(),
            not_after: None,
        };
        self.issue_key(user, key).await
    }
}
