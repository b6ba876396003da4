//! Coder's validators for the user fields (spec/coder-api.md §0.1): each adds a
//! [`Validation`] for a value it refuses.

use crate::coder::{looks_like_email, tag_failed, Validation};

/// Coder's username rule: 1-32 characters of `[a-zA-Z0-9]` in groups joined by single `-`,
/// and not `new` or `create`.
pub fn validate_username(username: &str, invalid: &mut Vec<Validation>) {
    if username.is_empty() {
        invalid.push(tag_failed("username", "required", ""));
        return;
    }
    if !is_name(username) {
        invalid.push(tag_failed("username", "username", username));
    }
}

/// Coder's `NameValid` (usernames, organization names): 1-32 characters of `[a-zA-Z0-9]` in
/// groups joined by single `-`, and not `new` or `create`.
pub fn is_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        && !matches!(name, "new" | "create")
}

/// Required, and shaped like an email address.
pub fn validate_email(email: &str, invalid: &mut Vec<Validation>) {
    if email.is_empty() {
        invalid.push(tag_failed("email", "required", ""));
    } else if !looks_like_email(email) {
        invalid.push(tag_failed("email", "email", email));
    }
}

/// Optional; at most 128 characters, no leading or trailing white space.
pub fn validate_name(name: &str, invalid: &mut Vec<Validation>) {
    if name.chars().count() > 128 || name.trim() != name {
        invalid.push(tag_failed("name", "user_real_name", name));
    }
}
