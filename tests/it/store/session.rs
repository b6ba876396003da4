//! [`Store::session`]: what a key id resolves to for the key cache, read in one round trip on
//! Redis and Sentinel (two on a Cluster). Whatever the number of trips, it must equal the
//! separate reads of the key, its user and the user's memberships.

use portcullis::store::{Session, SessionKey};

use super::*;

every_redis!(a_session_skips_organization_ids_without_a_membership);

/// The key, its user and the user's memberships, read one by one.
async fn separately(store: &Store, id: &str) -> Option<(SessionKey, User, Vec<Membership>)> {
    let key = store.key(id).await.expect("key")?;
    let user = store.user(key.user_id).await.expect("user")?;
    let memberships = store
        .memberships_of(key.user_id)
        .await
        .expect("memberships");
    Some((SessionKey::of(key)?, bare(&user), memberships))
}

/// `key` as a session holds it.
fn session_key(key: &ApiKey) -> SessionKey {
    SessionKey::of(key.clone()).expect("a key id")
}

/// `user` as a session holds it: without the password hash.
fn bare(user: &User) -> User {
    User::without_password(user.clone())
}

fn parts(session: Session) -> (SessionKey, User, Vec<Membership>) {
    let mut memberships = session.memberships.to_vec();
    memberships.sort_by_key(|m| m.organization_id);
    (session.key, (*session.user).clone(), memberships)
}

async fn resolve(store: &Store, id: &str) -> Option<(SessionKey, User, Vec<Membership>)> {
    store.session(id).await.expect("session").map(parts)
}

pub(super) async fn a_key_resolves_to_its_user_and_memberships(store: Store) {
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();
    let key = api_key(alice.id, "");
    store.insert_key(&key, a_week_from_now()).await.unwrap();

    // No memberships yet.
    assert_eq!(
        resolve(&store, &key.id).await,
        Some((session_key(&key), bare(&alice), Vec::new()))
    );

    let (acme, other) = (org("acme", false), org("other", false));
    for o in [&acme, &other] {
        store.create_org(o).await.unwrap();
    }
    let admin = member(alice.id, acme.id, &["organization-admin"]);
    store.add_member(&admin).await.unwrap();
    store
        .add_member(&member(alice.id, other.id, &[]))
        .await
        .unwrap();
    store.remove_member(alice.id, other.id).await.unwrap();
    let resolved = resolve(&store, &key.id).await;
    assert_eq!(
        resolved,
        Some((session_key(&key), bare(&alice), vec![admin]))
    );
    let mut expected = separately(&store, &key.id).await.expect("found");
    expected.2.sort_by_key(|m| m.organization_id);
    assert_eq!(resolved, Some(expected));

    // A change of the user is read, not a copy from an earlier read.
    let suspended = store
        .modify_user(alice.id, |u| {
            u.status = UserStatus::Suspended;
            true
        })
        .await
        .unwrap()
        .expect("alice");
    assert_eq!(
        resolve(&store, &key.id).await.map(|(_, u, _)| u),
        Some(bare(&suspended))
    );

    // No such key; a key whose user is gone; a deleted key.
    assert_eq!(resolve(&store, "nosuchkey0").await, None);
    let orphan = api_key(Uuid::new_v4(), "");
    store.insert_key(&orphan, a_week_from_now()).await.unwrap();
    assert_eq!(resolve(&store, &orphan.id).await, None);
    assert!(store.delete_key(&key.id).await.unwrap());
    assert_eq!(resolve(&store, &key.id).await, None);
}

/// Organization ids in the user's set that are not UUIDs, or have no membership record (as a
/// crash between the steps of `remove_member` leaves them), are left out, as
/// `memberships_of` leaves them out; a user id in another form than the key names' is still
/// found; a corrupt key record is an error, not a miss.
async fn a_session_skips_organization_ids_without_a_membership(url: &str) {
    let (store, prefix) = redis_store(url).await;
    let bob = user("bob@example.com", "bob");
    store.create_user(&bob).await.unwrap();
    let acme = org("acme", false);
    store.create_org(&acme).await.unwrap();
    let membership = member(bob.id, acme.id, &[]);
    store.add_member(&membership).await.unwrap();
    let key = api_key(bob.id, "");
    store.insert_key(&key, a_week_from_now()).await.unwrap();

    on_its_master(
        url,
        redis::cmd("SADD")
            .arg(format!("{prefix}{{u:{}}}:orgs", bob.id))
            .arg("not-a-uuid")
            .arg(Uuid::new_v4().to_string()),
    )
    .await;
    assert_eq!(
        resolve(&store, &key.id).await,
        Some((session_key(&key), bare(&bob), vec![membership]))
    );

    // A record whose user id is written in capitals (serde reads it; the key names hold the
    // lower-case form) is still resolved to its user.
    let upper = api_key(bob.id, "");
    let record = serde_json::to_string(&upper)
        .expect("json")
        .replace(&bob.id.to_string(), &bob.id.to_string().to_uppercase());
    on_its_master(
        url,
        redis::cmd("SET")
            .arg(format!("{prefix}key:{}", upper.id))
            .arg(record),
    )
    .await;
    assert_eq!(
        resolve(&store, &upper.id).await.map(|(k, u, _)| (k, u.id)),
        Some((session_key(&upper), bob.id))
    );

    let broken = api_key(bob.id, "");
    on_its_master(
        url,
        redis::cmd("SET")
            .arg(format!("{prefix}key:{}", broken.id))
            .arg("{\"user_id\": 1}"),
    )
    .await;
    assert!(matches!(
        store.session(&broken.id).await,
        Err(StoreError::Corrupt(_))
    ));
    cleanup(url, &prefix).await;
}

/// Runs `cmd` on the master behind `url` that holds its key (on a Cluster, the others answer
/// `MOVED`).
async fn on_its_master(url: &str, cmd: &redis::Cmd) {
    let mut refusals = Vec::new();
    for server in redis_masters(url).await {
        let client = redis::Client::open(server.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a master answers");
        match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(_) => return,
            Err(e) => refusals.push(e.to_string()),
        }
    }
    panic!("no master of {url} took the command: {refusals:?}");
}
