//! Forward-auth, `/.portcullis/verify`, against an in-process Portcullis over real sockets, in
//! each edge's header convention: nginx `auth_request` (`X-Original-URI`/`-Method`), Traefik
//! and Caddy ForwardAuth (`X-Forwarded-Uri`/`-Method`/`-Host`, believed only from
//! `server.trusted_proxies`) and Envoy `ext_authz` (`/.portcullis/verify/envoy/<path>`).
//!
//! Each answer is checked the way an edge uses it: the status, the identity headers it would
//! copy onto the forwarded request (and the assertion, verified with the published JWKS), an
//! empty body on 200. The upstream behind Portcullis counts what reaches it, and it must stay
//! at zero: verify never forwards anything.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::common::world::{MISSING_TOKEN, SIGNED_OUT};
use crate::common::*;

const ISSUER: &str = "portcullis";
const UNKNOWN_TOKEN: &str = "AAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbb";

/// An upstream that counts the requests it gets.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = serve(move |_req| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(Response::new(empty()))
        }
    })
    .await;
    (addr, hits)
}

/// A Portcullis on `store_url` that trusts 127.0.0.1 (when `trusted`) and signs assertions,
/// with extra TOML `extra`.
fn verify_config(upstream: SocketAddr, store_url: &str, trusted: bool, extra: &str) -> String {
    verify_config_in(upstream, store_url, &random_key_prefix(), trusted, extra)
}

/// [`verify_config`] under the store key prefix `prefix`.
fn verify_config_in(
    upstream: SocketAddr,
    store_url: &str,
    prefix: &str,
    trusted: bool,
    extra: &str,
) -> String {
    let key = key_file("assertion-a.pem").display().to_string();
    let config = config_with_store(
        upstream,
        store_url,
        prefix,
        "",
        &format!("[identity]\nassertion_key = {key:?}\n\n{extra}"),
    );
    if trusted {
        config.replacen(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            1,
        )
    } else {
        config
    }
}

/// A forward-auth subrequest for `path` (`Host: portcullis.internal`) with `headers`.
fn subrequest(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "portcullis.internal");
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    b.body(empty()).unwrap()
}

/// Sends `req`: the status, the headers, and the body as JSON (`Null` when empty).
async fn ask(addr: SocketAddr, req: Request<TestBody>) -> (StatusCode, HeaderMap, Value) {
    let resp = send(addr, req).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = body_string(resp).await;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

/// The three edges' ways of asking about `GET /app/page` on `host`, with `credentials` (header
/// pairs the edge copies from the client): (name, subrequest, the audience to expect).
fn conventions(
    credentials: &[(&str, &str)],
) -> Vec<(&'static str, Request<TestBody>, &'static str)> {
    let with = |pairs: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .chain(credentials)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let build = |method: Method, path: &str, pairs: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        subrequest(method, path, &pairs)
    };
    vec![
        (
            "nginx",
            build(
                Method::GET,
                "/.portcullis/verify",
                with(&[
                    ("x-original-uri", "/app/page?x=1"),
                    ("x-original-method", "GET"),
                    ("x-forwarded-host", "App.Example:443"),
                    ("x-forwarded-proto", "https"),
                ]),
            ),
            "app.example",
        ),
        (
            "traefik",
            build(
                Method::GET,
                "/.portcullis/verify",
                with(&[
                    ("x-forwarded-uri", "/app/page?x=1"),
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-host", "traefik.example"),
                    ("x-forwarded-proto", "http"),
                ]),
            ),
            "traefik.example",
        ),
        (
            "envoy",
            {
                let mut pairs = with(&[]);
                pairs.retain(|(n, _)| n != "host");
                let mut req = build(Method::PUT, "/.portcullis/verify/envoy/app/page?x=1", pairs);
                req.headers_mut()
                    .insert("host", "envoy.example:8080".parse().unwrap());
                req
            },
            "envoy.example:8080",
        ),
    ]
}

async fn each_convention_allows_a_session_and_refuses_no_or_bad_tokens(store_url: &str) {
    let (upstream, hits) = counting_upstream().await;
    let prefix = random_key_prefix();
    let sidecar = Sidecar::start(&verify_config_in(upstream, store_url, &prefix, true, "")).await;
    let (user_id, token) = first_user_token(sidecar.addr).await;

    let header = [("coder-session-token", token.as_str())];
    let cookie = format!("coder_session_token={token}");
    let bearer = format!("Bearer {token}");
    let credentials: [&[(&str, &str)]; 3] = [
        &header,
        &[("cookie", cookie.as_str())],
        &[("authorization", bearer.as_str())],
    ];
    for creds in credentials {
        for (edge, req, aud) in conventions(creds) {
            let (status, headers, body) = ask(sidecar.addr, req).await;
            assert_eq!(status, StatusCode::OK, "{edge} {creds:?}: {body}");
            assert_eq!(body, Value::Null, "{edge}: no body on 200");
            assert_eq!(headers["x-forwarded-user"], "admin", "{edge}");
            assert_eq!(headers["x-forwarded-email"], "admin@example.com");
            assert_eq!(headers["x-forwarded-user-id"], user_id.as_str());
            assert!(headers["x-forwarded-roles"]
                .to_str()
                .unwrap()
                .split(',')
                .any(|r| r == "owner"));
            assert_eq!(headers["x-forwarded-scopes"], "coder:all");
            let jwt = headers["x-portcullis-assertion"].to_str().unwrap();
            let (_, claims) = verify_assertion(sidecar.addr, jwt, aud, ISSUER).await;
            assert_eq!(claims["sub"], user_id.as_str(), "{edge}");
        }
    }

    for (creds, detail) in [
        (&[][..], MISSING_TOKEN),
        (
            &[("coder-session-token", UNKNOWN_TOKEN)][..],
            "API key is invalid.",
        ),
        (
            &[("authorization", "Bearer not-a-token")][..],
            "Invalid API key format: incorrect amount of API key parts, expected 2 got 3",
        ),
    ] {
        for (edge, req, _) in conventions(creds) {
            let (status, headers, body) = ask(sidecar.addr, req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{edge} {creds:?}: {body}");
            assert_eq!(body["message"], SIGNED_OUT, "{edge}");
            assert_eq!(body["detail"], detail, "{edge}");
            assert!(headers.get("x-forwarded-user").is_none());
            assert!(headers.get("x-portcullis-assertion").is_none());
        }
    }

    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "verify forwarded something upstream"
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, r#"portcullis_verify_total{decision="allow"}"#),
        9.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="unauthenticated"}"#
        ),
        9.0
    );
    sidecar.shutdown().await;
    delete_redis_keys(store_url, &prefix).await;
}

on_every_store!(each_convention_allows_a_session_and_refuses_no_or_bad_tokens => conventions_allow_and_refuse);

#[tokio::test]
async fn policy_default_deny_answers_403_in_every_convention() {
    let (upstream, hits) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(
        upstream,
        "memory://",
        true,
        "[policy]\ndefault = \"deny\"\n",
    ))
    .await;
    let (_, token) = first_user_token(sidecar.addr).await;
    for (edge, req, _) in conventions(&[("coder-session-token", token.as_str())]) {
        let (status, headers, body) = ask(sidecar.addr, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{edge}: {body}");
        assert_eq!(body["message"], "Forbidden.");
        assert!(headers.get("x-forwarded-user").is_none());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, r#"portcullis_verify_total{decision="forbidden"}"#),
        3.0
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_public_route_is_allowed_with_no_identity() {
    let (upstream, _) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(
        upstream,
        "memory://",
        true,
        "[policy]\ndefault = \"public\"\n",
    ))
    .await;
    let (_, token) = first_user_token(sidecar.addr).await;
    for (edge, req, _) in conventions(&[("coder-session-token", token.as_str())]) {
        let (status, headers, _) = ask(sidecar.addr, req).await;
        assert_eq!(status, StatusCode::OK, "{edge}");
        assert!(headers.get("x-forwarded-user").is_none(), "{edge}");
        assert!(headers.get("x-portcullis-assertion").is_none(), "{edge}");
    }
    sidecar.shutdown().await;
}

/// From a peer outside `server.trusted_proxies`, no form is answered, Envoy's included: the
/// answer is 400, never a decision (or identity headers and an assertion for a host the
/// client names) about a target the client chose.
#[tokio::test]
async fn every_form_from_an_untrusted_peer_is_refused_with_400() {
    let (upstream, hits) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(upstream, "memory://", false, "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    for (edge, req, _) in conventions(&[("coder-session-token", token.as_str())]) {
        let (status, headers, body) = ask(sidecar.addr, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{edge}: {body}");
        assert_eq!(body["message"], "Invalid forward-auth request.");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("server.trusted_proxies"),
            "{body}"
        );
        assert!(headers.get("x-forwarded-user").is_none());
        assert!(headers.get("x-portcullis-assertion").is_none());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="bad_request"}"#
        ),
        3.0
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn missing_ambiguous_or_invalid_original_requests_are_400() {
    let (upstream, hits) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(upstream, "memory://", true, "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    let t = ("coder-session-token", token.as_str());
    let cases = vec![
        ("/.portcullis/verify", vec![t], "target is missing"),
        (
            "/.portcullis/verify",
            vec![t, ("x-original-uri", "/app")],
            "method is missing",
        ),
        (
            "/.portcullis/verify",
            vec![
                t,
                ("x-original-uri", "/admin"),
                ("x-original-method", "GET"),
                ("x-forwarded-uri", "/public"),
            ],
            "must be one value each and agree",
        ),
        (
            "/.portcullis/verify",
            vec![
                t,
                ("x-original-uri", "/admin"),
                ("x-original-method", "GET"),
                ("x-forwarded-method", "POST"),
            ],
            "must be one value each and agree",
        ),
        (
            "/.portcullis/verify",
            vec![
                t,
                ("x-original-uri", "/admin"),
                ("x-original-uri", "/public"),
                ("x-original-method", "GET"),
            ],
            "must be one value each and agree",
        ),
        (
            "/.portcullis/verify",
            vec![t, ("x-original-uri", "*"), ("x-original-method", "GET")],
            "not a valid URI",
        ),
        (
            "/.portcullis/verify",
            vec![
                t,
                ("x-original-uri", "/app"),
                ("x-original-method", "G E T"),
            ],
            "not a valid method",
        ),
        (
            "/.portcullis/verify/other",
            vec![t],
            "served at /.portcullis/verify",
        ),
    ];
    for (path, headers, detail) in cases {
        let (status, _, body) = ask(sidecar.addr, subrequest(Method::GET, path, &headers)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}: {body}");
        assert_eq!(body["message"], "Invalid forward-auth request.");
        assert!(
            body["detail"].as_str().unwrap().contains(detail),
            "{headers:?}: {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    sidecar.shutdown().await;
}

/// The token may travel in the original request's query (`coder_session_token`,
/// `access_token`), as it may when proxying; the subrequest's own query is not the client's.
#[tokio::test]
async fn a_token_in_the_original_query_authenticates() {
    let (upstream, _) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(upstream, "memory://", true, "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    for param in ["coder_session_token", "access_token"] {
        let original = format!("/app?{param}={token}");
        let nginx = subrequest(
            Method::GET,
            "/.portcullis/verify",
            &[("x-original-uri", &original), ("x-original-method", "GET")],
        );
        let (status, headers, body) = ask(sidecar.addr, nginx).await;
        assert_eq!(status, StatusCode::OK, "{param}: {body}");
        assert_eq!(headers["x-forwarded-user"], "admin");
        let traefik = subrequest(
            Method::GET,
            "/.portcullis/verify",
            &[
                ("x-forwarded-uri", &original),
                ("x-forwarded-method", "GET"),
            ],
        );
        assert_eq!(
            ask(sidecar.addr, traefik).await.0,
            StatusCode::OK,
            "{param}"
        );
        let envoy = subrequest(
            Method::GET,
            &format!("/.portcullis/verify/envoy/app?{param}={token}"),
            &[],
        );
        assert_eq!(ask(sidecar.addr, envoy).await.0, StatusCode::OK, "{param}");
    }
    let own_query = subrequest(
        Method::GET,
        &format!("/.portcullis/verify?access_token={token}"),
        &[("x-original-uri", "/app"), ("x-original-method", "GET")],
    );
    let (status, _, body) = ask(sidecar.addr, own_query).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["detail"], MISSING_TOKEN);
    sidecar.shutdown().await;
}

/// A store that cannot answer is 503 from verify too: never 401, never an allow.
#[tokio::test]
async fn a_store_outage_answers_503_never_401() {
    let (upstream, _) = counting_upstream().await;
    let dead = dead_port();
    let sidecar = Sidecar::start(&verify_config(
        upstream,
        &format!("redis://{dead}"),
        true,
        "",
    ))
    .await;
    for (edge, req, _) in conventions(&[("coder-session-token", UNKNOWN_TOKEN)]) {
        let (status, headers, body) = ask(sidecar.addr, req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{edge}: {body}");
        assert!(headers.get("x-forwarded-user").is_none());
    }
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="unavailable"}"#
        ),
        3.0
    );
    sidecar.shutdown().await;
}

/// The route policy decides on the original request: its path and method, as the edge reports
/// them. A path that could mean another route (a dot segment) is refused, not guessed at.
#[tokio::test]
async fn the_route_policy_applies_to_the_original_path_and_method() {
    let (upstream, hits) = counting_upstream().await;
    let policy = "[policy]\ndefault = \"deny\"\n\n\
                  [[policy.route]]\npath = \"/public/**\"\npublic = true\n\n\
                  [[policy.route]]\npath = \"/app/**\"\nmethods = [\"GET\"]\nauthenticated = true\n";
    let sidecar = Sidecar::start(&verify_config(upstream, "memory://", true, policy)).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    let cases = [
        ("/public/page", "GET", StatusCode::OK, false),
        ("/app/page", "GET", StatusCode::OK, true),
        ("/app/page", "POST", StatusCode::FORBIDDEN, false),
        ("/admin", "GET", StatusCode::FORBIDDEN, false),
        ("/public/../admin", "GET", StatusCode::BAD_REQUEST, false),
        (
            "/public/%2e%2e/admin",
            "GET",
            StatusCode::BAD_REQUEST,
            false,
        ),
    ];
    for (path, method, status, identity) in cases {
        let nginx = subrequest(
            Method::GET,
            "/.portcullis/verify",
            &[
                ("coder-session-token", &token),
                ("x-original-uri", path),
                ("x-original-method", method),
            ],
        );
        let envoy = subrequest(
            Method::from_bytes(method.as_bytes()).unwrap(),
            &format!("/.portcullis/verify/envoy{path}"),
            &[("coder-session-token", &token)],
        );
        for (edge, req) in [("nginx", nginx), ("envoy", envoy)] {
            let (got, headers, body) = ask(sidecar.addr, req).await;
            assert_eq!(got, status, "{edge} {method} {path}: {body}");
            assert_eq!(
                headers.contains_key("x-forwarded-user"),
                identity,
                "{edge} {method} {path}"
            );
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="bad_request"}"#
        ),
        4.0
    );
    sidecar.shutdown().await;
}

/// ingress-nginx's `auth-url` sends the original request as `X-Original-URL`, a whole URL: it is
/// a target convention of its own (reduced to path and query, its host the assertion's
/// audience), it must agree with any other convention present, and the override refusal lets it
/// through only when it names exactly the target judged — in any other spelling, or naming
/// another path (also beside Envoy's form, which does not read it), it is refused as the path
/// override it is to some frameworks.
#[tokio::test]
async fn x_original_url_is_a_target_and_passes_the_override_refusal_only_naming_that_target() {
    let (upstream, hits) = counting_upstream().await;
    let sidecar = Sidecar::start(&verify_config(upstream, "memory://", true, "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    let t = ("coder-session-token", token.as_str());
    let verify = "/.portcullis/verify";
    let url = ("x-original-url", "http://App.Example/app/page?x=1");
    let get = ("x-original-method", "GET");

    let (status, headers, body) = ask(
        sidecar.addr,
        subrequest(Method::GET, verify, &[t, url, get]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-forwarded-user"], "admin");
    let assertion = headers["x-portcullis-assertion"].to_str().unwrap();
    let (_, claims) = verify_assertion(sidecar.addr, assertion, "app.example", ISSUER).await;
    assert_eq!(claims["aud"], "app.example");
    let agreeing = [t, url, get, ("x-original-uri", "/app/page?x=1")];
    let (status, _, body) = ask(sidecar.addr, subrequest(Method::GET, verify, &agreeing)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let envoy = subrequest(
        Method::GET,
        "/.portcullis/verify/envoy/app/page?x=1",
        &[t, url],
    );
    let (status, _, body) = ask(sidecar.addr, envoy).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let refused = [
        (
            verify,
            vec![
                t,
                get,
                ("x-original-uri", "/app"),
                ("x-original-url", "http://a/admin"),
            ],
            "must be one value each and agree",
        ),
        (
            verify,
            vec![
                t,
                get,
                ("x-original-uri", "/app"),
                ("x_original_url", "http://a/app"),
            ],
            "override header",
        ),
        (
            "/.portcullis/verify/envoy/app",
            vec![t, ("x-original-url", "http://a/admin")],
            "override header",
        ),
    ];
    for (path, headers, detail) in refused {
        let (status, _, body) = ask(sidecar.addr, subrequest(Method::GET, path, &headers)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(detail),
            "{headers:?}: {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    sidecar.shutdown().await;
}
