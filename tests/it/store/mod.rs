//! The store's behaviour, one suite run against every backend: `memory://` twice (with Tokio's
//! clock paused on one thread, so expiry is exact and takes no time; and on two worker threads
//! with the real clock, so that concurrent calls really run at once), the real Redis at
//! `127.0.0.1:6379`, the Sentinel set and the Redis Cluster that `scripts/test` starts
//! (`common::SENTINEL`, `common::CLUSTER`), each test under a random key prefix that it deletes
//! afterwards.
//!
//! The Redis runs fail, loudly, when Redis does not answer: they are never skipped. The
//! outage test starts a private `redis-server` on a free port and kills it by PID.
//!
//! Every wait is bounded by [`BOUND`] so that a hang fails the test; no assertion is about
//! speed.

use std::path::Path;
use std::time::Duration;

use portcullis::config::{Config, StoreConfig};
use portcullis::store::{
    AllowListEntry, ApiKey, Invalidation, LoginType, Membership, OidcLink, Organization, Store,
    StoreError, User, UserStatus,
};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::common::{
    delete_redis_keys, eventually, free_port, random_key_prefix, redis_keys, redis_masters,
    subscribers, RedisServer, BOUND, REDIS,
};

// === harness ===

/// Declares `$name::memory`, `$name::memory_threads`, `$name::redis`, `$name::sentinel` and
/// `$name::cluster`, each running `async fn $name(Store)` on that store.
macro_rules! every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn memory() {
                super::$name(super::memory_store()).await;
            }

            // A paused clock needs a single thread, on which concurrent calls of the memory
            // store (synchronous under its lock) never interleave: this run makes them race.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory_threads() {
                super::$name(super::memory_store()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::on_redis($crate::common::REDIS, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sentinel() {
                super::on_redis($crate::common::SENTINEL, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::on_redis($crate::common::CLUSTER, super::$name).await;
            }
        }
    )*};
}

/// Declares `$name::redis`, `$name::sentinel` and `$name::cluster`, each running
/// `async fn $name(&str)` with that store URL.
macro_rules! every_redis {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name($crate::common::REDIS).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sentinel() {
                super::$name($crate::common::SENTINEL).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$name($crate::common::CLUSTER).await;
            }
        }
    )*};
}

/// Runs `case` on a store at `url` under a fresh prefix, then deletes the prefix's keys.
async fn on_redis<F: std::future::Future<Output = ()>>(url: &str, case: impl FnOnce(Store) -> F) {
    let (store, prefix) = redis_store(url).await;
    case(store).await;
    cleanup(url, &prefix).await;
}

every_backend!(
    users_are_created_found_and_listed,
    emails_and_usernames_are_unique_case_insensitively,
    concurrent_creates_with_one_email_have_exactly_one_winner,
    updates_move_the_indexes_and_respect_uniqueness,
    a_rename_keeps_a_suspension_made_while_it_ran,
    deleting_a_user_deletes_its_keys_and_memberships,
    set_if_absent_has_a_single_winner,
    organizations_and_memberships,
    api_keys_are_stored_found_updated_and_deleted,
    token_names_are_unique_per_user,
    counters_count_and_reset,
    ephemeral_values_are_single_use,
    ephemeral_values_are_taken_only_while_they_hold_the_expected_value,
    values_counters_and_key_records_expire,
    a_rate_window_is_not_extended_by_later_increments,
    invalidations_reach_subscribers,
    concurrent_user_modifications_are_never_lost,
    a_modification_sees_a_suspension_made_while_it_ran,
    modifications_cannot_move_ids_emails_usernames_owners_or_names,
    an_expire_racing_refreshes_leaves_the_key_expired,
    a_modified_key_record_vanishes_with_its_new_expiry,
    a_key_stored_while_its_users_keys_are_deleted_stays_listed,
    the_directory_filters_orders_and_pages_as_coder_does,
    the_directory_follows_every_kind_of_user_write,
    concurrent_writes_leave_the_directory_as_the_record_is,
    organizations_are_renamed_and_deleted_with_their_memberships,
    a_key_resolves_to_its_user_and_memberships,
);

fn store_config(url: &str, prefix: &str, command_timeout: &str) -> StoreConfig {
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[policy]\ndefault = \"public\"\n\
         [store]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\ncommand_timeout = \"{command_timeout}\"\n"
    );
    Config::from_toml(&text, Vec::new(), Path::new("."))
        .expect("test store config parses")
        .store
}

fn memory_store() -> Store {
    Store::open(&store_config("memory://", "portcullis:", "500ms")).expect("memory store opens")
}

/// A store on the shared Redis at `url` under a fresh prefix. Panics, naming what is missing,
/// when Redis does not answer.
async fn redis_store(url: &str) -> (Store, String) {
    let prefix = random_key_prefix();
    let store = open_redis(url, &prefix).await;
    (store, prefix)
}

async fn open_redis(url: &str, prefix: &str) -> Store {
    let store = Store::open(&store_config(url, prefix, "500ms")).expect("redis store opens");
    let mut last = None;
    // The first call also connects; give it a few tries before calling Redis absent.
    for _ in 0..10 {
        match store.ping().await {
            Ok(()) => return store,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "Redis at {url} does not answer ({last:?}). The store tests need a real Redis, Sentinel \
         set and Cluster: scripts/test starts them — these tests never skip."
    );
}

/// Deletes every key under `prefix` on the Redis at `url`.
async fn cleanup(url: &str, prefix: &str) {
    delete_redis_keys(url, prefix).await;
}

fn now() -> OffsetDateTime {
    // Whole seconds: RFC 3339 round-trips exactly.
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("valid time")
}

fn user(email: &str, username: &str) -> User {
    User {
        id: Uuid::new_v4(),
        username: username.to_owned(),
        email: email.to_owned(),
        name: "Test User".to_owned(),
        avatar_url: String::new(),
        created_at: now(),
        updated_at: now(),
        last_seen_at: now(),
        status: UserStatus::Active,
        login_type: LoginType::Password,
        hashed_password: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        roles: vec!["owner".to_owned()],
        theme_preference: String::new(),
    }
}

/// [`Store::update_user`] replacing the whole stored user with `user` (as the change's
/// closure sees it); whether the user exists.
async fn replace_user(store: &Store, user: &User) -> Result<bool, StoreError> {
    let found = store
        .update_user(user.id, |stored| {
            let changed = stored != user;
            stored.clone_from(user);
            changed
        })
        .await?;
    Ok(found.is_some())
}

fn org(name: &str, is_default: bool) -> Organization {
    Organization {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        display_name: name.to_uppercase(),
        description: String::new(),
        is_default,
        created_at: now(),
        updated_at: now(),
    }
}

fn member(user: Uuid, org: Uuid, roles: &[&str]) -> Membership {
    Membership {
        user_id: user,
        organization_id: org,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at: now(),
        updated_at: now(),
    }
}

fn api_key(user: Uuid, name: &str) -> ApiKey {
    let id: String = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut hashed_secret = [0u8; 32];
    hashed_secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    ApiKey {
        id,
        hashed_secret,
        user_id: user,
        last_used: OffsetDateTime::UNIX_EPOCH,
        expires_at: now() + time::Duration::days(7),
        created_at: now(),
        updated_at: now(),
        login_type: if name.is_empty() {
            LoginType::Password
        } else {
            LoginType::Token
        },
        lifetime_seconds: 7 * 86400,
        ip_address: "127.0.0.1".to_owned(),
        token_name: name.to_owned(),
        scopes: vec!["coder:all".to_owned()].into(),
        allow_list: vec![AllowListEntry {
            resource_type: "*".to_owned(),
            id: "*".to_owned(),
        }]
        .into(),
        not_after: None,
    }
}

fn a_week_from_now() -> OffsetDateTime {
    now() + time::Duration::days(7)
}

fn conflict(field: &'static str) -> Result<(), StoreError> {
    Err(StoreError::Conflict { field })
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

mod oidc_links;
mod redis_only;
mod session;
use session::a_key_resolves_to_its_user_and_memberships;
mod suite;
use suite::*;
mod atomic;
use atomic::*;
mod directory;
use directory::*;
use oidc_links::expect_all;
