//! The records the store keeps: users, organizations, memberships and API keys, in the shape of
//! Coder's database rows (spec/coder-api.md §7.2, §7.4, §8.2).
//!
//! These are storage structs, not API output: [`User`] carries the password hash and [`ApiKey`]
//! the SHA-256 of the key's secret, so the API layer maps them to its own response types. Both
//! have a `Debug` that leaves those fields out. Timestamps serialize as RFC 3339.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A user account (Coder's `users` row).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub id: Uuid,
    /// The username; unique case-insensitively.
    pub username: String,
    /// The email address; unique case-insensitively.
    pub email: String,
    /// The display name (may be empty).
    pub name: String,
    /// Avatar URL (may be empty).
    pub avatar_url: String,
    /// When the user was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the user was last seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Active, dormant or suspended.
    pub status: UserStatus,
    /// How the user logs in.
    pub login_type: LoginType,
    /// The password hash as a PHC string (argon2id, or an imported Coder `$pbkdf2-sha256$`
    /// hash); `None` for users without a password. Never part of API output.
    pub hashed_password: Option<String>,
    /// Stored site roles (not the implicit `member`).
    pub roles: Vec<String>,
    /// The UI theme preference (may be empty).
    pub theme_preference: String,
}

/// A user's status (spec §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May log in and use the API.
    Active,
    /// Not yet logged in, or idle; re-activated by a successful login.
    Dormant,
    /// Locked out by an administrator.
    Suspended,
}

/// How a user (or an API key) logs in (spec §7.2, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginType {
    /// Email and password.
    Password,
    /// GitHub OAuth.
    Github,
    /// OpenID Connect.
    Oidc,
    /// A named API token.
    Token,
    /// No way to log in.
    None,
}

// === impl UserStatus ===

impl UserStatus {
    /// The wire name (`active`, `dormant`, `suspended`).
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Dormant => "dormant",
            UserStatus::Suspended => "suspended",
        }
    }
}

// === impl LoginType ===

impl LoginType {
    /// The wire name (`password`, `github`, `oidc`, `token`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            LoginType::Password => "password",
            LoginType::Github => "github",
            LoginType::Oidc => "oidc",
            LoginType::Token => "token",
            LoginType::None => "none",
        }
    }
}

/// An organization (Coder's `organizations` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// The organization id.
    pub id: Uuid,
    /// The name; unique case-insensitively.
    pub name: String,
    /// The display name.
    pub display_name: String,
    /// A description (may be empty).
    pub description: String,
    /// Whether this is the default organization; there is at most one.
    pub is_default: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A user's membership of an organization, with its organization roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The member.
    pub user_id: Uuid,
    /// The organization.
    pub organization_id: Uuid,
    /// Stored organization roles (not the implicit `organization-member`).
    pub roles: Vec<String>,
    /// When the membership was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Length of a [`KeyId`].
pub const KEY_ID_LEN: usize = 10;

/// The public half of a token: names the stored key. Not a secret on its own. Ten ASCII
/// alphanumerics, held inline (the key cache's key: no allocation of its own).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

/// An API key: a session or a named token (Coder's `api_keys` row, spec §8.2).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The 10-character key id, the part of the token before the `-`.
    pub id: String,
    /// SHA-256 of the key's secret; stored as 64 lowercase hex digits. Compare in constant time.
    #[serde(with = "hex32")]
    pub hashed_secret: [u8; 32],
    /// The owner.
    pub user_id: Uuid,
    /// When the key was last used (the Unix epoch when never).
    #[serde(with = "time::serde::rfc3339")]
    pub last_used: OffsetDateTime,
    /// When the key stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// How the key was obtained (`token` for named tokens).
    pub login_type: LoginType,
    /// The lifetime used by the sliding refresh, in seconds.
    pub lifetime_seconds: i64,
    /// The client address that last used the key.
    pub ip_address: String,
    /// The token's name; empty for sessions. Unique per user when not empty.
    pub token_name: String,
    /// Scope names. Shared: the key cache gives keys with the same list one copy.
    pub scopes: Arc<[String]>,
    /// The allow list (`[{"type":"*","id":"*"}]` when unrestricted). Shared as the scopes are.
    pub allow_list: Arc<[AllowListEntry]>,
    /// The latest the sliding refresh may move `expires_at` to: set on a token made with a
    /// restricted key, which never outlives the key that made it (spec §7.3).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
}

/// One allow-list entry of an [`ApiKey`]: a resource type and id, either of which may be `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllowListEntry {
    /// The resource type, or `*` (JSON `type`).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource id, or `*`.
    pub id: String,
}

// === impl User ===

impl User {
    /// `user` without its password hash, as sessions hold it.
    pub fn without_password(user: User) -> User {
        User {
            hashed_password: None,
            ..user
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("status", &self.status)
            .field("login_type", &self.login_type)
            .field(
                "hashed_password",
                &self.hashed_password.as_ref().map(|_| "<redacted>"),
            )
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

// === impl KeyId ===

impl KeyId {
    /// `bytes` as an id when they are all ASCII alphanumerics.
    pub fn new(bytes: [u8; KEY_ID_LEN]) -> Option<KeyId> {
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(KeyId(bytes))
    }

    /// `s` as an id when it is exactly [`KEY_ID_LEN`] ASCII alphanumerics (`auth::token`
    /// parses presented ids with Coder's error for each way they fail).
    pub fn parse(s: &str) -> Option<KeyId> {
        KeyId::new(s.as_bytes().try_into().ok()?)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a KeyId holds only ASCII alphanumerics")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyId").field(&self.as_str()).finish()
    }
}

// === impl ApiKey ===

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("hashed_secret", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("login_type", &self.login_type)
            .field("token_name", &self.token_name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Serde for `[u8; 32]` as 64 lowercase hex digits.
mod hex32 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(64);
        for b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s.serialize_str(&out)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(de::Error::invalid_length(digits.len(), &"64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = nibble(pair[0]).ok_or_else(|| de::Error::custom("not a hex digit"))?;
            let lo = nibble(pair[1]).ok_or_else(|| de::Error::custom("not a hex digit"))?;
            *byte = hi << 4 | lo;
        }
        Ok(out)
    }

    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        let mut hashed_secret = [0u8; 32];
        hashed_secret[0] = 0xab;
        hashed_secret[31] = 0x01;
        ApiKey {
            id: "abcdefghij".into(),
            hashed_secret,
            user_id: Uuid::nil(),
            last_used: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            login_type: LoginType::Token,
            lifetime_seconds: 86400,
            ip_address: "127.0.0.1".into(),
            token_name: "ci".into(),
            scopes: vec!["coder:all".into()].into(),
            allow_list: vec![AllowListEntry {
                resource_type: "*".into(),
                id: "*".into(),
            }]
            .into(),
            not_after: None,
        }
    }

    #[test]
    fn api_key_json_has_hex_hash_rfc3339_times_and_typed_allow_list() {
        let k = key();
        let text = serde_json::to_string(&k).expect("serializes");
        let hex = format!("ab{}01", "0".repeat(60));
        assert!(
            text.contains(&format!("\"hashed_secret\":\"{hex}\"")),
            "{text}"
        );
        assert!(
            text.contains("\"expires_at\":\"1970-01-02T00:00:00Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"allow_list\":[{\"type\":\"*\",\"id\":\"*\"}]"),
            "{text}"
        );
        assert!(text.contains("\"login_type\":\"token\""), "{text}");
        let back: ApiKey = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, k);
        // Records written before `not_after` existed still load, and a cap round-trips.
        assert!(!text.contains("not_after"), "{text}");
        let capped = ApiKey {
            not_after: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(2)),
            ..k
        };
        let text = serde_json::to_string(&capped).expect("serializes");
        assert!(
            text.contains("\"not_after\":\"1970-01-03T00:00:00Z\""),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<ApiKey>(&text).expect("deserializes"),
            capped
        );
    }

    #[test]
    fn a_malformed_hash_is_refused() {
        let text = serde_json::to_string(&key()).expect("serializes");
        let hex = format!("ab{}01", "0".repeat(60));
        for bad in ["zz".repeat(32), "ab".into(), format!("{hex}00")] {
            let broken = text.replace(&hex, &bad);
            assert!(serde_json::from_str::<ApiKey>(&broken).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_whose_id_no_token_can_name_gives_no_session_key() {
        for id in ["abcdefghi", "abcdefghijk", "abcde-ghij", "abcdéfghi", ""] {
            let k = ApiKey {
                id: id.into(),
                ..key()
            };
            assert!(SessionKey::of(k).is_none(), "{id:?}");
        }
        let k = SessionKey::of(key()).expect("a key id");
        assert_eq!(k.id.as_str(), "abcdefghij");
        assert_eq!(
            (k.hashed_secret, k.user_id),
            (key().hashed_secret, Uuid::nil())
        );
    }

    #[test]
    fn debug_output_leaves_out_hashes() {
        let k = key();
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("171") && !shown.contains("ab0000"),
            "{shown}"
        );
        let session_key = SessionKey::of(k).expect("a key id");
        let shown = format!("{session_key:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("171"),
            "{shown}"
        );
        let user = User {
            id: Uuid::nil(),
            username: "u".into(),
            email: "u@example.com".into(),
            name: String::new(),
            avatar_url: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            last_seen_at: OffsetDateTime::UNIX_EPOCH,
            status: UserStatus::Dormant,
            login_type: LoginType::Password,
            hashed_password: Some("$argon2id$v=19$secret-hash".into()),
            roles: vec![],
            theme_preference: String::new(),
        };
        let shown = format!("{user:?}");
        assert!(!shown.contains("argon2id"), "{shown}");
        let text = serde_json::to_string(&user).expect("serializes");
        assert!(text.contains("\"status\":\"dormant\""), "{text}");
    }
}

/// What a session needs of its [`ApiKey`]: the record without what only the token API shows
/// (the address that last used it, the token's name, the record's times), its id inline. The
/// key cache holds one per cached key, so each field here costs memory per session (issue 18).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// The key id.
    pub id: KeyId,
    /// SHA-256 of the key's secret. Compare in constant time.
    pub hashed_secret: [u8; 32],
    /// The owner.
    pub user_id: Uuid,
    /// When the key was last used, as read.
    pub last_used: OffsetDateTime,
    /// When the key stops working, as read.
    pub expires_at: OffsetDateTime,
    /// How the key was obtained.
    pub login_type: LoginType,
    /// Scope names (shared, as [`ApiKey::scopes`]).
    pub scopes: Arc<[String]>,
    /// The allow list (shared, as [`ApiKey::allow_list`]).
    pub allow_list: Arc<[AllowListEntry]>,
    /// The latest the key's expiry may slide to ([`ApiKey::not_after`]).
    pub not_after: Option<OffsetDateTime>,
}

// === impl SessionKey ===

impl SessionKey {
    /// `key`'s part a session needs; `None` when its id is not a key id (no token names it).
    pub fn of(key: ApiKey) -> Option<SessionKey> {
        Some(SessionKey {
            id: KeyId::parse(&key.id)?,
            hashed_secret: key.hashed_secret,
            user_id: key.user_id,
            last_used: key.last_used,
            expires_at: key.expires_at,
            login_type: key.login_type,
            scopes: key.scopes,
            allow_list: key.allow_list,
            not_after: key.not_after,
        })
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .field("hashed_secret", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("login_type", &self.login_type)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// What a valid key id resolves to. The user and its memberships are behind [`Arc`]s so that
/// the key cache can give every cached key of one user the same copy.
#[derive(Debug)]
pub struct Session {
    /// The key (its secret only as a hash).
    pub key: SessionKey,
    /// The key's user. A session never holds the password hash: `hashed_password` is `None`
    /// whatever the stored record has, so code that checks a password reads the store.
    pub user: Arc<User>,
    /// The user's organization memberships.
    pub memberships: Arc<[Membership]>,
}

// === impl Session ===

impl Session {
    /// A session of `key`, its user (whose password hash it drops) and memberships; `None`
    /// when the key's id is not a key id ([`SessionKey::of`]).
    pub fn new(key: ApiKey, user: User, memberships: Vec<Membership>) -> Option<Session> {
        Some(Session {
            key: SessionKey::of(key)?,
            user: Arc::new(User::without_password(user)),
            memberships: memberships.into(),
        })
    }
}

#[cfg(test)]
impl User {
    /// An active password user for unit tests: `username`, `<username>@example.com`, `roles`,
    /// a new id, every time now.
    pub(crate) fn for_test(username: &str, roles: &[&str]) -> User {
        let now = OffsetDateTime::now_utc();
        User {
            id: Uuid::new_v4(),
            username: username.into(),
            email: format!("{username}@example.com"),
            name: String::new(),
            avatar_url: String::new(),
            created_at: now,
            updated_at: now,
            last_seen_at: now,
            status: UserStatus::Active,
            login_type: LoginType::Password,
            hashed_password: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            theme_preference: String::new(),
        }
    }
}
