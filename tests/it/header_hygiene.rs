//! Header hygiene over real sockets: hop-by-hop headers (RFC 9110 §7.6.1) never cross
//! Portcullis in either direction, and no spelling of an identity header (DESIGN §3.4) sent by a
//! client ever reaches the upstream, under a public policy and for signed-in requests under one
//! that needs a session. Requests are written as raw bytes so that the exact names
//! and spellings on the wire are the test's.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::world::{World, MEMORY};
use crate::common::*;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-named-in-connection",
];

/// Sends `extra` header lines on a `GET /hop` and returns what the echo upstream saw.
async fn echo_sees(sidecar: &Sidecar, extra: &str) -> serde_json::Value {
    let req = format!("GET /hop HTTP/1.1\r\nHost: app.test\r\n{extra}X-Kept: yes\r\n\r\n");
    let resp = raw(sidecar.addr, req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = resp.json();
    assert_eq!(seen_header(&seen, "x-kept"), ["yes"], "{seen}");
    seen
}

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_the_upstream() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let seen = echo_sees(
        &sidecar,
        "Connection: keep-alive, X-Named-In-Connection\r\n\
         X-Named-In-Connection: secret\r\n\
         Keep-Alive: timeout=5, max=100\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: deflate\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: h2c\r\n",
    )
    .await;

    let names = seen_header_names(&seen);
    for hop in HOP_BY_HOP {
        assert!(
            !names.iter().any(|n| n == hop),
            "{hop} reached the upstream: {seen}"
        );
    }
}

/// `TE: trailers` is the one TE value forwarded (gRPC upstreams require it); the rest of the
/// list is dropped.
#[tokio::test]
async fn te_is_reduced_to_trailers_when_the_client_accepts_trailers() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let seen = echo_sees(&sidecar, "TE: trailers, deflate;q=0.5\r\n").await;
    assert_eq!(seen_header(&seen, "te"), ["trailers"], "{seen}");

    let seen = echo_sees(&sidecar, "TE: gzip\r\n").await;
    assert!(seen_header(&seen, "te").is_empty(), "{seen}");
}

/// An upstream that answers with every hop-by-hop header set.
async fn hop_by_hop_upstream(_req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    Ok(Response::builder()
        .header("connection", "X-Named-In-Connection")
        .header("x-named-in-connection", "secret")
        .header("keep-alive", "timeout=5, max=100")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "X-Checksum")
        .header("upgrade", "h2c")
        .header("x-kept", "yes")
        .body(full("ok"))
        .unwrap())
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let upstream = serve(hop_by_hop_upstream).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "")).await;

    let resp = raw(sidecar.addr, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;

    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok");
    assert_eq!(resp.header("x-kept"), ["yes"], "{resp:?}");
    for hop in HOP_BY_HOP {
        assert!(
            resp.header(hop).is_empty(),
            "{hop} reached the client: {resp:?}"
        );
    }
}

/// Every identity header of both families and the assertion, in several spellings.
const SPOOFED: &str = "X-Forwarded-User: mallory\r\n\
    x-forwarded-email: mallory@evil.test\r\n\
    X-FORWARDED-USER-ID: 00000000-0000-0000-0000-000000000000\r\n\
    X-Forwarded-Roles: owner\r\n\
    X-Forwarded-Scopes: all\r\n\
    Remote-User: mallory\r\n\
    REMOTE-EMAIL: mallory@evil.test\r\n\
    remote-name: Mallory\r\n\
    Remote-Groups: admins\r\n\
    X-Portcullis-Assertion: eyJhbGciOiJub25lIn0.e30.\r\n\
    X_Forwarded_User: mallory\r\n\
    x_forwarded_roles: owner\r\n\
    remote_user: mallory\r\n\
    Remote_Groups: admins\r\n\
    X-Portcullis_Assertion: eyJhbGciOiJub25lIn0.e30.\r\n";

/// Identity headers are never believed, not even from a trusted proxy.
#[tokio::test]
async fn identity_headers_from_the_client_never_reach_the_upstream() {
    let echo = start_echo().await;
    for trusted in ["", r#"trusted_proxies = ["127.0.0.1/32"]"#] {
        let sidecar = Sidecar::start(&config(&http_url(echo), trusted, "")).await;

        let seen = echo_sees(&sidecar, SPOOFED).await;

        for name in seen_header_names(&seen) {
            let folded = name.replace('_', "-");
            assert!(
                !IDENTITY.contains(&folded.as_str()),
                "{name} reached the upstream (config: {trusted:?}): {seen}"
            );
        }
    }
}

/// Under a policy that needs a session (`policy.default = "authenticated"`), a signed-in
/// request reaches the upstream with Portcullis's identity headers of the configured family,
/// one copy each, and nothing of the client's: no spoofed spelling, no other family, no
/// hop-by-hop header. Without the session the same request never reaches it.
#[tokio::test]
async fn identity_and_hop_by_hop_headers_are_cleaned_on_authenticated_requests() {
    for (family, ours) in [
        (
            "forwarded",
            [
                ("x-forwarded-user", "admin"),
                ("x-forwarded-roles", "owner"),
            ],
        ),
        (
            "remote",
            [("remote-user", "admin"), ("remote-groups", "owner")],
        ),
    ] {
        let w = World::start(MEMORY, &format!("[identity]\nheaders = \"{family}\"\n")).await;
        let hop = "Connection: keep-alive, X-Named-In-Connection\r\n\
                   X-Named-In-Connection: secret\r\n\
                   Keep-Alive: timeout=5\r\n\
                   Proxy-Connection: keep-alive\r\n\
                   TE: deflate\r\n\
                   Trailer: X-Checksum\r\n\
                   Upgrade: h2c\r\n";
        let unauthenticated =
            format!("GET /hop HTTP/1.1\r\nHost: app.test\r\n{SPOOFED}{hop}X-Kept: yes\r\n\r\n");
        let resp = raw(w.sidecar.addr, unauthenticated.as_bytes()).await;
        assert_eq!(resp.status, 401, "{family}: {resp:?}");

        let seen = echo_sees(
            &w.sidecar,
            &format!("Coder-Session-Token: {}\r\n{SPOOFED}{hop}", w.admin),
        )
        .await;
        for (name, value) in ours {
            assert_eq!(seen_header(&seen, name), [value], "{family}: {seen}");
        }
        let names = seen_header_names(&seen);
        for name in &names {
            let folded = name.replace('_', "-");
            if IDENTITY.contains(&folded.as_str()) {
                assert_eq!(name, &folded, "{family}: a client spelling: {seen}");
                assert_eq!(seen_header(&seen, name).len(), 1, "{family}: {seen}");
                let family_prefix = if family == "remote" {
                    "remote-"
                } else {
                    "x-forwarded-"
                };
                assert!(name.starts_with(family_prefix), "{family}: {name}: {seen}");
            }
            assert!(
                !HOP_BY_HOP.contains(&name.as_str()),
                "{family}: {name}: {seen}"
            );
        }
        for value in seen["headers"].as_array().unwrap() {
            let value = value[1].as_str().unwrap();
            assert!(
                !value.contains("mallory") && !value.contains("admins") && value != "all",
                "{family}: a client's identity value reached the upstream: {seen}"
            );
        }
        w.finish().await;
    }
}
