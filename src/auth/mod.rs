//! Authentication: who is asking. Session tokens (their format, where a request carries them,
//! and their removal before forwarding), password hashing, password strength, and the
//! watchlist of open connections that a revocation must reach.
//!
//! These are the primitives; the store keeps users and hashed keys, and the login, logout and
//! key endpoints are built on both.

pub mod password;
pub mod session;
pub mod strength;
pub mod token;
pub mod watchlist;

pub use password::{PasswordError, PasswordParams, Passwords, Verified};
pub use strength::{PasswordPolicy, UserInfo};
pub use token::{extract, strip_credentials, KeyId, Secret, Token, TokenError};
