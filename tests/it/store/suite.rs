//! The suite: each case takes a store, and the harness runs it on every backend.

use tokio::time::Instant;

use super::*;

pub(super) async fn users_are_created_found_and_listed(store: Store) {
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

pub(super) async fn emails_and_usernames_are_unique_case_insensitively(store: Store) {
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

pub(super) async fn concurrent_creates_with_one_email_have_exactly_one_winner(store: Store) {
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

pub(super) async fn updates_move_the_indexes_and_respect_uniqueness(store: Store) {
    let alice = user("alice@example.com", "alice");
    let bob = user("bob@example.com", "bob");
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();

    let mut changed = alice.clone();
    changed.email = "Alice.New@example.com".to_owned();
    changed.username = "alice2".to_owned();
    changed.status = UserStatus::Suspended;
    assert!(replace_user(&store, &changed).await.unwrap());
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
        replace_user(&store, &steal).await,
        Err(StoreError::Conflict { field: "email" })
    );
    let mut steal_name = changed.clone();
    steal_name.email = "fresh@example.com".to_owned();
    steal_name.username = "Bob".to_owned();
    assert_eq!(
        replace_user(&store, &steal_name).await,
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
    assert!(replace_user(&store, &recased).await.unwrap());
    assert_eq!(
        store.user_by_email("alice.new@example.com").await.unwrap(),
        Some(recased)
    );

    // Updating a user that does not exist reports it.
    assert!(!replace_user(&store, &user("x@example.com", "x"))
        .await
        .unwrap());
}

/// A rename (`update_user`) racing a suspension (`modify_user`) keeps both, whichever goes
/// first: a rename that wrote back the whole user it had read would undo the suspension (on
/// Redis, the suspension polled first writes between the rename's read and its write).
pub(super) async fn a_rename_keeps_a_suspension_made_while_it_ran(store: Store) {
    let alice = user("alice@example.com", "alice");
    store.create_user(&alice).await.unwrap();
    for round in 0..4 {
        store
            .modify_user(alice.id, |u| {
                u.status = UserStatus::Active;
                true
            })
            .await
            .unwrap();
        let name = format!("alice{round}");
        let rename = store.update_user(alice.id, |u| {
            u.username.clone_from(&name);
            true
        });
        let suspend = store.modify_user(alice.id, |u| {
            u.status = UserStatus::Suspended;
            true
        });
        if round % 2 == 0 {
            let (suspended, renamed) = tokio::join!(suspend, rename);
            suspended.unwrap();
            renamed.unwrap();
        } else {
            let (renamed, suspended) = tokio::join!(rename, suspend);
            suspended.unwrap();
            renamed.unwrap();
        }
        let now = store.user(alice.id).await.unwrap().unwrap();
        assert_eq!(
            (now.status, now.username.as_str()),
            (UserStatus::Suspended, name.as_str()),
            "round {round}"
        );
        assert_eq!(
            store.user_by_username(&name).await.unwrap().map(|u| u.id),
            Some(alice.id)
        );
    }
}

pub(super) async fn deleting_a_user_deletes_its_keys_and_memberships(store: Store) {
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

pub(super) async fn set_if_absent_has_a_single_winner(store: Store) {
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

pub(super) async fn organizations_and_memberships(store: Store) {
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

pub(super) async fn api_keys_are_stored_found_updated_and_deleted(store: Store) {
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

pub(super) async fn token_names_are_unique_per_user(store: Store) {
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

pub(super) async fn counters_count_and_reset(store: Store) {
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

pub(super) async fn ephemeral_values_are_single_use(store: Store) {
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

pub(super) async fn ephemeral_values_are_taken_only_while_they_hold_the_expected_value(
    store: Store,
) {
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

/// TTLs of 150-300 ms; on the paused memory run the sleeps take no time. A sleep only ever
/// makes a test wait longer than asked, so "gone after" is always checked; "still there" is
/// checked only while the write surely happened less than its TTL ago (`fresh`), which a
/// loaded machine may already be past: it then skips that check rather than fail.
pub(super) async fn values_counters_and_key_records_expire(store: Store) {
    let short = Duration::from_millis(150);
    let written = Instant::now();
    let fresh = |ttl: Duration| written.elapsed() < ttl;
    store.put_ephemeral("state", b"v", short).await.unwrap();
    store.put_ephemeral("state2", b"v", short).await.unwrap();
    assert_eq!(store.incr_window("hits", short).await.unwrap(), 1);
    let second = store.incr_window("hits", short).await.unwrap();
    assert!(second == 2 || !fresh(short), "{second}");
    assert!(store
        .set_if_absent("claim", b"x", Some(short))
        .await
        .unwrap());
    let again = store
        .set_if_absent("claim", b"x", Some(short))
        .await
        .unwrap();
    assert!(!again || !fresh(short));
    let owner = Uuid::new_v4();
    let key = api_key(owner, "short-lived");
    let record_ttl = Duration::from_millis(300);
    let record_until = OffsetDateTime::now_utc() + record_ttl;
    store.insert_key(&key, record_until).await.unwrap();
    let state = store.get_ephemeral("state").await.unwrap();
    assert!(state.is_some() || !fresh(short));
    let record = store.key(&key.id).await.unwrap();
    assert!(record.is_some() || !fresh(record_ttl));

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
}

/// A rate window starts at its first increment and is not extended by later ones: the
/// counter is gone one window after the first increment, while a window restarted by the
/// second increment would still hold it then.
pub(super) async fn a_rate_window_is_not_extended_by_later_increments(store: Store) {
    let window = Duration::from_millis(400);
    // Between the two increments, and the margin past the first one's window at which the
    // counter must be gone (clock reads of Redis and of this process may differ slightly).
    let (gap, slack) = (Duration::from_millis(250), Duration::from_millis(100));
    let before_first = Instant::now();
    assert_eq!(store.incr_window("window", window).await.unwrap(), 1);
    let after_first = Instant::now();
    tokio::time::sleep(gap).await;
    let second = store.incr_window("window", window).await.unwrap();
    if second == 1 {
        // A loaded machine took longer than the window between the two: the second
        // increment opened a new window, and this run cannot tell.
        assert!(before_first.elapsed() >= window, "a live window restarted");
        eprintln!("the second increment came after the window; nothing to check");
        return;
    }
    assert_eq!(second, 2);
    // The first increment's window ends by `after_first + window`; one restarted by the
    // second would end at least `gap` later.
    tokio::time::sleep_until(after_first + window + slack).await;
    assert_eq!(
        store.counter("window").await.unwrap(),
        0,
        "the window outlived its first increment: a later increment extended it"
    );
}

pub(super) async fn invalidations_reach_subscribers(store: Store) {
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
pub(super) async fn deliver(
    from: &Store,
    rx: &mut broadcast::Receiver<Invalidation>,
    what: Invalidation,
) {
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
