//! [`StoreError`]: why a store call failed. A failure carries what was being done in its text
//! and the error behind it (Redis, JSON) as its `source()`, so that a log of the whole chain
//! reads, for example, `store unavailable: redis command: Connection refused (os error 111)`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached in time, or refused the call. Retry later; answer 503.
    #[error(transparent)]
    Unavailable(Unavailable),
    /// A unique field already belongs to another record: `email`, `username`, `name` (a token
    /// name, or an organization name), `is_default` (a second default organization), or `id`
    /// (a record with this id exists).
    #[error("{field} is already in use")]
    Conflict {
        /// The field that collided.
        field: &'static str,
    },
    /// A record could not be decoded, or a value encoded.
    #[error(transparent)]
    Corrupt(Corrupt),
}

/// What [`StoreError::Unavailable`] says: what could not be done, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store unavailable: {what}")]
pub struct Unavailable {
    what: Cow<'static, str>,
    #[source]
    cause: Option<Arc<dyn StdError + Send + Sync>>,
}

/// What [`StoreError::Corrupt`] says: which record or value, and what was wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("corrupt store record: {what}")]
pub struct Corrupt {
    what: Cow<'static, str>,
    #[source]
    cause: Option<Arc<dyn StdError + Send + Sync>>,
}

// === impl StoreError ===

impl StoreError {
    /// The store could not do `what`, with no error behind it (a deadline, a bad setting).
    pub fn unavailable(what: impl Into<Cow<'static, str>>) -> StoreError {
        StoreError::Unavailable(Unavailable {
            what: what.into(),
            cause: None,
        })
    }

    /// The store could not do `what` because of `cause`.
    pub fn unavailable_because(
        what: impl Into<Cow<'static, str>>,
        cause: impl StdError + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable(Unavailable {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        })
    }

    /// The record or value `what` is not what it should be.
    pub fn corrupt(what: impl Into<Cow<'static, str>>) -> StoreError {
        StoreError::Corrupt(Corrupt {
            what: what.into(),
            cause: None,
        })
    }

    /// The record or value `what` could not be decoded or encoded, because of `cause`.
    pub fn corrupt_because(
        what: impl Into<Cow<'static, str>>,
        cause: impl StdError + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Corrupt(Corrupt {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        })
    }
}

// === impl Unavailable ===

/// Equal when they say the same (the causes, which cannot be compared, by their text).
impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what && same_text(&self.cause, &other.cause)
    }
}

impl Eq for Unavailable {}

// === impl Corrupt ===

/// Equal when they say the same (the causes, which cannot be compared, by their text).
impl PartialEq for Corrupt {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what && same_text(&self.cause, &other.cause)
    }
}

impl Eq for Corrupt {}

fn same_text(
    a: &Option<Arc<dyn StdError + Send + Sync>>,
    b: &Option<Arc<dyn StdError + Send + Sync>>,
) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole chain, as a log shows it.
    fn chain(e: &StoreError) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn the_cause_is_the_source_and_is_said_once() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let cases = [
            (
                StoreError::unavailable("no answer from redis within 500ms"),
                "store unavailable: no answer from redis within 500ms",
            ),
            (
                StoreError::unavailable_because(
                    "redis command",
                    std::io::Error::other("connection refused"),
                ),
                "store unavailable: redis command: connection refused",
            ),
            (
                StoreError::corrupt_because("P:key:abc", json),
                "corrupt store record: P:key:abc: expected value at line 1 column 1",
            ),
            (
                StoreError::Conflict { field: "email" },
                "email is already in use",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(chain(&error), text);
        }
    }

    #[test]
    fn errors_compare_by_what_they_say() {
        let io = || std::io::Error::other("refused");
        assert_eq!(
            StoreError::unavailable_because("redis command", io()),
            StoreError::unavailable_because("redis command", io()),
        );
        assert_ne!(
            StoreError::unavailable_because("redis command", io()),
            StoreError::unavailable("redis command"),
        );
        assert_ne!(StoreError::unavailable("x"), StoreError::corrupt("x"),);
    }
}
