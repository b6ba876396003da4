//! The store's behaviour, one suite run against both backends: `memory://` (with Tokio's clock
//! paused, so expiry tests take no time) and the real Redis at `127.0.0.1:6379` (which
//! `.ci/run` starts), each test under a random key prefix that it deletes afterwards.
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
    delete_redis_keys, eventually, free_port, random_key_prefix, subscribers, RedisServer, BOUND,
    REDIS,
};

/// The shared test Redis; `STORE_TEST_REDIS_URL` points the suite elsewhere (for example
/// at a `redis+cluster://` or `redis+sentinel://` deployment).
fn redis_url() -> String {
    std::env::var("STORE_TEST_REDIS_URL").unwrap_or_else(|_| REDIS.to_owned())
}

// === harness ===

/// Declares `$name::memory` and `$name::redis`, each running `async fn $name(Store)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn memory() {
                super::$name(super::memory_store()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let (store, prefix) = super::redis_store().await;
                super::$name(store).await;
                super::cleanup(&prefix).await;
            }
        }
    )*};
}

both_backends!(
    users_are_created_found_and_listed,
    emails_and_usernames_are_unique_case_insensitively,
    concurrent_creates_with_one_email_have_exactly_one_winner,
    updates_move_the_indexes_and_respect_uniqueness,
    deleting_a_user_deletes_its_keys_and_memberships,
    set_if_absent_has_a_single_winner,
    organizations_and_memberships,
    api_keys_are_stored_found_updated_and_deleted,
    token_names_are_unique_per_user,
    counters_count_and_reset,
    ephemeral_values_are_single_use,
    ephemeral_values_are_taken_only_while_they_hold_the_expected_value,
    values_counters_and_key_records_expire,
    invalidations_reach_subscribers,
    concurrent_user_modifications_are_never_lost,
    a_modification_sees_a_suspension_made_while_it_ran,
    modifications_cannot_move_ids_emails_usernames_owners_or_names,
    an_expire_racing_refreshes_leaves_the_key_expired,
    a_modified_key_record_vanishes_with_its_new_expiry,
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

/// A store on the shared test Redis under a fresh prefix. Panics, naming what is missing,
/// when Redis does not answer.
async fn redis_store() -> (Store, String) {
    let prefix = random_key_prefix();
    let store = open_redis(&redis_url(), &prefix).await;
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
        "Redis at {url} does not answer ({last:?}). The store tests need a real Redis: start \
         redis-server (.ci/run does) — these tests never skip."
    );
}

/// Deletes every key under `prefix` on the test Redis.
async fn cleanup(prefix: &str) {
    delete_redis_keys(&redis_url(), prefix).await;
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
        scopes: vec!["coder:all".to_owned()],
        allow_list: vec![AllowListEntry {
            resource_type: "*".to_owned(),
            id: "*".to_owned(),
        }],
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

// === the suite ===

async fn users_are_created_found_and_listed(store: Store) {
    let alice = user("Alice@Example.com", "Alice");
    let bob = user("bob@example.com", "bob");
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();

    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user(Uuid::new_v4()).await.unwrap(), None);
    let by_email = store.user_by_email("alice@EXAMPLE.com").await.unwrap();
    assert_eq!(by_email, Some(alice.clone()));
    let by_name = store.user_by_username("ALICE").await.unwrap();
    assert_eq!(by_name, Some(alice.clone()));
    assert_eq!(
        store.user_by_email("carol@example.com").await.unwrap(),
        None
    );
    assert_eq!(store.user_by_username("carol").await.unwrap(), None);

    let ids = sorted(
        store
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect(),
    );
    assert_eq!(ids, sorted(vec![alice.id, bob.id]));
}

async fn emails_and_usernames_are_unique_case_insensitively(store: Store) {
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();

    let same_email = user("ALICE@example.COM", "someone");
    assert_eq!(store.create_user(&same_email).await, conflict("email"));
    let same_name = user("other@example.com", "ALICE");
    assert_eq!(store.create_user(&same_name).await, conflict("username"));

    // The refused creates left nothing behind: their other field is still free.
    store
        .create_user(&user("other@example.com", "someone"))
        .await
        .unwrap();
    assert_eq!(store.user(same_email.id).await.unwrap(), None);
    assert_eq!(store.user(same_name.id).await.unwrap(), None);
    assert_eq!(store.users().await.unwrap().len(), 2);
}

async fn concurrent_creates_with_one_email_have_exactly_one_winner(store: Store) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let u = user("race@example.com", &format!("racer{i}"));
                store.create_user(&u).await.map(|()| u.id)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task ran") {
            Ok(id) => winners.push(id),
            Err(e) => assert_eq!(e, StoreError::Conflict { field: "email" }),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let found = store.user_by_email("race@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(winners[0]));
    assert_eq!(store.users().await.unwrap().len(), 1);

    // And the same for usernames.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let u = user(&format!("racer{i}@example.com"), "SameName");
                store.create_user(&u).await.is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("task ran"));
    }
    assert_eq!(won, 1);
}

async fn updates_move_the_indexes_and_respect_uniqueness(store: Store) {
    let alice = user("alice@example.com", "alice");
    let bob = user("bob@example.com", "bob");
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();

    let mut changed = alice.clone();
    changed.email = "Alice.New@example.com".to_owned();
    changed.username = "alice2".to_owned();
    changed.status = UserStatus::Suspended;
    assert!(store.update_user(&changed).await.unwrap());
    assert_eq!(store.user(alice.id).await.unwrap(), Some(changed.clone()));
    assert_eq!(
        store.user_by_email("alice@example.com").await.unwrap(),
        None
    );
    assert_eq!(store.user_by_username("alice").await.unwrap(), None);
    assert_eq!(
        store.user_by_email("alice.new@example.com").await.unwrap(),
        Some(changed.clone())
    );
    // The old email and username are free again.
    store
        .create_user(&user("alice@example.com", "alice"))
        .await
        .unwrap();

    // Taking bob's email or username is refused and changes nothing.
    let mut steal = changed.clone();
    steal.email = "BOB@example.com".to_owned();
    steal.name = "Thief".to_owned();
    assert_eq!(
        store.update_user(&steal).await,
        Err(StoreError::Conflict { field: "email" })
    );
    let mut steal_name = changed.clone();
    steal_name.email = "fresh@example.com".to_owned();
    steal_name.username = "Bob".to_owned();
    assert_eq!(
        store.update_user(&steal_name).await,
        Err(StoreError::Conflict { field: "username" })
    );
    assert_eq!(store.user(alice.id).await.unwrap(), Some(changed.clone()));
    // The email claimed before the username conflict was released.
    assert_eq!(
        store.user_by_email("fresh@example.com").await.unwrap(),
        None
    );
    store
        .create_user(&user("fresh@example.com", "fresh"))
        .await
        .unwrap();

    // A change of case only is not a conflict with oneself.
    let mut recased = changed.clone();
    recased.email = "ALICE.NEW@example.com".to_owned();
    assert!(store.update_user(&recased).await.unwrap());
    assert_eq!(
        store.user_by_email("alice.new@example.com").await.unwrap(),
        Some(recased)
    );

    // Updating a user that does not exist reports it.
    assert!(!store
        .update_user(&user("x@example.com", "x"))
        .await
        .unwrap());
}

async fn deleting_a_user_deletes_its_keys_and_memberships(store: Store) {
    let alice = user("alice@example.com", "alice");
    let bob = user("bob@example.com", "bob");
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    let o = org("acme", true);
    store.create_org(&o).await.unwrap();
    store
        .add_member(&member(alice.id, o.id, &[]))
        .await
        .unwrap();
    store.add_member(&member(bob.id, o.id, &[])).await.unwrap();
    let k1 = api_key(alice.id, "");
    let k2 = api_key(alice.id, "ci");
    let kb = api_key(bob.id, "");
    for k in [&k1, &k2, &kb] {
        store.insert_key(k, a_week_from_now()).await.unwrap();
    }

    let deleted = store.delete_user(alice.id).await.unwrap();
    assert_eq!(sorted(deleted), sorted(vec![k1.id.clone(), k2.id.clone()]));
    assert_eq!(store.user(alice.id).await.unwrap(), None);
    assert_eq!(
        store.user_by_email("alice@example.com").await.unwrap(),
        None
    );
    assert_eq!(store.key(&k1.id).await.unwrap(), None);
    assert_eq!(store.key(&k2.id).await.unwrap(), None);
    assert!(store.keys_of(alice.id).await.unwrap().is_empty());
    assert_eq!(store.membership(alice.id, o.id).await.unwrap(), None);
    assert!(store.memberships_of(alice.id).await.unwrap().is_empty());
    let members: Vec<Uuid> = store
        .members_of(o.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, vec![bob.id]);
    assert_eq!(store.users().await.unwrap(), vec![bob.clone()]);
    // Bob is untouched.
    assert_eq!(store.key(&kb.id).await.unwrap(), Some(kb));

    // The email, the username and the token name are free again.
    let again = user("ALICE@example.com", "alice");
    store.create_user(&again).await.unwrap();
    store
        .insert_key(&api_key(again.id, "ci"), a_week_from_now())
        .await
        .unwrap();

    // Deleting a missing user is not an error.
    assert!(store.delete_user(Uuid::new_v4()).await.unwrap().is_empty());
}

async fn set_if_absent_has_a_single_winner(store: Store) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .set_if_absent("first-user", format!("{i}").as_bytes(), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("task ran"));
    }
    assert_eq!(won, 1);
    assert!(!store.set_if_absent("first-user", b"x", None).await.unwrap());
    assert!(store.set_if_absent("other", b"x", None).await.unwrap());
}

async fn organizations_and_memberships(store: Store) {
    let acme = org("Acme", true);
    store.create_org(&acme).await.unwrap();
    assert_eq!(
        store.create_org(&org("ACME", false)).await,
        conflict("name")
    );
    assert_eq!(
        store.create_org(&org("second-default", true)).await,
        conflict("is_default")
    );
    let other = org("other", false);
    store.create_org(&other).await.unwrap();
    // The refused default left its name free.
    store
        .create_org(&org("second-default", false))
        .await
        .unwrap();

    assert_eq!(store.org(acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.org(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.org_by_name("aCmE").await.unwrap(), Some(acme.clone()));
    assert_eq!(store.org_by_name("nope").await.unwrap(), None);
    assert_eq!(store.default_org().await.unwrap(), Some(acme.clone()));
    assert_eq!(store.orgs().await.unwrap().len(), 3);

    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .add_member(&member(alice, acme.id, &[]))
        .await
        .unwrap();
    store
        .add_member(&member(alice, other.id, &[]))
        .await
        .unwrap();
    store.add_member(&member(bob, acme.id, &[])).await.unwrap();
    // Adding again replaces: an upsert.
    let admin = member(alice, acme.id, &["organization-admin"]);
    store.add_member(&admin).await.unwrap();
    assert_eq!(store.membership(alice, acme.id).await.unwrap(), Some(admin));
    assert_eq!(store.membership(bob, other.id).await.unwrap(), None);

    let mut of_alice: Vec<Uuid> = store
        .memberships_of(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.organization_id)
        .collect();
    of_alice.sort();
    assert_eq!(of_alice, sorted(vec![acme.id, other.id]));
    let of_acme: Vec<Uuid> = store
        .members_of(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(sorted(of_acme), sorted(vec![alice, bob]));

    assert!(store.remove_member(alice, acme.id).await.unwrap());
    assert!(!store.remove_member(alice, acme.id).await.unwrap());
    assert_eq!(store.membership(alice, acme.id).await.unwrap(), None);
    assert_eq!(store.memberships_of(alice).await.unwrap().len(), 1);
    assert_eq!(store.members_of(acme.id).await.unwrap().len(), 1);
}

async fn api_keys_are_stored_found_updated_and_deleted(store: Store) {
    let owner = Uuid::new_v4();
    let session = api_key(owner, "");
    let session2 = api_key(owner, "");
    let token = api_key(owner, "deploy");
    for k in [&session, &session2, &token] {
        store.insert_key(k, a_week_from_now()).await.unwrap();
    }
    assert_eq!(store.key(&token.id).await.unwrap(), Some(token.clone()));
    assert_eq!(store.key("nosuchkey0").await.unwrap(), None);
    let mut listed: Vec<String> = store
        .keys_of(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        sorted(vec![
            session.id.clone(),
            session2.id.clone(),
            token.id.clone()
        ])
    );
    assert_eq!(
        store.key_by_name(owner, "deploy").await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(store.key_by_name(owner, "other").await.unwrap(), None);
    assert_eq!(store.key_by_name(owner, "").await.unwrap(), None);
    assert_eq!(
        store.key_by_name(Uuid::new_v4(), "deploy").await.unwrap(),
        None
    );

    // A second insert of the same id is refused.
    assert_eq!(
        store.insert_key(&session, a_week_from_now()).await,
        conflict("id")
    );

    // The sliding refresh and `expire` change fields of the stored record.
    let mut refreshed = session.clone();
    refreshed.last_used = now();
    refreshed.expires_at = now() + time::Duration::days(8);
    refreshed.ip_address = "10.1.2.3".to_owned();
    let changed = store
        .modify_key(&session.id, time::Duration::days(1), |k| {
            (k.last_used, k.expires_at) = (refreshed.last_used, refreshed.expires_at);
            k.ip_address.clone_from(&refreshed.ip_address);
            true
        })
        .await
        .unwrap();
    assert_eq!(changed, Some(refreshed.clone()));
    assert_eq!(store.key(&session.id).await.unwrap(), Some(refreshed));
    assert_eq!(
        store
            .modify_key("nosuchkey0", time::Duration::days(1), |_| true)
            .await
            .unwrap(),
        None
    );

    assert!(store.delete_key(&session.id).await.unwrap());
    assert!(!store.delete_key(&session.id).await.unwrap());
    assert_eq!(store.key(&session.id).await.unwrap(), None);
    assert_eq!(store.keys_of(owner).await.unwrap().len(), 2);

    let deleted = store.delete_keys_of(owner).await.unwrap();
    assert_eq!(sorted(deleted), sorted(vec![session2.id, token.id]));
    assert!(store.keys_of(owner).await.unwrap().is_empty());
    assert!(store.delete_keys_of(owner).await.unwrap().is_empty());

    // The stored hash is not in Debug output.
    let shown = format!("{:?}", api_key(owner, "x"));
    assert!(shown.contains("<redacted>") && !shown.contains("hashed_secret: ["));
}

async fn token_names_are_unique_per_user(store: Store) {
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .insert_key(&api_key(alice, "ci"), a_week_from_now())
        .await
        .unwrap();
    let dup = api_key(alice, "ci");
    assert_eq!(
        store.insert_key(&dup, a_week_from_now()).await,
        conflict("name")
    );
    // The refused key was not stored.
    assert_eq!(store.key(&dup.id).await.unwrap(), None);
    assert_eq!(store.keys_of(alice).await.unwrap().len(), 1);
    // Another user may use the name; names are case-sensitive like Coder's.
    store
        .insert_key(&api_key(bob, "ci"), a_week_from_now())
        .await
        .unwrap();
    store
        .insert_key(&api_key(alice, "CI"), a_week_from_now())
        .await
        .unwrap();

    // Concurrent inserts of one name: one wins.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_key(&api_key(alice, "race"), a_week_from_now())
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.expect("task ran"));
    }
    assert_eq!(won, 1);

    // Deleting the key frees its name.
    let named = store
        .key_by_name(alice, "race")
        .await
        .unwrap()
        .expect("named key");
    assert!(store.delete_key(&named.id).await.unwrap());
    store
        .insert_key(&api_key(alice, "race"), a_week_from_now())
        .await
        .unwrap();
}

async fn counters_count_and_reset(store: Store) {
    let window = Duration::from_secs(60);
    assert_eq!(store.counter("login:1.2.3.4").await.unwrap(), 0);
    for n in 1..=3 {
        assert_eq!(store.incr_window("login:1.2.3.4", window).await.unwrap(), n);
    }
    assert_eq!(store.incr_window("login:5.6.7.8", window).await.unwrap(), 1);
    assert_eq!(store.counter("login:1.2.3.4").await.unwrap(), 3);
    store.reset_counter("login:1.2.3.4").await.unwrap();
    assert_eq!(store.counter("login:1.2.3.4").await.unwrap(), 0);
    assert_eq!(store.incr_window("login:1.2.3.4", window).await.unwrap(), 1);
    store.reset_counter("never-set").await.unwrap();

    // Concurrent increments are all counted.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.incr_window("shared", window).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task ran"));
    }
    assert_eq!(sorted(seen), (1..=20).collect::<Vec<u64>>());
}

async fn ephemeral_values_are_single_use(store: Store) {
    let ttl = Duration::from_secs(60);
    store.put_ephemeral("otp:a", b"123456", ttl).await.unwrap();
    assert_eq!(
        store.get_ephemeral("otp:a").await.unwrap().as_deref(),
        Some(&b"123456"[..])
    );
    store.put_ephemeral("otp:a", b"654321", ttl).await.unwrap();
    assert_eq!(
        store.take_ephemeral("otp:a").await.unwrap().as_deref(),
        Some(&b"654321"[..])
    );
    assert_eq!(store.take_ephemeral("otp:a").await.unwrap(), None);
    assert_eq!(store.get_ephemeral("otp:a").await.unwrap(), None);

    // Of concurrent takes, exactly one gets the value.
    store
        .put_ephemeral("otp:b", &[0, 255, 1], ttl)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_ephemeral("otp:b").await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        if let Some(v) = task.await.expect("task ran") {
            got.push(v);
        }
    }
    assert_eq!(got, vec![vec![0, 255, 1]]);
}

async fn ephemeral_values_are_taken_only_while_they_hold_the_expected_value(store: Store) {
    let ttl = Duration::from_secs(60);
    store.put_ephemeral("otp:c", b"first", ttl).await.unwrap();
    // A replaced value is left alone: only the one that was read may be consumed.
    store.put_ephemeral("otp:c", b"second", ttl).await.unwrap();
    assert!(!store.take_ephemeral_if("otp:c", b"first").await.unwrap());
    assert_eq!(
        store.get_ephemeral("otp:c").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert!(!store
        .take_ephemeral_if("otp:none", b"second")
        .await
        .unwrap());

    // Of concurrent takes of the expected value, exactly one wins, and the value is gone.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_ephemeral_if("otp:c", b"second").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.expect("task ran"));
    }
    assert_eq!(winners, 1);
    assert_eq!(store.get_ephemeral("otp:c").await.unwrap(), None);

    // Binary values compare byte for byte; an expired value is never taken.
    store
        .put_ephemeral("otp:d", &[0, 255, 1], Duration::from_millis(150))
        .await
        .unwrap();
    assert!(!store
        .take_ephemeral_if("otp:d", &[0, 255, 2])
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!store
        .take_ephemeral_if("otp:d", &[0, 255, 1])
        .await
        .unwrap());
}

/// TTLs of 150-300 ms; on memory the clock is paused, so the sleeps take no time.
async fn values_counters_and_key_records_expire(store: Store) {
    let short = Duration::from_millis(150);
    store.put_ephemeral("state", b"v", short).await.unwrap();
    store.put_ephemeral("state2", b"v", short).await.unwrap();
    assert_eq!(store.incr_window("hits", short).await.unwrap(), 1);
    assert_eq!(store.incr_window("hits", short).await.unwrap(), 2);
    assert!(store
        .set_if_absent("claim", b"x", Some(short))
        .await
        .unwrap());
    assert!(!store
        .set_if_absent("claim", b"x", Some(short))
        .await
        .unwrap());
    let owner = Uuid::new_v4();
    let key = api_key(owner, "short-lived");
    let record_until = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    store.insert_key(&key, record_until).await.unwrap();
    assert!(store.get_ephemeral("state").await.unwrap().is_some());
    assert!(store.key(&key.id).await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(700)).await;

    assert_eq!(store.get_ephemeral("state").await.unwrap(), None);
    assert_eq!(store.take_ephemeral("state2").await.unwrap(), None);
    assert_eq!(store.counter("hits").await.unwrap(), 0);
    // A new window starts from one.
    assert_eq!(store.incr_window("hits", short).await.unwrap(), 1);
    assert!(store.set_if_absent("claim", b"y", None).await.unwrap());
    assert_eq!(store.key(&key.id).await.unwrap(), None);
    assert!(store.keys_of(owner).await.unwrap().is_empty());
    assert_eq!(store.key_by_name(owner, "short-lived").await.unwrap(), None);
    // The expired key's name is free again.
    store
        .insert_key(&api_key(owner, "short-lived"), a_week_from_now())
        .await
        .unwrap();
    // A key whose record time has already passed is gone at once.
    let past = api_key(owner, "");
    store
        .insert_key(
            &past,
            OffsetDateTime::now_utc() - time::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(store.key(&past.id).await.unwrap(), None);

    // The window starts at the first increment and is not extended by later ones.
    assert_eq!(
        store
            .incr_window("window", Duration::from_millis(400))
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store
            .incr_window("window", Duration::from_millis(400))
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.counter("window").await.unwrap(), 0);
}

async fn invalidations_reach_subscribers(store: Store) {
    let mut rx = store.subscribe();
    let user = Uuid::new_v4();
    for what in [
        Invalidation::Key("abcdefghij".to_owned()),
        Invalidation::User(user),
        Invalidation::All,
    ] {
        deliver(&store, &mut rx, what).await;
    }
}

/// Publishes `what` on `from` until `rx` receives it (a Redis subscriber may still be
/// subscribing when the test starts), within [`BOUND`].
async fn deliver(from: &Store, rx: &mut broadcast::Receiver<Invalidation>, what: Invalidation) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        from.publish(what.clone()).await.unwrap();
        let round = tokio::time::Instant::now() + Duration::from_millis(300);
        loop {
            match tokio::time::timeout_at(round, rx.recv()).await {
                Ok(Ok(got)) if got == what => return,
                Ok(Ok(_)) => continue,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(e)) => panic!("invalidation channel closed: {e}"),
                Err(_) => break,
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what:?} never arrived"
        );
    }
}

// === Redis only ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_invalidation_reaches_another_store_on_the_same_redis() {
    let (a, prefix) = redis_store().await;
    let b = open_redis(&redis_url(), &prefix).await;
    let mut on_b = b.subscribe();
    let mut on_a = a.subscribe();
    deliver(&a, &mut on_b, Invalidation::Key("0123456789".to_owned())).await;
    deliver(&b, &mut on_a, Invalidation::User(Uuid::new_v4())).await;

    // A store under another prefix hears nothing of it.
    let (c, other_prefix) = redis_store().await;
    let mut on_c = c.subscribe();
    deliver(&c, &mut on_c, Invalidation::All).await;
    let marker = Invalidation::Key("prefixtest".to_owned());
    deliver(&a, &mut on_b, marker.clone()).await;
    while let Ok(got) = on_c.try_recv() {
        assert_ne!(got, marker, "a message crossed key prefixes");
    }
    cleanup(&prefix).await;
    cleanup(&other_prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriber_stops_when_the_store_is_dropped() {
    let prefix = random_key_prefix();
    let channel = format!("{prefix}invalidate");
    let client = redis::Client::open(redis_url()).expect("redis url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers");
    let subscribed = |n: i64| {
        let (conn, channel) = (conn.clone(), channel.clone());
        move || {
            let (mut conn, channel) = (conn.clone(), channel.clone());
            async move { subscribers(&mut conn, &channel).await == n }
        }
    };
    let store = open_redis(&redis_url(), &prefix).await;
    let clone = store.clone();
    eventually("subscribed", subscribed(1)).await;
    drop(store);
    // A clone keeps the subscriber running.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(subscribers(&mut conn.clone(), &channel).await, 1);
    drop(clone);
    eventually("unsubscribed after the last drop", subscribed(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_open_does_not_wait_and_calls_fail_as_unavailable() {
    let port = free_port();
    let started = std::time::Instant::now();
    let store = Store::open(&store_config(
        &format!("redis://127.0.0.1:{port}"),
        &random_key_prefix(),
        "200ms",
    ))
    .expect("open returns at once");
    assert!(started.elapsed() < Duration::from_secs(1), "open waited");
    let result = tokio::time::timeout(BOUND, store.user(Uuid::new_v4()))
        .await
        .expect("the call returned");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    let result = tokio::time::timeout(BOUND, store.ping())
        .await
        .expect("the call returned");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_calls_as_unavailable_and_recovers_without_restart() {
    let port = free_port();
    let mut server = RedisServer::start(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let store = Store::open(&store_config(&url, &random_key_prefix(), "300ms")).expect("opens");
    let mut rx = store.subscribe();
    eventually("store works", || async { store.ping().await.is_ok() }).await;
    deliver(&store, &mut rx, Invalidation::Key("beforeoutg".to_owned())).await;
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();

    server.kill();
    for _ in 0..3 {
        let result = tokio::time::timeout(Duration::from_secs(5), store.user(alice.id))
            .await
            .expect("a call during the outage returned");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }
    let result = tokio::time::timeout(Duration::from_secs(5), store.create_user(&user("b@b", "b")))
        .await
        .expect("a write during the outage returned");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    while rx.try_recv().is_ok() {}

    let _server = RedisServer::start(port).await;
    // The same Store works again (the new server is empty: no persistence).
    eventually("store recovers", || async {
        store.user(alice.id).await.is_ok_and(|u| u.is_none())
    })
    .await;
    store.create_user(&alice).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice));
    // The subscriber re-subscribed and said that messages may have been missed.
    expect_all(&mut rx).await;
    // And it forwards messages again.
    deliver(&store, &mut rx, Invalidation::Key("afteroutag".to_owned())).await;
}

// === OpenID Connect links ===

both_backends!(oidc_links_are_one_subject_per_user_and_issuer_and_one_user_per_subject);

async fn oidc_links_are_one_subject_per_user_and_issuer_and_one_user_per_subject(store: Store) {
    const ISSUER: &str = "https://id.example.com";
    let (alice, bob) = (
        user("alice@example.com", "alice"),
        user("bob@example.com", "bob"),
    );
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    assert_eq!(store.user_by_oidc(ISSUER, "a").await.unwrap(), None);

    let link = |user: Uuid, issuer: &'static str, subject: &'static str| {
        let store = store.clone();
        async move { store.link_oidc(user, issuer, subject).await.unwrap() }
    };
    assert_eq!(link(alice.id, ISSUER, "a").await, OidcLink::Linked);
    assert_eq!(
        link(alice.id, ISSUER, "a").await,
        OidcLink::Linked,
        "again: no change"
    );
    let found = store.user_by_oidc(ISSUER, "a").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(alice.id));
    assert_eq!(
        store
            .user_by_oidc("https://other.example", "a")
            .await
            .unwrap(),
        None
    );

    // One subject per (user, issuer); one user per (issuer, subject); other issuers apart.
    assert_eq!(
        link(alice.id, ISSUER, "b").await,
        OidcLink::UserHasOtherSubject
    );
    assert_eq!(link(bob.id, ISSUER, "a").await, OidcLink::SubjectTaken);
    assert_eq!(
        link(alice.id, "https://other.example", "a").await,
        OidcLink::Linked
    );
    assert_eq!(
        link(Uuid::new_v4(), ISSUER, "z").await,
        OidcLink::NoSuchUser
    );
    assert_eq!(store.user_by_oidc(ISSUER, "b").await.unwrap(), None);

    // Of concurrent links of one subject to many users, exactly one wins.
    let mut racers = Vec::new();
    for i in 0..10 {
        let u = user(&format!("racer{i}@example.com"), &format!("racer{i}"));
        store.create_user(&u).await.unwrap();
        racers.push(u.id);
    }
    let tasks: Vec<_> = racers
        .iter()
        .map(|id| tokio::spawn(link(*id, ISSUER, "contested")))
        .collect();
    let mut won = Vec::new();
    for (task, id) in tasks.into_iter().zip(&racers) {
        match task.await.expect("task ran") {
            OidcLink::Linked => won.push(*id),
            other => assert_eq!(other, OidcLink::SubjectTaken),
        }
    }
    assert_eq!(won.len(), 1, "exactly one link wins");
    let found = store.user_by_oidc(ISSUER, "contested").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(won[0]));

    // A deleted user's links go with it: the subject is free for another user.
    store.delete_user(alice.id).await.unwrap();
    assert_eq!(store.user_by_oidc(ISSUER, "a").await.unwrap(), None);
    assert_eq!(link(bob.id, ISSUER, "a").await, OidcLink::Linked);
}

async fn expect_all(rx: &mut broadcast::Receiver<Invalidation>) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Invalidation::All)) => return,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("invalidation channel closed: {e}"),
            Err(_) => panic!("no Invalidation::All within {BOUND:?}"),
        }
    }
}

// === atomic changes of some fields ===

/// Runs `n` tasks at once, each given its index; waits for all.
async fn all_at_once<F, Fut>(n: usize, task: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
    for t in tasks {
        tokio::time::timeout(BOUND, t)
            .await
            .expect("task finished in time")
            .expect("task ran");
    }
}

async fn concurrent_user_modifications_are_never_lost(store: Store) {
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();
    all_at_once(20, |i| {
        let store = store.clone();
        async move {
            let added = store
                .modify_user(alice.id, |u| {
                    u.roles.push(format!("role-{i}"));
                    true
                })
                .await
                .unwrap()
                .expect("the user exists");
            assert!(added.roles.contains(&format!("role-{i}")));
        }
    })
    .await;
    let stored = store.user(alice.id).await.unwrap().unwrap();
    let mut expected: Vec<String> = (0..20).map(|i| format!("role-{i}")).collect();
    expected.push("owner".to_owned());
    assert_eq!(sorted(stored.roles), sorted(expected));
    // A change that changes nothing writes nothing; a missing user is None.
    assert_eq!(
        store.modify_user(alice.id, |_| false).await.unwrap(),
        store.user(alice.id).await.unwrap()
    );
    assert_eq!(
        store.modify_user(Uuid::new_v4(), |_| true).await.unwrap(),
        None
    );
}

async fn a_modification_sees_a_suspension_made_while_it_ran(store: Store) {
    let mut bob = user("bob@example.com", "bob");
    bob.status = UserStatus::Dormant;
    store.create_user(&bob).await.unwrap();
    let verified = bob.hashed_password.clone();
    // Logins activating a dormant user and upgrading the hash they verified, racing a
    // suspension: whatever the order, the user ends suspended and the hash upgraded.
    all_at_once(10, |i| {
        let (store, verified) = (store.clone(), verified.clone());
        async move {
            if i == 5 {
                store
                    .modify_user(bob.id, |u| {
                        u.status = UserStatus::Suspended;
                        true
                    })
                    .await
                    .unwrap();
                return;
            }
            store
                .modify_user(bob.id, |u| {
                    let mut changed = false;
                    if u.status == UserStatus::Dormant {
                        u.status = UserStatus::Active;
                        changed = true;
                    }
                    if u.hashed_password == verified {
                        u.hashed_password = Some(format!("upgraded-by-{i}"));
                        changed = true;
                    }
                    changed
                })
                .await
                .unwrap();
        }
    })
    .await;
    let stored = store.user(bob.id).await.unwrap().unwrap();
    assert_eq!(stored.status, UserStatus::Suspended);
    assert!(stored
        .hashed_password
        .is_some_and(|h| h.starts_with("upgraded-by-")));
}

async fn modifications_cannot_move_ids_emails_usernames_owners_or_names(store: Store) {
    let carol = user("carol@example.com", "carol");
    store.create_user(&carol).await.unwrap();
    let changed = store
        .modify_user(carol.id, |u| {
            u.id = Uuid::new_v4();
            u.email = "other@example.com".to_owned();
            u.username = "other".to_owned();
            u.name = "Carol".to_owned();
            true
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            changed.id,
            changed.email.as_str(),
            changed.username.as_str()
        ),
        (carol.id, "carol@example.com", "carol")
    );
    assert_eq!(changed.name, "Carol");
    assert_eq!(
        store.user_by_email("carol@example.com").await.unwrap(),
        Some(changed)
    );

    let key = api_key(carol.id, "deploy");
    store.insert_key(&key, a_week_from_now()).await.unwrap();
    let changed = store
        .modify_key(&key.id, time::Duration::days(1), |k| {
            (k.id, k.user_id, k.token_name) = ("elsewhere0".into(), Uuid::new_v4(), "x".into());
            k.ip_address = "10.9.9.9".to_owned();
            true
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            changed.id.as_str(),
            changed.user_id,
            changed.token_name.as_str()
        ),
        (key.id.as_str(), carol.id, "deploy")
    );
    assert_eq!(
        store.key_by_name(carol.id, "deploy").await.unwrap(),
        Some(changed)
    );
}

async fn an_expire_racing_refreshes_leaves_the_key_expired(store: Store) {
    let owner = Uuid::new_v4();
    for _ in 0..5 {
        let key = api_key(owner, "");
        store.insert_key(&key, a_week_from_now()).await.unwrap();
        let expired_at = now() - time::Duration::seconds(1);
        all_at_once(10, |i| {
            let (store, id) = (store.clone(), key.id.clone());
            async move {
                store
                    .modify_key(&id, time::Duration::days(7), |k| {
                        if i == 3 {
                            // `expire`: only ever earlier.
                            let change = k.expires_at > expired_at;
                            k.expires_at = k.expires_at.min(expired_at);
                            return change;
                        }
                        // The sliding refresh: only a live key, and the expiry only grows.
                        let until = now() + time::Duration::days(30);
                        let live = k.expires_at > now() && until > k.expires_at;
                        if live {
                            (k.last_used, k.expires_at) = (now(), until);
                        }
                        live
                    })
                    .await
                    .unwrap();
            }
        })
        .await;
        let stored = store.key(&key.id).await.unwrap().unwrap();
        assert_eq!(stored.expires_at, expired_at);
    }
}

async fn a_modified_key_record_vanishes_with_its_new_expiry(store: Store) {
    let key = api_key(Uuid::new_v4(), "");
    store.insert_key(&key, a_week_from_now()).await.unwrap();
    let at = now();
    store
        .modify_key(&key.id, time::Duration::seconds(1), |k| {
            k.expires_at = at;
            true
        })
        .await
        .unwrap()
        .unwrap();
    eventually("the record expires", || async {
        store.key(&key.id).await.unwrap().is_none()
    })
    .await;
}
