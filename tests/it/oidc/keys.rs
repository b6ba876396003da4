//! keys

use super::*;

/// The provider's key set is read when first needed and kept: a second login signed with the
/// same key does not read it again. A provider that rotated its key (a restart: a new key
/// under a new key id) signs an ID token whose `kid` Portcullis has not seen; the key set is
/// then read again, once, and the login succeeds as the same user.
#[tokio::test]
async fn the_key_set_is_read_again_only_for_an_unknown_key_id() {
    let mut w = World::with_accounts("memory://", "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;
    assert_eq!(
        w.provider.jwks_requests().await,
        1,
        "read for the first login"
    );
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.provider.jwks_requests().await,
        1,
        "read again for a known key"
    );

    // The provider now signs with a key id Portcullis has not seen (a new process, whose
    // count starts at zero).
    let before = w.provider.signing_kid().await;
    w.provider.restart(alice()).await;
    assert_ne!(w.provider.signing_kid().await, before);
    let read_by_the_test = w.provider.jwks_requests().await;

    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(user_id_of(&w, &browser).await, alice_id);
    assert_eq!(
        w.provider.jwks_requests().await - read_by_the_test,
        1,
        "the key set read once for the unknown key id"
    );
    w.finish().await;
}
