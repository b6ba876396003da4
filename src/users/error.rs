//! Why a user operation failed.

use uuid::Uuid;

use crate::auth::token::RngError;
use crate::auth::PasswordError;
use crate::coder::Validation;
use crate::store::{LoginType, StoreError};

/// Why a user operation failed. The API turns each into Coder's answer for its endpoint; the
/// command line prints it.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Fields fail validation, one entry per field (spec §0.1).
    #[error("{}", describe(.0))]
    Invalid(Vec<Validation>),
    /// The password-strength rule ([`Users::password_weakness`]) refuses the password; holds
    /// the rule's text.
    #[error("password not strong enough: {0}")]
    WeakPassword(String),
    /// A password was given for a user who does not log in with one.
    #[error("a password cannot be set for non-password ({:?}) authentication", .0.as_str())]
    PasswordNotAllowed(LoginType),
    /// The user does not log in with a password.
    #[error("users without password login type cannot change their password")]
    NotPasswordUser,
    /// The new password is the current one.
    #[error("the new password cannot match the old password")]
    SamePassword,
    /// The `email` or `username` belongs to another user.
    #[error("a user with this {0} already exists")]
    Conflict(&'static str),
    /// The user already has a token with this name.
    #[error("a token with name {0:?} already exists")]
    TokenNameTaken(String),
    /// No organization has this id.
    #[error("organization {0} does not exist")]
    NoSuchOrg(Uuid),
    /// No such user.
    #[error("no such user")]
    NoSuchUser,
    /// Not one of [`crate::rbac::roles::explicit_site_roles`].
    #[error("{0:?} is not a site role (one of: owner, auditor, template-admin, user-admin)")]
    UnknownRole(String),
    /// Not a built-in organization role.
    #[error("{0:?} is not an organization role")]
    UnknownOrgRole(String),
    /// Not an external scope (spec §1.1).
    #[error("invalid or unsupported API key scope: {0:?}")]
    UnknownScope(String),
    /// A key lifetime is out of bounds; holds Coder's detail (`lifetime must be less than …`).
    #[error("{0}")]
    Lifetime(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or checking a password failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// No random bytes for a new key.
    #[error(transparent)]
    Rng(#[from] RngError),
}

fn describe(invalid: &[Validation]) -> String {
    invalid
        .iter()
        .map(|v| format!("{}: {}", v.field, v.detail))
        .collect::<Vec<_>>()
        .join("; ")
}
