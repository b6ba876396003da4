//! refresh: the ID token

use super::*;

#[tokio::test]
async fn a_refresh_with_a_bad_or_foreign_id_token_ends_the_session() {
    let options = one_second_tokens();
    let w = World::start("memory://", options, "").await;
    for mode in ["other-sub", "bad-signature"] {
        w.provider.tamper_refresh_id_tokens("none").await;
        let mut browser = Browser::new();
        assert_eq!(
            w.sign_in(&mut browser, "alice").await.status,
            StatusCode::OK
        );
        let token = session_of(&browser);
        w.provider.tamper_refresh_id_tokens(mode).await;
        let refreshes = w.provider.refreshes().await;

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (status, body) = w.call(Method::GET, "/dashboard", None, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{mode}: {body}");
        assert_eq!(
            body["detail"], "You must re-authenticate with the login provider.",
            "{mode}"
        );
        assert_eq!(w.provider.refreshes().await, refreshes + 1, "{mode}");
        let (status, _) = w.me(&token).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{mode}: the session ended"
        );
    }
    w.finish().await;
}
