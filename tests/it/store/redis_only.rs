//! Redis only

use super::*;

every_redis!(
    invalidation_reaches_another_store_on_the_same_redis,
    users_written_before_the_directory_index_existed_are_listed,
);

/// Users stored without the directory index (as by a version before it, simulated by deleting
/// the index) are listed, with their filters, by a replica's first directory query; an index
/// entry of a user gone meanwhile goes too.
async fn users_written_before_the_directory_index_existed_are_listed(url: &str) {
    use portcullis::store::UserQuery;

    let (old, prefix) = redis_store(url).await;
    let mut ghost = user("ghost@example.com", "ghost");
    ghost.status = UserStatus::Suspended;
    old.create_user(&ghost).await.expect("create");
    let mut carol = user("carol@example.com", "carol");
    carol.status = UserStatus::Dormant;
    for u in [
        user("bob@example.com", "bob"),
        carol,
        user("al@example.com", "al"),
    ] {
        old.create_user(&u).await.expect("create");
    }
    delete_redis_keys(url, &format!("{prefix}{{dir}}:")).await;
    assert!(redis_keys(url, &format!("{prefix}{{dir}}:*"))
        .await
        .is_empty());
    // The ghost's record vanishes behind the index's back, leaving an entry of nobody.
    old.list_users(&UserQuery::default()).await.expect("build");
    delete_redis_keys(url, &format!("{prefix}{{dir}}:built")).await;
    delete_redis_keys(url, &format!("{prefix}{{u:{}}}:user", ghost.id)).await;

    let fresh = open_redis(url, &prefix).await;
    let all = fresh.list_users(&UserQuery::default()).await.expect("list");
    let names: Vec<&str> = all.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!((names, all.count), (vec!["al", "bob", "carol"], 3));
    let q = UserQuery {
        status: vec![UserStatus::Dormant],
        ..UserQuery::default()
    };
    let dormant = fresh.list_users(&q).await.expect("list");
    assert_eq!(dormant.users.len(), 1);
    assert_eq!(dormant.users[0].username, "carol");
    let q = UserQuery {
        status: vec![UserStatus::Suspended],
        ..UserQuery::default()
    };
    assert_eq!(fresh.list_users(&q).await.expect("list").count, 0);
    assert_eq!(
        redis_keys(url, &format!("{prefix}{{dir}}:built"))
            .await
            .len(),
        1
    );
    cleanup(url, &prefix).await;
}

/// On a cluster, the two stores' subscribers and publishers may sit on different nodes.
async fn invalidation_reaches_another_store_on_the_same_redis(url: &str) {
    let (a, prefix) = redis_store(url).await;
    let b = open_redis(url, &prefix).await;
    let mut on_b = b.subscribe();
    let mut on_a = a.subscribe();
    deliver(&a, &mut on_b, Invalidation::Key("0123456789".to_owned())).await;
    deliver(&b, &mut on_a, Invalidation::User(Uuid::new_v4())).await;

    // A store under another prefix hears nothing of it.
    let (c, other_prefix) = redis_store(url).await;
    let mut on_c = c.subscribe();
    deliver(&c, &mut on_c, Invalidation::All).await;
    let marker = Invalidation::Key("prefixtest".to_owned());
    deliver(&a, &mut on_b, marker.clone()).await;
    while let Ok(got) = on_c.try_recv() {
        assert_ne!(got, marker, "a message crossed key prefixes");
    }
    cleanup(url, &prefix).await;
    cleanup(url, &other_prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriber_stops_when_the_store_is_dropped() {
    let prefix = random_key_prefix();
    let channel = format!("{prefix}invalidate");
    let client = redis::Client::open(REDIS).expect("redis url");
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
    let store = open_redis(REDIS, &prefix).await;
    let clone = store.clone();
    eventually("subscribed", subscribed(1)).await;
    drop(store);
    // A clone keeps the subscriber running.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(subscribers(&mut conn.clone(), &channel).await, 1);
    drop(clone);
    eventually("unsubscribed after the last drop", subscribed(0)).await;
}

/// Opening a Redis store never waits for Redis: not when nothing listens, and not when
/// something accepts connections and never answers (a hung Redis), where a wait would never
/// end (`open` is synchronous: it runs on a blocking thread here, under [`BOUND`]). Its calls
/// then fail as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_open_does_not_wait_and_calls_fail_as_unavailable() {
    // Accepts connections (the kernel completes them) and never reads or answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung = silent.local_addr().unwrap().port();
    for port in [free_port(), hung] {
        let config = store_config(
            &format!("redis://127.0.0.1:{port}"),
            &random_key_prefix(),
            "200ms",
        );
        let store = tokio::time::timeout(
            BOUND,
            tokio::task::spawn_blocking(move || Store::open(&config)),
        )
        .await
        .expect("open returns without waiting for Redis")
        .expect("ran")
        .expect("opens");
        let result = tokio::time::timeout(BOUND, store.user(Uuid::new_v4()))
            .await
            .expect("the call returned");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "port {port}: {result:?}"
        );
        let result = tokio::time::timeout(BOUND, store.ping())
            .await
            .expect("the call returned");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "port {port}: {result:?}"
        );
    }
    drop(silent);
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

/// A free-text search reads the directory in chunks (of 2,000 entries): over 4,500 users, the
/// matches of every chunk are counted and paged, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_text_search_finds_matches_across_every_chunk_of_the_directory() {
    use portcullis::store::UserQuery;

    let (store, prefix) = redis_store(REDIS).await;
    crate::directory_bench::seed(&prefix, 4500).await;
    let mut want: Vec<String> = (0..4500)
        .filter(|i| i % 10 == 9)
        .map(|i| format!("user{i}"))
        .collect();
    want.sort();
    let q = UserQuery {
        search: "9@BENCH".into(),
        ..UserQuery::default()
    };
    let all = store.list_users(&q).await.expect("list");
    let got: Vec<&str> = all.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        (got, all.count),
        (want.iter().map(String::as_str).collect(), 450)
    );
    let q = UserQuery {
        offset: 440,
        limit: 20,
        ..q
    };
    let tail = store.list_users(&q).await.expect("list");
    let got: Vec<&str> = tail.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        (got, tail.count),
        (want[440..].iter().map(String::as_str).collect(), 450)
    );
    // A term every user matches: each chunk's last entry is counted once.
    let q = UserQuery {
        search: "bench".into(),
        ..UserQuery::default()
    };
    let every = store.list_users(&q).await.expect("list");
    let mut ids: Vec<Uuid> = every.users.iter().map(|u| u.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), every.users.len(), every.count),
        (4500, 4500, 4500)
    );
    cleanup(REDIS, &prefix).await;
}
