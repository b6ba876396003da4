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
/// judges (the controller sets the subrequest's, the auth-proxy-set-headers ConfigMap clears
/// the other conventions) nor reaches the app (cleared by the proxy-set-headers ConfigMap); a
/// client's `X-Forwarded-Host` does not name the assertion's audience.
#[tokio::test]
async fn ingress_nginx_judges_the_real_target_and_host_whatever_the_client_sends() {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "memory://").await;
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

    // A client's X-Forwarded-Host does not choose the assertion's audience: the host of
    // X-Original-URL (the Host the client asked) does.
    let resp = get(&edge, "/app", &[t, ("X-Forwarded-Host", "other.example")]).await;
    let seen = json(&edge, &resp);
    assert_eq!(resp.status, 200, "{seen}");
    let assertion = seen_header(&seen, "x-portcullis-assertion");
    let (_, claims) = verify_assertion(sidecar.addr, &assertion[0], "app.test", ISSUER).await;
    assert_eq!(claims["aud"], "app.test");

    // A public path named in the client's headers does not make a denied route public, and a
    // disagreeing X-Original-URI is cleared rather than turned into a 400.
    let resp = get(
        &edge,
        "/denied",
        &[("X-Original-URL", "http://app.test/public/x")],
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    let resp = get(&edge, "/denied", &[("X-Original-URI", "/public/x")]).await;
    assert_eq!(resp.status, 403, "{resp:?}");
    drop(edge);
    sidecar.shutdown().await;
}
