//! Atomic changes of some fields.

use super::*;

/// Runs `n` tasks at once, each given its index; waits for all.
pub(super) async fn all_at_once<F, Fut>(n: usize, task: F)
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

pub(super) async fn concurrent_user_modifications_are_never_lost(store: Store) {
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

pub(super) async fn a_modification_sees_a_suspension_made_while_it_ran(store: Store) {
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

pub(super) async fn modifications_cannot_move_ids_emails_usernames_owners_or_names(store: Store) {
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

pub(super) async fn an_expire_racing_refreshes_leaves_the_key_expired(store: Store) {
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

pub(super) async fn a_modified_key_record_vanishes_with_its_new_expiry(store: Store) {
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

/// A key stored while its user's keys are being deleted (a login racing a password change) is
/// deleted with them or stays listed by `keys_of`, so that a later revocation of the user's
/// keys finds it: never a live key that its user's list has lost.
pub(super) async fn a_key_stored_while_its_users_keys_are_deleted_stays_listed(store: Store) {
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();
    for round in 0..20 {
        for _ in 0..3 {
            let old = api_key(alice.id, "");
            store.insert_key(&old, a_week_from_now()).await.unwrap();
        }
        let new = api_key(alice.id, "");
        let (deleted, inserted) = tokio::join!(
            store.delete_keys_of(alice.id),
            store.insert_key(&new, a_week_from_now())
        );
        deleted.unwrap();
        inserted.unwrap();
        if store.key(&new.id).await.unwrap().is_some() {
            let listed = store.keys_of(alice.id).await.unwrap();
            assert!(
                listed.iter().any(|k| k.id == new.id),
                "round {round}: a live key that keys_of does not list"
            );
        }
        store.delete_keys_of(alice.id).await.unwrap();
        assert_eq!(store.key(&new.id).await.unwrap(), None, "round {round}");
    }
}
