//! ingress-nginx's external auth (`auth-url`, `auth-signin`, `auth-response-headers`) as the
//! controller renders it for `deploy/ingress-nginx/ingress.yaml`:
//! `deploy/ingress-nginx/rendered-nginx.conf`, run by Debian nginx. The subrequest carries the
//! original request only as `X-Original-URL` (a whole URL) and `X-Original-Method`; a `401`
//! becomes the sign-in redirect.

use std::net::SocketAddr;

use super::nginx::start_recipe;
use super::*;

const SIGN_IN: &str = "https://app.example.com/login?rd=http://app.test/app";

/// nginx on the rendered configuration, the app at `app`, Portcullis at `portcullis`.
fn start(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    let verify = format!("http://{portcullis}/.portcullis/verify");
    start_recipe(
        "deploy/ingress-nginx/rendered-nginx.conf",
        app,
        portcullis,
        vec![("http://127.0.0.1:8443/.portcullis/verify", verify)],
    )
}

#[tokio::test]
async fn ingress_nginx_auth_url_passes_only_portcullis_identity_in_any_spelling() {
    judged(start, Refusals::SignIn(SIGN_IN)).await;
}

/// A client's own `X-Original-URL` (and `X-Original-URI`) neither changes what Portcullis
/// judges (the controller sets the subrequest's; a disagreeing `X-Original-URI` would be a
/// 400) nor reaches the app (cleared by the proxy-set-headers ConfigMap).
#[tokio::test]
async fn ingress_nginx_judges_the_real_target_and_keeps_a_client_x_original_url_from_the_app() {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "memory://", "").await;
    let edge = start(echo, sidecar.addr).ready().await;
    let (_, token) = first_user_token(edge.addr).await;
    let t = ("Coder-Session-Token", token.as_str());

    let resp = get(
        &edge,
        "/app/page",
        &[t, ("X-Original-URL", "http://app.test/public/x")],
    )
    .await;
    let seen = json(&edge, &resp);
    assert_eq!(resp.status, 200, "{seen}\n{}", edge.log());
    assert_eq!(seen["path"], "/app/page");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);
    assert!(seen_header(&seen, "x-original-url").is_empty(), "{seen}");
    assert!(
        seen_header(&seen, "coder-session-token").is_empty(),
        "{seen}"
    );

    // A public path named in the client's headers does not make a denied route public.
    let resp = get(
        &edge,
        "/denied",
        &[("X-Original-URL", "http://app.test/public/x")],
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    let resp = get(&edge, "/denied", &[("X-Original-URI", "/public/x")]).await;
    assert_eq!(
        resp.status, 500,
        "a disagreeing X-Original-URI is verify's 400: {resp:?}"
    );
    drop(edge);
    sidecar.shutdown().await;
}
