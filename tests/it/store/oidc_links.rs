//! OpenID Connect links

use super::*;

every_backend!(oidc_links_are_one_subject_per_user_and_issuer_and_one_user_per_subject);

pub(super) async fn oidc_links_are_one_subject_per_user_and_issuer_and_one_user_per_subject(
    store: Store,
) {
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

pub(super) async fn expect_all(rx: &mut broadcast::Receiver<Invalidation>) {
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
