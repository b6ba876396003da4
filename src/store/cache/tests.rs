//! What cached keys share (issue 18): one copy of a user's record, memberships and identity
//! values for all of that user's keys, never one user's for another, and new copies once the
//! user changed. Against the memory store; the Redis store hands the cache the same records.

use http::HeaderMap;
use time::OffsetDateTime;

use super::*;
use crate::config::StoreUrl;
use crate::headers::IdentityStyle;
use crate::model::{AllowListEntry, ApiKey, LoginType};

fn cache() -> KeyCache {
    let cfg = StoreConfig {
        url: StoreUrl::Memory,
        key_prefix: "test:".into(),
        cache_ttl: Duration::from_secs(600),
        max_stale: Duration::from_secs(30),
        negative_cache_ttl: Duration::from_secs(5),
        command_timeout: Duration::from_millis(500),
        username: None,
        password_file: None,
        ca_file: None,
        client_cert: None,
    };
    KeyCache::new(&cfg, Arc::new(Metrics::new()))
}

/// A user with a password hash, site `roles` and the `org_roles` in one organization.
async fn user(store: &Store, name: &str, roles: &[&str], org: Uuid, org_roles: &[&str]) -> User {
    let user = User {
        name: "Same Display Name".into(),
        hashed_password: Some("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()),
        ..User::for_test(name, roles)
    };
    store.create_user(&user).await.expect("user stored");
    let now = OffsetDateTime::now_utc();
    let membership = Membership {
        user_id: user.id,
        organization_id: org,
        roles: org_roles.iter().map(|r| (*r).to_owned()).collect(),
        created_at: now,
        updated_at: now,
    };
    store.add_member(&membership).await.expect("member added");
    user
}

async fn key(store: &Store, id: &str, user: &User, scopes: &[&str]) -> String {
    let now = OffsetDateTime::now_utc();
    let key = ApiKey {
        id: id.into(),
        hashed_secret: [7; 32],
        user_id: user.id,
        last_used: OffsetDateTime::UNIX_EPOCH,
        expires_at: now + time::Duration::HOUR,
        created_at: now,
        updated_at: now,
        login_type: LoginType::Token,
        lifetime_seconds: 3600,
        ip_address: String::new(),
        token_name: id.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        allow_list: vec![AllowListEntry {
            resource_type: "*".into(),
            id: "*".into(),
        }]
        .into(),
        not_after: None,
    };
    store
        .insert_key(&key, key.expires_at + time::Duration::DAY)
        .await
        .expect("key stored");
    key.id
}

async fn entry(cache: &KeyCache, store: &Store, id: &str) -> Arc<Entry> {
    let id = KeyId::parse(id).expect("a key id");
    cache
        .lookup(store, &id)
        .await
        .expect("the memory store answers")
        .expect("the key exists")
}

fn headers(entry: &Entry) -> HeaderMap {
    let mut h = HeaderMap::new();
    entry.identity.apply(&mut h, IdentityStyle::Forwarded);
    h
}

#[tokio::test]
async fn keys_of_one_user_share_its_record_memberships_and_identity_values() {
    let (store, cache, org) = (Store::memory(), cache(), Uuid::new_v4());
    let ada = user(&store, "ada", &["auditor"], org, &["organization-admin"]).await;
    let all = key(&store, "adakey0001", &ada, &["coder:all"]).await;
    let read = key(&store, "adakey0002", &ada, &["workspace:read"]).await;
    let all_again = key(&store, "adakey0003", &ada, &["coder:all"]).await;
    let (a, b, c) = (
        entry(&cache, &store, &all).await,
        entry(&cache, &store, &read).await,
        entry(&cache, &store, &all_again).await,
    );

    assert!(Arc::ptr_eq(&a.session.user, &b.session.user));
    assert!(Arc::ptr_eq(&a.session.memberships, &b.session.memberships));
    assert!(Arc::ptr_eq(a.identity.user(), b.identity.user()));
    assert!(Arc::ptr_eq(a.identity.user(), c.identity.user()));
    // The scope list and its value are the key's: shared by keys with the same scopes only;
    // the allow lists are the same, so shared.
    assert!(Arc::ptr_eq(a.identity.scopes(), c.identity.scopes()));
    assert!(!Arc::ptr_eq(a.identity.scopes(), b.identity.scopes()));
    assert!(Arc::ptr_eq(&a.session.key.scopes, &c.session.key.scopes));
    assert!(!Arc::ptr_eq(&a.session.key.scopes, &b.session.key.scopes));
    assert_eq!(*b.session.key.scopes, ["workspace:read"]);
    assert!(Arc::ptr_eq(
        &a.session.key.allow_list,
        &b.session.key.allow_list
    ));
    let (ha, hb) = (headers(&a), headers(&b));
    assert_eq!(ha["x-forwarded-scopes"], "coder:all");
    assert_eq!(hb["x-forwarded-scopes"], "workspace:read");
    for h in [&ha, &hb] {
        assert_eq!(h["x-forwarded-user"], "ada");
        assert_eq!(h["x-forwarded-user-id"], ada.id.to_string().as_str());
        assert_eq!(
            h["x-forwarded-roles"],
            format!("auditor,organization-admin:{org}").as_str()
        );
    }
    // The cache never holds the password hash; the store still has it.
    assert_eq!(a.session.user.hashed_password, None);
    let stored = store.user(ada.id).await.expect("read").expect("exists");
    assert!(stored.hashed_password.is_some());
}

#[tokio::test]
async fn two_users_never_share_even_with_the_same_roles_name_and_organization() {
    let (store, cache, org) = (Store::memory(), cache(), Uuid::new_v4());
    let ada = user(&store, "ada", &["auditor"], org, &["organization-admin"]).await;
    let bob = user(&store, "bob", &["auditor"], org, &["organization-admin"]).await;
    let a = entry(
        &cache,
        &store,
        &key(&store, "adakey0001", &ada, &["coder:all"]).await,
    )
    .await;
    let b = entry(
        &cache,
        &store,
        &key(&store, "bobkey0001", &bob, &["coder:all"]).await,
    )
    .await;

    assert!(!Arc::ptr_eq(&a.session.user, &b.session.user));
    assert!(!Arc::ptr_eq(&a.session.memberships, &b.session.memberships));
    assert!(!Arc::ptr_eq(a.identity.user(), b.identity.user()));
    assert_eq!(b.session.user.id, bob.id);
    assert_eq!(b.session.memberships[0].user_id, bob.id);
    let (ha, hb) = (headers(&a), headers(&b));
    assert_eq!(ha["x-forwarded-user"], "ada");
    assert_eq!(hb["x-forwarded-user"], "bob");
    assert_eq!(hb["x-forwarded-email"], "bob@example.com");
    assert_eq!(hb["x-forwarded-user-id"], bob.id.to_string().as_str());
    // What does not depend on the user is shared: the same scope list and its value.
    assert!(Arc::ptr_eq(a.identity.scopes(), b.identity.scopes()));
    assert!(Arc::ptr_eq(&a.session.key.scopes, &b.session.key.scopes));
}

#[tokio::test]
async fn a_changed_user_gets_new_copies_and_holders_of_the_old_ones_keep_theirs() {
    let (store, cache, org) = (Store::memory(), cache(), Uuid::new_v4());
    let ada = user(&store, "ada", &["auditor"], org, &[]).await;
    let first = key(&store, "adakey0001", &ada, &["coder:all"]).await;
    let second = key(&store, "adakey0002", &ada, &["coder:all"]).await;
    let before = entry(&cache, &store, &first).await;

    // Changed in the store with no invalidation yet: a key loaded now reads the new record and
    // must not be given the copy the cached key holds.
    store
        .modify_user(ada.id, |u| {
            u.roles.push("template-admin".into());
            u.name = "Ada L.".into();
            true
        })
        .await
        .expect("modified")
        .expect("exists");
    let fresh = entry(&cache, &store, &second).await;
    assert!(!Arc::ptr_eq(&before.session.user, &fresh.session.user));
    assert!(!Arc::ptr_eq(before.identity.user(), fresh.identity.user()));
    assert_eq!(fresh.session.user.roles, ["auditor", "template-admin"]);
    assert_eq!(
        headers(&fresh)["x-forwarded-roles"],
        "auditor,template-admin"
    );
    let mut remote = HeaderMap::new();
    fresh.identity.apply(&mut remote, IdentityStyle::Remote);
    assert_eq!(remote["remote-name"], "Ada L.");
    // The entry loaded before the change is unchanged (it is not served after the
    // invalidation below).
    assert_eq!(headers(&before)["x-forwarded-roles"], "auditor");

    // A membership added, then the invalidation: the first key's reload gets the new values,
    // shared with the second key's reload.
    let now = OffsetDateTime::now_utc();
    let other = Uuid::new_v4();
    store
        .add_member(&Membership {
            user_id: ada.id,
            organization_id: other,
            roles: vec!["organization-auditor".into()],
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("member added");
    cache.apply(&Invalidation::User(ada.id));
    let (a, b) = (
        entry(&cache, &store, &first).await,
        entry(&cache, &store, &second).await,
    );
    assert!(!Arc::ptr_eq(&a, &before));
    assert!(Arc::ptr_eq(&a.session.user, &b.session.user));
    assert!(Arc::ptr_eq(&a.session.memberships, &b.session.memberships));
    assert!(Arc::ptr_eq(a.identity.user(), b.identity.user()));
    assert!(!Arc::ptr_eq(a.identity.user(), fresh.identity.user()));
    assert_eq!(a.session.memberships.len(), 2);
    let roles = headers(&a)["x-forwarded-roles"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(roles.starts_with("auditor,template-admin,"), "{roles}");
    assert!(
        roles.contains(&format!("organization-auditor:{other}")),
        "{roles}"
    );
    assert_eq!(headers(&b)["x-forwarded-roles"], roles.as_str());
}

/// What a cached key costs before what it shares: the entry is one allocation, and its size
/// is most of a session's memory (issue 18: 424 bytes before `SessionKey`, u16 slots).
#[test]
fn a_cached_entry_holds_no_more_than_320_bytes_inline() {
    assert!(
        std::mem::size_of::<Entry>() <= 320,
        "{}",
        std::mem::size_of::<Entry>()
    );
    assert!(std::mem::size_of::<KeyId>() <= 10);
}
