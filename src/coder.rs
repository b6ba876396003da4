//! Coder's wire vocabulary (spec/coder-api.md §0): the texts its answers carry, and the
//! validation entries and checks its request validators use. Every exact message string that
//! more than one part of Portcullis sends lives here, once.

use std::time::Duration;

use serde::Serialize;

/// Coder's signed-out message (§8.4): the message of every 401.
pub const SIGNED_OUT: &str =
    "You are signed out or your session has expired. Please sign in again to continue.";

/// The message for a resource that is missing or that the caller may not see (§0.2).
pub const NOT_FOUND: &str = "Resource not found or you do not have access to this resource";

/// The message of every 403.
pub const FORBIDDEN: &str = "Forbidden.";

/// The detail of a 403 from the route policy or RBAC (§0.2).
pub const FORBIDDEN_DETAIL: &str = "You don't have permission to view this content. If you \
     believe this is a mistake, please contact your administrator or try signing in with \
     different credentials.";

/// The message of every 503.
pub const UNAVAILABLE: &str = "Service unavailable.";

/// The message of a 500; the cause is logged, never sent.
pub const INTERNAL: &str = "Internal error.";

/// The message of a `400` whose body is not the JSON the endpoint takes.
pub const BAD_JSON: &str = "Request body must be valid JSON.";

/// The message of a `400` listing field [`Validation`]s.
pub const VALIDATION_FAILED: &str = "Validation failed.";

/// The message of a failed login, whatever failed (§7.2).
pub const BAD_LOGIN: &str = "Incorrect email or password.";

/// The detail of a `409` validation on a field that must be unique.
pub const ALREADY_IN_USE: &str = "This value is already in use and should be unique.";

/// A `Validation failed.` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// The JSON field.
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Coder's validation detail for a failed tag (§0.1).
pub fn tag_failed(field: &str, tag: &str, value: &str) -> Validation {
    Validation {
        field: field.to_owned(),
        detail: format!("Validation failed for tag {tag:?} with value: {value:?}"),
    }
}

/// The longest address a mail system carries (RFC 5321 §4.5.3.1.3: a 256-octet path, less its
/// angle brackets), and the longest local part (§4.5.3.1.1).
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_PART_BYTES: usize = 64;

/// The `email` validator's check: one `@` with something on both sides, no spaces, and no
/// longer than an address can be ([`MAX_EMAIL_BYTES`]), so that no email an attacker sizes
/// reaches the store (the failed-login counter and the passcode records are keyed by it).
pub fn looks_like_email(s: &str) -> bool {
    if s.len() > MAX_EMAIL_BYTES {
        return false;
    }
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= MAX_LOCAL_PART_BYTES
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Formats a duration as Go's `time.Duration.String` does for whole seconds (`1m0s`, `5m0s`,
/// `1h0m0s`, `30s`), since Coder's 429 message embeds it.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_like_go() {
        for (secs, text) in [
            (60, "1m0s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
            (30, "30s"),
            (90, "1m30s"),
        ] {
            assert_eq!(go_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn an_email_has_one_at_with_text_on_both_sides_and_no_spaces() {
        assert!(looks_like_email("a@b"));
        for bad in ["", "a", "@b", "a@", "a@b@c", "a b@c"] {
            assert!(!looks_like_email(bad), "{bad:?}");
        }
        let longest_local = format!("{}@example.com", "l".repeat(64));
        assert!(looks_like_email(&longest_local));
        assert!(!looks_like_email(&format!("l{longest_local}")));
        let longest = format!("a@{}", "d".repeat(MAX_EMAIL_BYTES - 2));
        assert!(looks_like_email(&longest));
        assert!(!looks_like_email(&format!("{longest}d")));
    }
}
