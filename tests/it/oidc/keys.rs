//! keys

use super::*;

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up() {
    let mut w = World::with_accounts("memory://", "").await;
    let mut browser = Browser::new();
    assert_eq!(
        w.sign_in(&mut browser, "alice").await.status,
        StatusCode::OK
    );
    let alice_id = user_id_of(&w, &browser).await;

    // The provider now signs with a key id Portcullis has not seen.
    let before = w.provider.signing_kid().await;
    w.provider.restart(alice()).await;
    assert_ne!(w.provider.signing_kid().await, before);

    let mut browser = Browser::new();
    let page = w.sign_in(&mut browser, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(user_id_of(&w, &browser).await, alice_id);
    w.finish().await;
}
