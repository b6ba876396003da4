//! Every key name the store uses, built in one place: the Redis key layout (`Keys`, private to
//! the store), and the names that the services give their counters, single-use values and
//! claims (the functions below). The names are on the wire: existing deployments and the tests
//! read them, so a change here is a data migration.
//!
//! # Key layout
//! Every key starts with `store.key_prefix` (written `P` below, default `portcullis:`). Records
//! are JSON (the serde form of [`crate::model`]); sets hold ids.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P{u:<user id>}:user` | string | the [`User`](super::User) |
//! | `P{u:<user id>}:keys` | set | ids of the user's API keys (may list expired ones) |
//! | `P{u:<user id>}:key_names` | hash | token name → key id |
//! | `P{u:<user id>}:orgs` | set | ids of the organizations the user belongs to |
//! | `P{u:<user id>}:member:<org id>` | string | the [`Membership`](super::Membership) |
//! | `P{u:<user id>}:oidc` | hash | OpenID Connect issuer → the subject linked to the user |
//! | `Pusers` | set | every user id |
//! | `Pemail:<lower-cased email>` | string | user id (uniqueness index) |
//! | `Pusername:<lower-cased username>` | string | user id (uniqueness index) |
//! | `Poidc:<hex SHA-256 of issuer, newline, subject>` | string | user id (uniqueness index) |
//! | `P{o:<org id>}:org` | string | the [`Organization`](super::Organization) |
//! | `P{o:<org id>}:members` | set | ids of the organization's members |
//! | `Porgs` | set | every organization id |
//! | `Porg_name:<lower-cased name>` | string | organization id (uniqueness index) |
//! | `Pdefault_org` | string | id of the default organization |
//! | `Pkey:<key id>` | string | the [`ApiKey`](super::ApiKey), with an absolute expiry (`PXAT`) |
//! | `Pcounter:<name>` | string | a fixed-window counter, expiring with its window |
//! | `Pephemeral:<name>` | string | a single-use value, with its TTL |
//! | `Pclaim:<name>` | string | a [`Store::set_if_absent`](super::Store::set_if_absent) claim, with its optional TTL |
//! | `Pinvalidate` | pub/sub channel | `key:<key id>`, `user:<user id>` or `all` |
//! | `P{dir}:users` | sorted set, every score 0 | one directory entry per user, `<lower-cased username>\n<lower-cased email>\n<user id>`, in Coder's order (by username) |
//! | `P{dir}:by:<tag>` | sorted set, every score 0 | the entries of the users with that tag: `status:<status>`, `login:<login type>`, `role:<site role>` |
//! | `P{dir}:entry` | hash | user id → its entry and tags, tab-separated (what to remove when the user changes) |
//! | `P{dir}:tmp:<random>:a`, `…:b` | sorted set | scratch of one directory query, deleted by the script that made it |
//! | `P{dir}:built` | string | `1` once the directory index holds every user (see `redis/directory.rs`) |
//!
//! The `{u:…}` and `{o:…}` hash tags keep a user's (an organization's) keys in one Cluster
//! slot, and `{dir}` the whole directory index in one; see the Redis backend's module doc, "Atomicity".
//!
//! # Names of counters, single-use values and claims
//! The services use these names, built by the functions below. Redis stores them as
//! `Pcounter:<name>`, `Pephemeral:<name>` or `Pclaim:<name>`, the memory backend by the name
//! alone.
//!
//! | name | primitive | of | holds |
//! |---|---|---|---|
//! | `rl:login:<client bucket>` | counter | `limits` | login-group requests from one IPv4 address or IPv6 /64 |
//! | `rl:fail:<lower-cased email>` | counter | `limits` | failed logins of one account |
//! | `otp:code:<user id>`, `otp:code:none` | single-use value | `otp` | a user's current one-time passcode; `none` is the decoy for emails of nobody |
//! | `otp:tries:<record id>` | counter | `otp` | wrong codes checked against one code |
//! | `otp:requests:<hex SHA-256 of the lower-cased email>` | counter | `otp` | code requests for one address |
//! | `oidc-flow:<state>` | single-use value | `oidc` | an OpenID Connect login in progress |
//! | `oidc-convert:<state>` | single-use value | `oidc` | a move of a password account onto OpenID Connect in progress |
//! | `oidc-link:<key id>` | single-use value | `oidc` | the provider tokens behind an OpenID Connect session |
//! | `oidc-refresh:<key id>:<expiry, Unix seconds>` | claim | `oidc` | one replica's right to refresh that session's tokens |
//! | `first-user` ([`FIRST_USER_CLAIM`]) | claim | `api` | the right to create the first user |

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The claim that makes first-user creation single-winner across replicas. It expires, so that
/// a creation that failed half-way (a store blip) can be retried; once the user exists, the
/// user list answers instead.
pub const FIRST_USER_CLAIM: &str = "first-user";

/// The decoy code record's owner in [`otp_code`] and [`otp_tries`]: no user id looks like this.
const NOBODY: &str = "none";

/// The Redis key names under one `store.key_prefix`; see the module doc.
pub(super) struct Keys {
    prefix: String,
}

// === impl Keys ===

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix every key starts with.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key of the user `id`'s slot: `P{u:<id>}:<what>`.
    fn of_user(&self, id: Uuid, what: &str) -> String {
        format!("{}{{u:{id}}}:{what}", self.prefix)
    }

    /// A key of the organization `id`'s slot: `P{o:<id>}:<what>`.
    fn of_org(&self, id: Uuid, what: &str) -> String {
        format!("{}{{o:{id}}}:{what}", self.prefix)
    }

    /// A key outside any hash tag: `P<what>`.
    fn plain(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    pub(super) fn user(&self, id: Uuid) -> String {
        self.of_user(id, "user")
    }

    pub(super) fn user_keys(&self, id: Uuid) -> String {
        self.of_user(id, "keys")
    }

    pub(super) fn user_key_names(&self, id: Uuid) -> String {
        self.of_user(id, "key_names")
    }

    pub(super) fn user_orgs(&self, id: Uuid) -> String {
        self.of_user(id, "orgs")
    }

    pub(super) fn user_oidc(&self, id: Uuid) -> String {
        self.of_user(id, "oidc")
    }

    pub(super) fn member(&self, user: Uuid, org: Uuid) -> String {
        self.of_user(user, &format!("member:{org}"))
    }

    pub(super) fn users(&self) -> String {
        self.plain("users")
    }

    pub(super) fn email(&self, folded: &str) -> String {
        self.plain(&format!("email:{folded}"))
    }

    pub(super) fn username(&self, folded: &str) -> String {
        self.plain(&format!("username:{folded}"))
    }

    /// The index entry of an OpenID Connect subject; `link` is the issuer, a newline and the
    /// subject. Hashed, so that any issuer and subject make a short key of one shape.
    pub(super) fn oidc(&self, link: &str) -> String {
        self.plain(&format!(
            "oidc:{}",
            hex::encode(Sha256::digest(link.as_bytes()))
        ))
    }

    pub(super) fn org(&self, id: Uuid) -> String {
        self.of_org(id, "org")
    }

    pub(super) fn org_members(&self, id: Uuid) -> String {
        self.of_org(id, "members")
    }

    pub(super) fn orgs(&self) -> String {
        self.plain("orgs")
    }

    pub(super) fn org_name(&self, folded: &str) -> String {
        self.plain(&format!("org_name:{folded}"))
    }

    pub(super) fn default_org(&self) -> String {
        self.plain("default_org")
    }

    pub(super) fn api_key(&self, id: &str) -> String {
        self.plain(&format!("key:{id}"))
    }

    pub(super) fn counter(&self, name: &str) -> String {
        self.plain(&format!("counter:{name}"))
    }

    pub(super) fn ephemeral(&self, name: &str) -> String {
        self.plain(&format!("ephemeral:{name}"))
    }

    pub(super) fn claim(&self, name: &str) -> String {
        self.plain(&format!("claim:{name}"))
    }

    /// A key of the directory index's slot: `P{dir}:<what>`.
    pub(super) fn directory(&self, what: &str) -> String {
        format!("{}{{dir}}:{what}", self.prefix)
    }

    /// The invalidation pub/sub channel.
    pub(super) fn channel(&self) -> String {
        self.plain("invalidate")
    }
}

// === names of counters, single-use values and claims ===

/// The counter of login-group requests from the client bucket `bucket` (an IPv4 address, or
/// an IPv6 /64: see `limits::client_bucket`).
pub fn login_requests(bucket: &str) -> String {
    format!("rl:login:{bucket}")
}

/// The counter of API requests from `client`: `u:<user id>` for an authenticated caller, else
/// the client bucket (see `limits::client_bucket`).
pub fn api_requests(client: &str) -> String {
    format!("rl:api:{client}")
}

/// The counter of failed logins of `account` (the lower-cased email).
pub fn login_failures(account: &str) -> String {
    format!("rl:fail:{account}")
}

/// The single-use value holding the current one-time passcode of `user`, or, for `None`, the
/// decoy written for emails of nobody.
pub fn otp_code(user: Option<Uuid>) -> String {
    match user {
        Some(id) => format!("otp:code:{id}"),
        None => format!("otp:code:{NOBODY}"),
    }
}

/// The counter of wrong codes checked against the code record `record` (its id), or, for
/// `None`, against the decoy.
pub fn otp_tries(record: Option<&str>) -> String {
    format!("otp:tries:{}", record.unwrap_or(NOBODY))
}

/// The counter of code requests for `email`: named by a hash of the lower-cased address, so
/// that no address is stored in the clear.
pub fn otp_requests(email: &str) -> String {
    let digest = Sha256::digest(email.to_lowercase().as_bytes());
    format!("otp:requests:{}", hex::encode(digest))
}

/// The single-use value of an OpenID Connect login in progress, by its `state`.
pub fn oidc_flow(state: &str) -> String {
    format!("oidc-flow:{state}")
}

/// The single-use value of a convert-login (password to OpenID Connect) in progress, by its
/// `state`.
pub fn oidc_convert(state: &str) -> String {
    format!("oidc-convert:{state}")
}

/// The single-use value holding the provider tokens behind the OpenID Connect session `key`.
pub fn oidc_link(key: &str) -> String {
    format!("oidc-link:{key}")
}

/// The claim on refreshing the provider tokens of session `key` that expire at `expires_at`:
/// one replica refreshes, the others go on meanwhile.
pub fn oidc_refresh(key: &str, expires_at: OffsetDateTime) -> String {
    format!("oidc-refresh:{key}:{}", expires_at.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names on the wire, spelled out: none of them may change.
    #[test]
    fn key_names_are_the_documented_ones() {
        let k = Keys::new("P:");
        let u: Uuid = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        let o: Uuid = "00000000-0000-4000-8000-000000000002".parse().unwrap();
        let cases = [
            (k.user(u), "P:{u:00000000-0000-4000-8000-000000000001}:user"),
            (k.user_keys(u), "P:{u:00000000-0000-4000-8000-000000000001}:keys"),
            (
                k.user_key_names(u),
                "P:{u:00000000-0000-4000-8000-000000000001}:key_names",
            ),
            (k.user_orgs(u), "P:{u:00000000-0000-4000-8000-000000000001}:orgs"),
            (k.user_oidc(u), "P:{u:00000000-0000-4000-8000-000000000001}:oidc"),
            (
                k.member(u, o),
                "P:{u:00000000-0000-4000-8000-000000000001}:member:00000000-0000-4000-8000-000000000002",
            ),
            (k.users(), "P:users"),
            (k.email("a@b.example"), "P:email:a@b.example"),
            (k.username("ann"), "P:username:ann"),
            (
                // `printf 'https://idp.example\nsub-1' | sha256sum`
                k.oidc("https://idp.example\nsub-1"),
                "P:oidc:78e69036ce9a6e8e1983b27d11822d37bd2938abe9c55a8246878ab7c399f640",
            ),
            (k.org(o), "P:{o:00000000-0000-4000-8000-000000000002}:org"),
            (
                k.org_members(o),
                "P:{o:00000000-0000-4000-8000-000000000002}:members",
            ),
            (k.orgs(), "P:orgs"),
            (k.org_name("acme"), "P:org_name:acme"),
            (k.default_org(), "P:default_org"),
            (k.api_key("abcdefghij"), "P:key:abcdefghij"),
            (k.counter("rl:login:::1"), "P:counter:rl:login:::1"),
            (k.ephemeral("otp:code:x"), "P:ephemeral:otp:code:x"),
            (k.claim("first-user"), "P:claim:first-user"),
            (k.channel(), "P:invalidate"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    /// The names the services use, spelled out: none of them may change either.
    #[test]
    fn service_names_are_the_documented_ones() {
        let u: Uuid = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let cases = [
            (login_requests("192.0.2.1"), "rl:login:192.0.2.1"),
            (login_requests("2001:db8::/64"), "rl:login:2001:db8::/64"),
            (login_failures("ann@example.com"), "rl:fail:ann@example.com"),
            (
                otp_code(Some(u)),
                "otp:code:00000000-0000-4000-8000-000000000001",
            ),
            (otp_code(None), "otp:code:none"),
            (otp_tries(Some("0a1b")), "otp:tries:0a1b"),
            (otp_tries(None), "otp:tries:none"),
            (
                // `printf 'ann@example.com' | sha256sum`
                otp_requests("Ann@Example.com"),
                "otp:requests:71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476",
            ),
            (oidc_flow("st"), "oidc-flow:st"),
            (oidc_convert("st"), "oidc-convert:st"),
            (oidc_link("abcdefghij"), "oidc-link:abcdefghij"),
            (
                oidc_refresh("abcdefghij", at),
                "oidc-refresh:abcdefghij:1700000000",
            ),
            (FIRST_USER_CLAIM.to_owned(), "first-user"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
